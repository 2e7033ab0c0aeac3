"""Catalog entries added from vendored Hugging Face config.json copies (Granite 3.3, Mistral Nemo, DeepSeek-V2-Lite-Chat,
Qwen2.5 1.5B/3B/72B).

Each copy is pinned by sha256 to the bytes of the public file its index entry cites, so an edit shows up here. The
architecture and parameter-count cases are published facts (model cards, papers, groundtruth rows), not our output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vramplan.api import load_model
from vramplan.catalog import models as cat
from vramplan.core.model import count_params
from vramplan.sources.hf_config import parse_config

PUBLIC_JSONL = Path(__file__).resolve().parents[1].parent / "shared" / "groundtruth" / "public.jsonl"

# key, hf_id, family, sha256 of the copied file (= the cited source blob), size in bytes
ADDED = [
    ("granite-3.3-8b-instruct", "ibm-granite/granite-3.3-8b-instruct", "granite",
     "1313edf0d39dcf7ed35a072d341ec11b516c12acc4267cfb6d248c6bdcdddcb7", 790),
    ("mistral-nemo-instruct-2407", "mistralai/Mistral-Nemo-Instruct-2407", "mistral",
     "8a42669219f4caadedb891be88c34712572573d42b3d02d665d527f92d94ddfe", 622),
    ("deepseek-v2-lite-chat", "deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek",
     "f346286b0f1c8b044252fd54cb4fa78b9fab6472a6e8bebb9edfe03d414ea03d", 1522),
    ("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "qwen",
     "98d2ff8cc47488d08a2b0b3acf4eb99ef210779b42bd48605f6b8e36acdbf670", 660),
    ("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct", "qwen",
     "eed00b17e22553979d090fa492e587e92885e328914c8e0b0b78f0a0d3576b3b", 661),
    ("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "qwen", None, 683),
    ("qwen2.5-72b", "Qwen/Qwen2.5-72B", "qwen", None, 663),
]

# sha256 of HF's own config.json for DeepSeek-V2-Lite-Chat @85864749 and DeepSeek-V2-Lite @604d5664 (1522 bytes), as
# recorded in dinoml/model-configs-rs@23d00477:corpus/report-repositories.json
HF_DEEPSEEK_V2_LITE_SHA256 = "f346286b0f1c8b044252fd54cb4fa78b9fab6472a6e8bebb9edfe03d414ea03d"


def _config_bytes(key: str) -> bytes:
    return cat.entry_files(cat.resolve_model(key))["config.json"].read_bytes()


@pytest.mark.parametrize(("key", "hf_id", "family", "sha256", "size"), ADDED, ids=[a[0] for a in ADDED])
def test_added_entries_are_verbatim_copies_with_a_cited_source(key, hf_id, family, sha256, size):
    entry = cat.resolve_model(key)
    assert entry.hf_id == hf_id and entry.family == family
    assert entry.provenance == "verbatim" and not entry.built
    assert entry.source.startswith("config.json <- ")
    data = _config_bytes(key)
    assert len(data) == size
    if sha256:
        assert hashlib.sha256(data).hexdigest() == sha256
    cfg = json.loads(data)
    assert isinstance(cfg["architectures"], list) and cfg["model_type"]


def test_deepseek_v2_lite_chat_is_byte_identical_to_hf():
    assert hashlib.sha256(_config_bytes("deepseek-v2-lite-chat")).hexdigest() == HF_DEEPSEEK_V2_LITE_SHA256


@pytest.mark.parametrize("key", ["qwen2.5-1.5b", "qwen2.5-72b"])
def test_aiconfigurator_copies_lack_only_the_final_newline(key):
    data = _config_bytes(key)
    assert data.endswith(b"}") and not data.endswith(b"\n")
    assert data.startswith(b'{\n  "architectures": [\n')  # transformers' 2-space layout, untouched


LOOKUPS = [
    ("granite3.3:8b", "granite-3.3-8b-instruct"),
    ("ibm-granite/granite-3.3-8b-instruct", "granite-3.3-8b-instruct"),
    ("mistral-nemo", "mistral-nemo-instruct-2407"),
    ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo-instruct-2407"),
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-v2-lite-chat"),
    ("deepseek-ai/DeepSeek-V2-Lite", "deepseek-v2-lite"),
    ("Qwen/Qwen2.5-3B-Instruct", "qwen2.5-3b-instruct"),
    ("qwen2.5:3b", "qwen2.5-3b-instruct"),
    ("Qwen/Qwen2.5-3B", "qwen2.5-3b"),
    ("qwen2.5:1.5b", "qwen2.5-1.5b-instruct"),
    ("Qwen2.5-72B", "qwen2.5-72b"),
    ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b-instruct"),
]


@pytest.mark.parametrize(("name", "key"), LOOKUPS)
def test_lookup_reaches_the_right_repo(name, key):
    assert cat.resolve_model(name).key == key


# Architecture per the model cards: Granite 3.x table (8B dense: 4096 / 40 layers / 32 heads, 8 KV, head 128,
# MLP 12800, shared embeddings), Qwen2.5 cards (layers, Q/KV heads, tied), Mistral NeMo (40 layers, 5120, head 128, 8 KV,
# vocab 2**17), DeepSeek-V2 paper (Lite: 27 layers, 2048 hidden, 16 heads, MLA rank 512).
ARCH = [
    ("granite-3.3-8b-instruct", dict(num_layers=40, hidden_size=4096, num_heads=32, num_kv_heads=8, head_dim=128,
                                     intermediate_size=12800, vocab_size=49159, tie_embeddings=True)),
    ("mistral-nemo-instruct-2407", dict(num_layers=40, hidden_size=5120, num_heads=32, num_kv_heads=8, head_dim=128,
                                        intermediate_size=14336, vocab_size=131072, tie_embeddings=False)),
    ("deepseek-v2-lite-chat", dict(num_layers=27, hidden_size=2048, num_heads=16, kv_lora_rank=512, q_lora_rank=0,
                                   num_experts=64, experts_per_token=6, vocab_size=102400)),
    ("qwen2.5-1.5b-instruct", dict(num_layers=28, num_heads=12, num_kv_heads=2, tie_embeddings=True, qkv_bias=True)),
    ("qwen2.5-3b-instruct", dict(num_layers=36, num_heads=16, num_kv_heads=2, tie_embeddings=True, qkv_bias=True)),
    ("qwen2.5-72b", dict(num_layers=80, num_heads=64, num_kv_heads=8, tie_embeddings=False, qkv_bias=True)),
]


@pytest.mark.parametrize(("key", "want"), ARCH, ids=[a[0] for a in ARCH])
def test_parsed_architecture(key, want):
    spec = load_model(key).spec
    got = {f: getattr(spec, f) for f in want}
    if "q_lora_rank" in want:
        got["q_lora_rank"] = spec.q_lora_rank or 0
    assert got == want


# (key, published total, tolerance, source). Tolerances are the rounding of the published figure.
PUBLISHED_TOTALS = [
    ("granite-3.3-8b-instruct", 8.17e9, 0.005e9, "HF model page (safetensors): 8.17B"),
    ("qwen2.5-1.5b-instruct", 1.54e9, 0.005e9, "Qwen2.5-1.5B-Instruct card: 1.54B"),
    ("qwen2.5-1.5b", 1.54e9, 0.005e9, "Qwen2.5-1.5B card: 1.54B"),
    ("qwen2.5-3b-instruct", 3.09e9, 0.005e9, "Qwen2.5-3B card: 3.09B"),
    ("mistral-nemo-instruct-2407", 12e9, 0.5e9, "Mistral NeMo announcement and Docker model card: 12B"),
    ("deepseek-v2-lite-chat", 15.7e9, 0.05e9, "DeepSeek-V2 paper: Lite 15.7B total"),
]


@pytest.mark.parametrize(("key", "total", "tol", "source"), PUBLISHED_TOTALS, ids=[p[0] for p in PUBLISHED_TOTALS])
def test_parameter_count_matches_the_published_figure(key, total, tol, source):
    assert abs(count_params(load_model(key).spec).total - total) <= tol, source


# Qwen cards also give the non-embedding count (total minus the input embedding; tied models count it once)
NON_EMBEDDING = [("qwen2.5-1.5b-instruct", 1.31e9), ("qwen2.5-3b-instruct", 2.77e9)]


@pytest.mark.parametrize(("key", "published"), NON_EMBEDDING)
def test_qwen_non_embedding_count(key, published):
    spec = load_model(key).spec
    non_embedding = count_params(spec).total - spec.vocab_size * spec.hidden_size * (1 if spec.tie_embeddings else 2)
    assert abs(non_embedding - published) <= 0.005e9


def test_qwen2_5_72b_base_equals_the_groundtruth_row():
    if not PUBLIC_JSONL.is_file():
        pytest.skip("../shared/groundtruth/public.jsonl not present")
    rows = [json.loads(line) for line in PUBLIC_JSONL.read_text(encoding="utf-8").splitlines() if line.strip()]
    row = next(r for r in rows if r["id"] == "params-qwen2.5-72b")
    assert count_params(load_model("qwen2.5-72b").spec).total == row["measured"]["published_param_count"]


# A verbatim config and the built entry of the same architecture must describe the same model.
PAIRS = [
    ("deepseek-v2-lite-chat", "deepseek-v2-lite"),  # one HF config for both repos (same sha256)
    ("qwen2.5-3b-instruct", "qwen2.5-3b"),
    ("qwen2.5-1.5b-instruct", "qwen2.5-1.5b"),
    ("qwen2.5-72b", "qwen2.5-72b-instruct"),
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_verbatim_and_sibling_entries_count_the_same(a, b):
    ca, cb = count_params(load_model(a).spec), count_params(load_model(b).spec)
    assert (ca.total, ca.active) == (cb.total, cb.active)


def test_granite_multipliers_do_not_change_parameter_counts():
    cfg = json.loads(_config_bytes("granite-3.3-8b-instruct"))
    plain = {k: v for k, v in cfg.items()
             if k not in ("attention_multiplier", "embedding_multiplier", "residual_multiplier", "logits_scaling")}
    plain.update(model_type="llama", architectures=["LlamaForCausalLM"])
    assert count_params(parse_config(cfg)).total == count_params(parse_config(plain)).total == 8_170_864_640


def test_granite_3_1_differs_from_3_3_only_by_four_vocab_rows():
    """Granite 3.1 8B (vocab 49155, model card: same 8B dense shape) vs the 3.3 config: 4 tied rows of 4096."""
    cfg = json.loads(_config_bytes("granite-3.3-8b-instruct"))
    older = dict(cfg, vocab_size=49155)
    assert count_params(parse_config(cfg)).total - count_params(parse_config(older)).total == 4 * 4096


def test_mistral_nemo_has_no_sliding_window():
    """An explicit "sliding_window": null means no window (transformers keeps null), not MistralConfig's 4096."""
    spec = load_model("mistral-nemo-instruct-2407").spec
    assert spec.sliding_window == 0 and "sliding" not in set(spec.kinds)
    for key in ("mistral-7b-v0.3", "mistral-7b-instruct-v0.3"):
        assert "sliding" not in set(load_model(key).spec.kinds), key
    assert set(load_model("mistral-7b-v0.1").spec.kinds) == {"sliding"}  # v0.1 really has 4096
