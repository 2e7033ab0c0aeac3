"""The GPU catalog: ``gpus.toml`` -> :class:`vramplan.core.hardware.GPU`, name lookup and "did you mean".

    load_gpus()            every catalog GPU, in file order (cached)
    get_gpu(name)          by name, key or alias, ignoring case, spaces, dashes and punctuation;
                           a bare memory size ("24GiB", "custom:24GB") gives an ad-hoc GPU with only memory known
    list_gpus(category)    the catalog, optionally one category

Every row is checked when the file is read: a wrong type, an unknown field or a duplicate alias raises
:class:`vramplan.errors.SourceError` naming the GPU and the field.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import tomllib

from vramplan import errors, units
from vramplan.core.hardware import (
    CATEGORIES,
    CUDA_CONTEXT_BYTES,
    CUSTOM_CATEGORY,
    GPU,
    MEMORY_RULES,
    default_gpu_working_set_bytes,
    derive_total_bytes,
    working_set_is_measured,
)

__all__ = ["load_gpus", "get_gpu", "list_gpus", "custom_gpu", "parse_custom_memory"]

CATALOG_FILE = "gpus.toml"

# TOML field -> (type, required). Numbers accept int or float; the loader converts units.
_FIELDS: dict[str, tuple[str, bool]] = {
    "name": ("str", True),
    "vendor": ("str", True),
    "category": ("str", True),
    "memory_marketed": ("str", True),
    "marketed_gb_are_gib": ("bool", True),
    "memory_type": ("str", False),
    "memory_rule": ("str", True),
    "torch_total_MiB": ("int", False),
    "torch_total_bytes": ("int", False),
    "bandwidth_GB_per_s": ("number", True),
    "bf16_dense_TFLOPS": ("number", False),
    "fp8_dense_TFLOPS": ("number", False),
    "fp16_dense_TFLOPS": ("number", False),
    "fp4_dense_TFLOPS": ("number", False),
    "power_W": ("number", False),
    "interconnect": ("str", False),
    "interconnect_GB_per_s": ("number", False),
    "price_per_hour_usd": ("number", False),
    "unified_memory": ("bool", False),
    "devices_per_package": ("int", False),
    "aliases": ("str_list", False),
    "source": ("str", True),
    "notes": ("str", False),
    "inferred": ("str_list", False),
    "sources": ("table", False),
}
_KEY_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_MARKETED_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(GB|TB)\s*$")
_CUSTOM_RE = re.compile(
    r"^\s*(?:custom\s*[:=]?\s*)?([0-9]*\.?[0-9]+)\s*(kb|mb|gb|tb|kib|mib|gib|tib)\s*$", re.IGNORECASE)
_UNIT_LABELS = {"kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB", "kib": "KiB", "mib": "MiB", "gib": "GiB",
                "tib": "TiB"}


def _norm(name: str) -> str:
    """The lookup form of a name: lower case, letters and digits only ("H100 SXM-80GB" -> "h100sxm80gb")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# --- typed getters ----------------------------------------------------------------------------------------------
def _bad(where: str, key: str, field: str, message: str) -> errors.SourceError:
    return errors.SourceError(f"GPU '{key}': field '{field}' {message}", where)


def _get(table: dict, field: str, where: str, key: str):
    kind, required = _FIELDS[field]
    if field not in table:
        if required:
            raise _bad(where, key, field, "is missing")
        return None
    value = table[field]
    if kind == "str":
        ok = isinstance(value, str) and (value.strip() or not required)
        expected = "a non-empty string" if required else "a string"
    elif kind == "bool":
        ok, expected = isinstance(value, bool), "true or false"
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        expected = "a positive integer"
    elif kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        expected = "a positive number"
    elif kind == "str_list":
        ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
        expected = "a list of non-empty strings"
    else:  # table
        ok = isinstance(value, dict) and all(isinstance(v, str) and v.strip() for v in value.values())
        expected = "a table of field = source strings"
    if not ok:
        raise _bad(where, key, field, f"must be {expected}, got {type(value).__name__} {value!r}")
    return value


def _marketed_bytes(text: str, as_gib: bool, where: str, key: str) -> int:
    m = _MARKETED_RE.match(text)
    if not m:
        raise _bad(where, key, "memory_marketed", f"must look like '80 GB', got {text!r}")
    if m.group(2) == "TB":
        unit = units.TiB_bytes if as_gib else units.TB_bytes
    else:
        unit = units.GiB_bytes if as_gib else units.GB_bytes
    return int(float(m.group(1)) * unit)


def _parse_gpu(key: str, table: object, where: str) -> GPU:
    """One ``[gpu.<key>]`` table -> GPU, with every field checked."""
    if not _KEY_RE.match(key):
        raise errors.SourceError(f"GPU key {key!r} must be lower-case words joined by '-'", where)
    if not isinstance(table, dict):
        raise errors.SourceError(f"GPU '{key}' must be a table", where)
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise _bad(where, key, unknown[0], "is not a known field (typo?)")
    get = functools.partial(_get, table, where=where, key=key)

    category = get("category")
    if category not in CATEGORIES:
        raise _bad(where, key, "category", f"must be one of {', '.join(CATEGORIES)}, got {category!r}")
    rule = get("memory_rule")
    if rule not in MEMORY_RULES:
        raise _bad(where, key, "memory_rule", f"must be one of {', '.join(MEMORY_RULES)}, got {rule!r}")
    unified = bool(get("unified_memory") or False)
    if unified != (rule == "unified"):
        raise _bad(where, key, "unified_memory", "must be true exactly when memory_rule is 'unified'")

    marketed = _marketed_bytes(get("memory_marketed"), get("marketed_gb_are_gib"), where, key)
    inferred = list(get("inferred") or [])
    torch_mib, torch_bytes = get("torch_total_MiB"), get("torch_total_bytes")
    if torch_mib is not None and torch_bytes is not None:
        raise _bad(where, key, "torch_total_bytes", "and torch_total_MiB are both given; keep one")
    if torch_bytes is not None:
        total = torch_bytes
    elif torch_mib is not None:
        total = torch_mib * units.MiB_bytes
    else:
        total = derive_total_bytes(marketed, rule)
        if rule != "unified":
            inferred.append("memory_total_bytes")
    if unified:
        usable = default_gpu_working_set_bytes(total)
        if not working_set_is_measured(total):
            inferred.append("memory_usable_bytes")
    else:
        usable = max(0, total - CUDA_CONTEXT_BYTES)

    sources = get("sources") or {}
    bad_source = sorted(set(sources) - set(_FIELDS))
    if bad_source:
        raise _bad(where, key, "sources", f"names unknown field {bad_source[0]!r}")
    source = get("source")
    if sources:
        source += "; " + "; ".join(f"{field}: {text}" for field, text in sources.items())

    def scaled(field: str, factor: float) -> float | None:
        value = get(field)
        return None if value is None else float(value) * factor

    try:
        return GPU(
            name=get("name"),
            key=key,
            vendor=get("vendor"),
            category=category,
            memory_marketed_bytes=marketed,
            memory_total_bytes=total,
            memory_usable_bytes=usable,
            hbm_bytes_per_s=scaled("bandwidth_GB_per_s", 1e9),
            bf16_flop_per_s=scaled("bf16_dense_TFLOPS", 1e12),
            fp8_flop_per_s=scaled("fp8_dense_TFLOPS", 1e12),
            fp4_flop_per_s=scaled("fp4_dense_TFLOPS", 1e12),
            power_w=scaled("power_W", 1.0),
            unified_memory=unified,
            interconnect=get("interconnect"),
            interconnect_bytes_per_s=scaled("interconnect_GB_per_s", 1e9),
            price_per_hour_usd=scaled("price_per_hour_usd", 1.0),
            aliases=tuple(get("aliases") or ()),
            source=source,
            notes=get("notes") or "",
            inferred=tuple(dict.fromkeys(inferred)),
            memory_type=get("memory_type") or "",
            devices_per_package=get("devices_per_package") or 1,
            fp16_flop_per_s=scaled("fp16_dense_TFLOPS", 1e12),
        )
    except ValueError as exc:  # the dataclass names the field
        raise errors.SourceError(f"GPU '{key}': {exc}", where) from None


def _parse_catalog(data: dict, where: str) -> tuple[GPU, ...]:
    """A parsed TOML document -> GPUs; checks that names, keys and aliases are unique after normalisation."""
    rows = data.get("gpu")
    if not isinstance(rows, dict) or not rows:
        raise errors.SourceError("expected [gpu.<key>] tables", where)
    extra = sorted(set(data) - {"gpu"})
    if extra:
        raise errors.SourceError(f"unexpected top-level entry {extra[0]!r} (GPUs go in [gpu.<key>] tables)", where)
    gpus = tuple(_parse_gpu(key, table, where) for key, table in rows.items())
    seen: dict[str, str] = {}
    for gpu in gpus:
        for label in dict.fromkeys((gpu.key, gpu.name, *gpu.aliases)):
            norm = _norm(label)
            if not norm:
                raise _bad(where, gpu.key, "aliases", f"entry {label!r} has no letters or digits")
            if _CUSTOM_RE.match(label):
                raise _bad(where, gpu.key, "aliases", f"entry {label!r} would read as a bare memory size")
            owner = seen.setdefault(norm, gpu.key)
            if owner != gpu.key:
                raise _bad(where, gpu.key, "aliases", f"entry {label!r} is already used by GPU '{owner}'")
    return gpus


def _parse_catalog_text(text: str, where: str = CATALOG_FILE) -> tuple[GPU, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.SourceError(f"not valid TOML: {exc}", where) from None
    return _parse_catalog(data, where)


def _load_catalog_file(path) -> tuple[GPU, ...]:
    """Read and check a catalog file at ``path`` (tests and tools; the packaged catalog uses :func:`load_gpus`)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise errors.SourceError(f"cannot read GPU catalog: {exc.strerror or exc}", str(path)) from None
    return _parse_catalog_text(raw.decode("utf-8"), str(path))


# --- public API -------------------------------------------------------------------------------------------------
@functools.cache
def load_gpus() -> tuple[GPU, ...]:
    """Every GPU in the packaged catalog, in file order (grouped by category)."""
    text = importlib.resources.files("vramplan.catalog").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return _parse_catalog_text(text, CATALOG_FILE)


@functools.cache
def _lookup() -> dict[str, GPU]:
    table: dict[str, GPU] = {}
    for gpu in load_gpus():
        for label in (gpu.key, gpu.name, *gpu.aliases):
            table.setdefault(_norm(label), gpu)
    return table


@functools.cache
def _suggestion_labels() -> dict[str, str]:
    """normalised form -> the label to show when suggesting it (keys and aliases as written in the catalog)."""
    labels: dict[str, str] = {}
    for gpu in load_gpus():
        for label in (gpu.key, *gpu.aliases, gpu.name):
            labels.setdefault(_norm(label), label)
    return labels


_VENDOR_PREFIXES = ("nvidia", "amd", "intel", "google", "apple", "geforce", "tesla", "instinct", "radeon",
                    "habana", "cloud")


def _find(norm: str) -> GPU | None:
    """Look ``norm`` up, then again without leading vendor words ("NVIDIA GeForce RTX 4090", "AMD Instinct MI300X"),
    so that the device names torch and nvidia-smi print resolve too."""
    table = _lookup()
    while norm:
        if norm in table:
            return table[norm]
        for prefix in _VENDOR_PREFIXES:
            if norm.startswith(prefix) and len(norm) > len(prefix):
                norm = norm[len(prefix):]
                break
        else:
            return None
    return None


def parse_custom_memory(text: str) -> int | None:
    """'24GiB', '24 GB' or 'custom:24GB' -> bytes; None when ``text`` is not a bare memory size (a unit is required)."""
    if not isinstance(text, str):
        return None
    m = _CUSTOM_RE.match(text)
    if not m:
        return None
    return units.parse_size(f"{m.group(1)}{m.group(2)}")


def custom_gpu(memory_bytes: int, label: str | None = None) -> GPU:
    """An ad-hoc GPU of which only the memory is known.

    ``memory_bytes`` is taken as the total the framework reports; the usable figure subtracts the CUDA context
    allowance like any discrete GPU. Speed figures are unknown: ``hbm_bytes_per_s`` is 0.0 (the field must be a
    float) and every FLOP/s, power, interconnect and price field is None, so speed estimates are unavailable.
    """
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) or memory_bytes <= 0:
        raise errors.InvalidRequest(f"GPU memory must be a positive size, got {memory_bytes!r}", field="gpu")
    label = label or units.format_bytes(memory_bytes, "GiB").replace(".00 ", " ")
    return GPU(
        name=f"custom {label}",
        key="custom-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-"),
        vendor="custom",
        category=CUSTOM_CATEGORY,
        memory_marketed_bytes=memory_bytes,
        memory_total_bytes=memory_bytes,
        memory_usable_bytes=max(0, memory_bytes - CUDA_CONTEXT_BYTES),
        hbm_bytes_per_s=0.0,
        bf16_flop_per_s=None,
        fp8_flop_per_s=None,
        fp4_flop_per_s=None,
        power_w=None,
        unified_memory=False,
        interconnect=None,
        interconnect_bytes_per_s=None,
        price_per_hour_usd=None,
        aliases=(),
        source="memory size given by the user",
        notes="Only memory is known: taken as the framework-visible total, minus the 0.5 GiB CUDA context "
              "allowance; bandwidth 0.0 and FLOP/s None mean unknown.",
        inferred=(),
    )


def get_gpu(name: str) -> GPU:
    """The GPU called ``name`` (canonical name, key or alias; case, spaces, dashes and punctuation are ignored).

    A bare memory size ("24GiB", "24 GB", "custom:24GB") gives :func:`custom_gpu`. Anything else unknown raises
    :class:`vramplan.errors.UnknownName` with close matches as suggestions.
    """
    if not isinstance(name, str) or not name.strip():
        raise errors.UnknownName("GPU", str(name) if name is not None else "", [])
    gpu = _find(_norm(name))
    if gpu is not None:
        return gpu
    m = _CUSTOM_RE.match(name)
    if m:
        size = parse_custom_memory(name)
        number = float(m.group(1))
        label = f"{number:g} {_UNIT_LABELS[m.group(2).lower()]}"
        if not size:
            raise errors.InvalidRequest(f"GPU memory must be a positive size, got {name.strip()!r}", field="gpu")
        return custom_gpu(size, label)
    if name.strip().lower().startswith("custom"):
        raise errors.InvalidRequest(
            f"custom GPU {name.strip()!r} needs a memory size with a unit, e.g. custom:24GiB or custom:80GB", field="gpu")
    labels = _suggestion_labels()
    found = errors.suggest(_norm(name), list(labels), n=3)
    suggestions = list(dict.fromkeys(labels[s] for s in found))
    raise errors.UnknownName("GPU", name.strip(), suggestions)


def list_gpus(category: str | None = None) -> tuple[GPU, ...]:
    """The catalog, or the GPUs of one category (datacenter, workstation, consumer, apple, accelerator)."""
    gpus = load_gpus()
    if category is None:
        return gpus
    if category not in CATEGORIES:
        raise errors.UnknownName("GPU category", str(category), errors.suggest(str(category), CATEGORIES))
    return tuple(g for g in gpus if g.category == category)
