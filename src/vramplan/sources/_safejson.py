"""JSON from untrusted files, with caps that stop bombs before the parser sees them.

Checked before ``json.loads``: the byte size, strict UTF-8, the nesting depth and the number of values (so a small
file cannot expand into a deep or huge structure). ``json.loads`` itself is then called with a hook that refuses
duplicate keys (a second "dtype" must not silently win). Every failure is a :class:`SourceError` naming the file.

``Infinity``/``NaN`` are refused unless ``constants=True``: model configs may carry them (transformers writes configs
with Python's ``json``, which emits ``Infinity``; NVIDIA's Nemotron-H configs have ``"time_step_limit": [0.0,
Infinity]``), and the typed getters refuse a non-finite value wherever a count is expected.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from ..errors import SourceError

CONFIG_MAX_BYTES = 10 << 20  # 10 MiB: config.json, quantize_config.json, index files are far smaller
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_VALUES = 8_000_000

# A JSON string literal (after a successful UTF-8 decode); its content cannot open or close a structure.
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_STRUCTURE_RE = re.compile(r"[^\[\]{},]+")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard number {name}")


def check_structure(text: str, *, name: str, max_depth: int, max_values: int) -> None:
    """Refuse text nested deeper than ``max_depth`` or holding more than ``max_values`` values (cheap, linear)."""
    skeleton = _NOT_STRUCTURE_RE.sub("", _STRING_RE.sub("", text))
    # values are separated by commas; each bracket opens or closes one container
    commas = skeleton.count(",")
    if commas + 1 > max_values:
        raise SourceError(f"JSON holds more than {max_values:,} values; refusing to parse it", name)
    steps = (_BRACKET_STEP.get(c, 0) for c in skeleton)
    deepest = max(accumulate(steps, initial=0))
    if deepest > max_depth:
        raise SourceError(f"JSON is nested deeper than {max_depth} levels; refusing to parse it", name)


def loads_guarded(data: bytes, *, name: str, max_bytes: int = CONFIG_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH,
                  max_values: int = DEFAULT_MAX_VALUES, what: str = "JSON", constants: bool = False) -> object:
    """Parse untrusted JSON bytes under caps; raise :class:`SourceError` (naming ``name``) on anything wrong."""
    if len(data) > max_bytes:
        raise SourceError(f"{what} is {len(data):,} bytes, more than the {max_bytes:,}-byte limit", name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{what} is not valid UTF-8 (byte {exc.start})", name) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    check_structure(text, name=name, max_depth=max_depth, max_values=max_values)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=float if constants else _reject_constant)
    except RecursionError:
        raise SourceError(f"{what} is nested too deeply", name) from None
    except ValueError as exc:
        raise SourceError(f"{what} is not valid JSON ({exc})", name) from None


def load_json_object(data: bytes, *, name: str, max_bytes: int = CONFIG_MAX_BYTES,
                     what: str = "JSON", constants: bool = False) -> dict:
    """Like :func:`loads_guarded`, and the top level must be an object."""
    value = loads_guarded(data, name=name, max_bytes=max_bytes, what=what, constants=constants)
    if not isinstance(value, dict):
        raise SourceError(f"{what} must be a JSON object at the top level, got {_json_kind(value)}", name)
    return value


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
