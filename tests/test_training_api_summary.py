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
