"""The model to measure, from its ``config.json``: random weights created straight on the device, in the asked dtype.

Memory does not depend on the weights' values, so nothing is downloaded, and remote code is never run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import InvalidRequest

DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16",
          "float32": "float32", "fp32": "float32"}
ATTENTIONS = ("sdpa", "eager")


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
        from ..sources.loaders import _read_json

        return _read_json(path, "config")
    from ..catalog import models as catalog

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
        from ..errors import UnknownName

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


def vocab_size(model) -> int:
    """The vocabulary size of a built model (the text config's, for a multimodal one)."""
    cfg = model.config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return int(getattr(text, "vocab_size", None) or cfg.vocab_size)


def write_config(cfg: dict, directory: str | os.PathLike | None = None) -> Path:
    """Write a config dict to ``directory``/config.json (a temporary directory by default); tests and scripts use
    it to measure made-up configurations."""
    d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="vramplan-measure-"))
    d.mkdir(parents=True, exist_ok=True)
    path = d / "config.json"
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path
