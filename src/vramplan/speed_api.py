"""plan_speed and speed_summary: roofline decode tokens/s, prefill time, a request's latency, throughput by batch
and training time of a model on a GPU, each a low/expected/high band (importable from :mod:`vramplan.fit_api`)."""

from __future__ import annotations

from ._plan_common import (_batch_and_context, _candidate_dict, _context, _fraction, _gpu, _int, _layout_for,
                           _model_summary, _Workload, build_stack, compute_dtype)
from .api import load_model, tokens_arg
from .core import fit as F
from .core import throughput as T
from .core.hardware import GPU
from .errors import InvalidRequest, UnknownName, suggest
from .units import format_bytes

SUMMARY_GPUS = ("h100-sxm-80gb", "a100-sxm4-80gb", "rtx-4090-24gb", "apple-m2-ultra-192gb")
"""Reference GPUs of the short speed summary in the main report."""


def plan_speed(model, *, gpu="h100", tensor_parallel_size=None, pipeline_parallel_size=None, quantization=None,
               dtype: str = "auto", kv_cache_dtype: str = "auto", max_model_len=None, batch_size: int = 1,
               prompt_tokens=None, output_tokens=256, n_gpu_layers=None, host_bandwidth_gbps=None,
               training_tokens=None, method: str = "full", gradient_checkpointing: bool = False,
               seq_len=None, global_batch_tokens=None, headroom: float = F.DEFAULT_HEADROOM) -> dict:
    """Roofline speed of ``model`` on ``gpu``: decode tokens/s per sequence and in total at ``batch_size``,
    prefill time of a ``prompt_tokens`` prompt, a request's latency, throughput at other batch sizes up to the
    memory's concurrency limit, and (with ``training_tokens``) training GPU-hours; every figure a low/expected/high
    band from the stated efficiencies. Without TP/PP the fewest GPUs of this kind that fit are timed."""
    lm = load_model(model)
    g = _gpu(gpu or "h100")
    batch, ctx = _batch_and_context(lm, batch_size, kv_cache_dtype, max_model_len)
    prompt = tokens_arg(prompt_tokens, "prompt_tokens") if prompt_tokens else min(ctx, 2048)
    out_tok = _int(output_tokens, "output_tokens", 1, 1 << 24)
    host_bw = T.DEFAULT_HOST_BYTES_PER_S
    if host_bandwidth_gbps not in (None, ""):
        host_bw = _fraction(host_bandwidth_gbps, "host_bandwidth_gbps", 0.1, 10000.0) * 1e9
    headroom = _fraction(headroom, "headroom")
    w = _Workload(lm, quantization=quantization, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                  batch=batch, host_bytes_per_s=host_bw)
    if g.hbm_bytes_per_s <= 0:
        raise InvalidRequest(f"the memory bandwidth of {g.name} is unknown, so its speed cannot be estimated; "
                             "name a catalog GPU (vramplan gpus)", field="gpu")
    cand, explicit = _layout_for(w, g, tensor_parallel_size, pipeline_parallel_size, n_gpu_layers, headroom)
    if cand is None:
        raise InvalidRequest(f"no valid layout of {g.name} for {lm.name}", field="gpu")
    layout = w.layout(cand)
    cdt = compute_dtype(w.fmt)
    spec = lm.spec
    dec = T.decode_speed(spec, w.wb, g, context=ctx, batch=batch, kv_dtype=kv_cache_dtype, layout=layout,
                         compute_dtype=cdt)
    pre = T.prefill_time(spec, w.wb, g, tokens=prompt, batch=1, layout=layout, compute_dtype=cdt)
    out = {"model": _model_summary(lm), "workload": w.describe(),
           "gpu": {"name": g.name, "key": g.key, "hbm_bytes_per_s": g.hbm_bytes_per_s,
                   "dense_flop_per_s": T.compute_flop_per_s(g, cdt), "compute_dtype": cdt,
                   "interconnect": g.interconnect},
           "configuration": _candidate_dict(cand) | {"chosen": "as requested" if explicit else
                                                     "fewest GPUs of this kind that fit"},
           "decode": dec.as_dict()}
    if not cand.fits:
        out["warning"] = (f"{cand.label()} does not fit this workload ({format_bytes(cand.need_bytes)} per GPU "
                          f"needed, {format_bytes(cand.limit_bytes)} allowed); speeds are what it would reach")
    out["prefill"] = pre.as_dict() if pre else None
    if pre is None:
        out["prefill_note"] = f"{g.name} publishes no dense tensor FLOP/s, so prefill time is not estimated"
    tpot = dec.step_seconds
    if pre is not None:
        lat = T.Band(pre.seconds.low + out_tok * tpot.low, pre.seconds.expected + out_tok * tpot.expected,
                     pre.seconds.high + out_tok * tpot.high)
        out["request"] = {"prompt_tokens": prompt, "output_tokens": out_tok,
                          "time_to_first_token_s": pre.seconds.as_dict(), "total_seconds": lat.as_dict()}
    else:
        out["request"] = {"prompt_tokens": prompt, "output_tokens": out_tok,
                          "decode_seconds": T.Band(out_tok * tpot.low, out_tok * tpot.expected,
                                                   out_tok * tpot.high).as_dict()}
    out["concurrency"] = _concurrency(w, g, cand, layout, cdt, headroom)
    price = cand.cost_per_hour_usd
    if price:
        out["cost"] = {"usd_per_hour": round(price, 4), "source": "the GPU catalog's typical on-demand price x GPUs",
                       "usd_per_million_output_tokens_at_batch": _cost_band(price, dec.throughput_tokens_per_s)}
        for row in out["concurrency"]["by_batch"]:
            row["usd_per_million_output_tokens"] = _cost_band(price, T.Band(**row["throughput_tokens_per_s"]))
    if training_tokens:
        tokens = tokens_arg(training_tokens, "training_tokens")
        if method not in T.TRAINING_METHODS:
            raise UnknownName("training method", str(method), suggest(str(method), T.TRAINING_METHODS))
        sl = tokens_arg(seq_len, "seq_len") if seq_len else min(ctx, 4096)
        gbt = tokens_arg(global_batch_tokens, "global_batch_tokens") if global_batch_tokens else 0
        tt = T.training_time(spec, g, tokens=tokens, n_gpus=cand.count, seq_len=sl, tokens_per_step=gbt,
                             method=method, recompute=bool(gradient_checkpointing), compute_dtype=cdt)
        out["training"] = tt.as_dict() if tt else None
        if tt is None:
            out["training_note"] = f"{g.name} publishes no dense tensor FLOP/s, so training time is not estimated"
    out["efficiency"] = {"decode_mbu": dec.mbu.as_dict(), "layer_step_seconds": dec.layer_step.as_dict(),
                         "host_mbu": T.MBU_HOST.as_dict(),
                         "prefill_mfu": T.MFU_PREFILL.as_dict(), "training_mfu": T.MFU_TRAINING.as_dict(),
                         "comm_efficiency": T.COMM_EFFICIENCY, "allreduce_latency_s": T.allreduce_latency_s(g, cand.tp)}
    out["explain"] = _speed_explain(w, dec, pre, cand)
    if g.bf16_flop_per_s is None and g.fp16_flop_per_s:
        out["explain"].append(f"{g.name} has no bf16: engines load bf16 checkpoints as fp16 (same bytes); compute at "
                              f"its fp16 tensor rate, {g.fp16_flop_per_s / 1e12:.0f} TFLOP/s")
    return out


def _concurrency(w: _Workload, g: GPU, cand: F.Candidate, layout: T.Layout, cdt: str, headroom: float) -> dict:
    """How many sequences of the planned context fit beside the weights, and the throughput at a few batches."""
    spec = w.lm.spec
    one = build_stack(w.lm, w.fmt, w.wb, context=w.context, batch=1, kv_dtype=w.kv)
    if cand.offload_layers:
        max_seq = 1
    elif cand.expert_offload:  # the KV cache stays on the GPU beside everything but the routed experts
        kv_all = dict(cand.components).get("kv_cache", 0)  # sized for the workload's batch
        kv1 = kv_all // max(w.batch, 1)
        spare = cand.limit_bytes - (cand.need_bytes - kv_all)
        max_seq = max(0, spare // kv1) if kv1 else 1 << 20
    else:
        need1 = F.layout_need(one, cand.tp, cand.pp)
        kv1 = dict(need1.components).get("kv_cache", 0)
        spare = cand.limit_bytes - (need1.need_bytes - kv1)
        max_seq = max(0, spare // kv1) if kv1 else 1 << 20
    rows = []
    for b in sorted({1, 8, 32, 128, w.batch, min(max_seq, 1 << 16)} - {0}):
        if b > max(max_seq, 1) and b != w.batch:
            continue
        d = T.decode_speed(spec, w.wb, g, context=w.context, batch=b, kv_dtype=w.kv, layout=layout,
                           compute_dtype=cdt)
        rows.append({"batch": b, "tokens_per_s": d.tokens_per_s.as_dict(3),
                     "throughput_tokens_per_s": d.throughput_tokens_per_s.as_dict(3), "bound": d.bound,
                     "fits": b <= max_seq})
    return {"max_sequences": int(min(max_seq, 1 << 20)), "context": w.context, "by_batch": rows}


def _cost_band(usd_per_hour: float, throughput: T.Band) -> dict:
    """$ per million generated tokens at a decode throughput band (low cost = high throughput); decode only, the
    prompt's prefill and idle time are not included."""
    def per_m(tps: float) -> float:
        return usd_per_hour / (tps * 3600) * 1e6 if tps > 0 else float("inf")

    return T.Band(per_m(throughput.high), per_m(throughput.expected), per_m(throughput.low)).as_dict(3)


def _fixed_text(spec, tp: int) -> str:
    """The fixed per-step time as computed: the general band per layer, MLA layers under TP at theirs."""
    g, m = T.LAYER_STEP_SECONDS, T.LAYER_STEP_SECONDS_MLA
    total = T.fixed_step_seconds(spec, tp)
    mla = spec.kinds.count("mla") if spec.is_mla and tp > 1 else 0
    parts = []
    if spec.num_layers - mla:
        parts.append(f"{spec.num_layers - mla} layers x {g.low * 1e6:.0f}-{g.high * 1e6:.0f} us (expected "
                     f"{g.expected * 1e6:.0f})")
    if mla:
        parts.append(f"{mla} MLA layers under tensor parallelism x {m.low * 1e6:.0f}-{m.high * 1e6:.0f} us "
                     f"(expected {m.expected * 1e6:.0f}, measured on DeepSeek-V3 at TP8)")
    return " + ".join(parts) + f" = {total.expected * 1e3:.2f} ms expected"


def _speed_explain(w: _Workload, dec: T.DecodeSpeed, pre, cand: F.Candidate) -> list[str]:
    sb = dec.step_bytes
    lines = [f"decode step reads {format_bytes(sb.weights_bytes)} of weights (dense {format_bytes(sb.dense_bytes)}, "
             f"head {format_bytes(sb.head_bytes)}"
             + (f", routed experts {format_bytes(sb.experts_read_bytes)} of {format_bytes(sb.experts_total_bytes)}"
                f" = {sb.experts_touched_per_layer:.1f} of {w.lm.spec.num_experts} per layer at batch {sb.batch}"
                if w.lm.spec.is_moe else "")
             + f") + {format_bytes(sb.kv_bytes)} of KV cache ({sb.batch} x {sb.context:,} tokens)"
             + (f", over all GPUs; {format_bytes(dec.bytes_per_gpu)} on the busiest" if cand.count > 1 else ""),
             f"time per token = bytes per GPU / (bandwidth x MBU {dec.mbu.low}-{dec.mbu.high}, expected "
             f"{dec.mbu.expected}) + communication + a fixed time per layer: " + _fixed_text(w.lm.spec, cand.tp)
             + f"; {dec.bound}-bound at this batch"]
    lines += list(dec.notes)
    if pre is not None:
        lines.append(f"prefill of {pre.tokens:,} tokens: {pre.flops:.3g} FLOPs (2 x active params x tokens + "
                     f"attention) at {pre.flop_per_s / 1e12:.0f} TFLOP/s dense x MFU {pre.mfu.low}-{pre.mfu.high}")
    lines.append("bands: low/expected/high from the efficiency ranges; sources under 'efficiency'")
    return lines



def speed_summary(lm) -> dict:
    """Decode tokens/s at batch 1 on a few reference GPUs (the fewest of each that fit), and one prefill time."""
    lm = load_model(lm)
    rows, lines = [], []
    ctx = _context(lm, None)
    lines.append(f"decode, one sequence at {ctx:,} tokens of context, in the checkpoint's format (tokens/s, "
                 "low / expected / high):")
    for key in SUMMARY_GPUS:
        try:
            r = plan_speed(lm, gpu=key, output_tokens=256)
        except (InvalidRequest, UnknownName):
            continue
        conf = r["configuration"]
        band = r["decode"]["tokens_per_s"]
        row = {"gpu": r["gpu"]["name"], "configuration": conf["label"], "fits": conf["fits"],
               "tokens_per_s": band, "prefill": r.get("prefill")}
        rows.append(row)
        lines.append(f"  {conf['label']}: {band['low']:,.1f} / {band['expected']:,.1f} / {band['high']:,.1f}"
                     + ("" if conf["fits"] else "  (does not fit)"))
        if key == SUMMARY_GPUS[0] and r.get("prefill"):
            p = r["prefill"]
            lines.append(f"  prefill of {p['tokens']:,} tokens there: {p['seconds']['expected']:.3g} s expected "
                         f"({p['seconds']['low']:.3g}-{p['seconds']['high']:.3g} s)")
    lines.append("  memory-bound roofline: weights (MoE: routed experts) + KV read per token / (bandwidth x MBU); "
                 "vramplan speed MODEL --gpu NAME for more")
    return {"context": ctx, "rows": rows, "text": "\n".join(lines)}


__all__ = ["plan_speed", "speed_summary"]
