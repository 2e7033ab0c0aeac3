"""Model families added in session 3: OLMo 1 / 2 / 3 and Cohere 1 / 2 (Command R, R7B, Tiny Aya).

Every expected total is a published exact count (sources beside each case: HF API safetensors totals, safetensors
index total_size, training logs, model-card tables); the configs are the checkpoints' architecture fields.
"""

from __future__ import annotations

import json

import pytest

from vramplan.api import load_model, plan_inference
from vramplan.core.model import FULL, SLIDING, count_params
from vramplan.sources.hf_config import parse_config


def _cfg(mt, h, inter, layers, heads, kv, vocab, **kw):
    return {"model_type": mt, "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
            "max_position_embeddings": 4096, **kw}


CASES = [
    # OLMo 2: post-norms, q/k RMSNorm over the full projected width, untied head
    ("OLMo-2-1124-7B", _cfg("olmo2", 4096, 11008, 32, 32, 32, 100352, tie_word_embeddings=False),
     7_298_617_344, "HF API safetensors total (F32) of allenai/OLMo-2-1124-7B"),
    ("OLMo-2-0425-1B", _cfg("olmo2", 2048, 8192, 16, 16, 16, 100352, tie_word_embeddings=False),
     1_484_916_736, "reported BF16 parameter count of OLMo-2-0425-1B(-Instruct)"),
    ("OLMo-2-0325-32B (GQA: k_norm is 8 x 128 wide)",
     _cfg("olmo2", 5120, 27648, 64, 40, 8, 100352, tie_word_embeddings=False), 32_234_279_936, "published N for OLMo 2 32B"),
    # Olmo 3: OLMo 2's layer with sliding-window attention in three of four layers
    ("Olmo-3-1025-7B", _cfg("olmo3", 4096, 11008, 32, 32, 32, 100278, tie_word_embeddings=False, sliding_window=4096),
     7_298_011_136, "OLMo-core MFU callback num_params; a GGUF checker's 355-tensor sum"),
    ("Olmo-3 32B", _cfg("olmo3", 5120, 27648, 64, 40, 8, 100278, tie_word_embeddings=False), 32_233_522_176,
     "published Olmo 3 32B parameter count"),
    # OLMo 1: non-parametric LayerNorm (nothing stored)
    ("OLMo-7B-0724-hf", _cfg("olmo", 4096, 11008, 32, 32, 32, 50304, tie_word_embeddings=False), 6_888_095_744,
     "total_params of allenai/OLMo-7B-0724-hf in a public model table"),
    # Cohere: one weight-only LayerNorm per layer (parallel attention + MLP), tied embeddings by default
    ("aya-expanse-8b", _cfg("cohere", 4096, 14336, 32, 32, 8, 256000), 8_028_033_024,
     "published parameter count of CohereForAI/aya-expanse-8b"),
    ("tiny-aya (cohere2)", _cfg("cohere2", 2048, 11008, 36, 16, 4, 262144, head_dim=128, sliding_window=4096),
     3_349_227_520, "rasbt/LLMs-from-scratch standalone-tiny-aya notebook output"),
]


@pytest.mark.parametrize("name,cfg,total,source", CASES, ids=[c[0] for c in CASES])
def test_parameter_count_matches_the_published_figure(name, cfg, total, source):
    assert count_params(parse_config(cfg)).total == total, source


def test_olmo2_layer_tensors():
    spec = parse_config(_cfg("olmo2", 5120, 27648, 64, 40, 8, 100352, tie_word_embeddings=False))
    assert spec.qk_norm and spec.qk_norm_full and spec.norms_per_layer == 2 and not spec.tie_embeddings


def test_olmo3_and_cohere2_default_to_three_sliding_layers_in_four():
    for mt in ("olmo3", "cohere2"):
        spec = parse_config(_cfg(mt, 1024, 2048, 8, 8, 8, 1000, sliding_window=4096))
        assert spec.layer_kinds == (SLIDING, SLIDING, SLIDING, FULL) * 2
    explicit = parse_config(_cfg("cohere2", 1024, 2048, 4, 8, 8, 1000, sliding_window=512,
                                 layer_types=["sliding_attention", "full_attention"] * 2))
    assert explicit.layer_kinds == (SLIDING, FULL, SLIDING, FULL) and explicit.sliding_window == 512


def test_command_r_plus_qk_norms_are_per_head():
    base = _cfg("cohere", 12288, 33792, 64, 96, 8, 256000)
    plain = count_params(parse_config(base)).total
    normed = count_params(parse_config({**base, "use_qk_norm": True})).total
    assert normed - plain == 64 * (96 + 8) * 128  # LayerNorm weights over (heads, head_dim) for q and k


def test_catalog_entry_olmo_2_13b():
    """The verbatim config of allenai/OLMo-2-1124-13B; the same commit's model.safetensors.index.json says
    total_size 54,864,793,600 B, the checkpoint being float32 (4 bytes per parameter)."""
    assert count_params(load_model("olmo-2-13b").spec).total == 13_716_198_400
    assert plan_inference("olmo-2-13b", max_model_len=4096)["memory"]["weights"] == 54_864_793_600


def test_sliding_layers_cap_the_cache(tmp_path):
    """Command R7B's layout (32 layers, 8 KV heads of 128, window 4096, every 4th layer global)."""
    cfg = _cfg("cohere2", 4096, 14336, 32, 32, 8, 256000, head_dim=128, sliding_window=4096)
    assert count_params(parse_config(cfg)).total == 8_028_033_024  # = aya-expanse-8b's published count (same tensors)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    per_token = 2 * 8 * 128 * 2
    r7b = plan_inference(str(path), max_model_len=32768)
    assert r7b["memory"]["kv_cache"] == 8 * 32768 * per_token + 24 * 4096 * per_token
