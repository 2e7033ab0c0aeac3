"""The start-up path stays small (issue: the CLI within 3x of a bare interpreter start; timed in
benchmarks/cli_speed.py, not here). This test only guards which modules `vramplan inference MODEL --json` imports:
dataclasses, typing, argparse, tomllib, pathlib and the fit/speed/training/engine modules each cost a sizeable share
of a bare start, and none is needed to answer a plain inference question."""

import subprocess
import sys

HEAVY = ("dataclasses", "typing", "argparse", "tomllib", "pathlib", "inspect", "vramplan.core.fit",
         "vramplan.core.throughput", "vramplan.core.training", "vramplan.engines.vllm", "vramplan._plan_common",
         "vramplan.catalog.gpus")

SCRIPT = """
import io, contextlib, sys
before = set(sys.modules)
from vramplan.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(['inference', 'llama-3.1-70b', '--json']) == 0
print(' '.join(sorted(set(sys.modules) - before)))
"""


def test_inference_json_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    loaded = set(out)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
