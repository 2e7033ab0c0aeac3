"""The engine registry, SGLang's static pool and transformers generate."""

import pytest

from vramplan.api import load_model, model_weight_bytes, plan_inference, resolve_format
from vramplan.engines import ENGINES, plan_with_engine, resolve_engine
from vramplan.engines import sglang as S
from vramplan.engines import transformers as T
from vramplan.errors import InvalidRequest, UnknownName

GiB = 1 << 30


def test_registry_lists_versions_and_defaults():
    assert set(ENGINES) == {"vllm", "sglang", "llama.cpp", "transformers"}
    for info in ENGINES.values():
        assert info.versions and info.default_version == info.versions[-1]
        assert info.summary and info.options


@pytest.mark.parametrize("alias,name", [("vLLM", "vllm"), ("llamacpp", "llama.cpp"), ("llama-cpp", "llama.cpp"),
                                        ("hf", "transformers"), ("SGLang", "sglang")])
def test_aliases(alias, name):
    assert resolve_engine(alias).name == name


def test_unknown_engine_suggests():
    with pytest.raises(UnknownName) as exc:
        resolve_engine("vlm")
    assert "vllm" in exc.value.suggestions


def _kw(model="llama-3.1-8b", q=None):
    lm = load_model(model)
    fmt = resolve_format(lm, q)
    return dict(lm=lm, fmt=fmt, wb=model_weight_bytes(lm.spec, fmt))


def test_plan_with_engine_contract_for_every_engine():
    for name in ENGINES:
        r = plan_with_engine(name, **_kw(), context=4096, gpu_memory_bytes=80 * GiB)
        mem = r["memory"]
        assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
        assert all(isinstance(v, int) and v >= 0 for v in mem.values())
        assert r["engine"]["name"] == name and r["engine"]["version"]
        assert r["explain"]
        assert r["capacity"]["kv_cache_tokens"] > 0


# ----- SGLang -----------------------------------------------------------------------------------------------------

def test_sglang_pool_formula():
    r = plan_with_engine("sglang", **_kw(), context=8192, gpu_memory_bytes=80 * GiB, mem_fraction_static=0.88)
    free = 80 * GiB - S.CONTEXT_BYTES_TP1
    assert r["memory"]["kv_cache"] == int(free * 0.88) - r["memory"]["weights"]
    assert r["capacity"]["token_size_bytes"] == 32 * 8 * 128 * 2 * 2
    assert r["capacity"]["kv_cache_tokens"] == r["memory"]["kv_cache"] // (32 * 8 * 128 * 2 * 2)


def test_sglang_issue21348():
    """vLLM issue #21348: SGLang --mem-fraction-static 0.93, Qwen3-235B-A22B-FP8, TP4 on H100: #tokens 367404
    (48,128 B per token per GPU). Medium-confidence row: within 5 %."""
    r = plan_inference("qwen3-235b-a22b", quantization="fp8-block", engine="sglang", tensor_parallel_size=4,
                       gpu="h100", max_model_len=8192, mem_fraction_static=0.93)
    assert r["capacity"]["token_size_bytes"] == 48128
    assert abs(r["capacity"]["kv_cache_tokens"] - 367404) / 367404 < 0.05


@pytest.mark.parametrize("tp,mfs", [(1, 0.88), (2, 0.87), (4, 0.85), (8, 0.81), (16, 0.79)])
def test_sglang_default_fraction(tp, mfs):
    assert S.default_mem_fraction_static(tp) == mfs


def test_sglang_does_not_fit():
    with pytest.raises(InvalidRequest) as exc:
        plan_with_engine("sglang", **_kw("llama-3.1-70b"), context=4096, gpu_memory_bytes=80 * GiB)
    assert exc.value.field == "mem_fraction_static" and "tensor_parallel_size 2" in str(exc.value)


# ----- transformers -------------------------------------------------------------------------------------------------

def test_transformers_logits_by_version():
    """<= 4.44 returned fp32 logits for the whole prompt (b x s x V x (2 + 4) bytes); 4.45+ keeps the last token."""
    new = plan_with_engine("transformers", **_kw(), context=8192, engine_version="4.45.0")
    old = plan_with_engine("transformers", **_kw(), context=8192, engine_version="4.44.2")
    extra = old["memory"]["activations"] - new["memory"]["activations"]
    assert extra == (8192 - 1) * 128256 * 6


def test_transformers_prefill_and_eager_scores():
    """Llama-3.1-8B, one 4,096-token prompt: the measured transformers layout (4 h + 3 I per token at 16 bits, the
    last token's logits with their fp32 copy, 32 MiB of cuBLAS workspace); eager attention peaks at the attention
    instead: 4 h + q + k + v + o per token, 10 bytes per score of one layer, and the 16-bit additive mask."""
    from vramplan.core.memory import CUBLAS_WORKSPACE_BYTES

    h, inter, n, heads, vocab = 4096, 14336, 4096, 32, 128256
    fixed = vocab * 6 + CUBLAS_WORKSPACE_BYTES
    sdpa = plan_with_engine("transformers", **_kw(), context=n)
    eager = plan_with_engine("transformers", **_kw(), context=n, attn_implementation="eager")
    assert sdpa["memory"]["activations"] == n * (4 * h + 3 * inter) * 2 + fixed
    attn_width = 2 * 32 * 128 + 2 * 8 * 128
    assert eager["memory"]["activations"] == n * (4 * h + attn_width) * 2 + heads * n * n * 10 + n * n * 2 + fixed
    for r in (sdpa, eager):
        m = r["memory"]
        assert m["allocator_cache"] == int(0.4 * m["activations"])
        assert m["total"] == sum(v for k, v in m.items() if k != "total")


def test_transformers_sliding_window_mask_only_past_the_window():
    kw = _kw("gemma-3-1b-it")
    short = plan_with_engine("transformers", **kw, context=512)["memory"]["activations"]  # window 512: no mask
    long_ = plan_with_engine("transformers", **kw, context=4096)["memory"]["activations"]
    per_token = (4 * 1152 + 3 * 6912) * 2
    assert long_ - short == (4096 - 512) * per_token + 4096 * 4096 * 1  # the boolean mask of the long prompt


def test_transformers_decode_copy_is_not_added_to_the_prefill_peak():
    m = plan_with_engine("transformers", **_kw(), context=4096, max_new_tokens=8)["memory"]
    assert m["kv_transient"] == 0  # one layer's cache (32 MiB) is far below the prefill transient


def test_transformers_sliding_window_cache():
    kw = _kw("gemma-2-9b")
    capped = plan_with_engine("transformers", **kw, context=8192, engine_version="4.53.0")
    full = plan_with_engine("transformers", **kw, context=8192, engine_version="4.45.0")
    per_layer_token = 8 * 256 * 2 * 2
    assert full["memory"]["kv_cache"] == 42 * 8192 * per_layer_token
    assert capped["memory"]["kv_cache"] == 21 * 8192 * per_layer_token + 21 * 4095 * per_layer_token


def test_transformers_versions():
    with pytest.raises(UnknownName):
        T._ver("3.0")
    with pytest.raises(InvalidRequest):
        plan_with_engine("transformers", **_kw(), context=1024, max_new_tokens=2048)


# ----- CLI ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["sglang", "transformers"])
def test_cli_json(run_json, engine):
    r = run_json("inference", "qwen3-8b", "--engine", engine, "--gpu", "h100", "--max-model-len", "16k")
    assert r["engine"]["name"] == engine
    assert r["memory"]["total"] == sum(v for k, v in r["memory"].items() if k != "total")
    assert r["capacity"]["kv_cache_tokens"] > 16384


def test_cli_unknown_engine_version(run_cli):
    import json

    code, out, _ = run_cli("inference", "qwen3-8b", "--engine", "transformers", "--engine-version", "2.0", "--json")
    assert code != 0 and "transformers version" in json.loads(out)["error"]


def test_sglang_pipeline_ranks_pool_their_own_layers():
    """profile_max_num_token: cell_size counts num_effective_layers (the rank's stage), hybrids only the attention
    layers inside [start_layer, end_layer); the free memory is the minimum over ranks (distributed=True)."""
    lm = load_model("llama-3.1-70b")
    one = plan_inference(lm, max_model_len=8192, engine="sglang", gpu="h100", tensor_parallel_size=2)
    two = plan_inference(lm, max_model_len=8192, engine="sglang", gpu="h100", tensor_parallel_size=2,
                         pipeline_parallel_size=2)
    assert two["capacity"]["token_size_bytes"] * 2 == one["capacity"]["token_size_bytes"] == 8 // 2 * 128 * 2 * 80 * 2
    room = two["memory"]["kv_cache"]
    assert two["capacity"]["kv_cache_tokens"] == room // (8 // 2 * 128 * 2 * 40 * 2)
    nano = load_model("nemotron-3-nano-30b-a3b").spec
    stages = [range(0, 26), range(26, 52)]
    assert S.mamba_state_bytes_per_request(nano, 1, stages[0]) + S.mamba_state_bytes_per_request(
        nano, 1, stages[1]) == S.mamba_state_bytes_per_request(nano, 1)
    attn = [sum(nano.cache_kinds[i] == "full" for i in r) for r in stages]
    assert [S.cell_size_bytes(nano, "auto", 2, 1, r) for r in stages] == [a * 2 * 128 * 2 * 2 for a in attn]
    assert min(attn) > 0 and sum(attn) == 6


def test_multi_gpu_tables_name_the_busiest_gpu():
    """vLLM PP: the table is stage 0 (whose rank logs), the explain names the busier stage and the KV line uses the
    bounding stage's free memory; llama.cpp: the table is the busiest device's."""
    r = plan_inference(load_model("deepseek-v3"), max_model_len=32768, engine="vllm", gpu="h100",
                       tensor_parallel_size=8, pipeline_parallel_size=2)
    totals = [s["total"] for s in r["stages"]]
    assert r["memory"]["total"] == totals[0] < totals[1]
    assert any(f"busiest GPUs are stage 1's: {totals[1] / 2**30:.2f} GiB" in e for e in r["explain"])
    bound = min(r["stages"], key=lambda s: s["blocks_if_alone"])
    assert any(f"{bound['kv_cache_available'] / 2**30:.2f} GiB available on stage {bound['stage']}" in e
               for e in r["explain"])
    r = plan_inference(load_model("llama-3.1-8b"), max_model_len=8192, engine="llama.cpp", gpu="rtx-4090",
                       tensor_parallel_size=2, quantization="Q4_K_M")
    busiest = max(r["devices"], key=lambda d: d["weights"] + d["kv_cache"] + d["compute"])
    assert r["memory"]["weights"] == busiest["weights"] and r["memory"]["kv_cache"] == busiest["kv_cache"]


def test_transformers_caches_mla_layers_decompressed():
    """transformers' DeepseekV3Attention caches the full per-head K (nope + rope) and V: GLM-4.7-Flash 47 layers x
    20 heads x (192 + 64 + 256) x 2 B per token, not the 576-element latent."""
    r = plan_inference(load_model("glm-4.7-flash"), max_model_len=1024, engine="transformers")
    assert r["memory"]["kv_cache"] == 47 * 20 * (192 + 64 + 256) * 2 * 1024
    assert r["kv_bytes_per_token"] == 47 * 20 * 512 * 2
    assert plan_inference(load_model("kimi-linear"))["request"]["max_model_len"] == 1_048_576  # model_max_length


def test_batch_beyond_the_pool_is_said():
    r = plan_inference(load_model("llama-3.1-8b"), max_model_len=32768, engine="vllm", gpu="rtx-4090", batch_size=8)
    assert r["capacity"]["max_concurrency"] < 8
    assert any(e.startswith("batch 8 is more than") for e in r["explain"])
    r = plan_inference(load_model("llama-3.1-8b"), max_model_len=4096, engine="vllm", gpu="h100", batch_size=8)
    assert not any(e.startswith("batch 8 is more than") for e in r["explain"])


def test_speed_explains_the_fixed_time_it_adds():
    from vramplan.fit_api import plan_speed

    r = plan_speed("kimi-linear", gpu="h200", tensor_parallel_size=8)
    fixed = r["decode"]["fixed_seconds_per_step"]["expected"]
    assert fixed == pytest.approx(20 * 60e-6 + 7 * 450e-6)
    assert any("7 MLA layers under tensor parallelism" in e for e in r["explain"])


def test_transformers_5_grouped_experts_prefill():
    """Qwen3-30B-A3B (h 2048, 8 of 128 experts of width 768): transformers 5's grouped_mm experts hold each token's
    hidden state once per chosen expert and, at the end, the down output, its masked, weighted and re-ordered copies:
    k x max(h + 4 I, 4 h) elements per token beside the 4 h of the layer (measured 0.60 GiB at 4,088 tokens). Before
    5.0 the experts ran one at a time."""
    from vramplan.core.memory import CUBLAS_WORKSPACE_BYTES

    kw = _kw("qwen3-30b-a3b")
    h, k, inter, vocab, n = 2048, 8, 768, 151936, 4088
    new = plan_with_engine("transformers", **kw, context=4096, max_new_tokens=8)["memory"]["activations"]
    assert new == n * (4 * h + k * max(h + 4 * inter, 4 * h)) * 2 + vocab * 6 + CUBLAS_WORKSPACE_BYTES
    old = plan_with_engine("transformers", **kw, context=4096, max_new_tokens=8,
                           engine_version="4.53.0")["memory"]["activations"]
    assert old == n * (4 * h + 3 * k * inter) * 2 + vocab * 6 + CUBLAS_WORKSPACE_BYTES


def test_transformers_sliding_window_sdpa_mask_at_the_attention():
    """Gemma 3 1B, one 16,384-token prompt (window 512): the boolean mask (1 B per element) lives through the forward;
    inside a sliding layer SDPA adds the additive mask in bf16 and its logical_not temporary (3 B per element), and
    transformers repeats the one KV head to the 4 query heads (no GQA path with a mask). Here that attention moment
    outweighs the MLP's (4 h + 3 I per token)."""
    from vramplan.core.memory import CUBLAS_WORKSPACE_BYTES

    h, inter, n, heads, d, vocab = 1152, 6912, 16384, 4, 256, 262144
    act = plan_with_engine("transformers", **_kw("gemma-3-1b-it"), context=n)["memory"]["activations"]
    attn_width = 2 * heads * d + 2 * 1 * d
    attention = n * (4 * h + attn_width) * 2 + n * n * 3 + n * 2 * heads * d * 2
    assert attention > n * (4 * h + 3 * inter) * 2
    assert act == attention + n * n + vocab * 6 + CUBLAS_WORKSPACE_BYTES
