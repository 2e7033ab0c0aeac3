"""CLI start-up and in-process estimate rate (issue: speed of the core and the CLI).

Prints the wall time of `vramplan inference llama-3.1-70b --json` next to a bare `python -c pass` of the same
interpreter (median of N runs each, interleaved), their ratio, and how many estimates per second the core makes in
process (plan_inference_memory on a cached spec, varying context and batch). Run: python benchmarks/cli_speed.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


# An installed package has its bytecode compiled (pip does it at install time); a sandbox that sets
# PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every run and time the compiler.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        out.append(time.perf_counter() - t)
    return out


def main(n: int = 15) -> None:
    bare_cmd = [sys.executable, "-c", "pass"]
    script = os.path.join(os.path.dirname(sys.executable), "vramplan")  # the installed console script
    if not os.path.exists(script):
        raise SystemExit(f"no console script at {script}: pip install . into this interpreter's environment")
    cli_cmd = [sys.executable, script, "inference", "llama-3.1-70b", "--json"]
    _time(cli_cmd, 2)  # warm the page cache and .pyc files
    bare, cli = [], []
    for _ in range(n):  # interleave so both see the same machine load
        bare += _time(bare_cmd, 1)
        cli += _time(cli_cmd, 1)
    b, c = statistics.median(bare), statistics.median(cli)
    print(f"bare interpreter start   : {b * 1000:7.1f} ms (median of {n})")
    print(f"vramplan inference --json: {c * 1000:7.1f} ms (median of {n})")
    print(f"ratio                    : {c / b:7.2f}x  (target <= 3x)")

    from vramplan.api import load_model
    from vramplan.catalog.formats import get_format
    from vramplan.core.memory import plan_inference_memory
    from vramplan.core.precision import weight_bytes

    spec = load_model("llama-3.1-70b").spec
    fmt = get_format("bf16")
    wb = weight_bytes(spec, fmt)
    count = 0
    t = time.perf_counter()
    deadline = t + 2.0
    while time.perf_counter() < deadline:
        for ctx in (1024, 4096, 8192, 32768, 131072):
            for batch in (1, 4, 16, 64):
                plan_inference_memory(spec, wb, ctx, batch, "bf16", 1, 1)
                count += 1
    rate = count / (time.perf_counter() - t)
    print(f"core estimates per second: {rate:9,.0f}  (plan_inference_memory, target >= 50,000)")

    from vramplan.api import plan_inference

    count = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 1.0:
        plan_inference(spec, max_model_len=4096 + count % 1000, batch_size=1 + count % 8)
        count += 1
    print(f"API plan_inference per s : {count / (time.perf_counter() - t):9,.0f}  (full dict with explanations)")


if __name__ == "__main__":
    main()
