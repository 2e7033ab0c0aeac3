"""The steps every measurement shares: the device check, the probe and its baseline, the built model's figures, the
device peak, and the result dict.

``MemoryProbe``, ``unavailable_reason`` and ``cuda_available`` are looked up on the ``vramplan.measure`` package when
called, so a substitute set there (a test's fake CUDA probe) is the one a measurement uses.
"""

from __future__ import annotations

import time

from .predict import model_info
from .probe import MeasureUnavailable, versions
from .tensors import parameter_bytes


def target_device(device: str | None, allow_cpu: bool) -> str:
    from . import cuda_available, unavailable_reason  # through the package: see the module docstring

    reason = unavailable_reason(allow_cpu)
    if reason:
        raise MeasureUnavailable(reason)
    if device:
        return device
    return "cuda" if cuda_available() else "cpu"


def open_probe(device: str):
    """(probe, baseline): the CUDA context is created before anything is measured, then the baseline is read."""
    from . import MemoryProbe  # through the package: see the module docstring

    probe = MemoryProbe(device)
    probe.start()
    return probe, {"device_used_before_model": probe.device_used(), "allocated_before_model": probe.allocated(),
                   "reserved_before_model": probe.reserved()}


def model_figures(model, probe, base: dict) -> dict:
    """The baseline, the built model's parameter bytes and (on CUDA) what building it allocated."""
    probe.sync()
    weights = parameter_bytes(model)
    weights_alloc = None if base["allocated_before_model"] is None else probe.allocated() - base["allocated_before_model"]
    return {**base, "weights": weights, "weights_allocated": weights_alloc}


def device_peak(m: dict) -> tuple[int | None, int | None]:
    """(peak device memory in use, non-torch memory): non-torch = used - reserved at the end, assumed constant."""
    used, reserved, peak_r = m.get("device_used_end"), m.get("reserved_end"), m.get("peak_reserved")
    if used is None or reserved is None or peak_r is None:
        return None, None
    non_torch = used - reserved
    return non_torch + peak_r, non_torch


def check_choice(value, choices, name: str) -> None:
    if value not in choices:
        from ..errors import UnknownName, suggest

        raise UnknownName(name.replace("_", " "), str(value), suggest(str(value), choices) or list(choices))


def result(model, mode, predicted, source, measured, comparison, request, probe, t_start) -> dict:
    info = model_info(model, predicted)
    return {
        "mode": mode,
        "model": info,
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
