"""Fit, speed, hardware and launch commands as plain dicts (the CLI's --json, the REST API and the web page).

    plan_fit(model, **workload)         which GPUs and how many fit, cheapest and fastest first; why not, and what
                                        would change it, when nothing fits
    plan_speed(model, **options)        decode tokens/s, prefill time, throughput by batch, training time (bands)
    hardware_report(model, **options)   host RAM, disk, power/PSU and interconnect for one configuration
    launch_commands(model, **options)   vllm serve / sglang / llama-server / ollama invocations + a streaming client
    fit_summary(lm), speed_summary(lm)  the short sections of the main ``vramplan MODEL`` report

The numbers come from the core (``core.fit``, ``core.throughput``, ``core.hardware_report``); this module turns names
into objects, builds the per-layer memory pieces for each tensor-parallel size, and writes the explanations.
"""

from __future__ import annotations

from math import ceil

from .api import load_model, model_weight_bytes, resolve_format, tokens_arg
from .core import fit as F
from .core import hardware_report as HR
from .core import throughput as T
from .core.hardware import GPU
from .core.memory import CUDA_CONTEXT_BYTES, kv_bits, kv_cache, prefill_activation_bytes, weights_per_gpu_bytes
from .core.model import count_params
from .core.precision import WeightBytes, per_layer_bytes
from .errors import InvalidRequest, UnknownName, suggest
from .units import GiB_bytes, format_bytes, parse_size

TP_SIZES = (1, 2, 4, 8)
DEFAULT_CONTEXT = 8192
"""Context planned when none is given (or the model's own maximum, if smaller)."""
from .core.memory import PREFILL_CHUNK_TOKENS  # noqa: E402  (the same chunk as plain accounting)
QUANT_LADDER = ("fp8", "awq", "Q4_K_M", "Q3_K_M", "Q2_K")
"""Formats tried, in order of decreasing precision, when suggesting a quantization that would fit."""
SUMMARY_GPUS = ("h100-sxm-80gb", "a100-sxm4-80gb", "rtx-4090-24gb", "apple-m2-ultra-192gb")
"""Reference GPUs of the short speed summary in the main report."""


# ----- small parsers ----------------------------------------------------------------------------------------------

def _gpu(name) -> GPU:
    from .catalog.gpus import get_gpu

    if isinstance(name, GPU):
        return name
    return get_gpu(str(name))


def _gpu_list(gpus=None, category: str | None = None) -> tuple[GPU, ...]:
    from .catalog.gpus import list_gpus

    if gpus in (None, "", [], ()):
        return tuple(list_gpus(category))
    if isinstance(gpus, str):
        gpus = [g for g in gpus.split(",") if g.strip()]
    out = []
    for g in gpus:
        gpu = _gpu(g)
        if gpu not in out:
            out.append(gpu)
    if category:
        out = [g for g in out if g.category == category]
    return tuple(out)


def _int(value, name: str, lo: int = 1, hi: int = 1 << 20) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}", field=name)
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo:,} and {hi:,}, got {value:,}", field=name)
    return value


def _fraction(value, name: str, lo: float = 0.0, hi: float = 0.9) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {value!r}", field=name) from None
    if not lo <= v <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}, got {v}", field=name)
    return v


def _size(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field=name) from None


def _context(lm, max_model_len) -> int:
    ctx = tokens_arg(max_model_len)
    if ctx:
        return ctx
    top = lm.spec.max_position_embeddings or DEFAULT_CONTEXT
    return min(top, DEFAULT_CONTEXT)


def compute_dtype(fmt) -> str:
    """The arithmetic a format runs at: fp8 checkpoints and fp8 quantization as W8A8, NVFP4 as W4A4 (where the GPU
    has FP4 tensor cores), every weight-only format (int4, GPTQ, AWQ, NF4, GGUF) dequantized to 16-bit."""
    name = str(getattr(fmt, "name", "")).lower()
    if "nvfp4" in name:
        return "fp4"
    if "fp8" in name:
        return "fp8"
    return "bf16"


def _valid_tp(spec):
    """vLLM's rule: TP divides the attention heads, and KV heads are split evenly or replicated evenly."""
    def ok(tp: int) -> bool:
        if tp == 1:
            return True
        if spec.num_heads % tp:
            return False
        n_kv = spec.num_kv_heads or spec.num_heads
        if spec.is_mla:
            return True
        return n_kv % tp == 0 or tp % n_kv == 0
    return ok


# ----- the memory pieces --------------------------------------------------------------------------------------------

def _layer_kv(spec, context: int, batch: int, kv_dtype: str, tp: int) -> tuple[int, ...]:
    """KV bytes of each layer for the workload at ``tp`` (per rank), from the core's per-kind totals."""
    kv = kv_cache(spec, context, batch, kv_dtype, tp)
    counts: dict[str, int] = {}
    for k in spec.kinds:
        counts[k] = counts.get(k, 0) + 1
    by_kind = dict(kv.by_kind)
    return tuple(ceil(by_kind.get(k, 0) / counts[k]) for k in spec.kinds)


def build_stack(lm, fmt, wb: WeightBytes, *, context: int, batch: int, kv_dtype: str,
                runtime_bytes: int = CUDA_CONTEXT_BYTES) -> F.StackMemory:
    """The model and workload as :class:`core.fit.StackMemory`: per-layer weights (their exact total split in the
    proportions of the per-layer tensor bytes), per-layer KV, embedding, head, the activation peak of one prefill
    chunk, and the runtime, for each tensor-parallel size the model allows."""
    spec = lm.spec
    groups = wb.as_dict()
    emb = groups.get("embedding", 0)
    head = emb if spec.tie_embeddings else groups.get("lm_head", 0)
    layer_share = per_layer_bytes(spec, fmt)
    if not sum(layer_share):
        layer_share = [1] * spec.num_layers
    share_total = sum(layer_share)
    chunk = min(context, PREFILL_CHUNK_TOKENS)
    valid = _valid_tp(spec)
    shards = []
    for tp in TP_SIZES:
        if not valid(tp):
            continue
        total_rank = weights_per_gpu_bytes(spec, wb, tp, 1)
        emb_rank = ceil(emb / tp)
        head_rank = ceil(head / tp)
        outside = emb_rank + (0 if spec.tie_embeddings else head_rank)
        layer_part = max(total_rank - outside, 0)
        layer_w = [layer_part * s // share_total for s in layer_share]
        layer_w[-1] += layer_part - sum(layer_w)
        shards.append(F.TPShard(tp, tuple(layer_w), _layer_kv(spec, context, batch, kv_dtype, tp), emb_rank,
                                head_rank, prefill_activation_bytes(spec, chunk, 1, tp), runtime_bytes))
    return F.StackMemory(tuple(shards), spec.tie_embeddings, label=lm.name)


class _Workload:
    """One model + format + workload, with its stack and a cached speed function for fit candidates."""

    def __init__(self, lm, *, quantization=None, dtype="auto", kv_cache_dtype="auto", context: int,
                 batch: int, host_bytes_per_s: float = T.DEFAULT_HOST_BYTES_PER_S):
        self.lm = lm
        self.quantization = quantization
        self.dtype = dtype
        self.kv = kv_cache_dtype
        self.context = context
        self.batch = batch
        self.fmt = resolve_format(lm, quantization, dtype)
        wb = model_weight_bytes(lm.spec, self.fmt)
        if lm.stored_weight_bytes and not quantization and dtype in (None, "", "auto"):
            wb = WeightBytes(wb.groups, lm.stored_weight_bytes, wb.quantized_params, wb.kept_params,
                             wb.format_name)
        self.wb = wb
        self.stack = build_stack(lm, self.fmt, wb, context=context, batch=batch, kv_dtype=kv_cache_dtype)
        self.host_bytes_per_s = host_bytes_per_s
        self._speeds: dict = {}

    def layout(self, c: F.Candidate) -> T.Layout:
        return T.Layout(c.tp, c.pp, c.host_fraction, c.nodes, self.host_bytes_per_s)

    def decode(self, c: F.Candidate) -> T.DecodeSpeed | None:
        key = (c.gpu.key, c.tp, c.pp, c.nodes, c.offload_layers)
        if key not in self._speeds:
            if c.gpu.hbm_bytes_per_s <= 0:
                self._speeds[key] = None
            else:
                self._speeds[key] = T.decode_speed(self.lm.spec, self.wb, c.gpu, context=self.context,
                                                   batch=self.batch, kv_dtype=self.kv, layout=self.layout(c),
                                                   compute_dtype=compute_dtype(self.fmt))
        return self._speeds[key]

    def speed(self, c: F.Candidate) -> float | None:
        d = self.decode(c)
        return None if d is None else d.tokens_per_s.expected

    def search(self, gpus, *, max_gpus=8, headroom=F.DEFAULT_HEADROOM, allow_offload=True, host_ram_bytes=None,
               counts=None) -> F.SearchResult:
        return F.search(self.stack, gpus, max_gpus=max_gpus, headroom=headroom, valid_tp=_valid_tp(self.lm.spec),
                        speed_fn=self.speed, allow_offload=allow_offload, host_ram_bytes=host_ram_bytes,
                        counts=counts)

    def describe(self) -> dict:
        return {"kind": "inference", "weights_format": self.fmt.name,
                "weights_label": getattr(self.fmt, "label", self.fmt.name), "weights_bytes": self.wb.total_bytes,
                "max_model_len": self.context, "concurrent_sequences": self.batch, "kv_cache_dtype": self.kv,
                "prefill_chunk_tokens": min(self.context, PREFILL_CHUNK_TOKENS)}


def _candidate_dict(c: F.Candidate, w: _Workload | None = None) -> dict:
    out = {"label": c.label(), "gpu": c.gpu.name, "gpu_key": c.gpu.key, "category": c.gpu.category,
           "count": c.count, "nodes": c.nodes, "tensor_parallel_size": c.tp, "pipeline_parallel_size": c.pp,
           "stage_layers": list(c.stage_layers), "offload_layers": c.offload_layers,
           "memory_per_gpu": c.need_bytes, "limit_per_gpu": c.limit_bytes, "gpu_memory": c.capacity_bytes,
           "spare_per_gpu": c.spare_bytes, "fits": c.fits, "components": dict(c.components),
           "host_ram_for_offload": c.host_bytes or None, "cost_per_hour_usd":
               None if c.cost_per_hour_usd is None else round(c.cost_per_hour_usd, 2)}
    if c.pp > 1:
        out["uneven_stages"] = len(set(c.stage_layers)) > 1
    if w is not None and c.fits:
        d = w.decode(c)
        if d is not None:
            out["decode_tokens_per_s"] = d.tokens_per_s.as_dict(3)
            out["throughput_tokens_per_s"] = d.throughput_tokens_per_s.as_dict(3)
            out["decode_bound"] = d.bound
    if c.notes:
        out["notes"] = list(c.notes)
    return out


# ----- fit --------------------------------------------------------------------------------------------------------

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
    batch = _int(batch_size, "batch_size")
    kv_bits(kv_cache_dtype)
    ctx = _context(lm, max_model_len)
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


def _model_summary(lm) -> dict:
    pc = count_params(lm.spec)
    out = {"name": lm.name, "params": pc.total, "active_params": pc.active}
    if lm.hf_id:
        out["hf_id"] = lm.hf_id
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
                     "in host RAM (-ngl); those are slow: host RAM bandwidth bounds them")
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
    own_bits = w.wb.bits_per_weight
    for name in QUANT_LADDER:
        try:
            v = variant(quantization=name)
        except (InvalidRequest, UnknownName):
            continue
        if v.wb.bits_per_weight >= own_bits - 0.01:
            continue
        c = _first_fit(v, gpus, max_gpus, headroom, allow_offload, host_ram_bytes)
        if c is not None:
            add("quantization", name, f"quantize the weights to {name} ({format_bytes(v.wb.total_bytes)})", c)
            break
    # fp8 KV cache
    if kv_bits(w.kv) > 8:
        v = variant(kv_cache_dtype="fp8")
        c = _first_fit(v, gpus, max_gpus, headroom, allow_offload, host_ram_bytes)
        if c is not None:
            add("kv_cache_dtype", "fp8", "store the KV cache in fp8 (half of 16-bit)", c)
    # shorter context
    if w.context > 256:
        cache: dict[int, F.Candidate | None] = {}

        def fits_ctx(n: int) -> bool:
            if n not in cache:
                cache[n] = _first_fit(variant(context=n), gpus, max_gpus, headroom, allow_offload, host_ram_bytes)
            return cache[n] is not None

        n = F.largest_fitting(256, w.context - 1, lambda k: fits_ctx(_round_ctx(k)))
        if n is not None:
            n = _round_ctx(n)
            add("max_model_len", n, f"shorten the context to {n:,} tokens", cache[n])
    # fewer sequences
    if w.batch > 1:
        cache_b: dict[int, F.Candidate | None] = {}

        def fits_b(b: int) -> bool:
            if b not in cache_b:
                cache_b[b] = _first_fit(variant(batch=b), gpus, max_gpus, headroom, allow_offload, host_ram_bytes)
            return cache_b[b] is not None

        b = F.largest_fitting(1, w.batch - 1, fits_b)
        if b is not None:
            add("batch_size", b, f"serve {b} concurrent sequence(s) instead of {w.batch}", cache_b[b])
    if all(s["change"] == "gpus" for s in out):
        _combined(w, out, variant, gpus, max_gpus, headroom, allow_offload, host_ram_bytes, add)
    if not out:
        out.append({"change": None, "value": None, "text": "no single change found: the weights need more memory "
                    "than any configuration tried, even at 2-bit; try a smaller model", "fits_on": None})
    return out


def _combined(w, out, variant, gpus, max_gpus, headroom, allow_offload, host_ram_bytes, add) -> None:
    """No single change fits: the least quantization with which some context fits, and that context."""
    for name in QUANT_LADDER:
        try:
            v = variant(quantization=name)
        except (InvalidRequest, UnknownName):
            continue
        if v.wb.bits_per_weight >= w.wb.bits_per_weight - 0.01:
            continue
        cache: dict[int, F.Candidate | None] = {}

        def fits_ctx(n: int, name=name) -> bool:
            n = _round_ctx(n)
            if n not in cache:
                cache[n] = _first_fit(variant(quantization=name, context=n), gpus, max_gpus, headroom,
                                      allow_offload, host_ram_bytes)
            return cache[n] is not None

        n = F.largest_fitting(256, w.context, fits_ctx)
        if n is not None:
            n = _round_ctx(n)
            add("quantization+max_model_len", [name, n],
                f"quantize the weights to {name} and shorten the context to {n:,} tokens", cache[n])
            return


def _round_ctx(n: int) -> int:
    """Round a context down to a multiple of 256 tokens (what people type), never below 256."""
    return max(256, n // 256 * 256)


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
        rows.append(chosen or {"label": f"{F.gpu_counts(g, max_gpus)[-1][0]} x {g.name}", "gpu": g.name,
                               "gpu_key": g.key, "fits": False,
                               "memory_per_gpu": need[F.gpu_counts(g, max_gpus)[-1][0]]["memory"]["total"],
                               "limit_per_gpu": limit})
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
                try:
                    r = training_api.plan_training(lm, gpus=max(counts), **{**training, **kw})
                except (TypeError, VramplanError):
                    continue
                fits_on = [g.name for g in gpus if r["memory"]["total"] <= F.limit_for(g, headroom)]
                if fits_on:
                    text = ", ".join(f"{k}={v}" for k, v in kw.items())
                    sugg.append({"change": change, "value": kw if len(kw) > 1 else next(iter(kw.values())),
                                 "text": f"set {text}", "fits_on": f"{max(counts)} x {fits_on[0]}",
                                 "memory_per_gpu": r["memory"]["total"]})
            if sugg:
                break
        if not sugg:
            sugg.append({"change": None, "value": None, "fits_on": None,
                         "text": "no single or combined change tried (QLoRA, ZeRO-3, gradient checkpointing, "
                                 "batch 1) fits these GPUs: use GPUs with more memory, more of them, or a smaller "
                                 "model"})
        out["suggestions"] = sugg
    return out


# ----- speed ------------------------------------------------------------------------------------------------------

def _layout_for(w: _Workload, gpu: GPU, tp, pp, count=None, n_gpu_layers=None, headroom=F.DEFAULT_HEADROOM,
                max_gpus: int = 64) -> tuple[F.Candidate | None, bool]:
    """The configuration to time: the given TP/PP, or the fewest GPUs of this kind that fit."""
    spec = w.lm.spec
    if n_gpu_layers is not None and _int(n_gpu_layers, "n_gpu_layers", 0, 100000) < spec.num_layers:
        plan = F.offload_at(w.stack, _int(n_gpu_layers, "n_gpu_layers", 0, 100000))
        s = w.stack.shard(1)
        limit = F.limit_for(gpu, headroom)
        comps = (("weights_and_kv", plan.gpu_bytes - s.activation_bytes - s.runtime_bytes), ("activations",
                 s.activation_bytes), ("runtime", s.runtime_bytes))
        c = F.Candidate(gpu, 1, 1, 1, 1, (plan.gpu_layers,), plan.gpu_bytes, limit, F.capacity_for(gpu),
                        plan.gpu_bytes <= limit, comps, plan.host_layers, plan.host_bytes, plan.host_fraction)
        return c, True
    if tp or pp or count:
        tp = _int(tp or 1, "tensor_parallel_size", 1, 1024)
        pp = _int(pp or 1, "pipeline_parallel_size", 1, 1024)
        n = tp * pp
        if tp not in w.stack.tp_sizes:
            raise InvalidRequest(f"tensor_parallel_size {tp} is not usable for {w.lm.name} (it must divide "
                                 f"{spec.num_heads} attention heads, and be 1, 2, 4 or 8)",
                                 field="tensor_parallel_size")
        if pp > spec.num_layers:
            raise InvalidRequest(f"pipeline_parallel_size {pp} exceeds the {spec.num_layers} layers",
                                 field="pipeline_parallel_size")
        nodes = max(1, -(-n // 8)) if not gpu.unified_memory else 1
        ln = F.layout_need(w.stack, tp, pp)
        limit = F.limit_for(gpu, headroom)
        return F.Candidate(gpu, n, nodes, tp, pp, ln.stage_layers, ln.need_bytes, limit, F.capacity_for(gpu),
                           ln.need_bytes <= limit, ln.components), True
    res = w.search([gpu], max_gpus=max_gpus, headroom=headroom, allow_offload=True)
    if res.fitting:
        full = [c for c in res.fitting if not c.offload_layers]
        return (min(full, key=lambda c: c.count) if full else res.fitting[0]), False
    return (res.by_gpu[0] if res.by_gpu else None), False


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
    batch = _int(batch_size, "batch_size")
    kv_bits(kv_cache_dtype)
    ctx = _context(lm, max_model_len)
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
    cand, explicit = _layout_for(w, g, tensor_parallel_size, pipeline_parallel_size, None, n_gpu_layers, headroom)
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
    out["efficiency"] = {"decode_mbu": dec.mbu.as_dict(), "host_mbu": T.MBU_HOST.as_dict(),
                         "prefill_mfu": T.MFU_PREFILL.as_dict(), "training_mfu": T.MFU_TRAINING.as_dict(),
                         "comm_efficiency": T.COMM_EFFICIENCY, "allreduce_latency_s": T.ALLREDUCE_LATENCY_S}
    out["explain"] = _speed_explain(w, dec, pre, cand)
    return out


def _concurrency(w: _Workload, g: GPU, cand: F.Candidate, layout: T.Layout, cdt: str, headroom: float) -> dict:
    """How many sequences of the planned context fit beside the weights, and the throughput at a few batches."""
    spec = w.lm.spec
    one = build_stack(w.lm, w.fmt, w.wb, context=w.context, batch=1, kv_dtype=w.kv)
    if cand.offload_layers:
        max_seq = 1
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


def _speed_explain(w: _Workload, dec: T.DecodeSpeed, pre, cand: F.Candidate) -> list[str]:
    sb = dec.step_bytes
    lines = [f"decode step reads {format_bytes(sb.weights_bytes)} of weights (dense {format_bytes(sb.dense_bytes)}, "
             f"head {format_bytes(sb.head_bytes)}"
             + (f", routed experts {format_bytes(sb.experts_read_bytes)} of {format_bytes(sb.experts_total_bytes)}"
                f" = {sb.experts_touched_per_layer:.1f} of {w.lm.spec.num_experts} per layer at batch {sb.batch}"
                if w.lm.spec.is_moe else "")
             + f") + {format_bytes(sb.kv_bytes)} of KV cache ({sb.batch} x {sb.context:,} tokens)",
             f"time per token = bytes per GPU / (bandwidth x MBU {dec.mbu.low}-{dec.mbu.high}, expected "
             f"{dec.mbu.expected}) + communication; {dec.bound}-bound at this batch"]
    lines += list(dec.notes)
    if pre is not None:
        lines.append(f"prefill of {pre.tokens:,} tokens: {pre.flops:.3g} FLOPs (2 x active params x tokens + "
                     f"attention) at {pre.flop_per_s / 1e12:.0f} TFLOP/s dense x MFU {pre.mfu.low}-{pre.mfu.high}")
    lines.append("bands: low/expected/high from the efficiency ranges; sources under 'efficiency'")
    return lines


# ----- hardware -----------------------------------------------------------------------------------------------------

def hardware_report(model, *, gpu=None, tensor_parallel_size=None, pipeline_parallel_size=None, quantization=None,
                    dtype: str = "auto", kv_cache_dtype: str = "auto", max_model_len=None, batch_size: int = 1,
                    n_gpu_layers=None, headroom: float = F.DEFAULT_HEADROOM) -> dict:
    """Host RAM, disk, power/PSU and interconnect for one configuration (the given GPU and layout, or the cheapest
    configuration that fits), with the formulas and constants stated."""
    lm = load_model(model)
    batch = _int(batch_size, "batch_size")
    kv_bits(kv_cache_dtype)
    ctx = _context(lm, max_model_len)
    headroom = _fraction(headroom, "headroom")
    w = _Workload(lm, quantization=quantization, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                  batch=batch)
    if gpu:
        cand, _ = _layout_for(w, _gpu(gpu), tensor_parallel_size, pipeline_parallel_size, None, n_gpu_layers,
                              headroom)
    else:
        from .catalog.gpus import list_gpus

        res = w.search(list_gpus(), headroom=headroom, allow_offload=False)
        usual = [c for c in res.by_gpu if c.fits and c.gpu.category in ("datacenter", "workstation", "consumer")]
        pool = usual or [c for c in res.by_gpu if c.fits]
        # the least hardware that runs it: fewest GPUs, then the least total GPU memory
        cand = min(pool, key=lambda c: (c.count, c.count * c.capacity_bytes)) if pool else res.closest_miss()
    if cand is None:
        raise InvalidRequest(f"no configuration to report for {lm.name}", field="gpu")
    g = cand.gpu
    offload_bytes = cand.host_bytes if cand.offload_layers else 0
    ram = HR.host_ram(w.wb.total_bytes, offload_bytes=offload_bytes, gpu_processes=cand.count,
                      unified_memory=g.unified_memory)
    dsk = HR.disk(w.wb.total_bytes)
    pw = HR.power(g, cand.count, cand.nodes)
    dec = None
    if g.hbm_bytes_per_s > 0:
        dec = T.decode_speed(lm.spec, w.wb, g, context=ctx, batch=batch, kv_dtype=kv_cache_dtype,
                             layout=w.layout(cand), compute_dtype=compute_dtype(w.fmt))
    pre = T.prefill_time(lm.spec, w.wb, g, tokens=min(ctx, 2048), layout=w.layout(cand),
                         compute_dtype=compute_dtype(w.fmt))
    ic = HR.interconnect(lm.spec, g, tp=cand.tp, pp=cand.pp, nodes=cand.nodes,
                         decode_tokens_per_s=dec.throughput_tokens_per_s.expected if dec else 0.0,
                         prefill_tokens_per_s=(pre.tokens / pre.seconds.expected) if pre else 0.0)
    out = {"model": _model_summary(lm), "workload": w.describe(),
           "configuration": _candidate_dict(cand, w) | {"chosen": "as requested" if gpu else
                                                        "the least hardware that fits: fewest GPUs, then the least "
                                                        "GPU memory (data-center, workstation and consumer GPUs)"},
           "host_ram": ram.as_dict(), "disk": dsk.as_dict(), "power": pw.as_dict() if pw else None,
           "interconnect": ic.as_dict(),
           "article": {"ram": "the article recommends at least 256 GB of RAM for Llama 3.1 70B (>140 GB model), "
                              "512 GB-1 TB for several instances",
                       "storage": "NVMe SSDs of 1 TB or more", "power": "PSUs of 1200 W or higher",
                       "network": "10 Gbps Ethernet or higher between machines"}}
    if pw is None:
        out["power_note"] = f"the catalog has no power figure for {g.name}"
    out["text"] = _hardware_text(out, cand)
    return out


def _hardware_text(r: dict, cand: F.Candidate) -> str:
    ram, dsk, pw, ic = r["host_ram"], r["disk"], r["power"], r["interconnect"]
    lines = [f"configuration: {cand.label()}",
             f"host RAM: at least {format_bytes(ram['minimum'])}, recommended {format_bytes(ram['recommended'])} "
             f"-> install {ram['recommended_installed_GiB']} GiB (checkpoint {format_bytes(ram['checkpoint'])} in "
             f"the page cache" + (f", {format_bytes(ram['offloaded'])} of offloaded layers" if ram['offloaded']
                                   else "") + ")",
             f"disk: {format_bytes(dsk['needed'])} ({dsk['needed'] / 1e9:,.1f} GB) for the checkpoint; NVMe keeps "
             f"loading fast"]
    if pw:
        lines.append(f"power: {pw['total_W']:,.0f} W ({pw['gpus_W']:,.0f} W GPUs + {pw['host_W']:,.0f} W host)"
                     + (f", PSU {pw['psu_W']} W" if pw.get("psu_W") else "") + f"; {pw['note']}")
    lines.append(f"interconnect: {ic['verdict']}")
    return "\n".join(lines)


# ----- launch commands ----------------------------------------------------------------------------------------------

ENGINES = ("vllm", "sglang", "llama.cpp", "ollama")
PORTS = {"vllm": 8000, "sglang": 30000, "llama.cpp": 8080, "ollama": 11434}
_VLLM_QUANT = {"fp8": "fp8", "bnb-nf4": "bitsandbytes", "bitsandbytes": "bitsandbytes"}
_SGLANG_QUANT = {"fp8": "fp8"}
_LLAMACPP_KV = {"auto": "f16", "fp16": "f16", "bf16": "bf16", "f16": "f16", "float16": "f16", "bfloat16": "bf16",
                "fp8": "q8_0", "fp8_e4m3": "q8_0", "fp8_e5m2": "q8_0", "int8": "q8_0", "q8_0": "q8_0",
                "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "iq4_nl": "iq4_nl",
                "fp32": "f32", "float32": "f32", "f32": "f32"}
_VLLM_KV = {"fp8": "fp8", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2", "int8": "fp8", "q8_0": "fp8"}
_SGLANG_KV = {"fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2", "int8": "fp8_e4m3",
              "q8_0": "fp8_e4m3"}


def _shell(argv: list[str], env: dict | None = None) -> str:
    """One shell command, quoted; when long, each option and its value on a continuation line."""
    import shlex

    head = [f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items()]
    words = [shlex.quote(str(a)) for a in argv]
    one_line = " ".join(head + words)
    if len(one_line) <= 100:
        return one_line
    groups, i = [], 0
    while i < len(words):
        if words[i].startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            groups.append(f"{words[i]} {words[i + 1]}")
            i += 2
        else:
            groups.append(words[i])
            i += 1
    first_opt = next((k for k, g in enumerate(groups) if g.startswith("-")), len(groups))
    lines = [" ".join(head + groups[:first_opt])] + ["  " + g for g in groups[first_opt:]]
    return " \\\n".join(lines)


def launch_commands(model, *, gpu=None, tensor_parallel_size=None, pipeline_parallel_size=None,
                    max_model_len=None, quantization=None, dtype: str = "auto", kv_cache_dtype: str = "auto",
                    gpu_memory_utilization: float = 0.9, batch_size: int = 1, engine: str | None = None,
                    gguf_file: str | None = None, served_model_name: str | None = None, host: str = "0.0.0.0",
                    port=None, n_gpu_layers=None, headroom: float = F.DEFAULT_HEADROOM) -> dict:
    """The exact command lines that serve a plan: ``vllm serve``, ``python -m sglang.launch_server``,
    ``llama-server`` and Ollama (Modelfile + environment), plus an OpenAI-compatible streaming client in Python.

    TP/PP: as given, else the fewest GPUs of ``gpu`` that fit (TP=1 when no GPU is named). Uneven pipeline stages
    become ``VLLM_PP_LAYER_PARTITION``; a llama.cpp plan that offloads layers becomes ``-ngl``.
    """
    lm = load_model(model)
    if engine not in (None, "", "all") and engine not in ENGINES:
        raise UnknownName("engine", str(engine), suggest(str(engine), ENGINES))
    batch = _int(batch_size, "batch_size")
    util = _fraction(gpu_memory_utilization, "gpu_memory_utilization", 0.05, 1.0)
    kv_bits(kv_cache_dtype)
    ctx = _context(lm, max_model_len)
    w = _Workload(lm, quantization=quantization, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                  batch=batch)
    cand = None
    if gpu:
        cand, _ = _layout_for(w, _gpu(gpu), tensor_parallel_size, pipeline_parallel_size, None, n_gpu_layers,
                              headroom)
    tp = cand.tp if cand else _int(tensor_parallel_size or 1, "tensor_parallel_size", 1, 1024)
    pp = cand.pp if cand else _int(pipeline_parallel_size or 1, "pipeline_parallel_size", 1, 1024)
    if tp not in w.stack.tp_sizes:
        raise InvalidRequest(f"tensor_parallel_size {tp} is not usable for {lm.name} (it must divide "
                             f"{lm.spec.num_heads} attention heads, and be 1, 2, 4 or 8)", field="tensor_parallel_size")
    stages = cand.stage_layers if cand and cand.pp > 1 else (F.layout_need(w.stack, tp, pp).stage_layers
                                                             if pp > 1 else (lm.spec.num_layers,))
    name = served_model_name or lm.name
    repo = lm.hf_id or lm.name
    fmt_name = w.fmt.name
    from .core.gguf_mix import GGUFMixFormat

    is_gguf_mix = isinstance(w.fmt, GGUFMixFormat)
    commands: dict[str, dict] = {}
    want = ENGINES if engine in (None, "", "all") else (engine,)

    if "vllm" in want:
        argv = ["vllm", "serve", repo, "--served-model-name", name, "--host", host,
                "--port", str(port or PORTS["vllm"]), "--max-model-len", str(ctx),
                "--gpu-memory-utilization", f"{util:g}", "--max-num-seqs", str(batch)]
        if tp > 1:
            argv += ["--tensor-parallel-size", str(tp)]
        if pp > 1:
            argv += ["--pipeline-parallel-size", str(pp)]
        notes, env = [], {}
        if quantization and not is_gguf_mix:
            q = _VLLM_QUANT.get(fmt_name.lower())
            if q:
                argv += ["--quantization", q]
            else:
                notes.append(f"{fmt_name}: point vLLM at a checkpoint already quantized to it (vLLM reads its "
                             "quantization_config); there is no on-the-fly flag")
        if is_gguf_mix:
            notes.append("GGUF mixes are llama.cpp's format; serve them with llama-server or Ollama")
        if dtype not in (None, "", "auto"):
            argv += ["--dtype", dtype]
        kv = _VLLM_KV.get(kv_cache_dtype.lower())
        if kv:
            argv += ["--kv-cache-dtype", kv]
        if pp > 1 and len(set(stages)) > 1:
            env["VLLM_PP_LAYER_PARTITION"] = ",".join(str(s) for s in stages)
            notes.append("uneven pipeline stages (the embedding sits on the first, the head on the last)")
        if cand and cand.nodes > 1:
            notes.append(f"{cand.nodes} nodes: start a Ray cluster across them first (ray start --head / "
                         "ray start --address=...), then run this on the head node")
        commands["vllm"] = {"argv": argv, "env": env, "command": _shell(argv, env), "notes": notes,
                            "base_url": f"http://localhost:{port or PORTS['vllm']}/v1"}

    if "sglang" in want:
        argv = ["python", "-m", "sglang.launch_server", "--model-path", repo, "--served-model-name", name,
                "--host", host, "--port", str(port or PORTS["sglang"]), "--context-length", str(ctx),
                "--mem-fraction-static", f"{util:g}", "--max-running-requests", str(batch)]
        if tp > 1:
            argv += ["--tp-size", str(tp)]
        if pp > 1:
            argv += ["--pp-size", str(pp)]
        notes = []
        if quantization and not is_gguf_mix:
            q = _SGLANG_QUANT.get(fmt_name.lower())
            if q:
                argv += ["--quantization", q]
            else:
                notes.append(f"{fmt_name}: load a checkpoint already quantized to it")
        if is_gguf_mix:
            notes.append("GGUF mixes are llama.cpp's format; serve them with llama-server or Ollama")
        kv = _SGLANG_KV.get(kv_cache_dtype.lower())
        if kv:
            argv += ["--kv-cache-dtype", kv]
        if cand and cand.nodes > 1:
            notes.append(f"{cand.nodes} nodes: add --nnodes {cand.nodes} --node-rank N --dist-init-addr HEAD:PORT "
                         "on each node")
        commands["sglang"] = {"argv": argv, "env": {}, "command": _shell(argv), "notes": notes,
                              "base_url": f"http://localhost:{port or PORTS['sglang']}/v1"}

    gguf_mix = fmt_name.upper() if is_gguf_mix else "Q4_K_M"
    own_file = lm.provenance.removeprefix("GGUF file ") if lm.source == "gguf" else None
    gguf = gguf_file or own_file or f"{lm.name}-{gguf_mix}.gguf"
    ngl = lm.spec.num_layers + 1
    if cand and cand.offload_layers:
        ngl = lm.spec.num_layers - cand.offload_layers
    elif n_gpu_layers is not None:
        ngl = _int(n_gpu_layers, "n_gpu_layers", 0, 100000)
    lkv = _LLAMACPP_KV.get(kv_cache_dtype.lower(), "f16")
    if "llama.cpp" in want:
        argv = ["llama-server", "-m", gguf, "--alias", name, "--host", host,
                "--port", str(port or PORTS["llama.cpp"]), "-c", str(ctx * batch), "-np", str(batch),
                "-ngl", str(ngl), "-fa", "on"]
        if lkv != "f16":
            argv += ["--cache-type-k", lkv, "--cache-type-v", lkv]
        count = cand.count if cand else tp * pp
        notes = [f"-c is the total context: {batch} slot(s) x {ctx:,} tokens (llama-server divides -c by -np)"]
        if count > 1:
            argv += ["--split-mode", "layer", "--tensor-split", ",".join("1" for _ in range(count))]
            notes.append("llama.cpp splits layers over the GPUs (pipeline-style); TP as in vLLM is not used")
        if not is_gguf_mix and not gguf_file and lm.source != "gguf":
            notes.append(f"make the GGUF first: python convert_hf_to_gguf.py <model dir> --outtype bf16 --outfile "
                         f"{lm.name}-BF16.gguf, then llama-quantize {lm.name}-BF16.gguf {gguf} {gguf_mix}")
        commands["llama.cpp"] = {"argv": argv, "env": {}, "command": _shell(argv), "notes": notes,
                                 "base_url": f"http://localhost:{port or PORTS['llama.cpp']}/v1"}

    if "ollama" in want:
        modelfile = [f"FROM ./{gguf}", f"PARAMETER num_ctx {ctx}"]
        if cand and cand.offload_layers:
            modelfile.append(f"PARAMETER num_gpu {ngl}")
        env = {"OLLAMA_NUM_PARALLEL": str(batch), "OLLAMA_FLASH_ATTENTION": "1"}
        if lkv in ("q8_0", "q4_0"):
            env["OLLAMA_KV_CACHE_TYPE"] = lkv
        if port and port != PORTS["ollama"]:
            env["OLLAMA_HOST"] = f"{host}:{port}"
        serve = ["ollama", "serve"]
        steps = [f"cat > Modelfile <<'EOF'\n" + "\n".join(modelfile) + "\nEOF",
                 _shell(["ollama", "create", name, "-f", "Modelfile"]), _shell(serve, env),
                 _shell(["ollama", "run", name])]
        notes = ["Ollama reserves num_ctx for each parallel request", "the server must be started with the "
                 "environment shown for the KV cache type and parallelism to apply"]
        commands["ollama"] = {"argv": serve, "env": env, "modelfile": "\n".join(modelfile),
                              "command": "\n".join(steps), "notes": notes,
                              "base_url": f"http://localhost:{port or PORTS['ollama']}/v1"}

    clients = {k: _client_snippet(v["base_url"], name) for k, v in commands.items()}
    first = next(iter(commands))
    return {"model": _model_summary(lm),
            "plan": {"gpu": cand.gpu.name if cand else None, "count": cand.count if cand else tp * pp,
                     "tensor_parallel_size": tp, "pipeline_parallel_size": pp, "stage_layers": list(stages),
                     "max_model_len": ctx, "max_num_seqs": batch, "quantization": quantization,
                     "weights_format": fmt_name, "kv_cache_dtype": kv_cache_dtype,
                     "gpu_memory_utilization": util, "fits": cand.fits if cand else None,
                     "memory_per_gpu": cand.need_bytes if cand else None},
            "commands": commands, "client": {"python": clients[first], "by_engine": clients,
                                             "requires": "pip install openai"}}


def _client_snippet(base_url: str, model_name: str) -> str:
    return "\n".join([
        "from openai import OpenAI",
        "",
        f'client = OpenAI(base_url="{base_url}", api_key="not-needed")',
        "stream = client.chat.completions.create(",
        f'    model="{model_name}",',
        '    messages=[{"role": "user", "content": "Explain the KV cache in one paragraph."}],',
        "    max_tokens=256,",
        "    stream=True,",
        ")",
        "for chunk in stream:",
        "    if chunk.choices and chunk.choices[0].delta.content:",
        '        print(chunk.choices[0].delta.content, end="", flush=True)',
        "print()",
    ])


# ----- summaries for the main report -------------------------------------------------------------------------------

def fit_summary(lm) -> dict:
    """Which GPUs fit the model in its own format at a modest workload (8k context or less, one sequence)."""
    lm = load_model(lm)
    r = plan_fit(lm, top=3)
    wl = r["workload"]
    single = [c for c in r["by_gpu"] if c["fits"] and c["count"] == 1 and not c["offload_layers"]]
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
            lines.append(f"    {c['label']}: {format_bytes(c['memory_per_gpu'])} per GPU"
                         + (f", ~{spd:,.0f} tokens/s" if spd else "") + (f", ${cost:.2f}/h" if cost else ""))
    if not r["fits"]:
        lines.append("  " + r["reason"])
        for s in r.get("suggestions", []):
            lines.append(f"  - {s['text']}" + (f" -> {s['fits_on']}" if s.get("fits_on") else ""))
    lines.append("  (vramplan fit MODEL for every GPU, --max-model-len / --batch-size / -q to change the workload)")
    return {"workload": wl, "fits": r["fits"], "single_gpu": [c["gpu_key"] for c in single],
            "cheapest": r["cheapest"], "fastest": r["fastest"], "text": "\n".join(lines)}


def speed_summary(lm) -> dict:
    """Decode tokens/s at batch 1 on a few reference GPUs (the fewest of each that fit), and one prefill time."""
    lm = load_model(lm)
    rows, lines = [], []
    ctx = min(lm.spec.max_position_embeddings or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
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


__all__ = ["plan_fit", "plan_speed", "hardware_report", "launch_commands", "fit_summary", "speed_summary",
           "build_stack", "compute_dtype"]
