"""Prediction beside measurement: ``{component: {predicted, measured, error_pct, basis}}``, and the same pairing for a
stored measurement predicted again by the vramplan installed now."""

from __future__ import annotations

from .predict import predict_inference, predict_training, training_options


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


def _pick(d: dict, *keys):
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def inference_comparison(predicted: dict | None, m: dict) -> dict:
    """Pair plan_inference's memory with what an inference run measured (``m``: run_inference's figures)."""
    pm = (predicted or {}).get("memory") or {}
    if not pm:
        return {}
    no_runtime = pm["total"] - (pm.get("runtime") or 0)
    allocated = no_runtime - (pm.get("allocator_cache") or 0)  # the caching allocator's slack is reserved only
    return compare([
        ("weights", pm.get("weights"), m.get("weights"), "tensor"),
        ("kv_cache", pm.get("kv_cache"), m.get("kv_cache"), "tensor"),
        ("activations", pm.get("activations"), m.get("activations"), "allocator"),
        ("runtime", pm.get("runtime"), m.get("non_torch"), "device"),
        ("peak_allocated", allocated, m.get("peak_allocated"), "allocator"),
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
    acts = predicted.get("activations") or {}
    saved = _pick(acts, "saved_bytes")
    if saved is not None:  # the harness counts every tensor autograd saves: the loss's and autocast's copies too
        saved += (acts.get("loss_saved_bytes") or 0) + (acts.get("autocast_saved_bytes") or 0)
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
                                  batch_size=request.get("batch_size", 1), dtype=request.get("dtype", "auto"),
                                  attention=request.get("attention", "sdpa"),
                                  decode_tokens=request.get("decode_tokens", 8))
    return inference_comparison(predicted, measured)
