"""Model families added in session 3: OLMo 1 / 2 / 3, Cohere 1 / 2 (Command R, R7B, Tiny Aya), EXAONE 4.0,
GPT-NeoX / Pythia, Phi-3.5-MoE and ERNIE 4.5 MoE.

Every expected total is a published exact count (sources beside each case: HF API safetensors totals, safetensors
index total_size, training logs, model-card tables); the configs are the checkpoints' architecture fields.
"""

from __future__ import annotations

import json

import pytest

from conftest import write_gguf_header
from vramplan.api import load_model, plan_inference
from vramplan.catalog import models as cat
from vramplan.core.model import FULL, SLIDING, count_params
from vramplan.errors import InvalidModelSpec, InvalidRequest
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
    # EXAONE 4.0: OLMo 2's post-norm layer with per-head q/k norms; the 32B's layer_types as its config gives them
    ("EXAONE-4.0-32B", _cfg("exaone4", 5120, 27392, 64, 40, 8, 102400, head_dim=128, tie_word_embeddings=False,
                            sliding_window=4096, sliding_window_pattern="LLLG",
                            layer_types=(["sliding_attention"] * 3 + ["full_attention"]) * 16),
     32_003_216_384, "model.safetensors.index.json total_size / 2 of LGAI-EXAONE/EXAONE-4.0-32B @a1d54d1c"),
    ("EXAONE-4.0-1.2B", _cfg("exaone4", 2048, 4096, 30, 32, 8, 102400, head_dim=64, tie_word_embeddings=True),
     1_279_391_488, "a logged model.num_parameters() of LGAI-EXAONE/EXAONE-4.0-1.2B"),
    # GPT-NeoX / Pythia: fused QKV with bias, LayerNorms with bias, GELU MLP with bias, untied embed_in / embed_out
    ("pythia-70m", _cfg("gpt_neox", 512, 2048, 6, 8, 8, 50304), 70_426_624, "Pythia model card table"),
    ("pythia-160m", _cfg("gpt_neox", 768, 3072, 12, 12, 12, 50304), 162_322_944, "Pythia model card table"),
    ("pythia-6.9b", _cfg("gpt_neox", 4096, 16384, 32, 32, 32, 50432), 6_857_302_016, "Pythia model card table"),
    ("gpt-neox-20b", _cfg("gpt_neox", 6144, 24576, 44, 64, 64, 50432), 20_554_567_680,
     "EleutherAI/gpt-neox-20b model card (nparameters)"),
    # Phi-3.5-MoE: Mixtral's layout with LayerNorms (bias), attention biases and an lm_head bias
    ("Phi-3.5-MoE", _cfg("phimoe", 4096, 6400, 32, 32, 8, 32064, num_local_experts=16, num_experts_per_tok=2,
                         attention_bias=True, lm_head_bias=True, sliding_window=131072),
     41_873_153_344, "published exact count of microsoft/Phi-3.5-MoE-instruct (HF page: 41.9B)"),
    # ERNIE 4.5 MoE: layer 0 dense, 64 experts top-6 + 2 shared, fp32 router and correction bias, tied
    ("ERNIE-4.5-21B-A3B", _cfg("ernie4_5_moe", 2560, 12288, 28, 20, 4, 103424, moe_intermediate_size=1536, moe_k=6,
                               moe_layer_start_index=1, moe_layer_end_index=27, moe_layer_interval=1,
                               moe_num_experts=64, moe_num_shared_experts=2, tie_word_embeddings=True),
     21_825_437_888, "HF API safetensors total of baidu/ERNIE-4.5-21B-A3B-Thinking (same architecture)"),
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


def test_ernie_stores_its_router_and_correction_bias_in_fp32(tmp_path):
    """HF's safetensors summary of ERNIE-4.5-21B-A3B: F32 4,425,408 (27 MoE layers x (64 x 2560 router + 64
    correction-bias)) and BF16 21,821,012,480."""
    cfg = dict(CASES[-1][1], torch_dtype="bfloat16")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    weights = plan_inference(str(path), max_model_len=4096)["memory"]["weights"]
    assert weights == 21_821_012_480 * 2 + 4_425_408 * 4


def test_exaone4_string_pattern_repeats_from_layer_0_and_ends_global():
    spec = parse_config(_cfg("exaone4", 1024, 2048, 6, 8, 8, 1000, sliding_window=4096, sliding_window_pattern="LLLG"))
    assert spec.layer_kinds == (SLIDING, SLIDING, SLIDING, FULL, SLIDING, FULL)
    with pytest.raises(InvalidModelSpec, match="sliding_window_pattern"):
        parse_config(_cfg("exaone4", 1024, 2048, 6, 8, 8, 1000, sliding_window=4096, sliding_window_pattern="LXG"))


# ----- Qwen2-VL / Qwen2.5-VL: a Qwen2 text model plus the vision tower and patch merger -----------------------------

def _qwen2_vl(h, inter, layers, heads, kv, vocab, tie, vision_out):
    return {"model_type": "qwen2_vl", "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab, "tie_word_embeddings": tie,
            "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                              "hidden_size": vision_out, "patch_size": 14, "spatial_merge_size": 2,
                              "temporal_patch_size": 2}}


@pytest.mark.parametrize("cfg,total", [
    (_qwen2_vl(1536, 8960, 28, 12, 2, 151936, True, 1536), 2_208_985_600),
    (_qwen2_vl(3584, 18944, 28, 28, 4, 152064, False, 3584), 8_291_375_616),
    (_qwen2_vl(8192, 29568, 80, 64, 8, 152064, False, 8192), 73_405_560_320),
], ids=["Qwen2-VL-2B", "Qwen2-VL-7B", "Qwen2-VL-72B"])
def test_qwen2_vl_counts(cfg, total):
    """HF safetensors parameter counts of Qwen/Qwen2-VL-{2B,7B,72B}-Instruct (floschne/gimmick@81c06a5e lists them;
    the 2B index's total_size 4,417,971,200 B is twice its count)."""
    assert count_params(parse_config(cfg)).total == total


def test_qwen2_5_vl_catalog_entry_and_sizes():
    """Qwen2.5-VL-7B-Instruct (verbatim config): 8,292,166,656 = HF's numParameters, split vision 676,550,144 +
    text 7,615,616,512 as a training log prints it; 3B (tied) 3,754,622,976 and 32B (vision MLP 3456)
    33,452,718,336 as published for those checkpoints."""
    spec = load_model("qwen2.5-vl-7b-instruct").spec
    pc = count_params(spec)
    assert pc.total == 8_292_166_656
    groups = dict(pc.groups)
    assert groups["vision_tower"] + groups["multi_modal_projector"] == 676_550_144
    base = cat.load_catalog_config(cat.find_model("qwen2.5-vl-7b-instruct"))
    three = {**base, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
             "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
             "vision_config": {**base["vision_config"], "out_hidden_size": 2048}}
    assert count_params(parse_config(three)).total == 3_754_622_976
    big = {**base, "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
           "num_attention_heads": 40, "num_key_value_heads": 8,
           "vision_config": {**base["vision_config"], "out_hidden_size": 5120, "intermediate_size": 3456}}
    assert count_params(parse_config(big)).total == 33_452_718_336
    nested = {"model_type": "qwen2_5_vl", "vision_config": base["vision_config"],
              "text_config": {k: v for k, v in base.items() if k not in ("vision_config", "model_type")}}
    assert count_params(parse_config(nested)).total == 8_292_166_656  # newer saves nest the text fields


def test_qwen2_vl_bad_mlp_ratio_names_the_field():
    cfg = _qwen2_vl(1536, 8960, 28, 12, 2, 151936, True, 1536)
    cfg["vision_config"]["mlp_ratio"] = "four"
    with pytest.raises(InvalidModelSpec, match="vision_config.mlp_ratio"):
        parse_config(cfg)


# ----- Llama 3.2 Vision (mllama) -----------------------------------------------------------------------------------

def test_mllama_counts_and_text_kv():
    """The verbatim 90B config: 88,593,355,323 (transformers' count of it); the 11B's sizes (4096 / 14336 / 32 heads
    / 40 layers, cross-attention at 3, 8, ..., 38): 10,670,220,835, the published HF count. Cross-attention layers
    cache image tokens, not text: text KV covers the 80 (90B) self-attention layers only."""
    spec = load_model("llama-3.2-90b-vision-instruct").spec
    assert count_params(spec).total == 88_593_355_323
    kv = plan_inference("llama-3.2-90b-vision-instruct", max_model_len=4096)["memory"]["kv_cache"]
    assert kv == 80 * 4096 * 2 * 8 * 128 * 2
    cfg = cat.load_catalog_config(cat.find_model("llama-3.2-90b-vision-instruct"))
    eleven = {**cfg, "text_config": {**cfg["text_config"], "hidden_size": 4096, "intermediate_size": 14336,
                                     "num_attention_heads": 32, "num_hidden_layers": 40,
                                     "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38]}}
    assert count_params(parse_config(eleven)).total == 10_670_220_835


def test_mllama_bad_cross_layer_names_the_field():
    cfg = cat.load_catalog_config(cat.find_model("llama-3.2-90b-vision-instruct"))
    bad = {**cfg, "text_config": {**cfg["text_config"], "cross_attention_layers": [3, 100]}}
    with pytest.raises(InvalidModelSpec, match=r"text_config.cross_attention_layers\[1\]"):
        parse_config(bad)


# ----- LFM2: gated short-convolution layers beside attention layers ----------------------------------------------

def _lfm2(h, ff, heads, **kw):
    return {"model_type": "lfm2", "hidden_size": h, "block_ff_dim": ff, "num_attention_heads": heads,
            "num_key_value_heads": 8, "num_hidden_layers": 16, "full_attn_idxs": [2, 5, 8, 10, 12, 14],
            "vocab_size": 65536, "conv_L_cache": 3, "conv_bias": False, "max_position_embeddings": 128000, **kw}


@pytest.mark.parametrize("cfg,total", [
    (_lfm2(1536, 10240, 24), 742_489_344),
    (_lfm2(2048, 12288, 32), 1_170_340_608),
    (_lfm2(2048, 10752, 32, block_auto_adjust_ff_dim=False, num_hidden_layers=30,
           full_attn_idxs=[2, 5, 9, 13, 17, 21, 24, 27]), 2_569_272_320),
], ids=["LFM2-700M", "LFM2-1.2B", "LFM2-2.6B"])
def test_lfm2_counts(cfg, total):
    """LiquidAI's model-card counts; the feed-forward width follows transformers' rule (2/3 of block_ff_dim, rounded
    up to 256): 10240 -> 6912, 12288 -> 8192; the 2.6B's count needs the rule off (10752 as written)."""
    assert count_params(parse_config(cfg)).total == total


def test_lfm2_catalog_entry_state_and_kv():
    spec = load_model("lfm2-350m").spec
    assert count_params(spec).total == 354_483_968 and spec.intermediate_size == 4608  # 6656 -> 4437 -> 4608
    assert spec.layer_kinds.count(FULL) == 6 and spec.layer_kinds.count("mamba") == 10
    assert spec.ssm_state_bytes_per_seq() == 1024 * 3 * 2  # a 3-tap conv state per channel, no recurrent state
    r = plan_inference("lfm2-350m", max_model_len=32768, batch_size=8)
    assert r["memory"]["kv_cache"] == 8 * (32768 * 6 * 2 * 8 * 64 * 2 + 10 * 1024 * 3 * 2)


def test_lfm2_bad_attention_index_names_the_field():
    with pytest.raises(InvalidModelSpec, match="full_attn_idxs"):
        parse_config(_lfm2(1024, 6656, 16, full_attn_idxs=[2, 99]))


def test_vllm_and_sglang_serve_a_float32_checkpoint_in_16_bits():
    """OLMo-2-1124-13B's config says float32: transformers loads it so (dtype auto), vLLM and SGLang cast it to 16
    bits (vLLM's _get_and_verify_dtype: float16 for float32 models, bfloat16 from 0.10.1)."""
    params = 13_716_198_400
    assert plan_inference("olmo-2-13b", max_model_len=4096, engine="transformers")["memory"]["weights"] == 4 * params
    for engine in ("vllm", "sglang"):
        auto = plan_inference("olmo-2-13b", max_model_len=4096, engine=engine, gpu="h100")["memory"]["weights"]
        bf16 = plan_inference("olmo-2-13b", max_model_len=4096, engine=engine, gpu="h100",
                              dtype="bfloat16")["memory"]["weights"]
        assert auto == bf16 and 2 * params <= auto < 2 * params + 2**21, engine  # (+ vLLM's rotary cache)
    fp32 = plan_inference("olmo-2-13b", max_model_len=4096, engine="vllm", gpu="h200", dtype="float32")
    assert fp32["memory"]["weights"] >= 4 * params  # asked for explicitly


# ----- Falcon-H1: attention and a Mamba-2 mixer side by side in every layer ----------------------------------------

FALCON_H1_05B = {  # tiiuae/Falcon-H1-0.5B as transcribed in NVIDIA-NeMo/Megatron-Bridge@acc8ca4b, + mamba_d_ssm 1536
    "model_type": "falcon_h1", "attention_bias": False, "head_dim": 64, "hidden_size": 1024, "intermediate_size": 2048,
    "mamba_conv_bias": True, "mamba_d_conv": 4, "mamba_d_head": 64, "mamba_d_state": 128, "mamba_expand": 2,
    "mamba_n_groups": 1, "mamba_n_heads": 24, "mamba_proj_bias": False, "mamba_rms_norm": False, "mlp_bias": False,
    "num_attention_heads": 8, "num_hidden_layers": 36, "num_key_value_heads": 2, "projectors_bias": False,
    "tie_word_embeddings": False, "vocab_size": 32784, "mamba_d_ssm": 1536, "max_position_embeddings": 16384}


@pytest.mark.parametrize("changes,total", [
    ({}, 521_411_104),
    ({"hidden_size": 2048, "num_hidden_layers": 24, "intermediate_size": 4608, "head_dim": 128, "vocab_size": 65537,
      "mamba_d_state": 256, "mamba_n_heads": 48, "mamba_d_ssm": 3072, "mamba_rms_norm": True}, 1_554_863_488),
    ({"hidden_size": 3072, "num_hidden_layers": 44, "intermediate_size": 12288, "num_attention_heads": 12,
      "head_dim": 128, "vocab_size": 130048, "mamba_d_state": 256, "mamba_n_heads": 24, "mamba_d_head": 128,
      "mamba_d_ssm": 3072, "mamba_rms_norm": True}, 7_585_648_736),
], ids=["Falcon-H1-0.5B", "Falcon-H1-1.5B", "Falcon-H1R-7B"])
def test_falcon_h1_counts(changes, total):
    """Published exact counts (an architecture report's measured 0.5B, the paper's 1.5B, the H1R-7B tensor
    manifest's 751-tensor sum); the gated norm exists only where mamba_rms_norm is set."""
    assert count_params(parse_config({**FALCON_H1_05B, **changes})).total == total


def test_falcon_h1_holds_kv_and_a_mamba_state_in_every_layer(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(FALCON_H1_05B))
    state = 36 * ((1536 + 2 * 128) * 4 + 24 * 64 * 128) * 2  # conv + SSM state of each layer, bf16
    for engine in (None, "transformers"):
        kv = plan_inference(str(path), max_model_len=16384, batch_size=2, engine=engine)["memory"]["kv_cache"]
        assert kv == 2 * (16384 * 36 * 2 * 2 * 64 * 2 + state), engine
    with pytest.raises(InvalidRequest, match="Falcon-H1"):
        plan_inference(str(path), max_model_len=16384, engine="vllm", gpu="h100")


def test_recurrent_layer_types_only_where_the_architecture_has_them():
    """layer_types naming recurrent layers ("mamba", "conv") in a model type without such a mixer is refused by
    name, not turned into recurrent layers with no recurrent fields."""
    for mt, kind in (("olmo3", "mamba"), ("cohere2", "conv"), ("exaone4", "linear_attention")):
        cfg = _cfg(mt, 1024, 2048, 2, 8, 8, 1000, sliding_window=512, layer_types=[kind, "full_attention"])
        with pytest.raises(InvalidModelSpec, match=r"layer_types\[0\]"):
            parse_config(cfg)



# ----- transformers' defaults where a config leaves a field out (caught by review) ----------------------------------

def test_omitted_fields_take_transformers_defaults():
    phimoe = {"model_type": "phimoe", "hidden_size": 4096, "intermediate_size": 6400, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32064, "attention_bias": True,
              "lm_head_bias": True}  # PhimoeConfig: 16 experts, top-2
    assert count_params(parse_config(phimoe)).total == 41_873_153_344
    ernie = {"model_type": "ernie4_5_moe", "hidden_size": 2560, "intermediate_size": 12288, "num_hidden_layers": 28,
             "num_attention_heads": 20, "num_key_value_heads": 4, "vocab_size": 103424}  # 64 experts top-6, from 1, 2 shared
    assert count_params(parse_config(ernie)).total == 21_825_437_888
    exaone = _cfg("exaone4", 1024, 2048, 8, 8, 8, 1000)  # Exaone4Config: window 4096, every 4th layer global
    assert parse_config(exaone).layer_kinds == (SLIDING, SLIDING, SLIDING, FULL) * 2
    falcon = {k: v for k, v in FALCON_H1_05B.items() if k != "mamba_d_ssm"}
    falcon["mamba_n_heads"] = 16  # FalconH1Config's mamba_d_ssm is 1024, not expand x hidden
    assert parse_config(falcon).ssm_inner == 1024
    with pytest.raises(InvalidModelSpec, match="mamba_d_head"):
        parse_config({**falcon, "mamba_d_head": 32})  # 32 x 16 heads is not 1024
    olmo3 = _cfg("olmo3", 1024, 2048, 4, 8, 8, 1000, sliding_window=512, sliding_window_pattern=2)
    assert parse_config(olmo3).layer_kinds == (SLIDING, SLIDING, SLIDING, FULL)  # Olmo3Config has no such field
    with pytest.raises(InvalidModelSpec, match="conv_L_cache"):
        parse_config(_lfm2(1024, 6656, 16, conv_L_cache=1))


def test_mllama_without_model_type_or_layer_list_and_with_a_tie_flag():
    cfg = cat.load_catalog_config(cat.find_model("llama-3.2-90b-vision-instruct"))
    no_type = {k: v for k, v in cfg.items() if k != "model_type"}  # found by its architectures entry
    assert len(parse_config(no_type).cross_attention_layers) == 20
    tied = {**cfg, "text_config": {**cfg["text_config"], "tie_word_embeddings": True}}
    assert count_params(parse_config(tied)).total == 88_593_355_323  # MllamaForCausalLM never ties its head
    eleven = {**cfg, "text_config": {k: v for k, v in cfg["text_config"].items() if k != "cross_attention_layers"}}
    eleven["text_config"].update(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_hidden_layers=40)
    assert count_params(parse_config(eleven)).total == 10_670_220_835  # the default list is the 11B's


def test_training_norms_scaled_in_fp32_for_olmo_and_cohere():
    """OLMo 2's RMSNorm and Cohere's LayerNorm multiply by their weight in fp32 and cast afterwards, like Gemma's."""
    from vramplan.core.training import TrainingSetup, plan_training_memory

    setup = TrainingSetup(precision="bf16", batch_size=1, seq_len=512)
    for cfg in (_cfg("olmo2", 1024, 2048, 2, 8, 8, 1000), _cfg("cohere2", 1024, 2048, 2, 8, 8, 1000,
                                                              sliding_window=512)):
        terms = dict(plan_training_memory(parse_config(cfg), setup).activations.layer_terms)
        assert terms["input norm: normalized input (weight grad)"] == 4 * 1024, cfg["model_type"]


def test_transformers_cache_follows_a_float32_model():
    kw = dict(max_model_len=4096, engine="transformers")
    assert (plan_inference("llama-3.2-1b", dtype="float32", **kw)["memory"]["kv_cache"]
            == 2 * plan_inference("llama-3.2-1b", **kw)["memory"]["kv_cache"])


def test_transformers_decode_copy_counts_only_above_the_prefill():
    """64 sequences of a 96-token prompt then 4,000 new tokens: the decode step's copy of one layer's cache (1 GiB)
    outweighs the prefill transient, and only the difference is added."""
    m = plan_inference("llama-3.1-8b", max_model_len=4096, batch_size=64, engine="transformers",
                       max_new_tokens=4000)["memory"]
    layer_kv = 64 * 4096 * 2 * 8 * 128 * 2
    assert m["kv_transient"] == layer_kv - m["activations"] > 0


# ----- Zamba2: Mamba-2 everywhere, shared transformer blocks in the hybrid layers ---------------------------------

ZAMBA2_12B = {"model_type": "zamba2", "hidden_size": 2048, "num_hidden_layers": 38,
              "layers_block_type": ["hybrid" if i in (5, 11, 17, 23, 29, 35) else "mamba" for i in range(38)],
              "num_attention_heads": 32, "num_key_value_heads": 32, "n_mamba_heads": 64, "mamba_ngroups": 1,
              "mamba_d_state": 128, "intermediate_size": 8192, "num_mem_blocks": 1,
              "use_shared_attention_adapter": True, "vocab_size": 32000}


def test_zamba2_counts():
    """Zamba2-1.2B: 1,215,064,704, the count of its safetensors shapes (406 tensors); the 2.7B layout (54 layers,
    transformers' default layer list, 2 shared blocks, no attention adapters): 2,662,214,560, transformers' own
    count of that config on the meta device."""
    assert count_params(parse_config(ZAMBA2_12B)).total == 1_215_064_704
    big = {"model_type": "zamba2", "hidden_size": 2560, "num_hidden_layers": 54, "num_attention_heads": 32,
           "n_mamba_heads": 80, "mamba_d_state": 64, "intermediate_size": 10240, "num_mem_blocks": 2}
    assert count_params(parse_config(big)).total == 2_662_214_560


def test_zamba2_kv_in_hybrid_layers_only_and_state_everywhere(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(ZAMBA2_12B))
    state = 38 * ((4096 + 2 * 128) * 4 + 64 * 64 * 128) * 2
    kv = plan_inference(str(path), max_model_len=8192)["memory"]["kv_cache"]
    assert kv == 8192 * 6 * 2 * 32 * 128 * 2 + state  # head_dim 2h / heads = 128 over the 2h-wide attention input
    with pytest.raises(InvalidModelSpec, match=r"layers_block_type\[0\]"):
        parse_config({**ZAMBA2_12B, "layers_block_type": ["attention"] + ZAMBA2_12B["layers_block_type"][1:]})


def test_qwen2_vl_without_a_vision_config_is_refused_by_name():
    cfg = _qwen2_vl(1536, 8960, 28, 12, 2, 151936, True, 1536)
    for bad in (None, "tower"):
        with pytest.raises(InvalidModelSpec, match="vision_config"):
            parse_config({**cfg, "vision_config": bad} if bad else {k: v for k, v in cfg.items() if k != "vision_config"})


def test_lfm2_moe_count_and_its_stored_expert_bias(tmp_path):
    """LFM2.5-8B-A1B's layout (24 layers, 6 attention; 2 dense layers of 7168, then 32 experts of 1792, top-4):
    8,467,856,128 parameters, and its tensor manifest's 8,467,856,832 adds the 22 layers' fp32 expert_bias (32 each),
    a buffer the checkpoint stores but no optimizer sees."""
    types = (["conv", "conv", "full_attention"] * 2 + (["conv"] * 3 + ["full_attention"]) * 4 + ["conv"] * 2)
    cfg = {"model_type": "lfm2_moe", "hidden_size": 2048, "num_hidden_layers": 24, "layer_types": types,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128000, "intermediate_size": 7168,
           "moe_intermediate_size": 1792, "num_experts": 32, "num_experts_per_tok": 4, "num_dense_layers": 2,
           "torch_dtype": "bfloat16"}
    assert count_params(parse_config(cfg)).total == 8_467_856_128
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert plan_inference(str(path), max_model_len=4096)["memory"]["weights"] == 8_467_856_128 * 2 + 22 * 32 * 4


def test_qwen_vl_nested_tie_follows_the_top_level_flag():
    base = cat.load_catalog_config(cat.find_model("qwen2.5-vl-7b-instruct"))
    text = {k: v for k, v in base.items() if k not in ("vision_config", "model_type", "tie_word_embeddings")}
    nested = {"model_type": "qwen2_5_vl", "vision_config": base["vision_config"], "tie_word_embeddings": False,
              "text_config": {**text, "tie_word_embeddings": True}}
    assert count_params(parse_config(nested)).total == 8_292_166_656  # untied, as the top level says


# ----- GGUF files of the new families --------------------------------------------------------------------------

def _gguf(path, arch, kv_heads=None):
    return write_gguf_header(path, arch, layers=1, hidden=256, heads=4, kv_heads=kv_heads, ff=1024, context=2048,
                             vocab=100, token_list=True, file_type=1)


def test_gguf_olmo2_and_gptneox_headers(tmp_path):
    """llama.cpp's olmo2 and gptneox architectures read as their model types: OLMo 2's full-width q/k norms,
    GPT-NeoX's biases and LayerNorms (one layer, h 256, ff 1024, 4 heads, 100 tokens, untied)."""
    olmo = load_model(str(_gguf(tmp_path / "o.gguf", "olmo2", kv_heads=4))).spec
    assert olmo.model_type == "olmo2" and olmo.qk_norm_full
    assert count_params(olmo).total == (4 * 256 * 256 + 2 * 256 + 3 * 256 * 1024 + 2 * 256) + 2 * 100 * 256 + 256
    neox = load_model(str(_gguf(tmp_path / "n.gguf", "gptneox"))).spec
    per_layer = (3 * 256 * 256 + 3 * 256) + (256 * 256 + 256) + (2 * 256 * 1024 + 1024 + 256) + 2 * 2 * 256
    assert neox.model_type == "gpt_neox" and count_params(neox).total == per_layer + 2 * 100 * 256 + 2 * 256
