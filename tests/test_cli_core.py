"""The CLI end to end: contract JSON, the article table, and one clear line for every kind of bad input."""

import json

import pytest

from conftest import SHARED


def test_inference_json_contract(run_json):
    r = run_json("inference", "llama-3.1-8b", "--max-model-len", "8k", "--batch-size", "2")
    assert r["model"] == {"name": "llama-3.1-8b", "params": 8_030_261_248, "active_params": 8_030_261_248,
                          "hf_id": "meta-llama/Llama-3.1-8B"}
    mem = r["memory"]
    assert {"weights", "kv_cache", "activations", "runtime", "total"} <= set(mem)
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    assert all(isinstance(v, int) for v in mem.values())
    assert mem["weights"] == 16_060_522_496
    assert mem["kv_cache"] == 2 * 8192 * 131_072


def test_tokens_accept_k_and_plain(run_json):
    a = run_json("inference", "llama-3.1-8b", "--max-model-len", "128k")
    b = run_json("inference", "llama-3.1-8b", "--max-model-len", "131072")
    c = run_json("inference", "llama-3.1-8b", "--max-model-len", "128000")
    assert a["memory"]["kv_cache"] == b["memory"]["kv_cache"] == 131072 * 131072
    assert c["memory"]["kv_cache"] == 128000 * 131072


def test_hf_id_and_path_give_the_same_answer(run_json, shared_dir):
    a = run_json("inference", "meta-llama/Llama-3.1-70B", "--max-model-len", "4096")
    b = run_json("inference", str(shared_dir / "configs/meta-llama/Llama-3.1-70B/config.json"),
                 "--max-model-len", "4096")
    c = run_json("inference", str(shared_dir / "configs/meta-llama/Llama-3.1-70B"), "--max-model-len", "4096")
    assert a["memory"] == b["memory"] == c["memory"]


def test_quantization_and_gpu_capacity(run_json):
    r = run_json("inference", "llama-3.1-8b", "-q", "Q4_K_M", "--gpu", "24GiB", "--max-model-len", "8192")
    assert r["weights_format"]["bits_per_weight"] == pytest.approx(4.8944, abs=1e-4)
    cap = r["capacity"]
    assert cap["kv_cache_tokens"] > 8192 and cap["max_concurrency"] > 1 and cap["fits"]


def test_report_runs_and_labels_units(run_cli):
    code, out, err = run_cli("llama-3.1-8b")
    assert code == 0, err
    assert "GiB" in out and "GB" in out and "8,030,261,248" in out
    assert "KV cache by context" in out


def test_report_json(run_json):
    r = run_json("report", "qwen3-30b-a3b")
    assert r["model"]["active_params"] < r["model"]["params"]
    assert sum(r["params_breakdown"].values()) == r["model"]["params"]
    assert any(w["format"] == "Q4_K_M" for w in r["weights"])


def test_table_pins_article(run_json):
    r = run_json("table")
    kv = {(k["model"], k["tokens"]): k for k in r["kv_cache"]}
    gib = 2**30
    # 8B and 70B rows reproduce the article (its "GB" are GiB; 1k = 1024, 16k = 16000, 128k = 128000)
    assert round(kv[("llama-3.1-8b", 1024)]["exact_bytes"] / gib, 3) == 0.125
    assert round(kv[("llama-3.1-8b", 16000)]["exact_bytes"] / gib, 2) == 1.95
    assert kv[("llama-3.1-8b", 128000)]["exact_bytes"] / gib == 15.625
    assert round(kv[("llama-3.1-70b", 1024)]["exact_bytes"] / gib, 4) == 0.3125
    assert round(kv[("llama-3.1-70b", 16000)]["exact_bytes"] / gib, 2) == 4.88
    assert round(kv[("llama-3.1-70b", 128000)]["exact_bytes"] / gib, 2) == 39.06
    # 405B: corrected (8 KV heads), and the article's figures reproduced only with 16 (mp16)
    row = kv[("llama-3.1-405b", 128000)]
    assert row["num_kv_heads"] == 8
    assert round(row["exact_bytes"] / gib, 2) == 61.52
    assert round(row["mp16_bytes"] / gib, 2) == 123.05 == row["article_value"]
    assert round(kv[("llama-3.1-405b", 16000)]["exact_bytes"] / gib, 2) == 7.69
    assert round(kv[("llama-3.1-405b", 1024)]["exact_bytes"] / gib, 3) == 0.492
    w = {(x["model"], x["format"]): x for x in r["weights"]}
    assert w[("llama-3.1-8b", "FP16")]["exact_bytes"] == 16_060_522_496
    assert round(w[("llama-3.1-70b", "FP16")]["params_x_bytes"] / 1e9) == 141


def test_models_lists_catalog(run_json):
    r = run_json("models")
    keys = {m["key"] for m in r["models"]}
    assert {"llama-3.1-70b", "deepseek-v3", "gpt-oss-20b", "qwen3-30b-a3b", "mixtral-8x7b"} <= keys


# ----- bad input: one line, non-zero exit, no traceback -------------------------------------------------

def _bad(run_cli, *argv):
    code, out, err = run_cli(*argv)
    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out
    assert len(err.strip().splitlines()) == 1, err
    return code, err


def test_unknown_model_suggests(run_cli):
    code, err = _bad(run_cli, "inference", "llama-3.1-7b")
    assert code == 1 and "did you mean" in err and "llama-3.1-70b" in err


def test_unknown_model_json_error(run_cli):
    code, out, err = run_cli("inference", "lama-3.1-8b", "--json")
    assert code == 1
    assert "did you mean" in json.loads(out)["error"]


def test_unknown_quantization(run_cli):
    code, err = _bad(run_cli, "inference", "llama-3.1-8b", "-q", "Q4_K_Z")
    assert "Q4_K_Z" in err


@pytest.mark.parametrize("ctx", ["-5", "0", "abc", "99999999999", "1.5"])
def test_bad_context(run_cli, ctx):
    code, err = _bad(run_cli, "inference", "llama-3.1-8b", "--max-model-len", ctx)
    assert code == 2 and "max-model-len" in err


def test_bad_kv_dtype(run_cli):
    code, err = _bad(run_cli, "inference", "llama-3.1-8b", "--kv-cache-dtype", "fp7")
    assert "fp7" in err


CONFIG_CASES = [
    ("not json {", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 1,
                 "vocab_size": 32000}), "num_hidden_layers"),
    (json.dumps({"model_type": "llama", "hidden_size": "4096", "num_hidden_layers": 32, "num_attention_heads": 32,
                 "intermediate_size": 11008, "vocab_size": 32000}), "expected int, got str"),
    (json.dumps({"model_type": "llama", "text_config": 5}), "text_config"),
    (json.dumps({"model_type": "bert_from_space", "hidden_size": 8}), "unsupported architecture 'bert_from_space'"),
    (json.dumps({"hidden_size": 8}), "model_type"),
    (json.dumps({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": -3, "num_attention_heads": 32,
                 "intermediate_size": 11008, "vocab_size": 32000}), "num_hidden_layers"),
    (json.dumps({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 2, "num_attention_heads": 32,
                 "num_key_value_heads": 5, "intermediate_size": 11008, "vocab_size": 32000}), "num_key_value_heads"),
]


@pytest.mark.parametrize("text,needle", CONFIG_CASES)
def test_bad_config_files(run_cli, tmp_path, text, needle):
    path = tmp_path / "config.json"
    path.write_text(text)
    code, err = _bad(run_cli, "inference", str(path))
    assert code == 1 and needle in err


def test_missing_path(run_cli, tmp_path):
    code, err = _bad(run_cli, "inference", str(tmp_path / "nope" / "config.json"))
    assert "no such file" in err


def test_directory_without_config(run_cli, tmp_path):
    code, err = _bad(run_cli, "inference", str(tmp_path))
    assert "no config.json" in err


def test_unknown_command_option(run_cli):
    code, err = _bad(run_cli, "inference", "llama-3.1-8b", "--frobnicate")
    assert code == 2


def test_no_arguments_explains(run_cli):
    code, out, err = run_cli()
    assert code == 0 and "vramplan MODEL" in out
