"""Training memory as plain dicts: ``plan_training`` (the ``vramplan train --json`` object), the smallest change that
makes a plan fit a GPU, the article's training table next to exact figures, and the report's training section.

The numbers come from :mod:`vramplan.core.training` (model states, phases, allocator) and
:mod:`vramplan.core.training_activations` (saved tensors per layer, loss, checkpointing).
"""

from __future__ import annotations

from dataclasses import replace

from .api import load_model, model_summary, tokens_arg
from .core.training import (GPUS_PER_HOST, LOOPS, METHODS, OPTIMIZERS, PRECISIONS, TrainingMemory, TrainingSetup,
                            plan_training_memory)
from .core.peft_methods import ALIASES as PEFT_ALIASES
from .core.peft_methods import LORA_LIKE as PEFT_LORA_LIKE
from .core.peft_methods import MODULE_METHODS as PEFT_MODULE_METHODS
from .core.peft_methods import METHODS as PEFT_METHODS
from .core.training_activations import ATTENTION_IMPLS, LOSS_IMPLS
from .errors import InvalidRequest, UnknownName, suggest
from .units import GB_bytes, GiB_bytes, MAX_TOKENS, format_bytes

DEFAULT_SEQ_LEN = 2048
OPTIONS = ("method", "optimizer", "precision", "batch_size", "seq_len", "gradient_checkpointing", "attention",
           "lora_rank", "lora_targets", "gpus", "zero", "offload_optimizer", "offload_params", "gpu", "grad_accum",
           "loss", "loop", "padding_mask", "use_cache", "fused_kernels", "fsdp", "virtual_tokens", "adapter_dtype",
           "quantization", "ia3_feedforward", "kbit_prepare", "foreach", "headroom", "peft_options",
           "modules_to_save")
_ALIASES = {  # spellings people type -> canonical names (a table, not if-chains)
    "method": {"full-finetuning": "full", "full_finetuning": "full", "fft": "full", "q-lora": "qlora",
               "prompt-tuning": "prompt", "prompt_tuning": "prompt", "ln_tuning": "ln-tuning",
               "lntuning": "ln-tuning", **PEFT_ALIASES},
    "optimizer": {"adamw_torch": "adamw", "adam": "adamw", "adamw8bit": "adamw-8bit", "adamw_8bit": "adamw-8bit",
                  "adamw-bnb-8bit": "adamw-8bit", "paged_adamw_8bit": "paged-adamw-8bit",
                  "paged-adamw8bit": "paged-adamw-8bit", "sgd_momentum": "sgd-momentum"},
    "precision": {"bf16_mixed": "bf16-mixed", "fp16_mixed": "fp16-mixed", "bfloat16": "bf16", "float32": "fp32",
                  "mixed": "bf16-mixed", "amp": "bf16-mixed", "pure-bf16": "bf16"},
    "attention": {"flash_attention_2": "flash", "flash-attention": "flash", "fa2": "flash", "spda": "sdpa"},
}


def _choice(value, name: str, allowed) -> str:
    v = str(value).strip().lower()
    v = _ALIASES.get(name, {}).get(v, v)
    if v not in allowed:
        # no close match: the choices themselves, the first eight of a long list (the methods: 39)
        raise UnknownName(name.replace("_", " "), str(value), suggest(v, allowed) or list(allowed)[:8])
    return v


def _bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise InvalidRequest(f"{name} must be true or false, got {value!r}", field=name)


def _int(value, name: str, lo: int = 1, hi: int = 1 << 20) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be a whole number, got {value!r}", field=name)
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo:,} and {hi:,}, got {value:,}", field=name)
    return value


def build_setup(spec, *, method="full", optimizer=None, precision="bf16-mixed", batch_size=1, seq_len=None,
                gradient_checkpointing=False, attention="sdpa", lora_rank=16, lora_targets=None, gpus=1, zero=0,
                offload_optimizer=False, offload_params=False, grad_accum=1, loss="full", loop="trainer",
                padding_mask=False, use_cache=True, fused_kernels=False, fsdp=False, virtual_tokens=20,
                adapter_dtype="fp32", quantization=None, ia3_feedforward=None, kbit_prepare=True,
                foreach=True, peft_options=None, modules_to_save=None) -> TrainingSetup:
    """Validate the options and build a :class:`TrainingSetup` (one clear error naming the field).

    ``peft_options`` sets the PEFT config fields of the methods beyond LoRA/DoRA/IA3/prompt/LN (e.g. ``{"r": 256}``
    for vera, ``{"oft_block_size": 32}`` for oft; a dict or ``["key=value", ...]``); ``lora_targets`` given with such a
    method becomes its ``target_modules``. ``modules_to_save`` (embed_tokens, lm_head) trains full copies."""
    from .core.peft import parse_targets

    method = _choice(method, "method", METHODS)
    if optimizer is None:
        optimizer = "paged-adamw-8bit" if method == "qlora" else "adamw"
    optimizer = _choice(optimizer, "optimizer", OPTIMIZERS)
    precision = _choice(precision, "precision", PRECISIONS)
    attention = _choice(attention, "attention", ATTENTION_IMPLS)
    loss = _choice(loss, "loss", LOSS_IMPLS)
    loop = _choice(loop, "loop", LOOPS)
    seq = tokens_arg(seq_len, "seq_len") if seq_len is not None else DEFAULT_SEQ_LEN
    if seq > MAX_TOKENS:
        raise InvalidRequest(f"seq_len {seq:,} is absurd", field="seq_len")
    zero_v = _int(zero, "zero", 0, 3)
    gpus_v = _int(gpus, "gpus", 1, 1 << 16)
    targets = parse_targets(lora_targets) if lora_targets is not None else ("all-linear",)
    ad = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}.get(str(adapter_dtype).lower())
    if ad is None:
        raise UnknownName("adapter dtype", str(adapter_dtype), ["fp32", "bf16", "fp16"])
    qfmt = None
    if method == "qlora":
        from .catalog.formats import get_format

        qfmt = get_format(quantization or "bnb-nf4")
    elif quantization:
        raise InvalidRequest("quantization applies to the frozen base of QLoRA only (method qlora)",
                             field="quantization")
    popts = _peft_options(peft_options, method)
    if method in PEFT_MODULE_METHODS and method not in PEFT_LORA_LIKE and lora_targets is not None \
            and "target_modules" not in popts:
        popts["target_modules"] = targets
    if method in PEFT_METHODS:  # validate now: one clear error naming the option
        from .core.peft_methods import resolve_options

        typed = resolve_options(method, popts)
        popts = {k: typed[k] for k in popts}  # the given fields, typed like PEFT's defaults
    elif popts:
        raise InvalidRequest(f"peft_options apply to the methods {', '.join(PEFT_METHODS)}; {method} has none",
                             field="peft_options")
    mts = tuple(modules_to_save.split(",") if isinstance(modules_to_save, str) else modules_to_save or ())
    setup = TrainingSetup(
        method=method, optimizer=optimizer, precision=precision, batch_size=_int(batch_size, "batch_size"),
        seq_len=seq, gradient_checkpointing=_bool(gradient_checkpointing, "gradient_checkpointing"),
        attention=attention, lora_rank=_int(lora_rank, "lora_rank", 1, 1 << 16), lora_targets=targets,
        ia3_feedforward=tuple(ia3_feedforward) if ia3_feedforward else None,
        virtual_tokens=_int(virtual_tokens, "virtual_tokens", 1, 1 << 16), adapter_bytes=ad, gpus=gpus_v,
        zero=zero_v, offload_optimizer=_bool(offload_optimizer, "offload_optimizer"),
        offload_params=_bool(offload_params, "offload_params"), grad_accum=_int(grad_accum, "grad_accum"),
        loss=loss, loop=loop, padding_mask=_bool(padding_mask, "padding_mask"), use_cache=_bool(use_cache, "use_cache"),
        fused_kernels=_bool(fused_kernels, "fused_kernels"), foreach=_bool(foreach, "foreach"),
        kbit_prepare=_bool(kbit_prepare, "kbit_prepare"), fsdp=_bool(fsdp, "fsdp"), quant_format=qfmt,
        peft_options=tuple(sorted(popts.items())), modules_to_save=tuple(m.strip() for m in mts if m.strip()))
    if setup.fsdp and setup.zero in (1, 2):
        raise InvalidRequest(f"fsdp and zero {setup.zero} are two ways to shard the same states; use fsdp (full "
                             f"shard, like ZeRO-3) or zero {setup.zero} alone", field="fsdp")
    if setup.fsdp and setup.zero == 0:
        setup = replace(setup, zero=3)
    return setup


def _peft_options(value, method: str) -> dict:
    """{"r": 256} | ["r=256", "target_modules=q_proj,v_proj"] | "r=256" -> a dict of PEFT config fields."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k).strip(): (tuple(v) if isinstance(v, list) else v) for k, v in value.items()}
    items = [value] if isinstance(value, str) else list(value)
    out: dict = {}
    for item in items:
        key, sep, val = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"peft option {item!r} must look like FIELD=VALUE (e.g. r=256)", field="peft_options")
        out[key.strip()] = val.strip()
    return out


def _split_options(options: dict) -> tuple[dict, str | None, float]:
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        k = unknown[0]
        hint = suggest(k, OPTIONS)
        raise InvalidRequest(f"unknown training option {k!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                             field=k)
    opts = {k: v for k, v in options.items() if v is not None}
    gpu = opts.pop("gpu", None)
    headroom = float(opts.pop("headroom", 0.0) or 0.0)
    return opts, gpu, headroom


def plan_training(model, **options) -> dict:
    """Training memory per GPU as CONTRACT.md's JSON object (bytes), with the phase breakdown and explanations.

    Options: method, optimizer, precision, batch_size, seq_len, gradient_checkpointing, attention, lora_rank,
    lora_targets, gpus, zero, offload_optimizer, offload_params, gpu, and the finer ones in ``OPTIONS``.
    """
    lm = load_model(model)
    opts, gpu_name, headroom = _split_options(options)
    setup = build_setup(lm.spec, **opts)
    mem = plan_training_memory(lm.spec, setup)
    out = _result(lm, setup, mem)
    if gpu_name:
        from .catalog.gpus import get_gpu

        gpu = get_gpu(gpu_name)
        limit = int(gpu.memory_total_bytes * (1.0 - headroom))
        fits = mem.total_bytes <= limit
        out["capacity"] = {"gpu_memory_bytes": gpu.memory_total_bytes, "limit_bytes": limit, "fits": fits,
                           "free_bytes": limit - mem.total_bytes}
        out["request"]["gpu"] = gpu.name
        if not fits:
            out["fit_advice"] = training_fit_advice(lm, gpu_name, _setup=setup, _need=mem.total_bytes,
                                                    headroom=headroom)
    return out


def _result(lm, setup: TrainingSetup, mem: TrainingMemory) -> dict:
    st, act = mem.states, mem.activations
    host_per_host = mem.host_bytes_per_gpu * min(setup.gpus, GPUS_PER_HOST)
    out = {
        "model": model_summary(lm),
        "trainable_params": st.trainable_params,
        "memory": mem.as_dict(),
        "allocated_peak": mem.allocated_peak_bytes,
        "reserved_peak": mem.reserved_peak_bytes,
        "allocated_after_step": mem.allocated_after_step_bytes,
        "peak": {"phase": mem.peak_phase, "allocated": mem.allocated_peak_bytes,
                 "reserved": mem.reserved_peak_bytes, "gpu_must_have": mem.total_bytes,
                 "phases": {name: b for name, b in mem.phases}},
        "model_states": {"weights": st.weights, "gradients": st.gradients, "optimizer": st.optimizer,
                         "master_weights": st.master, "total": st.total, "frozen_params": st.frozen_params},
        "activations": {"tokens_per_micro_batch": act.tokens,
                        "bytes_per_token_per_layer": dict(act.per_layer),
                        "layer_terms": dict(act.layer_terms),
                        "saved_bytes": act.saved_bytes,
                        "loss_saved_bytes": act.loss_saved_bytes,
                        "autocast_saved_bytes": mem.autocast_saved_bytes,
                        "checkpoint_bytes_per_token": act.checkpoint_bytes_per_token,
                        "loss_forward_bytes": act.loss_forward_bytes,
                        "loss_backward_bytes": act.loss_backward_bytes,
                        "eager_scores_bytes": act.eager_scores_bytes,
                        "kept_outputs_bytes": act.retained_after_step_bytes},
        "host": {"offloaded_per_gpu": mem.host_bytes_per_gpu, "gpus_per_host": min(setup.gpus, GPUS_PER_HOST),
                 "offloaded_per_host": host_per_host,
                 "gpu_memory_per_host": mem.total_bytes * min(setup.gpus, GPUS_PER_HOST),
                 "hosts": -(-setup.gpus // GPUS_PER_HOST),
                 "note": "host RAM for ZeRO-Offload / parameter offload (pinned); add the process itself and the "
                         "data loader"},
        "request": {"method": setup.method, "optimizer": setup.optimizer, "precision": setup.precision,
                    "batch_size": setup.batch_size, "seq_len": setup.seq_len,
                    "gradient_checkpointing": setup.gradient_checkpointing, "attention": setup.attention,
                    "lora_rank": setup.lora_rank if mem.adapter is not None and setup.method in (
                        "lora", "qlora", "dora", *PEFT_LORA_LIKE) else None,
                    "lora_targets": ",".join(setup.lora_targets) if setup.method in ("lora", "qlora", "dora",
                                                                                     *PEFT_LORA_LIKE) else None,
                    "gpus": setup.gpus, "zero": setup.zero, "fsdp": setup.fsdp,
                    "offload_optimizer": setup.offload_optimizer, "offload_params": setup.offload_params,
                    "grad_accum": setup.grad_accum, "loss": setup.loss, "loop": setup.loop, "gpu": None},
        "stack": setup.stack,
    }
    if setup.peft_options:
        out["request"]["peft_options"] = {k: (",".join(v) if isinstance(v, tuple) else v)
                                          for k, v in setup.peft_options}
    if setup.modules_to_save:
        out["request"]["modules_to_save"] = ",".join(setup.modules_to_save)
    if mem.adapter is not None:
        ad = mem.adapter
        out["adapter"] = {"kind": ad.kind, "rank": ad.rank,
                          "targets": [t.name for t in ad.targets],
                          "virtual_tokens": ad.virtual_tokens or None,
                          "dtype": "fp32" if setup.adapter_bytes == 4 and not ad.base_dtype_params else "16-bit"}
        if ad.kind in PEFT_METHODS:
            out["adapter"].update({
                "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in ad.options},
                "frozen_buffer_bytes": setup.adapter_bytes * ad.buffer_values + ad.buffer_bytes,
                "kept_fixed_bytes": act.adapter_fixed_bytes,
                "prefix_kv_tokens": ad.kv_virtual_tokens or None})
        if ad.copies:
            out["adapter"]["modules_to_save"] = [n for n, _ in ad.copies]
    out["explain"] = _explain(lm, setup, mem)
    return out


def _explain(lm, setup: TrainingSetup, mem: TrainingMemory) -> list[str]:
    st, act = mem.states, mem.activations
    fb = format_bytes
    lines = []
    if mem.adapter is None:
        lines.append(f"full fine-tuning of {st.trainable_params:,} parameters, {setup.precision}, {setup.optimizer}: "
                     f"weights {fb(st.weights)} + gradients {fb(st.gradients)} + optimizer {fb(st.optimizer)} per GPU "
                     f"after a step")
    else:
        a = mem.adapter
        what = {"lora": f"LoRA r={a.rank}", "dora": f"DoRA r={a.rank}", "ia3": "IA3", "ln": "LN tuning",
                "prompt": f"prompt tuning ({a.virtual_tokens} virtual tokens)"}.get(a.kind)
        if what is None:  # a peft_methods method: name it with its options
            shown = ", ".join(f"{k}={v}" for k, v in a.options if k != "target_modules")
            what = f"{a.kind}" + (f" ({shown})" if shown else "")
        if setup.method == "qlora":
            what = f"QLoRA r={a.rank} on a {setup.quant_format.label if setup.quant_format else 'NF4'} base"
        tg = ", ".join(dict.fromkeys(t.name for t in a.targets)) if a.kind != "ln" else "every norm"
        tg = tg or {"prefix_tuning": "every layer's keys and values", "adaption_prompt": "the top attention layers",
                    "trainable_tokens": "chosen embedding rows"}.get(a.kind, "input embeddings")
        lines.append(f"{what} on {tg}: {st.trainable_params:,} trainable parameters "
                     f"({'fp32' if setup.adapter_bytes == 4 and not a.base_dtype_params else '16-bit'} adapters, "
                     f"their grads and "
                     f"{setup.optimizer} states: {fb(st.gradients + st.optimizer + st.weights_trainable)}); frozen "
                     f"base {fb(st.weights - st.weights_trainable)}")
    if setup.gpus > 1:
        how = "FSDP" if setup.fsdp else (f"ZeRO-{setup.zero}" if setup.zero else "DDP")
        lines.append(f"{setup.gpus} GPUs, {how}: states per GPU as the ZeRO paper's formulas give them"
                     + ("; DDP adds gradient buckets the size of the gradients" if how == "DDP" else ""))
    per = ", ".join(f"{k}: {v:,} B" for k, v in act.per_layer)
    if setup.gradient_checkpointing:
        lines.append(f"gradient checkpointing: {act.checkpoint_bytes_per_token:,} B/token kept (each layer's input), "
                     f"plus one layer's working set ({act.layer_work_bytes_per_token:,} B/token) during backward; "
                     f"without it: {per} per token"
                     + ("; the caching allocator keeps one more fp32-logits-sized block reserved "
                        f"({fb(act.loss_saved_bytes)}, measured on an H200)" if act.loss_saved_bytes else ""))
    else:
        lines.append(f"activations saved per token per layer: {per}; {act.tokens:,} tokens per micro-batch")
    if act.eager_scores_bytes:
        lines.append(f"eager attention keeps the fp32 softmax and its 16-bit copy (s^2 per head): "
                     f"{fb(act.eager_scores_bytes)} of the activations")
    v = lm.spec.vocab_size
    if setup.fused_kernels or setup.loss == "fused":
        lines.append("fused linear cross-entropy: the logits are never materialized for the whole batch")
    else:
        lines.append(f"loss: logits over {v:,} vocabulary entries upcast to fp32; at the log-softmax backward "
                     f"{fb(act.loss_backward_bytes)} ({act.loss_backward_bytes // max(act.tokens, 1):,} B/token)")
    lines.append(f"peak at the {mem.peak_phase}: {fb(mem.allocated_peak_bytes)} allocated by torch; "
                 f"{fb(mem.reserved_peak_bytes)} reserved by the caching allocator; plus the CUDA context and loaded "
                 f"kernels (767 MiB measured on an H200) {'and NCCL buffers ' if setup.gpus > 1 else ''}"
                 f"= {fb(mem.total_bytes)} the GPU must have")
    if mem.host_bytes_per_gpu:
        lines.append(f"host RAM for offload: {fb(mem.host_bytes_per_gpu)} per GPU, "
                     f"{fb(mem.host_bytes_per_gpu * min(setup.gpus, GPUS_PER_HOST))} per host")
    lines += list(st.notes) + list(act.notes)
    lines.append(f"stack modelled: {setup.stack} (the same run moved ~12% between torch 2.7 / transformers 4.52 "
                 f"and torch 2.9 / transformers 4.57 in PEFT's re-runs)")
    return lines


# ----- the impossible case -----------------------------------------------------------------------------------

_CHANGES = (  # smallest first: keep the method and the math, then shard, then change what is trained
    ("gradient checkpointing", {"gradient_checkpointing": True}),
    ("8-bit AdamW", {"optimizer": "adamw-8bit"}),
    ("fused cross-entropy loss", {"loss": "fused"}),
    ("batch size 1 (same tokens per step with gradient accumulation)", {"batch_size": 1}),
    ("ZeRO-3 across the same GPUs", {"zero": 3}),
    ("ZeRO-3 with optimizer offload to CPU", {"zero": 3, "offload_optimizer": True}),
    ("LoRA r=16 on all linear layers", {"method": "lora"}),
    ("QLoRA (NF4 base) r=16", {"method": "qlora", "optimizer": "paged-adamw-8bit"}),
)


def training_fit_advice(model, gpu, _setup: TrainingSetup | None = None, _need: int | None = None,
                        headroom: float = 0.0, max_gpus: int = 1024, **options) -> dict:
    """Does the plan fit ``gpu``? If not, the smallest change that does: one change of ``_CHANGES`` first, then more
    GPUs with ZeRO-3, then combinations (checkpointing + each other change)."""
    from .catalog.gpus import get_gpu

    lm = load_model(model)
    g = get_gpu(gpu) if isinstance(gpu, str) else gpu
    if _setup is None:
        opts, _, hr = _split_options(options)
        headroom = hr or headroom
        _setup = build_setup(lm.spec, **opts)
    limit = int(g.memory_total_bytes * (1.0 - headroom))

    def total(s: TrainingSetup) -> int:
        return plan_training_memory(lm.spec, s).total_bytes

    need = _need if _need is not None else total(_setup)
    base = {"gpu": g.name, "limit_per_gpu": limit, "need_per_gpu": need, "fits": need <= limit}
    if need <= limit:
        return {**base, "text": f"fits: {format_bytes(need)} of {format_bytes(limit)} per {g.name}"}
    tried = []

    def attempt(label: str, kw: dict) -> dict | None:
        merged = {**kw}
        if merged.get("method") == "lora" and _setup.method != "full":
            return None
        if merged.get("method") == "qlora" and _setup.method == "qlora":
            return None
        if all(getattr(_setup, k) == v for k, v in merged.items()):
            return None
        if merged.get("offload_optimizer") and merged.get("zero", _setup.zero) == 0:
            return None
        try:
            s = replace(_setup, **merged)
            if s.method == "qlora" and s.quant_format is None:
                from .catalog.formats import get_format

                s = replace(s, quant_format=get_format("bnb-nf4"))
            t = total(s)
        except (InvalidRequest, UnknownName, ValueError):
            return None
        row = {"change": label, "options": merged, "need_per_gpu": t, "fits": t <= limit, "gpus": s.gpus}
        tried.append(row)
        return row if t <= limit else None

    routes: list[dict] = []
    for label, kw in _CHANGES:  # 1. one change on the same GPUs, smallest first
        r = attempt(label, kw)
        if r:
            routes.append({**r, "route": "same GPUs, one change"})
            break
    n = max(2, _setup.gpus * 2)  # 2. more GPUs with ZeRO-3 (and checkpointing if that is what it takes)
    while n <= max_gpus:
        r = attempt(f"{n} GPUs with ZeRO-3", {"gpus": n, "zero": 3}) or \
            attempt(f"{n} GPUs with ZeRO-3 and gradient checkpointing",
                    {"gpus": n, "zero": 3, "gradient_checkpointing": True})
        if r:
            routes.append({**r, "route": "more GPUs"})
            break
        n *= 2
    if not routes or routes[0]["route"] != "same GPUs, one change":  # 3. two changes on the same GPUs
        for label, kw in _CHANGES[1:]:
            r = attempt(f"gradient checkpointing + {label}", {"gradient_checkpointing": True, **kw})
            if r:
                routes.append({**r, "route": "same GPUs, two changes"})
                break
    if not routes:
        smallest = {"gradient_checkpointing": True, "batch_size": 1, "seq_len": 512}
        if _setup.method != "qlora":  # (already QLoRA: keep its base format and optimizer, shrink the workload)
            smallest = {"method": "qlora", "optimizer": "paged-adamw-8bit", **smallest}
        r = attempt(("" if _setup.method == "qlora" else "QLoRA + ")
                    + "gradient checkpointing + batch 1 + 512-token sequences", smallest)
        if r:
            routes.append({**r, "route": "same GPUs, smallest workload"})
    if not routes:
        same = [t for t in tried if t["gpus"] == _setup.gpus]
        least = min(same, key=lambda t: t["need_per_gpu"]) if same else None
        text = f"does not fit ({format_bytes(need)} > {format_bytes(limit)} per {g.name}) and no change tried fits"
        if least is not None:  # the smallest change is then more memory: say how much
            text += (f"; the least any needs is {format_bytes(least['need_per_gpu'])} per GPU ({least['change']}), "
                     f"so use a GPU with at least that much")
        else:
            text += "; use a GPU with more memory"
        return {**base, "suggestion": None, "routes": [], "alternatives": tried, "text": text}
    best = routes[0]
    text = (f"does not fit ({format_bytes(need)} > {format_bytes(limit)} per {g.name}); smallest change: "
            f"{best['change']} -> {format_bytes(best['need_per_gpu'])} per GPU")
    if len(routes) > 1:
        text += "; or " + "; or ".join(f"{r['change']} -> {format_bytes(r['need_per_gpu'])}" for r in routes[1:])
    return {**base, "suggestion": best, "routes": routes, "alternatives": tried, "text": text}


# ----- the article's table and the report ---------------------------------------------------------------------

ARTICLE_TRAINING = {  # model -> (full, LoRA, QLoRA) as printed, in bytes of the unit printed (GB / TB)
    "llama-3.1-8b": (("60 GB", 60e9), ("16 GB", 16e9), ("6 GB", 6e9)),
    "llama-3.1-70b": (("500 GB", 500e9), ("160 GB", 160e9), ("48 GB", 48e9)),
    "llama-3.1-405b": (("3.25 TB", 3.25e12), ("950 GB", 950e9), ("250 GB", 250e9)),
}
ARTICLE_CONFIG = {"seq_len": 2048, "batch_size": 1, "gradient_checkpointing": True}


def article_training_rows(models=tuple(ARTICLE_TRAINING)) -> list[dict]:
    """The article's training figures next to exact figures for stated configurations, and the assumption that
    reproduces each printed number (formulas.md 8)."""
    from .api import model_weight_bytes
    from .catalog.formats import get_format
    from .core.model import count_params

    rows = []
    for key in models:
        lm = load_model(key)
        spec = lm.spec
        psi = count_params(spec).total
        art = ARTICLE_TRAINING.get(key)
        cfgs = (
            ("full", {"method": "full", "precision": "bf16-mixed", "optimizer": "adamw"},
             "bf16-mixed AdamW (16 B/param: fp32 weights, grads, 2 moments)"),
            ("LoRA", {"method": "lora", "lora_rank": 16, "precision": "bf16"},
             "LoRA r16 all-linear, bf16 base, fp32 adapters, AdamW"),
            ("QLoRA", {"method": "qlora", "lora_rank": 16, "precision": "bf16"},
             "QLoRA r16 all-linear, NF4+DQ base, paged 8-bit AdamW"),
        )
        bf16 = model_weight_bytes(spec, get_format("bf16")).total_bytes
        nf4 = model_weight_bytes(spec, get_format("bnb-nf4")).total_bytes
        for i, (label, opts, cfg_text) in enumerate(cfgs):
            r = plan_training(lm, **opts, **ARTICLE_CONFIG)
            exact = r["memory"]["total"]
            printed, printed_bytes = art[i] if art else (None, None)
            if label == "full":
                assumed = 8 * psi
                assumption = (f"8 B/param, no activations: {psi / 1e9:.2f}B x 8 = {assumed / GB_bytes:,.0f} GB "
                              f"= {assumed / GiB_bytes:,.0f} GiB")
                detail = ("bf16 weights + bf16 grads + two 16-bit Adam moments and no activations; real "
                          "mixed-precision AdamW is 16 B/param plus activations and the optimizer step's temporaries")
            elif label == "LoRA":
                assumed = bf16
                pct = 100 * (printed_bytes / assumed - 1) if printed_bytes else 0.0
                assumption = (f"2 B/param bf16 weights = {bf16 / GB_bytes:,.1f} GB, "
                              + (f"{_pct(printed_bytes, assumed)} headroom" if abs(pct) >= 0.5
                                 else "the weights alone, no headroom"))
                detail = "the frozen bf16 weights alone; adapters, their optimizer state and activations are extra"
            else:
                assumed = nf4
                allow = (printed_bytes - nf4) / GB_bytes if printed_bytes else 0.0
                assumption = f"NF4 + 16-bit emb/head = {nf4 / GB_bytes:,.1f} GB, + {allow:,.0f} GB allowance"
                detail = ("bitsandbytes NF4 with double quantization (4.127 bits) for the linear layers, 16-bit "
                          "embeddings and lm_head, plus a round allowance")
            rows.append({
                "model": lm.name, "method": label, "article": printed, "article_bytes": printed_bytes,
                "exact": f"{exact / GB_bytes:,.1f} GB ({exact / GiB_bytes:,.1f} GiB)", "exact_bytes": exact,
                "exact_config": f"{cfg_text}, seq {ARTICLE_CONFIG['seq_len']}, batch 1, gradient checkpointing, "
                                f"1 GPU (the whole job's memory)",
                "exact_states_bytes": r["model_states"]["total"],
                "assumption": assumption, "assumption_detail": detail, "assumption_bytes": int(assumed),
                "ratio_exact_to_article": round(exact / printed_bytes, 2) if printed_bytes else None,
            })
    return rows


def _pct(printed, assumed) -> str:
    if not printed:
        return ""
    return f"{100 * (printed / assumed - 1):+.0f}%"


SUMMARY_CONFIGS = (
    ("full, bf16-mixed AdamW", {"method": "full"}),
    ("full, bf16-mixed AdamW, checkpointing", {"method": "full", "gradient_checkpointing": True}),
    # the adapter rows run in pure bf16 (PEFT's usual setup), which the labels say: `vramplan train --method lora`
    # defaults to bf16-mixed (autocast), whose saved activations differ
    ("LoRA r16 all-linear, bf16", {"method": "lora", "precision": "bf16"}),
    ("LoRA r16 all-linear, bf16, checkpointing", {"method": "lora", "precision": "bf16",
                                                   "gradient_checkpointing": True}),
    ("QLoRA r16 (NF4), bf16, paged 8-bit AdamW", {"method": "qlora", "precision": "bf16"}),
    ("QLoRA r16 (NF4), bf16, checkpointing", {"method": "qlora", "precision": "bf16", "gradient_checkpointing": True}),
)


def training_summary(lm, seq_len: int = DEFAULT_SEQ_LEN, batch_size: int = 1) -> dict:
    """The report's training section: standard configurations at ``seq_len`` tokens, batch ``batch_size``, 1 GPU."""
    lm = load_model(lm)
    rows = []
    for label, opts in SUMMARY_CONFIGS:
        try:
            r = plan_training(lm, seq_len=seq_len, batch_size=batch_size, **opts)
        except (InvalidRequest, UnknownName):
            continue
        mem = r["memory"]
        at_peak = {"weights": mem["weights"], "gradients": mem["gradients"], "optimizer": mem["optimizer"],
                   "activations": mem.get("activations", 0) + mem.get("loss", 0)}
        # the rest of the peak: optimizer-step temporaries, dequantized / autocast weight copies, allocator, context
        at_peak["other"] = mem["total"] - sum(at_peak.values())
        at_peak["total"] = mem["total"]
        rows.append({"label": label, "trainable_params": r["trainable_params"], "memory": at_peak,
                     "model_states": r["model_states"], "saved_activations": r["activations"]["saved_bytes"],
                     "peak_memory": r["memory"], "allocated_peak": r["allocated_peak"],
                     "reserved_peak": r["reserved_peak"], "peak_phase": r["peak"]["phase"]})
    return {"rows": rows, "seq_len": seq_len, "batch_size": batch_size,
            "note": f"per GPU, one GPU, {seq_len:,}-token sequences, batch {batch_size}, SDPA. Each row is the "
                    f"memory at its peak phase (the columns sum to the total, what the GPU must have): at the "
                    f"optimizer step the activations are already freed; 'other' = optimizer-step temporaries, 16-bit "
                    f"weight copies, allocator overhead and the CUDA context. More: vramplan train MODEL --help"}
