"""Training model states per GPU: weights, gradients, optimizer states, sharding and offload (formulas.md 5.1).

- ``bf16-mixed``/``fp16-mixed`` without ZeRO is torch autocast on fp32 weights (HF Trainer ``--bf16``): fp32 weights
  4 + fp32 grads 4 + optimizer states in fp32 (HF "model memory anatomy").
- With ZeRO (DeepSpeed) the same flag means 16-bit weights 2 + 16-bit grads 2 + fp32 master 4 + states: the ZeRO
  paper's 2 + 2 + K with K = 12 for Adam (Rajbhandari et al. 2019, arXiv:1910.02054). Per GPU over N_d ranks:
  stage 1 ``4Psi + K Psi/N_d``, stage 2 ``2Psi + (2+K) Psi/N_d``, stage 3 ``(4+K) Psi/N_d``.
- ``bf16`` (pure) keeps weights, grads and states in bf16; ``fp32`` everything in fp32.
- PEFT adapters are fp32 by default (``autocast_adapter_dtype=True``): 4 + 4 + states, no separate master;
  DeepSpeed casts them to 16-bit and keeps an fp32 master.
- Other PEFT methods (core/peft_methods.py) add frozen buffers to the weights (VeRA's shared projections, SHiRA's
  indices), frozen adapter weights (LoRA-FA's lora_A, MiCA's lora_B), state beside the optimizer's (AdaLoRA's
  importance tensors); adaption prompt's tensors stay in the base dtype; ``modules_to_save`` copies are trained in the
  base dtype (PEFT's ModulesToSaveWrapper is not upcast).
- Optimizer states per trainable parameter: AdamW 2 states; bitsandbytes 8-bit AdamW 2 uint8 states + an fp32 absmax
  per 256-value block of each (2 + 8/256 = 2.03 B), tensors under 4096 values keep fp32 states (8 B); paged 8-bit
  the same bytes in CUDA unified memory; SGD 0 (momentum: 1 state); Lion 1 state; Adafactor factored: fp32 row and
  column accumulators per matrix (4(r + c) B), a full fp32 second moment for 1-D tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from .model import ModelSpec, count_params, global_tensors, layer_groups
from .peft import AdapterPlan
from .peft_methods import METHODS as PEFT_METHODS
from .precision import WeightFormat, dense_format, weight_bytes

METHODS = ("full", "lora", "qlora", "dora", "ia3", "prompt", "ln-tuning") + PEFT_METHODS
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "sgd-momentum", "adafactor", "lion")
PRECISIONS = ("bf16-mixed", "fp16-mixed", "bf16", "fp32")
LOOPS = ("trainer", "custom")

BNB_BLOCKSIZE = 256
"""bitsandbytes 8-bit optimizer state block (optim/optimizer.py: ``blocksize = 256``), one fp32 absmax per block."""
BNB_MIN_8BIT_SIZE = 4096
"""Tensors with fewer values keep 32-bit optimizer states (bitsandbytes ``min_8bit_size``)."""
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
    peft_options: tuple[tuple[str, object], ...] = ()  # PEFT config fields of a peft_methods method
    modules_to_save: tuple[str, ...] = ()  # PEFT modules_to_save: trained copies of embed_tokens / lm_head
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
    zero_bucket_elements: int = 500_000_000  # DeepSpeed reduce/allgather bucket size (its default, 5e8 values)
    overlap_comm: bool = False  # DeepSpeed overlap_comm: two reduce buffers instead of one
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
    if adapter.shapes:  # peft_methods methods list their tensors
        return list(adapter.shapes)
    if adapter.kind == "prompt":
        return [(adapter.virtual_tokens, spec.hidden_size)]
    if adapter.kind == "ln":
        return [(t.out_features,) for t in adapter.targets for _ in range(t.layers)]
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
    copy_params = 0  # modules_to_save copies (counted as trainable, kept in the base dtype)
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
        copy_shapes = [shape for _, shape in adapter.copies]
        copy_params = sum(shape[0] * shape[1] for shape in copy_shapes)
        psi = adapter.trainable_params - copy_params
        ad = setup.adapter_bytes
        if adapter.base_dtype_params:  # created in the base dtype and never upcast (adaption prompt)
            ad = _dtype_bytes(setup.precision)
        shapes = _trainable_shapes(spec, setup, adapter)
        if deepspeed and mixed:  # DeepSpeed casts the whole module to 16-bit and keeps an fp32 master + fp32 states
            ad = 2
            opt = optimizer_state_bytes(shapes, setup.optimizer, 4) + 4 * psi
        else:
            opt = optimizer_state_bytes(shapes, setup.optimizer, ad)
        opt += adapter.state_bytes_per_param * ad * psi  # method state beside the optimizer's (AdaLoRA importance)
        frozen = total_params
        fmt = base_format or (dense_format("fp32", 4) if setup.precision == "fp32" else dense_format("bf16", 2))
        frozen_w = weight_bytes(spec, fmt).total_bytes
        if _kbit_fp32(setup):
            kept16 = sum(t.numel for t in global_tensors(spec))  # embeddings, final norm, lm_head
            for g in layer_groups(spec):
                kept16 += sum(t.numel for t in g.tensors if len(t.shape) == 1) * len(g.layers)
            frozen_w += 2 * kept16  # 16-bit -> fp32 (prepare_model_for_kbit_training)
            notes.append("prepare_model_for_kbit_training casts the 16-bit embeddings, norms and lm_head to fp32")
        # frozen adapter weights (LoRA-FA's A) and the method's buffers, in the adapter dtype; index buffers
        frozen_w += setup.adapter_bytes * adapter.buffer_values + adapter.buffer_bytes
        w = ad * (psi + adapter.frozen_adapter_params)
        g = ad * (psi + adapter.grad_only_params)
        if copy_params:  # modules_to_save copies: weights, grads and optimizer states in the base dtype
            cb = _dtype_bytes(setup.precision)
            w += cb * copy_params
            g += cb * copy_params
            opt += optimizer_state_bytes(copy_shapes, setup.optimizer, cb)
            notes.append(f"modules_to_save: {copy_params:,} parameters of trained copies "
                         f"({', '.join(n for n, _ in adapter.copies)}) in the base dtype")
        master = 4 * psi if (deepspeed and mixed) else 0
        if master:
            opt -= master  # added back below with the master
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
    grad_b = (ad if adapter is not None else g // psi) if psi else 0
    return ModelStates(weights, grads, optim, ceil(master / share_o), host, psi + copy_params, frozen,
                       ceil(weights_trainable / share_w), grad_b, tuple(notes))


def _kbit_fp32(setup: TrainingSetup) -> bool:
    """peft.prepare_model_for_kbit_training casts every 16-bit parameter to fp32 for bitsandbytes bases (not for
    GPTQ/AWQ/...): the norms then output fp32 and the whole activation path runs in fp32 around the 4-bit matmuls."""
    if setup.method != "qlora" or not setup.kbit_prepare:
        return False
    name = setup.quant_format.name if setup.quant_format is not None else "bnb-nf4"
    return name.startswith("bnb")


