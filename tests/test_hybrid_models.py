"""Hybrid attention + recurrent models: Qwen3-Next / Qwen3.5 (gated DeltaNet), Nemotron-H, Granite 4.0-H and Bamba
(Mamba-2), Jamba (Mamba-1 + MoE), plain Mamba-2; and the Qwen3-VL vision tower.

Exact counts checked here are published safetensors counts (cited per test); per-tensor shapes follow transformers'
modeling code (Mamba2Mixer, Qwen3NextGatedDeltaNet, JambaMambaMixer, GraniteMoeHybrid), written out by hand below.
"""

from __future__ import annotations

import json

import pytest

from conftest import write_gguf_header

from vramplan.api import load_model
from vramplan.core.memory import kv_bytes_per_token, kv_cache
from vramplan.core.model import FULL, MAMBA, NOMIX, count_params, layer_groups
from vramplan.errors import InvalidModelSpec
from vramplan.sources.hf_config import parse_config


def _shapes(spec, kind, mlp=None):
    for g in layer_groups(spec):
        if g.kind == kind and (mlp is None or g.mlp == mlp):
            return {t.name: t.shape for t in g.tensors}
    raise AssertionError(f"no {kind} layer")


def test_qwen3_next_counts_equal_the_safetensors():
    """A model-inspector report of the Qwen3-Next-80B-A3B-Instruct snapshot (gogongxt/python@ec996269,
    scripts/models/qwen3_next_80b_a3b_instruct.md) counts 81,324,862,720 parameters in its 41 safetensors files, of
    which the mtp.* tensors are 1,650,471,424."""
    spec = load_model("qwen3-next-80b-a3b-instruct").spec
    pc = count_params(spec)
    assert pc.total == 79_674_391_296
    assert pc.mtp == 1_650_471_424
    assert pc.total + pc.mtp == 81_324_862_720
    assert spec.kinds.count(FULL) == 12 and spec.kinds.count(MAMBA) == 36
    lin = _shapes(spec, MAMBA)  # shapes listed in the same report
    assert lin["linear_attn.in_proj_qkvz.weight"] == (12288, 2048)
    assert lin["linear_attn.in_proj_ba.weight"] == (64, 2048)
    assert lin["linear_attn.conv1d.weight"] == (8192, 1, 4)
    assert lin["linear_attn.out_proj.weight"] == (2048, 4096)
    assert _shapes(spec, FULL)["self_attn.q_proj.weight"] == (8192, 2048)  # 2 x heads x head_dim: output gate


def test_qwen3_next_cache_and_state():
    spec = load_model("qwen3-next-80b-a3b-instruct").spec
    assert kv_bytes_per_token(spec) == 12 * 2 * 2 * 256 * 2  # 12 attention layers, 2 KV heads, K and V, bf16
    # per DeltaNet layer and sequence: conv state (2 x 16 x 128 + 32 x 128 channels x 4) + recurrent 32 x 128 x 128
    state = 36 * ((2 * 16 * 128 + 32 * 128) * 4 * 2 + 32 * 128 * 128 * 2)
    kv = kv_cache(spec, context=100_000, batch=3)
    assert kv.state_bytes_per_seq == state
    assert kv.total_bytes == 3 * state + 3 * 100_000 * 12 * 2 * 2 * 256 * 2


def test_qwen3_vl_8b_equals_the_hub_count():
    """HF Hub API for Qwen/Qwen3-VL-8B-Instruct@0c351dd0: safetensors parameters BF16 8,767,123,696 (quoted in the
    Cosmos-Reason2-8B model card, which shares the architecture, and in several public inventories)."""
    assert count_params(load_model("qwen3-vl-8b-instruct").spec).total == 8_767_123_696


def test_qwen3_5_reads_text_and_vision_and_fp32_state():
    spec = load_model("qwen3.5-27b").spec
    assert spec.ssm_variant == "gated_deltanet" and spec.ssm_state_bytes == 4  # mamba_ssm_dtype float32
    assert dict(spec.extra_params)["vision_tower"] > 0 and spec.mtp_layers == 1
    moe = load_model("qwen3.5-35b-a3b").spec
    assert moe.is_moe and moe.intermediate_size == 0 and all(m == "moe" for m in moe.mlps)


def test_nemotron_h_blocks_cache_and_counts():
    spec = load_model("nemotron-3-nano-30b-a3b").spec
    pattern = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
    assert spec.kinds == tuple({"M": MAMBA, "*": FULL, "E": NOMIX}[c] for c in pattern)
    attn = pattern.count("*")
    assert kv_bytes_per_token(spec) == attn * 2 * 2 * 128 * 2
    m = _shapes(spec, MAMBA)
    di, g, n, h, heads = 64 * 64, 8, 128, 2688, 64
    assert m["mixer.in_proj.weight"] == (2 * di + 2 * g * n + heads, h)
    assert m["mixer.conv1d.weight"] == (di + 2 * g * n, 1, 4)
    assert m["mixer.norm.weight"] == (di,) and m["mixer.out_proj.weight"] == (h, di)
    e = _shapes(spec, NOMIX, "moe")
    assert "mlp.experts.gate_proj" not in e and e["mlp.experts.up_proj"] == (128, 1856, h)  # relu^2: no gate
    assert _shapes(spec, FULL).keys().isdisjoint({"mlp.up_proj.weight", "mlp.fc1.weight"})  # attention-only block
    pc = count_params(spec)
    assert round(pc.total / 1e8) == 316  # NVIDIA: 31.6B total parameters
    assert round(pc.active / 1e8) == 36  # ~3.6B active (embeddings included)
    state = kv_cache(spec, context=1024).state_bytes_per_seq
    assert state == pattern.count("M") * ((di + 2 * g * n) * 4 * 2 + di * n * 4)  # SSM cache fp32


def test_bamba_mamba2_shapes_and_published_size():
    spec = load_model("bamba-9b").spec
    m = _shapes(spec, MAMBA)
    h, di, heads, n = 4096, 8192, 128, 128
    assert m["mixer.in_proj.weight"] == (2 * di + 2 * n + heads, h)
    assert m["mixer.dt_bias"] == (heads,) and m["mixer.A_log"] == (heads,) and m["mixer.D"] == (heads,)
    assert [i for i, k in enumerate(spec.kinds) if k == FULL] == [9, 18, 27]
    assert round(count_params(spec).total / 1e7) == 978  # "9.78B" (transformers Bamba docs)


GRANITE_H = {  # the shape of a Granite 4.0-H config (granitemoehybrid), small sizes
    "model_type": "granitemoehybrid", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 64, "shared_intermediate_size": 512, "num_local_experts": 8,
    "num_experts_per_tok": 2, "vocab_size": 1000, "layer_types": ["mamba", "mamba", "attention", "mamba"],
    "mamba_n_heads": 8, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 16, "mamba_d_conv": 4,
    "mamba_expand": 2, "tie_word_embeddings": True,
}


def test_granite_4_h_layers():
    spec = parse_config(GRANITE_H)
    assert spec.kinds == (MAMBA, MAMBA, FULL, MAMBA) and spec.num_experts == 8
    m = _shapes(spec, MAMBA)
    assert m["mlp.experts.gate_proj"] == (8, 64, 256)  # intermediate_size is the per-expert width
    assert m["mlp.shared_experts.gate_proj.weight"] == (512, 256)
    assert m["mixer.in_proj.weight"] == (2 * 512 + 2 * 16 + 8, 256)
    dense = parse_config({**GRANITE_H, "num_local_experts": 0})
    assert dense.intermediate_size == 512 and not dense.is_moe  # micro: the shared MLP is the MLP


def test_jamba_pattern_and_mixer_norms():
    cfg = {"model_type": "jamba", "hidden_size": 256, "num_hidden_layers": 16, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, "num_experts": 4,
           "num_experts_per_tok": 2, "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_dt_rank": 16}
    spec = parse_config(cfg)
    assert [i for i, k in enumerate(spec.kinds) if k == FULL] == [4, 12]  # i % 8 == 4
    assert spec.moe_mask == tuple(i % 2 == 1 for i in range(16))
    m = _shapes(spec, MAMBA)
    assert m["mixer.dt_layernorm.weight"] == (16,) and m["mixer.b_layernorm.weight"] == (16,)
    assert m["mixer.x_proj.weight"] == (16 + 2 * 16, 512)


def test_plain_mamba2():
    cfg = {"model_type": "mamba2", "hidden_size": 256, "num_hidden_layers": 2, "num_heads": 8, "head_dim": 64,
           "n_groups": 2, "state_size": 32, "conv_kernel": 4, "expand": 2, "vocab_size": 1000}
    spec = parse_config(cfg)
    per_layer = ((2 * 512 + 2 * 2 * 32 + 8) * 256 + (512 + 2 * 2 * 32) * 4 + (512 + 2 * 2 * 32) + 3 * 8 + 512
                 + 256 * 512 + 256)  # in_proj, conv w+b, dt_bias/A_log/D, gated norm, out_proj, block norm
    assert count_params(spec).total == 2 * per_layer + 1000 * 256 * 2 + 256


@pytest.mark.parametrize("change, field", [
    ({"hybrid_override_pattern": "M*X"}, "hybrid_override_pattern"),
    ({"hybrid_override_pattern": "M*"}, "hybrid_override_pattern"),
    ({"n_groups": 3}, "n_groups"),
])
def test_bad_nemotron_h_configs_name_the_field(change, field):
    cfg = {"model_type": "nemotron_h", "hidden_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512, "vocab_size": 1000,
           "hybrid_override_pattern": "M*-", "mamba_num_heads": 8, "mamba_head_dim": 64, "n_groups": 1,
           "ssm_state_size": 16}
    parse_config(cfg)
    with pytest.raises(InvalidModelSpec) as err:
        parse_config({**cfg, **change})
    assert field in str(err.value)


def test_hybrids_run_through_every_command(run_json):
    for model in ("qwen3-next-80b-a3b-instruct", "nemotron-3-nano-30b-a3b", "bamba-9b", "qwen3.5-35b-a3b"):
        inf = run_json("inference", model, "--max-model-len", "32k")
        assert inf["memory"]["kv_cache"] > 0
        tr = run_json("train", model, "--method", "lora", "--seq-len", "1k")
        assert tr["memory"]["activations"] > 0 and tr["trainable_params"] > 0


def test_kimi_and_minimax_parse():
    kimi = load_model("kimi-k2-instruct").spec
    assert kimi.is_mla and kimi.num_experts == 384
    assert round(count_params(kimi).total / 1e12, 2) == 1.03  # "1T total"
    mm = load_model("minimax-m2.5").spec
    assert mm.qk_norm_full and mm.score_correction_bias
    assert _shapes(mm, FULL)["self_attn.q_norm.weight"] == (48 * 128,)
    assert round(count_params(mm).total / 1e9) == 229


def test_jamba_1_5_mini_size():
    """AI21-Jamba-1.5-Mini's architecture fields (as transcribed in sdpython/experimental-experiment
    llm_model_helper.py get_ai21_jamba_15_mini, citing the HF config.json); Jamba is published as 52B total / 12B
    active, and the open-llm-leaderboard request file for Jamba-v0.1 (same architecture) says 51.57 (billions)."""
    cfg = {"model_type": "jamba", "attn_layer_offset": 4, "attn_layer_period": 8, "expert_layer_offset": 1,
           "expert_layer_period": 2, "hidden_size": 4096, "intermediate_size": 14336, "mamba_conv_bias": True,
           "mamba_d_conv": 4, "mamba_d_state": 16, "mamba_dt_rank": 256, "mamba_expand": 2, "mamba_proj_bias": False,
           "num_attention_heads": 32, "num_experts": 16, "num_experts_per_tok": 2, "num_hidden_layers": 32,
           "num_key_value_heads": 8, "tie_word_embeddings": False, "vocab_size": 65536}
    pc = count_params(parse_config(cfg))
    assert round(pc.total / 1e7) == 5157
    assert round(pc.active / 1e9) == 12


def test_vllm_hybrid_block_size_and_state_page():
    """vLLM pads a recurrent layer's state page to the attention page of a block of 16k tokens (mamba_utils.py,
    HybridAttentionMambaModelConfig). Qwen3-Next at TP=2: conv (2 x 16 x 128 + 32 x 128) / 2 channels x 3 columns + recurrent 16 x 128 x 128, bf16
    = 548,864 B (4,096 conv channels per rank); one token of one attention layer on a rank = 2 x 1 x 256 x 2 = 1,024 B -> 544-token blocks."""
    from vramplan.engines.vllm import hybrid_block_size, mamba_state_page_bytes

    spec = load_model("qwen3-next-80b-a3b-instruct").spec
    assert mamba_state_page_bytes(spec, 2, 2, (0, 10, 2)) == (4096 * 3 + 16 * 128 * 128) * 2 == 548_864
    assert [hybrid_block_size(spec, "auto", 2, tp, None, (0, 21, 0))[0] for tp in (1, 2, 4, 8)] == [544, 544, 272, 144]
    nano = load_model("nemotron-3-nano-30b-a3b").spec  # config: mamba_ssm_cache_dtype float32
    di, g, n = 64 * 64, 8, 128
    assert mamba_state_page_bytes(nano, 1, 2, (0, 21, 0)) == (di + 2 * g * n) * 3 * 2 + di * n * 4


def test_vllm_hybrid_against_a_startup_log(run_json):
    """vLLM 0.10.2, Qwen3-Next-80B-A3B-Instruct, TP=2 on H200, max_model_len 262,144, default utilization 0.9 (a
    public startup log): 'Setting attention block size to 544 tokens', 'Padding mamba page size by 1.49%', 'Model
    loading took 74.2812 GiB', 'Available KV cache memory: 44.59 GiB', 'GPU KV cache size: 973,760 tokens',
    'Maximum concurrency for 262,144 tokens per request: 14.77x'."""
    out = run_json("inference", "qwen3-next-80b-a3b-instruct", "--engine", "vllm", "--engine-version", "0.10.2",
                   "-tp", "2", "--gpu", "h200", "--max-model-len", "262144")
    cap = out["capacity"]
    assert cap["block_size"] == 544
    assert abs(out["memory"]["weights"] / (74.2812 * 2**30) - 1) < 0.005
    assert abs(cap["kv_cache_available_bytes"] / (44.59 * 2**30) - 1) < 0.02
    assert abs(cap["kv_cache_tokens"] / 973_760 - 1) < 0.02
    assert abs(cap["max_concurrency"] / 14.77 - 1) < 0.02
    # the token count divides the pool by all four groups (1 attention + 3 recurrent), as vLLM <= 0.23 logs it
    assert cap["kv_cache_tokens"] == cap["kv_cache_blocks"] // 4 * 544


def test_vllm_refuses_what_it_does_not_model(run_cli):
    code, _, err = run_cli("inference", "qwen3-next-80b-a3b-instruct", "--engine", "vllm", "--engine-version",
                           "0.6.5", "-tp", "4", "--gpu", "h100")
    assert code == 1 and "V0" in err


def test_llamacpp_recurrent_state_buffer(run_json):
    """llama.cpp log for Qwen3.6-27B (Qwen3.5-27B's architecture), -c 32768 -np 1: 'llama_memory_recurrent: size =
    149.62 MiB (1 cells, 64 layers, 1 seqs), R (f32): 5.62 MiB, S (f32): 144.00 MiB' (48 recurrent layers)."""
    out = run_json("inference", "qwen3.5-27b", "--quantization", "Q4_K_M", "--engine", "llama.cpp",
                   "--max-model-len", "32768")
    r = 48 * 3 * (2 * 16 * 128 + 48 * 128) * 4
    s = 48 * 48 * 128 * 128 * 4
    assert round(r / 2**20, 2) == 5.62 and s == 144 * 2**20
    attention = 16 * 32768 * 2 * 4 * 256 * 2  # 16 attention layers, K and V, 4 KV heads x 256, f16
    assert out["memory"]["kv_cache"] == attention + r + s
    assert any("149.62 MiB" in n for n in out["explain"])


@pytest.mark.parametrize("model, trunk, mtp", [
    ("deepseek-v3.2", 671_877_944_064, 13_477_385_728),  # HF safetensors total 685,355,329,792
    ("glm-5", None, None),  # HF safetensors total 753,864,139,008
    ("glm-5.2", None, None),  # HF safetensors total 753,329,940,480 (no indexer in the 57 IndexCache-shared layers)
])
def test_dsa_models_equal_the_hub_counts(model, trunk, mtp):
    """Totals from the Hugging Face API's safetensors counts (an HF-API-derived table, public; DeepSeek-V3.2 counts
    no FP8 scale tensors, the BF16 GLM-5 repos have none)."""
    published = {"deepseek-v3.2": 685_355_329_792, "glm-5": 753_864_139_008, "glm-5.2": 753_329_940_480}[model]
    pc = count_params(load_model(model).spec)
    assert pc.total + pc.mtp == published
    if trunk:
        assert (pc.total, pc.mtp) == (trunk, mtp)


def test_dsa_indexer_shapes_and_caches(run_json):
    spec = load_model("deepseek-v3.2").spec
    a = _shapes(spec, "mla")
    assert a["self_attn.indexer.wq_b.weight"] == (64 * 128, 1536) and a["self_attn.indexer.wk.weight"] == (128, 7168)
    assert a["self_attn.indexer.weights_proj.weight"] == (64, 7168) and a["self_attn.indexer.k_norm.bias"] == (128,)
    assert spec.kv_elements_per_token("mla") == 512 + 64 + 128  # latent + rope key + indexer key
    out = run_json("inference", "deepseek-v3.2", "--engine", "vllm", "-tp", "8", "--gpu", "h200",
                   "--kv-cache-dtype", "fp8", "--max-model-len", "32k")
    assert out["kv_bytes_per_token"] == 61 * (656 + 132)  # fp8 becomes fp8_ds_mla on the sparse backend
    glm52 = load_model("glm-5.2").spec
    assert sum(glm52.indexer_mask) == 21


@pytest.mark.parametrize("model, published", [
    # llama.cpp's model_n_params of the models' GGUF conversions (llama-bench output in public notes)
    ("nemotron-3-nano-30b-a3b", 31_577_940_288),
    ("nemotron-3-super-120b-a12b-fp8", 120_668_707_840),
    # a public audit that summed the logical elements of every safetensors header of the checkpoints
    ("kimi-k2-instruct", 1_026_408_232_448),
    ("kimi-k2.5", 1_026_879_376_368),  # text + MoonViT vision tower + projector
])
def test_more_exact_counts(model, published):
    assert count_params(load_model(model).spec).total == published


def test_nemotron_latent_moe_and_list_pattern():
    spec = load_model("nemotron-3-super-120b-a12b-fp8").spec
    e = _shapes(spec, NOMIX, "moe")
    assert e["mlp.experts.up_proj"] == (512, 2688, 1024) and e["mlp.fc1_latent_proj.weight"] == (1024, 4096)
    ultra = load_model("nemotron-3-ultra-550b-a55b").spec  # no num_hidden_layers: from layers_block_type
    assert ultra.num_layers == len(ultra.kinds) > 0 and round(count_params(ultra).total / 1e10) == 55


def test_qwen35_gguf_metadata_maps_to_the_hybrid(tmp_path, run_json):
    """A Qwen3.5-shaped GGUF header (llama.cpp's converter keys): ssm.* hold the gated DeltaNet sizes, the recurrent
    layers are those with 0 KV heads."""
    path = write_gguf_header(
        tmp_path / "tiny-qwen35.gguf", "qwen35", layers=4, hidden=256, heads=4, kv_heads=[0, 0, 0, 2], key_length=64,
        value_length=64, ff=512, uint32=(("ssm.conv_kernel", 4), ("ssm.state_size", 32), ("ssm.group_count", 2),
                                         ("ssm.time_step_rank", 4), ("ssm.inner_size", 4 * 32),
                                         ("full_attention_interval", 4)))
    spec = load_model(str(path)).spec
    assert spec.kinds == (MAMBA, MAMBA, MAMBA, FULL) and spec.ssm_variant == "gated_deltanet"
    assert (spec.lin_k_heads, spec.lin_v_heads, spec.lin_k_dim, spec.lin_v_dim) == (2, 4, 32, 32)
    out = run_json("inference", str(path), "--engine", "llama.cpp", "--max-model-len", "4096")
    rs = 3 * 4 * (3 * (2 * 2 * 32 + 4 * 32) + 32 * 4 * 32)  # 3 layers, f32, R (d_conv-1)(inner+2*groups*state) + S
    attention = 4096 * 2 * 2 * 64 * 2  # one attention layer, K and V, 2 KV heads x 64, f16
    assert out["memory"]["kv_cache"] + out["host_memory"]["kv_cache"] == attention + rs


@pytest.mark.parametrize("model, published", [
    ("gemma-4-26b-a4b", 25_805_936_206),  # HF safetensors headers (public audits; the index's total double-counts)
    ("gemma-4-31b-it", 31_273_088_876),
])
def test_gemma4_counts(model, published):
    assert count_params(load_model(model).spec).total == published


def test_gemma4_layers_and_cache():
    spec = load_model("gemma-4-26b-a4b").spec
    full, sliding = _shapes(spec, FULL), _shapes(spec, "sliding")
    assert "self_attn.v_proj.weight" not in full and full["self_attn.k_proj.weight"] == (2 * 512, 2816)
    assert sliding["self_attn.v_proj.weight"] == (8 * 256, 2816)
    assert sliding["experts.gate_proj"] == (128, 704, 2816) and sliding["mlp.gate_proj.weight"] == (2112, 2816)
    pc = count_params(spec)
    assert pc.active - sum(n for _, n in spec.extra_params) == 3_822_530_590  # text model, per token
    kv = kv_cache(spec, context=32768)
    assert kv.total_bytes == 5 * 32768 * 2 * 2 * 512 * 2 + 25 * 1024 * 2 * 8 * 256 * 2  # sliding capped at 1024


@pytest.mark.parametrize("model, published", [("gemma-4-e2b-it", 5_123_178_051), ("gemma-4-e4b-it", 7_996_156_490)])
def test_gemma4_e_models(model, published):
    """HF API counts; text + per-layer embeddings + 768-wide vision tower + Conformer audio tower + projectors (the Hub
    leaves out the 0-dim clip bounds of the clipped linears, and so does vramplan)."""
    spec = load_model(model).spec
    assert count_params(spec).total == published
    own = spec.num_layers - spec.kv_shared_layers
    assert spec.cache_kinds[own:] == ("mlp_only",) * spec.kv_shared_layers  # shared layers cache nothing
    a = dict(spec.extra_params)
    assert a["audio_tower"] == 304_824_608 and a["vision_tower"] == 167_364_608


def test_gemma4_e2b_cache_and_double_wide_mlp(run_json):
    spec = load_model("gemma-4-e2b-it").spec
    kv = kv_cache(spec, context=32768)
    assert kv.total_bytes == 12 * 512 * 2 * 1 * 256 * 2 + 3 * 32768 * 2 * 1 * 512 * 2  # 12 sliding + 3 full own caches
    assert _shapes(spec, "sliding", "dense2x")["mlp.gate_proj.weight"] == (2 * 6144, 1536)
    out = run_json("inference", "gemma-4-e2b-it", "--engine", "vllm", "--gpu", "rtx-4090", "--max-model-len", "8k")
    assert out["capacity"]["kv_cache_tokens"] > 0


def test_gemma4_kv_sharing_needs_a_layer_to_share_from():
    from vramplan.catalog import models as cat

    with open(cat.entry_file(cat.find_model("gemma-4-e2b-it"), "config.json")) as fh:
        raw = json.load(fh)
    raw["text_config"]["num_kv_shared_layers"] = 35
    with pytest.raises(InvalidModelSpec) as err:
        parse_config(raw)
    assert "num_kv_shared_layers" in str(err.value)


def test_pool_smaller_than_one_request_says_so(run_cli):
    code, _, err = run_cli("inference", "gemma-4-31b-it", "--engine", "sglang", "--gpu", "h200")
    assert code == 1 and "less than one 262,144-token request" in err and "--max-model-len" in err


@pytest.mark.parametrize("model, published", [
    ("llama-4-scout-17b-16e-instruct", 108_641_793_536),  # HF safetensors count (public model tables)
    ("llama-4-maverick-17b-128e-instruct", 401_583_781_376),  # Fireworks' model listing (billing export docs)
])
def test_llama4_with_its_vision_encoder(model, published):
    spec = load_model(model).spec
    assert count_params(spec).total == published
    v = dict(spec.extra_params)
    assert v["multi_modal_projector"] == 4096 * 5120  # linear_1, no bias


def test_vllm_unifies_page_sizes_of_gemma4_layer_kinds():
    """Gemma 4 31B: a sliding layer's token is 2 x 16 x 256 x 2 B, a full layer's 2 x 4 x 512 x 2 B; vLLM
    (unify_kv_cache_spec_page_size) gives the smaller-page kind proportionally more tokens per block."""
    from vramplan.engines.vllm import kv_groups

    spec = load_model("gemma-4-31b-it").spec
    groups = kv_groups(spec, tuple(range(spec.num_layers)), "auto", 2, 1, 16)
    assert {g.page_bytes for g in groups} == {16 * 16384}
    assert {(g.kind, g.block) for g in groups} == {("sliding", 0), ("full", 32)}
    assert sum(1 for g in groups if g.kind == "full") == 1 and len(groups) == 6  # group size 10 = the full layers


def test_sglang_recurrent_state_pool(run_json):
    """SGLang log (NVIDIA-Nemotron-3-Nano-30B-A3B, TP4, --disable-radix-cache --max-running-requests 8): 'Mamba Cache is
    allocated. max_mamba_cache_size: 8, conv_state size: 0.00 GB, ssm_state size: 0.10 GB' and 'KV Cache is allocated.
    #tokens: 1557504, K size: 2.23 GB' (K: 1,536 B per token, so 3,072 B per token with V)."""
    from vramplan.engines.sglang import cell_size_bytes, mamba_state_bytes_per_request

    spec = load_model("nemotron-3-nano-30b-a3b").spec
    assert cell_size_bytes(spec, "auto", 2, 4) == 3072
    ssm = 23 * 9 * (64 // 4) * 64 * 128 * 4  # 23 Mamba layers, 8 + 1 slots, fp32
    conv = 23 * 9 * (64 * 64 + 2 * 8 * 128) // 4 * 3 * 2
    assert round(ssm / 2**30, 2) == 0.10 and round(conv / 2**30, 2) == 0.00
    assert 9 * mamba_state_bytes_per_request(spec, 4) == ssm + conv
    out = run_json("inference", "nemotron-3-nano-30b-a3b", "--engine", "sglang", "-tp", "4", "--gpu", "h100",
                   "--max-num-seqs", "8", "--max-model-len", "8192")
    cap = out["capacity"]
    assert cap["mamba_cache_size"] == 8 and cap["mamba_cache_bytes"] == ssm + conv
    assert cap["kv_cache_tokens"] == (out["memory"]["kv_cache"] - ssm - conv) // 3072


def test_nemotron_nas_blocks():
    """Llama-3.3-Nemotron-Super-49B-v1: 49,867,145,216 bf16 parameters (a public note of the checkpoint)."""
    spec = load_model("llama-3.3-nemotron-super-49b-v1").spec
    assert count_params(spec).total == 49_867_145_216
    assert spec.kinds.count(FULL) == 49 and spec.kinds.count(NOMIX) == 31
    assert kv_bytes_per_token(spec) == 49 * 2 * 8 * 128 * 2
    assert sorted(set(spec.layer_intermediate)) == [2816, 5632, 7168, 14336, 17920, 28672]


@pytest.mark.parametrize("block, field", [
    ({"attention": {"n_heads_in_group": 7, "no_op": False}, "ffn": {"ffn_mult": 1.0}}, "n_heads_in_group"),
    ({"attention": {"no_op": True}, "ffn": {"ffn_mult": -1}}, "ffn_mult"),
    ({"attention": {"replace_with_linear": True}, "ffn": {"ffn_mult": 1.0}}, "block_configs[0]"),
    ("nope", "block_configs[0]"),
])
def test_bad_nemotron_nas_blocks_name_the_field(block, field):
    from vramplan.catalog import models as cat

    with open(cat.entry_file(cat.find_model("llama-3.3-nemotron-super-49b-v1"), "config.json")) as fh:
        raw = json.load(fh)
    raw["block_configs"][0] = block
    with pytest.raises(InvalidModelSpec) as err:
        parse_config(raw)
    assert field in str(err.value)


@pytest.mark.parametrize("model, main, mtp, active, kv_1m, checkpoint", [
    # a public tensor-by-tensor inventory of each HF checkpoint (name, shape, dtype of every tensor) gives these
    # logical counts (FP4 values counted once, scales and the hash-routing table left out) and byte totals
    ("deepseek-v4-flash", 284_332_240_471, 6_610_048_891, 13_799_632_471, 6.724, 159_609_485_896),
    ("deepseek-v4-pro", 1_572_997_201_763, 25_840_145_979, 49_779_081_059, 9.625, 864_704_792_696),
])
def test_deepseek_v4(model, main, mtp, active, kv_1m, checkpoint):
    from vramplan.api import model_weight_bytes
    from vramplan.catalog.formats import format_from_quant_config
    from vramplan.core.model import mtp_tensors

    spec = load_model(model).spec
    pc = count_params(spec)
    assert (pc.total, pc.mtp, pc.active) == (main, mtp, active)
    # bf16 KV at 1M tokens: 128-token windows + compressed entries (+ indexer keys), as community calculations give
    assert round(kv_cache(spec, context=2**20).total_bytes / 2**30, 3) == kv_1m
    fmt = format_from_quant_config(spec.quant_config)  # FP8 128x128 e8m0 scales + MXFP4 routed experts
    main_bytes = model_weight_bytes(spec, fmt).total_bytes
    stored = main_bytes + sum(fmt.tensor_bytes(t) for t in mtp_tensors(spec))
    # exact: FP8 linears with e8m0 block scales, MXFP4 experts, fp32 hyper-connection / sink / compressor /
    # score-bias tensors, the int64 hash tables and the MTP layer's FP8 e/h projections
    assert stored == checkpoint
    if model == "deepseek-v4-flash":
        # the 0731 re-release's tensor table (gogongxt/python@c1feefbd scripts/models/deepseek_v4_flash_0731.md):
        # main-model bytes with the fp32 hyper-connection / sink / compressor-position tensors and the int64
        # tid2eid hash-routing table (3 x 129,280 x 6, stored, not a learned parameter): exact to the byte
        assert main_bytes == 156_015_698_140


def test_deepseek_v4_engines_say_not_modelled(run_cli):
    code, _, err = run_cli("inference", "deepseek-v4-flash", "--engine", "vllm", "-tp", "4", "--gpu", "h200")
    assert code == 1 and "DeepSeek-V4" in err and "not modelled" in err


@pytest.mark.parametrize("model, main, with_mtp", [
    ("step-3.5-flash", 196_956_130_368, 199_384_301_376),  # = the HF total_params of Step-3.5-Flash (public audit)
    ("mimo-v2-flash", 308_778_780_864, 309_766_601_088),  # card: 309B; "309.77 B" in public GGUF metadata examples
    ("minimax-m3", 426_174_572_928, 426_174_572_928),  # text model; card ~428B with the vision tower; no MTP released
])
def test_2026_moe_models(model, main, with_mtp):
    pc = count_params(load_model(model).spec)
    assert (pc.total, pc.total + pc.mtp) == (main, with_mtp)


def test_2026_moe_layer_details():
    step = load_model("step-3.5-flash").spec
    assert _shapes(step, "sliding", "moe")["self_attn.q_proj.weight"] == (96 * 128, 4096)
    assert _shapes(step, FULL, "moe")["self_attn.g_proj.weight"] == (64, 4096)
    mimo = load_model("mimo-v2-flash").spec
    assert kv_bytes_per_token(mimo) == (9 * 4 + 39 * 8) * (192 + 128) * 2  # full 4 KV heads, sliding 8, v 128
    assert "self_attn.sinks" in _shapes(mimo, "sliding", "moe") and "self_attn.sinks" not in _shapes(mimo, FULL, "moe")
    m3 = load_model("minimax-m3").spec
    assert kv_bytes_per_token(m3) == 60 * 1024 * 2 + 57 * 128 * 2  # K/V on every layer + index keys on sparse ones
    assert sum(m3.indexer_mask) == 57


def test_pipeline_stages_follow_the_real_layers(run_json):
    """Review findings: a vLLM stage made only of KV-sharing layers has no pool (was a crash); the KV of the heaviest
    stage sums that stage's own layers (cache layers cluster in Gemma 4 E2B and Nemotron-NAS); encoders sit on the
    first stage."""
    out = run_json("inference", "gemma-4-e2b-it", "--engine", "vllm", "-pp", "2", "--gpu", "h100")
    assert out["capacity"]["kv_cache_tokens"] > 0
    spec = load_model("gemma-4-e2b-it").spec
    kv1 = kv_cache(spec, context=32768).total_bytes
    kv2 = kv_cache(spec, context=32768, pp=2).total_bytes
    # layers 0-16 hold all 15 caches (12 sliding + 3 full): the first stage carries the whole cache
    assert kv2 == kv1
    nas = load_model("llama-3.3-nemotron-super-49b-v1").spec
    first = sum(1 for k in nas.cache_kinds[:40] if k == FULL)
    second = sum(1 for k in nas.cache_kinds[40:] if k == FULL)
    assert kv_cache(nas, 4096, pp=2).total_bytes == max(first, second) * 4096 * 2 * 8 * 128 * 2
    from vramplan.core.memory import weights_per_gpu_bytes
    from vramplan.core.precision import per_layer_bytes, weight_bytes, dense_format

    vl = load_model("qwen3-vl-8b-instruct").spec
    fmt = dense_format("bf16", 2)
    wb = weight_bytes(vl, fmt)
    stage0 = weights_per_gpu_bytes(vl, wb, pp=2, layer_bytes=per_layer_bytes(vl, fmt))
    assert stage0 >= 2 * sum(n for _, n in vl.extra_params)  # the vision tower is on a stage


def test_training_activations_use_per_kind_sizes_and_layer_widths():
    from vramplan.core.training_activations import ActivationModel, layer_terms

    m = ActivationModel(full=True, attention="sdpa", use_cache=False)
    step = load_model("step-3.5-flash").spec
    q = {k: dict(layer_terms(step, k, True, m, 1024, "moe"))["attention: Q (post-RoPE)"] for k in (FULL, "sliding")}
    assert q["sliding"] == 2 * 96 * 128 and q[FULL] == 2 * 64 * 128
    nas = load_model("llama-3.3-nemotron-super-49b-v1").spec
    narrow = dict(layer_terms(nas, FULL, False, m, 1024, "dense", 2816))
    wide = dict(layer_terms(nas, FULL, False, m, 1024, "dense", 28672))
    assert wide["mlp: gate/act/up outputs"] == 28672 / 2816 * narrow["mlp: gate/act/up outputs"]
    g4 = load_model("gemma-4-26b-a4b").spec
    both = dict(layer_terms(g4, "sliding", True, m, 1024, "dense+moe", 2112))
    assert "mlp: gate/act/up outputs" in both and any(k.startswith("experts:") for k in both)


def test_nemotron_h_gguf_metadata(tmp_path):
    """A Nemotron-H-shaped GGUF header (llama.cpp keys): per-layer KV heads and feed-forward lengths tell the block
    kinds (attention / MLP / Mamba-2); the ssm.* keys give the mixer."""
    path = write_gguf_header(
        tmp_path / "tiny-nemotron-h.gguf", "nemotron_h", layers=4, hidden=256, heads=4, kv_heads=[0, 0, 2, 0],
        ff=[0, 512, 0, 0], key_length=64, uint32=(("ssm.conv_kernel", 4), ("ssm.state_size", 32),
                                                  ("ssm.group_count", 2), ("ssm.time_step_rank", 8),
                                                  ("ssm.inner_size", 512)))
    spec = load_model(str(path)).spec
    assert spec.kinds == (MAMBA, NOMIX, FULL, MAMBA) and spec.mlps == ("none", "dense", "none", "none")
    assert (spec.ssm_heads, spec.d_inner, spec.ssm_groups, spec.ssm_state_size) == (8, 512, 2, 32)


def test_pool_capacity_charges_each_sequence_its_recurrent_state():
    from vramplan.core.memory import pool_capacity

    assert pool_capacity(1000, 10, 0, 50) == (100, 2.0)  # attention only: tokens / context
    tokens, seqs = pool_capacity(1000, 10, 500, 50)  # each sequence: 50 x 10 + 500 = 1000 B
    assert (tokens, seqs) == (50, 1.0)
    assert pool_capacity(1000, 0, 250, 1_000_000) == (0, 4.0)  # purely recurrent: no tokens cached, 4 states
    assert pool_capacity(-5, 10, 500, 50) == (0, 0.0)


def test_purely_recurrent_capacity_is_counted_in_sequences(tmp_path, capsys):
    """A Mamba model caches no tokens: the plan used to print ~73 billion 'KV tokens' (free bytes / 1 B)."""
    from vramplan.cli import main

    cfg = {"model_type": "mamba", "hidden_size": 2560, "num_hidden_layers": 64, "state_size": 16, "conv_kernel": 4,
           "expand": 2, "vocab_size": 50280, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    for extra in ([], ["--engine", "transformers"]):
        assert main(["inference", str(path), "--gpu", "h100", "--max-model-len", "8k", "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        spec = parse_config(cfg, "m")
        state = 64 * spec.ssm_state_bytes_per_seq(1)
        room = out["capacity"]["gpu_memory_bytes"] - (out["memory"]["total"] - out["memory"]["kv_cache"])
        assert out["capacity"]["kv_cache_tokens"] == 0
        assert out["capacity"]["max_concurrency"] == round(room / state, 2)
        assert main(["inference", str(path), "--gpu", "h100", "--max-model-len", "8k", *extra]) == 0
        assert "recurrent state capacity" in capsys.readouterr().out


def test_hybrid_capacity_counts_the_state_of_every_sequence():
    from vramplan.api import plan_inference

    r = plan_inference(load_model("bamba-9b"), max_model_len=32768, gpu="h200")
    room = r["capacity"]["gpu_memory_bytes"] - (r["memory"]["total"] - r["memory"]["kv_cache"])
    spec = load_model("bamba-9b").spec
    state = kv_cache(spec, 32768).state_bytes_per_seq
    per_seq = 32768 * kv_bytes_per_token(spec) + state
    assert state > 0 and r["capacity"]["max_concurrency"] == round(room / per_seq, 2)
    assert r["capacity"]["kv_cache_tokens"] == int(room / per_seq * 32768)


def test_kimi_linear_counts_equal_the_safetensors():
    """A model-inspector report of the Kimi-Linear-48B-A3B-Instruct snapshot (gogongxt/python@ec996269,
    scripts/models/kimi_linear_48b_a3b_instruct.md) sums its 20,493 safetensors tensors to 49,122,681,728
    parameters; KDA layers 0-2, 4-6, ... (1-based kda_layers), MLA layers 3, 7, ..., 26, layer 0 dense."""
    from vramplan.core.model import KDA, MLA

    lm = load_model("kimi-linear")
    spec = lm.spec
    assert count_params(spec).total == 49_122_681_728
    assert spec.ssm_variant == KDA and spec.ssm_state_bytes == 4
    assert [i for i, k in enumerate(spec.kinds) if k == MLA] == [3, 7, 11, 15, 19, 23, 26]
    kda = _shapes(spec, MAMBA)
    assert kda["self_attn.q_conv1d.weight"] == (4096, 1, 4) and kda["self_attn.f_b_proj.weight"] == (4096, 128)
    assert kda["self_attn.dt_bias"] == (4096,) and kda["self_attn.b_proj.weight"] == (32, 2304)
    mla = _shapes(spec, MLA)
    assert mla["self_attn.q_proj.weight"] == (6144, 2304) and mla["self_attn.kv_a_proj_with_mqa.weight"] == (576, 2304)
    # cache: 7 MLA latents of 576 bf16 per token; per sequence 20 KDA states: q/k/v convs (K=4 columns of 3 x 4096)
    # at 16 bits and a 32 x 128 x 128 fp32 state
    assert kv_bytes_per_token(spec) == 7 * 576 * 2
    assert kv_cache(spec, 1000).state_bytes_per_seq == 20 * (3 * 4096 * 4 * 2 + 32 * 128 * 128 * 4)


def test_kimi_linear_in_vllm_uses_mla_alignment():
    """HybridAttentionMambaModelConfig: MLA hybrids align the attention block to 64 tokens (not 16) and size it by
    the MLA latent page (576 x 2 B); the KDA state (kda_state_shape: three (K-1, 4096) conv states in bf16 + a
    (32, 128, 128) fp32 state) = 2,170,880 B -> 64 x ceil(2,170,880 / (64 x 1,152)) = 1,920 tokens."""
    from vramplan.engines.vllm import hybrid_block_size, mamba_state_page_bytes

    spec = load_model("kimi-linear").spec
    assert mamba_state_page_bytes(spec, 1, 2, (0, 21, 0)) == 3 * 3 * 4096 * 2 + 32 * 128 * 128 * 4 == 2_170_880
    assert hybrid_block_size(spec, "auto", 2, 1, None, (0, 21, 0)) == (1920, 2_170_880)
    assert hybrid_block_size(spec, "auto", 2, 2, None, (0, 21, 0))[0] == 960


def test_kimi_linear_bad_layer_lists_are_named():
    from pathlib import Path

    import vramplan

    path = Path(vramplan.__file__).parent / "catalog/models/moonshotai/Kimi-Linear-48B-A3B-Instruct/config.json"
    cfg = json.loads(path.read_text())
    cfg["linear_attn_config"]["kda_layers"] = [0, 1]
    with pytest.raises(InvalidModelSpec) as e:
        parse_config(cfg, "k")
    assert "linear_attn_config.kda_layers[0]" in str(e.value)
    del cfg["linear_attn_config"]
    with pytest.raises(InvalidModelSpec) as e:
        parse_config(cfg, "k")
    assert "linear_attn_config" in str(e.value)


MIMO_V25_VISION = {"depth": 28, "fullatt_block_indexes": [0, 9, 18, 27], "hidden_act": "silu", "hidden_size": 1280,
                   "in_chans": 3, "intermediate_size": 4608, "num_heads": 32, "num_key_value_heads": 8,
                   "num_query_groups": 4, "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2,
                   "spatial_patch_size": 16, "temporal_patch_size": 2, "tokens_per_second": 2, "use_sink": True,
                   "visual_token_window_size": 64,
                   "vit_window_attn_types": [-1, 0, 0, 0, 0, 1, 1, 1, 1] * 3 + [-1], "window_size": 128}
MIMO_V25_AUDIO = {"add_post_norm": True, "audio_channels": 20, "audio_segment_size": 6000, "group_size": 4,
                  "input_full_attention": True, "input_local_attn_heads": 16, "input_local_dim": 1024,
                  "input_local_head_dim": 64, "input_local_hidden_dropout": 0.0, "input_local_intermediate_size": 4096,
                  "input_local_layers": 6, "out_hidden_size": 4096, "partial_rotary_factor": 1.0,
                  "projection_layers": 2, "rope_theta": 640000, "speech_vocab_size": "1280",
                  "speech_zeroemb_idx": "1024"}


def test_mimo_v25_text_vision_audio():
    """MiMo-V2.5 (model_type mimo_v2): MiMo-V2-Flash's text stack plus a vision and an audio tower. The checkpoint's
    tensor table (gogongxt/python@69107007 scripts/models/mimo_v2.5.md) sums to text 308,778,780,864 + vision
    728,594,432 + audio 261,127,168 (+ MTP 987,820,224); its vision/audio config blocks are copied above."""
    from pathlib import Path

    import vramplan

    flash = json.loads((Path(vramplan.__file__).parent / "catalog/models/XiaomiMiMo/MiMo-V2-Flash/config.json")
                       .read_text())
    cfg = {**flash, "model_type": "mimo_v2", "architectures": ["MiMoV2ForCausalLM"],
           "vision_config": MIMO_V25_VISION, "audio_config": MIMO_V25_AUDIO}
    spec = parse_config(cfg, "mimo-v2.5")
    extra = dict(spec.extra_params)
    assert extra["vision_tower"] + extra["multi_modal_projector"] == 728_594_432
    assert extra["audio_tower"] + extra["audio_projector"] == 261_127_168
    pc = count_params(spec)
    assert pc.total == 308_778_780_864 + 728_594_432 + 261_127_168 and pc.mtp == 987_820_224
    bad = {**cfg, "audio_config": {**MIMO_V25_AUDIO, "speech_vocab_size": "many"}}
    with pytest.raises(InvalidModelSpec) as e:
        parse_config(bad, "m")
    assert "audio_config.speech_vocab_size" in str(e.value)


def test_minimax_m3_vl_text_and_vision():
    """MiniMax-M3's released config (minimax_m3_vl): the text model under text_config (no model_type there, no
    moe_intermediate_size: intermediate_size is the expert width, dense_intermediate_size the dense one) and a CLIP-style
    rotary ViT. The checkpoint's tensor table (gogongxt/python@b5211991 scripts/models/minimax_m3.md) sums to
    427,040,140,160 = text 426,174,572,928 + vision 631,185,920 + projectors 234,381,312."""
    from pathlib import Path

    import vramplan

    text = json.loads((Path(vramplan.__file__).parent / "catalog/models/MiniMaxAI/MiniMax-M3/config.json").read_text())
    text.pop("model_type")
    text.pop("moe_intermediate_size")
    vision = {"hidden_size": 1280, "num_attention_heads": 16, "num_hidden_layers": 32, "intermediate_size": 5120,
              "patch_size": 14, "image_size": 2016, "projection_dim": 6144, "position_embedding_type": "rope",
              "model_type": "clip_vision_model", "num_channels": 3,
              "img_token_compression_config": {"image_token_compression_method": "patch_merge",
                                               "spatial_merge_size": 2, "temporal_patch_size": 2}}
    cfg = {"architectures": ["MiniMaxM3SparseForConditionalGeneration"], "model_type": "minimax_m3_vl",
           "text_config": text, "vision_config": vision, "projector_hidden_size": 6144}
    spec = parse_config(cfg, "minimax-m3-vl")
    extra = dict(spec.extra_params)
    assert (extra["vision_tower"], extra["multi_modal_projector"]) == (631_185_920, 234_381_312)
    assert count_params(spec).total == 427_040_140_160


def test_kimi_k3_counts_equal_the_tensor_table():
    """Kimi-K3's checkpoint tensor table (gogongxt/python@a0d3871a scripts/models/kimi_k3.md): 69 KDA + 24 MLA layers
    (1-based lists), full-rank g_proj gates in all 93, attention residuals (a norm + a [1, h] projection per
    sub-block and once at the output), 896 experts of [3072, 3584] in a 3,584-wide latent (routed_expert_down/up +
    norm), 2 shared experts, a bias-free MoonViT; logical total 2,779,931,837,184 (its 1,503,647,073,024 stored
    values count packed FP4 bytes); files 1,453.66 GiB."""
    from vramplan.api import model_weight_bytes, resolve_format
    from vramplan.core.model import MLA

    lm = load_model("kimi-k3")
    spec = lm.spec
    pc = count_params(spec)
    assert pc.total == 2_779_931_837_184
    extra = dict(spec.extra_params)
    assert (extra["vision_tower"], extra["multi_modal_projector"]) == (401_214_464, 46_144_512)
    assert spec.kinds.count(MLA) == 24 and spec.kinds[91:] == (MLA, MLA)
    kda = _shapes(spec, MAMBA, "moe")
    assert kda["self_attn.g_proj.weight"] == (12288, 7168) and kda["self_attn.A_log"] == (128,)
    assert kda["mlp.experts.gate_proj"] == (896, 3072, 3584) and kda["mlp.routed_expert_up_proj.weight"] == (7168, 3584)
    assert kda["mlp_res_proj.weight"] == (1, 7168)
    assert _shapes(spec, MLA)["self_attn.g_proj.weight"] == (12288, 7168)
    stored = model_weight_bytes(spec, resolve_format(lm)).total_bytes
    assert abs(stored / 2**30 - 1453.66) < 0.05  # fp32 short convs / norms counted at 2 bytes: ~20 MB under


def test_glm_4_5_and_4_7_flash_equal_their_tensor_tables():
    """GLM-4.5 (glm4_moe: GQA with q/k/v biases and q/k norms, 3 dense layers, 160 experts + 1 shared, 1 MTP layer
    with its own embedding and head) and GLM-4.7-Flash (glm4_moe_lite: DeepSeek-V3's MLA + MoE at 30B, hidden 2048
    not a multiple of its 20 heads): the logical counts of the checkpoints' tensor tables (gogongxt/python@ec996269
    scripts/models/glm_4.5_fp8.md and glm_4.7_flash.md)."""
    glm = load_model("glm-4.5").spec
    pc = count_params(glm)
    assert (pc.total, pc.mtp) == (352_797_829_024, 5_539_962_272)
    attn = _shapes(glm, FULL, "moe")
    assert "self_attn.q_proj.bias" in attn and "self_attn.o_proj.bias" not in attn
    assert attn["self_attn.q_norm.weight"] == (128,)
    lite = load_model("glm-4.7-flash").spec
    pc = count_params(lite)
    assert (pc.total, pc.mtp) == (29_943_393_920, 1_278_094_656)
    assert lite.is_mla and lite.kv_lora_rank == 512 and lite.num_heads == 20


def test_checkpoint_side_tensors_keep_their_stored_width():
    """From the checkpoints' tensor tables (gogongxt/python scripts/models): DeepSeek-V3.1 keeps fp32 block scales
    although its config says scale_fmt ue8m0 (V4 stores e8m0 bytes); Qwen's FP8 releases store bf16 block scales;
    the routers' score-correction biases are fp32; MiniMax-M2.x keeps its router in fp32; DeepSeek-V4 configs
    without expert_dtype still hold MXFP4 experts."""
    from pathlib import Path

    import vramplan
    from vramplan.api import model_weight_bytes
    from vramplan.catalog.formats import format_from_quant_config
    from vramplan.core.model import iter_tensors

    v31 = {"quant_method": "fp8", "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}
    assert format_from_quant_config(v31).block2d_bits == 32
    assert format_from_quant_config({**v31, "scale_dtype": "e8m0"}).block2d_bits == 8
    qwen_cfg = json.loads((Path(vramplan.__file__).parent / "catalog/models/Qwen/Qwen3-30B-A3B/config.json").read_text())
    qwen = parse_config({**qwen_cfg, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}},
                        "q")
    assert format_from_quant_config(qwen.quant_config).block2d_bits == 16
    bias = [t for _, t in iter_tensors(load_model("deepseek-v3").spec) if t.name.endswith("e_score_correction_bias")]
    assert bias and all(t.dtype_bytes == 4 for t in bias)
    router = [t for _, t in iter_tensors(load_model("minimax-m2.5").spec) if t.role == "ffn_gate_inp"]
    assert router and all(t.dtype_bytes == 4 for t in router)
    cfg = json.loads((Path(vramplan.__file__).parent / "catalog/models/deepseek-ai/DeepSeek-V4-Flash/config.json")
                     .read_text())
    cfg.pop("expert_dtype")
    spec = parse_config(cfg, "v4")
    fmt = format_from_quant_config(spec.quant_config)
    assert model_weight_bytes(spec, fmt).total_bytes == 156_015_698_140


def test_glm_4_5v_text_and_vision():
    """GLM-4.5V (glm4v_moe): GLM-4.5's text layout at 106B (no q/k norms, 1 dense layer, 128 experts + 1 shared) and
    its vision tower; the checkpoint's tensor table (gogongxt/python scripts/models/glm_4.5v.md) sums to
    107,710,933,120 (vision 858,681,856). The architecture fields below are the ones its config.json gives."""
    cfg = {"architectures": ["Glm4vMoeForConditionalGeneration"], "model_type": "glm4v_moe",
           "text_config": {"vocab_size": 151552, "head_dim": 128, "attention_bias": True, "first_k_dense_replace": 1,
                           "hidden_size": 4096, "intermediate_size": 10944, "max_position_embeddings": 65536,
                           "model_type": "glm4v_moe_text", "moe_intermediate_size": 1408, "n_routed_experts": 128,
                           "n_shared_experts": 1, "num_attention_heads": 96, "num_experts_per_tok": 8,
                           "num_hidden_layers": 46, "num_key_value_heads": 8, "partial_rotary_factor": 0.5,
                           "use_qk_norm": False, "torch_dtype": "bfloat16"},
           "vision_config": {"attention_bias": False, "depth": 24, "hidden_size": 1536, "image_size": 336, "in_channels": 3,
                             "intermediate_size": 10944, "model_type": "glm4v_moe", "num_heads": 12, "out_hidden_size": 4096,
                             "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}}
    spec = parse_config(cfg, "glm-4.5v")
    extra = dict(spec.extra_params)
    assert extra["vision_tower"] + extra["multi_modal_projector"] == 858_681_856
    assert count_params(spec).total == 107_710_933_120 and count_params(spec).mtp == 0


def test_deepseek_ocr_language_model_and_two_encoders():
    """DeepSeek-OCR (deepseek_vl_v2): a DeepSeek-V2 MoE language model without MLA under language_config, a SAM ViT-B
    and a CLIP-L/14 encoder, a linear projector; the checkpoint's tensor table (gogongxt/python scripts/models/
    deepseek_ocr.md) sums to 3,336,106,240 (SAM 95,569,152, CLIP-L 303,177,728, projector and 2 vectors 2,625,280).
    The fields below are those of its config.json."""
    lang = {"architectures": ["DeepseekV2ForCausalLM"], "first_k_dense_replace": 1, "hidden_size": 1280,
            "intermediate_size": 6848, "kv_lora_rank": None, "max_position_embeddings": 8192,
            "moe_intermediate_size": 896, "n_routed_experts": 64, "n_shared_experts": 2, "num_attention_heads": 10,
            "num_experts_per_tok": 6, "num_hidden_layers": 12, "num_key_value_heads": 10, "q_lora_rank": None,
            "qk_nope_head_dim": 0, "qk_rope_head_dim": 0, "topk_method": "greedy", "torch_dtype": "bfloat16",
            "use_mla": False, "v_head_dim": 0, "vocab_size": 129280}
    vision = {"image_size": 1024, "mlp_ratio": 3.7362, "model_name": "deeplip_b_l", "model_type": "vision",
              "width": {"clip-l-14-224": {"heads": 16, "image_size": 224, "layers": 24, "patch_size": 14, "width": 1024},
                        "sam_vit_b": {"downsample_channels": [512, 1024], "global_attn_indexes": [2, 5, 8, 11],
                                      "heads": 12, "layers": 12, "width": 768}}}
    cfg = {"architectures": ["DeepseekOCRForCausalLM"], "model_type": "deepseek_vl_v2", "language_config": lang,
           "vision_config": vision,
           "projector_config": {"input_dim": 2048, "model_type": "mlp_projector", "n_embed": 1280,
                                "projector_type": "linear"}}
    spec = parse_config(cfg, "deepseek-ocr")
    extra = dict(spec.extra_params)
    assert extra["vision_tower"] == 95_569_152 + 303_177_728 and extra["multi_modal_projector"] == 2_625_280
    assert count_params(spec).total == 3_336_106_240 and not spec.is_mla
    bad = {**cfg, "vision_config": {**vision, "width": {"siglip_so400m": {}}}}
    with pytest.raises(InvalidModelSpec) as e:
        parse_config(bad, "vl2")
    assert "vision_config.width" in str(e.value)


def test_glm4moe_gguf_metadata(tmp_path):
    """A GLM-4.5-shaped GGUF header (llama.cpp's glm4moe keys): leading dense blocks, routed + shared experts, q/k/v
    biases and q/k norms seen in the tensors, the NextN layer appended to block_count."""
    np = pytest.importorskip("numpy")
    f16 = np.float16

    def experts(w):
        w.add_expert_count(8)
        w.add_expert_used_count(2)
        w.add_expert_feed_forward_length(64)

    path = write_gguf_header(
        tmp_path / "tiny-glm4moe.gguf", "glm4moe", layers=5,  # 4 layers + 1 NextN layer
        hidden=256, heads=8, kv_heads=2, key_length=64, value_length=64, ff=512, setup=experts,
        uint32=(("leading_dense_block_count", 1), ("expert_shared_count", 1), ("nextn_predict_layers", 1)),
        tensors=(("blk.0.attn_q.bias", np.zeros((512,), f16)), ("blk.0.attn_q_norm.weight", np.zeros((64,), f16)),
                 ("blk.4.nextn.eh_proj.weight", np.zeros((256, 512), f16))))
    spec = load_model(str(path)).spec
    assert spec.model_type == "glm4_moe" and spec.num_layers == 4 and spec.mtp_layers == 1
    assert spec.qkv_bias and not spec.o_bias and spec.qk_norm
    assert spec.moe_mask == (False, True, True, True) and spec.shared_expert_intermediate_size == 64


def test_hostile_ocr_and_context_fields():
    """A non-object encoder entry is named; a tokenizer-style model_max_length sentinel counts as no context."""
    from pathlib import Path

    import vramplan

    cfg = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/checkpoint_configs/deepseek_ocr.json")
                     .read_text())
    if cfg is not None:
        bad = json.loads(json.dumps(cfg))
        bad["vision_config"]["width"]["sam_vit_b"] = 5
        with pytest.raises(InvalidModelSpec) as e:
            parse_config(bad, "ocr")
        assert "vision_config.width.sam_vit_b" in str(e.value)
        bad = json.loads(json.dumps(cfg))
        bad["vision_config"]["width"]["sam_vit_b"]["global_attn_indexes"] = [2, "x"]
        with pytest.raises(InvalidModelSpec) as e:
            parse_config(bad, "ocr")
        assert "global_attn_indexes" in str(e.value)
    llama = json.loads((Path(vramplan.__file__).parent / "catalog/models/meta-llama/Llama-3.1-8B/config.json")
                       .read_text())
    llama.pop("max_position_embeddings")
    llama["model_max_length"] = 1000000000000000019884624838656
    assert parse_config(llama, "l").max_position_embeddings == 0
