"""vramplan measure: the harness on the CPU with a 2-layer Llama, the no-GPU path, and the prepared GPU matrix.

Tests that build a model need torch and transformers (LoRA ones also peft) and skip cleanly without them; the
measured figures they check are tensor bytes (exact on any device), compared with what the config implies.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vramplan import measure

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import measure_matrix  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers/peft deprecations

HAVE_TORCH = not measure.missing_packages()
HAVE_PEFT = importlib.util.find_spec("peft") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch and transformers are not installed")
needs_peft = pytest.mark.skipif(not (HAVE_TORCH and HAVE_PEFT), reason="torch, transformers and peft needed")

H, I, L, NH, NKV, D, V = 64, 128, 2, 4, 2, 16, 256
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": H, "intermediate_size": I,
        "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": D,
        "vocab_size": V, "tie_word_embeddings": False, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "torch_dtype": "bfloat16"}
# params by hand: embedding + lm_head, per layer q,k,v,o + gate,up,down + 2 norms, final norm
TINY_PARAMS = 2 * V * H + L * (H * NH * D + 2 * H * NKV * D + NH * D * H + 3 * H * I + 2 * H) + H


@pytest.fixture
def tiny(tmp_path):
    return str(measure.write_config(TINY, tmp_path / "tiny"))


def _no_gpu():
    return not measure.cuda_available()


# ----- without torch or without a GPU -----------------------------------------------------------------------

@pytest.mark.parametrize("predicted, measured, expected", [
    (110, 100, 10.0), (90, 100, -10.0), (100, 100, 0.0), (1, 3, -66.67), (5, 0, None), (None, 4, None),
])
def test_error_pct_sign_and_edges(predicted, measured, expected):
    assert measure.error_pct(predicted, measured) == expected


def test_compare_keeps_only_pairs_with_both_sides():
    c = measure.compare([("weights", 200, 100, "tensor"), ("kv_cache", None, 5, "tensor"),
                         ("total", 10, None, "device")])
    assert c == {"weights": {"predicted": 200, "measured": 100, "error_pct": 100.0, "basis": "tensor"}}


@pytest.mark.skipif(not _no_gpu(), reason="a CUDA GPU is present")
def test_without_gpu_prints_the_prediction_and_exits_1(run_cli):
    code, out, err = run_cli("measure", "llama-3.2-1b", "--max-model-len", "4k", "--batch-size", "2", "--json")
    assert code == 1
    r = json.loads(out)
    assert r["error"] in (measure.NO_GPU_MESSAGE, measure.NO_TORCH_MESSAGE)
    from vramplan.api import plan_inference

    assert r["prediction"]["memory"] == plan_inference("llama-3.2-1b", max_model_len=4096, batch_size=2,
                                                       engine="transformers", attn_implementation="sdpa",
                                                       max_new_tokens=8)["memory"]
    assert r["measured"] is None
    code, out, _ = run_cli("measure", "llama-3.2-1b", "--max-model-len", "4k")
    assert code == 1 and "here is the prediction only" in out and "GiB" in out


@pytest.mark.parametrize("argv, mode", [
    ([], "inference"), (["--max-model-len", "8k"], "inference"), (["--method", "lora"], "train"),
    (["--gradient-checkpointing"], "train"), (["--seq-len", "2k"], "train"), (["--mode", "train"], "train"),
    (["--mode", "inference", "--optimizer", "sgd"], "inference"), (["--steps", "2"], "train"),
])
def test_mode_follows_the_options(argv, mode):
    from vramplan.cli import build_parser
    from vramplan.commands.measure import mode_of

    parser, _ = build_parser("measure")
    assert mode_of(parser.parse_args(["llama-3.2-1b", *argv])) == mode


def test_help_names_both_modes(run_cli):
    code, out, _ = run_cli("measure", "--help")  # main returns 0 after argparse's help rather than exiting
    assert code == 0 and "mode: inference (the default)" in out and "train (--mode train" in out


def test_unknown_model_is_one_line(run_cli):
    code, _, err = run_cli("measure", "llama-9.9-1b", "--max-model-len", "1k")
    assert code == 1 and err.startswith("vramplan: unknown model") and "Traceback" not in err


def test_raw_config_sources(tiny, tmp_path):
    assert measure.raw_config(tiny)["hidden_size"] == H
    assert measure.raw_config(str(Path(tiny).parent))["num_hidden_layers"] == L
    assert measure.raw_config("llama-3.2-1b")["hidden_size"] == 2048
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(measure.InvalidRequest, match="gguf"):
        measure.raw_config(str(gguf))


@pytest.mark.parametrize("dtype, cfg, expected", [
    ("auto", {"torch_dtype": "float16"}, "float16"), ("auto", {"dtype": "float32"}, "float32"),
    ("auto", {}, "bfloat16"), ("bf16", {"torch_dtype": "float32"}, "bfloat16"), ("fp32", {}, "float32"),
])
def test_resolve_dtype(dtype, cfg, expected):
    assert measure.resolve_dtype(dtype, cfg) == expected


def test_training_comparison_reads_states_and_peaks_from_the_plan():
    m = {"weights": 100, "gradients": 50, "optimizer": 200, "saved_for_backward": 40, "non_torch": 10,
         "peak_allocated": 400, "peak_reserved": 450, "allocated_end": 300, "device_used_peak": 470,
         "trainable_params": 7}
    plain = {"memory": {"weights": 100, "gradients": 0, "optimizer": 100, "activations": 60, "runtime": 20,
                        "total": 330}, "trainable_params": 7}
    c = measure.training_comparison(plain, m)
    assert c["optimizer"]["error_pct"] == -50.0 and c["trainable_params"]["error_pct"] == 0.0
    assert c["peak_allocated"]["predicted"] == c["peak_reserved"]["predicted"] == 310  # total - runtime
    assert c["gradients"]["predicted"] == 0 and "saved_for_backward" not in c
    full = dict(plain, model_states={"weights": 100, "gradients": 50, "optimizer": 200}, allocated_peak=390,
                reserved_peak=440, allocated_after_step=300, activations={"saved_bytes": 44})
    c = measure.training_comparison(full, m)
    assert (c["peak_allocated"]["predicted"], c["peak_reserved"]["predicted"]) == (390, 440)
    assert c["gradients"]["error_pct"] == c["optimizer"]["error_pct"] == c["allocated_after_step"]["error_pct"] == 0
    assert c["saved_for_backward"]["error_pct"] == 10.0
    assert c["total"] == {"predicted": 330, "measured": 470, "error_pct": measure.error_pct(330, 470),
                          "basis": "device"}
    assert measure.training_comparison(None, m) == {}


def test_rescore_uses_the_current_prediction():
    c = measure.rescore("llama-3.2-1b", {"mode": "inference", "max_model_len": 2048, "batch_size": 2,
                                         "dtype": "bfloat16"},
                        {"weights": 1_235_814_400 * 2, "kv_cache": 2 * 2048 * 32_768})
    assert c["weights"]["error_pct"] == 0.0 and c["kv_cache"]["error_pct"] == 0.0 and "total" not in c


# ----- the harness on the CPU (tensor bytes are exact on any device) ----------------------------------------

@needs_torch
@pytest.mark.parametrize("context, batch", [(16, 1), (40, 3)])
def test_inference_weights_and_kv_are_exact(tiny, context, batch):
    r = measure.measure_inference(tiny, max_model_len=context, batch_size=batch, decode_tokens=4, allow_cpu=True)
    m = r["measured"]
    assert m["weights"] == TINY_PARAMS * 2
    assert m["cache_tokens"] == context
    assert m["kv_cache"] == context * batch * L * 2 * NKV * D * 2  # K and V, bf16
    assert m["kv_cache_prefill"] == (context - 4) * batch * L * 2 * NKV * D * 2
    c = r["comparison"]
    assert c["weights"]["error_pct"] == 0.0 and c["kv_cache"]["error_pct"] == 0.0
    assert r["measured_on_gpu"] is False and m["peak_allocated"] is None and "total" not in c
    assert r["versions"]["torch"] and r["versions"]["transformers"]
    assert r["model"]["params"] == TINY_PARAMS


@needs_torch
@pytest.mark.parametrize("precision, weight_bytes, state_bytes", [
    ("bf16", 2, 2), ("bf16-mixed", 4, 4), ("fp32", 4, 4),
])
def test_full_training_states(tiny, precision, weight_bytes, state_bytes):
    r = measure.measure_training(tiny, method="full", optimizer="adamw", precision=precision, batch_size=2,
                                 seq_len=16, steps=2, allow_cpu=True)
    m = r["measured"]
    assert m["trainable_params"] == m["total_params"] == TINY_PARAMS
    assert m["weights"] == TINY_PARAMS * weight_bytes
    assert m["gradients"] == TINY_PARAMS * weight_bytes  # grads take the parameters' dtype
    assert m["optimizer"] == 2 * TINY_PARAMS * state_bytes  # AdamW: exp_avg and exp_avg_sq
    assert m["saved_for_backward"] > 0 and len(m["losses"]) == 2


@needs_torch
def test_sgd_has_no_state(tiny):
    r = measure.measure_training(tiny, optimizer="sgd", batch_size=1, seq_len=8, steps=1, allow_cpu=True)
    assert r["measured"]["optimizer"] == 0 and r["measured"]["gradients"] == TINY_PARAMS * 2


@needs_peft
@pytest.mark.parametrize("targets, per_layer_dims", [
    ("q_proj,v_proj", [(H, NH * D), (H, NKV * D)]),
    ("all-linear", [(H, NH * D), (H, NKV * D), (H, NKV * D), (NH * D, H), (H, I), (H, I), (I, H)]),
])
def test_lora_adapters_are_fp32_and_counted(tiny, targets, per_layer_dims):
    rank = 4
    r = measure.measure_training(tiny, method="lora", lora_rank=rank, lora_targets=targets, batch_size=2,
                                 seq_len=16, steps=1, allow_cpu=True)
    m = r["measured"]
    trainable = L * sum(rank * (d_in + d_out) for d_in, d_out in per_layer_dims)
    assert m["trainable_params"] == trainable
    assert m["weights"] == TINY_PARAMS * 2 + trainable * 4  # bf16 base, fp32 adapters (peft's default)
    assert m["gradients"] == trainable * 4
    assert m["optimizer"] == trainable * 8


@needs_peft
def test_checkpointing_saves_less_for_backward(tmp_path):
    cfg = dict(TINY, num_hidden_layers=4)
    path = str(measure.write_config(cfg, tmp_path / "four"))
    common = dict(method="lora", lora_rank=4, batch_size=2, seq_len=64, steps=1, allow_cpu=True)
    plain = measure.measure_training(path, gradient_checkpointing=False, **common)["measured"]
    ckpt = measure.measure_training(path, gradient_checkpointing=True, **common)["measured"]
    assert ckpt["saved_for_backward"] < plain["saved_for_backward"]
    assert ckpt["gradients"] == plain["gradients"] and ckpt["optimizer"] == plain["optimizer"]


@needs_torch
def test_training_prediction_is_passed_the_same_options(tiny, monkeypatch):
    import types

    seen = {}

    def plan_training(model, method="full", optimizer="adamw", batch_size=1, seq_len=1024):
        seen.update(model=model, method=method, optimizer=optimizer, batch_size=batch_size, seq_len=seq_len)
        return {"model": {"name": "tiny", "params": TINY_PARAMS, "active_params": TINY_PARAMS},
                "trainable_params": TINY_PARAMS,
                "memory": {"weights": TINY_PARAMS * 2, "gradients": TINY_PARAMS * 2, "optimizer": TINY_PARAMS * 4,
                           "activations": 1, "runtime": 0, "total": TINY_PARAMS * 8 + 1}}

    monkeypatch.setitem(sys.modules, "vramplan.training_api", types.SimpleNamespace(plan_training=plan_training))
    r = measure.measure_training(tiny, optimizer="sgd", batch_size=2, seq_len=12, steps=1, allow_cpu=True)
    assert seen == {"model": tiny, "method": "full", "optimizer": "sgd", "batch_size": 2, "seq_len": 12}
    assert set(r["prediction"]["ignored_options"]) == {"precision", "gradient_checkpointing", "attention",
                                                       "use_cache", "loop"}
    c = r["comparison"]
    assert c["weights"]["error_pct"] == c["gradients"]["error_pct"] == c["trainable_params"]["error_pct"] == 0.0
    # SGD without momentum keeps no state: 0 bytes measured, shown, but no relative error against 0
    assert c["optimizer"] == {"predicted": TINY_PARAMS * 4, "measured": 0, "error_pct": None, "basis": "tensor"}


HAVE_TRAINING_API = importlib.util.find_spec("vramplan.training_api") is not None


@needs_peft
@pytest.mark.skipif(not HAVE_TRAINING_API, reason="vramplan.training_api is not there yet")
@pytest.mark.parametrize("options", [
    {"method": "full", "precision": "bf16", "optimizer": "adamw"},
    {"method": "full", "precision": "bf16-mixed", "optimizer": "adamw"},
    {"method": "full", "precision": "bf16", "optimizer": "sgd"},
    {"method": "lora", "precision": "bf16", "lora_rank": 4, "lora_targets": "q_proj,v_proj"},
    {"method": "lora", "precision": "bf16", "lora_rank": 8, "gradient_checkpointing": True},
])
def test_training_plan_states_match_real_tensors(tiny, options):
    """vramplan's training model against the tensors torch and peft really create (exact on any device)."""
    r = measure.measure_training(tiny, batch_size=2, seq_len=16, steps=1, allow_cpu=True, **options)
    c = r["comparison"]
    for key in ("weights", "gradients", "optimizer", "trainable_params"):
        if c[key]["measured"]:
            assert c[key]["error_pct"] == 0.0, (key, c[key])
        else:
            assert c[key]["predicted"] == 0, (key, c[key])


@needs_peft
@pytest.mark.parametrize("name", ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"])
def test_matrix_models_build_on_the_meta_device(name):
    """The GPU matrix's architectures build with this transformers (no memory: meta tensors), and their weights
    and LoRA r16 adapters are exactly what vramplan predicts."""
    from vramplan.api import plan_inference

    model = measure.build_model(measure.raw_config(name), dtype="bfloat16", device="meta")
    assert measure.parameter_bytes(model) == plan_inference(name, max_model_len=1024)["memory"]["weights"]
    if HAVE_TRAINING_API:
        from vramplan.training_api import plan_training

        for p in model.parameters():
            p.requires_grad_(False)
        lora = measure.apply_lora(model, 16, "all-linear")
        trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        assert trainable == plan_training(name, method="lora", lora_rank=16, lora_targets="all-linear",
                                          seq_len=1024)["trainable_params"]


@needs_torch
def test_bad_options_are_one_clear_error(tiny):
    with pytest.raises(measure.VramplanError, match="optimizer"):
        measure.measure_training(tiny, optimizer="adam-ish", allow_cpu=True)
    with pytest.raises(measure.InvalidRequest, match="max_model_len"):
        measure.measure_inference(tiny, max_model_len=1, allow_cpu=True)
    with pytest.raises(measure.InvalidRequest, match="cannot build"):
        measure.build_model(dict(TINY, model_type="gemma2", head_dim=16), device="meta", attention="sdpa-nope")
    quant = dict(TINY, quantization_config={"quant_method": "gptq", "bits": 4})
    with pytest.raises(measure.InvalidRequest, match="quantiz"):
        measure.hf_config(quant)


@needs_torch
def test_cli_allow_cpu_runs_the_harness(run_cli, tiny):
    code, out, err = run_cli("measure", tiny, "--max-model-len", "24", "--batch-size", "2", "--allow-cpu", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["comparison"]["kv_cache"]["measured"] == 24 * 2 * L * 2 * NKV * D * 2
    code, out, _ = run_cli("measure", tiny, "--method", "full", "--seq-len", "8", "--steps", "1", "--allow-cpu")
    assert code == 0 and "CPU run" in out and "gradients" in out


class FakeCudaProbe(measure.MemoryProbe):
    """Runs on the CPU but answers like CUDA with fixed readings, to drive the allocator/device branches."""

    ALLOC, RESERVED, MAX_ALLOC, MAX_RESERVED, USED, TOTAL = 10**6, 2 * 10**6, 9 * 10**6, 12 * 10**6, 15 * 10**6, 10**9

    def __init__(self, device):
        super().__init__("cpu")
        self.cuda = True

    def sync(self):
        pass

    def start(self):
        pass

    def allocated(self):
        return self.ALLOC

    def reserved(self):
        return self.RESERVED

    def max_allocated(self):
        return self.MAX_ALLOC

    def max_reserved(self):
        return self.MAX_RESERVED

    def reset_peak(self):
        pass

    def device_used(self):
        return self.USED

    def device_total(self):
        return self.TOTAL

    def facts(self):
        return {"gpu_name": "Fake GPU", "driver": "0"}

    def name(self):
        return "Fake GPU"


@needs_torch
def test_allocator_and_device_figures_are_wired(tiny, monkeypatch):
    monkeypatch.setattr(measure, "MemoryProbe", FakeCudaProbe)
    monkeypatch.setattr(measure, "unavailable_reason", lambda allow_cpu=False: None)
    P = FakeCudaProbe
    r = measure.measure_inference(tiny, max_model_len=32, batch_size=1, decode_tokens=2, device="cpu")
    m, c, pm = r["measured"], r["comparison"], r["prediction"]["memory"]
    assert m["activations"] == P.MAX_ALLOC - P.ALLOC - m["kv_cache_prefill"]
    assert m["non_torch"] == P.USED - P.RESERVED
    assert m["device_used_peak"] == P.USED - P.RESERVED + P.MAX_RESERVED
    assert c["total"] == {"predicted": pm["total"], "measured": m["device_used_peak"],
                          "error_pct": measure.error_pct(pm["total"], m["device_used_peak"]), "basis": "device"}
    assert c["peak_allocated"]["predicted"] == pm["total"] - pm["runtime"] - pm["allocator_cache"]
    assert c["peak_reserved"]["measured"] == P.MAX_RESERVED and c["runtime"]["measured"] == P.USED - P.RESERVED
    assert r["versions"]["gpu_name"] == "Fake GPU" and r["measured_on_gpu"] is True
    t = measure.measure_training(tiny, batch_size=1, seq_len=8, steps=1, device="cpu")["measured"]
    assert t["peak_above_states"] == P.MAX_ALLOC - t["weights"] - t["gradients"] - t["optimizer"]
    assert set(t["phase_peak_allocated"]) == {"forward", "backward", "optimizer"} and t["forward_retained"] == 0
    assert t["device_used_peak"] == P.USED - P.RESERVED + P.MAX_RESERVED


# ----- the prepared GPU matrix ------------------------------------------------------------------------------

def test_default_matrix_covers_the_plan():
    extended = measure_matrix.extended_matrix()
    everything = measure_matrix.default_matrix()
    assert everything[-len(extended):] == extended  # the extended cases run last, while the budget lasts
    cases = everything[:-len(extended)]
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids))
    inf = [c for c in cases if c["mode"] == "inference"]
    assert {(c["model"], c["args"][1], c["args"][3]) for c in inf} == {
        (m, str(ctx), str(b)) for m in ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")
        for ctx in (1024, 4096, 16384) for b in (1, 4)}
    train = {(c["model"], c["args"][c["args"].index("--method") + 1], "--gradient-checkpointing" in c["args"])
             for c in cases if c["mode"] == "train"}
    assert train == {("llama-3.2-1b", "full", False), ("llama-3.2-3b", "full", False),
                     ("llama-3.2-3b", "lora", False), ("llama-3.2-3b", "lora", True),
                     ("llama-3.1-8b", "lora", False), ("llama-3.1-8b", "lora", True)}
    kinds_first = {(c["mode"], "lora" in c["id"]) for c in cases[:4]}
    assert kinds_first == {("inference", False), ("train", True), ("train", False)}


def test_extended_matrix_adds_the_missing_kinds():
    ext = measure_matrix.extended_matrix()
    ids = [c["id"] for c in ext]
    assert len(ids) == len(set(ids))
    assert not set(ids) & {c["id"] for c in measure_matrix.default_matrix()[:-len(ext)]}
    args = [" ".join(c["args"]) for c in ext]
    for needle in ("--optimizer sgd", "--optimizer adafactor", "--precision bf16-mixed", "--attention eager"):
        assert any(needle in a for a in args), needle
    assert {c["model"] for c in ext} >= {"qwen3-0.6b", "gemma-3-1b-it", "qwen3-30b-a3b"}


def test_every_default_case_parses(run_cli):
    from vramplan.cli import build_parser

    parser, _ = build_parser("measure")
    for c in measure_matrix.default_matrix():
        args = parser.parse_args([c["model"], *c["args"]])
        from vramplan.commands.measure import mode_of

        assert mode_of(args) == c["mode"]


def test_budget_skips_without_running(tmp_path):
    cases = measure_matrix.tiny_matrix("unused/config.json")
    out = tmp_path / "m.jsonl"
    rows = measure_matrix.run_matrix(cases, out_path=out, budget_s=0, case_timeout_s=60, python=sys.executable,
                                     allow_cpu=True, meta={"gpu": "test"}, log=lambda _: None)
    assert [r["status"] for r in rows] == ["skipped"] * 3
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["case"] for w in written] == [c["id"] for c in cases] and written[0]["gpu"] == "test"


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"), ("NVIDIA GeForce RTX 4090", "geforce-rtx-4090"), ("", "unknown"),
])
def test_output_name_slug(name, expected):
    assert measure_matrix.slug(name) == expected


@needs_torch
def test_tiny_matrix_end_to_end(tmp_path):
    out = tmp_path / "cpu.jsonl"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "measure_matrix.py"), "--matrix", "tiny",
                          "--allow-cpu", "--only", "inf-", "--output", str(out)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["status"] == "ok" and row["schema"] == measure_matrix.SCHEMA
    assert row["comparison"]["weights"]["error_pct"] == 0.0
    assert row["versions"]["torch"] and row["request"]["max_model_len"] == 64


def test_prediction_falls_back_to_plain_accounting_where_the_transformers_model_stops(run_cli):
    """DeepSeek-V4's engine accounting is not modelled: measure still prints a prediction (the plain plan) and says
    why, rather than failing."""
    from vramplan.measure import predict_inference

    r = predict_inference("deepseek-v4-flash", max_model_len=4096)
    assert r["memory"]["weights"] > 0 and "engine transformers" in r["ignored_options"][0]


def test_measured_cases_are_read_per_gpu(tmp_path):
    rows = [{"case": "a", "status": "ok", "gpu": "NVIDIA H200"}, {"case": "b", "status": "error", "gpu": "NVIDIA H200"},
            {"case": "c", "status": "ok", "gpu": "NVIDIA H100 80GB HBM3"}]
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    assert measure_matrix.measured_cases(tmp_path, "NVIDIA H200") == {"a"}
    committed = measure_matrix.measured_cases(measure_matrix.MEASUREMENTS_DIR, "NVIDIA H200")
    assert len(committed) == 38 and "inf-3.1-8b-ctx16k-b4" in committed
