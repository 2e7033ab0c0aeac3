"""The prepared GPU measurement matrix: real peak memory of planned configurations, beside vramplan's prediction.

Each case runs ``vramplan measure ... --json`` in a fresh Python process (so one case's allocator peaks and cached
blocks cannot leak into the next) with a per-case timeout, inside a total time budget; cases are ordered so that
every kind (inference, full fine-tuning, LoRA with and without checkpointing) is covered early, and a case that
would start past the budget is recorded as skipped. Every result is appended to the output JSONL as soon as it
exists, so a run cut short still leaves its rows. ``benchmarks/accuracy.py`` reads ``benchmarks/measurements/``.

On a GPU machine (see measure_matrix.sh, which sets PYTHONPATH and the timeout):

    python3 benchmarks/measure_matrix.py                      # the default matrix, ~8 minutes budget
    python3 benchmarks/measure_matrix.py --list               # print the cases and exit
    python3 benchmarks/measure_matrix.py --only 8b            # cases whose id contains "8b"

The ``tiny`` matrix (a 2-layer Llama config, CPU allowed) exists to test this script without a GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS_DIR = ROOT / "benchmarks" / "measurements"
SCHEMA = 1

TINY_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
    "tie_word_embeddings": False, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
}


def _inference(model: str, context: int, batch: int, attention: str = "sdpa") -> dict:
    short = model.replace("llama-", "")
    return {"id": f"inf-{short}-ctx{context // 1024 if context >= 1024 else context}{'k' if context >= 1024 else ''}"
                  f"-b{batch}{'' if attention == 'sdpa' else '-' + attention}",
            "model": model, "mode": "inference",
            "args": ["--max-model-len", str(context), "--batch-size", str(batch), "--attention", attention]}


def _training(model: str, method: str, *, batch: int, seq: int, ckpt: bool = False, rank: int = 16,
              optimizer: str = "adamw", precision: str = "bf16", steps: int = 3, attention: str = "sdpa") -> dict:
    short = model.replace("llama-", "")
    tag = f"{method}{'-r' + str(rank) if method == 'lora' else ''}{'-ckpt' if ckpt else ''}-{optimizer}-{precision}"
    args = ["--mode", "train", "--method", method, "--optimizer", optimizer, "--precision", precision,
            "--batch-size", str(batch), "--seq-len", str(seq), "--steps", str(steps), "--attention", attention]
    if method == "lora":
        args += ["--lora-rank", str(rank), "--lora-targets", "all-linear"]
    if ckpt:
        args.append("--gradient-checkpointing")
    tag += "" if attention == "sdpa" else "-" + attention
    return {"id": f"train-{short}-{tag}-b{batch}-s{seq}", "model": model, "mode": "train", "args": args}


def default_matrix() -> list[dict]:
    """Llama-3.2-1B / 3.2-3B / 3.1-8B architectures: inference at 1k/4k/16k x batch 1/4 (SDPA), full AdamW bf16
    on 1B and 3B, LoRA r16 (all linear layers) with and without gradient checkpointing on 3B and 8B."""
    models = ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")
    inference = [_inference(m, c, b) for m in models for c in (1024, 4096, 16384) for b in (1, 4)]
    training = [_training(m, "full", batch=4, seq=1024) for m in models[:2]]
    training += [_training(m, "lora", batch=4, seq=1024, ckpt=ck) for m in models[1:] for ck in (False, True)]
    first = ["inf-3.2-1b-ctx1k-b1", "train-3.2-3b-lora-r16-adamw-bf16-b4-s1024",
             "inf-3.1-8b-ctx4k-b1", "train-3.2-1b-full-adamw-bf16-b4-s1024",
             "train-3.1-8b-lora-r16-ckpt-adamw-bf16-b4-s1024", "inf-3.1-8b-ctx16k-b4"]
    cases = inference + training
    by_id = {c["id"]: c for c in cases}
    assert len(by_id) == len(cases), "case ids must be unique"
    return [by_id[i] for i in first] + [c for c in cases if c["id"] not in first] + extended_matrix()


def extended_matrix() -> list[dict]:
    """Run after the default cases while the budget lasts (a card with room for them, e.g. 141 GB H200): the
    training variants the default matrix lacks (full with checkpointing, mixed precision, SGD, Adafactor, eager
    attention, 8B full fine-tuning, a longer sequence) and other architectures (Qwen3 with tied embeddings and a
    151k vocabulary, Gemma 3 with sliding-window layers and a 262k vocabulary, the Qwen3-30B-A3B MoE)."""
    return [
        _training("llama-3.2-1b", "full", batch=4, seq=1024, ckpt=True),
        _training("llama-3.2-1b", "full", batch=4, seq=1024, precision="bf16-mixed"),
        _inference("qwen3-0.6b", 4096, 4),
        _training("qwen3-0.6b", "full", batch=4, seq=1024),
        _inference("gemma-3-1b-it", 16384, 1),
        _inference("gemma-3-1b-it", 4096, 4),  # a second prompt length separates the s^2 mask terms from per-token
        _training("gemma-3-1b-it", "full", batch=2, seq=2048),
        _training("llama-3.1-8b", "full", batch=2, seq=1024, ckpt=True),
        _training("llama-3.2-1b", "full", batch=4, seq=1024, optimizer="sgd"),
        _training("llama-3.2-1b", "full", batch=4, seq=1024, optimizer="adafactor"),
        _inference("llama-3.2-3b", 4096, 1, attention="eager"),
        _training("llama-3.2-1b", "full", batch=2, seq=1024, attention="eager"),
        _training("llama-3.1-8b", "lora", batch=1, seq=8192, ckpt=True),
        _inference("qwen3-8b", 8192, 2),
        _training("qwen3-8b", "lora", batch=4, seq=1024),
        _inference("qwen3-30b-a3b", 4096, 1),
        _inference("olmo-2-13b", 4096, 2),  # float32 weights and cache under transformers' dtype auto
    ]


def tiny_matrix(config_path: str) -> list[dict]:
    """Three small cases on a 2-layer Llama config: one of each kind, seconds on a CPU."""
    cases = [_inference(config_path, 64, 2), _training(config_path, "full", batch=2, seq=32, steps=2),
             _training(config_path, "lora", batch=2, seq=32, ckpt=True, rank=4, steps=2)]
    for c, name in zip(cases, ("inf-tiny-ctx64-b2", "train-tiny-full-adamw-bf16", "train-tiny-lora-r4-ckpt")):
        c["id"] = name
    return cases


# ----- environment ------------------------------------------------------------------------------------------

def gpu_facts() -> dict:
    """GPU name, driver and memory from nvidia-smi, without creating a CUDA context in this process."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {}
    try:
        res = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    line = res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else ""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 3:
        return {}
    return {"gpu_name": parts[0], "driver": parts[1], "memory_total": parts[2]}


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s.replace("nvidia-", "") or "unknown"


def output_path(out_dir: Path, gpu_name: str, today: str) -> Path:
    base = out_dir / f"{slug(gpu_name)}-{today}.jsonl"
    if not base.exists():
        return base
    stamp = _dt.datetime.now().strftime("%H%M%S")
    return out_dir / f"{slug(gpu_name)}-{today}-{stamp}.jsonl"


def measured_cases(directory: Path, gpu_name: str) -> set[str]:
    """Case ids with an ok row measured on ``gpu_name`` in the committed measurements."""
    done: set[str] = set()
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("status") == "ok" and row.get("gpu") == gpu_name:
                done.add(str(row.get("case")))
    return done


# ----- running one case -------------------------------------------------------------------------------------

def case_command(case: dict, python: str, allow_cpu: bool) -> list[str]:
    cmd = [python, "-m", "vramplan.cli", "measure", case["model"], *case["args"], "--json"]
    if allow_cpu:
        cmd.append("--allow-cpu")
    return cmd


def run_case(case: dict, *, python: str, timeout_s: float, allow_cpu: bool) -> dict:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded: the model is built from its config
    t0 = time.perf_counter()
    try:
        res = subprocess.run(case_command(case, python, allow_cpu), capture_output=True, text=True, env=env,
                             timeout=max(1.0, timeout_s), check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"status": "timeout", "error": f"case exceeded {timeout_s:.0f} s", "stderr_tail": tail[-2000:],
                "wall_s": round(time.perf_counter() - t0, 2)}
    wall = round(time.perf_counter() - t0, 2)
    try:
        result = json.loads(res.stdout)
    except json.JSONDecodeError:
        result = None
    if res.returncode != 0 or not isinstance(result, dict) or result.get("error"):
        err = (result or {}).get("error") if isinstance(result, dict) else None
        return {"status": "error", "returncode": res.returncode, "error": err or _last_line(res.stderr),
                "stderr_tail": res.stderr[-2000:], "wall_s": wall}
    result.pop("_exit", None)
    return {"status": "ok", "wall_s": wall, **result}


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run_matrix(cases: list[dict], *, out_path: Path, budget_s: float, case_timeout_s: float, python: str,
               allow_cpu: bool, meta: dict, log=print) -> list[dict]:
    """Run the cases in order within the budget; append one JSON line per case to ``out_path``."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    with out_path.open("a", encoding="utf-8") as fh:
        for i, case in enumerate(cases, 1):
            left = budget_s - (time.perf_counter() - start)
            row = {"schema": SCHEMA, "case": case["id"], "case_model": case["model"], "case_mode": case["mode"],
                   "case_args": case["args"], **meta}
            if left < min(30.0, case_timeout_s):
                row.update(status="skipped", error=f"time budget of {budget_s:.0f} s used up")
            else:
                row.update(run_case(case, python=python, timeout_s=min(case_timeout_s, left), allow_cpu=allow_cpu))
            fh.write(json.dumps(row, default=str) + "\n")
            fh.flush()
            rows.append(row)
            log(f"[{i}/{len(cases)}] {case['id']}: {summary_line(row)}")
    return rows


def summary_line(row: dict) -> str:
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('error')}"
    parts = []
    for key in ("total", "peak_reserved", "weights", "kv_cache", "optimizer"):
        c = (row.get("comparison") or {}).get(key)
        if c and c.get("error_pct") is not None:
            value = c["measured"]
            shown = f"{value / 2**30:.2f} GiB" if value >= 2**24 else f"{value:,} B"
            parts.append(f"{key} {shown} ({c['error_pct']:+.1f}%)")
    if not parts:
        m = row.get("measured") or {}
        parts = [f"{k} {m[k]:,} B" for k in ("weights", "kv_cache", "gradients", "optimizer") if m.get(k)]
    return f"ok in {row.get('wall_s')} s; " + "; ".join(parts)


# ----- command line -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--matrix", choices=["default", "extended", "tiny"], default="default",
                   help="default: every case; extended: only the cases after the original 24")
    p.add_argument("--output-dir", default=str(MEASUREMENTS_DIR), help="where <gpu>-<date>.jsonl is written")
    p.add_argument("--output", default=None, help="exact output file (overrides --output-dir)")
    p.add_argument("--budget-s", type=float, default=480.0, help="total time budget in seconds (default 480)")
    p.add_argument("--case-timeout-s", type=float, default=150.0, help="per-case limit in seconds (default 150)")
    p.add_argument("--only", default=None, help="run only cases whose id contains this text")
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    p.add_argument("--skip-measured", action="store_true",
                   help="leave out cases that already have an ok row for this GPU in benchmarks/measurements/")
    p.add_argument("--python", default=sys.executable, help="interpreter for the cases")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU (tests of this script)")
    args = p.parse_args(argv)

    tiny_dir = None
    if args.matrix == "tiny":
        tiny_dir = Path(tempfile.mkdtemp(prefix="vramplan-tiny-"))
        cfg = tiny_dir / "config.json"
        cfg.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
        cases = tiny_matrix(str(cfg))
    elif args.matrix == "extended":
        cases = extended_matrix()
    else:
        cases = default_matrix()
    if args.only:
        cases = [c for c in cases if args.only in c["id"]]
    if args.list:
        for c in cases:
            print(f"{c['id']:<50} {c['model']} {' '.join(c['args'])}")
        return 0
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2
    facts = gpu_facts()
    gpu_name = facts.get("gpu_name") or ("cpu" if args.allow_cpu else "unknown-gpu")
    if args.skip_measured:
        done = measured_cases(MEASUREMENTS_DIR, gpu_name)
        cases = [c for c in cases if c["id"] not in done]
        print(f"{len(done)} cases already measured on {gpu_name}; {len(cases)} to run")
        if not cases:
            return 0
    today = _dt.date.today().isoformat()
    out = Path(args.output) if args.output else output_path(Path(args.output_dir), gpu_name, today)
    meta = {"date": today, "gpu": gpu_name, "nvidia_smi": facts or None, "matrix": args.matrix}
    print(f"{len(cases)} cases on {gpu_name}, budget {args.budget_s:.0f} s, writing {out}")
    t0 = time.perf_counter()
    rows = run_matrix(cases, out_path=out, budget_s=args.budget_s, case_timeout_s=args.case_timeout_s,
                      python=args.python, allow_cpu=args.allow_cpu, meta=meta)
    ok = sum(r.get("status") == "ok" for r in rows)
    print(f"{ok}/{len(rows)} cases measured in {time.perf_counter() - t0:.0f} s -> {out}")
    if tiny_dir is not None:
        shutil.rmtree(tiny_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
