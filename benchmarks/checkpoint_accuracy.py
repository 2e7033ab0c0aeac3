"""Parameter counts and stored bytes against checkpoints' own tensor tables.

For each row of ``benchmarks/checkpoint_tables.json`` (a public model report that prints a snapshot's config.json and
every tensor's shape and dtype), vramplan reads the same config.json and predicts the logical parameters (main model
and multi-token-prediction layers) and the bytes the checkpoint stores in its own format (weights, scales, side
tensors at their stored width, MTP layers included). The printed table is predicted vs recorded, per row.

Run: python benchmarks/checkpoint_accuracy.py [--json]   (no network: the configs are in benchmarks/checkpoint_configs)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vramplan.api import load_model, model_weight_bytes, resolve_format
from vramplan.core.model import count_params, mtp_tensors

HERE = Path(__file__).resolve().parent


def evaluate(row: dict) -> dict:
    lm = load_model(str(HERE / row["config"]))
    pc = count_params(lm.spec)
    fmt = resolve_format(lm)
    main = model_weight_bytes(lm.spec, fmt).total_bytes
    mtp_bytes = sum(fmt.tensor_bytes(t) for t in mtp_tensors(lm.spec))
    stored = main + mtp_bytes
    return {"id": row["id"], "format": fmt.name, "params": pc.total, "params_recorded": row["logical_params"],
            "mtp": pc.mtp, "mtp_recorded": row["mtp_params"], "bytes": stored, "bytes_recorded": row["stored_bytes"],
            "bytes_error_pct": 100.0 * (stored / row["stored_bytes"] - 1), "note": row.get("note", ""),
            "source": row["source"]}


def main() -> int:
    data = json.loads((HERE / "checkpoint_tables.json").read_text())
    results = [evaluate(r) for r in data["rows"]]
    if "--json" in sys.argv:
        print(json.dumps(results, indent=1))
        return 0
    header = ("checkpoint", "format", "params: predicted - recorded", "MTP", "bytes: predicted - recorded", "error %")
    rows = [(r["id"], r["format"], f"{r['params'] - r['params_recorded']:+,}", f"{r['mtp'] - r['mtp_recorded']:+,}",
             f"{r['bytes'] - r['bytes_recorded']:+,}", f"{r['bytes_error_pct']:+.5f}") for r in results]
    widths = [max(len(str(x[i])) for x in rows + [header]) for i in range(len(header))]
    print("Checkpoint tensor tables vs vramplan (differences; 0 = exact)\n")
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for r in rows:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    exact_p = sum(r["params"] == r["params_recorded"] and r["mtp"] == r["mtp_recorded"] for r in results)
    exact_b = sum(r["bytes"] == r["bytes_recorded"] for r in results)
    worst = max(results, key=lambda r: abs(r["bytes_error_pct"]))
    print(f"\nparameters (main + MTP) exact: {exact_p} of {len(results)}; stored bytes exact: {exact_b} of "
          f"{len(results)}; largest byte error {worst['bytes_error_pct']:+.5f}% ({worst['id']})")
    for r in results:
        if r["note"] and r["bytes"] != r["bytes_recorded"]:
            print(f"  {r['id']}: {r['note']}")
    print("\nsources: gogongxt/python scripts/models/<checkpoint>.md (the commit of each row in "
          "benchmarks/checkpoint_tables.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
