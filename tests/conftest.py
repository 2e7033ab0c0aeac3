import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def shared_rows(name: str = "public.jsonl"):
    path = SHARED / "groundtruth" / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def shared_dir():
    if not SHARED.exists():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in process: returns (exit code, stdout, stderr)."""
    from vramplan.cli import main

    def _run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture
def run_json(run_cli):
    def _run(*argv):
        code, out, err = run_cli(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    return _run
