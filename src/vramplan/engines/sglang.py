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
"""

from __future__ import annotations

from ..core.model import MAMBA, MLA, NOMIX, SLIDING, ModelSpec
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


def cell_size_bytes(spec: ModelSpec, kv_dtype: str, act_bytes: int, tp: int) -> int:
    """Bytes one token takes in the pool on one rank (every attention layer; SGLang's pool has no sliding-window
    saving by default, so sliding layers count in full)."""
    b = kv_dtype_bytes(kv_dtype, act_bytes, spec.is_mla)
    total = 0.0
    for k in spec.kinds:
        if k == MLA:
            total += (spec.kv_lora_rank + spec.qk_rope_head_dim) * b
        elif k in (MAMBA, NOMIX):
            continue
        else:
            total += kv_elements_per_token_rank(spec, k, tp) * b
    return int(total)


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
    weights = max(s.weights_bytes for s in stage_weights(spec, wb, fmt, tp, pp, act))
    ctx = CONTEXT_BYTES_TP1 if tp == 1 and pp == 1 else CONTEXT_BYTES_TP
    free_start = total - ctx
    kv = int(free_start * mfs) - weights
    cell = cell_size_bytes(spec, kv_dtype, act, tp)
    tokens = max(0, kv) // cell if cell else 0
    reserved = free_start - int(free_start * mfs)
    if kv <= 0 and options.get("check_fit", True):
        raise InvalidRequest(
            f"SGLang has no room for a KV pool: {mfs} x {free_start / GiB:.2f} GiB free at start-up = "
            f"{free_start * mfs / GiB:.2f} GiB is less than the {weights / GiB:.2f} GiB of weights per GPU; raise "
            f"mem_fraction_static, add GPUs (tensor_parallel_size {tp * 2}) or use a smaller weight format",
            field="mem_fraction_static")
    memory = {"weights": weights, "kv_cache": max(kv, 0), "activations": reserved, "runtime": ctx}
    memory["total"] = sum(memory.values())
    capacity = {"kv_cache_tokens": tokens, "max_concurrency": round(tokens / max(context, 1), 2),
                "token_size_bytes": cell, "gpu_memory_bytes": total, "fits": kv > 0 and tokens >= context}
    notes = []
    if any(k == SLIDING for k in spec.kinds):
        notes.append("sliding-window layers are pooled at full length (SGLang's default pool)")
    g = lambda b: f"{b / GiB:.2f} GiB"  # noqa: E731
    explain = (["no GPU given: assumed an H100-80GB (79.19 GiB)"] if assumed else []) + [
        f"SGLang: mem_fraction_static {mfs} of the {g(free_start)} free at start-up = {g(free_start * mfs)} for "
        f"weights and the KV pool; the other {g(reserved)} are left for activations and CUDA graphs",
        f"weights {g(weights)} per GPU; KV pool {g(max(kv, 0))} = {tokens:,} tokens of {cell:,} B",
    ] + notes
    return {"memory": memory, "capacity": capacity,
            "engine": {"name": "sglang", "version": str(engine_version or DEFAULT_VERSION),
                       "mem_fraction_static": mfs, "assumed_gpu": assumed},
            "kv_bytes_per_token": cell, "explain": explain}
