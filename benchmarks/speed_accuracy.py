"""The decode model against the measured figures quoted in reference/formulas.md section 6.

For each measurement: the device and model as the source describes them, the decode band vramplan predicts
(low / expected / high tokens/s from the MBU range of that kind of device), and whether the measurement falls inside.
Efficiency figures quoted without a tokens/s (sustained bandwidth, per-quant-type MBU) are checked against the MBU
band itself. Nothing here is tuned to these rows: the bands are the ones `vramplan speed` uses.

Run: python benchmarks/speed_accuracy.py   (no network; the models and GPUs come from the embedded catalogs)
"""

from __future__ import annotations

import sys

from vramplan.api import load_model, model_weight_bytes
from vramplan.catalog.formats import get_format
from vramplan.catalog.gpus import get_gpu
from vramplan.core import throughput as T

# (case, model, format, gpu, context, measured tokens/s, source[, tensor-parallel size])
# The rows marked "sets the band" are the ones LAYER_STEP_SECONDS was read from (in-sample); the others are held out.
DECODE_CASES = [
    ("vLLM (tt-inference-server GPU reference), Qwen3-0.6B, A100, batch 1, 128/128 [sets the band]", "qwen3-0.6b",
     "bf16", "a100-sxm4-80gb", 192, 1 / 0.0042, "tenstorrent/tt-inference-server#340 (TPOT 4.2 ms)"),
    ("vLLM (tt reference), Qwen3-14B, A100, batch 1 [sets the band]", "qwen3-14b", "bf16", "a100-sxm4-80gb", 192,
     1 / 0.0243, "tenstorrent/tt-inference-server#340 (TPOT 24.3 ms)"),
    ("vLLM (tt reference), Qwen3-30B-A3B, A100, batch 1 [sets the band]", "qwen3-30b-a3b", "bf16", "a100-sxm4-80gb",
     192, 1 / 0.0096, "tenstorrent/tt-inference-server#340 (TPOT 9.6 ms)"),
    ("vLLM 0.16, Nemotron 3 Nano 30B-A3B FP8, 2 x B200 TP2, concurrency 1 [sets the band]",
     "nemotron-3-nano-30b-a3b", "fp8", "b200-hgx-180gb", 2304, 277.0,
     "docs.vultr.com inference-cookbook concurrency-tuning (TPOT 2.91 ms)", 2),
    ("vLLM 0.23, Llama-3.1-8B BF16, A100 40GB, concurrency 1 [bounds the band's low end]", "llama-3.1-8b", "bf16",
     "a100-sxm4-40gb", 1088, 75.0, "johnmusgrave.com vLLM A100 sweep ('about 75 tokens/sec')"),
    ("SGLang 0.4.1, DeepSeek-V3 FP8, 8 x H200 TP8, batch 1, 128/256 [sets the MLA band]", "deepseek-v3", "fp8",
     "h200-sxm-141gb", 256, 30.29, "sgl-project/sglang PR #2643 (v0.4.1.post2 notes: batch 1 30.29 token/s)", 8),
    ("vLLM 0.13, DeepSeek-V3.2, 8 x H20 TP8, 1 request [sets the MLA band]", "deepseek-v3.2", "fp8", "h20-96gb",
     2048, 30.0, "vllm-project/vllm issue #30832 ('30 tokens/s 1/req')", 8),
    ("vLLM (tt reference), Qwen2.5-72B-Instruct, 2 x H100 TP2, batch 1 (held out)", "qwen2.5-72b", "bf16",
     "h100-sxm-80gb", 192, 1 / 0.0309, "tenstorrent/tt-inference-server#143 (TPOT 30.9 ms)", 2),
    ("SGLang 0.4.6, qwen3-0.6b BF16, 1 x H20, batch 1 (held out)", "qwen3-0.6b", "bf16", "h20-96gb",
     1024, 414.17, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-0.6b FP8, 1 x H20, batch 1 (held out)", "qwen3-0.6b", "fp8", "h20-96gb",
     1024, 458.03, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-1.7b BF16, 1 x H20, batch 1 (held out)", "qwen3-1.7b", "bf16", "h20-96gb",
     1024, 227.8, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-1.7b FP8, 1 x H20, batch 1 (held out)", "qwen3-1.7b", "fp8", "h20-96gb",
     1024, 333.9, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-4b BF16, 1 x H20, batch 1 (held out)", "qwen3-4b", "bf16", "h20-96gb",
     1024, 133.13, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-4b FP8, 1 x H20, batch 1 (held out)", "qwen3-4b", "fp8", "h20-96gb",
     1024, 200.61, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-8b BF16, 1 x H20, batch 1 (held out)", "qwen3-8b", "bf16", "h20-96gb",
     1024, 81.73, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-8b FP8, 1 x H20, batch 1 (held out)", "qwen3-8b", "fp8", "h20-96gb",
     1024, 150.25, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-14b BF16, 1 x H20, batch 1 (held out)", "qwen3-14b", "bf16", "h20-96gb",
     1024, 47.1, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-14b FP8, 1 x H20, batch 1 (held out)", "qwen3-14b", "fp8", "h20-96gb",
     1024, 97.11, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-32b BF16, 1 x H20, batch 1 (held out)", "qwen3-32b", "bf16", "h20-96gb",
     1024, 20.72, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-32b FP8, 1 x H20, batch 1 (held out)", "qwen3-32b", "fp8", "h20-96gb",
     1024, 46.17, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-30b-a3b BF16, 1 x H20, batch 1 (held out)", "qwen3-30b-a3b", "bf16", "h20-96gb",
     1024, 137.18, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-30b-a3b FP8, 1 x H20, batch 1 (held out)", "qwen3-30b-a3b", "fp8", "h20-96gb",
     1024, 155.55, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)"),
    ("SGLang 0.4.6, qwen3-235b-a22b BF16, 8 x H20 TP8, batch 1 (held out)", "qwen3-235b-a22b", "bf16", "h20-96gb",
     1024, 74.5, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)", 8),
    ("SGLang 0.4.6, qwen3-235b-a22b FP8, 4 x H20 TP4, batch 1 (held out)", "qwen3-235b-a22b", "fp8", "h20-96gb",
     1024, 71.65, "QwenLM/Qwen2.5 docs/source/getting_started/speed_benchmark.md (Qwen3, SGLang 0.4.6.post1, batch 1, 1 in / 2048 out)", 4),
    ("llama.cpp Metal, Llama-2-7B F16, tg64", "llama-2-7b", "F16", "apple-m2-ultra-192gb", 64, 41.35,
     "llama.cpp PR #2891 (device inferred: M2 Ultra, 800 GB/s), formulas.md 6"),
    ("llama.cpp Metal, Llama-2-7B Q8_0, tg64", "llama-2-7b", "Q8_0", "apple-m2-ultra-192gb", 64, 61.5,
     "llama.cpp PR #2891 (device inferred), formulas.md 6"),
    ("Databricks MBU example, 7B fp16 at 14 ms TPOT, modelled as Llama-2-7B on an A100 80GB (2.04 TB/s)",
     "llama-2-7b", "fp16", "a100-sxm4-80gb", 512, 1 / 0.014,
     "Databricks/MosaicML 'LLM Inference Performance Engineering: Best Practices', formulas.md 6"),
]

# The Databricks example on its own terms: 14 GB moved per token on a 2 TB/s part.
BYTES_CASES = [
    ("Databricks MBU example as stated: 14 GB per token, 2 TB/s peak", 14e9, 2e12, T.MBU_CUDA, 1 / 0.014,
     "Databricks/MosaicML best-practices post, formulas.md 6"),
]

# Efficiency (MBU) figures quoted without a tokens/s: (case, measured fraction, band, source)
MBU_CASES = [
    ("M1/M2 Max sustained bandwidth, 340 of 400 GB/s", 340 / 400, T.MBU_APPLE, "llama.cpp PR #2188"),
    ("M1 Max IQ4_NL decode", 0.58, T.MBU_APPLE, "llama.cpp issue #27525"),
    ("M1 Max Q4_K_XL decode", 0.29, T.MBU_APPLE, "llama.cpp issue #27525"),
    ("Databricks example MBU (50% of a 2 TB/s part)", 0.50, T.MBU_CUDA, "Databricks best-practices post"),
]


def _f(x: float) -> str:
    return f"{x:,.2f}"


def main() -> int:
    rows = []
    inside = total = 0
    print("Decode speed: measured vs the predicted band (tokens/s; low / expected / high)\n")
    header = ("case", "device", "GB read/token", "measured", "low", "expected", "high", "implied MBU", "in band")
    for case, model, fmt_name, gpu_key, ctx, measured, source, *rest in DECODE_CASES:
        lm = load_model(model)
        gpu = get_gpu(gpu_key)
        wb = model_weight_bytes(lm.spec, get_format(fmt_name))
        tp = rest[0] if rest else 1
        d = T.decode_speed(lm.spec, wb, gpu, context=ctx, batch=1, kv_dtype="f16", layout=T.Layout(tp=tp))
        band = d.tokens_per_s
        read = d.step_bytes.total_bytes / tp
        implied = measured * read / gpu.hbm_bytes_per_s
        ok = band.contains(measured)
        inside += ok
        total += 1
        rows.append((case, gpu.name, f"{read / 1e9:.2f}", _f(measured), _f(band.low), _f(band.expected),
                     _f(band.high), f"{implied:.2f}", "yes" if ok else "NO"))
        rows.append((f"  source: {source}", "", "", "", "", "", "", "", ""))
    for case, nbytes, bw, eff, measured, source in BYTES_CASES:
        secs = T.roofline_seconds(nbytes, bw, eff)
        band = T.Band(1 / secs.high, 1 / secs.expected, 1 / secs.low)
        ok = band.contains(measured)  # the example sits on the low edge (MBU 0.50 is the band's low end)
        inside += ok
        total += 1
        rows.append((case, f"{bw / 1e12:.1f} TB/s", f"{nbytes / 1e9:.2f}", _f(measured), _f(band.low),
                     _f(band.expected), _f(band.high), f"{measured * nbytes / bw:.2f}", "yes" if ok else "NO"))
        rows.append((f"  source: {source}", "", "", "", "", "", "", "", ""))
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    widths[0] = min(widths[0], 60)
    print("  ".join(h.ljust(widths[i]) if i < 2 else h.rjust(widths[i]) for i, h in enumerate(header)))
    for r in rows:
        if r[0].startswith("  source:"):
            print(r[0])
            continue
        name = r[0] if len(r[0]) <= widths[0] else r[0][: widths[0] - 3] + "..."
        cells = [name.ljust(widths[0]), r[1].ljust(widths[1])] + [str(c).rjust(widths[i + 2])
                                                                   for i, c in enumerate(r[2:])]
        print("  ".join(cells))
    print(f"\n{inside} of {total} decode measurements fall inside the predicted band.")

    print("\nEfficiency figures (MBU) against the band the model uses for that kind of device\n")
    for case, frac, eff, source in MBU_CASES:
        ok = eff.low <= frac <= eff.high
        print(f"  {case}: {frac:.2f} vs band {eff.low:.2f}-{eff.high:.2f} (expected {eff.expected:.2f}): "
              f"{'inside' if ok else 'OUTSIDE'}  [{source}]")
    print("\nBands: CUDA/ROCm MBU {:.2f}/{:.2f}/{:.2f}; Apple MBU {:.2f}/{:.2f}/{:.2f} (low/expected/high).".format(
        T.MBU_CUDA.low, T.MBU_CUDA.expected, T.MBU_CUDA.high, T.MBU_APPLE.low, T.MBU_APPLE.expected,
        T.MBU_APPLE.high))
    print("Implied MBU = measured tokens/s x bytes read per token / peak bandwidth (what the source's device "
          "achieved).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
