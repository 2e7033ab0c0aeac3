"""vramplan speed MODEL [...]: decode tokens/s, prefill time, throughput by batch and training time (roofline)."""

from __future__ import annotations

from . import token_budget, add_model_arguments, checked_number, impossible, positive_int, tokens


_positive_float = checked_number("positive_float", float, lambda v: v > 0, "a number", "must be positive")


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--gpu", default="h100", help="GPU (default h100), e.g. a100, rtx-4090, m2-ultra")
    p.add_argument("--tensor-parallel-size", "-tp", type=positive_int, default=None,
                   help="default: the fewest GPUs of this kind that fit")
    p.add_argument("--pipeline-parallel-size", "-pp", type=positive_int, default=None)
    p.add_argument("--quantization", "-q", default=None, help="weight format (fp8, awq, Q4_K_M, ...)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--max-model-len", type=tokens, default=None,
                   help="context each sequence has during decoding (default 8192 or the model's maximum)")
    p.add_argument("--batch-size", "--concurrency", dest="batch_size", type=positive_int, default=1)
    p.add_argument("--prompt-tokens", type=tokens, default=None, help="prompt length for prefill (default 2048)")
    p.add_argument("--output-tokens", type=positive_int, default=256)
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=None,
                   help="llama.cpp: layers on the GPU; the rest are read from host RAM")
    p.add_argument("--host-bandwidth-gbps", type=_positive_float, default=None,
                   help="host RAM bandwidth in GB/s for offloaded layers (default 76.8 = dual-channel DDR5-4800)")
    p.add_argument("--training-tokens", type=token_budget, default=None, help="(decimal: 1e9, 500m, 15T) token budget: GPU-hours to train on it")
    p.add_argument("--method", choices=["full", "lora", "qlora"], default="full")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seq-len", type=tokens, default=None, help="training sequence length (default 4096)")
    p.add_argument("--global-batch-tokens", type=tokens, default=None, help="training tokens per optimizer step")


def run(args) -> dict:
    from ..speed_api import plan_speed

    r = plan_speed(args.model, gpu=args.gpu, tensor_parallel_size=args.tensor_parallel_size,
                      pipeline_parallel_size=args.pipeline_parallel_size, quantization=args.quantization,
                      dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype, max_model_len=args.max_model_len,
                      batch_size=args.batch_size, prompt_tokens=args.prompt_tokens,
                      output_tokens=args.output_tokens, n_gpu_layers=args.n_gpu_layers,
                      host_bandwidth_gbps=args.host_bandwidth_gbps, training_tokens=args.training_tokens,
                      method=args.method, gradient_checkpointing=args.gradient_checkpointing, seq_len=args.seq_len,
                      global_batch_tokens=args.global_batch_tokens)
    if r.get("warning"):  # the configuration cannot hold the workload: the speeds are a what-if
        impossible(r, r["warning"])
    return r


def _band(b: dict, fmt: str = ",.1f", unit: str = "") -> str:
    return f"{b['low']:{fmt}} / {b['expected']:{fmt}} / {b['high']:{fmt}}{unit}"


def render(r: dict, args) -> str:
    from ..render import table, title

    m, c, d = r["model"], r["configuration"], r["decode"]
    lines = [title(f"{m['name']}: speed on {c['label']}"),
             f"{r['workload']['weights_label']}, KV cache {r['workload']['kv_cache_dtype']}, "
             f"{d['batch']} sequence(s) at {d['context']:,} tokens of context ({c['chosen']})",
             "bands are low / expected / high, from the efficiency ranges below"]
    if r.get("warning"):
        lines.append(f"warning: {r['warning']}")
    lines += ["", f"decode, per sequence:   {_band(d['tokens_per_s'])} tokens/s",
              f"decode, all sequences:  {_band(d['throughput_tokens_per_s'])} tokens/s",
              f"time per output token:  {_band({k: v * 1000 for k, v in d['time_per_output_token_s'].items()}, '.2f', ' ms')}"
              f"  ({d['bound']}-bound)"]
    p = r.get("prefill")
    if p:
        lines.append(f"prefill of {p['tokens']:,} tokens: {_band(p['seconds'], '.3g', ' s')} "
                     f"({_band(p['tokens_per_s'], ',.0f')} tokens/s, {p['bound']}-bound)")
    elif r.get("prefill_note"):
        lines.append(f"prefill: {r['prefill_note']}")
    req = r["request"]
    if "total_seconds" in req:
        lines.append(f"one request ({req['prompt_tokens']:,} in, {req['output_tokens']:,} out): "
                     f"{_band(req['total_seconds'], '.3g', ' s')}")
    conc = r["concurrency"]
    lines.append(title(f"Throughput by batch (memory holds {conc['max_sequences']:,} sequences of "
                       f"{conc['context']:,} tokens)"))
    cost = r.get("cost")
    rows = [[str(b["batch"]), _band(b["tokens_per_s"]), _band(b["throughput_tokens_per_s"], ",.0f"), b["bound"],
             "yes" if b["fits"] else "no"]
            + ([_band(b["usd_per_million_output_tokens"], ",.2f")] if cost else []) for b in conc["by_batch"]]
    head = ["batch", "tokens/s per sequence", "tokens/s total", "bound", "fits"] + (["$ per 1M output tokens"] if cost
                                                                                    else [])
    lines.append(table(rows, head, align="rrrll" + ("r" if cost else "")))
    if cost:
        lines.append(f"  at ${cost['usd_per_hour']:,.2f}/h for the GPUs ({cost['source']}); decode only: prefill and "
                     "idle time not included")
    t = r.get("training")
    if t:
        lines.append(title(f"Training on {t['tokens']:,} tokens with {t['gpus']} GPU(s)"))
        lines.append(f"{t['flops_per_token']:.3g} FLOPs per token, {t['flops']:.3g} in all")
        lines.append(f"GPU-hours: {_band(t['gpu_hours'], ',.3g')}; wall-clock hours: {_band(t['wall_hours'], ',.3g')}")
        if t.get("step_seconds"):
            lines.append(f"step of {t['tokens_per_step']:,} tokens: {_band(t['step_seconds'], '.3g', ' s')}")
    elif r.get("training_note"):
        lines.append(r["training_note"])
    lines.append(title("How"))
    for line in r.get("explain", []):
        lines.append(f"  - {line}")
    lines.append(title("Efficiency factors (with sources)"))
    for key, e in r["efficiency"].items():
        if isinstance(e, dict):
            lines.append(f"  {e['name']}: {e['low']} / {e['expected']} / {e['high']}")
            lines.append(f"      {e['source']}")
        else:
            lines.append(f"  {key}: {e}")
    return "\n".join(lines)
