"""vramplan formats [MODEL]: weight formats with their bits per weight (and bytes for a model)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", default=None, help="show exact weight bytes for this model too")


def run(args) -> dict:
    from ..catalog.formats import format_names, get_format

    rows = []
    lm = None
    if args.model:
        from ..api import load_model

        lm = load_model(args.model)
    seen = set()
    for name in format_names():
        fmt = get_format(name)
        if fmt.name in seen:  # a second spelling of a listed format (GGUF's BF16/F16/F32 are bf16/fp16/fp32)
            continue
        seen.add(fmt.name)
        row = {"name": name, "label": fmt.label, "source": fmt.source}
        if lm is not None:
            from ..api import model_weight_bytes

            wb = model_weight_bytes(lm.spec, fmt)
            row.update(bytes=wb.total_bytes, bits_per_weight=round(wb.bits_per_weight, 4))
        rows.append(row)
    from ..api import model_summary

    return {"model": model_summary(lm) if lm else None, "formats": rows}


def render(r: dict, args) -> str:
    from ..render import size, table

    rows = []
    for f in r["formats"]:
        row = [f["name"], f["label"][:70]]
        if "bytes" in f:
            row += [f"{f['bits_per_weight']:.3f}", size(f["bytes"]), size(f["bytes"], "GB")]
        rows.append(row)
    header = ["format", "what"] + (["bits/weight", "GiB", "GB"] if r["model"] else [])
    return table(rows, header, align="llrrr")
