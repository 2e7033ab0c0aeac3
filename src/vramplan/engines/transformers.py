"""Hugging Face transformers ``generate``: weights, the DynamicCache, and the prefill peak.

* KV: ``DynamicCache`` for ``batch`` sequences of ``context`` tokens (prompt + new tokens); each step ``torch.cat``s
  the new token onto every layer's K and V, so one layer's cache exists twice for a moment (a transient of one
  layer). Sliding-window layers keep ``sliding_window - 1`` tokens from transformers 4.53 (``DynamicSlidingWindowLayer``;
  older releases kept the full length in some paths, formulas.md 3.3).
* Prefill activations (one layer live, inference mode), measured on an H200 with transformers 5.17 / torch 2.11
  (benchmarks/measurements/h200-2026-11-26.jsonl; fitted on the 18 Llama runs, held out on Qwen3 0.6B / 8B):
  ``(4 h + 3 I) x 2`` bytes per prompt token (the eager Python layer holds four hidden-sized tensors beside the
  MLP's gate, up and product; the fused engines hold two), or at the attention, ``(4 h + q + k + v + o) x 2`` plus
  what the attention implementation adds; plus the cuBLAS workspace (32 MiB on Hopper). Eager attention adds, for
  one layer, ``b x n_h x s^2`` scores in the model dtype, their fp32 upcast inside softmax and the fp32 result
  (10 bytes per score at 16 bits; 9.7 measured), and an additive mask ``b x s^2`` in the model dtype. SDPA on a
  model with sliding-window layers and a prompt longer than the window gets a boolean ``b x s^2`` mask (it cannot
  use ``is_causal``), which SDPA turns into an additive mask in the model dtype inside those layers (through a
  ``logical_not`` temporary: 3 more bytes per element), and transformers then repeats K and V to every query head
  (SDPA's GQA path takes no mask). Gemma 3 1B at 16k tokens: 1.31 GiB predicted, 1.42 GiB measured.
* Logits (formulas.md 4.1): up to 4.44 every ``*ForCausalLM.forward`` returned fp32 logits for the whole prompt
  (``b x s x V x (2 + 4)`` bytes); from 4.45 ``generate`` keeps only the last token's logits (``num_logits_to_keep``)
  and copies them to fp32 (``b x V x 4``).
* Decode: each step ``torch.cat``s one token onto every layer's cache, so one layer's cache briefly exists twice; the
  step's activations are tiny, so the peak is the larger of that copy and the prefill transient, not their sum.
* Runtime: what a PyTorch process holds outside its allocator after prefill and decode, 695 MiB measured on an H200
  (CUDA context 619 MiB + kernels loaded on first use; core/memory.py ``TORCH_INFERENCE_RUNTIME_BYTES``).
"""

from __future__ import annotations

import re
from math import ceil

from ..core.memory import (CUBLAS_WORKSPACE_BYTES, TORCH_INFERENCE_RUNTIME_BYTES, _prefill_widths, kv_bits,
                           kv_elements_per_token_rank, pool_capacity, weights_per_gpu_bytes)
from ..core.model import MAMBA, MLA, SLIDING, ModelSpec, group_mlp_width, layer_groups
from ..errors import InvalidRequest, UnknownName

VERSIONS = ("4.36.0", "4.45.0", "4.53.0", "5.17.0")  # behaviour changes; 5.17 is the release we measured
DEFAULT_VERSION = VERSIONS[-1]
GiB = 1 << 30


def _ver(text) -> tuple[int, int]:
    if text in (None, "", "latest"):
        text = DEFAULT_VERSION
    m = re.match(r"^\s*v?(\d+)\.(\d+)", str(text))
    if not m:
        raise UnknownName("transformers version", str(text), list(VERSIONS))
    v = (int(m.group(1)), int(m.group(2)))
    if v < (4, 36):
        raise UnknownName("transformers version", str(text), list(VERSIONS))
    return v


def hf_cache_elements(spec: ModelSpec, kind: str, tp: int) -> int:
    """Elements one token adds to one layer of transformers' cache. MLA layers (DeepSeek-V2/V3 and the models that
    reuse their attention) cache the decompressed per-head K (nope + rope) and V, not the latent: transformers'
    DeepseekV3Attention calls past_key_values.update on the full key and value states."""
    if kind == MLA:
        heads = max(1, spec.num_heads // tp)
        return heads * (spec.qk_nope_head_dim + spec.qk_rope_head_dim + spec.v_head_dim)
    return kv_elements_per_token_rank(spec, kind, tp)


def dynamic_cache_bytes(spec: ModelSpec, tokens: int, batch: int, kv_dtype: str, tp: int,
                        window_capped: bool) -> tuple[int, int]:
    """(total cache bytes, bytes of the largest single layer) for ``batch`` sequences of ``tokens`` tokens."""
    bits = kv_bits(kv_dtype)
    total = biggest = 0
    for kind in spec.cache_kinds:
        b = 0
        if kind != MAMBA:
            t = tokens
            if kind == SLIDING and spec.sliding_window and window_capped:
                t = min(tokens, spec.sliding_window - 1)
            b = ceil(hf_cache_elements(spec, kind, tp) * t * batch * bits / 8)
        if spec.has_recurrent_state(kind):  # (Falcon-H1 / Zamba2: beside the K/V)
            b += spec.ssm_state_bytes_per_seq(tp) * batch
        total += b
        biggest = max(biggest, b)
    return total, biggest


ALLOCATOR_SLACK = 0.4
"""What PyTorch's caching allocator reserves beyond the prefill's peak allocation, as a fraction of the prefill
transient: blocks freed by one layer's MLP are split by the next layer's cache tensors, so a later MLP tensor may need
a new segment. Measured reserved - allocated over the transient: median 0.46 (0.18-0.68, and two 1k-token batch-1 runs
at 4-6x) on the 18 Llama SDPA runs of benchmarks/measurements/h200-2026-11-26.jsonl; 0.4 minimises their median
device-total error (1.0%); held out: Qwen3 0.6B / 8B, Qwen3-30B-A3B and eager Llama-3.2-3B."""
LIVE_HIDDEN = 4
"""Hidden-sized tensors alive at a transformers decoder layer's peak beside the MLP's (measured, see above)."""


def _mlp_peak_elements(spec: ModelSpec, tp: int, grouped_moe: bool) -> int:
    """Elements per token live in the widest feed-forward block beside the hidden-sized tensors.

    Dense (and shared-expert) MLPs: gate, up and their product, 3 x width. Routed experts from transformers 5
    (``grouped_mm_experts_forward``): each token's hidden state copied once per chosen expert (k x h, held to the end),
    then either the gate-up output, its masked copy and the gated product (k x (2I + 2I)), or, at the end, the down
    output, its masked and weighted copies and the re-ordered one (k x 4h minus the held copy) - the larger of
    k x (h + 4I) and k x 4h. Measured on Qwen3-30B-A3B: 0.60 GiB predicted 0.59 GiB at 4,088 tokens. Before 5.0 the
    experts ran one at a time on their own tokens, a small transient; we keep 3 x the routed width there."""
    h = spec.hidden_size
    best = 0
    for g in layer_groups(spec):
        dense, routed = group_mlp_width(spec, g)
        peak = 3 * dense // tp
        if routed:
            k, inter = spec.experts_per_token, spec.moe_intermediate_size // tp
            moe = k * max(h + 4 * inter, 4 * h) if grouped_moe else 3 * routed // tp
            peak = max(moe, peak + h if dense else 0)  # the shared expert runs with the routed output held
        best = max(best, peak)
    return best


def _sdpa_sliding_mask(spec: ModelSpec, attn: str, prompt: int) -> bool:
    """SDPA on a model with sliding-window layers and a prompt past the window: transformers builds a boolean mask
    (it cannot use ``is_causal`` there)."""
    return attn == "sdpa" and SLIDING in spec.kinds and bool(spec.sliding_window) and prompt > spec.sliding_window


def prefill_peak_bytes(spec: ModelSpec, prompt: int, batch: int, tp: int, dtype_bytes: int, logits_tokens: int,
                       attn: str, grouped_moe: bool = True) -> int:
    """The prefill forward's transient peak above the weights and the cache (one layer live, inference mode)."""
    n = prompt * batch
    h = spec.hidden_size
    _, attn_width = _prefill_widths(spec)
    mlp_time = n * (LIVE_HIDDEN * h + _mlp_peak_elements(spec, tp, grouped_moe)) * dtype_bytes
    attn_time = n * (LIVE_HIDDEN * h + attn_width // tp) * dtype_bytes
    mask = 0
    if attn == "eager":
        heads = max(1, spec.num_heads // tp)
        upcast = 0 if dtype_bytes >= 4 else 4  # softmax(dtype=float32) copies 16-bit scores to fp32 first
        attn_time += batch * heads * prompt * prompt * (dtype_bytes + upcast + 4)
        mask = batch * prompt * prompt * dtype_bytes
    elif _sdpa_sliding_mask(spec, attn, prompt):
        mask = batch * prompt * prompt  # torch.bool, for the whole forward
        # inside a sliding layer: SDPA turns the boolean mask into an additive one (zeros in the model dtype, filled
        # through a logical_not temporary), and with a mask transformers repeats K and V to every query head
        attn_time += batch * prompt * prompt * (dtype_bytes + 1)
        heads, kv_heads = spec.heads_for(SLIDING), spec.kv_heads_for(SLIDING)
        if kv_heads < heads:
            attn_time += n * 2 * (heads // tp) * spec.head_dim_for(SLIDING) * dtype_bytes
    logits = logits_tokens * batch * spec.vocab_size * (dtype_bytes + 4) // tp
    return max(mlp_time, attn_time) + mask + logits + CUBLAS_WORKSPACE_BYTES


def plan(*, lm, fmt, wb, context: int, batch: int = 1, kv_dtype: str = "auto", tp: int = 1, pp: int = 1, gpu=None,
         engine_version=None, gpu_memory_utilization=None, max_num_batched_tokens=None, max_num_seqs=None,
         **options) -> dict:
    spec = lm.spec
    v = _ver(engine_version)
    attn = str(options.get("attn_implementation") or "sdpa").lower()
    if attn not in ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"):
        raise UnknownName("attention implementation", attn, ["sdpa", "eager", "flash_attention_2"])
    new_tokens = int(options.get("max_new_tokens") or 0)
    if new_tokens < 0 or new_tokens >= context:
        raise InvalidRequest("max_new_tokens must be less than the context length", field="max_new_tokens")
    prompt = context - new_tokens
    dtype_bytes = 4 if getattr(fmt, "base_bytes", 2) == 4 else 2
    weights = weights_per_gpu_bytes(spec, wb, tp, pp)
    capped = v >= (4, 53)
    if str(kv_dtype).lower() == "auto" and dtype_bytes == 4:  # the DynamicCache holds K/V in the model's dtype
        kv_dtype = "float32"
    kv, layer_kv = dynamic_cache_bytes(spec, context, batch, kv_dtype, tp, capped)
    logits_tokens = 1 if v >= (4, 45) else prompt
    act = prefill_peak_bytes(spec, prompt, batch, tp, dtype_bytes, logits_tokens, attn, grouped_moe=v >= (5, 0))
    runtime = TORCH_INFERENCE_RUNTIME_BYTES
    # the decode step's cache copy and the prefill transient are never live together: the peak takes the larger
    copy_extra = max(0, layer_kv - act)
    slack = int(ALLOCATOR_SLACK * act)
    memory = {"weights": weights, "kv_cache": kv, "activations": act, "kv_transient": copy_extra,
              "allocator_cache": slack, "runtime": runtime}
    memory["total"] = sum(memory.values())
    out = {"memory": memory,
           "engine": {"name": "transformers", "version": str(engine_version or DEFAULT_VERSION),
                      "attn_implementation": attn, "max_new_tokens": new_tokens}}
    total_gpu = options.get("gpu_memory_bytes") or (gpu.memory_total_bytes if gpu is not None else None)
    per_tok = sum(hf_cache_elements(spec, k, tp) for k in spec.cache_kinds if k != MAMBA)
    per_tok_b = ceil(per_tok * kv_bits(kv_dtype) / 8)
    if total_gpu:
        room = int(total_gpu) - (memory["total"] - kv)
        state = sum(spec.ssm_state_bytes_per_seq(tp) for k in spec.cache_kinds if spec.has_recurrent_state(k))
        tokens, seqs = pool_capacity(room, per_tok_b, state, context)
        out["capacity"] = {"kv_cache_tokens": tokens, "max_concurrency": round(seqs, 2),
                           "gpu_memory_bytes": int(total_gpu), "fits": memory["total"] <= int(total_gpu)}
    g = lambda b: f"{b / GiB:.2f} GiB"  # noqa: E731
    out["kv_bytes_per_token"] = per_tok_b
    out["explain"] = [
        f"transformers {engine_version or DEFAULT_VERSION} generate ({attn} attention): weights {g(weights)}",
        f"DynamicCache for {batch} x {context:,} tokens: {g(kv)}"
        + (" (sliding layers capped at their window)" if capped and SLIDING in spec.kinds else "")
        + (" (MLA layers: transformers caches the decompressed per-head K and V, not the latent vLLM / SGLang keep)"
           if spec.is_mla else "")
        + f"; torch.cat copies one layer ({g(layer_kv)}) per decode step"
        + (f", {g(copy_extra)} above the prefill transient" if copy_extra else ", within the prefill transient"),
        f"prefill of {batch} x {prompt:,} tokens: {g(act)} including "
        + ("the last token's logits (num_logits_to_keep, transformers >= 4.45)" if logits_tokens == 1
           else "fp32 logits for the whole prompt (transformers <= 4.44)")
        + f" and the cuBLAS workspace ({CUBLAS_WORKSPACE_BYTES // (1 << 20)} MiB)"
        + (f"; eager attention's scores for one layer ({batch} x {spec.num_heads // tp} heads x {prompt:,}^2)"
           if attn == "eager" else "")
        + ("; SDPA's boolean sliding-window mask and its 16-bit copy" if _sdpa_sliding_mask(spec, attn, prompt)
           else ""),
        f"PyTorch caching allocator: {g(slack)} reserved beyond the peak allocation (0.4 x the prefill transient, "
        "measured)",
        f"runtime: CUDA context and loaded kernels of a PyTorch process {g(runtime)} (measured on an H200, CUDA 13)"]
    return out
