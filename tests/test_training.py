"""Training memory: model states (ZeRO paper), PEFT parameter counts, optimizer states, activations, the measured
PEFT runs, invariants, the CLI contract and bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_rows
from vramplan.api import load_model
from vramplan.core.model import ModelSpec, count_params
from vramplan.core.peft import adapter_plan
from vramplan.core.training import (TrainingSetup, model_states, optimizer_state_bytes, plan_training_memory,
                                    zero_model_states_bytes)
from vramplan.core.training_activations import ActivationModel, activations, full_ft_bytes_per_token_layer
from vramplan.errors import InvalidRequest, UnknownName
from vramplan.training_api import article_training_rows, plan_training, training_fit_advice, training_summary

GB = 10**9


@pytest.fixture(scope="module")
def llama8b():
    return load_model("llama-3.1-8b").spec


@pytest.fixture(scope="module")
def llama3b():
    return load_model("llama-3.2-3b").spec


# ----- model states -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figure1(stage, gb):
    """Rajbhandari et al. 2019, Figure 1: Psi = 7.5B, N_d = 64, K = 12."""
    assert round(zero_model_states_bytes(7_500_000_000, 64, stage) / GB, 1) == gb


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_states_follow_the_zero_formula(llama8b, stage):
    psi = count_params(llama8b).total
    setup = TrainingSetup(precision="bf16-mixed", gpus=64, zero=stage)
    if stage == 0:  # without ZeRO, bf16-mixed is torch autocast on fp32 weights: 4 + 4 + 8, still 16 B/param
        setup = replace(setup, gpus=1)
        assert model_states(llama8b, setup, None).total == 16 * psi
        return
    got = model_states(llama8b, setup, None).total
    assert abs(got - zero_model_states_bytes(psi, 64, stage)) <= 3  # ceil per component


@pytest.mark.parametrize("precision, per_param", [("bf16", 8), ("fp32", 16), ("bf16-mixed", 16)])
def test_full_adamw_bytes_per_param(llama8b, precision, per_param):
    psi = count_params(llama8b).total
    assert model_states(llama8b, TrainingSetup(precision=precision), None).total == per_param * psi


@pytest.mark.parametrize("optimizer, per_param", [("sgd", 0), ("sgd-momentum", 4), ("lion", 4), ("adamw", 8)])
def test_optimizer_state_bytes_fp32(optimizer, per_param):
    assert optimizer_state_bytes([(4096, 4096)], optimizer, 4) == per_param * 4096 * 4096


def test_8bit_adamw_is_2_03_bytes_per_param_and_small_tensors_stay_fp32():
    n = 4096 * 4096
    assert optimizer_state_bytes([(4096, 4096)], "adamw-8bit", 4) / n == pytest.approx(2 + 8 / 256)
    assert optimizer_state_bytes([(4095,)], "adamw-8bit", 4) == 8 * 4095  # under min_8bit_size = 4096
    assert optimizer_state_bytes([(4096, 4096)], "paged-adamw-8bit", 4) == optimizer_state_bytes(
        [(4096, 4096)], "adamw-8bit", 4)


def test_adafactor_is_factored():
    assert optimizer_state_bytes([(4096, 1024)], "adafactor", 4) == 4 * (4096 + 1024)
    assert optimizer_state_bytes([(4096,)], "adafactor", 4) == 4 * 4096


# ----- PEFT parameter counts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rank, targets, expected", [
    (16, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", 41_943_040),
    (8, "q_proj,v_proj", 3_407_872),
    (64, "all-linear", 167_772_160),
])
def test_lora_trainable_llama31_8b(llama8b, rank, targets, expected):
    assert adapter_plan(llama8b, "lora", rank, targets).trainable_params == expected


def test_dora_adds_one_magnitude_per_output_feature(llama8b):
    lora = adapter_plan(llama8b, "lora", 16, "q_proj,v_proj").trainable_params
    dora = adapter_plan(llama8b, "dora", 16, "q_proj,v_proj").trainable_params
    assert dora - lora == 32 * (4096 + 1024)


@pytest.mark.parametrize("kind, kw, expected", [  # PEFT's own counts, from training.jsonl (Llama-3.2-3B)
    ("ia3", {}, 286_720),
    ("ia3", {"targets": "gate_proj,o_proj,q_proj,k_proj,v_proj,down_proj,up_proj",
             "feedforward": ("up_proj", "gate_proj", "down_proj")}, 630_784),
    ("prompt", {"virtual_tokens": 200}, 614_400),
    ("ln", {}, 175_104),
    ("lora", {"rank": 32, "targets": "q_proj,v_proj"}, 9_175_040),
])
def test_peft_counts_llama32_3b(llama3b, kind, kw, expected):
    assert adapter_plan(llama3b, kind, **kw).trainable_params == expected


# ----- activations ------------------------------------------------------------------------------------------------

def test_activations_llama31_8b_sdpa_formula(llama8b):
    """formulas.md 5.2, verified by saved-tensor hooks: 8I + 16h + 4 n_h d + 4 n_kv d + 4 n_h + 8 = 200,840."""
    assert full_ft_bytes_per_token_layer(llama8b) == 200_840


@pytest.mark.parametrize("seq", [512, 4096])
def test_activations_eager_formula(llama8b, seq):
    s = llama8b
    expected = 8 * s.intermediate_size + 16 * s.hidden_size + 8 * s.num_heads * s.head_dim + 8 + 6 * s.num_heads * seq
    assert full_ft_bytes_per_token_layer(s, "eager", seq) == expected


def test_checkpointing_keeps_the_layer_inputs(llama8b):
    m = ActivationModel(full=True, checkpointing=True, use_cache=False)
    a = activations(llama8b, m, 1, 4096)
    assert a.checkpoint_bytes_per_token == 2 * llama8b.hidden_size * llama8b.num_layers


def test_frozen_base_saves_less_than_full(llama8b):
    full = activations(llama8b, ActivationModel(full=True), 1, 1024).saved_bytes
    lora = adapter_plan(llama8b, "lora", 16, "q_proj,v_proj")
    frozen = activations(llama8b, ActivationModel(full=False, adapter=lora), 1, 1024).saved_bytes
    assert frozen < full


# ----- the measured PEFT runs (training.jsonl) --------------------------------------------------------------------

PEFT_ROWS = {  # id -> (setup options); pure bf16, fp32 adapters, AdamW, batch 4, loop keeps outputs
    "peftmc-MetaMathQA-014": {"method": "full"},
    "peftmc-MetaMathQA-029": {"method": "lora", "lora_rank": 32, "lora_targets": ("q_proj", "v_proj")},
    "peftmc-MetaMathQA-034": {"method": "lora", "lora_rank": 64, "lora_targets": ("q_proj", "v_proj")},
    "peftmc-MetaMathQA-020": {"method": "ia3"},
    "peftmc-MetaMathQA-045": {"method": "prompt", "virtual_tokens": 200},
    "peftmc-MetaMathQA-024": {"method": "ln-tuning"},
}


def _peft_rows():
    rows = {r["id"]: r for r in shared_rows("training.jsonl")}
    return [(rid, rows[rid], opts) for rid, opts in PEFT_ROWS.items() if rid in rows]


@pytest.mark.parametrize("rid, row, opts", _peft_rows() or [pytest.param(None, None, None, marks=pytest.mark.skip)])
def test_allocated_after_step_within_1pct(llama3b, rid, row, opts):
    """Mean memory_allocated() after optimizer.step(): exact model states + the last batch's kept outputs (bf16
    logits and the KV cache the forward returns), at the mean sample length; run.py subtracts 2 MiB."""
    mean_len = round(row["train_total_tokens"] / row["train_samples"]) - 1
    setup = TrainingSetup(precision="bf16", batch_size=4, seq_len=mean_len, padding_mask=True, loop="custom", **opts)
    m = plan_training_memory(llama3b, setup)
    assert m.states.trainable_params == row["num_trainable_params"]
    predicted = m.allocated_after_step_bytes - 2 * 2**20
    measured = row["mem_allocated_after_step_avg_bytes"]
    assert abs(predicted - measured) / measured < 0.01
    states = m.states.total  # weights + gradients (alive until the next zero_grad) + optimizer
    assert 0 < measured - states < 2**30  # the kept outputs, not a missing model state


def test_full_ft_model_states_are_8_bytes_per_param_in_pure_bf16(llama3b):
    m = plan_training_memory(llama3b, TrainingSetup(precision="bf16", loop="custom"))
    assert m.states.weights + m.states.gradients + m.states.optimizer == 8 * 3_212_749_824


# ----- invariants -------------------------------------------------------------------------------------------------

SMALL = ModelSpec(name="small", hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=2, head_dim=64,
                  intermediate_size=1536, vocab_size=32000)
methods = st.sampled_from(["full", "lora", "dora", "ia3", "prompt"])


@settings(max_examples=40, deadline=None)
@given(method=methods, seq=st.integers(16, 4096), extra=st.integers(1, 2048), batch=st.integers(1, 8),
       ckpt=st.booleans(), attention=st.sampled_from(["sdpa", "eager", "flash"]))
def test_more_tokens_never_need_less(method, seq, extra, batch, ckpt, attention):
    base = TrainingSetup(method=method, seq_len=seq, batch_size=batch, gradient_checkpointing=ckpt,
                         attention=attention)
    m0 = plan_training_memory(SMALL, base)
    for bigger in (replace(base, seq_len=seq + extra), replace(base, batch_size=batch + 1)):
        m1 = plan_training_memory(SMALL, bigger)
        assert m1.total_bytes >= m0.total_bytes
        assert m1.allocated_peak_bytes >= m0.allocated_peak_bytes


@settings(max_examples=30, deadline=None)
@given(gpus=st.integers(2, 256), precision=st.sampled_from(["bf16-mixed", "bf16", "fp32"]),
       optimizer=st.sampled_from(["adamw", "adamw-8bit", "sgd-momentum", "lion", "adafactor"]),
       method=st.sampled_from(["full", "lora"]))
def test_higher_zero_stage_never_more_states_per_gpu(gpus, precision, optimizer, method):
    totals = [model_states(SMALL, TrainingSetup(method=method, precision=precision, optimizer=optimizer,
                                               gpus=gpus, zero=z),
                           adapter_plan(SMALL, "lora") if method == "lora" else None).total for z in (1, 2, 3)]
    assert totals[0] >= totals[1] >= totals[2]


@settings(max_examples=30, deadline=None)
@given(method=methods, seq=st.integers(64, 8192), batch=st.integers(1, 4))
def test_checkpointing_never_more_activations(method, seq, batch):
    plain = plan_training_memory(SMALL, TrainingSetup(method=method, seq_len=seq, batch_size=batch))
    ckpt = plan_training_memory(SMALL, TrainingSetup(method=method, seq_len=seq, batch_size=batch,
                                                     gradient_checkpointing=True))
    assert ckpt.activations.saved_bytes <= plain.activations.saved_bytes
    assert ckpt.allocated_peak_bytes <= plain.allocated_peak_bytes


@pytest.mark.parametrize("opts", [
    {}, {"method": "lora"}, {"method": "qlora"}, {"gradient_checkpointing": True, "zero": 3, "gpus": 8},
    {"gpus": 4}, {"zero": 2, "gpus": 8, "offload_optimizer": True}, {"attention": "eager", "seq_len": 1024},
    {"optimizer": "adamw-8bit", "grad_accum": 4}, {"zero": 3, "gpus": 4, "fsdp": True},
    {"loss": "fused"}, {"loss": "chunked"},
])
def test_components_sum_to_total(llama8b, opts):
    r = plan_training(load_model("llama-3.1-8b"), **opts)
    mem = r["memory"]
    assert sum(v for k, v in mem.items() if k != "total") == mem["total"]
    assert all(isinstance(v, int) and v >= 0 for v in mem.values())
    assert r["allocated_peak"] <= r["reserved_peak"] <= mem["total"]


def test_qlora_weights_are_nf4_with_fp32_kept_params(llama8b):
    from vramplan.catalog.formats import get_format
    from vramplan.core.precision import weight_bytes

    r = plan_training("llama-3.1-8b", method="qlora", lora_rank=16)
    nf4 = weight_bytes(llama8b, get_format("bnb-nf4")).total_bytes
    # prepare_model_for_kbit_training: embeddings, lm_head and norms go from 2 to 4 bytes
    kept = 2 * 128256 * 4096 + 4096 * (2 * 32 + 1)
    adapters = 4 * 41_943_040
    assert r["model_states"]["weights"] == nf4 + 2 * kept + adapters
    assert r["request"]["optimizer"] == "paged-adamw-8bit"


def test_ddp_adds_gradient_buckets_and_zero3_shards(llama8b):
    one = plan_training("llama-3.1-8b", precision="bf16", gradient_checkpointing=True)
    ddp = plan_training("llama-3.1-8b", precision="bf16", gradient_checkpointing=True, gpus=8)
    z3 = plan_training("llama-3.1-8b", precision="bf16", gradient_checkpointing=True, gpus=8, zero=3)
    assert ddp["memory"]["grad_buckets"] == ddp["model_states"]["gradients"]
    assert z3["model_states"]["total"] * 7 < one["model_states"]["total"]
    long = plan_training("llama-3.1-8b", precision="bf16", seq_len="32k", gpus=8, zero=3)  # backward is the peak
    assert long["peak"]["phase"].startswith("backward")
    assert long["memory"]["gathered_params"] >= 2 * 2 * 218_112_000  # two decoder layers in bf16


def test_offload_moves_states_to_host():
    r = plan_training("llama-3.1-8b", gpus=8, zero=3, offload_optimizer=True, offload_params=True)
    assert r["model_states"]["optimizer"] == 0 and r["model_states"]["weights"] == 0
    assert r["host"]["offloaded_per_gpu"] > 0
    assert r["host"]["offloaded_per_host"] == 8 * r["host"]["offloaded_per_gpu"]


# ----- article, summary, advice ---------------------------------------------------------------------------------

def test_article_rows_state_the_8_bytes_per_param_reading():
    rows = {(r["model"], r["method"]): r for r in article_training_rows()}
    full405 = rows[("llama-3.1-405b", "full")]
    assert round(full405["assumption_bytes"] / 1e12, 2) == 3.25
    full8 = rows[("llama-3.1-8b", "full")]
    assert round(full8["assumption_bytes"] / 2**30) == 60  # 59.8 GiB, printed as "60 GB"
    assert full8["exact_bytes"] > 2 * full8["article_bytes"]  # 16 B/param + activations, not 8
    assert {r["method"] for r in rows.values()} == {"full", "LoRA", "QLoRA"}


def test_training_summary_rows():
    s = training_summary(load_model("llama-3.2-1b"))
    labels = [r["label"] for r in s["rows"]]
    assert len(labels) == 6 and any("QLoRA" in x for x in labels)
    by = {r["label"]: r["memory"]["total"] for r in s["rows"]}
    assert by["full, bf16-mixed AdamW, checkpointing"] <= by["full, bf16-mixed AdamW"]


def test_fit_advice_for_an_impossible_plan():
    adv = training_fit_advice("llama-3.1-70b", "h100")
    assert adv["fits"] is False
    best = adv["suggestion"]
    assert best is not None and best["need_per_gpu"] <= adv["limit_per_gpu"]
    assert adv["text"].startswith("does not fit")


def test_fit_advice_when_it_fits():
    adv = training_fit_advice("llama-3.2-1b", "h100", method="lora", gradient_checkpointing=True)
    assert adv["fits"] is True


# ----- CLI and bad input ------------------------------------------------------------------------------------------

def test_cli_json_contract(run_json):
    r = run_json("train", "llama-3.1-8b", "--method", "lora", "--lora-targets", "q_proj,v_proj", "--lora-rank", "8",
                 "--seq-len", "4k", "--gradient-checkpointing")
    assert r["trainable_params"] == 3_407_872
    for key in ("weights", "gradients", "optimizer", "activations", "runtime", "total"):
        assert isinstance(r["memory"][key], int)
    assert r["request"]["seq_len"] == 4096
    assert {"allocated_peak", "reserved_peak", "host", "model", "model_states"} <= set(r)


def test_cli_text_labels_units(run_cli):
    code, out, _ = run_cli("train", "llama-3.2-1b", "--method", "qlora", "--gpu", "rtx-4090")
    assert code == 0 and "GiB" in out and "RTX 4090" in out


@pytest.mark.parametrize("argv, word", [
    (["--optimizer", "adamx"], "optimizer"),
    (["--precision", "fp8"], "precision"),
    (["--zero", "5"], "zero"),
    (["--lora-targets", "qq_proj", "--method", "lora"], "lora_targets"),
    (["--offload-params"], "parameter offload"),
    (["--attention", "xformers"], "attention"),
    (["--method", "qlora", "--quantization", "nope"], "nope"),
])
def test_bad_options_give_one_line(run_cli, argv, word):
    code, out, err = run_cli("train", "llama-3.1-8b", *argv)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err


def test_bad_options_in_json_mode(run_cli):
    code, out, _ = run_cli("train", "llama-3.1-8b", "--optimizer", "adamx", "--json")
    assert code == 1 and "error" in json.loads(out)


@pytest.mark.parametrize("kw, exc", [({"method": "sft"}, UnknownName), ({"seq_len": "abc"}, InvalidRequest),
                                     ({"batch_size": 0}, InvalidRequest), ({"foo": 1}, InvalidRequest)])
def test_api_errors(kw, exc):
    with pytest.raises(exc):
        plan_training("llama-3.2-1b", **kw)


# ----- measured on our own GPU (benchmarks/measurements/h200-2026-11-26.jsonl) -----------------------------------

def test_checkpointing_reserves_one_fp32_logits_block_more(llama8b):
    """With gradient checkpointing and a plain cross-entropy, the allocator holds one more fp32-logits block
    (tokens x V x 4) than the peak allocation; the allocation itself does not change. A fused loss keeps no such
    block."""
    from vramplan.core.training import ALLOCATOR_CHECKPOINT_LOGITS

    base = TrainingSetup(method="lora", precision="bf16", batch_size=4, seq_len=1024)
    plain = plan_training_memory(llama8b, base)
    ckpt = plan_training_memory(llama8b, replace(base, gradient_checkpointing=True))
    no_ckpt_slack = plain.reserved_peak_bytes - plain.allocated_peak_bytes
    block = int(ALLOCATOR_CHECKPOINT_LOGITS * 4 * 1024 * 128256 * 4)
    assert ckpt.reserved_peak_bytes - ckpt.allocated_peak_bytes >= block
    assert ckpt.reserved_peak_bytes - ckpt.allocated_peak_bytes - block <= no_ckpt_slack
    fused = plan_training_memory(llama8b, replace(base, gradient_checkpointing=True, loss="fused"))
    assert fused.reserved_peak_bytes - fused.allocated_peak_bytes < block


def test_training_runtime_is_the_measured_torch_process():
    from vramplan.core.memory import TORCH_TRAINING_RUNTIME_BYTES

    assert TORCH_TRAINING_RUNTIME_BYTES == 767 * 2**20  # 766.8 MiB in all 14 SDPA training runs on the H200
    one = plan_training("llama-3.2-1b", method="lora", batch_size=1, seq_len=512)
    assert one["memory"]["runtime"] == TORCH_TRAINING_RUNTIME_BYTES


def test_gemma_norms_keep_fp32_normalized_inputs_for_their_weight_grads():
    """Gemma's RMSNorm scales by (1 + w) in fp32 before casting back, so a trained norm weight keeps the fp32
    normalized input (4 B/element) where Llama's keeps the 16-bit one; frozen norms (LoRA) keep neither."""
    gemma = load_model("gemma-3-1b-it").spec
    setup = TrainingSetup(precision="bf16", batch_size=2, seq_len=2048)
    full = plan_training_memory(gemma, setup).activations
    terms = dict(full.layer_terms)
    assert terms["input norm: normalized input (weight grad)"] == 4 * gemma.hidden_size
    llama = plan_training_memory(load_model("llama-3.2-1b").spec, setup).activations
    assert dict(llama.layer_terms)["input norm: normalized input (weight grad)"] == 2 * 2048
    lora = plan_training_memory(gemma, replace(setup, method="lora")).activations
    assert "input norm: normalized input (weight grad)" not in dict(lora.layer_terms)


def test_loss_and_autocast_saved_tensors_are_reported(llama3b):
    """What autograd saves beside the layers: the plain cross-entropy's fp32 log-softmax (tokens x V x 4) and, under
    autocast without checkpointing, the 16-bit weight copies; the harness's saved-tensor count includes both."""
    setup = TrainingSetup(precision="bf16-mixed", batch_size=4, seq_len=1024)
    mem = plan_training_memory(llama3b, setup)
    assert mem.activations.loss_saved_bytes == 4 * 1024 * 128256 * 4
    assert mem.autocast_saved_bytes > 0
    assert plan_training_memory(llama3b, replace(setup, gradient_checkpointing=True)).autocast_saved_bytes == 0
    assert plan_training_memory(llama3b, replace(setup, loss="fused")).activations.loss_saved_bytes == 0
