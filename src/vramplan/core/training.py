"""Training memory per GPU: model states, activations, the loss, sharding, offload, runtime (formulas.md 5).

Model states (Psi = trainable parameters):

- ``bf16-mixed``/``fp16-mixed`` without ZeRO is torch autocast on fp32 weights (HF Trainer ``--bf16``): fp32 weights
  4 + fp32 grads 4 + optimizer states in fp32, plus a 16-bit copy of every trained matrix that autocast makes and the
  backward keeps (HF "model memory anatomy": 18 B/param for AdamW).
- With ZeRO (DeepSpeed) the same flag means 16-bit weights 2 + 16-bit grads 2 + fp32 master 4 + states: the ZeRO
  paper's 2 + 2 + K with K = 12 for Adam (Rajbhandari et al. 2019, arXiv:1910.02054). Per GPU over N_d ranks:
  stage 1 ``4Psi + K Psi/N_d``, stage 2 ``2Psi + (2+K) Psi/N_d``, stage 3 ``(4+K) Psi/N_d``.
- ``bf16`` (pure) keeps weights, grads and states in bf16; ``fp32`` everything in fp32.
- PEFT adapters are fp32 by default (``autocast_adapter_dtype=True``): 4 + 4 + states, no separate master.
- Optimizer states per trainable parameter: AdamW 2 states; bitsandbytes 8-bit AdamW 2 uint8 states + an fp32 absmax
  per 256-value block of each (2 + 8/256 = 2.03 B), tensors under 4096 values keep fp32 states (8 B); paged 8-bit
  the same bytes in CUDA unified memory; SGD 0 (momentum: 1 state); Lion 1 state; Adafactor factored: fp32 row and
  column accumulators per matrix (4(r + c) B), a full fp32 second moment for 1-D tensors.

A step has phases, and the GPU must hold the worst one (peak allocated):

- forward/backward: weights + optimizer states (+ accumulated grads) + saved activations + the loss tensors (and,
  with ZeRO-3/FSDP, the all-gathered units; with autocast, the 16-bit weight copies). With ``zero_grad(set_to_none)``
  no gradient exists yet at the loss.
- end of backward / optimizer step: weights + states + all grads + the optimizer's temporaries (torch's foreach AdamW
  allocates one more state-sized tensor, sqrt(v)) + the outputs the loop still holds.

What the GPU must have (reserved) is the peak plus what the caching allocator cannot reuse: blocks cached for one
phase's tensor shapes (activations scale with tokens) are only partly usable by the other phase's (gradients and
optimizer temporaries have parameter shapes), so a fraction ``ALLOCATOR_CROSS_PHASE`` of the smaller phase's
working set ends up in segments of its own. Then the CUDA context (and NCCL buffers with several GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import ceil

from .memory import CUDA_CONTEXT_BYTES
from .model import ModelSpec, count_params, global_tensors, layer_groups
from .peft import AdapterPlan, adapter_plan
from .precision import WeightFormat, dense_format, weight_bytes
from .training_activations import ATTENTION_IMPLS, LOSS_IMPLS, ActivationModel, Activations, activations

METHODS = ("full", "lora", "qlora", "dora", "ia3", "prompt", "ln-tuning")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "sgd-momentum", "adafactor", "lion")
PRECISIONS = ("bf16-mixed", "fp16-mixed", "bf16", "fp32")
LOOPS = ("trainer", "custom")

BNB_BLOCKSIZE = 256
"""bitsandbytes 8-bit optimizer state block (optim/optimizer.py: ``blocksize = 256``), one fp32 absmax per block."""
BNB_MIN_8BIT_SIZE = 4096
"""Tensors with fewer values keep 32-bit optimizer states (bitsandbytes ``min_8bit_size``)."""
ALLOCATOR_CROSS_PHASE = 0.25
"""Fraction of the smaller phase's working set (forward/backward vs optimizer step) that the PyTorch caching
allocator cannot place in blocks cached for the other phase. Fitted on PEFT's full fine-tuning run of
Llama-3.2-3B (torch 2.13, 99th-percentile reserved 34.78 GiB); checked on the same run's mean reserved memory and
held out everywhere else (benchmarks/training_accuracy.py). It is 0 in effect for adapters (their step is tiny)."""
NCCL_BYTES = 512 * 1024 * 1024
"""NCCL communicator buffers per GPU with more than one rank: 4 MiB (Simple) + ~4.7 MiB (LL128) + 0.5 MiB (LL) per
channel per peer (NVIDIA/nccl src/init.cc); a ring over ~32 channels and 2 peers is ~0.6 GiB. We plan 0.5 GiB."""
GPUS_PER_HOST = 8


@dataclass(frozen=True, slots=True)
class TrainingSetup:
    """A training configuration; the defaults are HF Trainer's (full fine-tuning, AdamW, bf16 autocast)."""

    method: str = "full"
    optimizer: str = "adamw"
    precision: str = "bf16-mixed"
    batch_size: int = 1
    seq_len: int = 2048
    gradient_checkpointing: bool = False
    attention: str = "sdpa"
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    ia3_feedforward: tuple[str, ...] | None = None
    virtual_tokens: int = 0  # prompt tuning
    adapter_bytes: int = 4  # PEFT autocast_adapter_dtype=True: fp32 adapters
    gpus: int = 1
    zero: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    grad_accum: int = 1
    loss: str = "full"
    loop: str = "trainer"  # trainer: outputs dropped before backward; custom: `outputs` kept until the next step
    padding_mask: bool = False  # variable-length batches: SDPA gets a mask, transformers repeats K/V
    use_cache: bool = True  # HF config default; checkpointing turns it off
    fused_kernels: bool = False  # Liger RMSNorm/SwiGLU/FusedLinearCrossEntropy
    foreach: bool = True  # torch optimizers' default multi-tensor implementation
    kbit_prepare: bool = True  # QLoRA: peft.prepare_model_for_kbit_training casts 16-bit params to fp32
    fsdp: bool = False  # ZeRO-3 done by torch FSDP (root unit kept unsharded) rather than DeepSpeed
    fsdp_upcast: bool = True  # accelerate upcasts bf16 FSDP params to fp32 when mixed precision is on
    quant_format: WeightFormat | None = None  # QLoRA base format (bnb NF4 + double quant by default)
    stack: str = "torch>=2.9, transformers>=4.57, peft>=0.18"


@dataclass(frozen=True, slots=True)
class ModelStates:
    """Per-GPU persistent bytes (after a step) and their host-side counterpart with offload."""

    weights: int
    gradients: int
    optimizer: int  # fp32 master copy (mixed precision) + optimizer states
    master: int
    host: int  # bytes per GPU rank that live in host RAM (offloaded optimizer/master/params)
    trainable_params: int
    frozen_params: int
    weights_trainable: int  # part of `weights` that is trained (adapters, or everything)
    grad_bytes: int = 2  # bytes per gradient value
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer


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

    def as_dict(self) -> dict[str, int]:
        d = dict(self.components)
        d["total"] = self.total_bytes
        return d


# ----- optimizer states ------------------------------------------------------------------------------------------

def _trainable_shapes(spec: ModelSpec, setup: TrainingSetup, adapter: AdapterPlan | None) -> list[tuple[int, ...]]:
    """Shapes of every trainable tensor (for per-tensor optimizer rules: 8-bit min size, Adafactor factoring)."""
    if adapter is None:
        shapes = []
        for g in layer_groups(spec):
            for t in g.tensors:
                shapes += [t.shape] * len(g.layers)
        shapes += [t.shape for t in global_tensors(spec)]
        return shapes
    if adapter.kind == "prompt":
        return [(adapter.virtual_tokens, spec.hidden_size)]
    if adapter.kind == "ln":
        return [t.shape for t in adapter.targets for _ in range(t.layers)]
    out: list[tuple[int, ...]] = []
    for t in adapter.targets:
        if adapter.kind in ("lora", "dora"):
            out += [(adapter.rank, t.in_features), (t.out_features, adapter.rank)] * t.layers
            if adapter.kind == "dora":
                out += [(t.out_features,)] * t.layers
        else:
            out += [((t.in_features if t.input_scaled else t.out_features),)] * t.layers
    return out


def optimizer_state_bytes(shapes: list[tuple[int, ...]], optimizer: str, state_bytes: int) -> int:
    """Optimizer state bytes for tensors of ``shapes``; ``state_bytes`` is the dtype torch keeps states in (the
    parameter's, or fp32 master's under mixed precision)."""
    total = 0
    for shape in shapes:
        n = 1
        for x in shape:
            n *= x
        if optimizer == "adamw":
            total += 2 * state_bytes * n
        elif optimizer in ("adamw-8bit", "paged-adamw-8bit"):
            if n < BNB_MIN_8BIT_SIZE:
                total += 8 * n
            else:
                total += 2 * (n + 4 * ceil(n / BNB_BLOCKSIZE))
        elif optimizer == "sgd":
            total += 0
        elif optimizer in ("sgd-momentum", "lion"):
            total += state_bytes * n
        elif optimizer == "adafactor":
            if len(shape) >= 2:
                rows = n // shape[-1]
                total += 4 * (rows + shape[-1])
            else:
                total += 4 * n
        else:
            raise ValueError(optimizer)
    return total


def zero_model_states_bytes(params: int, n_d: int, stage: int, k: int = 12, weight_bytes: int = 2,
                            grad_bytes: int = 2) -> int:
    """The ZeRO paper's per-GPU model states: stage 0 (2+2+K)Psi, 1: 4Psi + K Psi/N_d, 2: 2Psi + (2+K)Psi/N_d,
    3: (2+2+K)Psi/N_d (Rajbhandari et al. 2019, Figure 1; K = 12 for mixed-precision Adam)."""
    w = weight_bytes * params / (n_d if stage >= 3 else 1)
    g = grad_bytes * params / (n_d if stage >= 2 else 1)
    o = k * params / (n_d if stage >= 1 else 1)
    return int(w + g + o)


# ----- model states ----------------------------------------------------------------------------------------------

def _dtype_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def model_states(spec: ModelSpec, setup: TrainingSetup, adapter: AdapterPlan | None,
                 base_format: WeightFormat | None = None) -> ModelStates:
    """Per-GPU weights, gradients and optimizer state after a step (the persistent part)."""
    n_d, z = setup.gpus, setup.zero
    mixed = setup.precision in ("bf16-mixed", "fp16-mixed")
    deepspeed = z > 0 and not setup.fsdp
    notes: list[str] = []
    total_params = count_params(spec).total
    if adapter is None:  # full fine-tuning
        psi = total_params
        shapes = _trainable_shapes(spec, setup, None)
        if setup.precision == "fp32":
            w_b, g_b, master_b, st_b = 4, 4, 0, 4
        elif not mixed:
            w_b, g_b, master_b, st_b = 2, 2, 0, 2
        elif deepspeed:  # 16-bit params and grads, fp32 master + states (ZeRO paper)
            w_b, g_b, master_b, st_b = 2, 2, 4, 4
        elif setup.fsdp and not setup.fsdp_upcast:
            w_b, g_b, master_b, st_b = 2, 2, 0, 2
        else:  # torch autocast / FSDP MixedPrecision over fp32 (flat) params
            w_b, g_b, master_b, st_b = 4, 4, 0, 4
        opt = optimizer_state_bytes(shapes, setup.optimizer, st_b)
        w, g, master = w_b * psi, g_b * psi, master_b * psi
        frozen = 0
        weights_trainable = w
        frozen_w = 0
    else:
        psi = adapter.trainable_params
        ad = setup.adapter_bytes
        shapes = _trainable_shapes(spec, setup, adapter)
        opt = optimizer_state_bytes(shapes, setup.optimizer, ad)
        frozen = total_params
        fmt = base_format or (dense_format("fp32", 4) if setup.precision == "fp32" else dense_format("bf16", 2))
        frozen_w = weight_bytes(spec, fmt).total_bytes
        if _kbit_fp32(setup):
            kept16 = sum(t.numel for t in global_tensors(spec))  # embeddings, final norm, lm_head
            for g in layer_groups(spec):
                kept16 += sum(t.numel for t in g.tensors if len(t.shape) == 1) * len(g.layers)
            frozen_w += 2 * kept16  # 16-bit -> fp32 (prepare_model_for_kbit_training)
            notes.append("prepare_model_for_kbit_training casts the 16-bit embeddings, norms and lm_head to fp32")
        w, g, master = ad * psi, ad * psi, 0
        weights_trainable = w
    # sharding
    share_w = n_d if z >= 3 else 1
    share_g = n_d if z >= 2 else 1
    share_o = n_d if z >= 1 else 1
    weights = ceil((frozen_w + w) / share_w)
    grads = ceil(g / share_g)
    optim = ceil((opt + master) / share_o)
    host = 0
    if setup.offload_optimizer:
        host += optim
        optim = 0
        if z >= 2:  # ZeRO-Offload keeps the fp32 gradient partition on the CPU as well
            host += ceil(4 * psi / share_g)
            grads = 0
        notes.append("optimizer states and the fp32 master copy live in host RAM (ZeRO-Offload)")
    if setup.offload_params:
        host += weights
        weights = 0
        notes.append("parameters live in host RAM and are fetched layer by layer (ZeRO-Infinity / FSDP offload)")
    if mixed and not deepspeed and adapter is None and not setup.fsdp:
        notes.append("autocast on fp32 weights: 4 + 4 + optimizer states, plus 16-bit weight copies during "
                     "forward/backward (HF: 18 B/param with AdamW)")
    grad_b = (g // psi) if psi else 0
    return ModelStates(weights, grads, optim, ceil(master / share_o), host, psi, frozen,
                       ceil(weights_trainable / share_w), grad_b, tuple(notes))


# ----- the plan --------------------------------------------------------------------------------------------------

def _kbit_fp32(setup: TrainingSetup) -> bool:
    """peft.prepare_model_for_kbit_training casts every 16-bit parameter to fp32 for bitsandbytes bases (not for
    GPTQ/AWQ/...): the norms then output fp32 and the whole activation path runs in fp32 around the 4-bit matmuls."""
    if setup.method != "qlora" or not setup.kbit_prepare:
        return False
    name = setup.quant_format.name if setup.quant_format is not None else "bnb-nf4"
    return name.startswith("bnb")


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
        norms_trainable=adapter is not None and adapter.kind == "ln", lm_head_trainable=full, adapter=adapter,
        adapter_bytes=setup.adapter_bytes, autocast=autocast, attention=setup.attention,
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
    states = model_states(spec, setup, adapter, base_fmt)
    am = _activation_model(setup, adapter)
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
        gathered = 2 * unit * a  # the unit in use + the prefetched next one
        outer = [t.numel for t in global_tensors(spec)]
        # FSDP1 keeps its root unit (embeddings, final norm, lm_head) unsharded through forward and backward;
        # DeepSpeed gathers the embedding or the head when it is used
        gathered += a * (sum(outer) if setup.fsdp else max(outer))
        if adapter is None:
            gathered += a * unit  # the unit's unsharded gradients before the reduce-scatter
    buckets = 0
    if n_d > 1 and setup.zero == 0 and adapter is None:
        buckets = states.gradients  # DDP gradient buckets (gradient_as_bucket_view=False): a copy of the grads
    elif n_d > 1 and setup.zero in (1, 2):
        buckets = 2 * spec.hidden_size ** 2 * 2  # HF "auto" reduce bucket (h^2 elements, 16-bit), double-buffered
    accumulating = setup.grad_accum > 1
    grads_in_fwd = states.gradients if (accumulating or setup.zero >= 2 and setup.gpus > 1) else 0

    persistent = states.weights + states.optimizer + buckets
    extra_fwd = sum(b for _, b in transient) + gathered
    phase_fwd = grads_in_fwd + act.forward_peak_bytes + extra_fwd
    phase_bwd = grads_in_fwd + act.backward_peak_bytes + extra_fwd
    opt_temp = _optimizer_temp_bytes(setup, states, adapter, spec)
    emb_grad = 0
    if adapter is None and spec.tie_embeddings:  # dense embedding grad, then added into the tied .grad
        emb_grad = states.grad_bytes * spec.vocab_size * spec.hidden_size
    phase_end = states.gradients + act.retained_after_step_bytes + emb_grad + gathered
    phase_step = states.gradients + act.retained_after_step_bytes + opt_temp
    work_a = max(phase_fwd, phase_bwd)
    # parameter-shaped tensors of the step phase (the kept outputs were allocated in the forward, not here)
    work_b = max(phase_end, phase_step) - act.retained_after_step_bytes
    phases = (("forward (loss)", phase_fwd), ("backward (loss)", phase_bwd), ("end of backward", phase_end),
              ("optimizer step", phase_step))
    peak_name, peak_dyn = max(phases, key=lambda p: p[1])
    allocated_peak = persistent + peak_dyn
    overhead = int(ALLOCATOR_CROSS_PHASE * min(work_a, work_b))
    reserved_peak = allocated_peak + overhead
    runtime = CUDA_CONTEXT_BYTES + (NCCL_BYTES if n_d > 1 else 0)
    after_step = persistent + states.gradients + act.retained_after_step_bytes
    if setup.loop == "trainer":  # HF Trainer zeroes (frees) the grads right after the step
        after_step = persistent + (states.gradients if accumulating else 0)

    # ---- the peak moment as named parts (they sum to the total)
    comps: list[tuple[str, int]] = [("weights", states.weights), ("optimizer", states.optimizer)]
    if peak_name.startswith(("forward", "backward")):
        comps.insert(1, ("gradients", grads_in_fwd))
        loss_part = act.loss_forward_bytes if peak_name.startswith("forward") else act.loss_backward_bytes
        act_part = (phase_fwd if peak_name.startswith("forward") else phase_bwd) - grads_in_fwd - extra_fwd
        loss_part = min(loss_part, act_part)
        comps.append(("activations", act_part - loss_part))
        comps.append(("loss", loss_part))
        for name, b in transient:
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
    return TrainingMemory(tuple(comps), total, allocated_peak, reserved_peak, after_step, peak_name, states, act,
                          adapter, host, setup, phases)


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
    if setup.offload_optimizer and setup.zero == 0:
        raise InvalidRequest("optimizer offload needs ZeRO stage 1, 2 or 3", field="offload_optimizer")


def with_changes(setup: TrainingSetup, **kw) -> TrainingSetup:
    return replace(setup, **kw)
