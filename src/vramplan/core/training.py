"""Training memory per GPU: the phases of a step, what torch allocates and what the GPU must have (formulas.md 5).

Model states (weights, gradients, optimizer) come from :mod:`vramplan.core.training_states`; activations and the
loss from :mod:`vramplan.core.training_activations`. A step has phases, and the GPU must hold the worst one (peak
allocated):

- forward/backward: weights + optimizer states (+ accumulated grads) + saved activations + the loss tensors (and,
  with ZeRO-3/FSDP, the all-gathered units; with autocast, the 16-bit weight copies). With ``zero_grad(set_to_none)``
  no gradient exists yet at the loss.
- end of backward / optimizer step: weights + states + all grads + the optimizer's temporaries (torch's foreach AdamW
  allocates one more state-sized tensor, sqrt(v)) + the outputs the loop still holds.

What the GPU must have (reserved) is the peak plus what the caching allocator cannot reuse: blocks cached for one
phase's tensor shapes (activations scale with tokens) are only partly usable by the other phase's (gradients and
optimizer temporaries have parameter shapes), so a fraction ``ALLOCATOR_CROSS_PHASE`` of the smaller phase's
working set ends up in segments of its own. Then what the process holds outside the allocator: the CUDA context
and loaded kernels (767 MiB measured on an H200, core/memory.py), and NCCL buffers with several GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .memory import TORCH_TRAINING_RUNTIME_BYTES
from .model import ModelSpec, global_tensors, layer_groups
from .peft import AdapterPlan, adapter_plan, with_modules_to_save
from .peft_methods import LORA_LIKE
from .peft_methods import METHODS as PEFT_METHODS
from .precision import WeightFormat
from .training_activations import ATTENTION_IMPLS, LOSS_IMPLS, ActivationModel, Activations, activations
# re-exported: the public names of the training core live here
from .training_states import (BNB_BLOCKSIZE, BNB_MIN_8BIT_SIZE, GPUS_PER_HOST, LOOPS, METHODS, OPTIMIZERS,  # noqa: F401
                              PRECISIONS, ModelStates, TrainingSetup, _dtype_bytes, _kbit_fp32, model_states,
                              optimizer_state_bytes, zero_model_states_bytes)

ALLOCATOR_CROSS_PHASE = 0.25
"""Fraction of the smaller phase's working set (forward/backward vs optimizer step) that the PyTorch caching
allocator cannot place in blocks cached for the other phase. Fitted on PEFT's full fine-tuning run of
Llama-3.2-3B (torch 2.13, 99th-percentile reserved 34.78 GiB); checked on the same run's mean reserved memory and
held out everywhere else (benchmarks/training_accuracy.py). It is 0 in effect for adapters (their step is tiny)."""
FP32_SCALED_NORMS = ("olmo2", "olmo3", "cohere", "cohere2")
"""Model types whose norms multiply by their weight in fp32 and cast afterwards (OLMo 2's RMSNorm, Cohere's
LayerNorm; Gemma's scale by 1 + w): a trained norm keeps its fp32 normalized input for the weight grad."""
ALLOCATOR_CHECKPOINT_LOGITS = 1.0
"""With gradient checkpointing (and a plain cross-entropy over the whole vocabulary), the caching allocator reserves
about one more fp32-logits-sized block (tokens x V x 4 bytes) than the peak allocation: measured reserved - allocated
over that size 0.86 / 1.10 / 0.99 (LoRA r16 on Llama-3.2-3B / 3.1-8B at 4 x 1024 and 3.1-8B at 1 x 8192), 1.16 (full
fine-tuning of 3.1-8B) and 2.7 (full fine-tuning of 3.2-1B) on an H200 (benchmarks/measurements/h200-2026-11-26.jsonl).
The one-block rule is read off those runs, not fitted to a public one."""
DS_MAX_LIVE_PARAMETERS = 1_000_000_000
"""DeepSpeed ZeRO-3 ``stage3_max_live_parameters`` default: parameters gathered at once (FSDP gathers whole units)."""
NCCL_BYTES = 512 * 1024 * 1024
"""NCCL communicator buffers per GPU with more than one rank: 4 MiB (Simple) + ~4.7 MiB (LL128) + 0.5 MiB (LL) per
channel per peer (NVIDIA/nccl src/init.cc); a ring over ~32 channels and 2 peers is ~0.6 GiB. We plan 0.5 GiB."""

@dataclass(frozen=True, slots=True)
class TrainingMemory:
    """Per-GPU training memory. ``components`` are the peak moment's parts and sum to ``total_bytes``."""

    components: tuple[tuple[str, int], ...]
    total_bytes: int
    allocated_peak_bytes: int
    reserved_peak_bytes: int
    allocated_after_step_bytes: int
    peak_phase: str
    states: ModelStates
    activations: Activations
    adapter: AdapterPlan | None
    host_bytes_per_gpu: int
    setup: TrainingSetup
    phases: tuple[tuple[str, int], ...]
    explain: tuple[str, ...] = field(default=())
    autocast_saved_bytes: int = 0  # autocast's 16-bit weight copies the forward saves for backward (none with ckpt)

    def as_dict(self) -> dict[str, int]:
        d = dict(self.components)
        d["total"] = self.total_bytes
        return d


def _activation_model(setup: TrainingSetup, adapter: AdapterPlan | None) -> ActivationModel:
    mixed = setup.precision in ("bf16-mixed", "fp16-mixed")
    full = adapter is None
    a = _dtype_bytes(setup.precision)
    deepspeed = setup.zero > 0 and not setup.fsdp
    # full fine-tuning under autocast runs on fp32 weights: fp32 embeddings and residual stream
    fp32_weights = full and mixed and not deepspeed and not setup.fsdp
    residual = 4 if (a == 4 or fp32_weights) else 2
    autocast = mixed and not deepspeed and not (full and setup.fsdp)
    logits = 4 if a == 4 else 2
    if _kbit_fp32(setup):
        a = residual = logits = 4
        autocast = False
    return ActivationModel(
        act_bytes=a, residual_bytes=residual, norm_out_bytes=residual, logits_bytes=logits, full=full,
        norms_trainable=adapter is not None and adapter.kind == "ln",
        lm_head_trainable=full or (adapter is not None and any(n.startswith("lm_head") for n, _ in adapter.copies)),
        adapter=adapter,
        adapter_bytes=2 if (deepspeed and mixed and not full) else setup.adapter_bytes, autocast=autocast,
        attention=setup.attention,
        expand_kv=setup.attention == "eager" or (setup.padding_mask and setup.attention == "sdpa"),
        use_cache=setup.use_cache, keep_outputs=setup.loop == "custom", fused_kernels=setup.fused_kernels,
        loss="fused" if setup.fused_kernels else setup.loss, checkpointing=setup.gradient_checkpointing)


def _largest_layer_params(spec: ModelSpec) -> int:
    return max(sum(t.numel for t in g.tensors) for g in layer_groups(spec))


def _largest_matrix(spec: ModelSpec) -> int:
    return max(t.numel for g in layer_groups(spec) for t in g.tensors if len(t.shape) == 2)


def _optimizer_temp_bytes(setup: TrainingSetup, states: ModelStates, adapter: AdapterPlan | None,
                          spec: ModelSpec) -> int:
    """Temporaries of one optimizer step on the GPU.

    torch's default (foreach) AdamW computes ``sqrt(v)`` for every tensor of a device/dtype group at once: one more
    state-sized tensor (``torch._foreach_sqrt(exp_avg_sqs)`` in torch/optim/adam.py). lion-pytorch updates one tensor
    at a time (one parameter-sized temporary); bitsandbytes and SGD update in place.
    """
    if setup.offload_optimizer:
        return 0
    if setup.zero > 0 and not setup.fsdp:
        # DeepSpeed (FusedAdam, no foreach copies) upcasts its gradient partition to fp32 for the step, and gathers
        # the updated 16-bit partitions through an allgather bucket
        fp32_grads = 4 * states.trainable_params // (setup.gpus if setup.zero >= 2 else 1)
        bucket = 2 * min(setup.zero_bucket_elements, states.trainable_params) if setup.gpus > 1 else 0
        return fp32_grads + bucket
    if setup.optimizer == "adamw" and setup.foreach:
        return (states.optimizer - states.master) // 2
    if setup.optimizer == "lion" and adapter is None:
        return states.grad_bytes * _largest_matrix(spec)
    return 0


def plan_training_memory(spec: ModelSpec, setup: TrainingSetup) -> TrainingMemory:
    """Per-GPU training memory of ``setup`` on ``spec``: the peak breakdown, reserved vs allocated, host RAM."""
    _validate(setup)
    adapter = None
    base_fmt = None
    if setup.method in ("lora", "qlora", "dora"):
        kind = "dora" if setup.method == "dora" else "lora"
        adapter = adapter_plan(spec, kind, setup.lora_rank, setup.lora_targets)
        if setup.method == "qlora":
            base_fmt = setup.quant_format or _nf4()
    elif setup.method == "ia3":
        tg = None if setup.lora_targets == ("all-linear",) else setup.lora_targets
        adapter = adapter_plan(spec, "ia3", targets=tg, feedforward=setup.ia3_feedforward)
    elif setup.method == "prompt":
        adapter = adapter_plan(spec, "prompt", virtual_tokens=setup.virtual_tokens or 20)
    elif setup.method == "ln-tuning":
        adapter = adapter_plan(spec, "ln")
    elif setup.method in PEFT_METHODS:  # LoRA-FA takes lora_rank/lora_targets; the others their PEFT options
        fa = setup.method in LORA_LIKE
        adapter = adapter_plan(spec, setup.method, setup.lora_rank, setup.lora_targets if fa else None,
                               options=setup.peft_options)
    if setup.modules_to_save and adapter is not None:
        adapter = with_modules_to_save(adapter, spec, setup.modules_to_save)
    states = model_states(spec, setup, adapter, base_fmt)
    am = _activation_model(setup, adapter)
    if spec.model_type.startswith("gemma") or spec.model_type in FP32_SCALED_NORMS:
        am = replace(am, norm_scale_fp32=True)
    act = activations(spec, am, setup.batch_size, setup.seq_len, adapter.virtual_tokens if adapter else 0)
    a = am.act_bytes if setup.precision != "fp32" else 4
    n_d = setup.gpus

    # ---- pieces that live only in some phases
    transient: list[tuple[str, int]] = []
    if adapter is None and am.autocast:  # autocast's 16-bit copies of trained matrices, kept for backward
        linear = sum(t.numel for g in layer_groups(spec) for t in g.tensors if len(t.shape) >= 2
                     for _ in g.layers)
        transient.append(("autocast weight copies", 2 * linear))
    if setup.method == "qlora":  # one layer weight dequantized to 16-bit at a time (bnb MatMul4Bit)
        transient.append(("dequantized weight (one at a time)", 2 * _largest_matrix(spec)))
    gathered = 0
    if setup.zero >= 3 and n_d > 1:
        unit = _largest_layer_params(spec)
        if not setup.fsdp:  # DeepSpeed fetches module by module, at most stage3_max_live_parameters (1e9) at once
            unit = min(unit, DS_MAX_LIVE_PARAMETERS // 2)
        gathered = 2 * unit * a  # the unit in use + the prefetched next one
        outer = [t.numel for t in global_tensors(spec)]
        # FSDP1 keeps its root unit (embeddings, final norm, lm_head) unsharded through forward and backward;
        # DeepSpeed gathers the embedding or the head when it is used
        gathered += a * (sum(outer) if setup.fsdp else max(outer))
        if adapter is None:
            gathered += a * unit  # the unit's unsharded gradients before the reduce-scatter
            if setup.fsdp:  # the root unit's gradients (lm_head first, embeddings last) wait for the end of backward
                gathered += a * sum(outer)
    buckets = 0
    if n_d > 1 and setup.zero == 0:
        buckets = states.gradients  # DDP gradient buckets (gradient_as_bucket_view=False): a copy of the grads
    elif setup.zero > 0 and not setup.fsdp:
        # DeepSpeed's contiguous-gradient (ipg) reduce buffer(s), allocated whatever the number of GPUs
        buckets = 2 * setup.zero_bucket_elements * (2 if setup.overlap_comm else 1)
    accumulating = setup.grad_accum > 1
    grads_in_fwd = states.gradients if accumulating else 0  # zero_grad(set_to_none) frees them between steps

    persistent = states.weights + states.optimizer + buckets
    extra_fwd = sum(b for _, b in transient) + gathered
    # autocast's weight cache is cleared when the forward leaves autocast; only saved tensors keep the copies, and
    # with checkpointing nothing does, so then they are gone by the backward
    extra_bwd = extra_fwd - (sum(b for n, b in transient if n.startswith("autocast"))
                             if setup.gradient_checkpointing else 0)
    phase_fwd = grads_in_fwd + act.forward_peak_bytes + extra_fwd
    phase_bwd = grads_in_fwd + act.backward_peak_bytes + extra_bwd
    opt_temp = _optimizer_temp_bytes(setup, states, adapter, spec)
    emb_grad = 0
    if adapter is None and spec.tie_embeddings:  # dense embedding grad, then added into the tied .grad
        emb_grad = states.grad_bytes * spec.vocab_size * spec.hidden_size
    phase_end = states.gradients + act.retained_after_step_bytes + emb_grad + gathered
    phase_step = states.gradients + act.retained_after_step_bytes + opt_temp
    work_a = max(phase_fwd, phase_bwd)
    # parameter-shaped tensors of the step phase (the kept outputs were allocated in the forward, not here)
    work_b = max(phase_end - gathered, phase_step) - act.retained_after_step_bytes
    phases = (("forward (loss)", phase_fwd), ("backward (loss)", phase_bwd), ("end of backward", phase_end),
              ("optimizer step", phase_step))
    peak_name, peak_dyn = max(phases, key=lambda p: p[1])
    allocated_peak = persistent + peak_dyn
    overhead = int(ALLOCATOR_CROSS_PHASE * min(work_a, work_b))
    if setup.gradient_checkpointing:
        # the fp32 logits block freed after the loss (a plain cross-entropy's log-softmax, tokens x V x 4) is split
        # by the recomputed layers' tensors: one more such block ends up reserved (ALLOCATOR_CHECKPOINT_LOGITS)
        overhead += int(ALLOCATOR_CHECKPOINT_LOGITS * act.loss_saved_bytes)
    reserved_peak = allocated_peak + overhead
    runtime = TORCH_TRAINING_RUNTIME_BYTES + (NCCL_BYTES if n_d > 1 else 0)
    after_step = persistent + states.gradients + act.retained_after_step_bytes
    if setup.loop == "trainer":  # HF Trainer zeroes (frees) the grads right after the step
        after_step = persistent + (states.gradients if accumulating else 0)

    # ---- the peak moment as named parts (they sum to the total)
    comps: list[tuple[str, int]] = [("weights", states.weights), ("optimizer", states.optimizer)]
    if peak_name.startswith(("forward", "backward")):
        comps.insert(1, ("gradients", grads_in_fwd))
        fwd = peak_name.startswith("forward")
        loss_part = act.loss_forward_bytes if fwd else act.loss_backward_bytes
        act_part = (phase_fwd if fwd else phase_bwd) - grads_in_fwd - (extra_fwd if fwd else extra_bwd)
        loss_part = min(loss_part, act_part)
        comps.append(("activations", act_part - loss_part))
        comps.append(("loss", loss_part))
        for name, b in transient:
            if fwd or not (name.startswith("autocast") and setup.gradient_checkpointing):
                comps.append((name.split(" (")[0].replace(" ", "_"), b))
        if gathered:
            comps.append(("gathered_params", gathered))
    else:
        comps.insert(1, ("gradients", states.gradients))
        comps.append(("activations", 0))
        comps.append(("loss", act.retained_after_step_bytes))
        if peak_name == "optimizer step":
            comps.append(("optimizer_step", opt_temp))
        else:
            comps.append(("embedding_grad", emb_grad))
            if gathered:
                comps.append(("gathered_params", gathered))
    if buckets:
        comps.append(("grad_buckets", buckets))
    comps.append(("allocator_overhead", overhead))
    comps.append(("runtime", runtime))
    total = sum(b for _, b in comps)
    host = states.host
    autocast_saved = 0 if setup.gradient_checkpointing else sum(b for n, b in transient if n.startswith("autocast"))
    return TrainingMemory(tuple(comps), total, allocated_peak, reserved_peak, after_step, peak_name, states, act,
                          adapter, host, setup, phases, autocast_saved_bytes=autocast_saved)


def _nf4() -> WeightFormat:
    """bitsandbytes NF4 with double quantization (formulas.md 2): 4 bits + uint8 absmax per 64 + fp32 per 256
    blocks, 16-bit embeddings, norms and lm_head."""
    return WeightFormat(name="bnb-nf4", bits=4.0, group_size=64, group_bits=8.0, superblock=256,
                        superblock_bits=32.0, tensor_bits=32.0 + 256 * 32.0, label="bitsandbytes NF4 + double quant",
                        source="formulas.md 2; bitsandbytes functional.quantize_4bit")


def _validate(setup: TrainingSetup) -> None:
    from ..errors import InvalidRequest

    checks = (("method", setup.method, METHODS), ("optimizer", setup.optimizer, OPTIMIZERS),
              ("precision", setup.precision, PRECISIONS), ("attention", setup.attention, ATTENTION_IMPLS),
              ("loss", setup.loss, LOSS_IMPLS), ("loop", setup.loop, LOOPS))
    for name, value, allowed in checks:
        if value not in allowed:
            raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}, got {value!r}", field=name)
    for name in ("batch_size", "seq_len", "gpus", "grad_accum", "lora_rank"):
        v = getattr(setup, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidRequest(f"{name} must be a whole number of at least 1, got {v!r}", field=name)
    if setup.zero not in (0, 1, 2, 3):
        raise InvalidRequest(f"zero must be 0, 1, 2 or 3, got {setup.zero!r}", field="zero")
    if setup.offload_params and setup.zero != 3:
        raise InvalidRequest("parameter offload needs ZeRO stage 3 (or FSDP)", field="offload_params")
    if setup.modules_to_save and setup.method in ("full", "prompt", "ln-tuning"):
        raise InvalidRequest("modules_to_save applies to adapter methods (lora, dora, qlora, ia3, ...)",
                             field="modules_to_save")
    if setup.offload_optimizer and setup.zero == 0:
        raise InvalidRequest("optimizer offload needs ZeRO stage 1, 2 or 3", field="offload_optimizer")


def with_changes(setup: TrainingSetup, **kw) -> TrainingSetup:
    return replace(setup, **kw)
