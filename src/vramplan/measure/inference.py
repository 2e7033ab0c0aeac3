"""Measure inference: one prefill of ``batch`` x (``context`` - ``decode_tokens``) random tokens with a growing
``DynamicCache`` (only the last token's logits kept, as ``generate`` does), then ``decode_tokens`` single-token
steps, so the cache ends holding exactly ``context`` tokens per sequence."""

from __future__ import annotations

import time

from ..errors import InvalidRequest
from .build import ATTENTIONS, build_model, raw_config, resolve_dtype, vocab_size
from .comparison import inference_comparison
from .predict import inference_source, predict_inference
from .probe import MemoryProbe
from .session import check_choice, device_peak, model_figures, open_probe, result, target_device
from .tensors import cache_bytes

DEFAULT_DECODE_TOKENS = 8


def measure_inference(model, *, max_model_len, batch_size: int = 1, dtype: str = "auto",
                      decode_tokens: int = DEFAULT_DECODE_TOKENS, attention: str = "sdpa", device: str | None = None,
                      allow_cpu: bool = False) -> dict:
    """Predict, then measure, inference of ``batch_size`` sequences of ``max_model_len`` tokens."""
    from ..api import tokens_arg

    context = tokens_arg(max_model_len) or 4096
    _check_inference(context, batch_size, decode_tokens)
    check_choice(attention, ATTENTIONS, "attention")
    cfg = raw_config(model)
    dt = resolve_dtype(dtype, cfg)
    predicted = predict_inference(model, max_model_len=context, batch_size=batch_size, dtype=dt, attention=attention,
                                  decode_tokens=decode_tokens)
    dev = target_device(device, allow_cpu)
    t_start = time.perf_counter()
    probe, base = open_probe(dev)
    model_obj = build_model(cfg, dtype=dt, device=dev, attention=attention)
    figures = model_figures(model_obj, probe, base)
    m = run_inference(model_obj, context=context, batch=batch_size, decode_tokens=decode_tokens, probe=probe)
    m.update(figures)
    m["device_used_peak"], m["non_torch"] = device_peak(m)
    comparison = inference_comparison(predicted, m)
    del model_obj
    request = {"mode": "inference", "max_model_len": context, "batch_size": batch_size, "dtype": dt,
               "decode_tokens": min(decode_tokens, context - 1), "attention": attention}
    return result(model, "inference", predicted, inference_source(predicted), m, comparison, request, probe, t_start)


def run_inference(model, *, context: int, batch: int = 1, decode_tokens: int = DEFAULT_DECODE_TOKENS,
                  probe: MemoryProbe, seed: int = 0) -> dict:
    """Prefill + decode with the cache; the cache ends holding ``context`` tokens per sequence."""
    torch = probe.torch
    decode_tokens = min(decode_tokens, context - 1)
    prompt = context - decode_tokens
    vocab = vocab_size(model)
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


def _check_inference(context: int, batch: int, decode_tokens: int) -> None:
    if context < 2:
        raise InvalidRequest(f"max_model_len must be at least 2 tokens to prefill and decode, got {context}",
                             field="max_model_len")
    if batch < 1:
        raise InvalidRequest(f"batch_size must be at least 1, got {batch}", field="batch_size")
    if decode_tokens < 1:
        raise InvalidRequest(f"decode_tokens must be at least 1, got {decode_tokens}", field="decode_tokens")


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
