"""vramplan MODEL: the full report (parameters, weights by format, KV cache by context, training, GPUs, speed)."""

from __future__ import annotations

from . import add_model_arguments

REPORT_FORMATS = ("bf16", "fp8", "int8", "awq", "gptq", "bnb-nf4", "mxfp4", "nvfp4", "Q8_0", "Q6_K", "Q5_K_M",
                  "Q4_K_M", "Q3_K_M", "Q2_K")
REPORT_CONTEXTS = (1024, 8192, 32768, 131072)


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--gb", action="store_true", help="show decimal GB first instead of GiB")


def _optional(module: str, func: str):
    """A section provided by an optional module; None when this build does not have it."""
    import importlib

    try:
        mod = importlib.import_module(f"vramplan.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"vramplan.{module}":
            raise
        return None
    return getattr(mod, func, None)


def run(args) -> dict:
    from ..api import describe_model, load_model, model_weight_bytes, plan_inference, resolve_format
    from ..catalog.formats import get_format
    from ..core.memory import kv_cache

    lm = load_model(args.model, revision=args.revision, source=args.source)
    spec = lm.spec
    out = describe_model(lm)
    weights = []
    own = resolve_format(lm)
    if own.is_quantized or lm.stored_weight_bytes:
        wb = model_weight_bytes(spec, own)
        weights.append({"format": "as stored", "label": own.label,
                        "bytes": lm.stored_weight_bytes or wb.total_bytes,
                        "bits_per_weight": round(wb.bits_per_weight, 3)})
    for name in REPORT_FORMATS:
        fmt = get_format(name)
        wb = model_weight_bytes(spec, fmt)
        weights.append({"format": name, "label": fmt.label, "bytes": wb.total_bytes,
                        "bits_per_weight": round(wb.bits_per_weight, 3)})
    out["weights"] = weights
    max_ctx = spec.max_position_embeddings or 131072
    contexts = [c for c in REPORT_CONTEXTS if c <= max_ctx] or [min(REPORT_CONTEXTS)]
    if max_ctx not in contexts and max_ctx <= 1 << 21:
        contexts.append(max_ctx)
    out["kv_cache"] = {
        "bytes_per_token": {d: kv_cache(spec, 1, 1, d).bytes_per_token for d in ("bf16", "fp8")},
        "by_context": [{"tokens": c, "bf16": kv_cache(spec, c, 1, "bf16").total_bytes,
                        "fp8": kv_cache(spec, c, 1, "fp8").total_bytes} for c in contexts]}
    state = kv_cache(spec, 1, 1, "bf16").state_bytes_per_seq
    if state:  # recurrent layers: a constant state per sequence, in the table whatever the KV dtype
        out["kv_cache"]["recurrent_state_bytes_per_sequence"] = state
    if spec.sliding_window and "sliding" in spec.kinds:  # past the window only the global layers keep growing
        far, span = 2 * spec.sliding_window, 1 << 14  # averaged over 16k tokens: compressed layers add an entry
        out["kv_cache"]["bytes_per_token_beyond_window"] = {  # per few tokens, not every token
            d: round((kv_cache(spec, far + span, 1, d).total_bytes - kv_cache(spec, far, 1, d).total_bytes) / span)
            for d in ("bf16", "fp8")}
    out["inference_example"] = plan_inference(lm, max_model_len=min(8192, max_ctx))
    for key, module, func in (("training", "training_api", "training_summary"), ("fit", "fit_api", "fit_summary"),
                              ("speed", "speed_api", "speed_summary"),
                              ("hardware", "hardware_api", "hardware_report")):
        f = _optional(module, func)
        if f is not None:
            out[key] = f(lm, unit="GB" if getattr(args, "gb", False) else "GiB") if key == "fit" else f(lm)
    return out


def render(r: dict, args) -> str:
    from ..render import size, table, title
    from ..units import format_count

    u1, u2 = ("GB", "GiB") if getattr(args, "gb", False) else ("GiB", "GB")
    m, a = r["model"], r["architecture"]
    lines = [title(f"{m['name']}: what it takes to run and fine-tune it"),
             f"source: {r['provenance'] or r['source']}"]
    for msg in r.get("messages", []):
        lines.append(f"note: {msg}")
    attention = set(a.get("layer_kinds") or {"full": 1}) != {"mamba"}  # a pure state-space model has no heads
    desc = (f"{a['model_type']}: {a['num_layers']} layers, hidden {a['hidden_size']:,}, "
            + (f"{a['num_heads']} heads ({a['num_kv_heads']} KV heads, head_dim {a['head_dim']}), " if attention
               else "state-space layers (no attention), ")
            + f"vocab {a['vocab_size']:,}")
    if a.get("num_experts"):
        desc += f", MoE {a['num_experts']} experts (top-{a['experts_per_token']})"
    if a.get("kv_lora_rank"):
        desc += f", MLA (latent {a['kv_lora_rank']} + rope {a['qk_rope_head_dim']})"
    if a.get("sliding_window"):
        desc += f", sliding window {a['sliding_window']:,} on {a['layer_kinds'].get('sliding', 0)} layers"
    lines.append(desc)
    lines.append(f"parameters: {m['params']:,} ({format_count(m['params'])})"
                 + ("" if m["params"] == m["active_params"] else f", {m['active_params']:,} active per token"))
    lines.append("  " + ", ".join(f"{k} {v:,}" for k, v in r["params_breakdown"].items()))

    lines.append(title("Weights by format (memory to hold the checkpoint)"))
    rows = [[w["format"], f"{w['bits_per_weight']:.3f}", size(w["bytes"], u1), size(w["bytes"], u2),
             w["label"] if len(w["label"]) <= 60 else w["label"][:57] + "..."] for w in r["weights"]]
    lines.append(table(rows, ["format", "bits/weight", u1, u2, "what"], align="lrrrl"))
    lines.append("  quantized formats (not GGUF) keep embeddings, lm_head and norms in 16-bit and add their scales; "
                 "GGUF mixes quantize token_embd and output too (llama.cpp's per-tensor rules)")

    kv = r["kv_cache"]
    lines.append(title("KV cache by context (one sequence)"))
    line = f"per token: {kv['bytes_per_token']['bf16']:,} bytes at bf16, {kv['bytes_per_token']['fp8']:,} at fp8"
    beyond = kv.get("bytes_per_token_beyond_window")
    if beyond:
        line += f" while inside the {a['sliding_window']:,}-token window; beyond it " + (
            f"{beyond['bf16']:,} and {beyond['fp8']:,} on average (only the global or compressed layers grow)"
            if beyond["bf16"]
            else "the cache stops growing (every layer is windowed)")
    if kv.get("recurrent_state_bytes_per_sequence"):
        line += (f"; plus {size(kv['recurrent_state_bytes_per_sequence'], u1)} of recurrent state per sequence "
                 f"(constant, included below, not halved by fp8)")
    lines.append(line)
    rows = [[f"{c['tokens']:,}", size(c["bf16"], u1), size(c["fp8"], u1)] for c in kv["by_context"]]
    lines.append(table(rows, ["tokens", f"bf16 ({u1})", f"fp8 ({u1})"]))

    ex = r["inference_example"]
    mem = ex["memory"]
    fmt = ex.get("weights_format", {}).get("name", "bf16")  # the checkpoint's own format (fp8-block, mxfp4, ...)
    lines.append(title(f"Inference, {fmt}, {ex['request']['max_model_len']:,}-token context, batch 1 (per GPU)"))
    lines.append(table([[k, size(v, u1)] for k, v in mem.items()], ["component", u1]))

    if r.get("training"):
        lines.append(title("Training (per GPU)"))
        lines.append(_render_training(r["training"], u1))
    if r.get("fit"):
        lines.append(title("Which GPUs fit"))
        lines.append(_render_generic(r["fit"], u1))
    if r.get("speed"):
        lines.append(title("Speed (roofline, stated efficiency)"))
        lines.append(_render_generic(r["speed"], u1))
    if r.get("hardware"):
        lines.append(title("Host RAM, disk, power"))
        lines.append(_render_generic(r["hardware"], u1))
    lines.append("\nGiB = 2^30 bytes (what PyTorch, vLLM and llama.cpp print); GB = 10^9 bytes (what vendors market).")
    lines.append("More: vramplan inference MODEL --help, vramplan train MODEL --help, vramplan fit MODEL, --json everywhere.")
    return "\n".join(lines)


def _render_training(t, unit: str) -> str:
    from ..render import size, table

    rows = t.get("rows") if isinstance(t, dict) else t
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        out = []
        for row in rows:
            mem = row.get("memory", {})
            out.append([str(row.get("label", row.get("method", ""))), size(mem.get("total"), unit),
                        str(row.get("peak_phase", "")).replace(" (loss)", ""),
                        size(mem.get("weights"), unit), size(mem.get("gradients"), unit),
                        size(mem.get("optimizer"), unit), size(mem.get("activations"), unit),
                        size(mem.get("other"), unit)])
        text = table(out, ["configuration", "total", "peak at", "weights", "gradients", "optimizer", "activations",
                           "other"], align="lrlrrrrr")
        note = t.get("note") if isinstance(t, dict) else None
        return text + (f"\n  {note}" if note else "")
    return _render_generic(t, unit)


def _render_generic(obj, unit: str, indent: str = "") -> str:
    """Readable fallback for sections given as dicts/lists: *_bytes values shown with units."""
    from ..render import size

    lines = []
    if isinstance(obj, dict):
        if "text" in obj and isinstance(obj["text"], str):
            return obj["text"]
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                lines.append(f"{indent}{k}:")
                lines.append(_render_generic(v, unit, indent + "  "))
            elif isinstance(v, int) and not isinstance(v, bool) and k.endswith("bytes"):
                lines.append(f"{indent}{k[:-6] if k.endswith('_bytes') else k}: {size(v, unit)}")
            else:
                lines.append(f"{indent}{k}: {v}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                lines.append(indent + "- " + ", ".join(
                    f"{k}={size(v, unit) if isinstance(v, int) and k.endswith('bytes') else v}"
                    for k, v in item.items() if not isinstance(v, (dict, list))))
            else:
                lines.append(f"{indent}- {item}")
    return "\n".join(lines)
