"""Charts outside the browser: the page's charts as SVG, HTML (both written by hand) or PNG (matplotlib, optional).

    write_inference_plot(result, path, sweep=None)   memory breakdown bar (+ memory against context when a sweep
                                                      is given), with the GPU's capacity as a line
    write_training_plot(result, path)                 the training memory breakdown bar
    context_sweep(plan, contexts)                     points for the memory-against-context chart

``result`` is the dict the commands print with --json (bytes). Nothing here computes memory: ``context_sweep`` only
calls the planning function it is given once per context length. Every size shown is labelled GiB (2^30 bytes) or
GB (10^9 bytes).
"""

from __future__ import annotations

import html
import math
import os
from typing import Callable, Iterable

from .errors import InvalidRequest, SourceError
from .units import GB_bytes, GiB_bytes

COMPONENT_COLORS = {
    "weights": "#4c78a8",
    "kv_cache": "#f58518",
    "activations": "#54a24b",
    "runtime": "#9d755d",
    "gradients": "#e45756",
    "optimizer": "#72b7b2",
    "cuda_graphs": "#b279a2",
    "logits": "#eeca3b",
}
_PALETTE = ("#ff9da6", "#bab0ac", "#8cd17d", "#86bcb6", "#d4a6c8", "#fabfd2", "#79706e", "#d37295")
CAPACITY_COLOR = "#c0392b"
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_UNITS = {"GiB": GiB_bytes, "GB": GB_bytes}


# ----- data helpers ---------------------------------------------------------------------------------------------

def default_contexts(chosen: int, max_position: int | None = None) -> list[int]:
    """Powers of two from 1k tokens up to the model's maximum context (128k when unknown), plus the chosen one."""
    top = max(int(chosen or 0), int(max_position or 0) or 131072)
    top = min(top, 1 << 21)
    points = {1 << k for k in range(10, 22) if (1 << k) <= top}
    if chosen:
        points.add(int(chosen))
    if max_position and max_position <= top:
        points.add(int(max_position))
    return sorted(points)


def context_sweep(plan: Callable[[int], dict], contexts: Iterable[int]) -> list[dict]:
    """[{"max_model_len", "memory", "capacity"}] from ``plan(context)`` (a call of the planning API) per context."""
    out = []
    for ctx in contexts:
        r = plan(int(ctx))
        out.append({"max_model_len": int(ctx), "memory": dict(r["memory"]), "capacity": r.get("capacity")})
    return out


def components(memory: dict) -> list[tuple[str, int]]:
    """The named parts of a memory dict (everything but 'total'), in the result's own order."""
    return [(k, int(v)) for k, v in memory.items() if k != "total" and isinstance(v, (int, float))]


def color_of(name: str, index: int) -> str:
    return COMPONENT_COLORS.get(name, _PALETTE[index % len(_PALETTE)])


def capacities(result: dict) -> list[tuple[str, int]]:
    """[(label, bytes)] of the GPU memory the result was fitted into, if any."""
    cap = result.get("capacity") or {}
    gpu_bytes = cap.get("gpu_memory_bytes")
    if not gpu_bytes:
        return []
    name = (result.get("request") or {}).get("gpu") or (result.get("gpu") or {}).get("name") or "GPU"
    return [(str(name), int(gpu_bytes))]


def fmt_size(n_bytes: float, unit: str = "GiB", digits: int = 2) -> str:
    return f"{n_bytes / _UNITS[unit]:,.{digits}f} {unit}"


def fmt_tokens(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}k"
    return f"{n:,}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values 0..>=top (steps of 1, 2 or 5 x 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _tick_label(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _title(result: dict, what: str) -> str:
    model = (result.get("model") or {}).get("name", "model")
    return f"{model}: {what}"


def _subtitle(result: dict) -> str:
    req = result.get("request") or {}
    parts = []
    if req.get("max_model_len"):
        parts.append(f"context {req['max_model_len']:,} tokens")
    if req.get("batch_size"):
        parts.append(f"batch {req['batch_size']}")
    wf = result.get("weights_format") or {}
    if wf.get("label") or wf.get("name"):
        parts.append(f"weights {wf.get('label') or wf.get('name')}")
    if req.get("kv_cache_dtype"):
        parts.append(f"KV {req['kv_cache_dtype']}")
    tp, pp = req.get("tensor_parallel_size", 1), req.get("pipeline_parallel_size", 1)
    if tp != 1 or pp != 1:
        parts.append(f"TP={tp} PP={pp}")
    eng = result.get("engine") or {}
    if eng.get("name"):
        parts.append(f"{eng['name']} {eng.get('version', '')}".strip())
    return ", ".join(parts)


# ----- SVG ------------------------------------------------------------------------------------------------------

def breakdown_svg(memory: dict, unit: str = "GiB", caps: list[tuple[str, int]] = (), title: str = "",
                  subtitle: str = "", width: int = 760) -> str:
    """A horizontal stacked bar of the memory parts, a scale in ``unit``, capacity lines, and a legend."""
    parts = components(memory)
    total = int(memory.get("total", sum(v for _, v in parts)))
    div = _UNITS[unit]
    top = max([total] + [b for _, b in caps] + [1]) / div * 1.06
    ticks = nice_ticks(top)
    scale_top = ticks[-1]
    x0, x1 = 20, width - 20
    bar_y, bar_h = 92, 40

    def x(v_bytes: float) -> float:
        return x0 + (x1 - x0) * (v_bytes / div) / scale_top

    rows = math.ceil(len(parts) / 2)
    height = bar_y + bar_h + 42 + rows * 24 + 16
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" font-family="{_FONT}" role="img" aria-label="{_e(title or "memory breakdown")}">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    out.append(f'<text x="{x0}" y="24" font-size="16" font-weight="600" fill="#1d2433">{_e(title)}</text>')
    out.append(f'<text x="{x0}" y="44" font-size="12" fill="#5b6475">{_e(subtitle)}</text>')
    out.append(f'<text x="{x0}" y="70" font-size="14" fill="#1d2433">total per GPU <tspan font-weight="700">'
               f'{_e(fmt_size(total, unit))}</tspan> <tspan fill="#5b6475">'
               f'({_e(fmt_size(total, "GB" if unit == "GiB" else "GiB"))})</tspan></text>')
    cursor = 0
    for i, (name, v) in enumerate(parts):
        if v <= 0:
            continue
        out.append(f'<rect x="{x(cursor):.2f}" y="{bar_y}" width="{max(x(cursor + v) - x(cursor), 0.5):.2f}" '
                   f'height="{bar_h}" fill="{color_of(name, i)}"><title>{_e(name)}: {_e(fmt_size(v, unit))} '
                   f'({v:,} bytes)</title></rect>')
        cursor += v
    axis_y = bar_y + bar_h + 4
    for t in ticks:
        tx = x0 + (x1 - x0) * t / scale_top
        out.append(f'<line x1="{tx:.2f}" y1="{axis_y}" x2="{tx:.2f}" y2="{axis_y + 5}" stroke="#8a93a6"/>')
        anchor = "end" if t == ticks[-1] else ("start" if t == 0 else "middle")
        out.append(f'<text x="{tx:.2f}" y="{axis_y + 18}" font-size="11" fill="#5b6475" text-anchor="{anchor}">'
                   f'{_tick_label(t)}{" " + unit if t == ticks[-1] else ""}</text>')
    for label, b in caps:
        cx = x(b)
        out.append(f'<line x1="{cx:.2f}" y1="{bar_y - 10}" x2="{cx:.2f}" y2="{bar_y + bar_h + 6}" '
                   f'stroke="{CAPACITY_COLOR}" stroke-width="2" stroke-dasharray="5 3"/>')
        out.append(f'<text x="{cx - 4:.2f}" y="{bar_y - 14}" font-size="11" fill="{CAPACITY_COLOR}" '
                   f'text-anchor="end">{_e(label)}: {_e(fmt_size(b, unit))}</text>')
    ly = axis_y + 40
    col_w = (x1 - x0) / 2
    for i, (name, v) in enumerate(parts):
        lx = x0 + (i % 2) * col_w
        yy = ly + (i // 2) * 24
        pct = 100.0 * v / total if total else 0.0
        out.append(f'<rect x="{lx:.1f}" y="{yy - 11}" width="12" height="12" rx="2" fill="{color_of(name, i)}"/>')
        out.append(f'<text x="{lx + 18:.1f}" y="{yy}" font-size="13" fill="#1d2433">{_e(name)}'
                   f'<tspan x="{lx + col_w - 16:.1f}" text-anchor="end" font-weight="600">'
                   f'{_e(fmt_size(v, unit))}</tspan><tspan fill="#5b6475" font-size="11"> {pct:.1f}%</tspan>'
                   f'</text>')
    out.append("</svg>")
    return "\n".join(out)


def context_svg(points: list[dict], unit: str = "GiB", caps: list[tuple[str, int]] = (), chosen: int | None = None,
                title: str = "", width: int = 760, height: int = 380) -> str:
    """Memory per GPU against context length (log2 axis): stacked areas per part, capacity as dashed lines."""
    if not points:
        raise InvalidRequest("a memory-against-context chart needs at least one point", field="sweep")
    div = _UNITS[unit]
    names = [n for n, _ in components(points[0]["memory"])]
    left, right, top_m, bottom = 64, 24, 48, 56
    pw, ph = width - left - right, height - top_m - bottom
    ctxs = [p["max_model_len"] for p in points]
    lo, hi = math.log2(min(ctxs)), math.log2(max(ctxs))
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    ymax = max([p["memory"]["total"] for p in points] + [b for _, b in caps] + [1]) / div * 1.08
    yticks = nice_ticks(ymax)
    ytop = yticks[-1]

    def px(c: float) -> float:
        return left + pw * (math.log2(c) - lo) / (hi - lo)

    def py(v_bytes: float) -> float:
        return top_m + ph * (1 - (v_bytes / div) / ytop)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" font-family="{_FONT}" role="img" aria-label="{_e(title or "memory vs context")}">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="24" font-size="16" font-weight="600" fill="#1d2433">{_e(title)}</text>']
    for t in yticks:
        yy = top_m + ph * (1 - t / ytop)
        out.append(f'<line x1="{left}" y1="{yy:.2f}" x2="{left + pw}" y2="{yy:.2f}" stroke="#e6e9ef"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.2f}" font-size="11" fill="#5b6475" text-anchor="end">'
                   f'{_tick_label(t)}</text>')
    base = [0] * len(points)
    for i, name in enumerate(names):
        upper = [b + int(p["memory"].get(name, 0)) for b, p in zip(base, points)]
        fwd = " ".join(f"{px(c):.2f},{py(u):.2f}" for c, u in zip(ctxs, upper))
        back = " ".join(f"{px(c):.2f},{py(b):.2f}" for c, b in reversed(list(zip(ctxs, base))))
        out.append(f'<polygon points="{fwd} {back}" fill="{color_of(name, i)}" fill-opacity="0.85">'
                   f'<title>{_e(name)}</title></polygon>')
        base = upper
    line = " ".join(f"{px(c):.2f},{py(p['memory']['total']):.2f}" for c, p in zip(ctxs, points))
    out.append(f'<polyline points="{line}" fill="none" stroke="#1d2433" stroke-width="1.5"/>')
    for c, p in zip(ctxs, points):
        out.append(f'<circle cx="{px(c):.2f}" cy="{py(p["memory"]["total"]):.2f}" r="2.5" fill="#1d2433">'
                   f'<title>{fmt_tokens(c)} tokens: {_e(fmt_size(p["memory"]["total"], unit))}</title></circle>')
    for label, b in caps:
        yy = py(b)
        out.append(f'<line x1="{left}" y1="{yy:.2f}" x2="{left + pw}" y2="{yy:.2f}" stroke="{CAPACITY_COLOR}" '
                   f'stroke-width="2" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{left + 6}" y="{yy - 6:.2f}" font-size="11" fill="{CAPACITY_COLOR}">{_e(label)}: '
                   f'{_e(fmt_size(b, unit))}</text>')
    if chosen and min(ctxs) <= chosen <= max(ctxs):
        cx = px(chosen)
        out.append(f'<line x1="{cx:.2f}" y1="{top_m}" x2="{cx:.2f}" y2="{top_m + ph}" stroke="#1d2433" '
                   f'stroke-dasharray="2 3"/>')
        out.append(f'<text x="{cx + 4:.2f}" y="{top_m + 12}" font-size="11" fill="#1d2433">{fmt_tokens(chosen)}'
                   f'</text>')
    shown = sorted(set(ctxs))
    step = max(1, math.ceil(len(shown) / 9))
    for c in shown[::step]:
        out.append(f'<text x="{px(c):.2f}" y="{top_m + ph + 18}" font-size="11" fill="#5b6475" '
                   f'text-anchor="middle">{fmt_tokens(c)}</text>')
    out.append(f'<line x1="{left}" y1="{top_m + ph}" x2="{left + pw}" y2="{top_m + ph}" stroke="#8a93a6"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 14}" font-size="12" fill="#1d2433" '
               f'text-anchor="middle">context length (tokens, log scale)</text>')
    out.append(f'<text transform="translate(16 {top_m + ph / 2:.1f}) rotate(-90)" font-size="12" fill="#1d2433" '
               f'text-anchor="middle">memory per GPU ({unit})</text>')
    lx = left + pw
    for i, name in reversed(list(enumerate(names))):
        out.append(f'<text x="{lx:.1f}" y="38" font-size="11" fill="#1d2433" text-anchor="end">{_e(name)}</text>')
        lx -= 7 * len(name) + 10
        out.append(f'<rect x="{lx + 4:.1f}" y="29" width="10" height="10" fill="{color_of(name, i)}"/>')
        lx -= 8
    out.append("</svg>")
    return "\n".join(out)


# ----- documents ------------------------------------------------------------------------------------------------

def _html_document(title: str, svgs: list[str], memory: dict, notes: list[str]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(fmt_size(v, 'GiB'))}</td><td>{_e(fmt_size(v, 'GB'))}</td>"
                   f"<td>{v:,}</td></tr>" for k, v in components(memory))
    total = int(memory.get("total", 0))
    rows += (f"<tr class='t'><td>total</td><td>{_e(fmt_size(total, 'GiB'))}</td><td>{_e(fmt_size(total, 'GB'))}"
             f"</td><td>{total:,}</td></tr>")
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    figures = "".join(f"<figure>{s}</figure>" for s in svgs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
body{{font-family:{_FONT};color:#1d2433;max-width:820px;margin:24px auto;padding:0 12px;}}
figure{{margin:0 0 20px 0;}} svg{{max-width:100%;height:auto;border:1px solid #e6e9ef;border-radius:8px;}}
table{{border-collapse:collapse;font-variant-numeric:tabular-nums;}}
td,th{{padding:4px 12px;border-bottom:1px solid #e6e9ef;text-align:right;}} td:first-child,th:first-child{{text-align:left;}}
tr.t td{{font-weight:700;}} li{{margin:4px 0;color:#3b4252;}} small{{color:#5b6475;}}
</style></head><body>
<h1 style="font-size:20px">{_e(title)}</h1>
{figures}
<table><thead><tr><th>component (per GPU)</th><th>GiB</th><th>GB</th><th>bytes</th></tr></thead><tbody>{rows}</tbody></table>
<ul>{items}</ul>
<p><small>1 GiB = 2<sup>30</sup> bytes, 1 GB = 10<sup>9</sup> bytes. Written by vramplan.</small></p>
</body></html>
"""


def _svg_stack(svgs: list[str], width: int = 760, gap: int = 12) -> str:
    """Several <svg> documents one under another, as one SVG file."""
    heights = []
    for s in svgs:
        head = s.split(">", 1)[0]
        heights.append(int(head.split(' height="', 1)[1].split('"', 1)[0]))
    total_h = sum(heights) + gap * (len(svgs) - 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_h}" width="{width}" '
           f'height="{total_h}">', f'<rect width="{width}" height="{total_h}" fill="#ffffff"/>']
    y = 0
    for s, h in zip(svgs, heights):
        inner = s.replace('<svg xmlns="http://www.w3.org/2000/svg" ', f'<svg x="0" y="{y}" ', 1)
        out.append(inner)
        y += h + gap
    out.append("</svg>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(out) + "\n"


def _kind(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    kinds = {".svg": "svg", ".html": "html", ".htm": "html", ".png": "png"}
    if ext in kinds:
        return kinds[ext]
    raise InvalidRequest(f"cannot tell the chart format from {os.path.basename(str(path))!r}: name the file "
                         ".png, .svg or .html", field="plot")


def _write(path: str, data: str | bytes) -> str:
    try:
        if isinstance(data, str):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(data)
        else:
            with open(path, "wb") as fh:
                fh.write(data)
    except OSError as exc:
        raise SourceError(f"cannot write the chart ({exc.strerror or exc})", str(path)) from None
    return str(path)


def _png(path: str, title: str, memory: dict, unit: str, caps: list[tuple[str, int]],
         points: list[dict] | None, chosen: int | None) -> str:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidRequest("PNG charts need matplotlib (pip install matplotlib); or write .svg or .html, "
                             "which need nothing", field="plot") from None
    div = _UNITS[unit]
    parts = components(memory)
    n = 2 if points else 1
    fig = Figure(figsize=(8, 2.6 + 3.8 * (n - 1)), dpi=120)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n, 1, height_ratios=[1.0] + [2.4] * (n - 1))
    ax = fig.add_subplot(grid[0])
    left = 0.0
    for i, (name, v) in enumerate(parts):
        ax.barh([0], [v / div], left=[left], height=0.6, color=color_of(name, i),
                label=f"{name} {fmt_size(v, unit)}")
        left += v / div
    for label, b in caps:
        ax.axvline(b / div, color=CAPACITY_COLOR, linestyle="--", linewidth=1.5,
                   label=f"{label}: {fmt_size(b, unit)}")
    ax.set_ylim(-0.5, 0.5)
    ax.set_yticks([])
    ax.set_xlim(0, max([memory.get("total", left * div)] + [b for _, b in caps]) / div * 1.05)
    ax.set_xlabel(f"memory per GPU ({unit})", fontsize=9)
    ax.set_title(f"{title}: total {fmt_size(memory.get('total', left * div), unit)}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=3, fontsize=8, frameon=False)
    if points:
        ax2 = fig.add_subplot(grid[1])
        ctxs = [p["max_model_len"] for p in points]
        names = [k for k, _ in components(points[0]["memory"])]
        ys = [[p["memory"].get(k, 0) / div for p in points] for k in names]
        ax2.stackplot(ctxs, ys, labels=names, colors=[color_of(k, i) for i, k in enumerate(names)], alpha=0.85)
        ax2.set_xscale("log", base=2)
        ax2.set_xticks(ctxs)
        ax2.set_xticklabels([fmt_tokens(c) for c in ctxs], fontsize=7)
        for label, b in caps:
            ax2.axhline(b / div, color=CAPACITY_COLOR, linestyle="--", linewidth=1.5, label=f"{label} capacity")
        if chosen:
            ax2.axvline(chosen, color="#1d2433", linestyle=":", linewidth=1)
        ax2.set_xlabel("context length (tokens, log scale)", fontsize=9)
        ax2.set_title("memory per GPU against context length", fontsize=10)
        ax2.set_ylabel(f"memory per GPU ({unit})")
        ax2.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise SourceError(f"cannot write the chart ({exc.strerror or exc})", str(path)) from None
    return str(path)


def write_inference_plot(result: dict, path: str, sweep: list[dict] | None = None, unit: str = "GiB") -> str:
    """Write the inference charts to ``path`` (.svg, .html or .png, by extension); returns the path.

    ``sweep`` (from :func:`context_sweep`) adds the memory-against-context chart; without it only the breakdown is
    drawn, since a chart never computes a plan itself.
    """
    kind = _kind(path)
    unit = "GB" if str(unit).upper() == "GB" else "GiB"
    title = _title(result, "inference memory per GPU")
    caps = capacities(result)
    memory = result["memory"]
    chosen = (result.get("request") or {}).get("max_model_len")
    if kind == "png":
        return _png(path, title, memory, unit, caps, sweep, chosen)
    svgs = [breakdown_svg(memory, unit, caps, title, _subtitle(result))]
    if sweep:
        svgs.append(context_svg(sweep, unit, caps, chosen, "memory per GPU against context length"))
    if kind == "svg":
        return _write(path, _svg_stack(svgs))
    return _write(path, _html_document(title, svgs, memory, list(result.get("explain", []))))


def write_training_plot(result: dict, path: str, unit: str = "GiB") -> str:
    """Write the training memory breakdown to ``path`` (.svg, .html or .png); returns the path."""
    kind = _kind(path)
    unit = "GB" if str(unit).upper() == "GB" else "GiB"
    title = _title(result, "training memory per GPU")
    caps = capacities(result)
    memory = result["memory"]
    req = result.get("request") or {}
    sub = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in req.items()
                    if k in ("method", "optimizer", "precision", "batch_size", "seq_len", "gpus", "zero")
                    and v not in (None, ""))
    if result.get("trainable_params") is not None:
        sub = (sub + ", " if sub else "") + f"{int(result['trainable_params']):,} trainable params"
    if kind == "png":
        return _png(path, title, memory, unit, caps, None, None)
    svg = breakdown_svg(memory, unit, caps, title, sub)
    if kind == "svg":
        return _write(path, _svg_stack([svg]))
    return _write(path, _html_document(title, [svg], memory, list(result.get("explain", []))))
