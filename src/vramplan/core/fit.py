"""Fit and search: which GPUs, how many, and how to split a model over them.

The caller describes what the model and workload need as a :class:`StackMemory`: per-layer weight and KV bytes and
the pieces outside the layers, precomputed for each tensor-parallel size (TP splits matrices, and KV heads until every
rank holds one). From that this module

- splits layers over pipeline stages unevenly where that lowers the peak (:func:`split_stages`: the embedding sits on
  the first stage and the head on the last, so those stages take fewer layers; vLLM accepts such a split through
  ``VLLM_PP_LAYER_PARTITION``),
- computes the per-GPU need of every (TP, PP) layout of a GPU count (:func:`layout_need`),
- offloads layers to host RAM llama.cpp-style when nothing fits on one GPU (:func:`offload_plan`),
- decides fit against the GPU's memory (the need includes the CUDA context) less a stated headroom
  (:data:`DEFAULT_HEADROOM`); Apple unified memory uses the GPU working-set limit (``GPU.memory_usable_bytes``),
- and ranks the configurations that fit by cost and by speed (:func:`search`).

Pure: the standard library and the core only. Speed comes in through a callable so this module stays about memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .hardware import GPU

DEFAULT_HEADROOM = 0.05
"""Share of a GPU's memory a plan leaves free: allocator fragmentation (reserved minus allocated) and buffers
not modelled here. formulas.md 10 lists allocator overhead as still unvalidated; 5% is our choice, below the 10%
that vLLM's default ``gpu_memory_utilization=0.9`` keeps back."""

GPUS_PER_NODE = (1, 2, 4, 8)
"""GPU counts considered inside one node (8 is the HGX/DGX/MI300X platform size)."""
MULTI_NODE_CATEGORIES = ("datacenter", "accelerator")
"""Only data-center parts are planned across nodes (tensor parallel inside a node, pipeline stages across)."""


@dataclass(frozen=True, slots=True)
class TPShard:
    """What one tensor-parallel rank holds at a given TP size, in bytes."""

    tp: int
    layer_weight_bytes: tuple[int, ...]  # one per decoder layer
    layer_kv_bytes: tuple[int, ...]  # one per decoder layer, for the whole workload (batch x context)
    embedding_bytes: int
    head_bytes: int  # lm_head + final norm; the tied matrix for tied embeddings
    activation_bytes: int  # transient peak on every rank
    runtime_bytes: int  # CUDA context and the like, on every GPU

    def __post_init__(self) -> None:
        if len(self.layer_weight_bytes) != len(self.layer_kv_bytes):
            raise ValueError("layer_weight_bytes and layer_kv_bytes must have one entry per layer")
        if not self.layer_weight_bytes:
            raise ValueError("a model needs at least one layer")
        values = (*self.layer_weight_bytes, *self.layer_kv_bytes, self.embedding_bytes, self.head_bytes,
                  self.activation_bytes, self.runtime_bytes)
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values):
            raise ValueError("every TPShard size must be a non-negative int of bytes")

    @property
    def layers(self) -> int:
        return len(self.layer_weight_bytes)

    @property
    def layer_bytes(self) -> tuple[int, ...]:
        return tuple(w + k for w, k in zip(self.layer_weight_bytes, self.layer_kv_bytes))


@dataclass(frozen=True, slots=True)
class StackMemory:
    """A model and workload as memory pieces, one :class:`TPShard` per allowed TP size.

    ``tied_embeddings``: with one pipeline stage the tied matrix is held once (as the embedding); with several the
    last stage holds its own copy as the head.
    """

    shards: tuple[TPShard, ...]
    tied_embeddings: bool = False
    label: str = ""
    expert_bytes: int = 0  # routed-expert weights (all layers, TP=1): what llama.cpp --cpu-moe keeps in host RAM
    expert_read_fraction: float = 0.0  # their share of the bytes one decode step reads

    def __post_init__(self) -> None:
        if not self.shards:
            raise ValueError("StackMemory needs at least the TP=1 shard")
        tps = [s.tp for s in self.shards]
        if len(set(tps)) != len(tps) or 1 not in tps:
            raise ValueError("StackMemory shards need distinct TP sizes including 1")
        if len({s.layers for s in self.shards}) != 1:
            raise ValueError("every shard must have the same number of layers")

    @property
    def tp_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(s.tp for s in self.shards))

    def shard(self, tp: int) -> TPShard:
        for s in self.shards:
            if s.tp == tp:
                return s
        raise KeyError(tp)

    @property
    def layers(self) -> int:
        return self.shards[0].layers


# ----- pipeline stages ------------------------------------------------------------------------------------------------

def split_stages(layer_bytes: tuple[int, ...] | list[int], pp: int, first_extra: int = 0,
                 last_extra: int = 0) -> tuple[int, ...]:
    """Contiguous layer counts for ``pp`` stages (each at least one layer) that minimise the largest stage, where
    stage bytes = its layers + ``first_extra`` on the first stage + ``last_extra`` on the last.

    Binary search on the cap, with a greedy check that packs each stage as full as the cap allows (which leaves the
    shortest possible remainder for the last stage, so it is optimal for contiguous splits).
    """
    n = len(layer_bytes)
    if pp < 1 or pp > n:
        raise ValueError(f"cannot split {n} layers into {pp} stages")
    if pp == 1:
        return (n,)
    lb = list(layer_bytes)

    def greedy(cap: int) -> tuple[int, ...] | None:
        counts = []
        i = 0
        for stage in range(pp - 1):
            extra = first_extra if stage == 0 else 0
            room = cap - extra
            taken = 0
            max_take = n - i - (pp - 1 - stage)  # leave one layer for every later stage
            while taken < max_take and lb[i + taken] <= room:
                room -= lb[i + taken]
                taken += 1
            if taken == 0:
                return None
            counts.append(taken)
            i += taken
        if sum(lb[i:]) + last_extra > cap:
            return None
        counts.append(n - i)
        return tuple(counts)

    lo = max(max(lb), first_extra + lb[0], last_extra + lb[-1])
    hi = sum(lb) + first_extra + last_extra
    best = greedy(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        got = greedy(mid)
        if got is None:
            lo = mid + 1
        else:
            hi, best = mid, got
    return best or greedy(lo)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class LayoutNeed:
    """Per-GPU memory of one (TP, PP) layout: one figure per stage (every rank of a stage holds the same)."""

    tp: int
    pp: int
    stage_layers: tuple[int, ...]
    stage_bytes: tuple[int, ...]
    components: tuple[tuple[str, int], ...]  # the busiest stage's parts (sum = need_bytes)

    @property
    def need_bytes(self) -> int:
        return max(self.stage_bytes)


def layout_need(stack: StackMemory, tp: int, pp: int) -> LayoutNeed:
    """Per-GPU bytes of every stage for ``tp`` x ``pp`` (first stage: embedding; last: head; all: activations and
    runtime). Layers are split by :func:`split_stages`."""
    s = stack.shard(tp)
    layer = s.layer_bytes
    if pp == 1:
        head = 0 if stack.tied_embeddings else s.head_bytes
        fixed_first = s.embedding_bytes + head
        fixed_last = 0
    else:
        fixed_first, fixed_last = s.embedding_bytes, s.head_bytes
    every = s.activation_bytes + s.runtime_bytes
    counts = split_stages(layer, pp, fixed_first, fixed_last)
    stage_bytes = []
    parts = []
    i = 0
    for k, c in enumerate(counts):
        w = sum(s.layer_weight_bytes[i:i + c])
        kv = sum(s.layer_kv_bytes[i:i + c])
        first = fixed_first if k == 0 else 0
        last = fixed_last if k == len(counts) - 1 else 0
        stage_bytes.append(w + kv + first + last + every)
        parts.append((("weights", w + first + last), ("kv_cache", kv), ("activations", s.activation_bytes),
                      ("runtime", s.runtime_bytes)))
        i += c
    worst = max(range(len(stage_bytes)), key=stage_bytes.__getitem__)
    return LayoutNeed(tp, pp, counts, tuple(stage_bytes), parts[worst])


# ----- llama.cpp-style offload ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OffloadPlan:
    """Layers kept on one GPU (the last ``gpu_layers``, as llama.cpp's -ngl does) and what stays in host RAM."""

    gpu_layers: int
    host_layers: int
    gpu_bytes: int
    host_bytes: int
    host_fraction: float  # share of layer + head bytes read from host RAM per token


def offload_at(stack: StackMemory, gpu_layers: int) -> OffloadPlan:
    """llama.cpp with ``-ngl gpu_layers``: the last ``gpu_layers`` layers and their KV cache on the GPU, the output
    layer too once every layer is there; the token embedding always stays in host RAM."""
    s = stack.shard(1)
    layer = s.layer_bytes
    n = len(layer)
    if not 0 <= gpu_layers <= n:
        raise ValueError(f"gpu_layers must be between 0 and {n}")
    head = s.embedding_bytes if stack.tied_embeddings else s.head_bytes
    on_gpu = sum(layer[n - gpu_layers:]) if gpu_layers else 0
    head_on_gpu = gpu_layers == n
    gpu_bytes = on_gpu + (head if head_on_gpu else 0) + s.activation_bytes + s.runtime_bytes
    host_read = sum(layer) - on_gpu + (0 if head_on_gpu else head)
    host_bytes = host_read + s.embedding_bytes
    return OffloadPlan(gpu_layers, n - gpu_layers, gpu_bytes, host_bytes, host_read / (sum(layer) + head))


def offload_plan(stack: StackMemory, limit_bytes: int) -> OffloadPlan | None:
    """The most layers one GPU of ``limit_bytes`` can hold with the rest in host RAM (llama.cpp partial offload,
    see :func:`offload_at`). None when not even one layer fits, or when every layer does (no offload needed)."""
    best = None
    for k in range(1, stack.layers):
        plan = offload_at(stack, k)
        if plan.gpu_bytes > limit_bytes:
            break
        best = plan
    return best


# ----- candidates and search ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Candidate:
    """One configuration: ``count`` GPUs of one kind in ``nodes`` nodes, split TP x PP (or one GPU + host RAM)."""

    gpu: GPU
    count: int
    nodes: int
    tp: int
    pp: int
    stage_layers: tuple[int, ...]
    need_bytes: int  # the busiest GPU
    limit_bytes: int  # capacity x (1 - headroom)
    capacity_bytes: int  # see capacity_for
    fits: bool
    components: tuple[tuple[str, int], ...]
    offload_layers: int = 0  # layers in host RAM
    host_bytes: int = 0  # host RAM the offloaded part needs
    host_fraction: float = 0.0
    speed: float | None = None  # decode tokens/s (expected), from the caller's speed function
    notes: tuple[str, ...] = ()
    expert_offload: bool = False  # every layer on the GPU except the routed experts (llama.cpp --cpu-moe)

    @property
    def cost_per_hour_usd(self) -> float | None:
        p = self.gpu.price_per_hour_usd
        return None if p is None else p * self.count

    @property
    def spare_bytes(self) -> int:
        return self.limit_bytes - self.need_bytes

    def label(self) -> str:
        s = f"{self.count} x {self.gpu.name}"
        if self.tp > 1 or self.pp > 1:
            s += f" (TP={self.tp}" + (f", PP={self.pp}" if self.pp > 1 else "") + ")"
        if self.offload_layers:
            s += f" + {self.offload_layers} layers in host RAM"
        if self.expert_offload:
            s += " + routed experts in host RAM"
        return s


def capacity_for(gpu: GPU) -> int:
    """What a plan's need (which includes the CUDA context as ``runtime``) is compared with: the framework-visible
    total on a discrete GPU; on Apple unified memory the GPU working-set limit macOS applies
    (``GPU.memory_usable_bytes``)."""
    return gpu.memory_usable_bytes if gpu.unified_memory else gpu.memory_total_bytes


def limit_for(gpu: GPU, headroom: float = DEFAULT_HEADROOM) -> int:
    """Bytes a plan may fill on ``gpu``: :func:`capacity_for` less the headroom."""
    if not 0.0 <= headroom < 1.0:
        raise ValueError("headroom must be in [0, 1)")
    return int(capacity_for(gpu) * (1.0 - headroom))


def gpu_counts(gpu: GPU, max_gpus: int = 8, per_node: tuple[int, ...] = GPUS_PER_NODE) -> tuple[tuple[int, int], ...]:
    """(count, nodes) pairs to try for ``gpu``: 1 for unified-memory machines; 1, 2, 4, 8 in a node; whole 8-GPU
    nodes beyond that for data-center parts, up to ``max_gpus``."""
    if gpu.unified_memory:
        return ((1, 1),)
    out = [(c, 1) for c in per_node if c <= max_gpus]
    if gpu.category in MULTI_NODE_CATEGORIES:
        full = max(per_node)
        nodes = 2
        while full * nodes <= max_gpus:
            out.append((full * nodes, nodes))
            nodes *= 2
    return tuple(out)


def layouts(count: int, nodes: int, stack: StackMemory, valid_tp: Callable[[int], bool] | None = None
            ) -> tuple[tuple[int, int], ...]:
    """(tp, pp) with tp x pp = count, TP inside one node, TP a size the stack has a shard for and ``valid_tp``
    accepts (e.g. it divides the attention heads), PP no more than the layers."""
    per_node = count // nodes
    out = []
    for tp in stack.tp_sizes:
        if count % tp or tp > per_node:
            continue
        if valid_tp is not None and not valid_tp(tp):
            continue
        pp = count // tp
        if pp > stack.layers:
            continue
        out.append((tp, pp))
    return tuple(out)


def evaluate(stack: StackMemory, gpu: GPU, count: int, nodes: int = 1, *, headroom: float = DEFAULT_HEADROOM,
             valid_tp: Callable[[int], bool] | None = None,
             speed_fn: Callable[[Candidate], float | None] | None = None) -> Candidate | None:
    """The best layout of ``count`` GPUs: among layouts that fit, the fastest (by ``speed_fn``; without it the one
    with the most TP); if none fits, the one with the smallest need. None if no layout is valid."""
    limit = limit_for(gpu, headroom)
    cands = []
    for tp, pp in layouts(count, nodes, stack, valid_tp):
        ln = layout_need(stack, tp, pp)
        c = Candidate(gpu, count, nodes, tp, pp, ln.stage_layers, ln.need_bytes, limit, capacity_for(gpu),
                      ln.need_bytes <= limit, ln.components)
        cands.append(c)
    if not cands:
        return None
    fitting = [c for c in cands if c.fits]
    if fitting:
        if speed_fn is not None:
            fitting = [_with_speed(c, speed_fn) for c in fitting]
            return max(fitting, key=lambda c: (c.speed or 0.0, c.tp))
        return max(fitting, key=lambda c: c.tp)
    return min(cands, key=lambda c: (c.need_bytes, -c.tp))


def _with_speed(c: Candidate, speed_fn) -> Candidate:
    from dataclasses import replace

    return replace(c, speed=speed_fn(c))


def evaluate_offload(stack: StackMemory, gpu: GPU, *, headroom: float = DEFAULT_HEADROOM,
                     host_ram_bytes: int | None = None,
                     speed_fn: Callable[[Candidate], float | None] | None = None) -> Candidate | None:
    """One GPU plus host RAM (llama.cpp ``-ngl``), for discrete GPUs the model does not fit on whole. The host must
    hold the offloaded part when ``host_ram_bytes`` is given."""
    if gpu.unified_memory:
        return None
    limit = limit_for(gpu, headroom)
    plan = offload_plan(stack, limit)
    if plan is None:
        return None
    fits, notes = _host_ram_check(plan.host_bytes, host_ram_bytes, "the offloaded layers")
    s = stack.shard(1)
    comps = (("weights_and_kv", plan.gpu_bytes - s.activation_bytes - s.runtime_bytes),
             ("activations", s.activation_bytes), ("runtime", s.runtime_bytes))
    c = Candidate(gpu, 1, 1, 1, 1, (plan.gpu_layers,), plan.gpu_bytes, limit, capacity_for(gpu), fits,
                  comps, plan.host_layers, plan.host_bytes, plan.host_fraction, notes=tuple(notes))
    return _with_speed(c, speed_fn) if speed_fn is not None and fits else c


def _host_ram_check(needed_bytes: int, host_ram_bytes: int | None, what: str) -> tuple[bool, list[str]]:
    """(fits, notes) for the part kept in host RAM against the host RAM given (None: unchecked)."""
    if host_ram_bytes is not None and needed_bytes > host_ram_bytes:
        return False, [f"{what} need more host RAM than given"]
    return True, []


def evaluate_expert_offload(stack: StackMemory, gpu: GPU, *, headroom: float = DEFAULT_HEADROOM,
                            host_ram_bytes: int | None = None,
                            speed_fn: Callable[[Candidate], float | None] | None = None) -> Candidate | None:
    """One GPU holding everything but the routed experts, which stay in host RAM (llama.cpp ``--cpu-moe``); each
    step reads only the activated experts from host memory. None for dense models or when even that does not fit."""
    if gpu.unified_memory or not stack.expert_bytes:
        return None
    limit = limit_for(gpu, headroom)
    full = layout_need(stack, 1, 1)
    need = full.need_bytes - stack.expert_bytes
    if need > limit:
        return None
    fits, notes = _host_ram_check(stack.expert_bytes, host_ram_bytes, "the routed experts")
    comps = tuple((k, v - stack.expert_bytes if k == "weights" else v) for k, v in full.components)
    c = Candidate(gpu, 1, 1, 1, 1, (stack.layers,), need, limit, capacity_for(gpu), fits, comps, 0,
                  stack.expert_bytes, stack.expert_read_fraction, notes=tuple(notes), expert_offload=True)
    return _with_speed(c, speed_fn) if speed_fn is not None and fits else c


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Every GPU's smallest fitting configuration and the ranked lists."""

    by_gpu: tuple[Candidate, ...]  # per GPU kind: the fewest GPUs that fit, else the closest miss
    fitting: tuple[Candidate, ...]  # every (GPU, count) that fits, best layout each
    cheapest: tuple[Candidate, ...]  # the fewest-GPU fit of each kind (and offload plans), by cost
    fastest: tuple[Candidate, ...]
    headroom: float
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        return bool(self.fitting)

    def closest_miss(self) -> Candidate | None:
        """The failing configuration that came nearest to fitting (smallest need over limit)."""
        misses = [c for c in self.by_gpu if not c.fits]
        if not misses:
            return None
        return min(misses, key=lambda c: c.need_bytes / max(c.limit_bytes, 1))


def rank_cheapest(cands: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """Plans that keep every layer on the GPUs first, host-RAM offload plans after them (cheaper by the hour, but they
    decode at host-RAM speed); within each, by cost per hour (unknown prices last), then faster, then fewer GPUs."""
    return tuple(sorted(cands, key=lambda c: (c.offload_layers > 0 or c.expert_offload, c.cost_per_hour_usd is None,
                                              c.cost_per_hour_usd or 0.0,
                                              -(c.speed or 0.0), c.count)))


def rank_fastest(cands: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """By decode speed (unknown last), then cheaper (unknown prices last), then fewer GPUs."""
    return tuple(sorted(cands, key=lambda c: (c.speed is None, -(c.speed or 0.0), c.cost_per_hour_usd is None,
                                              c.cost_per_hour_usd or 0.0, c.count)))


def search(stack: StackMemory, gpus: Iterable[GPU], *, max_gpus: int = 8, headroom: float = DEFAULT_HEADROOM,
           valid_tp: Callable[[int], bool] | None = None,
           speed_fn: Callable[[Candidate], float | None] | None = None, allow_offload: bool = False,
           host_ram_bytes: int | None = None, counts: tuple[int, ...] | None = None) -> SearchResult:
    """Try every GPU at every count (see :func:`gpu_counts`, or exactly ``counts``), keep the best layout per count,
    and rank what fits. With ``allow_offload``, a consumer or workstation GPU on which the model does not fit whole
    at one card also gets a one-GPU + host RAM candidate (llama.cpp's use case; data-center parts scale out instead).

    ``cheapest`` ranks each GPU kind's fewest-GPU configuration (and its offload plan): more of the same GPU only
    costs more. ``fastest`` ranks every fitting configuration."""
    by_gpu, fitting, minimal = [], [], []
    for gpu in gpus:
        if counts is None:
            pairs = gpu_counts(gpu, max_gpus)
        else:
            per_node = max(GPUS_PER_NODE)
            pairs = tuple((c, max(1, -(-c // per_node))) for c in counts if c == 1 or not gpu.unified_memory)
        first_fit = closest = None
        for count, nodes in pairs:
            c = evaluate(stack, gpu, count, nodes, headroom=headroom, valid_tp=valid_tp, speed_fn=speed_fn)
            if c is None:
                continue
            if c.fits:
                fitting.append(c)
                first_fit = first_fit or c
            elif closest is None or c.need_bytes / c.limit_bytes < closest.need_bytes / closest.limit_bytes:
                closest = c
        offload = None
        if (allow_offload and gpu.category not in MULTI_NODE_CATEGORIES and not (first_fit and first_fit.count == 1)
                and any(p[0] == 1 for p in pairs)):
            offload = evaluate_offload(stack, gpu, headroom=headroom, host_ram_bytes=host_ram_bytes,
                                       speed_fn=speed_fn)
            experts = evaluate_expert_offload(stack, gpu, headroom=headroom, host_ram_bytes=host_ram_bytes,
                                              speed_fn=speed_fn)
            if experts is not None and experts.fits and (offload is None or not offload.fits
                                                         or (experts.speed or 0.0) >= (offload.speed or 0.0)):
                offload = experts  # MoE: experts in host RAM beat whole layers there
            if offload is not None and offload.fits:
                fitting.append(offload)
            else:
                offload = None
        chosen = first_fit or offload or closest
        if chosen is not None:
            by_gpu.append(chosen)
        minimal.extend(c for c in (first_fit, offload) if c is not None)
    return SearchResult(tuple(by_gpu), tuple(fitting), rank_cheapest(minimal), rank_fastest(fitting), headroom)


# ----- what would change an impossible request ------------------------------------------------------------------------

def largest_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in [lo, hi] with ``fits(n)`` for a monotone predicate (true up to some n); None if not even
    ``lo`` fits."""
    if lo > hi or not fits(lo):
        return None
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def dominant_component(components: tuple[tuple[str, int], ...]) -> tuple[str, int]:
    """The largest named part of a need (what to shrink first)."""
    return max(components, key=lambda kv: kv[1]) if components else ("", 0)


def bytes_over(c: Candidate) -> int:
    return max(0, c.need_bytes - c.limit_bytes)


__all__ = ["DEFAULT_HEADROOM", "TPShard", "StackMemory", "split_stages", "LayoutNeed", "layout_need",
           "OffloadPlan", "offload_at", "offload_plan", "Candidate", "capacity_for", "limit_for", "gpu_counts", "layouts", "evaluate",
           "evaluate_offload", "SearchResult", "rank_cheapest", "rank_fastest", "search", "largest_fitting",
           "dominant_component", "bytes_over"]
