"""Measure training: ``steps`` optimizer steps on ``batch`` x ``seq_len`` random tokens with labels (full fine-tuning
or LoRA through peft; AdamW, SGD, Adafactor, 8-bit AdamW; optional gradient checkpointing; pure or mixed precision),
with the peak of each phase (forward, backward, optimizer) and the exact bytes of each model state."""

from __future__ import annotations

import contextlib
import time

from ..errors import InvalidRequest
from .build import ATTENTIONS, build_model, raw_config, vocab_size
from .comparison import training_comparison
from .predict import TRAINING_SOURCE, predict_training, training_options
from .probe import MeasureUnavailable, MemoryProbe, PhasePeaks
from .session import check_choice, device_peak, model_figures, open_probe, result, target_device
from .tensors import count_saved_tensors, gradient_bytes, optimizer_state_bytes

METHODS = ("full", "lora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "adafactor")
PRECISIONS = ("bf16", "fp16", "fp32", "bf16-mixed", "fp16-mixed")
DEFAULT_TRAIN_STEPS = 3


def measure_training(model, *, method: str = "full", optimizer: str = "adamw", precision: str = "bf16",
                     batch_size: int = 1, seq_len=1024, gradient_checkpointing: bool = False, lora_rank: int = 16,
                     lora_targets: str | None = "all-linear", attention: str = "sdpa",
                     steps: int = DEFAULT_TRAIN_STEPS, device: str | None = None, allow_cpu: bool = False) -> dict:
    """Predict, then measure, ``steps`` training steps with the given method, optimizer and precision."""
    from ..api import tokens_arg

    seq = tokens_arg(seq_len, "seq_len") or 1024
    check_choice(method, METHODS, "method")
    check_choice(optimizer, OPTIMIZERS, "optimizer")
    check_choice(precision, PRECISIONS, "precision")
    check_choice(attention, ATTENTIONS, "attention")
    if steps < 1:
        raise InvalidRequest(f"steps must be at least 1, got {steps}", field="steps")
    if method == "lora" and lora_rank < 1:
        raise InvalidRequest(f"lora_rank must be at least 1, got {lora_rank}", field="lora_rank")
    cfg = raw_config(model)
    options = training_options(method, optimizer, precision, batch_size, seq, gradient_checkpointing, lora_rank,
                               lora_targets, attention)
    predicted = predict_training(model, **options)
    dev = target_device(device, allow_cpu)
    t_start = time.perf_counter()
    probe, base = open_probe(dev)
    weight_dtype = "float32" if precision in ("fp32", "bf16-mixed", "fp16-mixed") else (
        "float16" if precision == "fp16" else "bfloat16")
    model_obj = build_model(cfg, dtype=weight_dtype, device=dev, attention=attention)
    if method == "lora":
        for p in model_obj.parameters():
            p.requires_grad_(False)
        model_obj = apply_lora(model_obj, lora_rank, lora_targets)
    figures = model_figures(model_obj, probe, base)
    m = run_training(model_obj, batch=batch_size, seq_len=seq, optimizer=optimizer, precision=precision,
                     gradient_checkpointing=gradient_checkpointing, steps=steps, probe=probe)
    m.update(figures)
    m["device_used_peak"], m["non_torch"] = device_peak(m)
    if m.get("peak_allocated") is not None:
        m["peak_above_states"] = max(0, m["peak_allocated"] - m["weights"] - m["gradients"] - m["optimizer"])
    comparison = training_comparison(predicted, m)
    del model_obj
    request = {"mode": "train", **options, "steps": steps}
    source = TRAINING_SOURCE if predicted is not None else "none (training_api not available)"
    return result(model, "train", predicted, source, m, comparison, request, probe, t_start)


def run_training(model, *, batch: int, seq_len: int, optimizer: str = "adamw", precision: str = "bf16",
                 gradient_checkpointing: bool = False, steps: int = DEFAULT_TRAIN_STEPS, probe: MemoryProbe,
                 seed: int = 0) -> dict:
    """``steps`` optimizer steps with labels; per-phase peaks and the exact bytes of each model state."""
    torch = probe.torch
    if gradient_checkpointing:
        enable_checkpointing(model)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    model.train()
    opt, opt_desc = make_optimizer(optimizer, model.parameters())
    vocab = vocab_size(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=gen).to(probe.device)
    mixed = precision.endswith("-mixed")
    amp_dtype = torch.float16 if precision.startswith("fp16") else torch.bfloat16
    scaler = torch.amp.GradScaler(probe.device.type) if precision == "fp16-mixed" else None
    peaks = PhasePeaks(probe)
    out: dict = {"optimizer_impl": opt_desc, "steps": steps, "losses": []}
    grads = states = saved = retained = 0
    t0 = time.perf_counter()
    for step in range(steps):
        before = probe.allocated()
        autocast = torch.autocast(probe.device.type, dtype=amp_dtype) if mixed else contextlib.nullcontext()
        with peaks.phase("forward"):
            with count_saved_tensors() as box:
                box["mark_params"](model)
                with autocast:
                    res = model(input_ids=ids, labels=ids, use_cache=False)
            loss = res.loss
            del res
        saved = max(saved, box["bytes"])
        if before is not None:
            retained = max(retained, probe.allocated() - before)
        with peaks.phase("backward"):
            (scaler.scale(loss) if scaler else loss).backward()
        grads = max(grads, gradient_bytes(model))
        with peaks.phase("optimizer"):
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
        states = max(states, optimizer_state_bytes(opt))
        out["losses"].append(round(float(loss.detach().float()), 4))
        opt.zero_grad(set_to_none=True)
        del loss
    probe.sync()
    out["train_s"] = round(time.perf_counter() - t0, 3)
    out["gradients"] = grads
    out["optimizer"] = states
    out["saved_for_backward"] = saved
    out["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out["total_params"] = sum(p.numel() for p in model.parameters())
    peak_a, peak_r = peaks.overall()
    out["peak_allocated"] = peak_a
    out["peak_reserved"] = peak_r
    if peak_a is not None:
        out["peak_phase"] = max(peaks.allocated, key=peaks.allocated.get)
        out["forward_retained"] = retained
        out["phase_peak_allocated"] = dict(peaks.allocated)
        out["phase_peak_reserved"] = dict(peaks.reserved)
    out["allocated_end"] = probe.allocated()
    out["reserved_end"] = probe.reserved()
    out["device_used_end"] = probe.device_used()
    return out


def make_optimizer(name: str, params, lr: float = 1e-5):
    import torch

    params = [p for p in params if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0), "torch.optim.AdamW (default implementation)"
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr), "torch.optim.SGD (no momentum, as HF's optim='sgd')"
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return (Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False),
                "transformers Adafactor (factored, beta1=None)")
    if name in ("adamw-8bit", "paged-adamw-8bit"):
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise MeasureUnavailable(f"optimizer {name} needs bitsandbytes (pip install bitsandbytes)") from None
        cls = bnb.optim.PagedAdamW8bit if name.startswith("paged") else bnb.optim.AdamW8bit
        return cls(params, lr=lr), f"bitsandbytes {cls.__name__}"
    from ..errors import UnknownName, suggest

    raise UnknownName("optimizer", name, suggest(name, OPTIMIZERS))


def apply_lora(model, rank: int, targets: str | list[str] | None):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MeasureUnavailable("LoRA measurement needs peft (pip install peft)") from None
    target = "all-linear" if targets in (None, "", "all-linear") else (
        [t.strip() for t in targets.split(",") if t.strip()] if isinstance(targets, str) else list(targets))
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=target, bias="none",
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def enable_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing of every decoder layer (transformers 5.2x name, then the old one)."""
    kwargs = {"use_reentrant": False}
    if callable(getattr(model, "activation_checkpointing_enable", None)):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
