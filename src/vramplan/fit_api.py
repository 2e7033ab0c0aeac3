"""Fit, speed, hardware and launch commands as plain dicts (the CLI's --json, the REST API and the web page).

    plan_fit(model, **workload)         which GPUs and how many fit, cheapest and fastest first; why not, and what
                                        would change it, when nothing fits
    plan_speed(model, **options)        decode tokens/s, prefill time, throughput by batch, training time (bands)
    hardware_report(model, **options)   host RAM, disk, power/PSU and interconnect for one configuration
    launch_commands(model, **options)   vllm serve / sglang / llama-server / ollama invocations + a streaming client
    fit_summary(lm), speed_summary(lm)  the short sections of the main ``vramplan MODEL`` report

This module holds the fit; the others live in :mod:`vramplan.speed_api`, :mod:`vramplan.hardware_api` and
:mod:`vramplan.launch_api` and are importable from here too. The numbers come from the core (``core.fit``,
``core.throughput``, ``core.hardware_report``); :mod:`vramplan._plan_common` turns names into objects and builds the
per-layer memory pieces for each tensor-parallel size.
"""

from __future__ import annotations

from ._plan_common import (PREFILL_CHUNK_TOKENS, _batch_and_context, _candidate_dict, _fraction, _gpu_list, _int,
                           _model_summary, _size, _Workload)
from .api import load_model, tokens_arg
from .core import fit as F
from .core import throughput as T
from .core.memory import kv_bits, kv_cache
from .errors import InvalidRequest, UnknownName, suggest
from .units import format_bytes

# the rest of the public API and the constants that used to be defined here, importable from here as before
from ._plan_common import DEFAULT_CONTEXT, TP_SIZES, build_stack, compute_dtype  # noqa: F401
from .hardware_api import hardware_report
from .launch_api import ENGINES, PORTS, launch_commands  # noqa: F401
from .speed_api import SUMMARY_GPUS, plan_speed, speed_summary  # noqa: F401

QUANT_LADDER = ("fp8", "awq", "Q4_K_M", "Q3_K_M", "Q2_K")
"""Formats tried, in order of decreasing precision, when suggesting a quantization that would fit."""


def plan_fit(model, *, gpus=None, gpu=None, category: str | None = None, max_gpus: int = 8,
             quantization: str | None = None, dtype: str = "auto", kv_cache_dtype: str = "auto",
             max_model_len=None, batch_size: int = 1, headroom: float = F.DEFAULT_HEADROOM,
             allow_offload: bool = True, host_ram=None, workload: str = "inference", top: int = 10,
             training_tokens=None, **training) -> dict:
    """Which GPUs, and how many, fit ``model`` under a workload; ranked by cost and by decode speed.

    Inference workload: ``max_model_len`` tokens of context for ``batch_size`` concurrent sequences, weights in
    ``quantization`` (default: the checkpoint's own format), KV cache in ``kv_cache_dtype``. Training workload
    (``workload="training"``): the options of ``vramplan.training_api.plan_training`` in ``training``.
    When nothing fits, ``reason`` says why and ``suggestions`` list the smallest changes that would.
    """
    lm = load_model(model)
    if gpu and not gpus:
        gpus = gpu
    gpu_list = _gpu_list(gpus, category)
    if not gpu_list:
        raise InvalidRequest("no GPUs to try (the category or list is empty)", field="gpus")
    max_gpus = _int(max_gpus, "max_gpus", 1, 1024)
    headroom = _fraction(headroom, "headroom")
    top = _int(top, "top", 1, 1000)
    host_ram_bytes = _size(host_ram, "host_ram")
    if workload == "training":
        return _plan_fit_training(lm, gpu_list, max_gpus=max_gpus, headroom=headroom, top=top,
                                  training_tokens=training_tokens, **training)
    if workload != "inference":
        raise UnknownName("workload", str(workload), suggest(str(workload), ["inference", "training"]))
    if training:
        raise InvalidRequest(f"unknown option {sorted(training)[0]!r} for an inference fit", field=sorted(training)[0])
    batch, ctx = _batch_and_context(lm, batch_size, kv_cache_dtype, max_model_len)
    w = _Workload(lm, quantization=quantization, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                  batch=batch)
    res = w.search(gpu_list, max_gpus=max_gpus, headroom=headroom, allow_offload=allow_offload,
                   host_ram_bytes=host_ram_bytes)
    out = {"model": _model_summary(lm), "workload": w.describe(), "headroom": headroom,
           "gpus_tried": len(gpu_list), "max_gpus": max_gpus, "fits": res.fits,
           "by_gpu": [_candidate_dict(c, w) for c in res.by_gpu],
           "cheapest": [_candidate_dict(c, w) for c in res.cheapest[:top]],
           "fastest": [_candidate_dict(c, w) for c in res.fastest[:top]],
           "explain": _fit_explain(w, headroom, allow_offload)}
    if not res.fits:
        out["reason"] = _reason(w, res, gpu_list, max_gpus)
        out["suggestions"] = _suggestions(w, gpu_list, max_gpus, headroom, allow_offload, host_ram_bytes)
    return out


def _fit_explain(w: _Workload, headroom: float, allow_offload: bool) -> list[str]:
    kvb = kv_cache(w.lm.spec, w.context, w.batch, w.kv).total_bytes
    lines = [f"weights {format_bytes(w.wb.total_bytes)} as {getattr(w.fmt, 'label', w.fmt.name)}; KV cache "
             f"{format_bytes(kvb)} for {w.batch} x {w.context:,} tokens ({w.kv}); activations of one "
             f"{min(w.context, PREFILL_CHUNK_TOKENS):,}-token prefill chunk; 0.50 GiB CUDA context per GPU",
             f"fits when the busiest GPU needs at most its memory less {headroom:.0%} headroom (Apple: the GPU "
             f"working-set limit less {headroom:.0%})",
             "tensor parallel splits matrices and KV heads inside a node (vLLM's rule: TP divides the attention "
             "heads); pipeline stages split layers, unevenly where the embedding (first stage) and head (last) "
             "make that better; 16+ GPUs are whole 8-GPU nodes",
             "speed: decode tokens/s per sequence from the roofline at the full context (see vramplan speed)"]
    if allow_offload:
        lines.append("a GPU that cannot hold the model alone also gets a llama.cpp-style plan with the first layers "
                     "in host RAM (-ngl) or, for MoE models, every routed expert there (--cpu-moe; only the experts a "
                     "token picks are read each step), whichever decodes faster; host RAM bandwidth bounds both")
    return lines


def _reason(w: _Workload, res: F.SearchResult, gpus, max_gpus: int) -> str:
    miss = res.closest_miss()
    if miss is None:
        return "no configuration was valid for these GPUs"
    part, part_bytes = F.dominant_component(miss.components)
    total_mem = sum(F.capacity_for(g) * F.gpu_counts(g, max_gpus)[-1][0] for g in gpus)
    text = (f"nothing fits on up to {max_gpus} GPU(s) of the {len(gpus)} kind(s) tried: the closest, "
            f"{miss.label()}, needs {format_bytes(miss.need_bytes)} per GPU but may use "
            f"{format_bytes(miss.limit_bytes)} ({format_bytes(miss.capacity_bytes)} less "
            f"{res.headroom:.0%} headroom); its largest part is {part} ({format_bytes(part_bytes)})")
    if w.wb.total_bytes > total_mem:
        text += f"; the weights alone ({format_bytes(w.wb.total_bytes)}) exceed all the memory tried"
    return text


def _first_fit(w: _Workload, gpus, max_gpus, headroom, allow_offload, host_ram_bytes) -> F.Candidate | None:
    res = w.search(gpus, max_gpus=max_gpus, headroom=headroom, allow_offload=allow_offload,
                   host_ram_bytes=host_ram_bytes)
    if not res.fits:
        return None
    full = [c for c in res.cheapest if not c.offload_layers]
    return (full or list(res.cheapest))[0]


def _suggestions(w: _Workload, gpus, max_gpus, headroom, allow_offload, host_ram_bytes) -> list[dict]:
    """The smallest change along each axis that makes something fit."""
    lm, out = w.lm, []

    def variant(**kw) -> _Workload:
        base = dict(quantization=w.quantization, dtype=w.dtype, kv_cache_dtype=w.kv, context=w.context,
                    batch=w.batch)
        base.update(kw)
        return _Workload(lm, **base)

    def first_fit(v: _Workload) -> F.Candidate | None:
        return _first_fit(v, gpus, max_gpus, headroom, allow_offload, host_ram_bytes)

    def add(change: str, value, text: str, c: F.Candidate):
        out.append({"change": change, "value": value, "text": text, "fits_on": c.label(),
                    "memory_per_gpu": c.need_bytes, "cost_per_hour_usd": c.cost_per_hour_usd})

    # more GPUs: whole nodes of data-center parts
    dc = [g for g in gpus if g.category in F.MULTI_NODE_CATEGORIES]
    if dc and max_gpus < 64:
        res = w.search(dc, max_gpus=64, headroom=headroom, allow_offload=False)
        if res.fits:
            c = min(res.fitting, key=lambda c: (c.count, c.cost_per_hour_usd is None, c.cost_per_hour_usd or 0))
            add("gpus", c.count, f"use {c.count} GPUs ({c.nodes} node(s))", c)
    # quantize to a named format
    for name, v in _smaller_formats(w, variant):
        c = first_fit(v)
        if c is not None:
            add("quantization", name, f"quantize the weights to {name} ({format_bytes(v.wb.total_bytes)})", c)
            break
    # fp8 KV cache
    if kv_bits(w.kv) > 8:
        c = first_fit(variant(kv_cache_dtype="fp8"))
        if c is not None:
            add("kv_cache_dtype", "fp8", "store the KV cache in fp8 (half of 16-bit)", c)
    # shorter context
    if w.context > 256:
        found = _largest_change(256, w.context - 1, lambda n: first_fit(variant(context=n)), _round_ctx)
        if found is not None:
            n, c = found
            add("max_model_len", n, f"shorten the context to {n:,} tokens", c)
    # fewer sequences
    if w.batch > 1:
        found = _largest_change(1, w.batch - 1, lambda b: first_fit(variant(batch=b)))
        if found is not None:
            b, c = found
            add("batch_size", b, f"serve {b} concurrent sequence(s) instead of {w.batch}", c)
    if all(s["change"] == "gpus" for s in out):
        _combined(w, variant, first_fit, add)
    if not out:
        out.append({"change": None, "value": None, "text": "no single change found: the weights need more memory "
                    "than any configuration tried, even at 2-bit; try a smaller model", "fits_on": None})
    return out


def _combined(w: _Workload, variant, first_fit, add) -> None:
    """No single change fits: the least quantization with which some context fits, and that context."""
    for name, _ in _smaller_formats(w, variant):
        found = _largest_change(256, w.context, lambda n: first_fit(variant(quantization=name, context=n)),
                                _round_ctx)
        if found is not None:
            n, c = found
            add("quantization+max_model_len", [name, n],
                f"quantize the weights to {name} and shorten the context to {n:,} tokens", c)
            return


def _smaller_formats(w: _Workload, variant):
    """(name, workload) for each format of :data:`QUANT_LADDER` that exists for the model and stores fewer bits per
    weight than the workload's own, most precise first."""
    for name in QUANT_LADDER:
        try:
            v = variant(quantization=name)
        except (InvalidRequest, UnknownName):
            continue
        if v.wb.bits_per_weight >= w.wb.bits_per_weight - 0.01:
            continue
        yield name, v


def _largest_change(lo: int, hi: int, first_fit_at, rounding=lambda n: n) -> tuple[int, F.Candidate] | None:
    """The largest value in [lo, hi] (after ``rounding``) at which ``first_fit_at`` finds a candidate, with that
    candidate; each rounded value is tried once."""
    cache: dict[int, F.Candidate | None] = {}

    def fits(n: int) -> bool:
        n = rounding(n)
        if n not in cache:
            cache[n] = first_fit_at(n)
        return cache[n] is not None

    n = F.largest_fitting(lo, hi, fits)
    if n is None:
        return None
    n = rounding(n)
    return n, cache[n]


def _round_ctx(n: int) -> int:
    """Round a context down to a multiple of 256 tokens (what people type), never below 256."""
    return max(256, n // 256 * 256)


_TRAINING_FLAGS = {  # a suggested change as the command-line flags that make it
    "method": lambda v: f"--method {v}", "gradient_checkpointing": lambda v: "--gradient-checkpointing",
    "zero": lambda v: f"--zero {v}", "batch_size": lambda v: f"--batch-size {v}",
}


def _plan_fit_training(lm, gpus, *, max_gpus, headroom, top, training_tokens=None, **training) -> dict:
    import importlib

    try:
        training_api = importlib.import_module("vramplan.training_api")
    except ModuleNotFoundError as exc:
        if exc.name == "vramplan.training_api":
            raise InvalidRequest("training fits need vramplan.training_api, which this build does not have",
                                 field="workload") from None
        raise
    counts = sorted({c for g in gpus for c, _ in F.gpu_counts(g, max_gpus)})
    need: dict[int, dict] = {}
    for n in counts:
        need[n] = training_api.plan_training(lm, gpus=n, **training)
    tokens = tokens_arg(training_tokens, "training_tokens") if training_tokens else 0
    method = str(training.get("method", "full"))
    recompute = bool(training.get("gradient_checkpointing", False))
    rows, fitting = [], []
    for g in gpus:
        limit = F.limit_for(g, headroom)
        chosen = None
        for n, nodes in F.gpu_counts(g, max_gpus):
            total = need[n]["memory"]["total"]
            row = {"label": f"{n} x {g.name}", "gpu": g.name, "gpu_key": g.key, "count": n, "nodes": nodes,
                   "memory_per_gpu": total, "limit_per_gpu": limit, "fits": total <= limit,
                   "cost_per_hour_usd": None if g.price_per_hour_usd is None else round(g.price_per_hour_usd * n, 2)}
            if row["fits"] and tokens:
                t = T.training_time(lm.spec, g, tokens=tokens, n_gpus=n, method=method if method in
                                    T.TRAINING_METHODS else "full", recompute=recompute)
                if t is not None:
                    row["training_time"] = t.as_dict()
                    row["tokens_per_s"] = tokens / (t.wall_hours.expected * 3600)
                    if g.price_per_hour_usd is not None:
                        row["cost_usd"] = round(t.gpu_hours.expected * g.price_per_hour_usd, 2)
            if row["fits"]:
                fitting.append(row)
                chosen = chosen or row
        if chosen is None:  # the closest miss: the count that needs the least per GPU
            n_min = min((c for c, _ in F.gpu_counts(g, max_gpus)), key=lambda c: need[c]["memory"]["total"])
            chosen = {"label": f"{n_min} x {g.name}", "gpu": g.name, "gpu_key": g.key, "count": n_min,
                      "fits": False, "memory_per_gpu": need[n_min]["memory"]["total"], "limit_per_gpu": limit}
        rows.append(chosen)
    # cheapest: each GPU kind's fewest-GPU fit (more of the same GPU only costs more per hour), by the cost of the
    # token budget when one is given, else by the hourly price; unknown prices last
    minimal = [r for r in rows if r.get("fits")]
    cheapest = sorted(minimal, key=lambda r: (r.get("cost_usd", r["cost_per_hour_usd"]) is None,
                                              r.get("cost_usd", r["cost_per_hour_usd"]) or 0,
                                              -(r.get("tokens_per_s") or 0)))
    fastest = sorted(fitting, key=lambda r: (-(r.get("tokens_per_s") or 0), r["cost_per_hour_usd"] is None,
                                             r["cost_per_hour_usd"] or 0))
    out = {"model": _model_summary(lm), "workload": {"kind": "training", **training,
                                                     "training_tokens": tokens or None},
           "headroom": headroom, "fits": bool(fitting), "by_gpu": rows, "cheapest": cheapest[:top],
           "fastest": fastest[:top],
           "explain": ["training memory per GPU from vramplan.training_api.plan_training at each GPU count "
                       "(data parallel; ZeRO/FSDP sharding as requested)",
                       "fastest ranks by training tokens/s when training_tokens is given (6P per token, 8P with "
                       "gradient checkpointing; MFU band in vramplan speed)"]}
    if not fitting:
        smallest = min(need.values(), key=lambda r: r["memory"]["total"])
        out["reason"] = (f"the smallest training need per GPU is {format_bytes(smallest['memory']['total'])}, more "
                         f"than any GPU tried can hold less {headroom:.0%} headroom")
        sugg = []
        from .errors import VramplanError

        singles = (("method", {"method": "qlora"}), ("method", {"method": "lora"}),
                   ("gradient_checkpointing", {"gradient_checkpointing": True}),
                   ("zero", {"zero": 3}), ("batch_size", {"batch_size": 1}))
        combos = (("zero+gradient_checkpointing", {"zero": 3, "gradient_checkpointing": True, "batch_size": 1}),
                  ("method+gradient_checkpointing", {"method": "qlora", "gradient_checkpointing": True,
                                                     "batch_size": 1}))
        for group in (singles, combos):
            for change, kw in group:
                if all(training.get(k) == v for k, v in kw.items()):
                    continue
                found = None
                for n in counts:  # the fewest GPUs that fit with this change
                    try:
                        r = training_api.plan_training(lm, gpus=n, **{**training, **kw})
                    except (TypeError, VramplanError):
                        break
                    fits_on = [g.name for g in gpus if any(c == n for c, _ in F.gpu_counts(g, max_gpus))
                               and r["memory"]["total"] <= F.limit_for(g, headroom)]
                    if fits_on:
                        found = (n, fits_on[0], r["memory"]["total"])
                        break
                if found:
                    text = " ".join(_TRAINING_FLAGS[k](v) for k, v in kw.items())
                    sugg.append({"change": change, "value": kw if len(kw) > 1 else next(iter(kw.values())),
                                 "text": f"add {text}", "fits_on": f"{found[0]} x {found[1]}",
                                 "memory_per_gpu": found[2]})
            if sugg:
                break
        if not sugg:
            sugg.append({"change": None, "value": None, "fits_on": None,
                         "text": "no single or combined change tried (QLoRA, ZeRO-3, gradient checkpointing, "
                                 "batch 1) fits these GPUs: use GPUs with more memory, more of them, or a smaller "
                                 "model"})
        out["suggestions"] = sugg
    return out



def fit_summary(lm, unit: str = "GiB") -> dict:
    """Which GPUs fit the model in its own format at a modest workload (8k context or less, one sequence); sizes in
    the text in ``unit`` (GiB or GB)."""
    lm = load_model(lm)
    r = plan_fit(lm, top=3)
    wl = r["workload"]
    single = [c for c in r["by_gpu"] if c["fits"] and c["count"] == 1 and not c["offload_layers"]
              and not c.get("expert_offload")]  # host-RAM plans are listed under cheapest with their RAM
    lines = [f"{wl['weights_label']}, {wl['max_model_len']:,}-token context, {wl['concurrent_sequences']} "
             f"sequence, {r['headroom']:.0%} headroom:"]
    if single:
        names = sorted(single, key=lambda c: c["gpu_memory"])
        lines.append("  one GPU suffices: " + ", ".join(c["gpu"] for c in names[:6])
                     + (f" (+{len(names) - 6} more)" if len(names) > 6 else ""))
    for key in ("cheapest", "fastest"):
        lines.append(f"  {key}:")
        for c in r[key]:
            spd = c.get("decode_tokens_per_s", {}).get("expected")
            cost = c.get("cost_per_hour_usd")
            ram = c.get("host_ram_for_offload")
            lines.append(f"    {c['label']}: {format_bytes(c['memory_per_gpu'], unit)} per GPU"
                         + (f" + {format_bytes(ram, unit)} host RAM" if ram else "")
                         + (f", ~{spd:,.1f} tokens/s" if spd and spd < 10 else f", ~{spd:,.0f} tokens/s" if spd else "")
                         + (f", ${cost:.2f}/h" if cost else ", no price listed" if key == "cheapest" else ""))
    if not r["fits"]:
        lines.append("  " + r["reason"])
        for s in r.get("suggestions", []):
            lines.append(f"  - {s['text']}" + (f" -> {s['fits_on']}" if s.get("fits_on") else ""))
    lines.append("  (vramplan fit MODEL for every GPU, --max-model-len / --batch-size / -q to change the workload)")
    return {"workload": wl, "fits": r["fits"], "single_gpu": [c["gpu_key"] for c in single],
            "cheapest": r["cheapest"], "fastest": r["fastest"], "text": "\n".join(lines)}


__all__ = ["plan_fit", "plan_speed", "hardware_report", "launch_commands", "fit_summary", "speed_summary",
           "build_stack", "compute_dtype"]
