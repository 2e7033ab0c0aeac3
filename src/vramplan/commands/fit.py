"""vramplan fit MODEL [...]: which GPUs and how many fit a model and workload, cheapest and fastest first."""

from __future__ import annotations

from . import token_budget, add_model_arguments, checked_number, impossible, positive_int, tokens


_headroom = checked_number("headroom", float, lambda v: 0.0 <= v <= 0.9, "a fraction such as 0.05",
                           "must be between 0 and 0.9")


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--gpus", "--gpu", dest="gpus", default=None,
                   help="GPUs to try, comma-separated (default: the whole catalog), e.g. h100,rtx-4090,24GiB")
    p.add_argument("--category", default=None,
                   choices=["datacenter", "workstation", "consumer", "apple", "accelerator"],
                   help="only GPUs of this category")
    p.add_argument("--max-gpus", type=positive_int, default=8,
                   help="most GPUs per configuration (default 8 = one node; 16, 32, ... add whole nodes)")
    p.add_argument("--quantization", "-q", default=None, help="weight format (fp8, awq, Q4_K_M, ...)")
    p.add_argument("--dtype", default="auto", help="auto|bfloat16|float16|float32")
    p.add_argument("--kv-cache-dtype", default="auto", help="auto|fp16|bf16|fp8|q8_0|q4_0")
    p.add_argument("--max-model-len", type=tokens, default=None,
                   help="context tokens per sequence (default: 8192 or the model's maximum if smaller)")
    p.add_argument("--batch-size", "--concurrency", dest="batch_size", type=positive_int, default=1,
                   help="concurrent sequences, each at the full context")
    p.add_argument("--headroom", type=_headroom, default=0.05, help="share of GPU memory left free (default 0.05)")
    p.add_argument("--no-offload", dest="allow_offload", action="store_false",
                   help="do not consider llama.cpp-style offload of layers (or MoE experts) to host RAM")
    p.add_argument("--host-ram", default=None, help="host RAM for offloaded layers, e.g. 64GiB (default: unchecked)")
    p.add_argument("--top", type=positive_int, default=10, help="how many configurations to rank")
    p.add_argument("--workload", choices=["inference", "training"], default="inference")
    p.add_argument("--method", default=None, help="training: full|lora|qlora|dora|...")
    p.add_argument("--seq-len", type=tokens, default=None, help="training: tokens per sequence (default 2048)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None, help="training: recompute")
    p.add_argument("--zero", type=int, choices=[0, 1, 2, 3], default=None, help="training: ZeRO stage")
    p.add_argument("--fsdp", action="store_true", default=None, help="training: FSDP full shard")
    p.add_argument("--optimizer", default=None, help="training: adamw|adamw-8bit|paged-adamw-8bit|sgd|...")
    p.add_argument("--precision", default=None, help="training: bf16-mixed|fp16-mixed|bf16|fp32")
    p.add_argument("--training-tokens", type=token_budget, default=None, help="(decimal: 1e9, 500m, 15T) training: token budget for the time")
    p.add_argument("--gb", action="store_true", help="show decimal GB instead of GiB")


def run(args) -> dict:
    from ..fit_api import plan_fit

    extra = {}
    training_only = [f"--{k.replace('_', '-')}" for k in ("method", "seq_len", "gradient_checkpointing", "zero", "fsdp",
                                                          "optimizer", "precision", "training_tokens")
                     if getattr(args, k, None) is not None]
    if args.workload != "training" and training_only:
        from ..errors import InvalidRequest

        raise InvalidRequest(f"{', '.join(training_only)} apply to --workload training", field="workload")
    if args.workload == "training":
        for key in ("method", "seq_len", "gradient_checkpointing", "zero", "fsdp", "optimizer", "precision"):
            if getattr(args, key, None) is not None:
                extra[key] = getattr(args, key)
        extra["training_tokens"] = args.training_tokens
        if args.batch_size != 1:
            extra["batch_size"] = args.batch_size
    r = plan_fit(args.model, gpus=args.gpus, category=args.category, max_gpus=args.max_gpus,
                 quantization=args.quantization, dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype,
                 max_model_len=args.max_model_len, batch_size=args.batch_size if args.workload == "inference" else 1,
                 headroom=args.headroom, allow_offload=args.allow_offload, host_ram=args.host_ram,
                 workload=args.workload, top=args.top, **extra)
    if not r["fits"]:
        best = (r.get("suggestions") or [None])[0]
        line = r.get("reason") or "nothing fits"
        if best:
            line += f"; smallest change: {best['text']}" + (f" -> {best['fits_on']}" if best.get("fits_on") else "")
        impossible(r, line)
    return r


def _speed(c: dict) -> str:
    band = c.get("decode_tokens_per_s")
    if band:
        return f"{band['low']:,.1f} / {band['expected']:,.1f} / {band['high']:,.1f}"
    t = c.get("training_time")
    if t:
        return f"{t['wall_hours']['expected']:,.1f} h"
    return "-"


def render(r: dict, args) -> str:
    from ..render import size, table, title

    unit = "GB" if getattr(args, "gb", False) else "GiB"
    m, wl = r["model"], r["workload"]
    lines = [title(f"{m['name']}: which GPUs fit")]
    if wl.get("kind") == "inference":
        lines.append(f"workload: {wl['concurrent_sequences']} sequence(s) x {wl['max_model_len']:,} tokens, weights "
                     f"{wl['weights_label']} ({size(wl['weights_bytes'], unit)}), KV cache {wl['kv_cache_dtype']}, "
                     f"{r['headroom']:.0%} headroom, up to {r.get('max_gpus', 8)} GPUs")
    else:
        lines.append(f"workload: training {', '.join(f'{k}={v}' for k, v in wl.items() if k != 'kind' and v)}")

    def rows(cands):
        out = []
        for c in cands:
            cost = c.get("cost_per_hour_usd")
            out.append([c["label"], size(c["memory_per_gpu"], unit), size(c["limit_per_gpu"], unit),
                        f"${cost:,.2f}/h" if cost is not None else "-", _speed(c)])
        return out

    header = ["configuration", "need/GPU", "limit/GPU", "cost", "decode tok/s (low/exp/high)"
              if wl.get("kind") == "inference" else "time"]
    if r["fits"]:
        lines += [title("Cheapest (fewest GPUs of each kind, by price; unknown prices last; host-RAM offload plans after the rest)"),
                  table(rows(r["cheapest"]), header, align="lrrrr"),
                  title("Fastest"), table(rows(r["fastest"]), header, align="lrrrr")]
    lines.append(title("Every GPU kind: the fewest that fit (or the closest miss)"))
    by = []
    for c in r["by_gpu"]:
        by.append([c["label"], size(c["memory_per_gpu"], unit), size(c["limit_per_gpu"], unit),
                   "yes" if c["fits"] else "no", _speed(c) if c["fits"] else "-"])
    lines.append(table(by, ["configuration", "need/GPU", "limit/GPU", "fits", "decode tok/s" if
                            wl.get("kind") == "inference" else "time"], align="lrrlr"))
    if not r["fits"]:
        lines.append("")
        lines.append(f"Nothing fits: {r['reason']}")
        lines.append("What would change it:")
        for s in r.get("suggestions", []):
            lines.append(f"  - {s['text']}" + (f"  -> {s['fits_on']}" if s.get("fits_on") else ""))
    for line in r.get("explain", []):
        lines.append(f"  note: {line}")
    lines.append(f"(1 {unit} = {'2^30' if unit == 'GiB' else '10^9'} bytes)")
    return "\n".join(lines)
