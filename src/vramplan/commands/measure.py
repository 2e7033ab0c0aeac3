"""vramplan measure MODEL [...]: measure real peak memory on the local GPU next to the prediction.

Inference by default; training when --mode train is given or any training option is (--method, --optimizer,
--precision, --seq-len, --gradient-checkpointing, --lora-rank, --lora-targets, --steps).
"""

from __future__ import annotations

import argparse

from . import add_model_arguments, positive_int, tokens

TRAIN_OPTIONS = ("method", "optimizer", "precision", "seq_len", "gradient_checkpointing", "lora_rank", "lora_targets",
                 "steps")

MEASURED_KEYS = ("weights", "kv_cache", "gradients", "optimizer", "activations", "saved_for_backward",
                 "peak_above_states", "peak_allocated", "peak_reserved", "device_used_peak")

EPILOG = """\
mode: inference (the default) builds the model with random weights on the GPU, prefills batch x
(max-model-len - decode-tokens) tokens and decodes decode-tokens more, so the KV cache ends at max-model-len.
train (--mode train, or implied by any training option) runs --steps optimizer steps on batch x seq-len tokens.
Nothing is downloaded: the model is built from its config.json. Needs torch and transformers (and peft for
--method lora): pip install 'vramplan[measure]'. Without a CUDA GPU it prints the prediction only and exits 1.
"""


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_model_arguments(p)
    p.add_argument("--mode", choices=["auto", "inference", "train"], default="auto",
                   help="what to run (default: train if any training option is given, else inference)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="sequences per batch")
    p.add_argument("--dtype", default="auto", help="inference weights: auto|bfloat16|float16|float32")
    p.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa", help="attention implementation")
    g = p.add_argument_group("inference")
    g.add_argument("--max-model-len", type=tokens, default=None, help="context tokens at the end (default 4096)")
    g.add_argument("--decode-tokens", type=positive_int, default=8, help="single-token decode steps after prefill")
    t = p.add_argument_group("training")
    t.add_argument("--method", choices=["full", "lora"], default=None, help="full fine-tuning or LoRA (default full)")
    t.add_argument("--optimizer", choices=["adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "adafactor"],
                   default=None, help="default adamw (8-bit ones need bitsandbytes)")
    t.add_argument("--precision", choices=["bf16", "fp16", "fp32", "bf16-mixed", "fp16-mixed"], default=None,
                   help="bf16 = pure bf16 weights, grads and states (default); *-mixed = fp32 weights + autocast")
    t.add_argument("--seq-len", type=tokens, default=None, help="tokens per sequence (default 1024)")
    t.add_argument("--gradient-checkpointing", action="store_true", default=None)
    t.add_argument("--lora-rank", type=positive_int, default=None, help="LoRA rank (default 16)")
    t.add_argument("--lora-targets", default=None, help="all-linear (default) or q_proj,v_proj,...")
    t.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default 3)")
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)
    p.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # tests: run the harness on the CPU
    p.add_argument("--gb", action="store_true", help="show decimal GB instead of GiB")


def mode_of(args) -> str:
    if args.mode != "auto":
        return args.mode
    return "train" if any(getattr(args, k, None) is not None for k in TRAIN_OPTIONS) else "inference"


def _train_options(args) -> dict:
    return {"method": args.method or "full", "optimizer": args.optimizer or "adamw",
            "precision": args.precision or "bf16", "batch_size": args.batch_size,
            "seq_len": args.seq_len or 1024, "gradient_checkpointing": bool(args.gradient_checkpointing),
            "lora_rank": args.lora_rank or 16, "lora_targets": args.lora_targets or "all-linear",
            "attention": args.attention}


def run(args) -> dict:
    import warnings

    from .. import measure

    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside transformers/peft, not ours

    mode = mode_of(args)
    reason = measure.unavailable_reason(args.allow_cpu)
    if reason:
        if mode == "train":
            result = measure.prediction_only("train", args.model, **_train_options(args))
        else:
            result = measure.prediction_only("inference", args.model, max_model_len=args.max_model_len or 4096,
                                             batch_size=args.batch_size, dtype=args.dtype, attention=args.attention,
                                             decode_tokens=args.decode_tokens)
        result["error"] = reason
        result["_exit"] = 1
        result["_error"] = reason
        return result
    if mode == "train":
        return measure.measure_training(args.model, steps=args.steps or measure.DEFAULT_TRAIN_STEPS,
                                        device=args.device, allow_cpu=args.allow_cpu, **_train_options(args))
    return measure.measure_inference(args.model, max_model_len=args.max_model_len or 4096,
                                     batch_size=args.batch_size, dtype=args.dtype, decode_tokens=args.decode_tokens,
                                     attention=args.attention, device=args.device, allow_cpu=args.allow_cpu)


def _pct(value) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def render(r: dict, args) -> str:
    from ..render import size, table, title

    unit = "GiB" if not getattr(args, "gb", False) else "GB"
    m = r.get("model") or {}
    lines = [title(f"{m.get('name', args.model)}: measured {r['mode']} memory vs vramplan's prediction")]
    req = r.get("request")
    if req:
        lines.append(", ".join(f"{k} {v}" for k, v in req.items() if k != "mode" and v is not None))
    dev = r.get("device")
    if dev:
        where = dev.get("name") or dev.get("type")
        total = f", {size(dev['total_bytes'], unit)}" if dev.get("total_bytes") else ""
        lines.append(f"device: {where}{total}" + ("" if r.get("measured_on_gpu") else " (CPU run: tensor bytes only)"))
    if r.get("error"):
        lines.append(r["error"])
    pred = (r.get("prediction") or {}).get("memory")
    if r.get("comparison"):
        rows = []
        for k, c in r["comparison"].items():
            if c["basis"] == "count":
                rows.append([k, f"{c['predicted']:,}", f"{c['measured']:,}", _pct(c["error_pct"]), "", "", "count"])
                continue
            rows.append([k, size(c["predicted"], unit), size(c["measured"], unit), _pct(c["error_pct"]),
                         f"{c['predicted']:,}", f"{c['measured']:,}", c["basis"]])
        lines += ["", table(rows, ["component", "predicted", "measured", "error", "predicted B", "measured B",
                                   "basis"])]
        lines.append("error = (predicted - measured) / measured; basis: tensor = bytes of the tensors, allocator = "
                     "torch.cuda max_memory_allocated/reserved, device = mem_get_info (incl. CUDA context)")
    elif r.get("measured"):
        meas = r["measured"]
        rows = [[k, size(meas[k], unit), f"{meas[k]:,}"] for k in MEASURED_KEYS if meas.get(k) is not None]
        lines += ["", "measured (no prediction to compare with):", table(rows, ["component", unit, "bytes"])]
    elif pred:
        rows = [[k, size(v, unit)] for k, v in pred.items()]
        lines += ["", f"prediction ({r['prediction']['source']}):", table(rows, ["component", unit])]
    elif r.get("error"):
        lines.append("(no prediction is available for these options)")
    meas = r.get("measured") or {}
    if meas.get("peak_reserved") is not None:
        lines.append(f"measured: peak allocated {size(meas['peak_allocated'], unit)}, peak reserved "
                     f"{size(meas['peak_reserved'], unit)}, device used at peak {size(meas.get('device_used_peak'), unit)}"
                     f" (context and non-torch {size(meas.get('non_torch'), unit)})")
    v = r.get("versions") or {}
    if v:
        lines.append("versions: " + ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "peft", "cuda", "driver")
                                                if v.get(k)))
    lines.append("(1 GiB = 2^30 bytes, 1 GB = 10^9 bytes)")
    return "\n".join(lines)
