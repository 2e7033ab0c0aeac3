"""Inference memory: weights per GPU, KV cache by layer kind, prefill activations, runtime.

Plain accounting, no engine: the KV cache is what ``batch`` sequences of ``context`` tokens hold
(formulas.md 3.1-3.3), activations are the transient peak of one prefill forward with SDPA/flash attention (one
layer live at a time, formulas.md 4.1), and runtime is the CUDA context. Engines (vLLM, llama.cpp, ...) replace these
with their own pools and buffers in ``vramplan.engines``.
"""

from __future__ import annotations

from functools import lru_cache
from math import ceil

from .model import (COMPRESS_RATIO, FULL, MAMBA, MLA, SLIDING, ModelSpec, global_tensors, group_mlp_width,
                    layer_groups)
from .precision import KV_DTYPE_BITS, WeightBytes
from .records import record

PREFILL_CHUNK_TOKENS = 8192
"""Plain accounting plans prefill activations for one chunk of at most this many tokens: vLLM and SGLang split long
prompts (chunked prefill, ``max_num_batched_tokens``), llama.cpp processes ``n_ubatch`` tokens at a time. The
transformers engine model (engines/transformers.py) instead prefills whole prompts, as ``generate`` does."""

CUDA_CONTEXT_BYTES = 512 * 1024 * 1024
"""CUDA context + cuBLAS workspaces per process per GPU: formulas.md 4.3 plans 0.3-0.6 GiB; we take 0.5 GiB."""

_MiB = 1024 * 1024
TORCH_INFERENCE_RUNTIME_BYTES = 695 * _MiB
"""Outside the allocator at the end of a transformers prefill + decode: the CUDA context (618.8 MiB in all 38 runs of
benchmarks/measurements/h200-2026-11-26.jsonl, ``device_used_before_model``: H200, driver 580.159.04, CUDA 13.0,
torch 2.11, lazy module loading) + the kernels loaded on first use; 694.8 MiB in all 22 SDPA inference runs of that
file (686.8 MiB with eager attention)."""
TORCH_TRAINING_RUNTIME_BYTES = 767 * _MiB
"""Outside the allocator after forward, backward and optimizer steps (more kernels loaded): 766.8 MiB in all 14
SDPA training runs of the same file, whatever the model, method or optimizer (750.8 MiB with eager attention)."""
CUBLAS_WORKSPACE_BYTES = 32 * _MiB
"""cuBLAS workspace PyTorch allocates through its caching allocator at the first matmul: 32 MiB on Hopper and later
(4 MiB before; NVIDIA cuBLAS docs, cublasSetWorkspace). Measured as the 32-45 MiB intercept of transformers prefill
activations against tokens on the H200 (benchmarks/measurements/h200-2026-11-26.jsonl)."""


def kv_bits(kv_dtype: str) -> float:
    try:
        return KV_DTYPE_BITS[kv_dtype.lower()]
    except KeyError:
        from ..errors import UnknownName, suggest

        raise UnknownName("KV cache dtype", kv_dtype, suggest(kv_dtype, KV_DTYPE_BITS)) from None


def tensor_parallel_ok(spec: ModelSpec, tp: int) -> bool:
    """vLLM's rule for a tensor-parallel size: it divides the attention heads, and the KV heads are split evenly or
    replicated evenly (MLA's latent is replicated whatever the size)."""
    if tp == 1:
        return True
    if spec.num_heads % tp:
        return False
    n_kv = spec.num_kv_heads or spec.num_heads
    return spec.is_mla or n_kv % tp == 0 or tp % n_kv == 0


def kv_heads_per_rank(spec: ModelSpec, tp: int) -> int:
    """KV heads one tensor-parallel rank holds: split when divisible, one replicated head each otherwise (vLLM)."""
    return max(1, spec.num_kv_heads // tp)


@record
class KVCache:
    """KV cache of ``batch`` sequences at ``context`` tokens, per GPU, with the per-layer-kind split."""

    total_bytes: int
    by_kind: tuple[tuple[str, int], ...]
    bytes_per_token: int  # for one more token of one sequence, all layers (sliding layers inside their window)
    state_bytes_per_seq: int  # recurrent state (Mamba) per sequence
    context: int
    batch: int
    kv_dtype: str


def kv_elements_per_token_rank(spec: ModelSpec, kind: str, tp: int) -> int:
    if kind in COMPRESS_RATIO or (kind == SLIDING and spec.o_groups):
        return spec.kv_elements_per_token(kind)  # DeepSeek-V4: one K=V head, on every rank
    if kind == MLA:
        return spec.kv_elements_per_token(MLA)  # the latent is not split by heads: every rank holds it
    if kind in (FULL, SLIDING):
        if spec.global_head_dim:  # Gemma 4 / MiMo-V2: per-kind head size and KV heads
            d = spec.head_dim_for(kind)
            return max(1, spec.kv_heads_for(kind) // tp) * (d + (spec.v_head_dim or d))
        return kv_heads_per_rank(spec, tp) * (spec.head_dim + spec.value_head_dim)
    return 0


def kv_cache(spec: ModelSpec, context: int, batch: int = 1, kv_dtype: str = "auto", tp: int = 1,
             pp: int = 1) -> KVCache:
    """formulas.md 3: bytes = tokens x batch x sum over layers of per-token elements x bits / 8.

    Sliding layers hold min(context, window) tokens; MLA one latent (kv_lora + rope) per token; Mamba a constant state.
    With pipeline parallelism the heaviest stage is reported, each stage holding its contiguous layers
    [i*L//pp, (i+1)*L//pp) (the same split as the weights), so models whose cache layers cluster are right.
    """
    best = None
    for counts, indexer_layers in _stage_kind_counts(spec, pp):
        kv = _kv_for(spec, counts, indexer_layers, context, batch, kv_dtype, tp)
        if best is None or kv.total_bytes > best.total_bytes:
            best = kv
    return best


@lru_cache(maxsize=512)
def _stage_kind_counts(spec: ModelSpec, pp: int) -> tuple[tuple[tuple[tuple[str, int], ...], int], ...]:
    """Per pipeline stage (contiguous layers [i*L//pp, (i+1)*L//pp)): the count of each cache kind and the layers
    with an indexer. Cached: estimates vary the context and batch on one spec."""
    n = spec.num_layers
    ranges = [range(i * n // pp, (i + 1) * n // pp) for i in range(pp)] if pp > 1 else [range(n)]
    kinds, mask = spec.cache_kinds, spec.indexer_mask
    return tuple((tuple(_count(kinds[i] for i in rng).items()), sum(mask[i] for i in rng)) for rng in ranges)


def _kv_for(spec: ModelSpec, counts: tuple[tuple[str, int], ...], indexer_layers: int, context: int, batch: int,
            kv_dtype: str, tp: int) -> KVCache:
    bits = kv_bits(kv_dtype)
    counts = dict(counts)
    per_kind: dict[str, int] = {}
    per_token_elems = state = 0
    for kind, n in counts.items():
        if spec.has_recurrent_state(kind):
            # conv + ssm state per sequence: conv at 16 bits, the recurrent state at the config's SSM cache dtype
            # (16-bit unless it asks for fp32), whatever the KV dtype
            state += n * spec.ssm_state_bytes_per_seq(tp)
        if kind == MAMBA:
            per_kind[kind] = 0  # every layer's state, once all are counted (below)
            continue
        e = kv_elements_per_token_rank(spec, kind, tp)
        if not e:  # blocks with no token mixer (Nemotron-H MLP / MoE blocks) cache nothing
            continue
        if kind in COMPRESS_RATIO:  # DeepSeek-V4: a sliding window of full entries + one compressed entry per r
            r = COMPRESS_RATIO[kind]
            entry = spec.head_dim + (spec.indexer_head_dim if r == 4 else 0)
            per_layer = (context // r) * entry + min(context, spec.sliding_window or context) * spec.head_dim
            per_kind[kind] = ceil(n * per_layer * batch * bits / 8)
            per_token_elems += n * e
            continue
        tokens = min(context, spec.sliding_window) if kind == SLIDING and spec.sliding_window else context
        per_kind[kind] = ceil(n * e * tokens * batch * bits / 8)
        per_token_elems += n * e
    if state:
        per_kind[MAMBA] = state * batch
    if partial_indexer(spec) and indexer_layers:
        # a lightning indexer in some layers only (MiniMax-M3, GLM-5.2): one key of indexer_head_dim per token there
        per_kind["indexer"] = ceil(indexer_layers * spec.indexer_head_dim * context * batch * bits / 8)
        per_token_elems += indexer_layers * spec.indexer_head_dim
    return KVCache(sum(per_kind.values()), tuple(per_kind.items()), ceil(per_token_elems * bits / 8), state,
                   context, batch, kv_dtype)


def pool_capacity(free_bytes: int, per_token_bytes: int, state_bytes_per_seq: int,
                  context: int) -> tuple[int, float]:
    """(KV tokens, sequences of ``context`` tokens) that ``free_bytes`` of cache room hold.

    Each sequence costs context x per-token bytes plus its recurrent state (Mamba / DeltaNet layers), so hybrids
    hold fewer sequences than tokens / context; a purely recurrent model caches no tokens (0) and its sequences are
    bounded by the state alone, whatever the context.
    """
    free = max(0, free_bytes)
    context = max(context, 1)
    if state_bytes_per_seq <= 0:
        tokens = free // max(per_token_bytes, 1)
        return tokens, tokens / context
    sequences = free / (context * per_token_bytes + state_bytes_per_seq)
    return (int(sequences * context) if per_token_bytes else 0), sequences


def partial_indexer(spec: ModelSpec) -> bool:
    """An indexer whose keys are cached apart from the layers' K/V (MiniMax-M3's sparse layers, GLM-5.2's
    IndexCache layers); DSA models with an indexer in every MLA layer count it in the latent instead."""
    return bool(spec.indexer_heads) and not spec.o_groups and not (spec.is_mla and not spec.indexer_layer_mask)


def _count(kinds) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return out


def _stage_layers(n_layers: int, pp: int) -> int:  # layers on the fullest pipeline stage
    return ceil(n_layers / pp)


def kv_bytes_per_token(spec: ModelSpec, kv_dtype: str = "auto", tp: int = 1) -> int:
    """Bytes one token adds across every attention layer (sliding layers counted as if inside their window)."""
    bits = kv_bits(kv_dtype)
    elems = sum(kv_elements_per_token_rank(spec, k, tp) for k in spec.cache_kinds)
    if partial_indexer(spec):
        elems += sum(spec.indexer_mask) * spec.indexer_head_dim
    return ceil(elems * bits / 8)


def weights_per_gpu_bytes(spec: ModelSpec, wb: WeightBytes, tp: int = 1, pp: int = 1,
                          layer_bytes: list[int] | None = None) -> int:
    """Weight bytes on the busiest GPU. Tensor parallelism splits every matrix (embedding and lm_head included,
    vocab-parallel) and replicates 1-D tensors; pipeline parallelism gives stage i the contiguous layers
    [i*L//pp, (i+1)*L//pp), the first stage the embedding and the last the head. With ``layer_bytes`` (each layer's
    weight bytes, precision.per_layer_bytes) the stages are summed exactly, so models whose layers differ (dense
    first layers before MoE ones) are right; without it every layer is taken as the average."""
    if tp == 1 and pp == 1:
        return wb.total_bytes
    total = wb.total_bytes
    replicated = 0
    for g in layer_groups(spec):
        for t in g.tensors:
            if len(t.shape) == 1:
                replicated += len(g.layers) * t.numel * 2
    for t in global_tensors(spec):
        if len(t.shape) == 1 and t.role != "vision":
            replicated += t.numel * 2
    split = max(total - replicated, 0)
    per_tp = ceil(split / tp) + replicated
    if pp == 1:
        return per_tp
    groups = wb.as_dict()
    outer = groups.get("embedding", 0) + groups.get("lm_head", 0)
    if layer_bytes is not None and len(layer_bytes) == spec.num_layers:
        n = spec.num_layers
        stages = [sum(layer_bytes[i * n // pp:(i + 1) * n // pp]) for i in range(pp)]
        stages[0] += groups.get("embedding", 0)
        stages[-1] += groups.get("lm_head", 0)
        # vision / audio towers and projectors run before the first layer: on the first stage
        stages[0] += sum(b for k, b in groups.items() if k in {t.group for t in global_tensors(spec)
                                                                  if t.role in ("vision", "extra")})
        return max(ceil(b / tp) for b in stages)
    layer_part = per_tp - ceil(outer / tp)
    stage = ceil(layer_part * _stage_layers(spec.num_layers, pp) / spec.num_layers)
    return stage + ceil(max(groups.get("embedding", 0), groups.get("lm_head", 0)) / tp)


def prefill_activation_bytes(spec: ModelSpec, tokens: int, batch: int = 1, tp: int = 1,
                             dtype_bytes: int = 2, logits_tokens: int = 1) -> int:
    """Transient peak of one prefill forward (inference, no grads), SDPA/flash attention, one layer live.

    Live at the worst point of a layer: the residual stream and the normed input (2 x h), Q/K/V and the attention
    output ((2 n_h + 2 n_kv) d), and in the MLP gate and up outputs plus their product (3 x I, I split over TP ranks).
    Plus the logits: ``logits_tokens`` rows of V in the model dtype and their fp32 copy (transformers >= 4.45 keeps
    only the last token's logits; formulas.md 4.1). transformers' own layers hold more (engines/transformers.py).
    """
    n = tokens * batch
    h = spec.hidden_size
    width, attn_full = _prefill_widths(spec)
    attn = attn_full // tp
    mlp = 3 * width // tp
    per_token = (2 * h + max(attn, mlp)) * dtype_bytes
    logits = logits_tokens * batch * spec.vocab_size * (dtype_bytes + 4) // tp
    return n * per_token + logits


@lru_cache(maxsize=512)
def _prefill_widths(spec: ModelSpec) -> tuple[int, int]:
    """(widest feed-forward width of any layer group, widest attention projection width, unsplit)."""
    width = max((sum(group_mlp_width(spec, g)) for g in layer_groups(spec)), default=0)
    attn = max((2 * spec.heads_for(k) * spec.head_dim_for(k)
                + 2 * spec.kv_heads_for(k) * (spec.v_head_dim or spec.head_dim_for(k)) for k in set(spec.kinds)
                if k in (FULL, SLIDING)), default=0)
    if spec.is_mla:
        attn = spec.num_heads * (spec.head_dim + spec.qk_nope_head_dim + 2 * spec.value_head_dim)
    return width, attn


def chunked_prefill_activation_bytes(spec: ModelSpec, context: int, batch: int = 1, tp: int = 1,
                                     chunk: int = PREFILL_CHUNK_TOKENS) -> int:
    """Prefill transient when at most ``chunk`` prompt tokens (across the batch) go through the model at once."""
    in_flight = prefill_activation_bytes(spec, min(context * batch, chunk), 1, tp)
    other_logits = prefill_activation_bytes(spec, 0, batch - 1, tp)  # last-token logits of the other sequences
    return in_flight + other_logits


@record
class InferenceMemory:
    """Per-GPU inference memory; ``components`` sum to ``total_bytes``."""

    components: tuple[tuple[str, int], ...]
    total_bytes: int
    kv: KVCache
    weights: WeightBytes
    tp: int
    pp: int

    def as_dict(self) -> dict[str, int]:
        d = dict(self.components)
        d["total"] = self.total_bytes
        return d


def plan_inference_memory(spec: ModelSpec, wb: WeightBytes, context: int, batch: int = 1, kv_dtype: str = "auto",
                          tp: int = 1, pp: int = 1, runtime_bytes: int = CUDA_CONTEXT_BYTES,
                          layer_bytes: list[int] | None = None) -> InferenceMemory:
    """Plain accounting for ``batch`` sequences of ``context`` tokens (prompt + generated)."""
    weights = weights_per_gpu_bytes(spec, wb, tp, pp, layer_bytes)
    kv = kv_cache(spec, context, batch, kv_dtype, tp, pp)
    act = chunked_prefill_activation_bytes(spec, context, batch, tp)
    comps = (("weights", weights), ("kv_cache", kv.total_bytes), ("activations", act), ("runtime", runtime_bytes))
    return InferenceMemory(comps, sum(v for _, v in comps), kv, wb, tp, pp)
