"""Fit and search: stage splits, per-GPU needs pinned to plan_inference, ranking, impossible requests, the CLI."""

import json
import math
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.api import load_model, plan_inference
from vramplan.catalog.gpus import get_gpu
from vramplan.core import fit as F
from vramplan.errors import InvalidRequest, UnknownName
from vramplan.fit_api import _Workload, hardware_report, plan_fit


# ----- pipeline stages --------------------------------------------------------------------------------------------

def _brute(layers, pp, first, last):
    """The best contiguous split by trying every cut (small inputs only)."""
    n = len(layers)
    best = None
    for cuts in combinations(range(1, n), pp - 1):
        bounds = (0, *cuts, n)
        stages = [sum(layers[bounds[i]:bounds[i + 1]]) for i in range(pp)]
        stages[0] += first
        stages[-1] += last
        m = max(stages)
        best = m if best is None else min(best, m)
    return best


def _stage_max(layers, counts, first, last):
    out, i = [], 0
    for c in counts:
        out.append(sum(layers[i:i + c]))
        i += c
    out[0] += first
    out[-1] += last
    return max(out)


@pytest.mark.parametrize("layers,pp,first,last,best", [
    ([1] * 8, 1, 0, 0, 8),
    ([1] * 8, 2, 0, 0, 4),
    ([1] * 8, 2, 3, 0, 6),  # the embedding stage takes fewer layers
    ([1] * 10, 4, 2, 2, 4),  # (2, 4, ..., 2): both ends lighter
    ([5, 1, 1, 1, 1, 5], 3, 0, 0, 5),  # 5 | 1+1+1+1 | 5
])
def test_split_stages_table(layers, pp, first, last, best):
    counts = F.split_stages(layers, pp, first, last)
    assert len(counts) == pp and sum(counts) == len(layers) and min(counts) >= 1
    assert _stage_max(layers, counts, first, last) == best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=2, max_size=9), st.integers(1, 4), st.integers(0, 80),
       st.integers(0, 80))
def test_split_stages_is_optimal(layers, pp, first, last):
    pp = min(pp, len(layers))
    counts = F.split_stages(layers, pp, first, last)
    assert sum(counts) == len(layers) and min(counts) >= 1
    assert _stage_max(layers, counts, first, last) == _brute(layers, pp, first, last)


def test_uneven_stages_for_a_large_tied_vocabulary():
    """Gemma-2-27B ties a 256k x 4608 embedding: with 4 stages, the two end stages (embedding, head copy) take
    fewer layers."""
    w = _Workload(load_model("gemma-2-27b"), context=4096, batch=1)
    ln = F.layout_need(w.stack, 8, 4)
    assert sum(ln.stage_layers) == 46
    assert ln.stage_layers[0] < ln.stage_layers[1] and ln.stage_layers[-1] < ln.stage_layers[-2]
    assert ln.need_bytes == max(ln.stage_bytes)


# ----- per-GPU need pinned to plan_inference ----------------------------------------------------------------------

@pytest.mark.parametrize("model,tp,ctx", [("llama-3.1-8b", 1, 8192), ("llama-3.1-8b", 2, 8192),
                                          ("qwen3-30b-a3b", 4, 8192), ("gemma-2-9b", 2, 8192),
                                          ("llama-3.1-70b", 8, 4096)])
def test_need_equals_plan_inference(model, tp, ctx):
    """One sequence with a context of at most one prefill chunk: the fit's per-GPU need is exactly the plain
    accounting of `vramplan inference` at the same TP."""
    w = _Workload(load_model(model), context=ctx, batch=1)
    ln = F.layout_need(w.stack, tp, 1)
    r = plan_inference(model, max_model_len=ctx, tensor_parallel_size=tp)
    assert ln.need_bytes == r["memory"]["total"]
    assert dict(ln.components) == {k: v for k, v in r["memory"].items() if k != "total"}


def test_pipeline_stages_hold_less_than_one_gpu():
    w = _Workload(load_model("llama-3.1-70b"), context=8192, batch=4)
    one = F.layout_need(w.stack, 1, 1).need_bytes
    for pp in (2, 4, 8):
        ln = F.layout_need(w.stack, 1, pp)
        assert ln.need_bytes < one
        assert sum(ln.stage_layers) == 80


# ----- search, ranking, invariants --------------------------------------------------------------------------------

def test_small_model_fits_one_gpu_and_rankings_are_sorted():
    r = plan_fit("llama-3.1-8b", gpus="h100,a100-sxm4-80gb,rtx-4090,l4,apple-m2-ultra-192gb")
    assert r["fits"]
    by = {c["gpu_key"]: c for c in r["by_gpu"]}
    assert by["h100-sxm-80gb"]["count"] == 1 and by["h100-sxm-80gb"]["fits"]
    costs = [c["cost_per_hour_usd"] for c in r["cheapest"]]
    known = [c for c in costs if c is not None]
    assert known == sorted(known)
    assert all(c is None for c in costs[len(known):])  # unknown prices last
    speeds = [c["decode_tokens_per_s"]["expected"] for c in r["fastest"]]
    assert speeds == sorted(speeds, reverse=True)
    assert all(c["memory_per_gpu"] <= c["limit_per_gpu"] for c in r["fastest"])


def test_apple_uses_the_working_set_and_one_device():
    r = plan_fit("llama-3.1-70b", gpus="apple-m2-ultra-192gb,apple-m2-max-32gb", quantization="Q4_K_M",
                 allow_offload=True)
    by = {c["gpu_key"]: c for c in r["by_gpu"]}
    ultra, small = by["apple-m2-ultra-192gb"], by["apple-m2-max-32gb"]
    assert ultra["fits"] and ultra["count"] == 1
    assert ultra["limit_per_gpu"] == int(get_gpu("apple-m2-ultra-192gb").memory_usable_bytes * 0.95)
    assert not small["fits"] and small["count"] == 1 and small["offload_layers"] == 0  # no offload on unified


def test_offload_plan_for_a_consumer_gpu_and_host_ram_check():
    r = plan_fit("llama-3.1-70b", gpus="rtx-4090", quantization="Q4_K_M", max_gpus=1)
    (c,) = [c for c in r["cheapest"] if c["offload_layers"]]
    assert c["count"] == 1 and 0 < c["offload_layers"] < 80 and c["fits"]
    assert c["host_ram_for_offload"] > 20 * 2**30
    r2 = plan_fit("llama-3.1-70b", gpus="rtx-4090", quantization="Q4_K_M", max_gpus=1, host_ram="8GiB")
    assert not r2["fits"]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen3-30b-a3b"]), st.sampled_from([1024, 8192, 65536]),
       st.integers(1, 16), st.sampled_from(["h100", "rtx-4090", "a100-sxm4-40gb", "l40s"]))
def test_more_gpus_never_fit_worse(model, ctx, batch, gpu_name):
    w = _Workload(load_model(model), context=ctx, batch=batch)
    gpu = get_gpu(gpu_name)
    valid = None
    prev = None
    for count in (1, 2, 4, 8):
        c = F.evaluate(w.stack, gpu, count, valid_tp=valid)
        if c is None:
            continue
        if prev is not None:
            assert c.need_bytes <= prev.need_bytes
            assert c.fits or not prev.fits
        prev = c


def test_headroom_is_applied():
    gpu = get_gpu("h100")
    assert F.limit_for(gpu, 0.05) == int(gpu.memory_total_bytes * 0.95)
    assert F.limit_for(gpu, 0.0) == gpu.memory_total_bytes
    with pytest.raises(ValueError):
        F.limit_for(gpu, 1.0)


# ----- impossible requests ------------------------------------------------------------------------------------------

def test_impossible_request_gives_reason_and_suggestions():
    r = plan_fit("llama-3.1-405b", gpus="h100", allow_offload=False)
    assert not r["fits"]
    assert "closest" in r["reason"] and "8 x H100" in r["reason"]
    changes = {s["change"]: s for s in r["suggestions"]}
    assert changes["gpus"]["value"] == 16  # two 8-GPU nodes
    assert changes["quantization"]["value"] == "fp8"
    for s in r["suggestions"]:
        assert s["text"] and s["fits_on"]


@pytest.mark.parametrize("ctx,batch", [("128k", 2), (16384, 8)])
def test_each_suggestion_fits_and_is_the_largest_that_does(ctx, batch):
    base = dict(gpus="rtx-4090", max_model_len=ctx, batch_size=batch, max_gpus=1, allow_offload=False)
    r = plan_fit("llama-3.1-8b", **base)
    assert not r["fits"] and r["suggestions"]
    changes = {s["change"]: s["value"] for s in r["suggestions"]}
    assert "max_model_len" in changes
    for change, value in changes.items():
        assert plan_fit("llama-3.1-8b", **{**base, change: value})["fits"], change
    n = changes["max_model_len"]
    assert not plan_fit("llama-3.1-8b", **{**base, "max_model_len": n + 256})["fits"]
    if "batch_size" in changes:
        b = changes["batch_size"]
        assert 1 <= b < batch and not plan_fit("llama-3.1-8b", **{**base, "batch_size": b + 1})["fits"]


def test_unknown_gpu_did_you_mean():
    with pytest.raises(UnknownName) as exc:
        plan_fit("llama-3.1-8b", gpus="h1000")
    assert exc.value.suggestions and "did you mean" in str(exc.value)


@pytest.mark.parametrize("kw,field", [({"max_gpus": 0}, "max_gpus"), ({"headroom": 2}, "headroom"),
                                      ({"batch_size": 0}, "batch_size"), ({"host_ram": "lots"}, "host_ram")])
def test_bad_options_name_the_field(kw, field):
    with pytest.raises(InvalidRequest) as exc:
        plan_fit("llama-3.1-8b", gpus="h100", **kw)
    assert exc.value.field == field


def test_training_workload_uses_training_api_or_says_why():
    try:
        import vramplan.training_api  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(InvalidRequest, match="training_api"):
            plan_fit("llama-3.1-8b", gpus="h100", workload="training")
        return
    r = plan_fit("llama-3.1-8b", gpus="h100,a100-sxm4-80gb", workload="training", method="lora")
    assert r["workload"]["kind"] == "training"
    assert all("memory_per_gpu" in c for c in r["by_gpu"])


# ----- hardware report ----------------------------------------------------------------------------------------------

def test_hardware_report_for_a_tp_plan():
    r = hardware_report("llama-3.1-70b", gpu="h100", tensor_parallel_size=4)
    cfg = r["configuration"]
    assert cfg["tensor_parallel_size"] == 4 and cfg["count"] == 4
    ic = r["interconnect"]
    spec = load_model("llama-3.1-70b").spec
    assert ic["tp_bytes_per_token_per_gpu"] == round(2 * 3 / 4 * spec.hidden_size * 2 * spec.num_layers * 2)
    ram = r["host_ram"]
    assert ram["recommended"] >= ram["checkpoint"] and ram["recommended_installed_GiB"] * 2**30 >= ram["recommended"]
    assert r["disk"]["needed"] == math.ceil(r["disk"]["checkpoint"] * 1.05)
    assert r["power"]["gpus_W"] == 4 * 700


@pytest.mark.parametrize("gpu,psu", [("rtx-4090", 850), ("rtx-3090", 750)])
def test_psu_matches_vendor_advice(gpu, psu):
    """NVIDIA recommends an 850 W PSU for the RTX 4090 and 750 W for the RTX 3090."""
    from vramplan.core.hardware_report import power

    assert power(get_gpu(gpu), 1).psu_watts == psu


# ----- the CLI ----------------------------------------------------------------------------------------------------

def test_cli_fit_json(run_json):
    r = run_json("fit", "llama-3.1-8b", "--gpus", "h100,rtx-4090", "--max-model-len", "8k")
    assert r["fits"] and r["workload"]["max_model_len"] == 8192
    assert {c["gpu_key"] for c in r["by_gpu"]} == {"h100-sxm-80gb", "rtx-4090-24gb"}


def test_cli_fit_impossible_exits_1_with_reason(run_cli):
    code, out, err = run_cli("fit", "llama-3.1-405b", "--gpus", "rtx-4090", "--no-offload", "--json")
    assert code == 1
    r = json.loads(out)
    assert not r["fits"] and r["reason"] and r["suggestions"]
    code, out, err = run_cli("fit", "llama-3.1-405b", "--gpus", "rtx-4090", "--no-offload")
    assert code == 1 and "Nothing fits" in out and "What would change it" in out


def test_cli_fit_unknown_gpu(run_cli):
    code, out, err = run_cli("fit", "llama-3.1-8b", "--gpus", "h1000")
    assert code == 1 and "did you mean" in err and "Traceback" not in err


def test_cli_gpus_listing(run_json, run_cli):
    r = run_json("gpus", "--category", "apple")
    assert r["gpus"] and all(g["category"] == "apple" for g in r["gpus"])
    g = run_json("gpus", "h100")["gpus"][0]
    assert g["key"] == "h100-sxm-80gb" and g["memory_total_bytes"] > g["memory_usable_bytes"]
    code, out, _ = run_cli("gpus")
    assert code == 0 and "usable GiB" in out and "H100" in out
    code, _, err = run_cli("gpus", "h1000")
    assert code == 1 and "did you mean" in err


def test_moe_on_one_consumer_gpu_gets_an_expert_offload_plan(run_json):
    """llama.cpp --cpu-moe: every layer on the GPU except the routed experts; each step reads only the activated
    experts from host RAM, so it beats putting whole layers there."""
    out = run_json("fit", "qwen3-235b-a22b", "-q", "Q4_K_M", "--max-model-len", "16k", "--gpu", "rtx-4090")
    plans = {c["label"]: c for c in out["cheapest"]}
    expert = next(c for label, c in plans.items() if "routed experts in host RAM" in label)
    assert expert["count"] == 1 and expert["fits"] and expert["expert_offload"]
    assert expert["host_ram_for_offload"] > 100 * 2**30
    from vramplan._plan_common import _Workload
    from vramplan.api import load_model
    from vramplan.catalog.gpus import get_gpu
    from vramplan.core import fit as F

    w = _Workload(load_model("qwen3-235b-a22b"), quantization="Q4_K_M", context=16384, batch=1)
    layers = F.evaluate_offload(w.stack, get_gpu("rtx-4090"), speed_fn=w.speed)
    assert expert["decode_tokens_per_s"]["expected"] > layers.speed
