"""What vramplan predicts for the request a measurement runs, and the prediction alone where measure cannot run."""

from __future__ import annotations

import os

INFERENCE_SOURCE = "vramplan.api.plan_inference, engine transformers (what the harness runs)"
TRAINING_SOURCE = "vramplan.training_api.plan_training"


def model_arg(model) -> str:
    return os.fspath(model)


def predict_inference(model, *, max_model_len: int, batch_size: int = 1, dtype: str = "auto",
                      attention: str = "sdpa", decode_tokens: int = 8) -> dict:
    """The transformers engine model for the harness's run: one prefill of ``max_model_len - decode_tokens`` tokens
    per sequence, then ``decode_tokens`` steps with the DynamicCache (engines/transformers.py)."""
    from ..api import plan_inference, tokens_arg

    from ..errors import InvalidRequest

    context = tokens_arg(max_model_len) or 4096
    try:
        return plan_inference(model_arg(model), max_model_len=context, batch_size=batch_size, dtype=dtype,
                              engine="transformers", attn_implementation=attention,
                              max_new_tokens=max(0, min(decode_tokens, context - 1)))
    except InvalidRequest as exc:
        if exc.field != "engine":
            raise
        # an architecture the transformers engine model does not cover yet: the plain accounting, said so
        plain = plan_inference(model_arg(model), max_model_len=context, batch_size=batch_size, dtype=dtype)
        return dict(plain, ignored_options=[f"engine transformers ({exc})"])


def inference_source(predicted: dict | None) -> str:
    """Which model the inference prediction came from: the transformers engine, or the plain accounting where the
    engine model does not cover the architecture."""
    if isinstance(predicted, dict) and any(str(o).startswith("engine transformers")
                                           for o in predicted.get("ignored_options") or ()):
        return "vramplan.api.plan_inference (plain accounting; the transformers engine model does not cover it)"
    return INFERENCE_SOURCE


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
        from ..training_api import plan_training
    except ImportError:
        return None
    import inspect

    params = inspect.signature(plan_training).parameters
    ignored = []
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        ignored = sorted(k for k in options if k not in params)
        options = {k: v for k, v in options.items() if k in params}
    result = plan_training(model_arg(model), **options)
    if ignored and isinstance(result, dict):
        result = dict(result, ignored_options=ignored)
    return result


def model_info(model, predicted) -> dict:
    if isinstance(predicted, dict) and predicted.get("model"):
        return predicted["model"]
    from ..api import load_model, model_summary

    return model_summary(load_model(model_arg(model)))


def prediction_only(mode: str, model, **options) -> dict:
    """What measure prints where it cannot run: the prediction for the same options."""
    if mode == "train":
        predicted = predict_training(model, **training_options(**options))
        source = TRAINING_SOURCE
    else:
        predicted = predict_inference(model, **options)
        source = inference_source(predicted)
    return {"mode": mode, "model": model_info(model, predicted), "measured_on_gpu": False,
            "prediction": {"source": source, "memory": (predicted or {}).get("memory")}, "measured": None,
            "comparison": {}}
