"""Immutable records for specs and results, without importing ``typing`` or ``dataclasses`` at start-up.

``@record`` turns an annotated class body into a ``collections.namedtuple`` subclass: frozen, slotted, hashable
(so specs can key ``functools.lru_cache``), with defaults, properties and methods kept. It is what
``typing.NamedTuple`` does; that import alone costs about a quarter of a bare interpreter start, and ``dataclasses``
more than one whole start, which the CLI's start-up budget (3x a bare start) cannot afford. ``_replace`` and
``_asdict`` come with namedtuple.
"""

from __future__ import annotations

from collections import namedtuple

_SKIP = {"__dict__", "__weakref__", "__annotations__", "__module__", "__qualname__", "__doc__"}


def record(cls):
    fields = list(cls.__dict__.get("__annotations__", {}))
    defaults = [cls.__dict__[f] for f in fields if f in cls.__dict__]
    if any(f in cls.__dict__ for f in fields[: len(fields) - len(defaults)]):
        raise TypeError(f"{cls.__name__}: fields with defaults must come last")
    base = namedtuple(cls.__name__, fields, defaults=defaults, module=cls.__module__)
    ns = {k: v for k, v in cls.__dict__.items() if k not in _SKIP and k not in fields}
    ns.update(__slots__=(), __doc__=cls.__doc__, __annotations__=cls.__dict__.get("__annotations__", {}),
              __qualname__=cls.__qualname__)
    return type(cls.__name__, (base,), ns)
