"""Measure real peak memory of a planned configuration on the local GPU, beside vramplan's prediction.

Optional (``pip install 'vramplan[measure]'``: torch, transformers, peft; bitsandbytes for 8-bit optimizers). Not part
of the core: torch and transformers are imported lazily, inside the functions that need them.

The model is built from its ``config.json`` with random weights, straight on the device
(``AutoModelForCausalLM.from_config`` under ``torch.device``): memory does not depend on the values, so nothing is
downloaded, and remote code is never run. Then either

* inference: one prefill of ``batch`` x (``context`` - ``decode_tokens``) random tokens with a growing
  ``DynamicCache`` (SDPA attention, only the last token's logits kept, as ``generate`` does), then ``decode_tokens``
  single-token steps, so the cache ends holding exactly ``context`` tokens per sequence; or
* training: ``steps`` optimizer steps on ``batch`` x ``seq_len`` random tokens with labels (full fine-tuning or LoRA
  through peft; AdamW, SGD, Adafactor, 8-bit AdamW; optional gradient checkpointing; pure or mixed precision).

Three kinds of figure are recorded, each named by its ``basis``:

``tensor``     bytes of the tensors themselves (parameters, KV cache, gradients, optimizer states): exact, and
               available on the CPU too, where the harness is tested;
``allocator``  ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` (the caching allocator);
``device``     ``torch.cuda.mem_get_info`` (total - free): what nvidia-smi shows, including the CUDA context and
               anything outside PyTorch's allocator.

``error_pct`` is (predicted - measured) / measured x 100: positive means vramplan over-predicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from .errors import InvalidRequest, VramplanError

NO_GPU_MESSAGE = "no CUDA GPU found: measure needs one; here is the prediction only"
NO_TORCH_MESSAGE = ("measure needs torch and transformers (pip install 'vramplan[measure]'); "
                    "here is the prediction only")

DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16",
          "float32": "float32", "fp32": "float32"}
METHODS = ("full", "lora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "adafactor")
PRECISIONS = ("bf16", "fp16", "fp32", "bf16-mixed", "fp16-mixed")
ATTENTIONS = ("sdpa", "eager")
DEFAULT_DECODE_TOKENS = 8
DEFAULT_TRAIN_STEPS = 3


class MeasureUnavailable(VramplanError):
    """torch/transformers are missing, or there is no CUDA GPU (and the CPU was not allowed)."""


# ----- what can run here ------------------------------------------------------------------------------------

def missing_packages() -> list[str]:
    """The packages measure needs that cannot be imported here (torch, transformers)."""
    import importlib.util

    return [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]


def cuda_available() -> bool:
    if missing_packages():
        return False
    import torch

    return bool(torch.cuda.is_available())


def unavailable_reason(allow_cpu: bool = False) -> str | None:
    """None when measure can run; otherwise the one line that says why not."""
    if missing_packages():
        return NO_TORCH_MESSAGE
    if not allow_cpu and not cuda_available():
        return NO_GPU_MESSAGE
    return None


# ----- the model's config -----------------------------------------------------------------------------------

def raw_config(model) -> dict:
    """The config.json dict behind a catalog name, a config.json path or a model directory."""
    name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    if name is None:
        raise InvalidRequest("measure needs a catalog name or a config.json path, not a built model spec",
                             field="model")
    path = Path(name)
    if path.exists():
        if path.is_dir():
            path = path / "config.json"
        if path.suffix.lower() == ".gguf":
            raise InvalidRequest("measure builds the model from a config.json; a .gguf file cannot be measured",
                                 field="model")
        from .sources.loaders import _read_json

        return _read_json(path, "config")
    from .catalog import models as catalog

    entry = catalog.find_model(name)
    if entry is None:
        catalog.resolve_model(name)  # raises UnknownName with suggestions
    return catalog.load_catalog_config(entry)


def _config_dtype(cfg: dict) -> str:
    for key in ("torch_dtype", "dtype"):
        value = cfg.get(key)
        if isinstance(value, str) and value.lower() in DTYPES:
            return DTYPES[value.lower()]
    return "bfloat16"


def resolve_dtype(dtype: str | None, cfg: dict) -> str:
    if dtype in (None, "", "auto"):
        return _config_dtype(cfg)
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        from .errors import UnknownName

        raise UnknownName("dtype", str(dtype), ["auto", "bfloat16", "float16", "float32"]) from None


def hf_config(cfg: dict):
    """A transformers config object from a config.json dict, without any remote code."""
    from transformers import AutoConfig

    data = dict(cfg)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise InvalidRequest("config.json has no model_type, so transformers cannot build it", field="model_type")
    if data.get("quantization_config"):
        raise InvalidRequest("measure builds dense random weights; a quantized checkpoint's config cannot be "
                             "measured here (use its unquantized base model)", field="quantization_config")
    for key in ("auto_map", "_name_or_path", "transformers_version", "architectures"):
        data.pop(key, None)
    try:
        return AutoConfig.for_model(model_type, **data)
    except ValueError as exc:
        raise InvalidRequest(f"this transformers release does not know model_type {model_type!r} ({exc}); remote "
                             f"code is never run", field="model_type") from None


def build_model(cfg: dict, *, dtype: str = "bfloat16", device: str = "cuda", attention: str = "sdpa"):
    """The causal LM of ``cfg`` with random weights, created directly on ``device`` in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    config = hf_config(cfg)
    torch_dtype = getattr(torch, dtype)
    with torch.device(device):
        try:
            try:
                model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attention)
            except TypeError:  # transformers < 4.56 spells it torch_dtype
                model = AutoModelForCausalLM.from_config(config, torch_dtype=torch_dtype,
                                                         attn_implementation=attention)
        except ValueError as exc:  # e.g. an attention implementation this architecture lacks
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise InvalidRequest(f"transformers cannot build this model as asked: {first}", field="attention"
                                 if "attention" in first.lower() else "model") from None
    return model


# ----- memory readings --------------------------------------------------------------------------------------

class MemoryProbe:
    """Allocator and device readings on CUDA; on the CPU every reading is None (tensor bytes still work)."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self.cuda = dev.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def allocated(self) -> int | None:
        return int(self.torch.cuda.memory_allocated(self.device)) if self.cuda else None

    def reserved(self) -> int | None:
        return int(self.torch.cuda.memory_reserved(self.device)) if self.cuda else None

    def max_allocated(self) -> int | None:
        self.sync()
        return int(self.torch.cuda.max_memory_allocated(self.device)) if self.cuda else None

    def max_reserved(self) -> int | None:
        return int(self.torch.cuda.max_memory_reserved(self.device)) if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def device_used(self) -> int | None:
        if not self.cuda:
            return None
        self.sync()
        free, total = self.torch.cuda.mem_get_info(self.device)
        return int(total - free)

    def device_total(self) -> int | None:
        return int(self.torch.cuda.get_device_properties(self.device).total_memory) if self.cuda else None

    def start(self) -> None:
        """Create the CUDA context (and let go of cached blocks) before anything is measured."""
        if self.cuda:
            self.torch.cuda.set_device(self.device)
            self.torch.zeros(1, device=self.device)
            self.torch.cuda.empty_cache()
            self.reset_peak()

    def facts(self) -> dict:
        """GPU name, memory, compute capability and driver (empty on the CPU)."""
        if not self.cuda:
            return {}
        props = self.torch.cuda.get_device_properties(self.device)
        return {"gpu_name": props.name, "gpu_total_bytes": int(props.total_memory),
                "gpu_capability": f"{props.major}.{props.minor}", "driver": driver_version()}

    def name(self) -> str:
        if self.cuda:
            return self.torch.cuda.get_device_name(self.device)
        return platform.processor() or platform.machine() or "cpu"


class PhasePeaks:
    """Peak allocated/reserved per named phase (the allocator's peak is reset at each phase's start)."""

    def __init__(self, probe: MemoryProbe):
        self.probe = probe
        self.allocated: dict[str, int] = {}
        self.reserved: dict[str, int] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        self.probe.reset_peak()
        yield
        a, r = self.probe.max_allocated(), self.probe.max_reserved()
        if a is not None:
            self.allocated[name] = max(self.allocated.get(name, 0), a)
            self.reserved[name] = max(self.reserved.get(name, 0), r)

    def overall(self) -> tuple[int | None, int | None]:
        if not self.allocated:
            return None, None
        return max(self.allocated.values()), max(self.reserved.values())


def tensor_bytes(t) -> int:
    return int(t.numel() * t.element_size())


def parameter_bytes(model) -> int:
    """Bytes of every parameter and persistent buffer (what a checkpoint would hold), counted once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += tensor_bytes(p)
    return total


def cache_bytes(cache) -> int:
    """Bytes held by a transformers KV cache (DynamicCache of transformers 4.x or 5.x; tuples of tensors)."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            total += tensor_bytes(t)

    if cache is None:
        return 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values", "conv_states", "recurrent_states"):
                add(getattr(layer, name, None))
        return total
    for name in ("key_cache", "value_cache"):
        for t in getattr(cache, name, None) or ():
            add(t)
    if isinstance(cache, (tuple, list)):
        for item in cache:
            for t in item if isinstance(item, (tuple, list)) else (item,):
                add(t)
    return total


def gradient_bytes(model) -> int:
    return sum(tensor_bytes(p.grad) for p in model.parameters() if p.grad is not None)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of optimizer state tensors; 0-dimensional ones (step counters) are left out."""
    import torch

    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                total += tensor_bytes(value)
    return total


@contextlib.contextmanager
def count_saved_tensors():
    """Sum the bytes autograd saves for backward (unique storages, parameters excluded) during the block."""
    import torch

    box = {"bytes": 0, "storages": set(), "params": set()}

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in box["storages"] and ptr not in box["params"]:
                box["storages"].add(ptr)
                box["bytes"] += int(t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. wrapper subclasses)
            pass
        return t

    def mark_params(model) -> None:
        for p in model.parameters():
            box["params"].add(p.untyped_storage().data_ptr())

    box["mark_params"] = mark_params
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield box


def versions(probe: MemoryProbe | None = None) -> dict:
    """Library, GPU and driver versions to store beside every measurement."""
    import importlib.metadata as md

    out: dict = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("vramplan", "torch", "transformers", "peft", "accelerate", "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    if out["vramplan"] is None:
        from . import __version__

        out["vramplan"] = __version__
    try:
        import torch

        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except ImportError:
        pass
    out["pytorch_cuda_alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or None
    if probe is not None:
        out.update(probe.facts())
    return out


def driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001 - optional; nvidia-smi next
        pass
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        res = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None


# ----- comparison -------------------------------------------------------------------------------------------

def error_pct(predicted, measured) -> float | None:
    if predicted is None or measured is None or measured == 0:
        return None
    return round((predicted - measured) / measured * 100.0, 2)


def compare(pairs: list[tuple[str, int | None, int | None, str]]) -> dict:
    """{component: {predicted, measured, error_pct, basis}} for the pairs where both sides exist."""
    out = {}
    for name, predicted, measured, basis in pairs:
        if predicted is None or measured is None:
            continue
        out[name] = {"predicted": int(predicted), "measured": int(measured), "error_pct": error_pct(predicted, measured),
                     "basis": basis}
    return out


# ----- runs -------------------------------------------------------------------------------------------------

def _target_device(device: str | None, allow_cpu: bool) -> str:
    reason = unavailable_reason(allow_cpu)
    if reason:
        raise MeasureUnavailable(reason)
    if device:
        return device
    return "cuda" if cuda_available() else "cpu"


def _model_arg(model) -> str:
    return os.fspath(model)


def _init_device(probe: MemoryProbe) -> dict:
    """Create the CUDA context before anything is measured, and read the baseline."""
    probe.start()
    return {"device_used_before_model": probe.device_used(), "allocated_before_model": probe.allocated(),
            "reserved_before_model": probe.reserved()}


def _forward_kwargs(model) -> tuple[str, str | None]:
    """(name of the cache argument, name of the keep-only-last-logits argument) of this transformers release."""
    import inspect

    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    keep = "logits_to_keep" if "logits_to_keep" in params else (
        "num_logits_to_keep" if "num_logits_to_keep" in params else None)
    return cache_arg, keep


def _output_cache(out):
    for name in ("cache", "past_key_values"):
        c = getattr(out, name, None)
        if c is not None:
            return c
    return None


def _vocab(model) -> int:
    cfg = model.config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return int(getattr(text, "vocab_size", None) or cfg.vocab_size)


def run_inference(model, *, context: int, batch: int = 1, decode_tokens: int = DEFAULT_DECODE_TOKENS,
                  probe: MemoryProbe, seed: int = 0) -> dict:
    """Prefill + decode with the cache; the cache ends holding ``context`` tokens per sequence."""
    torch = probe.torch
    decode_tokens = min(decode_tokens, context - 1)
    prompt = context - decode_tokens
    vocab = _vocab(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, prompt), generator=gen).to(probe.device)
    cache_arg, keep_arg = _forward_kwargs(model)
    model.eval()
    out: dict = {}
    with torch.inference_mode():
        before = probe.allocated()
        probe.reset_peak()
        kwargs = {"input_ids": ids, "use_cache": True}
        if keep_arg:
            kwargs[keep_arg] = 1
        t0 = time.perf_counter()
        res = model(**kwargs)
        cache = _output_cache(res)
        probe.sync()
        out["prefill_s"] = round(time.perf_counter() - t0, 3)
        kv_prefill = cache_bytes(cache)
        peak_prefill = probe.max_allocated()
        reserved_prefill = probe.max_reserved()
        logits = res.logits[:, -1].to(dtype=torch.float32, copy=True)  # what generate() keeps per step
        del res
        t0 = time.perf_counter()
        for _ in range(decode_tokens):
            nxt = logits.argmax(-1, keepdim=True)
            res = model(input_ids=nxt, use_cache=True, **{cache_arg: cache})
            cache = _output_cache(res) or cache
            logits = res.logits[:, -1].to(dtype=torch.float32, copy=True)
            del res
        probe.sync()
        out["decode_s"] = round(time.perf_counter() - t0, 3)
        out["kv_cache"] = cache_bytes(cache)
        out["kv_cache_prefill"] = kv_prefill
        out["cache_tokens"] = int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else None
        out["peak_allocated"] = probe.max_allocated()
        out["peak_reserved"] = probe.max_reserved()
        if before is not None:
            out["prefill_peak_allocated"] = peak_prefill
            out["prefill_peak_reserved"] = reserved_prefill
            out["activations"] = max(0, peak_prefill - before - kv_prefill)
        out["allocated_end"] = probe.allocated()
        out["reserved_end"] = probe.reserved()
        out["device_used_end"] = probe.device_used()
        del cache, logits
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
    from .errors import UnknownName, suggest

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
    vocab = _vocab(model)
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


def _device_peak(m: dict) -> tuple[int | None, int | None]:
    """(peak device memory in use, non-torch memory): non-torch = used - reserved at the end, assumed constant."""
    used, reserved, peak_r = m.get("device_used_end"), m.get("reserved_end"), m.get("peak_reserved")
    if used is None or reserved is None or peak_r is None:
        return None, None
    non_torch = used - reserved
    return non_torch + peak_r, non_torch


def _pick(d: dict, *keys):
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


# ----- predicted beside measured -----------------------------------------------------------------------------

def inference_comparison(predicted: dict | None, m: dict) -> dict:
    """Pair plan_inference's memory with what an inference run measured (``m``: run_inference's figures)."""
    pm = (predicted or {}).get("memory") or {}
    if not pm:
        return {}
    no_runtime = pm["total"] - (pm.get("runtime") or 0)
    return compare([
        ("weights", pm.get("weights"), m.get("weights"), "tensor"),
        ("kv_cache", pm.get("kv_cache"), m.get("kv_cache"), "tensor"),
        ("activations", pm.get("activations"), m.get("activations"), "allocator"),
        ("runtime", pm.get("runtime"), m.get("non_torch"), "device"),
        ("peak_allocated", no_runtime, m.get("peak_allocated"), "allocator"),
        ("peak_reserved", no_runtime, m.get("peak_reserved"), "allocator"),
        ("total", pm["total"], m.get("device_used_peak"), "device"),
    ])


def training_comparison(predicted: dict | None, m: dict) -> dict:
    """Pair plan_training's figures with what a training run measured: the model states (weights, gradients,
    optimizer) from ``model_states`` where the plan gives them, the allocator peaks from ``allocated_peak`` /
    ``reserved_peak`` (else total - runtime), the bytes saved for backward, and the device total."""
    if not predicted:
        return {}
    pm = predicted.get("memory") or {}
    states = predicted.get("model_states") or pm
    total = pm.get("total")
    runtime = pm.get("runtime") or 0
    peak = predicted.get("peak") or {}
    pred_alloc = _pick(predicted, "allocated_peak") or _pick(peak, "allocated") or _pick(pm, "peak_allocated")
    pred_alloc = pred_alloc if pred_alloc is not None else (None if total is None else total - runtime)
    pred_res = _pick(predicted, "reserved_peak") or _pick(peak, "reserved") or _pick(pm, "peak_reserved")
    pred_res = pred_res if pred_res is not None else pred_alloc
    saved = _pick(predicted.get("activations") or {}, "saved_bytes")
    pairs = [
        ("weights", states.get("weights"), m.get("weights"), "tensor"),
        ("gradients", states.get("gradients"), m.get("gradients"), "tensor"),
        ("optimizer", states.get("optimizer"), m.get("optimizer"), "tensor"),
        ("saved_for_backward", saved, m.get("saved_for_backward"), "tensor"),
        ("runtime", pm.get("runtime"), m.get("non_torch"), "device"),
        ("peak_allocated", pred_alloc, m.get("peak_allocated"), "allocator"),
        ("peak_reserved", pred_res, m.get("peak_reserved"), "allocator"),
        ("allocated_after_step", predicted.get("allocated_after_step"), m.get("allocated_end"), "allocator"),
        ("total", total, m.get("device_used_peak"), "device"),
    ]
    if predicted.get("trainable_params") is not None:
        pairs.append(("trainable_params", predicted["trainable_params"], m.get("trainable_params"), "count"))
    return compare(pairs)


def rescore(model, request: dict, measured: dict) -> dict:
    """The comparison for a stored measurement, predicted again by the vramplan installed now (so an accuracy table
    follows the model's improvements without new GPU runs)."""
    if request.get("mode") == "train":
        import inspect

        keys = inspect.signature(training_options).parameters
        opts = {k: request[k] for k in keys if k in request}
        return training_comparison(predict_training(model, **training_options(**opts)), measured)
    predicted = predict_inference(model, max_model_len=request["max_model_len"],
                                  batch_size=request.get("batch_size", 1), dtype=request.get("dtype", "auto"))
    return inference_comparison(predicted, measured)


# ----- public entry points ----------------------------------------------------------------------------------

def predict_inference(model, *, max_model_len: int, batch_size: int = 1, dtype: str = "auto") -> dict:
    from .api import plan_inference

    return plan_inference(_model_arg(model), max_model_len=max_model_len, batch_size=batch_size, dtype=dtype)


def training_options(method: str = "full", optimizer: str = "adamw", precision: str = "bf16", batch_size: int = 1,
                     seq_len: int = 1024, gradient_checkpointing: bool = False, lora_rank: int = 16,
                     lora_targets: str | None = "all-linear", attention: str = "sdpa") -> dict:
    # the harness's loop: outputs dropped before backward, grads freed after the step (HF Trainer's order), and
    # no KV cache built during the training forward
    opts = {"method": method, "optimizer": optimizer, "precision": precision, "batch_size": batch_size,
            "seq_len": seq_len, "gradient_checkpointing": gradient_checkpointing, "attention": attention,
            "use_cache": False, "loop": "trainer"}
    if method == "lora":
        opts.update(lora_rank=lora_rank, lora_targets=lora_targets or "all-linear")
    return opts


def predict_training(model, **options) -> dict | None:
    """vramplan.training_api.plan_training with the same options, or None when that module is not there yet.
    Options plan_training does not take are left out and named in the result's ``ignored_options``."""
    try:
        from .training_api import plan_training
    except ImportError:
        return None
    import inspect

    params = inspect.signature(plan_training).parameters
    ignored = []
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        ignored = sorted(k for k in options if k not in params)
        options = {k: v for k, v in options.items() if k in params}
    result = plan_training(_model_arg(model), **options)
    if ignored and isinstance(result, dict):
        result = dict(result, ignored_options=ignored)
    return result


def _check_inference(context: int, batch: int, decode_tokens: int) -> None:
    if context < 2:
        raise InvalidRequest(f"max_model_len must be at least 2 tokens to prefill and decode, got {context}",
                             field="max_model_len")
    if batch < 1:
        raise InvalidRequest(f"batch_size must be at least 1, got {batch}", field="batch_size")
    if decode_tokens < 1:
        raise InvalidRequest(f"decode_tokens must be at least 1, got {decode_tokens}", field="decode_tokens")


def measure_inference(model, *, max_model_len, batch_size: int = 1, dtype: str = "auto",
                      decode_tokens: int = DEFAULT_DECODE_TOKENS, attention: str = "sdpa", device: str | None = None,
                      allow_cpu: bool = False) -> dict:
    """Predict, then measure, inference of ``batch_size`` sequences of ``max_model_len`` tokens."""
    from .api import tokens_arg

    context = tokens_arg(max_model_len) or 4096
    _check_inference(context, batch_size, decode_tokens)
    _check_choice(attention, ATTENTIONS, "attention")
    cfg = raw_config(model)
    dt = resolve_dtype(dtype, cfg)
    predicted = predict_inference(model, max_model_len=context, batch_size=batch_size, dtype=dt)
    dev = _target_device(device, allow_cpu)
    t_start = time.perf_counter()
    probe = MemoryProbe(dev)
    base = _init_device(probe)
    model_obj = build_model(cfg, dtype=dt, device=dev, attention=attention)
    probe.sync()
    weights = parameter_bytes(model_obj)
    weights_alloc = None if base["allocated_before_model"] is None else probe.allocated() - base["allocated_before_model"]
    m = run_inference(model_obj, context=context, batch=batch_size, decode_tokens=decode_tokens, probe=probe)
    m.update(base, weights=weights, weights_allocated=weights_alloc)
    m["device_used_peak"], m["non_torch"] = _device_peak(m)
    comparison = inference_comparison(predicted, m)
    del model_obj
    request = {"mode": "inference", "max_model_len": context, "batch_size": batch_size, "dtype": dt,
               "decode_tokens": min(decode_tokens, context - 1), "attention": attention}
    return _result(model, "inference", predicted, "vramplan.api.plan_inference (plain accounting)", m,
                   comparison, request, probe, t_start)


def measure_training(model, *, method: str = "full", optimizer: str = "adamw", precision: str = "bf16",
                     batch_size: int = 1, seq_len=1024, gradient_checkpointing: bool = False, lora_rank: int = 16,
                     lora_targets: str | None = "all-linear", attention: str = "sdpa",
                     steps: int = DEFAULT_TRAIN_STEPS, device: str | None = None, allow_cpu: bool = False) -> dict:
    """Predict, then measure, ``steps`` training steps with the given method, optimizer and precision."""
    from .api import tokens_arg

    seq = tokens_arg(seq_len, "seq_len") or 1024
    _check_choice(method, METHODS, "method")
    _check_choice(optimizer, OPTIMIZERS, "optimizer")
    _check_choice(precision, PRECISIONS, "precision")
    _check_choice(attention, ATTENTIONS, "attention")
    if steps < 1:
        raise InvalidRequest(f"steps must be at least 1, got {steps}", field="steps")
    if method == "lora" and lora_rank < 1:
        raise InvalidRequest(f"lora_rank must be at least 1, got {lora_rank}", field="lora_rank")
    cfg = raw_config(model)
    options = training_options(method, optimizer, precision, batch_size, seq, gradient_checkpointing, lora_rank,
                               lora_targets, attention)
    predicted = predict_training(model, **options)
    dev = _target_device(device, allow_cpu)
    t_start = time.perf_counter()
    probe = MemoryProbe(dev)
    base = _init_device(probe)
    weight_dtype = "float32" if precision in ("fp32", "bf16-mixed", "fp16-mixed") else (
        "float16" if precision == "fp16" else "bfloat16")
    model_obj = build_model(cfg, dtype=weight_dtype, device=dev, attention=attention)
    if method == "lora":
        for p in model_obj.parameters():
            p.requires_grad_(False)
        model_obj = apply_lora(model_obj, lora_rank, lora_targets)
    probe.sync()
    weights = parameter_bytes(model_obj)
    weights_alloc = None if base["allocated_before_model"] is None else probe.allocated() - base["allocated_before_model"]
    m = run_training(model_obj, batch=batch_size, seq_len=seq, optimizer=optimizer, precision=precision,
                     gradient_checkpointing=gradient_checkpointing, steps=steps, probe=probe)
    m.update(base, weights=weights, weights_allocated=weights_alloc)
    m["device_used_peak"], m["non_torch"] = _device_peak(m)
    if m.get("peak_allocated") is not None:
        m["peak_above_states"] = max(0, m["peak_allocated"] - weights - m["gradients"] - m["optimizer"])
    comparison = training_comparison(predicted, m)
    del model_obj
    request = {"mode": "train", **options, "steps": steps}
    source = "vramplan.training_api.plan_training" if predicted is not None else "none (training_api not available)"
    return _result(model, "train", predicted, source, m, comparison, request, probe, t_start)


def _check_choice(value, choices, name: str) -> None:
    if value not in choices:
        from .errors import UnknownName, suggest

        raise UnknownName(name.replace("_", " "), str(value), suggest(str(value), choices) or list(choices))


def _model_info(model, predicted) -> dict:
    if isinstance(predicted, dict) and predicted.get("model"):
        return predicted["model"]
    from .api import load_model, model_summary

    return model_summary(load_model(_model_arg(model)))


def _result(model, mode, predicted, source, measured, comparison, request, probe, t_start) -> dict:
    model_info = _model_info(model, predicted)
    return {
        "mode": mode,
        "model": model_info,
        "request": request,
        "device": {"type": probe.device.type, "name": probe.name(), "total_bytes": probe.device_total()},
        "measured_on_gpu": probe.cuda,
        "prediction": {"source": source, "memory": (predicted or {}).get("memory"),
                       "ignored_options": (predicted or {}).get("ignored_options", [])},
        "measured": measured,
        "comparison": comparison,
        "versions": versions(probe),
        "wall_s": round(time.perf_counter() - t_start, 2),
    }


def prediction_only(mode: str, model, **options) -> dict:
    """What measure prints where it cannot run: the prediction for the same options."""
    if mode == "train":
        predicted = predict_training(model, **training_options(**options))
        source = "vramplan.training_api.plan_training"
    else:
        predicted = predict_inference(model, **options)
        source = "vramplan.api.plan_inference (plain accounting)"
    return {"mode": mode, "model": _model_info(model, predicted), "measured_on_gpu": False,
            "prediction": {"source": source, "memory": (predicted or {}).get("memory")}, "measured": None,
            "comparison": {}}


def write_config(cfg: dict, directory: str | os.PathLike | None = None) -> Path:
    """Write a config dict to ``directory``/config.json (a temporary directory by default); tests and scripts use
    it to measure made-up configurations."""
    d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="vramplan-measure-"))
    d.mkdir(parents=True, exist_ok=True)
    path = d / "config.json"
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path


__all__ = [
    "MeasureUnavailable", "NO_GPU_MESSAGE", "NO_TORCH_MESSAGE", "build_model", "cache_bytes", "compare",
    "error_pct", "inference_comparison", "measure_inference", "measure_training", "missing_packages",
    "prediction_only", "raw_config", "rescore", "training_comparison",
    "unavailable_reason", "versions", "write_config",
]
