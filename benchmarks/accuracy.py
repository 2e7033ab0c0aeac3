"""Accuracy benchmark: vramplan's predictions against every measured figure it can express.

Sources:
  ../shared/groundtruth/public.jsonl   param_count, config_arch (KV bytes/token), weights_footprint rows, scored here;
                                       training_peak, vllm_startup and llamacpp_log rows through the scorers in
                                       benchmarks/training_accuracy.py and benchmarks/engine_accuracy.py when those
                                       modules exist (each guarded: a missing or failing scorer is reported, not fatal)
  benchmarks/measurements/*.jsonl      the project's own GPU measurements (benchmarks/measure_matrix.py), one
                                       category per mode and component (gpu_inference_total, gpu_train_optimizer, ...)

Every row has ``predicted``, ``measured`` (same unit), ``error_pct`` = (predicted - measured) / measured x 100 and
``abs_error_pct``; each category is summarised by its median and maximum absolute error. Rows that cannot be
expressed (model not in the catalog, reference missing) are listed as skipped with the reason.

    python3 benchmarks/accuracy.py                      # writes benchmarks/out/accuracy.md and accuracy.json
    python3 benchmarks/accuracy.py --write-committed    # also benchmarks/ACCURACY.md (committed)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
DEFAULT_GROUNDTRUTH = ROOT.parent / "shared" / "groundtruth" / "public.jsonl"
MEASUREMENTS_DIR = BENCH_DIR / "measurements"
OUT_DIR = BENCH_DIR / "out"
COMMITTED = BENCH_DIR / "ACCURACY.md"

if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

# LLaMA-1 architectures for the QLoRA paper's Guanaco sizes (not in the catalog). Dimensions, heads and layers:
# Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models", Table 2; the MLP width follows the
# paper's SwiGLU rule 2/3 x 4d rounded up to a multiple of 256 (11008, 13824, 17920, 22016); vocabulary 32000.
LLAMA1 = {
    "7b": (4096, 32, 32), "13b": (5120, 40, 40), "33b": (6656, 52, 60), "65b": (8192, 64, 80),
}
GUANACO_BASE = {"timdettmers/guanaco-7b": "7b", "timdettmers/guanaco-13b": "13b",
                "timdettmers/guanaco-33b": "33b", "timdettmers/guanaco-65b": "65b"}


def llama1_config(size: str) -> dict:
    hidden, heads, layers = LLAMA1[size]
    width = -(-(2 * 4 * hidden // 3) // 256) * 256
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
            "num_attention_heads": heads, "num_key_value_heads": heads, "num_hidden_layers": layers,
            "intermediate_size": width, "vocab_size": 32000, "tie_word_embeddings": False,
            "max_position_embeddings": 2048, "torch_dtype": "float16"}


# ----- rows -------------------------------------------------------------------------------------------------

def error_pct(predicted: float, measured: float) -> float | None:
    if predicted is None or measured in (None, 0):
        return None
    return (predicted - measured) / measured * 100.0


def make_row(category: str, row_id: str, predicted, measured, *, unit: str, model: str = "", reference: str = "",
             note: str = "", source: str = "") -> dict:
    err = error_pct(predicted, measured)
    return {"category": category, "id": row_id, "model": model, "predicted": predicted, "measured": measured,
            "unit": unit, "error_pct": None if err is None else round(err, 4),
            "abs_error_pct": None if err is None else round(abs(err), 4), "reference": reference, "note": note,
            "source": source}


def skip(category: str, row_id: str, reason: str) -> dict:
    return {"category": category, "id": row_id, "reason": reason}


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def _source_text(src) -> str:
    if not isinstance(src, dict):
        return str(src or "")
    for key in ("url",):
        if src.get(key):
            return src[key]
    parts = [src.get("repo"), src.get("path")]
    return ":".join(p for p in parts if p)


def _load_catalog_model(hf_id: str | None):
    from vramplan.api import load_model
    from vramplan.catalog.models import find_model

    entry = find_model(hf_id or "")
    if entry is None:
        return None
    return load_model(entry.key)


# ----- categories scored here -------------------------------------------------------------------------------

def score_param_count(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """count_params against published counts (or the config-derived count where none is published)."""
    from vramplan.core.model import count_params

    scored, skipped = [], []
    for r in rows:
        if r.get("category") != "param_count":
            continue
        m = r.get("measured") or {}
        ref = m.get("published_param_count")
        kind = "published"
        if ref is None:
            ref, kind = m.get("derived_param_count_from_config"), "derived from config"
        if ref is None:
            skipped.append(skip("param_count", r["id"], "no reference count"))
            continue
        lm = _load_catalog_model(r.get("hf_id"))
        if lm is None:
            skipped.append(skip("param_count", r["id"], f"{r.get('hf_id')} is not in the catalog"))
            continue
        pc = count_params(lm.spec)
        predicted, note = pc.total, ""
        if r["id"].endswith("-text"):  # a text-only count: leave the vision tower and projector out
            groups = dict(pc.groups)
            vision = sum(v for k, v in groups.items() if "vision" in k or "multi_modal" in k)
            predicted, note = pc.total - vision, f"text-only: {vision:,} vision/projector params left out"
        if m.get("match") is True:
            kind += ", matches the config-derived count"
        scored.append(make_row("param_count", r["id"], predicted, ref, unit="parameters", model=lm.name,
                               reference=kind, note=note, source=_source_text(r.get("source"))))
    return scored, skipped


def score_config_arch(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """KV-cache bytes per token (16-bit, all layers) from the catalog's parsed config against the row's figure, and
    the architecture fields the row lists against the parsed spec."""
    from vramplan.core.memory import kv_bytes_per_token

    fields = {"hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
              "num_key_value_heads": "num_kv_heads", "intermediate_size": "intermediate_size",
              "vocab_size": "vocab_size", "head_dim": "head_dim"}
    scored, skipped = [], []
    for r in rows:
        if r.get("category") != "config_arch":
            continue
        m = r.get("measured") or {}
        ref = m.get("kv_bytes_per_token_bf16_all_layers") or m.get("mla_kv_bytes_per_token_bf16_all_layers")
        if ref is None:
            skipped.append(skip("config_arch", r["id"], "no KV bytes/token figure"))
            continue
        lm = _load_catalog_model(r.get("hf_id"))
        if lm is None:
            skipped.append(skip("config_arch", r["id"], f"{r.get('hf_id')} is not in the catalog"))
            continue
        spec = lm.spec
        cfg = r.get("config") or {}
        mismatches = []
        for key, attr in fields.items():
            want = cfg.get(key)
            if isinstance(want, int) and not isinstance(want, bool) and getattr(spec, attr, None) != want:
                mismatches.append(f"{key} {getattr(spec, attr, None)} vs {want}")
        note = ("fields differ: " + "; ".join(mismatches)) if mismatches else "listed fields match"
        scored.append(make_row("config_arch", r["id"], kv_bytes_per_token(spec, "bf16"), ref,
                               unit="KV bytes/token (16-bit, all layers)", model=lm.name, note=note,
                               source=_source_text(r.get("source"))))
    return scored, skipped


def score_weights_footprint(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Quantized weight bytes against published model sizes (QLoRA Guanaco: NF4 base; GB as printed)."""
    from vramplan.api import model_weight_bytes
    from vramplan.catalog.formats import get_format
    from vramplan.sources.hf_config import parse_config

    scored, skipped = [], []
    for r in rows:
        if r.get("category") != "weights_footprint":
            continue
        m = r.get("measured") or {}
        size = GUANACO_BASE.get(str(r.get("hf_id")))
        if size is None or m.get("model_size_GB") is None:
            skipped.append(skip("weights_footprint", r["id"], "no expressible base model or size"))
            continue
        spec = parse_config(llama1_config(size), f"llama-1-{size}")
        wb = model_weight_bytes(spec, get_format("bnb-nf4"))
        scored.append(make_row("weights_footprint", r["id"], round(wb.total_bytes / 1e9, 3), m["model_size_GB"],
                               unit="GB", model=f"LLaMA-1 {size.upper()} (NF4 base)",
                               reference=f"as printed ({r.get('confidence')} confidence, whole GB)",
                               note="base weights in bnb-nf4 with double quant; the LoRA adapter is not counted",
                               source=_source_text(r.get("source"))))
    return scored, skipped


def score_sglang_kv(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """SGLang's logged KV pool (K + V GiB over its token count) as bytes per token per GPU, against the config's
    KV bytes/token at the row's tensor-parallel size. An -FP8 checkpoint is looked up by its base architecture."""
    from vramplan.core.memory import kv_bytes_per_token

    scored, skipped = [], []
    for r in rows:
        if r.get("category") != "sglang_startup":
            continue
        m, cfg = r.get("measured") or {}, r.get("config") or {}
        tokens, k_gib, v_gib = m.get("kv_tokens"), m.get("K_size_GB"), m.get("V_size_GB")
        hf_id = str(r.get("hf_id") or "")
        lm = _load_catalog_model(hf_id) or _load_catalog_model(hf_id.removesuffix("-FP8"))
        if not (tokens and k_gib and v_gib) or lm is None:
            skipped.append(skip("sglang_startup", r["id"], "pool size, token count or model not expressible"))
            continue
        tp = int(cfg.get("tp") or 1)
        kv_dtype = "fp8" if str(cfg.get("kv_cache_dtype", "auto")).startswith("fp8") else "bf16"
        measured = round((k_gib + v_gib) * 2**30 / tokens, 1)
        scored.append(make_row("sglang_startup", r["id"], kv_bytes_per_token(lm.spec, kv_dtype, tp), measured,
                               unit="KV bytes/token per GPU", model=f"{lm.name} (TP{tp})",
                               reference="(K + V GiB as logged, 2 decimals) / tokens",
                               note="the log's sizes are rounded to 0.01 GiB", source=_source_text(r.get("source"))))
    return scored, skipped


NOT_GROUND_TRUTH = {"published_estimate": "other tools' estimates: compared elsewhere, not ground truth"}


def unscored_rows(rows: list[dict], scored_categories: set[str], handled: set[str]) -> list[dict]:
    """Rows of categories nothing scored, listed as skipped so the unexpressed part of the ground truth shows."""
    out = []
    for r in rows:
        cat = r.get("category")
        if cat in scored_categories or cat in handled:
            continue
        out.append(skip(cat, r.get("id", "?"), NOT_GROUND_TRUTH.get(cat, "no scorer for this category yet")))
    return out


# ----- the project's own GPU measurements -------------------------------------------------------------------

def current_comparison(row: dict) -> tuple[dict, str]:
    """Predict the stored measurement's configuration again with the vramplan of this checkout; fall back to the
    comparison recorded at measurement time when that fails (e.g. the model is no longer resolvable)."""
    from vramplan import measure

    model = row.get("case_model") or (row.get("model") or {}).get("name")
    try:
        return measure.rescore(model, row.get("request") or {}, row.get("measured") or {}), "predicted now"
    except Exception as exc:  # noqa: BLE001 - a stale row must not stop the table
        return row.get("comparison") or {}, f"prediction as recorded ({exc.__class__.__name__})"


def score_measurements(directory: Path) -> tuple[list[dict], list[dict]]:
    scored, skipped = [], []
    if not directory.is_dir():
        return scored, skipped
    for path in sorted(directory.glob("*.jsonl")):
        for row in read_jsonl(path):
            rid = f"{path.stem}:{row.get('case')}"
            if row.get("status") != "ok":
                skipped.append(skip("gpu_measurements", rid, f"{row.get('status')}: {row.get('error')}"))
                continue
            if not row.get("measured_on_gpu"):
                skipped.append(skip("gpu_measurements", rid, "measured on the CPU (no device figures)"))
                continue
            mode = "train" if row.get("mode") == "train" else "inference"
            comparison, how = current_comparison(row)
            v = row.get("versions") or {}
            where = (f"{v.get('gpu_name') or row.get('gpu')}, driver {v.get('driver')}, torch {v.get('torch')}, "
                     f"transformers {v.get('transformers')}" + (f", peft {v['peft']}" if v.get("peft") else ""))
            for comp, c in comparison.items():
                unit = "parameters" if c.get("basis") == "count" else "bytes"
                scored.append(make_row(f"gpu_{mode}_{comp}", rid, c.get("predicted"), c.get("measured"), unit=unit,
                                       model=(row.get("model") or {}).get("name", row.get("case_model", "")),
                                       reference=f"{c.get('basis')}, {how} ({where})",
                                       note=" ".join(row.get("case_args") or []), source=str(path.relative_to(ROOT))
                                       if path.is_relative_to(ROOT) else str(path)))
    return scored, skipped


# ----- scorers written elsewhere ----------------------------------------------------------------------------

EXTERNAL = (("training_accuracy", "score_training_rows", "training_peak"),
            ("engine_accuracy", "score_vllm_rows", "vllm_startup"),
            ("engine_accuracy", "score_llamacpp_rows", "llamacpp_log"))


def normalise_external(category: str, result) -> tuple[list[dict], list[dict]]:
    """Accept a scorer's list of row dicts (or {"rows": [...], "skipped": [...]}) and turn each into our row shape.
    A row needs an id and either error_pct or numeric predicted and measured; its ``component`` (or ``statistic``)
    splits the category ("vllm_startup:kv_cache") so that exact and modelled quantities are summarised apart."""
    if isinstance(result, dict):
        rows, extra_skipped = result.get("rows") or [], result.get("skipped") or []
    else:
        rows, extra_skipped = list(result or []), []
    scored, skipped = [], []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            skipped.append(skip(category, f"#{i}", "scorer returned a non-dict row"))
            continue
        rid = str(r.get("id", f"#{i}"))
        if r.get("skipped") or r.get("reason") and r.get("predicted") is None:
            skipped.append(skip(category, rid, str(r.get("reason") or "skipped by its scorer")))
            continue
        pred, meas = r.get("predicted"), r.get("measured")
        err = r.get("error_pct")
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (pred, meas))
        if err is None and not numeric:
            skipped.append(skip(category, rid, "no numeric predicted/measured or error_pct"))
            continue
        sub = r.get("component") or r.get("statistic")
        cat = str(r.get("category") or category) + (f":{sub}" if sub else "")
        row = make_row(cat, rid, pred if numeric else None,
                       meas if numeric else None, unit=str(r.get("unit", "")), model=str(r.get("model", "")),
                       reference=str(r.get("quantity") or r.get("reference") or ""), note=str(r.get("note", "")),
                       source=_source_text(r.get("source")))
        if row["error_pct"] is None and isinstance(err, (int, float)):
            row["error_pct"], row["abs_error_pct"] = round(float(err), 4), round(abs(float(err)), 4)
        if row["error_pct"] is None:
            skipped.append(skip(category, rid, "error could not be computed"))
            continue
        scored.append(row)
    for s in extra_skipped:
        if isinstance(s, dict):
            skipped.append(skip(category, str(s.get("id", "?")), str(s.get("reason", "skipped by its scorer"))))
    return scored, skipped


def score_external(notes: list[str], used: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    scored, skipped = [], []
    used = [] if used is None else used
    for module_name, func_name, category in EXTERNAL:
        try:
            module = importlib.import_module(module_name)
            func = getattr(module, func_name)
        except (ImportError, AttributeError) as exc:
            notes.append(f"{category}: not scored ({module_name}.{func_name} unavailable: {exc})")
            continue
        try:
            result = func()
        except Exception as exc:  # noqa: BLE001 - one broken scorer must not hide the others
            notes.append(f"{category}: {module_name}.{func_name} failed: {exc.__class__.__name__}: {exc}")
            continue
        s, k = normalise_external(category, result)
        if f"benchmarks/{module_name}.py" not in used:
            used.append(f"benchmarks/{module_name}.py")
        scored += s
        skipped += k
    return scored, skipped


# ----- summary and output -----------------------------------------------------------------------------------

def summarise(rows: list[dict], skipped: list[dict] = ()) -> list[dict]:
    """Per category: rows, exact rows, median and max absolute error, median signed error, skipped rows."""
    cats: dict[str, list[dict]] = {}
    for r in rows:
        cats.setdefault(r["category"], []).append(r)
    skipped_by: dict[str, int] = {}
    for s in skipped:
        skipped_by[s["category"]] = skipped_by.get(s["category"], 0) + 1
    out = []
    for cat in sorted(set(cats) | set(skipped_by)):
        errs = [r["error_pct"] for r in cats.get(cat, []) if r.get("error_pct") is not None]
        absn = [abs(e) for e in errs]
        out.append({"category": cat, "n": len(errs), "exact": sum(1 for e in errs if e == 0),
                    "median_abs_error_pct": round(statistics.median(absn), 3) if absn else None,
                    "max_abs_error_pct": round(max(absn), 3) if absn else None,
                    "median_error_pct": round(statistics.median(errs), 3) if errs else None,
                    "skipped": skipped_by.get(cat, 0)})
    return out


def _fmt(x, digits: int = 2) -> str:
    if x is None:
        return "-"
    if x != 0 and abs(x) < 10 ** -digits:  # small but not zero: show it rather than 0.00
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def summary_table(summary: list[dict]) -> str:
    header = ["category", "rows", "exact", "median |err| %", "max |err| %", "median err %", "skipped"]
    body = [[s["category"], str(s["n"]), str(s["exact"]), _fmt(s["median_abs_error_pct"]),
             _fmt(s["max_abs_error_pct"]), _fmt(s["median_error_pct"]), str(s["skipped"])] for s in summary]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))),
             "  ".join("-" * w for w in widths)]
    for r in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _md_value(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "bytes":
        return f"{v / 2**30:.3f} GiB"
    if isinstance(v, float):
        return f"{v:,.3f}"
    return f"{v:,}"


def markdown(report: dict) -> str:
    s = report["summary"]
    lines = ["# vramplan accuracy: predicted vs measured", "",
             f"Generated {report['generated']} by `python3 benchmarks/accuracy.py` from "
             + ", ".join(f"`{x}`" for x in report["inputs"]) + ".", "",
             "error = (predicted - measured) / measured; positive means vramplan over-predicts. "
             "GiB = 2^30 bytes, GB = 10^9 bytes.", "",
             "| category | rows | exact | median abs error % | max abs error % | median error % | skipped |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for x in s:
        lines.append(f"| {x['category']} | {x['n']} | {x['exact']} | {_fmt(x['median_abs_error_pct'])} | "
                     f"{_fmt(x['max_abs_error_pct'])} | {_fmt(x['median_error_pct'])} | {x['skipped']} |")
    if report.get("notes"):
        lines += [""] + [f"- {n}" for n in report["notes"]]
    lines += ["", "To rerun: `python3 benchmarks/accuracy.py --write-committed` (add GPU rows first with "
              "`bash benchmarks/measure_matrix.sh` on a GPU machine; they land in `benchmarks/measurements/`)."]
    cats: dict[str, list[dict]] = {}
    for r in report["rows"]:
        cats.setdefault(r["category"], []).append(r)
    for cat, rows in sorted(cats.items()):
        lines += ["", f"## {cat}", "", "| id | model | predicted | measured | error % | reference | note |",
                  "|---|---|---:|---:|---:|---|---|"]
        for r in rows:
            lines.append(f"| {r['id']} | {r['model']} | {_md_value(r['predicted'], r['unit'])} | "
                         f"{_md_value(r['measured'], r['unit'])} | {_fmt(r['error_pct'], 3)} | {r['reference']} | "
                         f"{r['note'].replace('|', '/')} |")
    if report["skipped"]:
        lines += ["", "## skipped", "", "| category | id | reason |", "|---|---|---|"]
        for k in report["skipped"]:
            lines.append(f"| {k['category']} | {k['id']} | {k['reason'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def build_report(groundtruth: Path | None = DEFAULT_GROUNDTRUTH, measurements: Path | None = MEASUREMENTS_DIR,
                 external: bool = True) -> dict:
    rows: list[dict] = []
    skipped: list[dict] = []
    notes: list[str] = []
    inputs = []
    if groundtruth is not None and groundtruth.is_file():
        gt = read_jsonl(groundtruth)
        inputs.append(_rel(groundtruth))
        for scorer in (score_param_count, score_config_arch, score_weights_footprint, score_sglang_kv):
            s, k = scorer(gt)
            rows += s
            skipped += k
    elif groundtruth is not None:
        gt = []
        notes.append(f"ground truth not found at {groundtruth}")
    else:
        gt = []
    if external:
        s, k = score_external(notes, inputs)
        rows += s
        skipped += k
    handled = {"param_count", "config_arch", "weights_footprint", "sglang_startup"}
    done = {r["category"].split(":")[0] for r in rows} | {k["category"].split(":")[0] for k in skipped}
    skipped += unscored_rows(gt, done, handled)
    if measurements is not None:
        s, k = score_measurements(measurements)
        inputs.append(_rel(measurements) + "/*.jsonl")
        rows += s
        skipped += k
        if not s:
            notes.append("no GPU measurements yet: run `bash benchmarks/measure_matrix.sh` on a GPU machine")
    return {"generated": _dt.date.today().isoformat(), "inputs": inputs, "summary": summarise(rows, skipped),
            "rows": rows, "skipped": skipped, "notes": notes}


def _rel(p: Path) -> str:
    real = p.resolve()
    if real.is_relative_to(ROOT):
        return str(real.relative_to(ROOT))
    if real.is_relative_to(ROOT.parent):
        return "../" + str(real.relative_to(ROOT.parent))
    return str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="vramplan predicted-vs-measured accuracy tables")
    ap.add_argument("--groundtruth", default=str(DEFAULT_GROUNDTRUTH), help="public.jsonl to score")
    ap.add_argument("--measurements", default=str(MEASUREMENTS_DIR), help="folder of measure_matrix JSONL files")
    ap.add_argument("--out-dir", default=str(OUT_DIR), help="where accuracy.md and accuracy.json go")
    ap.add_argument("--write-committed", action="store_true", help="also write benchmarks/ACCURACY.md (committed)")
    ap.add_argument("--no-external", action="store_true", help="skip the training and engine scorers")
    args = ap.parse_args(argv)
    report = build_report(Path(args.groundtruth), Path(args.measurements), external=not args.no_external)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = markdown(report)
    (out / "accuracy.md").write_text(md, encoding="utf-8")
    if args.write_committed:
        COMMITTED.write_text(md, encoding="utf-8")
    print(summary_table(report["summary"]))
    for n in report["notes"]:
        print(f"note: {n}")
    print(f"wrote {out / 'accuracy.md'} and {out / 'accuracy.json'}"
          + (f" and {_rel(COMMITTED)}" if args.write_committed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
