"""What the fit, speed, hardware and launch APIs share: argument parsers, the model's memory stack for each
tensor-parallel size, one workload with its cached decode speed, the layout to time or launch, and the dicts that
describe a candidate and a model. Private: the public names live in :mod:`vramplan.fit_api`."""

from __future__ import annotations

from math import ceil

from .api import model_weight_bytes, resolve_format, tokens_arg
from .core import fit as F
from .core import throughput as T
from .core.hardware import GPU
from .core.memory import (CUDA_CONTEXT_BYTES, PREFILL_CHUNK_TOKENS, kv_bits, kv_cache, prefill_activation_bytes,
                          tensor_parallel_ok, weights_per_gpu_bytes)
from .core.model import count_params
from .core.precision import WeightBytes, per_layer_bytes
from .errors import InvalidRequest
from .units import parse_size

TP_SIZES = (1, 2, 4, 8)
DEFAULT_CONTEXT = 8192
"""Context planned when none is given (or the model's own maximum, if smaller)."""


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
    if isinstance(value, str) and value.strip().isdecimal():
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
        raise InvalidRequest(f"{name}: {exc}", field=name) from None


def _context(lm, max_model_len) -> int:
    ctx = tokens_arg(max_model_len)
    if ctx:
        return ctx
    top = lm.spec.max_position_embeddings or DEFAULT_CONTEXT
    return min(top, DEFAULT_CONTEXT)


def _batch_and_context(lm, batch_size, kv_cache_dtype, max_model_len) -> tuple[int, int]:
    """Concurrent sequences and context of a workload, checked in this order (the first bad one is the error):
    ``batch_size``, ``kv_cache_dtype``, ``max_model_len``."""
    batch = _int(batch_size, "batch_size")
    kv_bits(kv_cache_dtype)
    return batch, _context(lm, max_model_len)


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
    """vLLM's rule for a tensor-parallel size, as a predicate over sizes (core.memory.tensor_parallel_ok)."""
    return lambda tp: tensor_parallel_ok(spec, tp)


# ----- the memory pieces --------------------------------------------------------------------------------------------

def _layer_kv(spec, context: int, batch: int, kv_dtype: str, tp: int) -> tuple[int, ...]:
    """KV bytes of each layer for the workload at ``tp`` (per rank), from the core's per-kind totals."""
    kv = kv_cache(spec, context, batch, kv_dtype, tp)
    kinds = spec.cache_kinds  # layers that reuse another layer's cache hold none
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    by_kind = dict(kv.by_kind)
    per = [ceil(by_kind.get(k, 0) / counts[k]) for k in kinds]
    idx = by_kind.get("indexer", 0)  # a partial indexer's keys, on the layers that have one
    if idx:
        mask = spec.indexer_mask
        share = ceil(idx / max(sum(mask), 1))
        per = [b + (share if m else 0) for b, m in zip(per, mask)]
    return tuple(per)


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
    experts = expert_frac = 0
    if spec.is_moe:
        from .core.precision import expert_weight_bytes

        computed = model_weight_bytes(spec, fmt).total_bytes
        experts = round(expert_weight_bytes(spec, fmt) * (wb.total_bytes / computed if computed else 1.0))
        step = T.decode_step_bytes(spec, wb, context, batch, kv_dtype)
        expert_frac = min(1.0, step.experts_read_bytes / step.total_bytes) if step.total_bytes else 0.0
    return F.StackMemory(tuple(shards), spec.tie_embeddings, label=lm.name, expert_bytes=experts,
                         expert_read_fraction=expert_frac)


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
        key = (c.gpu.key, c.tp, c.pp, c.nodes, c.offload_layers, c.expert_offload)
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
           "expert_offload": c.expert_offload,
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



def _model_summary(lm) -> dict:
    pc = count_params(lm.spec)
    out = {"name": lm.name, "params": pc.total, "active_params": pc.active}
    if lm.hf_id:
        out["hf_id"] = lm.hf_id
    return out


def _parallel_sizes(tp, pp) -> tuple[int, int]:
    """Tensor- and pipeline-parallel sizes as given (1 when not given), checked to be whole numbers 1-1024."""
    return _int(tp or 1, "tensor_parallel_size", 1, 1024), _int(pp or 1, "pipeline_parallel_size", 1, 1024)


def _check_tp(w: _Workload, tp: int) -> None:
    if tp not in w.stack.tp_sizes:
        raise InvalidRequest(f"tensor_parallel_size {tp} is not usable for {w.lm.name} (it must divide "
                             f"{w.lm.spec.num_heads} attention heads, and be 1, 2, 4 or 8)",
                             field="tensor_parallel_size")


def _layout_for(w: _Workload, gpu: GPU, tp, pp, n_gpu_layers=None, headroom=F.DEFAULT_HEADROOM,
                max_gpus: int = 64) -> tuple[F.Candidate | None, bool]:
    """The configuration to time: layers offloaded to host RAM when ``n_gpu_layers`` is fewer than the model has,
    else the given TP/PP, else the fewest GPUs of this kind that fit. The flag says whether it was requested."""
    spec = w.lm.spec
    ngl = None if n_gpu_layers is None else _int(n_gpu_layers, "n_gpu_layers", 0, 100000)
    if ngl is not None and ngl < spec.num_layers:
        plan = F.offload_at(w.stack, ngl)
        s = w.stack.shard(1)
        limit = F.limit_for(gpu, headroom)
        comps = (("weights_and_kv", plan.gpu_bytes - s.activation_bytes - s.runtime_bytes), ("activations",
                 s.activation_bytes), ("runtime", s.runtime_bytes))
        c = F.Candidate(gpu, 1, 1, 1, 1, (plan.gpu_layers,), plan.gpu_bytes, limit, F.capacity_for(gpu),
                        plan.gpu_bytes <= limit, comps, plan.host_layers, plan.host_bytes, plan.host_fraction)
        return c, True
    if tp or pp:
        tp, pp = _parallel_sizes(tp, pp)
        n = tp * pp
        _check_tp(w, tp)
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
