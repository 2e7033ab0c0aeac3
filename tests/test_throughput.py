"""The roofline speed model: bytes read per decode step, bands, prefill and training FLOPs, invariants."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.api import load_model, model_weight_bytes, resolve_format
from vramplan.catalog.formats import get_format
from vramplan.catalog.gpus import get_gpu
from vramplan.core import throughput as T
from vramplan.core.memory import kv_cache
from vramplan.core.model import count_params
from vramplan.errors import InvalidRequest


def _m(name, fmt=None):
    lm = load_model(name)
    f = get_format(fmt) if fmt else resolve_format(lm)
    return lm.spec, model_weight_bytes(lm.spec, f)


@pytest.mark.parametrize("e,k,b,expected", [
    (128, 8, 1, 8.0),  # one token touches exactly its top-k
    (8, 2, 1, 2.0),
    (8, 2, 2, 8 * (1 - (6 / 8) ** 2)),  # 3.5: the second token misses each expert with p = 3/4
    (128, 8, 10_000, 128.0),  # a large batch touches every expert
    (0, 0, 5, 0.0),
])
def test_experts_touched(e, k, b, expected):
    assert T.experts_touched(e, k, b) == pytest.approx(expected, rel=1e-9)


def test_dense_step_reads_everything_but_the_embedding_table():
    spec, wb = _m("llama-3.1-8b")
    g = wb.as_dict()
    sb = T.decode_step_bytes(spec, wb, context=4096, batch=3)
    row = g["embedding"] // spec.vocab_size  # one embedding row in bytes
    assert sb.head_bytes == g["lm_head"]
    assert sb.embedding_rows_bytes == 3 * row
    assert sb.weights_bytes == wb.total_bytes - g["embedding"] + 3 * row
    assert sb.kv_bytes == 3 * 4096 * 131_072  # formulas.md 8: 131,072 B per token for Llama-3.1-8B at 16-bit
    assert sb.experts_read_bytes == sb.experts_total_bytes == 0


def test_tied_embeddings_are_read_once_as_the_head():
    spec, wb = _m("llama-3.2-1b")
    assert spec.tie_embeddings
    sb = T.decode_step_bytes(spec, wb, context=1, batch=1)
    assert sb.head_bytes == wb.as_dict()["embedding"]
    assert sb.weights_bytes == wb.total_bytes + sb.embedding_rows_bytes


@pytest.mark.parametrize("batch", [1, 4, 64])
def test_moe_reads_only_the_touched_experts(batch):
    spec, wb = _m("qwen3-30b-a3b")
    sb = T.decode_step_bytes(spec, wb, context=1024, batch=batch)
    frac = T.experts_touched(spec.num_experts, spec.experts_per_token, batch) / spec.num_experts
    assert sb.experts_read_bytes == pytest.approx(sb.experts_total_bytes * frac, abs=1)
    assert sb.experts_read_bytes < sb.experts_total_bytes


def test_attention_flops_full_and_sliding():
    spec, _ = _m("llama-3.1-8b")
    s = 2048
    d, nh, layers = spec.head_dim, spec.num_heads, spec.num_layers
    assert T.attention_flops(spec, s) == pytest.approx(2 * layers * nh * d * s * (s + 1))  # formulas.md 6
    gemma, _ = _m("gemma-2-9b")
    w = gemma.sliding_window
    full_like = gemma._replace(layer_kinds=("full",) * gemma.num_layers)
    assert T.attention_flops(gemma, w) == pytest.approx(T.attention_flops(full_like, w))  # inside the window
    assert T.attention_flops(gemma, 4 * w) < T.attention_flops(full_like, 4 * w)


def test_prefill_flops_formula():
    spec, _ = _m("llama-3.1-8b")
    pc = count_params(spec)
    groups = dict(pc.active_groups)
    p = pc.active - groups["embedding"] - groups["lm_head"]
    tokens = 1000
    expected = 2 * p * tokens + T.attention_flops(spec, tokens) + 2 * spec.vocab_size * spec.hidden_size
    assert T.prefill_flops(spec, tokens) == pytest.approx(expected)


def test_measured_llamacpp_metal_falls_in_the_band():
    """formulas.md 6: Llama-2-7B F16 at 41.35 t/s and Q8_0 at 61.5 t/s on an M2 Ultra (800 GB/s)."""
    gpu = get_gpu("apple-m2-ultra-192gb")
    for fmt, measured in (("F16", 41.35), ("Q8_0", 61.5)):
        spec, wb = _m("llama-2-7b", fmt)
        d = T.decode_speed(spec, wb, gpu, context=64, batch=1)
        assert d.mbu is T.MBU_APPLE
        assert d.tokens_per_s.contains(measured), (fmt, d.tokens_per_s)


def test_databricks_example_sits_on_the_low_edge():
    """14 GB per token at 14 ms on a 2 TB/s part is MBU 0.50, the CUDA band's low end."""
    secs = T.roofline_seconds(14e9, 2e12, T.MBU_CUDA)
    assert secs.high == pytest.approx(0.014)
    assert secs.low == pytest.approx(14e9 / (2e12 * 0.85))


def test_bands_are_ordered_and_per_sequence_times_batch_is_throughput():
    spec, wb = _m("llama-3.1-8b")
    d = T.decode_speed(spec, wb, get_gpu("h100"), context=8192, batch=16)
    for band in (d.tokens_per_s, d.throughput_tokens_per_s, d.step_seconds):
        assert band.low <= band.expected <= band.high
    assert d.throughput_tokens_per_s.expected == pytest.approx(16 * d.tokens_per_s.expected)
    assert d.tokens_per_s.expected == pytest.approx(1 / d.step_seconds.expected)


def test_tensor_parallel_speeds_up_pipeline_does_not():
    spec, wb = _m("llama-3.1-70b")
    gpu = get_gpu("h100")
    one = T.decode_speed(spec, wb, gpu, context=4096, layout=T.Layout(tp=1))
    tp4 = T.decode_speed(spec, wb, gpu, context=4096, layout=T.Layout(tp=4))
    pp4 = T.decode_speed(spec, wb, gpu, context=4096, layout=T.Layout(tp=1, pp=4))
    assert tp4.tokens_per_s.expected > 2.5 * one.tokens_per_s.expected
    assert tp4.comm_seconds > 0 and one.comm_seconds == 0
    assert pp4.tokens_per_s.expected <= one.tokens_per_s.expected
    assert tp4.bytes_per_gpu < one.bytes_per_gpu / 3.9


def test_offload_to_host_ram_is_slow_and_bound_by_host():
    spec, wb = _m("llama-3.1-70b", "Q4_K_M")
    gpu = get_gpu("rtx-4090")
    all_gpu = T.decode_speed(spec, wb, gpu, context=4096)
    half = T.decode_speed(spec, wb, gpu, context=4096, layout=T.Layout(offload_fraction=0.5))
    assert half.bound == "host memory"
    assert half.tokens_per_s.expected < all_gpu.tokens_per_s.expected / 3


def test_prefill_and_training_need_published_flops():
    spec, wb = _m("llama-3.1-8b")
    apple = get_gpu("apple-m2-ultra-192gb")
    assert T.prefill_time(spec, wb, apple, tokens=1024) is None
    assert T.training_time(spec, apple, tokens=10**6) is None
    p = T.prefill_time(spec, wb, get_gpu("h100"), tokens=4096)
    assert p.bound == "compute"
    assert p.seconds.low <= p.seconds.expected <= p.seconds.high
    assert p.seconds.expected == pytest.approx(p.flops / (989.4e12 * T.MFU_PREFILL.expected))


@pytest.mark.parametrize("method,recompute,mult", [("full", False, 6), ("full", True, 8), ("lora", False, 4),
                                                   ("qlora", True, 6)])
def test_training_flops_per_token(method, recompute, mult):
    spec, _ = _m("llama-3.1-8b")
    per_token, head = T.matmul_params(spec)
    attn = T.attention_flops(spec, 2048) / 2048 * mult / 2
    got = T.training_flops_per_token(spec, 2048, method, recompute)
    assert got == pytest.approx(mult * (per_token + head) + attn)


def test_training_gpu_hours():
    spec, _ = _m("llama-3.1-8b")
    gpu = get_gpu("h100")
    t = T.training_time(spec, gpu, tokens=10**9, n_gpus=8, seq_len=4096, tokens_per_step=4 * 2**20)
    fpt = T.training_flops_per_token(spec, 4096)
    assert t.gpu_hours.expected == pytest.approx(fpt * 1e9 / (gpu.bf16_flop_per_s * 0.40) / 3600)
    assert t.wall_hours.expected == pytest.approx(t.gpu_hours.expected / 8)
    assert t.step_seconds.low <= t.step_seconds.expected <= t.step_seconds.high


def test_unknown_bandwidth_is_a_clear_error():
    spec, wb = _m("llama-3.1-8b")
    with pytest.raises(InvalidRequest, match="bandwidth"):
        T.decode_speed(spec, wb, get_gpu("24GiB"), context=1024)


def test_kv_read_follows_the_core_kv_cache():
    spec, wb = _m("gemma-2-9b")
    sb = T.decode_step_bytes(spec, wb, context=32768, batch=2, kv_dtype="fp8")
    assert sb.kv_bytes == kv_cache(spec, 32768, 2, "fp8").total_bytes


# ----- invariants -----------------------------------------------------------------------------------------------

MODELS = ["llama-3.1-8b", "qwen3-30b-a3b", "gemma-2-9b"]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODELS), st.integers(1, 256), st.integers(1, 256), st.sampled_from([1, 2, 4]))
def test_more_batch_never_lowers_throughput(model, b1, b2, tp):
    spec, wb = _m(model)
    gpu = get_gpu("h100")
    lo, hi = sorted((b1, b2))
    a = T.decode_speed(spec, wb, gpu, context=2048, batch=lo, layout=T.Layout(tp=tp))
    b = T.decode_speed(spec, wb, gpu, context=2048, batch=hi, layout=T.Layout(tp=tp))
    for x, y in ((a.throughput_tokens_per_s.low, b.throughput_tokens_per_s.low),
                 (a.throughput_tokens_per_s.expected, b.throughput_tokens_per_s.expected),
                 (a.throughput_tokens_per_s.high, b.throughput_tokens_per_s.high)):
        assert y >= x * (1 - 1e-12)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODELS), st.floats(1e11, 1e13), st.floats(1.01, 10.0), st.integers(1, 64),
       st.sampled_from([1, 2, 8]))
def test_more_bandwidth_never_slower(model, bw, factor, batch, tp):
    spec, wb = _m(model)
    base = get_gpu("h100")
    slow = replace(base, hbm_bytes_per_s=bw)
    fast = replace(base, hbm_bytes_per_s=bw * factor)
    a = T.decode_speed(spec, wb, slow, context=4096, batch=batch, layout=T.Layout(tp=tp))
    b = T.decode_speed(spec, wb, fast, context=4096, batch=batch, layout=T.Layout(tp=tp))
    assert b.tokens_per_s.low >= a.tokens_per_s.low
    assert b.tokens_per_s.expected >= a.tokens_per_s.expected
    assert b.tokens_per_s.high >= a.tokens_per_s.high


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(MODELS), st.integers(1, 65536), st.integers(1, 65536))
def test_more_context_never_faster(model, c1, c2):
    spec, wb = _m(model)
    gpu = get_gpu("a100-sxm4-80gb")
    lo, hi = sorted((c1, c2))
    a = T.decode_speed(spec, wb, gpu, context=lo, batch=4)
    b = T.decode_speed(spec, wb, gpu, context=hi, batch=4)
    assert b.tokens_per_s.expected <= a.tokens_per_s.expected


def test_layer_step_floor_dominates_small_models():
    """Each decoder layer adds a fixed time per step (LAYER_STEP_SECONDS), so a 0.6B model on an A100 is bounded by
    its 28 layers, not by its 1.2 GB of weights."""
    from vramplan.api import load_model, model_weight_bytes
    from vramplan.catalog.formats import get_format
    from vramplan.catalog.gpus import get_gpu
    from vramplan.core import throughput as T

    spec = load_model("qwen3-0.6b").spec
    d = T.decode_speed(spec, model_weight_bytes(spec, get_format("bf16")), get_gpu("a100-sxm4-80gb"), context=256)
    floor = T.LAYER_STEP_SECONDS
    assert d.step_seconds.expected >= 28 * floor.expected + d.gpu_seconds_memory.expected - 1e-12
    assert d.step_seconds.low >= 28 * floor.low and d.step_seconds.high >= 28 * floor.high
    assert d.step_seconds.expected > 2 * d.gpu_seconds_memory.expected


def test_speed_reports_cost_per_million_tokens_where_a_price_is_known(run_json):
    out = run_json("speed", "llama-3.1-8b", "--gpu", "h100")
    price = out["cost"]["usd_per_hour"]
    for row in out["concurrency"]["by_batch"]:
        thr, cost = row["throughput_tokens_per_s"], row["usd_per_million_output_tokens"]
        assert abs(cost["expected"] - price / (thr["expected"] * 3600) * 1e6) <= 0.01 * cost["expected"]
        assert cost["low"] <= cost["expected"] <= cost["high"]
    assert "cost" not in run_json("speed", "llama-3.1-8b", "--gpu", "h100-nvl")  # no sourced price


def test_mla_models_use_their_measured_layer_time():
    """Batch-1 decode of DeepSeek-V3 at TP8 is overhead-bound (~30 tok/s measured on H200 and H20): the MLA band puts
    it there; the general band (20-120 us per layer) would predict ~170 tok/s."""
    from vramplan.api import load_model, model_weight_bytes
    from vramplan.catalog.formats import get_format
    from vramplan.catalog.gpus import get_gpu

    lm = load_model("deepseek-v3")
    assert T.layer_step_for(lm.spec, 8) is T.LAYER_STEP_SECONDS_MLA
    assert T.layer_step_for(load_model("llama-3.1-8b").spec, 8) is T.LAYER_STEP_SECONDS
    d = T.decode_speed(lm.spec, model_weight_bytes(lm.spec, get_format("fp8")), get_gpu("h200-sxm-141gb"),
                       context=256, batch=1, kv_dtype="f16", layout=T.Layout(tp=8))
    assert d.tokens_per_s.contains(30.29)  # sgl-project/sglang PR #2643
    assert d.as_dict()["layer_step_seconds"]["expected"] == T.LAYER_STEP_SECONDS_MLA.expected
    fixed = 61 * T.LAYER_STEP_SECONDS_MLA.expected
    assert abs(d.step_seconds.expected - (fixed + d.comm_seconds + d.gpu_seconds_memory.expected)) < 1e-6


def test_per_layer_embedding_table_is_a_lookup_not_the_head():
    """Gemma 4 E-models: the 262,144 x (layers x 256) per-layer embedding table is gathered (one row per token),
    not read as the (tied) head; the head is vocab x hidden."""
    spec, wb = _m("gemma-4-e2b-it")
    sb = T.decode_step_bytes(spec, wb, context=1024, batch=1)
    bpw = wb.as_dict()["embedding"] / (spec.vocab_size * spec.hidden_size)
    assert sb.head_bytes == wb.as_dict()["embedding"] == round(bpw * spec.vocab_size * spec.hidden_size)
    table = wb.as_dict()["per_layer_embedding_table"]
    assert table > 4 * sb.head_bytes  # the table dwarfs the head...
    assert sb.total_bytes <= sb.dense_bytes + sb.head_bytes + sb.kv_bytes + 2 * table // spec.vocab_size + (1 << 20)
    per_token, head = T.matmul_params(spec)
    assert per_token < count_params(spec).active - table / bpw + 1


def test_speed_on_an_expert_offload_plan_counts_sequences_beside_the_gpu_part():
    from vramplan.fit_api import plan_speed

    r = plan_speed("gpt-oss-120b", gpu="rtx-3090")
    assert "host RAM" in r["configuration"]["label"]
    conc = r["concurrency"]
    assert conc["max_sequences"] >= 1 and conc["by_batch"][0]["fits"] is True


def test_allreduce_latency_depends_on_the_link():
    """NVLink: ~6 us; PCIe: 54.18 us for 8 GPUs (nccl-tests on 8 x RTX 3090), scaled by ring steps."""
    assert T.allreduce_latency_s(get_gpu("h100-sxm-80gb"), 8) == T.ALLREDUCE_LATENCY_S
    assert T.allreduce_latency_s(get_gpu("rtx-3090"), 8) == pytest.approx(54.18e-6)
    assert T.allreduce_latency_s(get_gpu("rtx-4090"), 4) == pytest.approx(54.18e-6 * 3 / 7)
    assert T.allreduce_latency_s(get_gpu("rtx-4090"), 2) >= T.ALLREDUCE_LATENCY_S
    spec, wb = _m("llama-3.1-8b")
    fast = T.decode_speed(spec, wb, get_gpu("h100-sxm-80gb"), context=1024, layout=T.Layout(tp=8))
    pcie = T.decode_speed(spec, wb, get_gpu("h100-pcie-80gb"), context=1024, layout=T.Layout(tp=8))
    assert pcie.comm_seconds > fast.comm_seconds


def test_gpus_without_bf16_compute_at_their_fp16_rate():
    """T4 (65 TFLOPS FP16 tensor) and V100 (125) have no bf16: prefill is estimated at the fp16 rate, not skipped."""
    assert T.compute_flop_per_s(get_gpu("t4"), "bf16") == 65e12
    assert T.compute_flop_per_s(get_gpu("v100-sxm2-32gb"), "bf16") == 125e12
    assert T.compute_flop_per_s(get_gpu("h100-sxm-80gb"), "bf16") == get_gpu("h100-sxm-80gb").bf16_flop_per_s
    assert T.compute_flop_per_s(get_gpu("apple-m2-ultra-192gb"), "bf16") is None


def test_mla_band_applies_to_mla_layers_under_tensor_parallelism_only():
    spec, _ = _m("deepseek-v2-lite")
    assert T.layer_step_for(spec, 1) is T.LAYER_STEP_SECONDS  # one GPU: no data for the slower band
    assert T.fixed_step_seconds(spec, 1).expected == pytest.approx(spec.num_layers * T.LAYER_STEP_SECONDS.expected)
    kimi = load_model("kimi-linear").spec  # 7 MLA + 20 KDA layers: only the 7 take the MLA band
    f = T.fixed_step_seconds(kimi, 2).expected
    assert f == pytest.approx(20 * T.LAYER_STEP_SECONDS.expected + 7 * T.LAYER_STEP_SECONDS_MLA.expected)


def test_nvlink_bridges_join_pairs_only():
    nvl = get_gpu("h100-nvl-94gb")
    assert T.allreduce_latency_s(nvl, 2) == T.ALLREDUCE_LATENCY_S
    assert T.allreduce_latency_s(nvl, 4) > T.ALLREDUCE_LATENCY_S


def test_speed_expert_offload_counts_one_sequence_of_kv():
    from vramplan.fit_api import plan_speed

    r = plan_speed("qwen3-235b-a22b", gpu="rtx-4090", batch_size=4, max_model_len="8k", quantization="Q4_K_M")
    if "host RAM" in r["configuration"]["label"] and r["configuration"]["fits"]:
        assert r["concurrency"]["max_sequences"] >= 4
        assert all(b["fits"] for b in r["concurrency"]["by_batch"] if b["batch"] <= 4)
