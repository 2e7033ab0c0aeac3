"""vramplan describe MODEL: architecture facts and the parameter breakdown."""

from __future__ import annotations

from . import add_model_arguments


def add_arguments(p) -> None:
    add_model_arguments(p)


def run(args) -> dict:
    from ..api import describe_model, load_model

    return describe_model(load_model(args.model, revision=args.revision, source=args.source))


def render(r: dict, args) -> str:
    from ..render import table, title

    m, a = r["model"], r["architecture"]
    lines = [title(f"{m['name']}: architecture"), f"source: {r['provenance'] or r['source']}"]
    lines += [f"  {k}: {v}" for k, v in a.items() if v not in (None, {}, "")]
    rows = [[k, f"{v:,}", f"{r['active_params_breakdown'].get(k, 0):,}"] for k, v in r["params_breakdown"].items()]
    rows.append(["total", f"{m['params']:,}", f"{m['active_params']:,}"])
    lines += ["", table(rows, ["group", "params", "active per token"])]
    if r.get("mtp_params"):
        lines.append(f"  + {r['mtp_params']:,} multi-token-prediction params stored in the checkpoint (not loaded "
                     f"for plain decoding)")
    for msg in r.get("messages", []):
        lines.append(f"  note: {msg}")
    return "\n".join(lines)
