"""vramplan gpus [--category C]: the GPU catalog with memory (marketed, total, usable), bandwidth, TFLOPs, power, price."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", default=None, help="show one GPU in full (name, key or alias)")
    p.add_argument("--category", default=None,
                   choices=["datacenter", "workstation", "consumer", "apple", "accelerator"])


def _row(g) -> dict:
    return {"key": g.key, "name": g.name, "vendor": g.vendor, "category": g.category,
            "memory_type": g.memory_type or None,
            "memory_marketed_bytes": g.memory_marketed_bytes, "memory_total_bytes": g.memory_total_bytes,
            "memory_usable_bytes": g.memory_usable_bytes, "hbm_bytes_per_s": g.hbm_bytes_per_s,
            "bf16_flop_per_s": g.bf16_flop_per_s, "fp8_flop_per_s": g.fp8_flop_per_s,
            "fp4_flop_per_s": g.fp4_flop_per_s, "fp16_flop_per_s": g.fp16_flop_per_s, "power_w": g.power_w, "unified_memory": g.unified_memory,
            "interconnect": g.interconnect, "interconnect_bytes_per_s": g.interconnect_bytes_per_s,
            "price_per_hour_usd": g.price_per_hour_usd, "aliases": list(g.aliases), "inferred": list(g.inferred),
            "source": g.source, "notes": g.notes}


def run(args) -> dict:
    from ..catalog.gpus import get_gpu, list_gpus

    if args.name:
        g = get_gpu(args.name)
        return {"gpus": [_row(g)], "category": g.category}
    return {"gpus": [_row(g) for g in list_gpus(args.category)], "category": args.category}


def _num(x, div: float, fmt: str = ",.0f") -> str:
    return "-" if x is None else f"{x / div:{fmt}}"


def render(r: dict, args) -> str:
    from ..render import table, title

    if getattr(args, "name", None):
        g = r["gpus"][0]
        lines = [title(g["name"])]
        for k, v in g.items():
            if v in (None, [], ""):
                continue
            if k.endswith("_bytes") and isinstance(v, int):  # sizes labelled, both units
                v = f"{v / 2**30:,.2f} GiB ({v / 1e9:,.2f} GB; {v:,} bytes)"
            elif k.endswith("bytes_per_s"):
                v = f"{v / 1e9:,.0f} GB/s" if v else "unknown"
            elif k.endswith("flop_per_s"):
                v = f"{v / 1e12:,.1f} TFLOP/s (dense)"
            elif isinstance(v, list):
                v = ", ".join(str(x) for x in v)
            lines.append(f"{k}: {v}")
        return "\n".join(lines)
    rows = []
    for g in r["gpus"]:
        marketed = g["memory_marketed_bytes"]
        shown = marketed / 2**30 if marketed % 2**30 == 0 else marketed / 1e9  # the vendor's number either way
        rows.append([g["key"], g["name"], f"{shown:,.0f}", f"{g['memory_total_bytes'] / 2**30:,.2f}",
                     f"{g['memory_usable_bytes'] / 2**30:,.2f}", _num(g["hbm_bytes_per_s"], 1e9),
                     _num(g["bf16_flop_per_s"], 1e12, ",.1f") if g["bf16_flop_per_s"] or not g.get("fp16_flop_per_s")
                     else _num(g["fp16_flop_per_s"], 1e12, ",.1f") + " (fp16)",
                     _num(g["fp8_flop_per_s"], 1e12, ",.1f"),
                     _num(g["power_w"], 1), "-" if g["price_per_hour_usd"] is None else f"{g['price_per_hour_usd']:.2f}"])
    head = ["key", "name", "marketed GB", "total GiB", "usable GiB", "GB/s", "BF16 TF", "FP8 TF", "W", "$/h"]
    lines = [table(rows, head, align="llrrrrrrrr"),
             "",
             "marketed GB: the vendor's figure (the catalog reads most as the binary GiB the DRAM physically has: "
             "HBM/GDDR dies are power-of-two sized; see vramplan.core.hardware); total: what torch reports (measured or derived); "
             "usable: total less the 0.5 GiB CUDA context, or for Apple the default GPU working-set limit",
             "TFLOPs are dense tensor figures (sparse datasheet numbers halved; '(fp16)': no bf16, the fp16 rate); "
             "GB/s = 10^9 bytes/s; "
             "'-' = not published or not in the catalog. Sources: vramplan gpus NAME --json"]
    return "\n".join(lines)
