"""Parameter counts, weight bytes and KV bytes pinned to published and independently derived numbers."""

import json

import pytest

from conftest import SHARED, shared_rows
from vramplan.api import load_model, model_weight_bytes
from vramplan.catalog.formats import get_format
from vramplan.core.gguf_mix import gguf_weight_bytes
from vramplan.core.memory import kv_bytes_per_token, kv_cache
from vramplan.core.model import count_params

PUBLIC = shared_rows()
MATCH_ROWS = [r for r in PUBLIC if r["category"] == "param_count" and r["measured"].get("match") is True]
ARCH_ROWS = [r for r in PUBLIC if r["category"] == "config_arch"]


@pytest.mark.skipif(not MATCH_ROWS, reason="../shared/groundtruth not present")
@pytest.mark.parametrize("row", MATCH_ROWS, ids=lambda r: r["id"])
def test_published_param_counts_match_to_the_parameter(row):
    lm = load_model(row["hf_id"], source="catalog")
    assert count_params(lm.spec).total == row["measured"]["published_param_count"]


@pytest.mark.skipif(not ARCH_ROWS, reason="../shared/groundtruth not present")
@pytest.mark.parametrize("row", ARCH_ROWS, ids=lambda r: r["id"])
def test_config_arch_kv_bytes_per_token(row):
    """The rows' figure assumes full attention on every layer and 16-bit KV; ours must agree on that basis."""
    lm = load_model(row["hf_id"], source="catalog")
    spec = lm.spec
    expected = row["measured"].get("kv_bytes_per_token_bf16_all_layers") or \
        row["measured"].get("mla_kv_bytes_per_token_bf16_all_layers")
    per_layer = {k: spec.kv_elements_per_token(k) for k in set(spec.kinds)}
    all_layers = sum(per_layer[k] for k in spec.kinds) * 2
    assert all_layers == expected
    # and the KV cache for one token equals it (sliding layers hold that token too)
    assert kv_bytes_per_token(spec) == expected


# (model, published or formulas.md-verified total, active)
PINS = [
    ("llama-3.1-8b", 8_030_261_248, 8_030_261_248),
    ("llama-3.1-70b", 70_553_706_496, None),
    ("llama-3.1-405b", 405_853_388_800, None),
    ("llama-3.2-1b", 1_235_814_400, None),
    ("mixtral-8x7b", 46_702_792_704, 12_879_925_248),
    ("qwen1.5-moe-a2.7b", 14_315_784_192, 2_689_173_504),
    ("deepseek-v2-lite", 15_706_484_224, 2_661_150_208),
    ("deepseek-v3", 671_026_419_200, 37_552_297_472),
    ("qwen3-235b-a22b", 235_093_634_560, None),
    ("phi-2", 2_779_683_840, None),
    ("gpt-oss-120b", 116_829_156_672, None),
    ("gpt-oss-20b", 20_914_757_184, None),
    ("gemma-3-4b-it", 4_300_079_472, None),
    ("gemma-3-27b-it", 27_432_406_640, None),
]


@pytest.mark.parametrize("name,total,active", PINS)
def test_param_pins(name, total, active):
    pc = count_params(load_model(name).spec)
    assert pc.total == total
    assert sum(v for _, v in pc.groups) == pc.total
    if active is not None:
        assert pc.active == active


def test_deepseek_v3_mtp_module_counted_separately():
    pc = count_params(load_model("deepseek-v3").spec)
    assert pc.mtp == 13_463_426_304  # formulas.md 1.4


def test_gemma3_vision_tower_matches_published_split():
    """keras-hub: full multimodal 27,432,062,576 vs text-only 27,009,002,240 -> vision + projector 423,060,336."""
    groups = count_params(load_model("gemma-3-27b-it").spec).as_dict()
    assert groups["vision_tower"] + groups["multi_modal_projector"] == 423_060_336


# formulas.md section 2: Llama-3.1-8B storage totals
FORMAT_PINS = [
    ("bf16", 16_060_522_496, None),
    ("bnb-nf4", None, 5.703e9),
    ("bnb-nf4-nodq", None, 6.028e9),
    ("int8", None, 9.087e9),
    ("gptq", None, 5.733e9),
    ("awq", None, 5.728e9),
    ("fp8", None, 9.081e9),
    ("mxfp4", None, 5.810e9),
    ("nvfp4", None, 6.028e9),
]


@pytest.mark.parametrize("fmt,exact,approx_gb", FORMAT_PINS)
def test_llama31_8b_weight_formats(fmt, exact, approx_gb):
    wb = model_weight_bytes(load_model("llama-3.1-8b").spec, get_format(fmt))
    if exact is not None:
        assert wb.total_bytes == exact
    else:
        assert wb.total_bytes / 1e9 == pytest.approx(approx_gb / 1e9, abs=0.0006)


# llama.cpp tools/quantize/README.md, Llama-3.1-8B: bits/weight = tensor bytes x 8 / 8,030,261,248
GGUF_PINS = [("Q4_K_M", 4.8944, 4.58), ("Q4_K_S", 4.6672, 4.36), ("Q5_K_M", 5.7036, 5.33), ("Q5_K_S", 5.5704, 5.21),
             ("Q6_K", 6.5633, 6.14), ("Q8_0", 8.5008, 7.95), ("Q3_K_L", 4.2979, 4.02), ("Q3_K_S", 3.6429, 3.41),
             ("Q2_K", 3.1593, 2.95), ("Q3_K_M", 3.996, 3.74), ("IQ4_XS", 4.4597, 4.17), ("F16", 16.0005, 14.96)]


@pytest.mark.parametrize("mix,bpw,gib", GGUF_PINS)
def test_gguf_mix_reproduces_llamacpp_readme(mix, bpw, gib):
    spec = load_model("llama-3.1-8b").spec
    b = gguf_weight_bytes(spec, mix).total_bytes
    assert round(b * 8 / 8_030_261_248, 4) == pytest.approx(bpw, abs=1e-4)
    assert round(b / 2**30, 2) == pytest.approx(gib, abs=0.011)


def test_gguf_q4_k_m_bytes_pinned():
    # formulas.md 9: 4,912,898,304 B including Llama 3's 64-float rope_freqs tensor (256 B), which is not a weight
    spec = load_model("llama-3.1-8b").spec
    assert gguf_weight_bytes(spec, "Q4_K_M").total_bytes + 64 * 4 == 4_912_898_304


KV_PINS = [  # (model, tokens, dtype, bytes) from formulas.md 3 and 8
    ("llama-3.1-8b", 1, "fp16", 131_072), ("llama-3.1-70b", 1, "fp16", 327_680),
    ("llama-3.1-405b", 1, "fp16", 516_096), ("deepseek-v3", 1, "bf16", 70_272),
    ("llama-3.1-8b", 1024, "fp16", 2**27), ("llama-3.1-8b", 128_000, "fp8", 128_000 * 65_536),
    ("llama-3.1-8b", 1000, "q8_0", 1000 * 131_072 * 17 // 32),
]


@pytest.mark.parametrize("model,tokens,dtype,expected", KV_PINS)
def test_kv_pins(model, tokens, dtype, expected):
    assert kv_cache(load_model(model).spec, tokens, 1, dtype).total_bytes == expected


def test_sliding_window_caps_kv():
    spec = load_model("gemma-3-27b-it").spec  # 62 layers: 52 local (window 1024) + 10 global
    kinds = spec.kinds
    assert kinds.count("sliding") == 52 and kinds.count("full") == 10
    per_layer = 16 * 128 * 2 * 2
    kv = kv_cache(spec, 8192, 1, "bf16")
    assert kv.total_bytes == per_layer * (10 * 8192 + 52 * 1024)


def test_gpt_oss_alternates_sliding_128():
    spec = load_model("gpt-oss-20b").spec
    kv = kv_cache(spec, 4096, 2, "bf16").total_bytes
    per_layer = 8 * 64 * 2 * 2
    assert kv == 2 * per_layer * (12 * 4096 + 12 * 128)


def test_mistral_v01_sliding_window_all_layers():
    spec = load_model("mistral-7b-v0.1").spec
    assert set(spec.kinds) == {"sliding"} and spec.sliding_window == 4096
    assert kv_cache(spec, 32768).total_bytes == kv_cache(spec, 4096).total_bytes


def test_tensor_parallel_kv_split_and_replication():
    spec = load_model("llama-3.1-8b").spec  # 8 KV heads
    one = kv_cache(spec, 4096, 1, "bf16").total_bytes
    assert kv_cache(spec, 4096, 1, "bf16", tp=2).total_bytes == one // 2
    assert kv_cache(spec, 4096, 1, "bf16", tp=8).total_bytes == one // 8
    # 16 GPUs for 8 KV heads: each rank keeps one (replicated) head
    assert kv_cache(spec, 4096, 1, "bf16", tp=16).total_bytes == one // 8


def test_mla_latent_is_not_split_by_tp():
    spec = load_model("deepseek-v3").spec
    assert kv_cache(spec, 1000, 1, "bf16", tp=8).total_bytes == kv_cache(spec, 1000, 1, "bf16").total_bytes


def test_checkpoint_quantization_config_is_used():
    """TheBloke GPTQ checkpoint (quantize_config.json: 4 bits, group 128) is costed as stored."""
    from vramplan.api import resolve_format

    lm = load_model("llama-2-13b-chat-gptq")
    fmt = resolve_format(lm)
    assert fmt.name.startswith("gptq-int4-g128")
    wb = model_weight_bytes(lm.spec, fmt)
    assert 4.2 < wb.bits_per_weight < 4.6


def test_gpt_oss_mxfp4_from_its_config():
    from vramplan.api import resolve_format

    lm = load_model("gpt-oss-120b")
    wb = model_weight_bytes(lm.spec, resolve_format(lm))
    # model card: checkpoint 60.8 GiB (experts MXFP4, everything else BF16)
    assert wb.total_bytes / 2**30 == pytest.approx(60.8, abs=0.4)


MAMBA_2_8B = {"model_type": "mamba", "hidden_size": 2560, "num_hidden_layers": 64, "state_size": 16,
              "conv_kernel": 4, "expand": 2, "vocab_size": 50280, "tie_word_embeddings": True,
              "time_step_rank": "auto"}


def test_mamba_params_and_constant_state():
    """formulas.md 1.5: Mamba-2.8B = 2,768,345,600; the recurrent state is per sequence, not per token."""
    from vramplan.sources.hf_config import parse_config

    spec = parse_config(MAMBA_2_8B, "mamba-2.8b")
    assert count_params(spec).total == 2_768_345_600
    short, long = kv_cache(spec, 1000).total_bytes, kv_cache(spec, 100_000).total_bytes
    d_inner = 2 * 2560
    assert short == long == 64 * (d_inner * 4 + d_inner * 16) * 2
    assert kv_cache(spec, 1000, batch=4).total_bytes == 4 * short


def test_core_ggml_block_table_agrees_with_the_catalog():
    """core/gguf_mix.py keeps ggml's block sizes as constants (the core reads no files); the GGUF reader uses
    catalog/ggml_types.toml. The two must never drift apart."""
    from vramplan.core.gguf_mix import GGML_TYPES
    from vramplan.sources.gguf import ggml_types

    catalog = ggml_types()
    for name, (block, nbytes) in GGML_TYPES.items():
        assert name in catalog, name
        assert (catalog[name].block_elems, catalog[name].block_bytes) == (block, nbytes), name


def test_deepseek_v3_fp8_checkpoint_bytes():
    """formulas.md 1.4: FP8 e4m3 linears + fp32 scale per 128x128 block + BF16 rest = 688.57 GB on disk, MTP included."""
    from vramplan.api import resolve_format
    from vramplan.core.model import mtp_tensors

    lm = load_model("deepseek-v3")
    fmt = resolve_format(lm)
    assert fmt.name == "fp8-block" and fmt.block2d == (128, 128)
    main = model_weight_bytes(lm.spec, fmt).total_bytes
    mtp = sum(fmt.tensor_bytes(t) for t in mtp_tensors(lm.spec))
    assert (main + mtp) / 1e9 == pytest.approx(688.57, abs=0.01)


@pytest.mark.parametrize("qc,name,lo,hi", [
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}},
     "compressed-tensors-int4-group", 4.1, 4.2),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "num_bits": 8, "type": "float", "strategy": "channel"}}}}, "compressed-tensors-fp8-channel", 8.0, 8.02),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "gptq-int8-g128", 8.1, 8.5),
    ({"quant_method": "awq", "bits": 4, "group_size": 64}, "awq-int4-g64", 4.3, 4.4),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
      "bnb_4bit_use_double_quant": True}, "bnb-nf4", 4.12, 4.14),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "int8", 8.0, 8.01),
])
def test_checkpoint_quant_configs(qc, name, lo, hi):
    """A checkpoint's own quantization_config becomes a format; bits/weight measured on the quantized tensors."""
    from vramplan.catalog.formats import format_from_quant_config
    from vramplan.core.model import iter_tensors

    fmt = format_from_quant_config(qc)
    assert fmt.name == name
    spec = load_model("llama-3.1-8b").spec
    q = [(t, fmt.tensor_bytes(t)) for _, t in iter_tensors(spec) if fmt.quantizes(t)]
    bits = 8 * sum(b for _, b in q) / sum(t.numel for t, _ in q)
    assert lo <= bits <= hi


def test_pipeline_stages_sum_real_layers():
    """DeepSeek-V3's first 3 layers are dense: stage weights come from each layer's own bytes, not an average."""
    from vramplan.core.memory import weights_per_gpu_bytes
    from vramplan.core.precision import per_layer_bytes

    spec = load_model("deepseek-v3").spec
    fmt = get_format("bf16")
    wb = model_weight_bytes(spec, fmt)
    layers = per_layer_bytes(spec, fmt)
    assert sum(layers) + wb.as_dict()["embedding"] + wb.as_dict()["lm_head"] + 7168 * 2 == wb.total_bytes
    groups = wb.as_dict()
    first = sum(layers[:30]) + groups["embedding"]  # 61 layers over 2 stages: [0, 30) and [30, 61)
    last = sum(layers[30:]) + groups["lm_head"]
    assert weights_per_gpu_bytes(spec, wb, tp=8, pp=2, layer_bytes=layers) == -(-max(first, last) // 8)
