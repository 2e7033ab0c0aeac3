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

The package, in the order a measurement runs:

``probe``       what can run here; MemoryProbe (allocator and device readings), PhasePeaks, versions
``tensors``     tensor-basis bytes: parameters, KV cache, gradients, optimizer states, saved for backward
``build``       config.json -> a transformers model with random weights (no download, no remote code)
``predict``     vramplan's prediction for the same request, or the prediction alone
``session``     the steps both measurements share: device check, probe baseline, model figures, result dict
``inference``   measure_inference and its run (prefill + decode)
``training``    measure_training and its run (optimizer steps), optimizers, LoRA, checkpointing
``comparison``  predicted beside measured, and rescore of a stored measurement
"""

from __future__ import annotations

from ..errors import InvalidRequest, VramplanError
from .build import ATTENTIONS, DTYPES, build_model, hf_config, raw_config, resolve_dtype, write_config
from .comparison import compare, error_pct, inference_comparison, rescore, training_comparison
from .inference import DEFAULT_DECODE_TOKENS, measure_inference, run_inference
from .predict import predict_inference, predict_training, prediction_only, training_options
from .probe import (
    NO_GPU_MESSAGE, NO_TORCH_MESSAGE, MeasureUnavailable, MemoryProbe, PhasePeaks, cuda_available, driver_version,
    missing_packages, unavailable_reason, versions,
)
from .tensors import (
    cache_bytes, count_saved_tensors, gradient_bytes, optimizer_state_bytes, parameter_bytes, tensor_bytes,
)
from .training import (
    DEFAULT_TRAIN_STEPS, METHODS, OPTIMIZERS, PRECISIONS, apply_lora, enable_checkpointing, make_optimizer,
    measure_training, run_training,
)

__all__ = [
    "MeasureUnavailable", "NO_GPU_MESSAGE", "NO_TORCH_MESSAGE", "build_model", "cache_bytes", "compare",
    "error_pct", "inference_comparison", "measure_inference", "measure_training", "missing_packages",
    "prediction_only", "raw_config", "rescore", "training_comparison",
    "unavailable_reason", "versions", "write_config",
]
