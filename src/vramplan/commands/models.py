"""vramplan models [SEARCH]: the embedded offline model catalog."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("search", nargs="?", default=None, help="only entries whose name, alias or HF id contains this")
    p.add_argument("--params", action="store_true", help="also count parameters (parses every config)")


def run(args) -> dict:
    from ..catalog.models import list_models

    rows = []
    needle = (args.search or "").lower()
    for e in list_models():
        names = [e.key, e.hf_id, *e.aliases]
        if needle and not any(needle in n.lower() for n in names):
            continue
        row = {"key": e.key, "hf_id": e.hf_id, "aliases": list(e.aliases), "family": e.family,
               "provenance": e.provenance, "source": e.source}
        if args.params:
            from ..api import load_model
            from ..core.model import count_params
            from ..errors import VramplanError

            try:
                pc = count_params(load_model(e.key).spec)
                row.update(params=pc.total, active_params=pc.active)
            except VramplanError as exc:
                row["error"] = str(exc)
        rows.append(row)
    return {"models": rows, "count": len(rows)}


def render(r: dict, args) -> str:
    from ..render import table
    from ..units import format_count

    rows = []
    for m in r["models"]:
        row = [m["key"], m["hf_id"], m["provenance"]]
        if "params" in m:
            row.append(format_count(m["params"]) + ("" if m["params"] == m["active_params"]
                                                      else f" ({format_count(m['active_params'])} active)"))
        elif "error" in m:
            row.append("unsupported: " + m["error"][:40])
        rows.append(row)
    header = ["name", "Hugging Face id", "config"] + (["params"] if getattr(args, "params", False) else [])
    return table(rows, header) + f"\n\n{r['count']} models. Use the name or the HF id: vramplan MODEL"
