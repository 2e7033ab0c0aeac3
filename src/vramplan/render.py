"""Text rendering helpers for the CLI: aligned tables, every size labelled GiB (or GB on request)."""

from __future__ import annotations

from .units import GB_bytes, GiB_bytes


def size(n_bytes: float | None, unit: str = "GiB", digits: int = 2) -> str:
    if n_bytes is None:
        return "-"
    div = GiB_bytes if unit == "GiB" else GB_bytes
    return f"{n_bytes / div:,.{digits}f} {unit}"


def both(n_bytes: float) -> str:
    """'14.96 GiB (16.06 GB)': the binary figure first, the decimal one beside it."""
    return f"{size(n_bytes)} ({size(n_bytes, 'GB')})"


def table(rows: list[list[str]], header: list[str] | None = None, align: str = "") -> str:
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    widths = [max(len(str(r[i])) for r in all_rows if i < len(r)) for i in range(max(len(r) for r in all_rows))]
    out = []
    for j, r in enumerate(all_rows):
        cells = []
        for i, c in enumerate(r):
            a = align[i] if i < len(align) else ("l" if i == 0 else "r")
            cells.append(str(c).ljust(widths[i]) if a == "l" else str(c).rjust(widths[i]))
        out.append("  ".join(cells).rstrip())
        if header and j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def title(text: str) -> str:
    return f"\n{text}\n{'=' * len(text)}"
