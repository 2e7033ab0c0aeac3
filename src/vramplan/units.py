"""Units: the only place sizes and token counts are converted.

Internal values are int bytes, float bytes/s, FLOP/s and seconds; names carry the unit (``memory_bytes``).
GiB = 2**30 bytes, GB = 10**9 bytes. Parameter counts are never divided by 1024.
"""

from __future__ import annotations

KiB_bytes = 1 << 10
MiB_bytes = 1 << 20
GiB_bytes = 1 << 30
"""One gibibyte in bytes (what PyTorch, vLLM and llama.cpp print as GiB/GB)."""
TiB_bytes = 1 << 40
KB_bytes = 10**3
MB_bytes = 10**6
GB_bytes = 10**9
"""One gigabyte in bytes (what vendors market)."""
TB_bytes = 10**12

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": KB_bytes, "mb": MB_bytes, "gb": GB_bytes, "tb": TB_bytes,
    "kib": KiB_bytes, "mib": MiB_bytes, "gib": GiB_bytes, "tib": TiB_bytes,
}
_SIZE_RE = r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$"
_TOKENS_RE = r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*$"


def _match(pattern: str, text: str):
    import re  # only when a size or a token count with a suffix is parsed (keeps start-up small)

    return re.match(pattern, text)

MAX_TOKENS = 1 << 30  # over a billion tokens of context is not a plan


def parse_size(text: str | int | float) -> int:
    """'80GiB' -> 85899345920, '24 GB' -> 24000000000, 1024 -> 1024 (bytes)."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, (int, float)):
        if text != text or text in (float("inf"), float("-inf")):  # NaN, infinity
            raise ValueError(f"not a size: {text!r}")
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text!r}")
        return int(text)
    m = _match(_SIZE_RE, str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 80GiB or 24GB)")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if value == float("inf"):  # '1e400GiB'
        raise ValueError(f"not a size: {text!r} (too large)")
    return int(value)


def parse_tokens(text: str | int) -> int:
    """'128k' -> 131072 (k = 1024 tokens), '128000' -> 128000, 4096 -> 4096."""
    if isinstance(text, bool):
        raise ValueError(f"not a token count: {text!r}")
    if isinstance(text, int):
        n = text
    elif str(text).strip().isdecimal():
        n = int(str(text))
    else:
        m = _match(_TOKENS_RE, str(text))
        if not m:
            raise ValueError(f"not a token count: {text!r} (use e.g. 4096, 128k)")
        mult = {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
        n = _whole_count(float(m.group(1)) * mult, text, MAX_TOKENS)
    return _checked_count(n, text, MAX_TOKENS)


def _whole_count(value, text, limit: int) -> int:
    """A scaled mantissa (float or Decimal) as a whole token count; the bound is checked first, before int(), since
    '1e400'-sized digit strings overflow a float to infinity."""
    if value > limit:
        raise ValueError(f"{text!r} tokens is absurd (more than {limit:,})")
    if value != int(value):
        raise ValueError(f"not a whole number of tokens: {text!r}")
    return int(value)


def _checked_count(n: int, text, limit: int) -> int:
    if n <= 0:
        raise ValueError(f"a token count must be positive, got {text!r}")
    if n > limit:
        raise ValueError(f"{text!r} tokens is absurd (more than {limit:,})")
    return n


MAX_TOKEN_BUDGET = 10 ** 15  # a quadrillion training tokens: far beyond any run
_BUDGET_RE = r"^\s*([0-9]*\.?[0-9]+(?:[eE][+]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*$"


def parse_token_budget(text: str | int) -> int:
    """A training token budget, decimal as people quote them: '15T' -> 15e12, '1000m' = '1b' = '1e9' -> 10^9,
    '300k' -> 300,000 (contexts use k = 1024: :func:`parse_tokens`)."""
    if isinstance(text, bool):
        raise ValueError(f"not a token count: {text!r}")
    if isinstance(text, int):
        n = text
    else:
        m = _match(_BUDGET_RE, str(text))
        if not m:
            raise ValueError(f"not a token count: {text!r} (use e.g. 1e9, 500m, 15T)")
        from decimal import Decimal, InvalidOperation

        mult = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "b": 10 ** 9, "g": 10 ** 9, "t": 10 ** 12}[m.group(2).lower()]
        try:
            value = Decimal(m.group(1)) * mult  # exact: '8.2b' is 8,200,000,000, not a float near it
        except InvalidOperation:
            raise ValueError(f"not a token count: {text!r}") from None
        n = _whole_count(value, text, MAX_TOKEN_BUDGET)
    return _checked_count(n, text, MAX_TOKEN_BUDGET)


def gib(n_bytes: float) -> float:
    return n_bytes / GiB_bytes


def gb(n_bytes: float) -> float:
    return n_bytes / GB_bytes


def format_bytes(n_bytes: float, unit: str = "GiB", digits: int = 2) -> str:
    """Always labelled: format_bytes(16060522496) -> '14.96 GiB'; unit='GB' -> '16.06 GB'."""
    unit_bytes = {"B": 1, "KiB": KiB_bytes, "MiB": MiB_bytes, "GiB": GiB_bytes, "TiB": TiB_bytes,
                  "KB": KB_bytes, "MB": MB_bytes, "GB": GB_bytes, "TB": TB_bytes}[unit]
    return f"{n_bytes / unit_bytes:,.{digits}f} {unit}"


def format_count(n: int) -> str:
    """8030261248 -> '8.03B'."""
    for div, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)
