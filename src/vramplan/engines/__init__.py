"""Serving engines: how vLLM, SGLang, llama.cpp and transformers allocate memory.

:func:`plan_with_engine` is the one entry point the public API calls (``plan_inference(..., engine=...)``). Each
engine module is a set of pure functions over core types (ModelSpec, WeightBytes, a GPU or a memory size) plus a
``plan(**kw) -> dict`` that returns CONTRACT.md's inference dict: ``memory`` (bytes per GPU, keys summing to
``total``), ``capacity`` (where the engine has a KV pool), ``engine`` ({"name", "version", ...}) and ``explain``.

Engines change their accounting between releases, so every engine takes a version; :data:`ENGINES` lists the
releases whose rules are modelled and the default (the newest modelled). A version between two modelled releases
follows the older one; a version older than every modelled release is an :class:`~vramplan.errors.UnknownName`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownName, suggest


def newest_rules_not_after(rules, version, parsed, key, engine: str, versions):
    """The engine's rule set for ``version``: the newest modelled release not newer than it (``rules`` oldest first,
    ``key(rule)`` its first release in the form ``parsed`` has); the newest modelled one when no version is given."""
    if version in (None, "", "latest"):
        return rules[-1]
    chosen = None
    for r in rules:
        if key(r) <= parsed:
            chosen = r
    if chosen is None:
        raise UnknownName(engine, str(version), list(versions))
    return chosen


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """An engine as vramplan models it."""

    name: str
    module: str
    versions: tuple[str, ...]  # releases whose accounting is modelled, oldest first
    default_version: str
    aliases: tuple[str, ...]
    options: tuple[str, ...]  # engine-specific keyword options plan_with_engine accepts
    summary: str


def _infos() -> dict[str, EngineInfo]:
    from . import llamacpp, sglang, transformers, vllm

    return {
        "vllm": EngineInfo(
            "vllm", "vllm", vllm.VERSIONS, vllm.DEFAULT_VERSION, ("vLLM",),
            ("gpu_memory_bytes", "block_size", "usage", "enforce_eager", "disable_hybrid_kv_cache_manager",
             "mla_block_size", "check_fit"),
            "KV pool = utilization x total - weights - profiled activation peak - non-torch memory "
            "(- CUDA-graph estimate from v0.21), in blocks of 16 tokens"),
        "sglang": EngineInfo(
            "sglang", "sglang", sglang.VERSIONS, sglang.DEFAULT_VERSION, ("SGLang",),
            ("gpu_memory_bytes", "mem_fraction_static", "check_fit"),
            "KV pool = free memory after loading - (1 - mem_fraction_static) x total, in tokens"),
        "llama.cpp": EngineInfo(
            "llama.cpp", "llamacpp", llamacpp.VERSIONS, llamacpp.DEFAULT_VERSION,
            ("llamacpp", "llama-cpp", "llama_cpp", "ggml", "llama-server"),
            ("n_gpu_layers", "flash_attn", "ubatch_size", "n_batch", "type_k", "type_v", "kv_unified", "swa_full",
             "no_kv_offload", "embeddings", "gpu_memory_bytes", "n_cpu_moe", "cpu_moe"),
            "context padded, KV per layer on its device, compute buffer reserved for one u-batch"),
        "transformers": EngineInfo(
            "transformers", "transformers", transformers.VERSIONS, transformers.DEFAULT_VERSION,
            ("hf", "huggingface", "generate", "hf-transformers"),
            ("attn_implementation", "max_new_tokens", "cache", "gpu_memory_bytes"),
            "weights + DynamicCache + prefill activations and logits"),
    }


def __getattr__(name: str):  # ENGINES is built lazily so that importing the package stays cheap
    if name == "ENGINES":
        return _infos()
    raise AttributeError(name)


def resolve_engine(name: str) -> EngineInfo:
    """An engine by name or alias (case-insensitive)."""
    infos = _infos()
    if not isinstance(name, str) or not name.strip():
        raise UnknownName("engine", str(name), list(infos))
    low = name.strip().lower()
    for info in infos.values():
        if low == info.name or low in (a.lower() for a in info.aliases):
            return info
    raise UnknownName("engine", name, suggest(name, list(infos) + [a for i in infos.values() for a in i.aliases]))


def plan_with_engine(engine: str, **kw) -> dict:
    """Plan inference memory the way ``engine`` allocates it.

    Keywords (all optional except ``lm``/``fmt``/``wb``/``context``): lm (api.LoadedModel), fmt (weight format), wb
    (WeightBytes), context (max_model_len / n_ctx tokens), batch, kv_dtype, tp, pp, gpu (core GPU or None),
    engine_version, gpu_memory_utilization, max_num_batched_tokens, max_num_seqs, and the engine's own options
    (:data:`ENGINES` [name].options).
    """
    info = resolve_engine(engine)
    import importlib

    module = importlib.import_module(f"{__name__}.{info.module}")
    allowed = set(info.options) | {"lm", "fmt", "wb", "context", "batch", "kv_dtype", "tp", "pp", "gpu",
                                   "engine_version", "gpu_memory_utilization", "max_num_batched_tokens",
                                   "max_num_seqs"}
    # options that belong to another engine are ignored rather than refused (one CLI serves all engines),
    # except where they would silently change nothing the user asked for
    ignored = [k for k, v in kw.items() if k not in allowed and v is not None]
    kw = {k: v for k, v in kw.items() if k in allowed and v is not None}
    lm = kw.get("lm")
    if lm is not None and getattr(lm.spec, "parallel_ssm", False) and info.name != "transformers":
        from ..errors import InvalidRequest

        raise InvalidRequest(f"{info.name}'s accounting for attention + Mamba-2 layers (Falcon-H1, Zamba2) is not "
                             "modelled yet; the plain plan (no --engine) and --engine transformers count its weights, "
                             "KV cache and recurrent state", field="engine")
    if lm is not None and getattr(lm.spec, "o_groups", 0):
        from ..errors import InvalidRequest

        raise InvalidRequest(f"{info.name}'s accounting for DeepSeek-V4 (compressed sparse attention caches, "
                             "hyper-connections) is not modelled yet; the plain plan (no --engine) counts its weights "
                             "and KV cache", field="engine")
    result = module.plan(**kw)
    if ignored:  # visible in the explanation, so a setting that changed nothing is not mistaken for applied
        result.setdefault("explain", []).append(f"ignored by {info.name}: {', '.join(ignored)}")
    return result


__all__ = ["ENGINES", "EngineInfo", "plan_with_engine", "resolve_engine"]
