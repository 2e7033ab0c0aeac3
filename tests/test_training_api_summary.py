"""The report's training table: each row is the memory at its peak phase, and its columns add up to the total."""

from vramplan.api import load_model
from vramplan.training_api import plan_training, training_summary


def test_summary_rows_sum_to_the_total_at_the_peak():
    t = training_summary(load_model("llama-3.1-8b"))
    assert len(t["rows"]) == 6
    for row in t["rows"]:
        m = row["memory"]
        assert m["other"] >= 0
        assert m["weights"] + m["gradients"] + m["optimizer"] + m["activations"] + m["other"] == m["total"]
    full, lora = t["rows"][0], t["rows"][2]
    assert full["peak_phase"] == "optimizer step" and full["memory"]["activations"] == 0  # freed by then
    r = plan_training(load_model("llama-3.1-8b"), method="lora", precision="bf16", seq_len=2048)
    assert lora["memory"]["activations"] == r["memory"]["activations"] + r["memory"]["loss"] > 0


def test_contradictory_training_options_are_refused(run_cli):
    code, _, err = run_cli("train", "llama-3.1-8b", "--method", "full", "--lora-rank", "8")
    assert code == 1 and "--lora-rank applies to --method lora" in err
    code, _, err = run_cli("train", "llama-3.1-8b", "--fsdp", "--zero", "2", "--gpus", "8")
    assert code == 1 and "fsdp and zero 2" in err
    code, out, _ = run_cli("train", "llama-3.1-8b", "--fsdp", "--gpus", "8")
    assert code == 0 and "FSDP (full shard)" in out
    code, out, _ = run_cli("train", "llama-3.1-8b", "--method", "lora", "--lora-rank", "8")
    assert code == 0 and "r=8" in out


def test_llamacpp_says_when_a_format_becomes_a_gguf_mix():
    from vramplan.api import plan_inference

    r = plan_inference(load_model("llama-3.1-8b"), max_model_len=4096, engine="llama.cpp", quantization="awq")
    assert any("awq weights are planned as the nearest GGUF mix, Q4_K_M" in e for e in r["explain"])


def test_fit_training_takes_the_training_flags_and_suggests_flags(run_cli):
    import json

    code, out, _ = run_cli("fit", "llama-3.1-8b", "--workload", "training", "--method", "lora",
                           "--gradient-checkpointing", "--gpus", "rtx-4090", "--json")
    r = json.loads(out)
    assert code == 0 and r["fits"] and r["cheapest"][0]["count"] == 1
    assert r["workload"]["gradient_checkpointing"] is True
    code, out, _ = run_cli("fit", "llama-3.1-8b", "--workload", "training", "--method", "lora", "--gpus",
                           "rtx-4090", "--json")
    r = json.loads(out)
    assert code == 1 and not r["fits"]
    first = r["suggestions"][0]
    assert first["text"].startswith("add --") and first["fits_on"].startswith("1 x RTX 4090")
    code, _, err = run_cli("fit", "llama-3.1-8b", "--zero", "3")
    assert code == 1 and "--zero apply to --workload training" in err
