"""benchmarks/checkpoint_accuracy.py: every recorded checkpoint tensor table is reproduced (parameters exactly, stored
bytes to the byte except the rows whose notes name an fp32 side tensor the config does not reveal)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import checkpoint_accuracy  # noqa: E402


def test_every_table_row_is_reproduced():
    import json

    data = json.loads((ROOT / "benchmarks" / "checkpoint_tables.json").read_text())
    assert len(data["rows"]) >= 16
    for row in data["rows"]:
        r = checkpoint_accuracy.evaluate(row)
        assert (r["params"], r["mtp"]) == (row["logical_params"], row["mtp_params"]), row["id"]
        if "fp32" in row.get("note", ""):
            assert abs(r["bytes_error_pct"]) < 0.001, row["id"]  # the known fp32 norms / A_log, a few KB to 2 MB
        else:
            assert r["bytes"] == row["stored_bytes"], row["id"]
        # the recorded byte sum agrees with the report's own rounded GiB figure
        assert abs(row["stored_bytes"] / 2**30 - row["stored_gib_printed"]) < 0.006, row["id"]
