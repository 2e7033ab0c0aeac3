"""The public Python API: load a model from anything a user points at, and plan memory for it.

Every function returns plain dicts (JSON-ready, bytes as ints) that the CLI, the REST API and the web page render
unchanged: one code path.
"""

from __future__ import annotations

import os

from .core.memory import (CUDA_CONTEXT_BYTES, kv_bits, kv_cache, plan_inference_memory, pool_capacity,
                          tensor_parallel_ok)
from .core.model import ModelSpec, count_params
from .core.precision import WeightBytes, WeightFormat, dense_format, weight_bytes
from .core.records import record
from .errors import InvalidRequest, SourceError, UnknownName
from .units import MAX_TOKENS, parse_tokens

CONFIG_SIZE_CAP_BYTES = 10 * 1024 * 1024


@record
class LoadedModel:
    """A model spec plus where it came from and what the artefacts said beyond the config."""

    spec: ModelSpec
    name: str
    source: str  # "catalog", "file", "directory", "hub", "hub-cache", "gguf"
    hf_id: str | None = None
    provenance: str = ""
    messages: tuple[str, ...] = ()
    stored_weight_bytes: int | None = None  # from safetensors/GGUF headers, when read
    stored_by_dtype: tuple[tuple[str, int], ...] = ()
    gguf_ftype: str | None = None
    extra: dict | None = None  # e.g. {"gguf": parsed GGUF file}


def load_model(model: str | os.PathLike | ModelSpec, *, revision: str | None = None,
               source: str = "auto") -> LoadedModel:
    """Resolve a catalog name, HF id, config.json path, model directory or .gguf file.

    ``source``: "auto" (local path, then catalog for known names, then the Hub), "catalog", "hub" or "local".
    """
    if isinstance(model, ModelSpec):
        return LoadedModel(model, model.name, "spec")
    if isinstance(model, LoadedModel):
        return model
    name = os.fspath(model)
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("a model name or path is required", field="model")
    from .sources import loaders

    if source in ("auto", "local") and (os.path.exists(name) or name.endswith((".json", ".gguf"))):
        return loaders.load_local(name)
    if source == "local":
        raise SourceError("no such file or directory", path=name)
    from .catalog import models as catalog

    entry = catalog.find_model(name)
    if source == "hub" or (source == "auto" and entry is None and "/" in name) or (revision and "/" in name):
        return loaders.load_hub(name, revision=revision, fallback=entry)
    if entry is None:
        catalog.resolve_model(name)  # raises UnknownName with suggestions
    lm = loaders.load_catalog(entry)
    typed = name.strip()
    if "/" not in typed:  # a short alias with a repo listed under the same entry (qwen3.6-27b -> Qwen/Qwen3.6-27B)
        repo = next((a for a in entry.aliases if "/" in a and a.rsplit("/", 1)[-1].lower() == typed.lower()), None)
        if repo:
            lm = lm._replace(hf_id=repo, messages=lm.messages + (
                f"{typed}: {repo}, config from the catalog entry {entry.key} ({entry.hf_id}), the same architecture",))
    if "/" in typed and typed.lower() != (entry.hf_id or "").lower():
        note = f"{typed}: config from the catalog entry {entry.key} ({entry.hf_id}), the same architecture"
        last = typed.rsplit("/", 1)[-1].lower()
        listed = next((a for a in entry.aliases if "/" in a and a.lower() == typed.lower()), None)
        if listed or (":" not in typed and typed.count("/") == 1
                      and any(w in last for w in ("instruct", "chat", "-it"))):
            # a repo listed under this entry (same architecture), or an Instruct/chat repo of its base model:
            # serve what was named
            lm = lm._replace(hf_id=listed or typed, messages=lm.messages + (note,))
        else:
            lm = lm._replace(messages=lm.messages + (note + f"; the repo served is {entry.hf_id}",))
    return lm


# ----- weight formats -------------------------------------------------------------------------------------

def resolve_format(lm: LoadedModel, quantization: str | None = None, dtype: str = "auto") -> WeightFormat:
    """--quantization NAME, else the checkpoint's own quantization_config, else --dtype / the config's dtype."""
    from .catalog.formats import format_from_quant_config, get_format

    base = {"float32": 4, "fp32": 4}.get(str(dtype).lower(), 2)
    if quantization:
        return get_format(quantization, base_bytes=base)
    if lm.gguf_ftype:
        return get_format(lm.gguf_ftype)
    qc = lm.spec.quant_config
    unknown = ""
    if qc:
        fmt = format_from_quant_config(qc, base_bytes=base)
        if fmt is not None:
            return fmt
        unknown = str(qc.get("quant_method") or qc.get("quant_algo") or "?")
    d = lm.spec.torch_dtype if dtype in (None, "", "auto") else dtype
    d = str(d).lower()
    if d in ("float32", "fp32"):
        fmt = dense_format("fp32", 4, "config dtype float32")
    elif d in ("float16", "fp16", "half"):
        fmt = dense_format("fp16", 2, "config dtype float16")
    elif d in ("bfloat16", "bf16", "auto"):
        fmt = dense_format("bf16", 2, "config dtype bfloat16")
    else:
        raise UnknownName("dtype", str(dtype), ["auto", "bfloat16", "float16", "float32"])
    if unknown:  # say so rather than bill a quantized checkpoint at 16 bits without a word
        fmt = fmt._replace(label=f"{fmt.name} (the checkpoint's quantization_config quant_method {unknown!r} is not "
                                 f"modelled: weights counted at {fmt.name}; pass -q FORMAT to set one)")
    return fmt


def model_weight_bytes(spec: ModelSpec, fmt) -> WeightBytes:
    from .core.gguf_mix import GGUFMixFormat, gguf_weight_bytes

    if isinstance(fmt, GGUFMixFormat):
        return gguf_weight_bytes(spec, fmt.name)
    return weight_bytes(spec, fmt)


# ----- reports ----------------------------------------------------------------------------------------------

def model_summary(lm: LoadedModel) -> dict:
    pc = count_params(lm.spec)
    out = {"name": lm.name, "params": pc.total, "active_params": pc.active}
    if lm.hf_id:
        out["hf_id"] = lm.hf_id
    return out


def describe_model(model) -> dict:
    """Architecture facts and the parameter breakdown (groups sum to the total)."""
    lm = load_model(model)
    s = lm.spec
    pc = count_params(s)
    kinds: dict[str, int] = {}
    for k in s.kinds:
        kinds[k] = kinds.get(k, 0) + 1
    arch = {"model_type": s.model_type, "architecture": s.architecture, "hidden_size": s.hidden_size,
            "num_layers": s.num_layers, "num_heads": s.num_heads, "num_kv_heads": s.num_kv_heads,
            "head_dim": s.head_dim, "intermediate_size": s.intermediate_size, "vocab_size": s.vocab_size,
            "tie_embeddings": s.tie_embeddings, "layer_kinds": kinds, "sliding_window": s.sliding_window or None,
            "max_position_embeddings": s.max_position_embeddings or None, "torch_dtype": s.torch_dtype}
    if s.is_moe:
        arch.update(num_experts=s.num_experts, experts_per_token=s.experts_per_token,
                    moe_intermediate_size=s.moe_intermediate_size,
                    shared_expert_intermediate_size=s.shared_expert_intermediate_size)
        if s.moe_latent_size:
            arch["moe_latent_size"] = s.moe_latent_size
    if s.is_mla:
        arch.update(kv_lora_rank=s.kv_lora_rank, q_lora_rank=s.q_lora_rank, qk_rope_head_dim=s.qk_rope_head_dim)
    if s.indexer_heads:
        arch.update(indexer_heads=s.indexer_heads, indexer_head_dim=s.indexer_head_dim,
                    indexer_layers=sum(s.indexer_mask))
    if "mamba" in kinds:
        arch.update(recurrent_mixer=s.ssm_variant, recurrent_inner_width=s.d_inner,
                    recurrent_conv_channels=s.ssm_conv_channels(), conv_kernel=s.ssm_conv_kernel,
                    recurrent_state_bytes_per_layer_per_sequence=s.ssm_state_bytes_per_seq(),
                    ssm_state_dtype="float32" if s.ssm_state_bytes == 4 else "16-bit")
    return {"model": model_summary(lm), "source": lm.source, "provenance": lm.provenance,
            "messages": list(lm.messages), "architecture": arch,
            "params_breakdown": dict(pc.groups), "active_params_breakdown": dict(pc.active_groups),
            "mtp_params": pc.mtp or None, "quantization_config": s.quant_config or None}


def _positive(value, name: str, hi: int = 1 << 20) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}", field=name)
    if not 1 <= value <= hi:
        raise InvalidRequest(f"{name} must be between 1 and {hi:,}, got {value:,}", field=name)
    return value


def tokens_arg(value, name: str = "max_model_len") -> int:
    if value is None:
        return 0
    try:
        if name == "training_tokens":  # a budget: decimal suffixes, up to 10^15
            from .units import parse_token_budget

            return parse_token_budget(value)
        return parse_tokens(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field=name) from None


def _serves_fp32_as_16bit(engine: str) -> bool:
    from .engines import resolve_engine

    return resolve_engine(engine).name in ("vllm", "sglang")


def plan_inference(model, *, quantization: str | None = None, dtype: str = "auto", kv_cache_dtype: str = "auto",
                   max_model_len=None, batch_size: int = 1, tensor_parallel_size: int = 1,
                   pipeline_parallel_size: int = 1, engine: str | None = None, engine_version: str | None = None,
                   gpu: str | None = None, gpu_memory_utilization: float | None = None,
                   max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                   **engine_options) -> dict:
    """Inference memory per GPU as CONTRACT.md's JSON object (bytes), with a breakdown and explanations."""
    lm = load_model(model)
    spec = lm.spec
    tp = _positive(tensor_parallel_size, "tensor_parallel_size", 1024)
    pp = _positive(pipeline_parallel_size, "pipeline_parallel_size", 1024)
    batch = _positive(batch_size, "batch_size", 1 << 20)
    if tp > 1 and set(spec.kinds) == {"mamba"}:
        raise InvalidRequest("tensor parallelism is not modelled for state-space (Mamba) models; use "
                             "tensor_parallel_size 1", field="tensor_parallel_size")
    if not tensor_parallel_ok(spec, tp):  # the rule fit and launch apply (vLLM's)
        raise InvalidRequest(f"tensor_parallel_size {tp} does not split {lm.name}'s {spec.num_heads} attention heads "
                             f"({spec.num_kv_heads} KV heads) evenly", field="tensor_parallel_size")
    if pp > spec.num_layers:
        raise InvalidRequest(f"pipeline_parallel_size {pp} exceeds the {spec.num_layers} layers of {lm.name}",
                             field="pipeline_parallel_size")
    ctx = tokens_arg(max_model_len) or spec.max_position_embeddings or 4096
    if ctx > MAX_TOKENS:
        raise InvalidRequest(f"max_model_len {ctx:,} is absurd", field="max_model_len")
    kv_bits(kv_cache_dtype)  # validates the name
    fmt = resolve_format(lm, quantization, dtype)
    served_16bit = (engine and fmt.name == "fp32" and dtype in (None, "", "auto") and not quantization
                    and _serves_fp32_as_16bit(engine))
    if served_16bit:
        # vLLM's and SGLang's dtype "auto" loads a float32 checkpoint in 16 bits (float16, bfloat16 from vLLM 0.10.1)
        fmt = dense_format("bf16", 2, "float32 checkpoint served in 16 bits (the engine's dtype auto)")
    wb = model_weight_bytes(spec, fmt)
    if lm.stored_weight_bytes and not quantization and dtype in (None, "", "auto") and not served_16bit:
        # the checkpoint's headers are exact; the config-derived groups stay as the breakdown, and what the
        # headers hold beyond them (rotary buffers, MTP layers, scales, padding) is its own line
        diff = lm.stored_weight_bytes - wb.total_bytes
        groups = wb.groups + ((("stored beyond the config-derived tensors", diff),) if diff else ())
        wb = WeightBytes(groups, lm.stored_weight_bytes, wb.quantized_params, wb.kept_params, wb.format_name)
    gpu_obj = None
    if gpu:
        from .catalog.gpus import get_gpu

        gpu_obj = get_gpu(gpu)
    if engine:
        from .engines import plan_with_engine

        result = plan_with_engine(engine, lm=lm, fmt=fmt, wb=wb, context=ctx, batch=batch, kv_dtype=kv_cache_dtype,
                                  tp=tp, pp=pp, gpu=gpu_obj, engine_version=engine_version,
                                  gpu_memory_utilization=gpu_memory_utilization,
                                  max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                                  **engine_options)
    else:
        layers = None
        if pp > 1:
            from .core.precision import per_layer_bytes

            layers = per_layer_bytes(spec, fmt)
        mem = plan_inference_memory(spec, wb, ctx, batch, kv_cache_dtype, tp, pp, layer_bytes=layers)
        result = {"memory": mem.as_dict(), "kv_bytes_per_token": mem.kv.bytes_per_token,
                  "kv_by_layer_kind": dict(mem.kv.by_kind)}
        if gpu_obj is not None:
            # what the framework sees (runtime is already a component); Apple: the GPU working-set limit
            usable = gpu_obj.memory_usable_bytes if gpu_obj.unified_memory else gpu_obj.memory_total_bytes
            non_kv = result["memory"]["total"] - result["memory"]["kv_cache"]
            tokens, seqs = pool_capacity(usable - non_kv, mem.kv.bytes_per_token, mem.kv.state_bytes_per_seq, ctx)
            result["capacity"] = {"kv_cache_tokens": tokens, "max_concurrency": round(seqs, 2),
                                  "gpu_memory_bytes": usable, "fits": result["memory"]["total"] <= usable}
        result["explain"] = _explain_plain(spec, fmt, wb, mem, ctx, batch, kv_cache_dtype, tp, pp)
        unused = [k for k, v in {"engine_version": engine_version, "gpu_memory_utilization": gpu_memory_utilization,
                                 "max_num_batched_tokens": max_num_batched_tokens, "max_num_seqs": max_num_seqs,
                                 **engine_options}.items() if v is not None]
        if unused:  # engine settings with no engine named change nothing: say so rather than drop them silently
            result["explain"].append(f"ignored without an engine: {', '.join(unused)} (name one: vllm, sglang, "
                                     f"llama.cpp, transformers)")
    cap = result.get("capacity") or {}
    conc = cap.get("max_concurrency")
    if conc is not None and cap.get("fits", True) and 1 <= conc < batch:
        result.setdefault("explain", []).append(
            f"batch {batch} is more than the {conc:.2f} requests of {ctx:,} tokens the KV pool holds: an engine runs "
            f"{int(conc)} at once at full length and queues the rest (shorter requests fit more)")
    limit = spec.max_position_embeddings
    if limit and ctx > limit:  # counted as asked, but the model was not trained for it
        result.setdefault("explain", []).append(
            f"{ctx:,} tokens is beyond the model's max_position_embeddings ({limit:,}): the memory is counted as "
            f"asked, but quality past it needs RoPE scaling"
            + ("; vLLM refuses such a max_model_len unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1" if engine == "vllm"
               else ""))
    out = {"model": model_summary(lm), **result}
    out.setdefault("weights_format", {"name": fmt.name, "label": getattr(fmt, "label", fmt.name),
                                      "bits_per_weight": round(wb.bits_per_weight, 4),
                                      "total_bytes": wb.total_bytes, "by_group": wb.as_dict(),
                                      "source": getattr(fmt, "source", "")})
    out["request"] = {"max_model_len": ctx, "max_model_len_default": not max_model_len, "batch_size": batch, "kv_cache_dtype": kv_cache_dtype,
                      "tensor_parallel_size": tp, "pipeline_parallel_size": pp, "engine": engine,
                      "gpu": gpu_obj.name if gpu_obj else None}
    out["source"] = {"kind": lm.source, "provenance": lm.provenance, "messages": list(lm.messages)}
    return out


def _explain_plain(spec, fmt, wb, mem, ctx, batch, kv_dtype, tp, pp) -> list[str]:
    from .units import format_bytes as fb

    lines = [f"weights: {wb.total_bytes:,} B ({fb(wb.total_bytes)}) as {getattr(fmt, 'label', fmt.name)}, "
             f"{wb.bits_per_weight:.3f} bits/weight on average over {wb.quantized_params + wb.kept_params:,} params"]
    if tp > 1 or pp > 1:
        lines.append(f"per GPU with TP={tp}, PP={pp}: {fb(mem.as_dict()['weights'])} (matrices split, norms "
                     f"replicated)")
    kinds = ", ".join(f"{k}: {fb(v)}" for k, v in mem.kv.by_kind)
    flat = batch * ctx * mem.kv.bytes_per_token
    if flat == mem.kv.total_bytes:
        lines.append(f"KV cache: {batch} x {ctx:,} tokens x {mem.kv.bytes_per_token:,} B/token ({kv_dtype}) -> "
                     f"{fb(mem.kv.total_bytes)} [{kinds}]")
    else:  # windows cap some layers, compressed layers keep one entry per r tokens, recurrent layers a fixed state
        lines.append(f"KV cache: {batch} x {ctx:,} tokens ({kv_dtype}) -> {fb(mem.kv.total_bytes)} [{kinds}]; "
                     f"{mem.kv.bytes_per_token:,} B/token while every window still grows, less beyond "
                     f"(windowed layers stop, compressed layers add one entry per few tokens, recurrent states are "
                     f"fixed per sequence)")
    if spec.indexer_heads and spec.is_mla and not spec.indexer_layer_mask:
        lines.append(f"DSA lightning-indexer keys ({spec.indexer_head_dim} per token per layer) are counted at the KV "
                     f"dtype, as llama.cpp stores them; vLLM and SGLang keep them as fp8 + one fp32 scale per 128 "
                     f"({spec.indexer_head_dim + spec.indexer_head_dim // 128 * 4} B), see --engine")
    from .core.memory import PREFILL_CHUNK_TOKENS

    lines.append(f"activations: prefill in chunks of up to {PREFILL_CHUNK_TOKENS:,} tokens, one layer live, "
                 f"SDPA/flash (no s^2 scores) + last-token logits: {fb(mem.as_dict()['activations'])}")
    lines.append(f"runtime: CUDA context and library workspaces, {fb(CUDA_CONTEXT_BYTES)} per GPU (estimate)")
    return lines


def kv_table(model, contexts=(1024, 16000, 128000), kv_cache_dtype: str = "auto", batch_size: int = 1) -> dict:
    lm = load_model(model)
    return {str(c): kv_cache(lm.spec, c, batch_size, kv_cache_dtype).total_bytes for c in contexts}
