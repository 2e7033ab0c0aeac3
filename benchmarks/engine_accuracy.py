"""Engine accuracy: vramplan's vLLM and llama.cpp models against measured start-up logs.

    python benchmarks/engine_accuracy.py                 # vLLM rows, leave-one-model-out, llama.cpp rows
    python benchmarks/engine_accuracy.py --untuned       # also the vLLM/llama.cpp models before any fitted constant
    python benchmarks/engine_accuracy.py --llmd-csv F    # also score llm-d-planner's results_raw.csv runs (held out)

Sources (read relative to the repository root): ``../shared/groundtruth/public.jsonl`` (every ``vllm_startup`` row:
weights, torch activation peak, non-torch memory, KV cache GiB and KV tokens per GPU) and
``../shared/groundtruth/llamacpp.jsonl`` (model, KV and compute buffers per device). ``--llmd-csv`` takes the
``accuracy/results/v0.19.0/results_raw.csv`` file of github.com/llm-d-incubation/llm-d-planner (commit 3c876c8),
whose runs other than those copied into public.jsonl were never used to fit anything: a held-out set.

``score_vllm_rows()`` and ``score_llamacpp_rows()`` return lists of dicts (id, component, predicted, measured,
error_pct, error_abs, unit) for benchmarks/accuracy.py to aggregate. Rows that cannot be expressed (model not in the
catalog, configuration not stated, an engine release older than the modelled rules) are returned by
``unexpressed_vllm_rows()`` / ``unexpressed_llamacpp_rows()`` with the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vramplan.api import load_model, model_weight_bytes, resolve_format  # noqa: E402
from vramplan.core.model import ModelSpec  # noqa: E402
from vramplan.engines import llamacpp as L  # noqa: E402
from vramplan.engines import vllm as V  # noqa: E402

GROUNDTRUTH = ROOT.parent / "shared" / "groundtruth"
GiB = 1 << 30
MiB = 1 << 20

# hf_id -> (catalog model, weight format or None for the checkpoint's own, spec overrides, note)
VLLM_MODELS: dict[str, tuple[str, str | None, dict, str]] = {
    "meta-llama/Llama-3.1-8B-Instruct": ("llama-3.1-8b", None, {}, "Instruct = base architecture"),
    "meta-llama/Meta-Llama-3-8B": ("llama-3.1-8b", None, {"max_position_embeddings": 8192},
                                   "Llama-3-8B: the 3.1 shapes with an 8k position table"),
    "Qwen/Qwen2.5-7B-Instruct": ("Qwen/Qwen2.5-7B-Instruct", None, {}, ""),
    "ibm-granite/granite-3.3-8b-instruct": ("granite-3.3-8b-instruct", None, {}, ""),
    "ibm-granite/granite-3.1-8b-instruct": ("granite-3.3-8b-instruct", None, {"vocab_size": 49155},
                                            "3.3 shapes (same architecture table on the 3.1 model card), 3.1 vocab"),
    "Qwen/Qwen3-8B": ("qwen3-8b", None, {}, ""),
    "Qwen/Qwen3-14B": ("Qwen/Qwen3-14B", None, {}, ""),
    "Qwen/Qwen3-0.6B": ("Qwen/Qwen3-0.6B", None, {}, ""),
    "Qwen/Qwen3-32B": ("Qwen/Qwen3-32B", None, {}, ""),
    "Qwen/Qwen3-30B-A3B": ("Qwen/Qwen3-30B-A3B", None, {}, ""),
    "Qwen/Qwen1.5-MoE-A2.7B": ("Qwen/Qwen1.5-MoE-A2.7B", None, {}, ""),
    "Qwen/Qwen2.5-72B-Instruct": ("Qwen/Qwen2.5-72B-Instruct", None, {}, ""),
    "Qwen/Qwen3-235B-A22B-FP8": ("qwen3-235b-a22b", "fp8-block", {}, "FP8 checkpoint with 128x128 block scales"),
    "microsoft/phi-4": ("phi-4", None, {}, ""),
    "microsoft/phi-2": ("microsoft/phi-2", None, {}, ""),
    "google/gemma-2-9b-it": ("gemma-2-9b", None, {}, "-it = base architecture"),
    "google/gemma-2-2b-it": ("gemma-2-2b", None, {}, ""),
    "google/gemma-2-27b-it": ("gemma-2-27b", None, {}, ""),
    "google/gemma-7b": ("gemma-7b", None, {}, ""),
    "google/gemma-3-4b-it": ("gemma-3-4b-it", None, {}, "multimodal"),
    "google/gemma-3-27b-it": ("gemma-3-27b-it", None, {}, "multimodal"),
    "deepseek-ai/DeepSeek-V2-Lite-Chat": ("deepseek-ai/DeepSeek-V2-Lite", None, {}, "Chat = base architecture"),
    "RedHatAI/Llama-3.3-70B-Instruct-fp8-dynamic": ("llama-3.3-70b-instruct", "fp8-channel", {},
                                                    "compressed-tensors FP8, per-channel weight scales"),
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic": ("llama-3.3-70b-instruct", "fp8-channel", {}, ""),
    "redhatai/Llama-3.3-70B-Instruct-quantized.w8a8": ("llama-3.3-70b-instruct", "int8", {}, "INT8 W8A8"),
    "RedHatAI/Qwen2.5-7B-Instruct-fp8-dynamic": ("Qwen/Qwen2.5-7B-Instruct", "fp8-channel", {}, ""),
    "RedHatAI/Qwen2.5-7B-Instruct-quantized.w8a8": ("Qwen/Qwen2.5-7B-Instruct", "int8", {}, ""),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("mixtral-8x7b-instruct-v0.1", None, {}, ""),
    "moonshotai/Kimi-Dev-72B": ("Qwen/Qwen2.5-72B-Instruct", None, {}, "a Qwen2.5-72B fine-tune (same config)"),
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16": ("llama-3.1-8b", "gptq", {}, "INT4 W4A16, group 128"),
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8": ("llama-3.1-8b", "int8", {}, "INT8 W8A8"),
    "neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8": ("llama-3.1-70b", "int8", {}, "INT8 W8A8"),
    "openai/gpt-oss-20b": ("openai/gpt-oss-20b", None, {}, "MXFP4 experts"),
    "openai/gpt-oss-120b": ("openai/gpt-oss-120b", None, {}, "MXFP4 experts"),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": ("meta-llama/Llama-4-Scout-17B-16E-Instruct", None, {},
                                                  "multimodal"),
}


class Unexpressable(Exception):
    pass


def _with(obj, **kw):
    """A copy of a dataclass or NamedTuple with some fields replaced."""
    if hasattr(obj, "_replace"):
        return obj._replace(**kw)
    return replace(obj, **kw)


def _load_jsonl(name: str) -> list[dict]:
    with open(GROUNDTRUTH / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def vllm_rows() -> list[dict]:
    return [r for r in _load_jsonl("public.jsonl") if r.get("category") == "vllm_startup"]


def _version_of(engine: str) -> str:
    import re

    m = re.search(r"v(\d+\.\d+(?:\.\d+)?)", engine or "")
    if m:
        return m.group(1)
    # rows that give a date instead of a release: the release current then
    for marker, version in (("2024-12", "0.6.5"), ("2025-01", "0.7.1"), ("July 2025", "0.10.0")):
        if marker in (engine or ""):
            return version
    raise Unexpressable(f"engine release not stated or older than the modelled rules ({engine!r})")


def _measured_vllm(m: dict) -> dict:
    out = {}
    for key, names in {"weights": ("weights_GiB", "weights_GiB_per_gpu", "weights_GB_as_logged"),
                       "activations": ("torch_activation_peak_GiB",),
                       "non_torch": ("non_torch_GiB",),
                       "kv_cache": ("kv_cache_GiB", "kv_cache_GiB_per_gpu", "kv_cache_GiB_per_gpu_derived"),
                       "kv_tokens": ("kv_cache_tokens",)}.items():
        for n in names:
            if isinstance(m.get(n), (int, float)):
                out[key] = float(m[n])
                break
    return out


def _vllm_inputs(row: dict) -> dict:
    c = row.get("config", {})
    hf = row.get("hf_id") or ""
    version = _version_of(c.get("engine", ""))
    V.rules_for(version)  # a release older than the modelled rules is not expressible
    if "connector" in c.get("engine", "").lower():
        raise Unexpressable("a KV-transfer connector (LMCache) allocates and profiles memory this model does not "
                            "cover")
    if hf not in VLLM_MODELS:
        raise Unexpressable(f"model {hf or row.get('model')!r} is not in the catalog")
    if "gpu" not in c or "tp" not in c or c.get("tp") is None:
        raise Unexpressable("GPU or parallel layout not stated")
    name, q, overrides, _ = VLLM_MODELS[hf]
    lm = load_model(name)
    if overrides:
        lm = _with(lm, spec=_with(lm.spec, **overrides))
    dt = {"torch.float32": "float32", "torch.float16": "float16"}.get(c.get("dtype"), "auto")
    if c.get("quantization") == "fp8":
        q = "fp8"
    fmt = resolve_format(lm, q, dt)
    wb = model_weight_bytes(lm.spec, fmt)
    total = c.get("gpu_total_GiB_seen")
    if not isinstance(total, (int, float)):
        import re

        mm = re.search(r"(\d+\.\d+)\s*GiB", str(c.get("gpu", "")))
        total = float(mm.group(1)) if mm else 79.19
    mml = c.get("max_model_len")
    mml = mml if isinstance(mml, int) else 8192
    util = c.get("gpu_memory_utilization")
    util = util if isinstance(util, float) else None
    note = ""
    meas = row.get("measured", {})
    parts = [meas.get(k) for k in ("weights_GiB", "torch_activation_peak_GiB", "non_torch_GiB", "kv_cache_GiB")]
    if util and all(isinstance(x, (int, float)) for x in parts) and "requested_memory_GiB" not in meas \
            and not version.startswith("0.6"):
        implied = sum(parts) / total
        if abs(implied - util) > 0.01:
            note = f"row says gpu_memory_utilization {util}, its own figures sum to {implied:.3f} x total; scored at that"
            util = round(implied, 3)
    return dict(spec=lm.spec, wb=wb, fmt=fmt, gpu_total_bytes=int(total * GiB), max_model_len=mml,
                tp=int(c.get("tp") or 1), pp=int(c.get("pp") or 1), kv_dtype=c.get("kv_cache_dtype") or "auto",
                act_bytes=V.act_bytes_for(fmt, lm.spec), utilization=util,
                max_num_batched_tokens=c.get("max_num_batched_tokens") if isinstance(
                    c.get("max_num_batched_tokens"), int) else None,
                max_num_seqs=c.get("max_num_seqs") if isinstance(c.get("max_num_seqs"), int) else None,
                version=version, block_size=c.get("block_size") if isinstance(c.get("block_size"), int) else None,
                mxfp4_experts="mxfp4" in fmt.name, note=note, hf_id=hf)


def _predict(inp: dict, rules=None) -> dict:
    kw = {k: v for k, v in inp.items() if k not in ("note", "hf_id")}
    p = V.vllm_memory(**kw, rules=rules)
    st = p.stages[0]  # the logs are rank 0's; the token count is the engine's (minimum over stages)
    return {"weights": st.weights_bytes / GiB, "activations": st.activation_bytes / GiB,
            "non_torch": st.non_torch_bytes / GiB, "kv_cache": st.available_kv_bytes / GiB,
            "kv_tokens": float(p.kv_tokens), "_plan": p}


def _score(row_id: str, pred: dict, meas: dict, extra: str = "") -> list[dict]:
    out = []
    for comp, measured in meas.items():
        if comp not in pred:
            continue
        p = pred[comp]
        err = p - measured
        unit = "tokens" if comp == "kv_tokens" else "GiB"
        out.append({"id": row_id, "component": comp, "predicted": round(p, 4), "measured": measured,
                    "error_pct": round(100 * err / measured, 3) if measured else None,
                    "error_abs": round(err, 4), "unit": unit, "note": extra})
    return out


def untuned_rules(rules: V.VllmRules) -> V.VllmRules:
    """The model before any fitted constant: a priori sampler working set (fp32 copy 4 B + int64 sort index 8 B per
    logit), no fixed profile overheads, non-torch = cuBLAS workspace (32 MiB on Hopper) at TP1 and the +1.79 GiB
    of NCCL buffers that formulas.md 4.3 quotes for TP2."""
    return replace(rules, sampler_bytes_per_logit=12.0, profile_overhead_bytes=0, forward_overhead_bytes=0,
                   non_torch_tp1_bytes=32 * MiB, non_torch_pp_bytes=32 * MiB,
                   non_torch_tp2_bytes=int(1.79 * GiB), non_torch_tp_doubling_bytes=0)


def score_vllm_rows(untuned: bool = False, include_skipped: bool = False) -> list[dict]:
    """Every expressible vllm_startup row of public.jsonl, per component (``include_skipped``: also one
    ``{"id", "skipped": True, "reason"}`` entry per row that cannot be expressed)."""
    out = []
    if include_skipped:
        out += [{"id": rid, "skipped": True, "reason": why, "predicted": None} for rid, why in unexpressed_vllm_rows()]
    for row in vllm_rows():
        try:
            inp = _vllm_inputs(row)
        except Unexpressable:
            continue
        meas = _measured_vllm(row.get("measured", {}))
        rules = untuned_rules(V.rules_for(inp["version"])) if untuned else None
        out += _score(row["id"], _predict(inp, rules), meas, inp["note"])
    return out


def unexpressed_vllm_rows() -> list[tuple[str, str]]:
    out = []
    for row in vllm_rows():
        try:
            _vllm_inputs(row)
            if not _measured_vllm(row.get("measured", {})):
                out.append((row["id"], "no per-GPU figure to compare (blocks of an unstated configuration only)"))
        except Unexpressable as exc:
            out.append((row["id"], str(exc)))
    return out


# ----- leave one model out -----------------------------------------------------------------------------------------

def _family(hf: str) -> str:
    return VLLM_MODELS[hf][0]


def _fit_constants(train: list[tuple[dict, dict]]) -> dict:
    """Refit the activation constants (sampler bytes per logit for each era, profile and forward overheads) and the
    non-torch constants (median per era and layout) on ``train`` = [(inputs, measured)]."""
    feats = []
    for inp, meas in train:
        if "activations" not in meas:
            continue
        base = V.rules_for(inp["version"])
        zero = replace(base, sampler_bytes_per_logit=0.0, profile_overhead_bytes=0, forward_overhead_bytes=0)
        p = V.vllm_memory(**{k: v for k, v in inp.items() if k not in ("note", "hf_id")}, rules=zero)
        st = p.stages[0]
        rows = min(p.max_num_seqs, p.max_num_batched_tokens) * inp["spec"].vocab_size if st.sampler_peak_bytes else 0
        era = "new" if base.sampler_bytes_per_logit < 20 else "old"
        feats.append((era, st.forward_peak_bytes, st.sampler_peak_bytes, rows, st.moe_workspace_bytes,
                      meas["activations"] * GiB))
    best = None
    for c in [i * 0.01 * GiB for i in range(0, 21)]:
        for cf in [i * 0.01 * GiB for i in range(0, 31)]:
            total = 0.0
            svals = {}
            for era, grid in (("new", [8 + 0.1 * i for i in range(0, 101)]), ("old", [25 + 0.1 * i for i in range(0, 201)])):
                rows = [f for f in feats if f[0] == era]
                if not rows:
                    svals[era] = None
                    continue
                e_best = None
                for s in grid:
                    e = 0.0
                    for _, fwd, samp, nrv, ws, m in rows:
                        a = max(fwd + cf, (samp + nrv * s + c) if samp else 0) + ws
                        e += (a - m) ** 2
                    if e_best is None or e < e_best[0]:
                        e_best = (e, s)
                svals[era] = e_best[1]
                total += e_best[0]
            if best is None or total < best[0]:
                best = (total, c, cf, svals)
    nt: dict[tuple, list[float]] = {}
    for inp, meas in train:
        if "non_torch" in meas:
            key = (V.rules_for(inp["version"]).label, "tp" if inp["tp"] > 1 else ("pp" if inp["pp"] > 1 else "1"))
            nt.setdefault(key, []).append(meas["non_torch"])
    return {"c": best[1], "cf": best[2], "s": best[3], "non_torch": {k: statistics.median(v) for k, v in nt.items()}}


def score_vllm_lomo() -> list[dict]:
    """Leave-one-model-out: for each catalog architecture, refit the constants without its rows and predict them."""
    data = []
    for row in vllm_rows():
        try:
            inp = _vllm_inputs(row)
        except Unexpressable:
            continue
        meas = _measured_vllm(row.get("measured", {}))
        if meas:
            data.append((row["id"], inp, meas))
    out = []
    for fam in sorted({_family(inp["hf_id"]) for _, inp, _ in data}):
        train = [(inp, m) for _, inp, m in data if _family(inp["hf_id"]) != fam]
        fit = _fit_constants(train)
        for rid, inp, meas in data:
            if _family(inp["hf_id"]) != fam:
                continue
            base = V.rules_for(inp["version"])
            era = "new" if base.sampler_bytes_per_logit < 20 else "old"
            s = fit["s"].get(era) or base.sampler_bytes_per_logit
            layout = "tp" if inp["tp"] > 1 else ("pp" if inp["pp"] > 1 else "1")
            nt = fit["non_torch"].get((base.label, layout))
            kw = dict(sampler_bytes_per_logit=s, profile_overhead_bytes=int(fit["c"]),
                      forward_overhead_bytes=int(fit["cf"]))
            if nt is not None:
                kw.update({"tp": {"non_torch_tp2_bytes": int(nt * GiB), "non_torch_tp_doubling_bytes": 0},
                           "pp": {"non_torch_pp_bytes": int(nt * GiB)},
                           "1": {"non_torch_tp1_bytes": int(nt * GiB)}}[layout])
            rules = replace(base, **kw)
            out += _score(rid, _predict(inp, rules), meas, f"held out: {fam}")
    return out


# ----- llm-d-planner CSV (held out) --------------------------------------------------------------------------------

def score_llmd_csv(path: str | Path, skip_ids: set[str] | None = None,
                   untuned: bool = False) -> tuple[list[dict], list[tuple[str, str]]]:
    """Runs of llm-d-planner's results_raw.csv (vLLM v0.19.0, H100) not already in public.jsonl."""
    skip = skip_ids if skip_ids is not None else {r["source"].get("row", "") for r in vllm_rows()
                                                  if isinstance(r.get("source"), dict)}
    out, missing = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("status") != "ok" or r["log_file"] in skip:
                continue
            hf = r["model"]
            if hf not in VLLM_MODELS:
                missing.append((r["log_file"], f"model {hf!r} is not in the catalog"))
                continue
            row = {"id": r["log_file"].removesuffix(".log"), "hf_id": hf,
                   "config": {"engine": "vLLM v0.19.0", "gpu": "H100-80GB",
                              "gpu_total_GiB_seen": float(r["init_total_memory_gib"]), "tp": int(r["tp"]),
                              "pp": int(r["pp"]), "max_model_len": int(r["max_model_len"]), "dtype": r["dtype"],
                              "quantization": r["quantization"], "kv_cache_dtype": r["kv_cache_dtype"],
                              "gpu_memory_utilization": float(r["gpu_memory_utilization"]),
                              "max_num_batched_tokens": 8192}}
            inp = _vllm_inputs(row)
            meas = {"weights": float(r["weight_memory_gib"]), "activations": float(r["activation_memory_gib"]),
                    "non_torch": float(r["non_torch_forward_gib"]), "kv_cache": float(r["kv_cache_memory_gib"]),
                    "kv_tokens": float(r["kv_cache_tokens"])}
            note = VLLM_MODELS[hf][3]
            rules = untuned_rules(V.rules_for(inp["version"])) if untuned else None
            out += _score(row["id"], _predict(inp, rules), meas, note)
    return out, missing


# ----- SGLang ---------------------------------------------------------------------------------------------------------

def score_sglang_rows() -> list[dict]:
    """sglang_startup rows: KV tokens of SGLang's static pool."""
    from vramplan.engines import sglang as S

    out = []
    for r in _load_jsonl("public.jsonl"):
        if r.get("category") != "sglang_startup" or r.get("hf_id") not in VLLM_MODELS:
            continue
        name, q, _, _ = VLLM_MODELS[r["hf_id"]]
        c = r["config"]
        lm = load_model(name)
        fmt = resolve_format(lm, q)
        res = S.plan(lm=lm, fmt=fmt, wb=model_weight_bytes(lm.spec, fmt), context=8192, tp=int(c.get("tp", 1)),
                     gpu_memory_bytes=int(79.19 * GiB), mem_fraction_static=c.get("mem_fraction_static"))
        m = r["measured"]
        out += _score(r["id"], {"kv_tokens": float(res["capacity"]["kv_cache_tokens"]),
                                "kv_cache": res["memory"]["kv_cache"] / GiB},
                      {"kv_tokens": float(m["kv_tokens"]), "kv_cache": m["K_size_GB"] + m["V_size_GB"]},
                      "H100 total assumed 79.19 GiB")
    return out


# ----- llama.cpp ------------------------------------------------------------------------------------------------------

def llamacpp_rows() -> list[dict]:
    return _load_jsonl("llamacpp.jsonl")


def _llamacpp_spec(r: dict) -> ModelSpec:
    """The architecture a row's hparams describe (the rows carry them; the GGUF files are not at hand)."""
    h = r.get("hparams") or {}
    need = ("n_layer", "n_embd", "n_head_kv", "head_dim", "n_vocab")
    if not all(isinstance(h.get(k), int) for k in need):
        raise Unexpressable("architecture not stated in full (hparams incomplete)")
    arch = h.get("arch", "")
    n_head = h.get("n_head") if isinstance(h.get("n_head"), int) else h["n_embd"] // h["head_dim"]
    common = dict(name=r["model"]["name"], hidden_size=h["n_embd"], num_layers=h["n_layer"], num_heads=n_head,
                  num_kv_heads=h["n_head_kv"], head_dim=h["head_dim"], vocab_size=h["n_vocab"])
    if arch.startswith("gptneox"):
        return ModelSpec(**common, intermediate_size=h["n_ff"], model_type="gpt_neox", norm_bias=True,
                         qkv_bias=True, o_bias=True, mlp_gated=False, mlp_bias=True)
    if arch.startswith("bert"):
        return ModelSpec(**common, intermediate_size=h["n_ff"], model_type="bert", tie_embeddings=True,
                         norm_bias=True, qkv_bias=True, o_bias=True, mlp_gated=False, mlp_bias=True,
                         learned_pos_embeddings=h.get("n_ctx_train", 512))
    if arch.startswith("phi3"):
        return ModelSpec(**common, intermediate_size=h["n_ff"], model_type="phi3")
    if arch.startswith("qwen2"):
        # Qwen2.5-VL-3B text tower: 16 query heads, n_ff 11008, tied embeddings, QKV bias (HF config)
        return ModelSpec(**common, intermediate_size=11008, model_type="qwen2",
                         qkv_bias=True, tie_embeddings=True)
    if arch.startswith("llama"):
        tied = "granite" in r["model"]["name"].lower()
        return ModelSpec(**common, intermediate_size=h.get("n_ff") or 14336, model_type="llama",
                         tie_embeddings=tied)
    raise Unexpressable(f"architecture {arch!r} not expressed")


def _llamacpp_inputs(r: dict) -> dict:
    import re

    b = r.get("buffers")
    if not b:
        raise Unexpressable("no measured buffers (an Ollama estimate only)" if "ollama_estimate" in r
                            else "no measured buffers")
    c = r["config"]
    if not isinstance(c.get("n_ctx"), int) or not isinstance(c.get("n_batch"), int):
        raise Unexpressable("context or batch size not stated")
    spec = _llamacpp_spec(r)
    ft = str(r["model"].get("ftype", "")).upper().replace("-", "_").replace(" ", "_")
    m = re.search(r"(Q\d_K|Q\d_\d|F16|BF16|IQ\d_\w+)", ft)
    mix = m.group(1) if m else "F16"
    mix = {"Q4_K": "Q4_K_M", "Q2_K": "Q2_K", "Q3_K": "Q3_K_M", "Q5_K": "Q5_K_M"}.get(mix, mix)
    if mix not in L.GGUF_MIXES:
        mix = "F16"
    rid = r["id"]
    embedding_model = "bge" in rid
    tensors = L.tensors_from_spec(spec, mix, spec.model_type in L.FUSED_QKV_TYPES, logits=not embedding_model)
    build = r.get("llama_cpp", {}).get("build")
    build = build if isinstance(build, int) else (4775 if "2025" in str(r.get("notes", "")) + str(build) else 4343)
    ub = c["n_ubatch"] if isinstance(c.get("n_ubatch"), int) else c["n_batch"]
    fa = c.get("flash_attn") in (1, True, "enabled")
    ngl = c.get("ngl") if isinstance(c.get("ngl"), int) else 999
    n_seq = c["n_seq_max"] if isinstance(c.get("n_seq_max"), int) else int(re.match(r"\d+", str(c["n_seq_max"]))[0])
    tool = r.get("tool", "")
    return dict(spec=spec, tensors=tensors, n_ctx=c["n_ctx"], n_seq=n_seq, n_ubatch=ub, n_batch=c["n_batch"],
                n_gpu_layers=ngl, flash_attn=fa, version=build,
                backend="metal" if "Metal" in r.get("hw", {}).get("backend", "") else "cuda",
                embeddings="--embedding" in tool or embedding_model or "jina" in rid,
                pooling_mean=embedding_model or "jina" in rid, logits=not embedding_model)


def _llamacpp_measured(r: dict) -> dict:
    """(component, device) -> MiB from the row's buffers; device 'gpu' or 'host'."""
    b = r["buffers"]
    out = {}

    def put(kind, d):
        for dev, v in (d or {}).items():
            if not isinstance(v, (int, float)):
                continue
            dl = dev.lower()
            if "aarch64" in dl:
                continue  # repacked copies of host weights (build-specific), not modelled
            where = "host" if dl.startswith(("cpu", "cuda_host")) else "gpu"
            if "total (" in dl:
                continue
            out[(kind, where)] = out.get((kind, where), 0.0) + float(v)

    put("model", b.get("model"))
    put("kv", b.get("kv"))
    put("compute", b.get("compute"))
    put("output", b.get("output"))
    c = r["config"]
    partial = isinstance(c.get("ngl"), int) and c["ngl"] <= (r.get("hparams") or {}).get("n_layer", 0)
    if partial:
        out.pop(("model", "host"), None)  # mmap view plus repacked copies: not comparable per buffer
    return out


def score_llamacpp_rows(untuned: bool = False, include_public: bool = True,
                        include_skipped: bool = False) -> list[dict]:
    """Every expressible llamacpp.jsonl row, per buffer and device (MiB), plus the llamacpp_log rows of
    public.jsonl that pin a KV size."""
    out = []
    if include_skipped:
        out += [{"id": rid, "skipped": True, "reason": why, "predicted": None}
                for rid, why in unexpressed_llamacpp_rows()]
    if include_public:
        out += score_public_llamacpp_kv()
    for r in llamacpp_rows():
        try:
            inp = _llamacpp_inputs(r)
        except Unexpressable:
            continue
        rules = None
        if untuned:
            rules = replace(L.rules_for(inp["version"]), attn_acts_separate=0, attn_acts_fused=0,
                            host_partial_ffn=False)
        p = L.llamacpp_memory(**inp, rules=rules)
        g = p.gpus[0] if p.gpus else None
        pred = {("model", "gpu"): g.model_bytes if g else 0, ("kv", "gpu"): g.kv_bytes if g else 0,
                ("compute", "gpu"): g.compute_bytes if g else 0, ("model", "host"): p.host.model_bytes,
                ("kv", "host"): p.host.kv_bytes, ("compute", "host"): p.host.compute_bytes,
                ("output", "host"): p.host.output_bytes}
        for key, measured in _llamacpp_measured(r).items():
            predicted = pred[key] / MiB
            err = predicted - measured
            out.append({"id": r["id"], "component": f"{key[0]}_{key[1]}", "predicted": round(predicted, 2),
                        "measured": measured, "error_pct": round(100 * err / measured, 3) if measured else None,
                        "error_abs": round(err, 2), "unit": "MiB",
                        "note": "flash attention" if inp["flash_attn"] else ""})
    return out


def score_public_llamacpp_kv() -> list[dict]:
    """The two llamacpp_log rows of public.jsonl that fix a KV size exactly (KV only: nothing else is stated)."""
    out = []
    for r in _load_jsonl("public.jsonl"):
        if r.get("category") != "llamacpp_log":
            continue
        c, m = r["config"], r["measured"]
        if r["id"] == "llamacpp-issue8101-kv-1m-ctx":  # Llama-3-8B shapes, CPU, build b3184
            spec = load_model("llama-3.1-8b").spec
            measured = m["kv_buffer_alloc_bytes"] / MiB
        elif r["id"] == "llamacpp-llamafile552-trilm-rtx4080":  # 30 layers, n_embd 3072, MHA (K/V 3072 wide)
            spec = ModelSpec(name="TriLM-3.9B", hidden_size=3072, num_layers=30, num_heads=24, num_kv_heads=24,
                             head_dim=128, intermediate_size=9216, vocab_size=50688, model_type="llama")
            measured = m["KV_self_MiB"]
        else:
            continue
        backend = "cpu" if c.get("backend") == "CPU" else "cuda"
        p = L.llamacpp_memory(spec, L.tensors_from_spec(spec, "F16"), n_ctx=c["n_ctx"], n_batch=c["n_batch"],
                              n_ubatch=c["n_ubatch"], flash_attn=bool(c.get("flash_attn")), version=3184,
                              backend=backend, n_gpus=0 if backend == "cpu" else 1)
        kv = (p.gpus[0].kv_bytes if p.gpus else p.host.kv_bytes) / MiB
        out.append({"id": r["id"], "component": "kv_gpu" if p.gpus else "kv_host", "predicted": round(kv, 4),
                    "measured": measured, "error_pct": round(100 * (kv - measured) / measured, 6),
                    "error_abs": round(kv - measured, 6), "unit": "MiB",
                    "note": "public.jsonl llamacpp_log row (the 32 B excess is ggml's buffer alignment)"
                    if "8101" in r["id"] else "public.jsonl llamacpp_log row"})
    return out


def unexpressed_llamacpp_rows() -> list[tuple[str, str]]:
    out = []
    for r in llamacpp_rows():
        try:
            _llamacpp_inputs(r)
        except Unexpressable as exc:
            out.append((r["id"], str(exc)))
    return out


def ollama_comparison() -> list[tuple[str, float, float, float]]:
    """Rows with both Ollama's estimate and llama.cpp's allocation: (id, actual GPU MiB, ollama MiB, ours MiB)."""
    import re

    def mib(text):
        m = re.match(r"\[?([\d.]+)\s*(GiB|MiB)", str(text))
        return float(m.group(1)) * (1024 if m.group(2) == "GiB" else 1) if m else None

    out = []
    for r in llamacpp_rows():
        est = r.get("ollama_estimate")
        if not est or not r.get("buffers"):
            continue
        meas = _llamacpp_measured(r)
        actual = sum(v for (k, w), v in meas.items() if w == "gpu")
        inp = _llamacpp_inputs(r)
        p = L.llamacpp_memory(**inp)
        ours = (p.gpus[0].model_bytes + p.gpus[0].kv_bytes + p.gpus[0].compute_bytes) / MiB
        out.append((r["id"], actual, mib(est.get("allocations")), ours))
    return out


# ----- printing ---------------------------------------------------------------------------------------------------------

def summarize(scores: list[dict]) -> dict[str, dict]:
    by: dict[str, list[dict]] = {}
    for s in scores:
        if s["error_pct"] is not None:
            by.setdefault(s["component"], []).append(s)
    out = {}
    for comp, rows in by.items():
        pct = [abs(x["error_pct"]) for x in rows]
        ab = [abs(x["error_abs"]) for x in rows]
        out[comp] = {"n": len(rows), "median_pct": statistics.median(pct), "max_pct": max(pct),
                     "median_abs": statistics.median(ab), "max_abs": max(ab), "unit": rows[0]["unit"],
                     "worst": max(rows, key=lambda x: abs(x["error_pct"]))["id"]}
    return out


def print_summary(title: str, scores: list[dict], order: tuple[str, ...]) -> None:
    s = summarize(scores)
    print(f"\n{title}")
    print(f"  {'component':14s} {'n':>3s} {'median |err|':>13s} {'max |err|':>10s} {'median abs':>12s} "
          f"{'max abs':>12s}  worst row")
    for comp in order + tuple(k for k in s if k not in order):
        if comp not in s:
            continue
        x = s[comp]
        print(f"  {comp:14s} {x['n']:3d} {x['median_pct']:12.2f}% {x['max_pct']:9.2f}% "
              f"{x['median_abs']:9.3f} {x['unit']:>3s}{'' if x['unit'] != 'tokens' else ''} "
              f"{x['max_abs']:9.3f} {x['unit']}  {x['worst']}")


def print_rows(scores: list[dict]) -> None:
    by: dict[str, dict] = {}
    for s in scores:
        by.setdefault(s["id"], {})[s["component"]] = s
    comps = []
    for s in scores:
        if s["component"] not in comps:
            comps.append(s["component"])
    for rid, cs in by.items():
        parts = []
        for comp in comps:
            if comp in cs:
                x = cs[comp]
                fmt = "{:,.0f}" if x["unit"] == "tokens" else "{:.2f}"
                pct = "n/a" if x["error_pct"] is None else f"{x['error_pct']:+.2f}%"
                parts.append(f"{comp} {fmt.format(x['predicted'])}/{fmt.format(x['measured'])} ({pct})")
        note = next((x["note"] for x in cs.values() if x.get("note")), "")
        print(f"  {rid[:64]:64s} " + "  ".join(parts) + (f"  [{note}]" if note else ""))


VLLM_ORDER = ("weights", "activations", "non_torch", "kv_cache", "kv_tokens")
LLAMA_ORDER = ("model_gpu", "kv_gpu", "compute_gpu", "model_host", "kv_host", "compute_host", "output_host")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--untuned", action="store_true", help="also print the models before any fitted constant")
    ap.add_argument("--llmd-csv", default=None, help="llm-d-planner results_raw.csv to score as a held-out set")
    ap.add_argument("--quiet", action="store_true", help="summaries only")
    args = ap.parse_args(argv)

    v = score_vllm_rows()
    if not args.quiet:
        print("vLLM startup rows (predicted/measured; GiB per GPU, tokens)")
        print_rows(v)
        print("  not expressible:")
        for rid, why in unexpressed_vllm_rows():
            print(f"    {rid}: {why}")
    if args.untuned:
        print_summary("vLLM, before tuning (a priori constants)", score_vllm_rows(untuned=True), VLLM_ORDER)
    print_summary("vLLM, fitted constants (all public rows)", v, VLLM_ORDER)
    lomo = score_vllm_lomo()
    print_summary("vLLM, leave-one-model-out (constants refitted without the model's rows)", lomo, VLLM_ORDER)
    if args.llmd_csv:
        held, missing = score_llmd_csv(args.llmd_csv)
        if not args.quiet:
            print("\nllm-d-planner v0.19.0 runs not in public.jsonl (never used to fit)")
            print_rows(held)
            for rid, why in missing:
                print(f"    {rid}: {why}")
        if args.untuned:
            print_summary("vLLM, held-out llm-d-planner runs, before tuning",
                          score_llmd_csv(args.llmd_csv, untuned=True)[0], VLLM_ORDER)
        print_summary("vLLM, held-out llm-d-planner runs (never used to fit)", held, VLLM_ORDER)

    sg = score_sglang_rows()
    if sg:
        print("\nSGLang (sglang_startup rows)")
        print_rows(sg)
    lc = score_llamacpp_rows()
    if not args.quiet:
        print("\nllama.cpp rows (predicted/measured MiB per device)")
        print_rows(lc)
        print("  not expressible:")
        for rid, why in unexpressed_llamacpp_rows():
            print(f"    {rid}: {why}")
    if args.untuned:
        print_summary("llama.cpp, before tuning (no activation multipliers, no partial-offload host term)",
                      score_llamacpp_rows(untuned=True), LLAMA_ORDER)
    print_summary("llama.cpp", lc, LLAMA_ORDER)
    comp = ollama_comparison()
    if comp:
        print("\nGPU total vs Ollama's own estimate (MiB): actual / Ollama / vramplan")
        for rid, actual, oll, ours in comp:
            print(f"  {rid:48s} {actual:9.1f} {oll:9.1f} ({100 * (oll / actual - 1):+.1f}%) "
                  f"{ours:9.1f} ({100 * (ours / actual - 1):+.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
