"""SGLang's static memory pool: ``mem_fraction_static`` and the token pool it leaves for the KV cache.

SGLang (``python/sglang/srt/model_executor/model_runner.py`` profile_max_num_token) measures the free memory after
loading the weights and keeps ``(1 - mem_fraction_static)`` of the memory that was free at start-up for activations,
CUDA graphs and everything else; the rest is the KV pool:

    rest = free_after_weights - free_at_start x (1 - mem_fraction_static)
    max_total_num_tokens = rest // cell_size
    cell_size = kv_heads_per_rank x head_dim x 2 (K, V) x layers x bytes(kv dtype)    (MLA: (kv_lora + rope) x layers)

so ``KV = free_at_start x mem_fraction_static - weights``. The default fraction (``server_args.py``, 2024-25 releases)
falls with tensor parallelism: 0.88 (TP1), 0.87 (TP2), 0.85 (TP4), 0.81 (TP8), 0.79 (TP16). SGLang logs
"KV Cache is allocated. #tokens: N, K size: X GB, V size: X GB" (GB printed, GiB computed).

Hybrid models (Qwen3-Next, Nemotron-H, Granite 4.0-H; rules of 0.5.9+): the pool budget is first split with the
recurrent-state pool, ``max_mamba_cache_size = budget x r / (1 + r) // state_per_request`` (r =
``--mamba-full-memory-ratio``, 0.9) or ``--max-running-requests`` with the radix cache off; the state pool holds one
slot more; the attention pool gets the rest and only attention layers count in its cell.
"""

from __future__ import annotations

from ..core.model import DELTA_RULE, MAMBA, MAMBA2, MLA, NOMIX, SLIDING, ModelSpec
from ..core.memory import kv_elements_per_token_rank
from ..errors import InvalidRequest
from .vllm import DEFAULT_GPU_TOTAL_BYTES, act_bytes_for, kv_dtype_bytes, stage_weights

GiB = 1 << 30
VERSIONS = ("0.4.0",)
DEFAULT_VERSION = VERSIONS[-1]
CONTEXT_BYTES_TP1 = int(0.51 * GiB)  # CUDA context before the pool is sized (as measured for vLLM on H100)
CONTEXT_BYTES_TP = int(1.5 * GiB)  # with NCCL communicators (TP > 1)


def check_version(text) -> str:
    """The release whose rules apply: the one modelled (0.4.0) for it or any later version; older is unknown."""
    import re

    from ..errors import UnknownName

    if text in (None, "", "latest"):
        return DEFAULT_VERSION
    m = re.match(r"^\s*v?(\d+)\.(\d+)", str(text))
    if not m or (int(m.group(1)), int(m.group(2))) < (0, 4):
        raise UnknownName("SGLang version", str(text), list(VERSIONS))
    return str(text).strip()


def default_mem_fraction_static(tp: int) -> float:
    """server_args.py default by tensor-parallel size (2024-25 releases)."""
    if tp >= 16:
        return 0.79
    if tp >= 8:
        return 0.81
    if tp >= 4:
        return 0.85
    if tp >= 2:
        return 0.87
    return 0.88


def cell_size_bytes(spec: ModelSpec, kv_dtype: str, act_bytes: int, tp: int, layers=None) -> int:
    """Bytes one token takes in the pool on one rank (every attention layer of the rank's pipeline stage, all
    layers by default; SGLang's pool has no sliding-window saving by default, so sliding layers count in full)."""
    b = kv_dtype_bytes(kv_dtype, act_bytes, spec.is_mla)
    layers = range(spec.num_layers) if layers is None else layers
    kinds = spec.cache_kinds
    total = 0.0
    for k in (kinds[i] for i in layers):
        if k == MLA:
            total += (spec.kv_lora_rank + spec.qk_rope_head_dim) * b
        elif k in (MAMBA, NOMIX):
            continue
        else:
            total += kv_elements_per_token_rank(spec, k, tp) * b
    if spec.indexer_heads and not spec.o_groups:
        # lightning-indexer keys: DSA's fp8 keys + one fp32 scale per 128 (132 B), MiniMax-M3's in the model dtype
        per = spec.indexer_head_dim + spec.indexer_head_dim // 128 * 4 if spec.is_mla else spec.indexer_head_dim * act_bytes
        total += per * sum(spec.indexer_mask[i] for i in layers)
    return int(total)


MAMBA_FULL_MEMORY_RATIO = 0.9
"""server_args.py ``--mamba-full-memory-ratio`` default: the mamba state pool gets r / (1 + r) of the pool budget."""


def mamba_state_bytes_per_request(spec: ModelSpec, tp: int, layers=None) -> int:
    """One request's recurrent state on one rank (``configs/mamba_utils.py`` Mamba2StateShape): per recurrent layer a
    conv state of (conv_dim / TP) x (conv_kernel - 1) in bf16, conv_dim = inner + 2 x groups x d_state (groups padded
    up to TP when TP does not divide them), and an SSM state of heads / TP x head_dim x d_state in mamba_ssm_dtype
    (fp32 by default). Qwen3-Next's gated DeltaNet maps onto it with inner = value heads x v_dim, groups = key heads,
    d_state = k_dim. Only the recurrent layers of the given pipeline stage (all layers by default) count."""
    if spec.ssm_variant in DELTA_RULE:  # KDA's three short convs (q, k, v) add up to the same width
        inner, groups, state = spec.lin_v_heads * spec.lin_v_dim, spec.lin_k_heads, spec.lin_k_dim
        heads, head_dim = spec.lin_v_heads, spec.lin_v_dim
    elif spec.ssm_variant == MAMBA2:
        inner, groups, state = spec.d_inner, spec.ssm_groups, spec.ssm_state_size
        heads, head_dim = spec.ssm_heads, spec.d_inner // spec.ssm_heads
    else:
        raise InvalidRequest(f"SGLang plans for {spec.ssm_variant} hybrids (Jamba's Mamba-1, LFM2's short convolutions) "
                             "are not modelled", field="engine")
    if groups % tp:
        groups = tp
    conv = (inner + 2 * groups * state) // tp * (spec.ssm_conv_kernel - 1) * 2
    ssm = (heads // tp) * head_dim * state * 4
    layers = range(spec.num_layers) if layers is None else layers
    return sum(spec.kinds[i] == MAMBA for i in layers) * (conv + ssm)


def plan(*, lm, fmt, wb, context: int, batch: int = 1, kv_dtype: str = "auto", tp: int = 1, pp: int = 1, gpu=None,
         engine_version=None, gpu_memory_utilization=None, max_num_batched_tokens=None, max_num_seqs=None,
         **options) -> dict:
    spec = lm.spec
    engine_version = check_version(engine_version)
    total = options.get("gpu_memory_bytes") or (gpu.memory_total_bytes if gpu is not None else None)
    assumed = total is None
    total = int(total or DEFAULT_GPU_TOTAL_BYTES)
    mfs = options.get("mem_fraction_static") or gpu_memory_utilization or default_mem_fraction_static(tp)
    if not 0.0 < mfs < 1.0:
        raise InvalidRequest(f"mem_fraction_static must be in (0, 1), got {mfs}", field="mem_fraction_static")
    act = act_bytes_for(fmt, spec)
    stages = stage_weights(spec, wb, fmt, tp, pp, act)
    weights = max(s.weights_bytes for s in stages)
    ctx = CONTEXT_BYTES_TP1 if tp == 1 and pp == 1 else CONTEXT_BYTES_TP
    free_start = total - ctx
    # the free memory after loading is the minimum over all ranks (get_available_gpu_memory(distributed=True)),
    # so every rank's pool budget is set by the heaviest stage; each rank's cell counts only its own layers
    kv = int(free_start * mfs) - weights
    cells = [cell_size_bytes(spec, kv_dtype, act, tp, st.layers) for st in stages]
    cell = max(cells)  # the bounding stage's cell replaces it below
    if kv <= 0 and options.get("check_fit", True):
        raise InvalidRequest(
            f"SGLang has no room for a KV pool: {mfs} x {free_start / GiB:.2f} GiB free at start-up = "
            f"{free_start * mfs / GiB:.2f} GiB is less than the {weights / GiB:.2f} GiB of weights per GPU; raise "
            f"mem_fraction_static, add GPUs (tensor_parallel_size {tp * 2}) or use a smaller weight format",
            field="mem_fraction_static")
    if not cell and MAMBA in spec.kinds:
        raise InvalidRequest("SGLang plans for purely recurrent models (no attention layer) are not modelled",
                             field="engine")
    # per stage: (tokens, recurrent-state slots, state bytes); the stage that holds the fewest tokens bounds the plan
    per_stage = []
    for st, c in zip(stages, cells):
        slots = state_bytes = 0
        per_req = mamba_state_bytes_per_request(spec, tp, st.layers) if MAMBA in spec.kinds else 0
        if per_req:
            if max_num_seqs:  # --max-running-requests with the radix cache off sizes the state pool directly
                slots = int(max_num_seqs)
            else:
                r = MAMBA_FULL_MEMORY_RATIO
                slots = int(max(kv, 0) * r / (1 + r) // per_req)
            state_bytes = (slots + 1) * per_req  # the pool holds one padding slot more
            if slots < 1 and options.get("check_fit", True):
                raise InvalidRequest(f"SGLang has no room for even one request's recurrent state "
                                     f"({per_req / GiB:.2f} GiB per request on each GPU)", field="mem_fraction_static")
        per_stage.append((max(0, kv - state_bytes) // c if c else None, slots, state_bytes, c))
    bounded = [p for p in per_stage if p[0] is not None] or [(0, 0, 0, 0)]
    tokens, mamba_slots, mamba_bytes, cell = min(bounded)
    if any(p[1] for p in per_stage):  # the stage with the most recurrent layers holds the fewest states
        mamba_slots, mamba_bytes = min((p[1], p[2]) for p in per_stage if p[1])
    reserved = free_start - int(free_start * mfs)
    memory = {"weights": weights, "kv_cache": max(kv, 0), "activations": reserved, "runtime": ctx}
    memory["total"] = sum(memory.values())
    conc = tokens / max(context, 1)
    if mamba_slots:
        conc = min(conc, mamba_slots)
    capacity = {"kv_cache_tokens": tokens, "max_concurrency": round(conc, 2),
                "token_size_bytes": cell, "gpu_memory_bytes": total, "fits": kv > 0 and tokens >= context}
    if mamba_slots:
        capacity.update(mamba_cache_size=mamba_slots, mamba_cache_bytes=mamba_bytes)
    notes = []
    if pp > 1:
        notes.append(f"pipeline stages of {', '.join(str(len(st.layers)) for st in stages)} layers: each rank's pool "
                     f"counts its own stage's layers ({', '.join(f'{c:,}' for c in cells)} B per token); the stage "
                     f"holding the fewest tokens bounds the plan")
    if any(k == SLIDING for k in spec.kinds):
        notes.append("sliding-window layers are pooled at full length (SGLang's default pool)")
    g = lambda b: f"{b / GiB:.2f} GiB"  # noqa: E731
    explain = (["no GPU given: assumed an H100-80GB (79.19 GiB)"] if assumed else []) + [
        f"SGLang: mem_fraction_static {mfs} of the {g(free_start)} free at start-up = {g(free_start * mfs)} for "
        f"weights and the KV pool; the other {g(reserved)} are left for activations and CUDA graphs",
        f"weights {g(weights)} per GPU; KV pool {g(max(kv, 0))} = {tokens:,} tokens of {cell:,} B"
        + (f" after a recurrent-state pool of {mamba_slots:,} requests ({g(mamba_bytes)}; "
           f"{mamba_bytes // (mamba_slots + 1):,} B each, SSM state fp32; "
           f"{'--max-running-requests' if max_num_seqs else f'mamba_full_memory_ratio {MAMBA_FULL_MEMORY_RATIO}'})"
           if mamba_slots else ""),
    ] + notes
    return {"memory": memory, "capacity": capacity,
            "engine": {"name": "sglang", "version": str(engine_version or DEFAULT_VERSION),
                       "mem_fraction_static": mfs, "assumed_gpu": assumed},
            "kv_bytes_per_token": cell, "explain": explain}
