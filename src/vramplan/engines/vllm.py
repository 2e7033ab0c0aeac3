"""vLLM's memory accounting: the budget, the profiled peak, the KV cache pool and its blocks.

What vLLM does at start-up (V1 engine; ``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory``, formulas.md
4.2), and what this module reproduces per GPU:

1. ``requested = total_memory x gpu_memory_utilization`` (the CUDA context and NCCL communicators created before the
   memory snapshot sit outside it, in the remaining fraction).
2. Load the weights ("Model loading took X GiB"): the checkpoint tensors of this rank (matrices split over TP, 1-D
   tensors replicated, layers split over PP stages) plus the rotary cos/sin cache and, for MLA, the absorbed
   ``W_UK``/``W_UV`` copies of ``kv_b_proj`` made after loading.
3. ``profile_run``: a forward pass over ``max_num_batched_tokens`` dummy tokens, then the sampler on
   ``min(max_num_seqs, max_num_batched_tokens)`` rows of logits (temperature, top-p and top-k all on, so the sort
   path runs). "torch peak memory increase" is the larger of the two peaks, plus buffers that stay allocated (the
   fused-MoE workspace, PP send/receive buffers). "non-torch forward increase" is what NCCL, custom all-reduce and
   cuBLAS allocate outside PyTorch during that run.
4. ``available KV = requested - weights - peak - non_torch`` (from v0.21 also minus the estimated CUDA-graph pool),
   ``num_blocks = available // (page_bytes x layers per block)``, the same block count on every rank (the minimum).
   "GPU KV cache size: N tokens" is ``num_blocks // kv_groups x block_size``; "Maximum concurrency" divides the
   blocks by what one ``max_model_len`` request needs (sliding-window groups need only their window).

Modelled constants (each fitted on a handful of public startup logs and stated where it is defined; every other
number is arithmetic on the model's shapes):

* ``SAMPLER_BYTES_PER_LOGIT``: extra bytes the sampler holds per logit (beyond the logits in the model dtype):
  35.85 up to v0.16, 12.5 from v0.17 (fitted on the llm-d-planner v0.19.0 H100 logs and the v0.11/v0.15-v0.18 sweep
  rows in groundtruth/public.jsonl; consistent with an fp32 copy plus int64 sort indices).
* ``PROFILE_OVERHEAD_BYTES`` (0.06 GiB, sampler phase) and ``FORWARD_OVERHEAD_BYTES`` (0.14 GiB, forward phase):
  fixed allocations of the profile run (same fit).
* non-torch memory per version and parallel layout (measured values in the same logs).
* the CUDA-graph estimate (first capture 0.25 GiB / TP + 12 MiB per further capture size; v0.19 log lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil

from ..core.model import (DELTA_RULE, FULL, KDA, MAMBA, MAMBA2, MLA, NO_MLP, NOMIX, SLIDING, ModelSpec, global_tensors,
                          group_mlp_width, layer_groups)
from ..core.precision import WeightBytes
from ..errors import InvalidRequest, UnknownName, suggest

GiB = 1 << 30
MiB = 1 << 20

DEFAULT_GPU_TOTAL_BYTES = 85_029_158_912
"""H100-80GB as torch sees it (81,090 MiB; vLLM logs 'total_memory=79.19GiB' in the llm-d-planner v0.19.0 runs).
Used only when neither a GPU nor a memory size is given; the plan says so."""

SAMPLER_BYTES_PER_LOGIT_V0_16 = 35.85
SAMPLER_BYTES_PER_LOGIT_V0_17 = 12.5
PROFILE_OVERHEAD_BYTES = int(0.06 * GiB)
FORWARD_OVERHEAD_BYTES = int(0.14 * GiB)
VOCAB_PAD = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True, slots=True)
class VllmRules:
    """How one range of vLLM releases accounts for memory. ``since`` is the first release the rules apply to."""

    since: tuple[int, int, int]
    label: str
    engine: str  # "V0" or "V1"
    sampler_bytes_per_logit: float
    non_torch_tp1_bytes: int
    non_torch_tp2_bytes: int
    non_torch_tp_doubling_bytes: int  # added per doubling of TP beyond 2
    non_torch_pp_bytes: int  # TP=1 with PP > 1
    cudagraph_in_budget: bool
    default_utilization: float
    moe_workspace_persistent: bool
    startup_free_check: bool
    source: str
    mxfp4_pad: tuple[int, int] = (256, 1)  # MXFP4 experts: (hidden, per-rank intermediate) rounded up to multiples
    profile_overhead_bytes: int = PROFILE_OVERHEAD_BYTES
    forward_overhead_bytes: int = FORWARD_OVERHEAD_BYTES


VLLM_RULES: tuple[VllmRules, ...] = (
    VllmRules((0, 6, 5), "0.6.5", "V0", SAMPLER_BYTES_PER_LOGIT_V0_16, int(1.79 * GiB), int(3.58 * GiB), 0,
              int(1.79 * GiB), False, 0.9, False, False,
              "vLLM PR #10511 (Dec 2024, V0): non_torch 1.79 GiB TP1, 3.58 GiB TP2 on H100; the V0 profile baseline "
              "is taken before the CUDA context, so the context is inside non-torch"),
    VllmRules((0, 8, 0), "0.8.0", "V1", SAMPLER_BYTES_PER_LOGIT_V0_16, int(0.13 * GiB), int(0.54 * GiB),
              int(0.04 * GiB), int(0.13 * GiB), False, 0.9, True, True,
              "V1 engine (default since v0.8.0); constants from llm-d-planner docs/empirical-vllm-memory-results.md "
              "(v0.11.0, H100): non_torch 0.13 GiB TP1, 0.54 GiB TP2; activation ~38 B per logit"),
    VllmRules((0, 17, 0), "0.17.0", "V1", SAMPLER_BYTES_PER_LOGIT_V0_17, int(0.13 * GiB), int(0.54 * GiB),
              int(0.04 * GiB), int(0.13 * GiB), False, 0.9, True, True,
              "llm-d-planner version sweep (Qwen3-14B, H100): activation 5.64 GiB on v0.15/v0.16, 2.23 GiB on "
              "v0.17 (a leaner top-k/top-p path), non_torch 0.13 GiB"),
    VllmRules((0, 18, 0), "0.18.0", "V1", SAMPLER_BYTES_PER_LOGIT_V0_17, int(0.25 * GiB), int(2.07 * GiB),
              int(0.10 * GiB), int(0.07 * GiB), False, 0.9, True, True,
              "llm-d-planner v0.19.0 H100 logs: non_torch 0.24-0.26 GiB TP1, 2.06-2.11 TP2, 2.13-2.21 TP4, "
              "0.07 PP2/PP4; v0.18 sweep: 0.25 GiB TP1 (TP>1 assumed as v0.19)", (256, 128)),
    VllmRules((0, 19, 0), "0.19.0", "V1", SAMPLER_BYTES_PER_LOGIT_V0_17, int(0.25 * GiB), int(2.07 * GiB),
              int(0.10 * GiB), int(0.07 * GiB), False, 0.9, True, True,
              "llm-d-planner accuracy/results/v0.19.0 (H100-80GB, 56 runs)", (256, 128)),
    VllmRules((0, 21, 0), "0.21.0", "V1", SAMPLER_BYTES_PER_LOGIT_V0_17, int(0.25 * GiB), int(2.07 * GiB),
              int(0.10 * GiB), int(0.07 * GiB), True, 0.9, True, True,
              "formulas.md 4.2: CUDA-graph memory profiling on by default since v0.21.0 "
              "(VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS); other constants as v0.19", (256, 128)),
)
VERSIONS = tuple(r.label for r in VLLM_RULES)
DEFAULT_VERSION = VLLM_RULES[-1].label


def parse_version(text: str) -> tuple[int, int, int]:
    """'0.19', 'v0.19.0', '0.19.1rc2' -> (0, 19, x)."""
    import re

    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        raise UnknownName("vLLM version", str(text), list(VERSIONS))
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def rules_for(version: str | None) -> VllmRules:
    """The rules of the newest modelled release not newer than ``version`` (default: the newest modelled)."""
    from . import newest_rules_not_after

    parsed = None if version in (None, "", "latest") else parse_version(version)
    return newest_rules_not_after(VLLM_RULES, version, parsed, lambda r: r.since, "vLLM version", VERSIONS)


# ----- defaults ---------------------------------------------------------------------------------------------

def default_batch_limits(gpu_total_bytes: int, gpu_name: str = "", usage: str = "api",
                         rules: VllmRules | None = None, max_model_len: int = 0) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) when the user sets neither.

    V1 (``vllm/engine/arg_utils.py`` get_batch_defaults, formulas.md 4.2): GPUs with >= 70 GiB that are not A100:
    16384 tokens for the ``LLM`` class, 8192 for the API server, 1024 sequences; otherwise 8192 / 2048 and 256.
    V0 without chunked prefill: max(max_model_len, 2048) tokens and 256 sequences.
    """
    if rules is not None and rules.engine == "V0":
        return (max(max_model_len, 2048) if max_model_len <= 32768 else 2048), 256
    big = gpu_total_bytes >= 70 * GiB and "a100" not in gpu_name.lower()
    if big:
        return (16384 if usage == "llm" else 8192), 1024
    return (8192 if usage == "llm" else 2048), 256


def cudagraph_capture_sizes(max_num_seqs: int, max_capture: int | None = None) -> list[int]:
    """vLLM's default capture sizes: 1, 2, 4, then steps of 8 to 256, then steps of 16, up to
    min(2 x max_num_seqs, 512) (the v0.19 log lists 51 sizes up to 512)."""
    cap = max_capture if max_capture is not None else min(2 * max_num_seqs, 512)
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, cap + 1, 16))
    return [s for s in sizes if s <= cap]


def cudagraph_estimate_bytes(n_sizes: int, tp: int, modes: int = 2) -> int:
    """vLLM's CUDA-graph memory estimate: one first capture (~0.25 GiB at TP1, shrinking with TP) plus ~6 MiB per
    further capture size and mode (v0.19 logs: 'Estimated FULL CUDA graph memory: 260.00 MiB first-capture +
    (51-1) x 6.00 MiB per-graph', total 0.84 GiB for Llama-3.1-8B TP1). A measured quantity in vLLM; here an
    estimate to about +-0.2 GiB."""
    return int(0.25 * GiB / tp) + max(n_sizes - 1, 0) * modes * 6 * MiB


# ----- weights per rank ---------------------------------------------------------------------------------------

def pp_layer_counts(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage as vLLM splits them (``vllm/distributed/utils.py`` get_pp_indices): an even
    share, with the remainder added to the stages just before the last one."""
    if pp <= 1:
        return [num_layers]
    base = num_layers // pp
    parts = [base] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def _tensor_bytes(fmt, t) -> int:
    return fmt.tensor_bytes(t)


def _split(nbytes: int, tp: int) -> int:
    return ceil(nbytes / tp)


@dataclass(frozen=True, slots=True)
class StageWeights:
    layers: tuple[int, ...]
    weights_bytes: int
    checkpoint_bytes: int
    rope_cache_bytes: int
    mla_absorbed_bytes: int


def mxfp4_expert_factor(spec: ModelSpec, tp: int, pad: tuple[int, int]) -> float:
    """Growth of MXFP4 expert weights from vLLM's padding (``quantization/mxfp4.py`` create_weights rounds the
    hidden size up to a multiple of 256 and, in later releases, the per-rank intermediate size up to 128 for the
    Triton-kernels backend): gpt-oss-20b 2880 -> 3072 and 2880 -> 2944."""
    h = spec.hidden_size
    i = max(spec.moe_intermediate_size // tp, 1)
    ph = -(-h // pad[0]) * pad[0]
    pi = -(-i // pad[1]) * pad[1]
    return (ph / h) * (pi / i)


def stage_weights(spec: ModelSpec, wb: WeightBytes, fmt, tp: int, pp: int, act_bytes: int,
                  expert_factor: float = 1.0) -> list[StageWeights]:
    """Weight bytes each pipeline stage's ranks hold ("Model loading took ..."), one entry per stage."""
    per_layer = [0] * spec.num_layers
    mla_absorb = [0] * spec.num_layers
    for g in layer_groups(spec):
        for i in g.layers:
            one = 0
            for t in g.tensors:
                b = fmt.tensor_bytes_at(t, i)
                if t.group == "experts" and t.role != "bias":
                    b = int(b * expert_factor)
                one += b if len(t.shape) == 1 else _split(b, tp)
                if t.role == "attn_kv_b":
                    mla_absorb[i] = _split(t.numel * act_bytes, tp)
            per_layer[i] = one
    embed = head = other = front = 0
    base = getattr(fmt, "base_bytes", 2)
    vpad = (-spec.vocab_size) % VOCAB_PAD
    for t in global_tensors(spec):
        b = _tensor_bytes(fmt, t)
        if t.role == "token_embd":
            embed += _split(b + vpad * spec.hidden_size * base, tp)
        elif t.role in ("vision", "extra", "token_embd_per_layer", "ple_model_proj"):
            front += _split(b, tp)  # encoders and per-layer input embeddings run before the first layer
        elif t.role == "output" or (t.group == "lm_head"):
            head += _split(b + (vpad * spec.hidden_size * base if t.role == "output" else 0), tp)
        elif len(t.shape) == 1 and t.role != "vision":
            other += b
        else:
            other += _split(b, tp)
    # stored sizes (safetensors / GGUF headers) override the computed total: scale every part alike
    ratio = 1.0
    if wb.total_bytes:
        full = _full_bytes(spec, fmt)
        ratio = wb.total_bytes / full if full else 1.0
    rotary = spec.qk_rope_head_dim if spec.is_mla else spec.head_dim
    rope = (spec.max_position_embeddings or 4096) * rotary * act_bytes
    counts = pp_layer_counts(spec.num_layers, pp)
    out = []
    start = 0
    for s, n in enumerate(counts):
        idx = tuple(range(start, start + n))
        start += n
        part = sum(per_layer[i] for i in idx)
        if s == 0 or (spec.tie_embeddings and s == pp - 1):
            part += embed
        if s == 0:
            part += front
        if s == pp - 1:
            part += head + other
        part = round(part * ratio)
        absorbed = sum(mla_absorb[i] for i in idx)
        out.append(StageWeights(idx, part + rope + absorbed, part, rope, absorbed))
    return out


def _full_bytes(spec: ModelSpec, fmt) -> int:
    total = 0
    for g in layer_groups(spec):
        total += sum(fmt.layers_bytes(t, g.layers)[0] for t in g.tensors)
    total += sum(fmt.tensor_bytes(t) for t in global_tensors(spec))
    return total


# ----- KV cache specs -------------------------------------------------------------------------------------------

def kv_dtype_bytes(kv_dtype: str, act_bytes: int, is_mla: bool = False) -> float:
    """Bytes per cached element: 'auto' follows the model dtype; fp8 variants are one byte."""
    k = (kv_dtype or "auto").lower()
    if k == "auto":
        return act_bytes
    if k in ("fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"):
        return 1
    if k == "fp8_ds_mla":
        if not is_mla:
            raise InvalidRequest("kv_cache_dtype fp8_ds_mla applies to MLA models only", field="kv_cache_dtype")
        return 1
    if k in ("bfloat16", "bf16", "float16", "fp16", "half"):
        return 2
    if k in ("float32", "fp32"):
        return 4
    raise UnknownName("vLLM KV cache dtype", kv_dtype,
                      suggest(kv_dtype, ["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"]))


def kv_bytes_per_token_layer(spec: ModelSpec, kind: str, kv_dtype: str, act_bytes: int, tp: int) -> int:
    """One token of one layer on one rank: K and V of the rank's KV heads (replicated when n_kv < TP), or the MLA
    latent (kv_lora_rank + rope dims; 656 B in the fp8_ds_mla layout). formulas.md 3.1-3.2."""
    if kind == MLA:
        # DeepSeek Sparse Attention (V3.2, GLM-5): the sparse MLA backend stores any fp8 cache as fp8_ds_mla, and
        # each indexer layer adds its key cache: 128 fp8 values + one fp32 scale = 132 B per token (every layer's
        # share, where only some layers have an indexer)
        idx = 0
        if spec.indexer_heads:
            mask = spec.indexer_mask
            idx = ceil((spec.indexer_head_dim + spec.indexer_head_dim // 128 * 4) * sum(mask) / len(mask))
            if (kv_dtype or "").lower().startswith("fp8"):
                kv_dtype = "fp8_ds_mla"
        if (kv_dtype or "").lower() == "fp8_ds_mla":
            return 656 + idx
        return int((spec.kv_lora_rank + spec.qk_rope_head_dim) * kv_dtype_bytes(kv_dtype, act_bytes, True)) + idx
    extra = 0
    if spec.indexer_heads and not spec.o_groups and kind in (FULL, SLIDING):
        # MiniMax-M3: index keys (indexer_kv_dtype, model dtype by default) on the sparse layers, spread per layer
        mask = spec.indexer_mask
        extra = ceil(spec.indexer_head_dim * act_bytes * sum(mask) / len(mask))
    if spec.global_head_dim:  # Gemma 4 / MiMo-V2: per-kind head size and KV heads
        kind = FULL if kind == MAMBA else kind
        d = spec.head_dim_for(kind)
        return int(max(1, spec.kv_heads_for(kind) // tp) * (d + (spec.v_head_dim or d))
                   * kv_dtype_bytes(kv_dtype, act_bytes))
    heads = max(1, spec.num_kv_heads // tp)
    return int(heads * (spec.head_dim + spec.value_head_dim) * kv_dtype_bytes(kv_dtype, act_bytes)) + extra


@dataclass(frozen=True, slots=True)
class KVGroup:
    kind: str  # full | sliding | mla | mamba (a recurrent state: one block per request)
    layers: int  # layers in the group (the group size, padded groups count as full)
    page_bytes: int  # one block of one layer
    window: int = 0
    block: int = 0  # tokens per block of this group when it differs from the engine's block size (0: the same)


def mamba_state_page_bytes(spec: ModelSpec, tp: int, act_bytes: int, version: tuple[int, int, int]) -> int:
    """One recurrent layer's state for one request on one rank (``MambaSpec.page_size_bytes``, from
    ``mamba_utils.py`` MambaStateShapeCalculator / MambaStateDtypeCalculator): the conv state keeps conv_kernel - 1
    columns of the rank's conv channels in the model dtype; the SSM state (Mamba-2: heads/TP x head_dim x N; gated
    DeltaNet and KDA: value heads/TP x k_dim x v_dim; Mamba-1: d_inner/TP x N) in mamba_ssm_cache_dtype. Its default
    ("auto") is the model dtype, except Nemotron-H, which takes the config's mamba_ssm_cache_dtype (float16 in
    0.13-0.19, float32 from 0.20 when the config has none) and Qwen3.5 (the config's mamba_ssm_dtype)."""
    k = spec.ssm_conv_kernel - 1
    if spec.ssm_variant in DELTA_RULE:  # KDA: three (K-1, heads x head_dim / TP) conv states, q, k, v
        conv = (2 * spec.lin_k_heads * spec.lin_k_dim + spec.lin_v_heads * spec.lin_v_dim) // tp
        ssm = (spec.lin_v_heads // tp) * spec.lin_k_dim * spec.lin_v_dim
    elif spec.ssm_variant == MAMBA2:
        g = spec.ssm_groups
        if g % tp:
            g = tp  # n_groups is replicated up to the TP size
        conv = (spec.d_inner + 2 * g * spec.ssm_state_size) // tp
        ssm = (spec.ssm_heads // tp) * (spec.d_inner // spec.ssm_heads) * spec.ssm_state_size
    else:
        conv = spec.d_inner // tp
        ssm = (spec.d_inner // tp) * spec.ssm_state_size
    ssm_bytes = act_bytes
    if spec.model_type == "nemotron_h" and version >= (0, 13, 0):
        ssm_bytes = spec.ssm_state_bytes if spec.ssm_state_bytes == 4 else (4 if version >= (0, 20, 0) else 2)
    elif spec.model_type.startswith("qwen3_5") and version >= (0, 17, 0):
        ssm_bytes = spec.ssm_state_bytes
    elif spec.ssm_variant == KDA:
        ssm_bytes = 4  # kda_state_dtype: the recurrent state is always float32
    return conv * k * act_bytes + ssm * ssm_bytes


HYBRID_BLOCK_ALIGN = 16
"""Attention block sizes of attention + recurrent hybrids are multiples of this (the FlashAttention kernel block;
``HybridAttentionMambaModelConfig`` / ``Platform._align_hybrid_block_size``)."""


HYBRID_MLA_BLOCK_ALIGN = 64


def _attn_kind(spec: ModelSpec) -> str:
    """The attention spec a hybrid's recurrent pages are matched to (MLA latents for MLA hybrids)."""
    return MLA if spec.is_mla else FULL


def hybrid_block_size(spec: ModelSpec, kv_dtype: str, act_bytes: int, tp: int, user_block: int | None,
                      version: tuple[int, int, int]) -> tuple[int, int]:
    """(attention block size, mamba state page) for a hybrid: the smallest multiple of 16 tokens (64 for MLA
    hybrids such as Kimi Linear: ``HybridAttentionMambaModelConfig``, MLA kernels other than CUTLASS_MLA) whose
    attention page (block x one token of one layer) holds a recurrent state page; the state page is then padded
    to it."""
    attn_1tok = kv_bytes_per_token_layer(spec, _attn_kind(spec), kv_dtype, act_bytes, tp)
    state = mamba_state_page_bytes(spec, tp, act_bytes, version)
    a = HYBRID_MLA_BLOCK_ALIGN if spec.is_mla else HYBRID_BLOCK_ALIGN
    block = a * ceil(state / (a * attn_1tok))
    if user_block and user_block >= block:
        block = user_block
    return block, state


def kv_groups(spec: ModelSpec, layers: tuple[int, ...], kv_dtype: str, act_bytes: int, tp: int, block: int,
              hybrid: bool = True, version: tuple[int, int, int] = (0, 21, 0)) -> list[KVGroup]:
    """vLLM's KV cache groups for the layers of one stage (``vllm/v1/core/kv_cache_utils.py``): one group when every
    layer has the same spec; otherwise (hybrid allocator) each spec's layers are cut into groups of
    ``group_size`` layers (the smallest type's count, or the largest when within 25% of it, 50% from 0.18) sharing
    one block pool. Recurrent layers form their own groups, their state page padded to the attention page; blocks
    with no token mixer (Nemotron-H MLP / MoE blocks) hold nothing."""
    kinds = [spec.cache_kinds[i] for i in layers if spec.cache_kinds[i] != NOMIX]
    if not hybrid:
        if MAMBA in kinds:
            raise InvalidRequest("vLLM needs its hybrid KV cache manager for models with recurrent layers",
                                 field="disable_hybrid_kv_cache_manager")
        if not spec.global_head_dim:  # same page either way: one full-attention group
            kinds = [FULL if k == SLIDING else k for k in kinds]
    by: dict[str, int] = {}
    for k in kinds:
        by[k] = by.get(k, 0) + 1
    pages = {k: block * kv_bytes_per_token_layer(spec, _attn_kind(spec) if k == MAMBA else k, kv_dtype, act_bytes,
                                                 tp) for k in by}
    if not by:
        return []
    window = spec.sliding_window if hybrid else 0  # without the hybrid manager sliding layers keep every token
    blocks = {k: 0 for k in by}
    if len(set(pages.values())) > 1 and MAMBA not in by:
        # unify_kv_cache_spec_page_size: kinds with a smaller page get proportionally more tokens per block
        biggest = max(pages.values())
        for k in by:
            if biggest % pages[k]:
                raise InvalidRequest("vLLM cannot unify this model's KV page sizes (layer kinds whose pages do not "
                                     "divide each other)", field="engine")
            if pages[k] != biggest:
                blocks[k] = block * biggest // pages[k]
                pages[k] = biggest
    if len(by) == 1:
        k = next(iter(by))
        return [KVGroup(k, by[k], pages[k], window if k == SLIDING else 0)]
    lo, hi = min(by.values()), max(by.values())
    size = hi if hi < lo * (1.5 if version >= (0, 18, 0) else 1.25) else lo
    groups = []
    for k, n in by.items():
        for _ in range(ceil(n / size)):
            groups.append(KVGroup(k, size, pages[k], window if k == SLIDING else 0, blocks[k]))
    return groups


def request_blocks(g: KVGroup, max_model_len: int, block: int, mnbt: int) -> int:
    """Blocks one max_model_len request needs in one layer of this group (``kv_cache_interface.py``
    max_memory_usage_bytes): full attention cdiv(len, block); sliding window
    cdiv(min(window - 1 + max_num_batched_tokens, len), block) + 1; a recurrent state one block (prefix caching
    is off for hybrid models by default up to 0.25)."""
    if g.kind == MAMBA:
        return 1
    block = g.block or block
    if g.kind == SLIDING and g.window:
        return ceil(min(g.window - 1 + mnbt, max_model_len) / block) + 1
    return ceil(max_model_len / block)


# ----- activations -----------------------------------------------------------------------------------------------

def moe_workspace_bytes(spec: ModelSpec, tokens: int, tp: int, act_bytes: int) -> int:
    """Fused-MoE intermediate caches for ``tokens`` tokens (``fused_moe.py``): cache13 of
    tokens x top_k x max(2 I_moe / TP, h) and cache2 of tokens x top_k x I_moe / TP, in the activation dtype."""
    if not spec.is_moe:
        return 0
    k = spec.experts_per_token
    n2 = 2 * spec.moe_intermediate_size // tp
    return tokens * k * (max(n2, spec.hidden_size) + n2 // 2) * act_bytes


def forward_peak_bytes(spec: ModelSpec, tokens: int, tp: int, act_bytes: int,
                       overhead_bytes: int = FORWARD_OVERHEAD_BYTES) -> int:
    """Peak of one forward over ``tokens`` dummy tokens (attention is cheap: the profile batch is many short
    requests): the residual and the normed input (2h) plus the widest MLP stage: gate/up output and the activated
    product (3 I / TP for gated MLPs, 2 I / TP otherwise; the shared expert for MoE layers), plus fixed buffers."""
    widths = []
    for g in layer_groups(spec):
        if g.kind == MAMBA:
            widths.append(3 * spec.d_inner // tp)
        if g.mlp == NO_MLP:
            continue
        w = group_mlp_width(spec, g)[0]  # dense / shared-expert width (routed experts: the fused-MoE workspace)
        widths.append((3 if spec.mlp_gated else 2) * w // tp)
    return tokens * (2 * spec.hidden_size + max(widths or [0])) * act_bytes + overhead_bytes


def sampler_peak_bytes(spec: ModelSpec, tokens: int, rows: int, act_bytes: int, rules: VllmRules) -> int:
    """Sampler phase of the profile run: the forward's hidden states (tokens x h) still held, the logits of ``rows``
    requests over the full vocabulary (gathered on every TP rank) in the model dtype, and the sampler's working
    set per logit (fp32 copy, sort values and int64 indices; :data:`VllmRules.sampler_bytes_per_logit`)."""
    return int(tokens * spec.hidden_size * act_bytes
               + rows * spec.vocab_size * (act_bytes + rules.sampler_bytes_per_logit)) + rules.profile_overhead_bytes


# ----- the plan ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StagePlan:
    stage: int
    layers: int
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cudagraph_bytes: int
    available_kv_bytes: int
    block_bytes: int  # bytes of one block across this stage's layers (page x group size)
    groups: tuple[KVGroup, ...]
    num_blocks_own: int
    forward_peak_bytes: int
    sampler_peak_bytes: int
    moe_workspace_bytes: int


@dataclass(frozen=True, slots=True)
class VllmPlan:
    version: str
    rules: VllmRules
    gpu_total_bytes: int
    utilization: float
    requested_bytes: int
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int
    tp: int
    pp: int
    kv_dtype: str
    stages: tuple[StagePlan, ...]
    num_blocks: int
    kv_tokens: int
    max_concurrency: float
    kv_bytes_per_token: int  # one token across the layers of the heaviest stage
    cuda_context_bytes: int
    fits: bool
    error: str = ""
    notes: tuple[str, ...] = field(default=())


def cuda_context_bytes(tp: int, pp: int, spec: ModelSpec) -> int:
    """Memory the worker holds before its snapshot (CUDA context, NCCL communicators): 0.51 GiB at TP1, about
    1.5 GiB with TP or PP > 1 (2.0 GiB for MoE with TP, expert-parallel groups), per the v0.19 'worker init memory
    snapshot' lines. Outside the utilization budget."""
    if tp == 1 and pp == 1:
        return int(0.51 * GiB)
    return int((1.99 if spec.is_moe and tp > 1 else 1.5) * GiB)


def non_torch_bytes(rules: VllmRules, tp: int, pp: int) -> int:
    if tp > 1:
        doublings = max(0, (tp - 1).bit_length() - 1)  # 2 -> 0, 4 -> 1, 8 -> 2
        return rules.non_torch_tp2_bytes + doublings * rules.non_torch_tp_doubling_bytes
    if pp > 1:
        return rules.non_torch_pp_bytes
    return rules.non_torch_tp1_bytes


def vllm_memory(spec: ModelSpec, wb: WeightBytes, fmt, *, gpu_total_bytes: int, max_model_len: int,
                tp: int = 1, pp: int = 1, kv_dtype: str = "auto", act_bytes: int = 2,
                utilization: float | None = None, max_num_batched_tokens: int | None = None,
                max_num_seqs: int | None = None, version: str | None = None, block_size: int | None = None,
                gpu_name: str = "", usage: str = "api", enforce_eager: bool = False, hybrid_kv: bool = True,
                mla_block_size: int = 16, mxfp4_experts: bool = False, rules: VllmRules | None = None) -> VllmPlan:
    """The whole start-up accounting for one deployment; pure function of the shapes and the options.
    ``rules`` replaces the version's rules (the accuracy benchmark uses it to show untuned constants)."""
    rules = rules or rules_for(version)
    util = rules.default_utilization if utilization is None else utilization
    if not 0.0 < util <= 1.0:
        raise InvalidRequest(f"gpu_memory_utilization must be in (0, 1], got {util}", field="gpu_memory_utilization")
    d_mnbt, d_seqs = default_batch_limits(gpu_total_bytes, gpu_name, usage, rules, max_model_len)
    mnbt = max_num_batched_tokens or d_mnbt
    seqs = max_num_seqs or d_seqs
    ver = rules.since
    if version not in (None, "", "latest"):
        ver = parse_version(version)
    if spec.is_mla:
        block = block_size or mla_block_size
    else:
        block = block_size or 16
    notes: list[str] = []
    if MAMBA in spec.kinds:
        if not any(k in (FULL, SLIDING, MLA) for k in spec.kinds):
            raise InvalidRequest("vLLM accounting for purely recurrent models (no attention layer) is not modelled; "
                                 "use --engine transformers or llama.cpp", field="engine")
        if rules.engine != "V1":
            raise InvalidRequest(f"vLLM {rules.label} (V0) accounting for hybrid recurrent models is not modelled; "
                                 "use --engine-version 0.10 or newer", field="engine_version")
        block, state = hybrid_block_size(spec, kv_dtype, act_bytes, tp, block_size, ver)
        attn_page = block * kv_bytes_per_token_layer(spec, _attn_kind(spec), kv_dtype, act_bytes, tp)
        notes.append(f"hybrid model: attention block size set to {block} tokens so that one block holds a recurrent "
                     f"state ({state:,} B per layer per request, padded by {100 * (attn_page - state) / state:.2f}%); "
                     "each request holds one state block per recurrent layer (prefix caching off)")
    requested = int(gpu_total_bytes * util)
    ctx = cuda_context_bytes(tp, pp, spec)
    factor = mxfp4_expert_factor(spec, tp, rules.mxfp4_pad) if mxfp4_experts and spec.is_moe else 1.0
    stages_w = stage_weights(spec, wb, fmt, tp, pp, act_bytes, factor)
    rows = min(seqs, mnbt)
    nt = non_torch_bytes(rules, tp, pp)
    sizes = [] if enforce_eager else cudagraph_capture_sizes(seqs)
    cg = 0 if enforce_eager else cudagraph_estimate_bytes(len(sizes), tp)
    ws = 0
    if rules.moe_workspace_persistent and not mxfp4_experts:
        ws = moe_workspace_bytes(spec, mnbt, tp, act_bytes)
    pp_buffers = 2 * mnbt * spec.hidden_size * act_bytes  # hidden + residual sent/received between stages
    stages = []
    for s, sw in enumerate(stages_w):
        fwd = forward_peak_bytes(spec, mnbt, tp, act_bytes, rules.forward_overhead_bytes)
        if not rules.moe_workspace_persistent:
            fwd += moe_workspace_bytes(spec, mnbt, tp, act_bytes)
        last = s == pp - 1
        samp = sampler_peak_bytes(spec, mnbt, rows, act_bytes, rules) if last else 0
        if pp > 1:
            if s < pp - 1:
                fwd += pp_buffers  # the stage's output intermediate tensors
            if s > 0:
                samp = samp + pp_buffers if last else samp
                fwd += pp_buffers  # the preallocated receive buffers
        act = max(fwd, samp) + ws
        avail = requested - sw.weights_bytes - act - nt - (cg if rules.cudagraph_in_budget else 0)
        groups = tuple(kv_groups(spec, sw.layers, kv_dtype, act_bytes, tp, block, hybrid_kv, ver))
        if not groups:  # a stage whose layers all reuse other layers' caches (Gemma 4 E-models) holds no KV pool
            stages.append(StagePlan(s, len(sw.layers), sw.weights_bytes, act, nt, cg, avail, 0, groups, 1 << 62,
                                    fwd, samp, ws))
            continue
        group_size = max(g.layers for g in groups)
        page = groups[0].page_bytes
        block_bytes = page * group_size
        own = max(0, avail) // block_bytes if block_bytes else 0
        stages.append(StagePlan(s, len(sw.layers), sw.weights_bytes, act, nt, cg, avail, block_bytes, groups, own,
                                fwd, samp, ws))
    num_blocks = min(st.num_blocks_own for st in stages)
    pooled = [st for st in stages if st.groups] or stages
    n_groups = len(pooled[0].groups)
    tokens = (num_blocks // n_groups) * block if n_groups else 0
    # max concurrency: every stage holds num_blocks blocks; a request needs each stage's groups' blocks, so the stage
    # needing the most per request bounds it (a stage of recurrent layers only needs one block per layer)
    conc = 0.0
    per_req = max(sum(request_blocks(g, max_model_len, block, mnbt) for g in st.groups) for st in pooled)
    if per_req:
        conc = num_blocks / per_req
    per_token = max(sum(g.page_bytes * g.layers for g in st.groups) // block for st in stages)
    fits, error = True, ""
    if rules.startup_free_check and requested > gpu_total_bytes - ctx:
        fits = False
        error = (f"free memory on the device at start-up ({(gpu_total_bytes - ctx) / GiB:.2f} GiB of "
                 f"{gpu_total_bytes / GiB:.2f} GiB) is less than the requested gpu_memory_utilization {util} "
                 f"({requested / GiB:.2f} GiB): lower gpu_memory_utilization to at most "
                 f"{(gpu_total_bytes - ctx) / gpu_total_bytes:.3f}")
    worst = min(stages, key=lambda x: x.available_kv_bytes)
    if fits and worst.available_kv_bytes <= 0:
        fits = False
        error = (f"no memory left for the KV cache: {requested / GiB:.2f} GiB requested "
                 f"(gpu_memory_utilization {util}) - {worst.weights_bytes / GiB:.2f} GiB weights - "
                 f"{worst.activation_bytes / GiB:.2f} GiB activation peak - {worst.non_torch_bytes / GiB:.2f} GiB "
                 f"non-torch = {worst.available_kv_bytes / GiB:.2f} GiB (vLLM: 'No available memory for the cache "
                 f"blocks'). {_what_would_help(worst, requested, gpu_total_bytes, util, tp, pp, spec)}")
    elif fits:
        need = sum(request_blocks(g, max_model_len, block, mnbt) * g.page_bytes * g.layers for g in worst.groups)
        if need > worst.available_kv_bytes:
            fits = False
            est = _max_len_for(worst, block, mnbt)
            error = (f"one request of max_model_len {max_model_len:,} needs {need / GiB:.2f} GiB of KV cache, more "
                     f"than the {worst.available_kv_bytes / GiB:.2f} GiB available (vLLM refuses to start; its "
                     f"estimated maximum model length is {est:,}). Raise gpu_memory_utilization, lower "
                     f"max_model_len to {est:,} or less, use kv_cache_dtype fp8, or add GPUs "
                     f"(tensor_parallel_size {tp * 2})")
    if spec.extra_params and any("vision" in n or "projector" in n for n, _ in spec.extra_params):
        notes.append("multimodal model: vLLM also profiles the vision encoder with dummy images and videos (its budget "
                     "follows max_num_batched_tokens), which this plan does not model: public logs show the KV cache "
                     "1.2 GiB (Gemma 4, 8,192 batched tokens) to 3.8 GiB (Qwen3.6) smaller than predicted, within 1% "
                     "at 2,048, and video profiling can take far more (Qwen2.5-VL-3B on an A100-40GB: 5.26 GiB of KV "
                     "cache, 25.05 GiB with video off; vllm-project/vllm PR #25631). A zero --limit-mm-per-prompt for "
                     "every modality ('{\"image\": 0, \"video\": 0}') skips it for text-only serving")
    return VllmPlan(rules.label if version in (None, "", "latest") else str(version), rules, gpu_total_bytes, util,
                    requested, max_model_len, mnbt, seqs, block, tp, pp, kv_dtype, tuple(stages), num_blocks, tokens,
                    conc, per_token, ctx, fits, error, tuple(notes))


def _max_len_for(st: StagePlan, block: int, mnbt: int) -> int:
    lo, hi = 0, 1 << 24
    while lo < hi:
        mid = (lo + hi + 1) // 2
        need = sum(request_blocks(g, mid, block, mnbt) * g.page_bytes * g.layers for g in st.groups)
        if need <= st.available_kv_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo // block * block


def _what_would_help(st: StagePlan, requested: int, total: int, util: float, tp: int, pp: int,
                     spec: ModelSpec) -> str:
    short = -st.available_kv_bytes
    need_util = (requested + short) / total + 0.01
    parts = []
    if need_util < 1.0:
        parts.append(f"gpu_memory_utilization >= {need_util:.2f}")
    parts.append(f"tensor_parallel_size {tp * 2}")
    parts.append("a smaller weight format (e.g. fp8 or int4)")
    parts.append("a GPU with more memory")
    return "What would change it: " + ", ".join(parts) + "."


# ----- the engine entry point ------------------------------------------------------------------------------------

def act_bytes_for(fmt, spec: ModelSpec, dtype: str | None = None) -> int:
    """Activation dtype bytes: fp32 when the weights are fp32, otherwise 16-bit."""
    if getattr(fmt, "base_bytes", 2) == 4:
        return 4
    return 2


def plan(*, lm, fmt, wb, context: int, batch: int = 1, kv_dtype: str = "auto", tp: int = 1, pp: int = 1,
         gpu=None, engine_version: str | None = None, gpu_memory_utilization: float | None = None,
         max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None, **options) -> dict:
    """CONTRACT.md's inference dict for ``--engine vllm``: bytes per GPU (the first stage's figures; every stage is
    listed under ``stages`` when PP > 1)."""
    spec = lm.spec
    total = options.pop("gpu_memory_bytes", None)
    gpu_name = ""
    if total is None and gpu is not None:
        total = gpu.memory_total_bytes
        gpu_name = gpu.name
    assumed = total is None
    if assumed:
        total = DEFAULT_GPU_TOTAL_BYTES
        gpu_name = "H100-80GB (assumed)"
    act = act_bytes_for(fmt, spec)
    fmt_name = str(getattr(fmt, "name", "")).lower()
    p = vllm_memory(spec, wb, fmt, gpu_total_bytes=int(total), max_model_len=context, tp=tp, pp=pp,
                    kv_dtype=kv_dtype, act_bytes=act, utilization=gpu_memory_utilization,
                    max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                    version=engine_version, block_size=options.pop("block_size", None), gpu_name=gpu_name,
                    usage=options.pop("usage", "api"), enforce_eager=bool(options.pop("enforce_eager", False)),
                    hybrid_kv=not options.pop("disable_hybrid_kv_cache_manager", False),
                    mla_block_size=int(options.pop("mla_block_size", 16)),
                    mxfp4_experts="mxfp4" in fmt_name)
    check = options.pop("check_fit", True)
    if not p.fits and check:
        raise InvalidRequest(p.error, field="gpu_memory_utilization")
    return plan_to_dict(p, spec, assumed)


def plan_to_dict(p: VllmPlan, spec: ModelSpec, assumed_gpu: bool = False) -> dict:
    st = p.stages[0]
    kv_alloc = p.num_blocks * st.block_bytes
    graphs = st.cudagraph_bytes
    memory = {"weights": st.weights_bytes, "kv_cache": kv_alloc, "activations": st.activation_bytes,
              "runtime": st.non_torch_bytes, "cuda_graphs": graphs, "cuda_context": p.cuda_context_bytes}
    memory["total"] = sum(memory.values())
    capacity = {"kv_cache_tokens": p.kv_tokens, "max_concurrency": round(p.max_concurrency, 2),
                "kv_cache_blocks": p.num_blocks, "block_size": p.block_size,
                "kv_cache_available_bytes": st.available_kv_bytes, "requested_memory_bytes": p.requested_bytes,
                "gpu_memory_bytes": p.gpu_total_bytes, "fits": p.fits}
    if p.error:
        capacity["error"] = p.error
    stages = [{"stage": s.stage, "layers": s.layers, "weights": s.weights_bytes, "activations": s.activation_bytes,
               "runtime": s.non_torch_bytes, "kv_cache_available": s.available_kv_bytes,
               "kv_cache": p.num_blocks * s.block_bytes, "blocks_if_alone": s.num_blocks_own,
               "total": (s.weights_bytes + p.num_blocks * s.block_bytes + s.activation_bytes + s.non_torch_bytes
                         + s.cudagraph_bytes + p.cuda_context_bytes)}
              for s in p.stages]
    return {"memory": memory, "capacity": capacity,
            "engine": {"name": "vllm", "version": p.version, "rules": p.rules.label,
                       "gpu_memory_utilization": p.utilization, "max_num_batched_tokens": p.max_num_batched_tokens,
                       "max_num_seqs": p.max_num_seqs, "block_size": p.block_size,
                       "kv_cache_groups": len(st.groups), "assumed_gpu": assumed_gpu},
            "kv_bytes_per_token": p.kv_bytes_per_token, "stages": stages,
            "explain": explain(p, spec, assumed_gpu)}


def explain(p: VllmPlan, spec: ModelSpec, assumed_gpu: bool) -> list[str]:
    st = p.stages[0]
    g = lambda b: f"{b / GiB:.2f} GiB"  # noqa: E731
    lines = []
    if assumed_gpu:
        lines.append("no GPU given: assumed an H100-80GB (79.19 GiB visible to torch)")
    lines.append(f"vLLM {p.version} accounting (rules of {p.rules.label}, {p.rules.engine} engine): budget = "
                 f"{g(p.gpu_total_bytes)} x {p.utilization} = {g(p.requested_bytes)} per GPU")
    lines.append(f"weights: {g(st.weights_bytes)} per GPU (TP={p.tp}, PP={p.pp}; includes the rotary cache"
                 + (" and MLA absorbed W_UK/W_UV" if spec.is_mla else "") + ")")
    lines.append(f"activation peak of the profile run: {g(st.activation_bytes)} = max(forward over "
                 f"{p.max_num_batched_tokens:,} tokens {g(st.forward_peak_bytes)}, sampler over "
                 f"{min(p.max_num_seqs, p.max_num_batched_tokens):,} x {spec.vocab_size:,} logits "
                 f"{g(st.sampler_peak_bytes)})" + (f" + fused-MoE workspace {g(st.moe_workspace_bytes)}"
                                                  if st.moe_workspace_bytes else ""))
    lines.append(f"non-torch memory during profiling (NCCL, custom all-reduce, cuBLAS): {g(st.non_torch_bytes)}; "
                 f"CUDA context before the snapshot (outside the budget): {g(p.cuda_context_bytes)}")
    if p.rules.cudagraph_in_budget:
        lines.append(f"CUDA-graph estimate {g(st.cudagraph_bytes)} is taken out of the budget (v0.21+)")
    else:
        lines.append(f"CUDA graphs (~{g(st.cudagraph_bytes)}) are captured after the KV cache, in the memory left "
                     f"outside gpu_memory_utilization")
    bound = min((s for s in p.stages if s.groups), key=lambda s: s.num_blocks_own, default=st)
    lines.append(f"KV cache: {g(bound.available_kv_bytes)} available"
                 + (f" on stage {bound.stage} (the stage that holds the fewest blocks)" if p.pp > 1 else "")
                 + f" -> {p.num_blocks:,} blocks of {p.block_size} "
                 f"tokens ({st.block_bytes:,} B per block over {len(st.groups)} KV group(s)) = "
                 f"GPU KV cache size {p.kv_tokens:,} tokens; maximum concurrency {p.max_concurrency:.2f}x at "
                 f"{p.max_model_len:,} tokens")
    if len(st.groups) > 1 and p.max_concurrency:
        lines.append(f"{len(st.groups)} KV cache groups share one block pool, so tokens / max_model_len is not the "
                     f"concurrency: the pool holds {p.max_concurrency:.2f} requests of {p.max_model_len:,} tokens "
                     f"(each group's blocks per request, sliding windows capped); later vLLM releases log the GPU KV "
                     f"cache size as concurrency x max_model_len = {int(p.max_concurrency * p.max_model_len):,} tokens "
                     f"(vllm-project/vllm PR #40694)")
    if spec.is_mla:
        lines.append(f"MLA: one {spec.kv_lora_rank + spec.qk_rope_head_dim}-element latent per token per layer; "
                     f"block {p.block_size} (FLASH_ATTN_MLA on Hopper in v0.19 logs; the FlashMLA backend uses 64: "
                     f"mla_block_size=64)")
    if p.pp > 1:
        lines.append("pipeline stages: " + "; ".join(
            f"stage {s.stage}: {s.layers} layers, weights {g(s.weights_bytes)}, activations "
            f"{g(s.activation_bytes)}, "
            + (f"{s.num_blocks_own:,} blocks alone" if s.groups else "no KV cache (its layers reuse others' caches)")
            for s in p.stages)
                     + " (every stage uses the smallest block count)")
        totals = [(s.weights_bytes + p.num_blocks * s.block_bytes + s.activation_bytes + s.non_torch_bytes
                   + s.cudagraph_bytes + p.cuda_context_bytes, s.stage) for s in p.stages]
        heavy, idx = max(totals)
        if idx != st.stage:
            lines.append(f"the table shows stage 0 (the rank whose figures vLLM logs); the busiest GPUs are stage "
                         f"{idx}'s: {g(heavy)} each (JSON: stages)")
    lines += list(p.notes)
    return lines
