"""Bytes of the tensors themselves (the ``tensor`` basis): parameters, KV cache, gradients, optimizer states and what
autograd saves for backward. Exact, and available on the CPU too."""

from __future__ import annotations

import contextlib

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
