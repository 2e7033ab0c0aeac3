"""vLLM start-up logs of 2025-26 models, held out: predicted vs logged, with each log's settings and source.

These logs were found after the vLLM model was fitted (benchmarks/engine_accuracy.py fits on
../shared/groundtruth/public.jsonl); nothing here was used to set a constant. Settings a log does not state are
marked in the row's note (an approximate release, an inferred GPU model). Known gaps the rows show: vLLM's
profiling of vision/video encoders (multimodal models), MXFP4 MoE kernel workspace on Hopper, KV connectors.

Run: python benchmarks/engine_logs_2026.py   (no network)
"""

from __future__ import annotations

import statistics
import sys

from vramplan.api import load_model, plan_inference

GiB = 1 << 30

# (source, model, plan options, {quantity: logged value}, note)
ROWS = [
    ("https://myoceane.fr/index.php/ai-vllm-a100-gemma-4/", "gpt-oss-20b",
     dict(engine_version="0.19.0", gpu="a100-sxm4-80gb", max_model_len=131072, gpu_memory_utilization=0.65),
     {"weights_gib": 13.72, "available_kv_gib": 36.56}, "A100 80GB (form factor not stated)"),
    ("https://myoceane.fr/index.php/ai-vllm-a100-gemma-4/", "gemma-4-26b-a4b",
     dict(engine_version="0.19.0", gpu="a100-sxm4-80gb", max_model_len=131072, gpu_memory_utilization=0.9),
     {"weights_gib": 48.5, "available_kv_gib": 21.5},
     "release ~0.19, eager mode; multimodal: vLLM's encoder profiling is not modelled"),
    ("https://github.com/vllm-project/vllm/issues/33155", "gpt-oss-120b",
     dict(engine_version="0.14.1", gpu="h100-sxm-80gb"), {"weights_gib": 64.38}, ""),
    ("https://github.com/vllm-project/vllm/issues/23278", "gpt-oss-120b",
     dict(engine_version="0.10.1", gpu="h100-sxm-80gb"), {"weights_gib": 65.97}, "release ~0.10.1"),
    ("https://github.com/vllm-project/vllm/issues/27508", "gpt-oss-120b",
     dict(engine_version="0.11.0", gpu="h100-sxm-80gb", max_model_len=131072, gpu_memory_utilization=0.95,
          max_num_batched_tokens=1024),
     {"available_kv_gib": 1.71}, "release ~0.11.0; MXFP4 MoE kernel workspace on Hopper is not modelled"),
    ("https://github.com/vllm-project/vllm/issues/21348", "qwen3-235b-a22b",
     dict(quantization="fp8-block", engine_version="0.9.2", gpu="h100-sxm-80gb", tensor_parallel_size=4,
          max_model_len=40960, gpu_memory_utilization=0.9),
     {"available_kv_gib": 8.11, "kv_tokens": 178_880}, "release ~0.9.2-0.10.0 with an LMCache connector"),
]


def predicted(model: str, opts: dict) -> dict:
    r = plan_inference(load_model(model), engine="vllm", check_fit=False, **opts)
    cap = r["capacity"]
    return {"weights_gib": r["memory"]["weights"] / GiB, "available_kv_gib": cap["kv_cache_available_bytes"] / GiB,
            "kv_tokens": cap["kv_cache_tokens"]}


def main() -> int:
    print("vLLM start-up logs, 2025-26 (held out): predicted / logged\n")
    errors = []
    for source, model, opts, logged, note in ROWS:
        pred = predicted(model, opts)
        cells = []
        for q, v in logged.items():
            err = 100.0 * (pred[q] / v - 1)
            errors.append((q, abs(err)))
            fmt = "{:,.0f}" if q == "kv_tokens" else "{:.2f}"
            cells.append(f"{q} {fmt.format(pred[q])} / {fmt.format(v)} ({err:+.1f}%)")
        print(f"  {model:18s} vLLM {opts.get('engine_version', '')}: " + "; ".join(cells))
        print(f"    {source}" + (f"  [{note}]" if note else ""))
    for q in ("weights_gib", "available_kv_gib", "kv_tokens"):
        e = sorted(x for k, x in errors if k == q)
        if e:
            print(f"\n{q}: {len(e)} rows, median |error| {statistics.median(e):.1f}%, max {e[-1]:.1f}%", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
