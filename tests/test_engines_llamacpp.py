"""llama.cpp engine model: pinned to llama.cpp start-up logs (groundtruth/llamacpp.jsonl), invariants, the CLI.

Tolerances are the issue's: KV exact, buffers within 5 %. The architectures are the rows' own hparams.
"""

import pytest

from vramplan.core.model import ModelSpec
from vramplan.engines import llamacpp as L
from vramplan.errors import InvalidRequest, UnknownName
from vramplan.sources.gguf import GGUFFile, GGUFTensor

MiB = 1 << 20

PYTHIA = ModelSpec(name="pythia-2.8b", hidden_size=2560, num_layers=32, num_heads=32, num_kv_heads=32, head_dim=80,
                   intermediate_size=10240, vocab_size=50304, model_type="gpt_neox", norm_bias=True, qkv_bias=True,
                   o_bias=True, mlp_gated=False, mlp_bias=True)
LLAMA31 = ModelSpec(name="llama-3.1-8b", hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
                    intermediate_size=14336, vocab_size=128256, model_type="llama")
GRANITE_CODE = ModelSpec(name="granite-8b-code", hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8,
                         head_dim=128, intermediate_size=14336, vocab_size=49152, model_type="llama",
                         tie_embeddings=True)
PHI3 = ModelSpec(name="phi-3-mini", hidden_size=3072, num_layers=32, num_heads=32, num_kv_heads=32, head_dim=96,
                 intermediate_size=8192, vocab_size=32064, model_type="phi3")
OPENLLAMA = ModelSpec(name="open_llama_7b", hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32,
                      head_dim=128, intermediate_size=11008, vocab_size=32000, model_type="llama")

# (row id, spec, mix, n_ctx, n_seq, n_batch, n_ubatch, ngl, flash_attn, build, backend,
#  measured MiB: GPU model, GPU KV, GPU compute, host compute)
ROWS = [
    ("ci-b4343-v100-pythia2.8b-q4_0-ngl99-fa0", PYTHIA, "Q4_0", 2048, 1, 2048, 512, 99, False, 4343, "cuda",
     1454.83, 640.0, 162.00, 9.01),
    ("ci-b4343-v100-pythia2.8b-q4_0-ngl99-fa1", PYTHIA, "Q4_0", 2048, 1, 2048, 512, 99, True, 4343, "cuda",
     1454.83, 640.0, 103.25, 9.01),
    ("ci-b4343-v100-pythia2.8b-q8_0-cli-c2048", PYTHIA, "Q8_0", 2048, 1, 2048, 512, 99, False, 4343, "cuda",
     2684.57, 640.0, 162.00, 9.01),
    ("ci-b4343-v100-pythia2.8b-q4_0-ngl10-fa0", PYTHIA, "Q4_0", 2048, 1, 2048, 512, 10, False, 4343, "cuda",
     423.14, 200.0, 203.99, 14.01),
    ("ci-b4775-v100-pythia2.8b-q4_0-ngl10-fa0", PYTHIA, "Q4_0", 2048, 1, 2048, 512, 10, False, 4775, "cuda",
     423.14, 200.0, 203.99, 29.01),
    ("ci-b4775-v100-pythia2.8b-f16-c2048-b2048", PYTHIA, "F16", 2048, 1, 2048, 512, 99, False, 4775, "cuda",
     5049.71, 640.0, 162.00, 9.01),
    ("ollama-llama3.1-8b-q4_0-t4-c8192x4", LLAMA31, "Q4_0", 8192, 4, 512, 512, 33, False, 3871, "cuda",
     4156.00, 1024.0, 560.00, 24.01),
    ("ollama-granite8b-code-q4_0-m1pro-c32768", GRANITE_CODE, "Q4_0", 32768, 4, 512, 512, 37, False, 3871,
     "metal", 4376.56, 4608.0, 2144.00, 72.01),
    ("tgwui-phi3-mini-4k-q4_k_m-3070-c4096-ub256", PHI3, "Q4_K_M", 4096, 1, 256, 256, 33, False, 4775, "cuda",
     2228.82, 1536.0, 150.00, 7.00),
    ("ci-b1832-v100-openllama7b-q4_0-c2048", OPENLLAMA, "Q4_0", 2048, 1, 512, 512, 999, False, 1832, "cuda",
     3577.55, 1024.0, 156.00, None),
]


def _plan(spec, mix, n_ctx, n_seq, n_batch, n_ubatch, ngl, fa, build, backend, **kw):
    tensors = L.tensors_from_spec(spec, mix, spec.model_type in L.FUSED_QKV_TYPES)
    return L.llamacpp_memory(spec, tensors, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, n_ubatch=n_ubatch,
                             n_gpu_layers=ngl, flash_attn=fa, version=build, backend=backend, **kw)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_pinned_to_logs(row):
    _, spec, mix, n_ctx, n_seq, n_batch, n_ubatch, ngl, fa, build, backend, model, kv, comp, host = row
    p = _plan(spec, mix, n_ctx, n_seq, n_batch, n_ubatch, ngl, fa, build, backend)
    g = p.gpus[0]
    assert g.kv_bytes == int(kv * MiB)  # KV exact
    assert abs(g.model_bytes / MiB - model) / model <= 0.05
    assert abs(g.compute_bytes / MiB - comp) / comp <= 0.05
    if host is not None:
        assert abs(p.host.compute_bytes / MiB - host) / host <= 0.05


def test_partial_offload_splits_layers_and_kv():
    """-ngl 10 of 32: the last 10 layers on the GPU (200 MiB of KV), 22 on the host (440 MiB); the output matrix
    stays on the host and is copied into the GPU compute buffer for the batched matmul."""
    p = _plan(PYTHIA, "Q4_0", 2048, 1, 2048, 512, 10, False, 4343, "cuda")
    assert p.gpus[0].kv_layers == 10 and p.gpus[0].kv_bytes == 200 * MiB and p.host.kv_bytes == 440 * MiB
    assert L.layer_devices(32, 10) == [-1] * 22 + [0] * 10 + [-1]
    assert p.compute.offloaded_output_bytes > 0
    full = _plan(PYTHIA, "Q4_0", 2048, 1, 2048, 512, 99, False, 4343, "cuda")
    assert full.gpus[0].model_bytes + full.host.model_bytes == p.gpus[0].model_bytes + p.host.model_bytes


def test_more_layers_never_less_gpu_memory():
    totals = [_plan(LLAMA31, "Q4_K_M", 8192, 1, 2048, 512, n, True, 7000, "cuda").gpus[0]
              for n in (1, 8, 16, 24, 32, 33)]
    model = [g.model_bytes + g.kv_bytes for g in totals]
    assert model == sorted(model)


def test_layer_split_over_gpus():
    """llama-model.cpp: 94 offloaded layers (93 + output) over 5 even GPUs -> 19, 19, 19, 19, 17 repeating layers
    and the output layer on the last GPU (the kcpp GLM-4.5 row: KV on 19/19/19/19/16 layers, its 93rd layer being
    the NextN layer without KV)."""
    devs = L.layer_devices(93, 999, 5)
    counts = [devs[:93].count(i) for i in range(5)]
    assert counts == [19, 19, 19, 19, 17] and devs[93] == 4


@pytest.mark.parametrize("n_ctx,fa,build,cells", [
    (35000, True, 7000, 35072),  # PR #17046: PAD(n_ctx, 256) (formulas.md 3.5)
    (35000, False, 7000, 35072),
    (35000, False, 4343, 35008),  # mid-2024/25: 32 without flash attention
    (35000, True, 4343, 35072),
    (35000, False, 1000, 35000),
])
def test_context_padding(n_ctx, fa, build, cells):
    assert L.kv_cells(n_ctx, 1, L.rules_for(build), fa) == cells


def test_iswa_cells():
    gemma = ModelSpec(name="g", hidden_size=3584, num_layers=42, num_heads=16, num_kv_heads=8, head_dim=256,
                      intermediate_size=14336, vocab_size=256000, model_type="gemma2",
                      layer_kinds=("sliding", "full") * 21, sliding_window=4096)
    r = L.rules_for(7000)
    assert L.swa_cells(gemma, 32768, 1, 512, r, True) == 4608  # PAD(4096 + 512, 256)
    assert L.swa_cells(gemma, 32768, 1, 512, r, True, swa_full=True) == 32768
    assert L.swa_cells(gemma, 2048, 1, 512, r, True) == 2048


@pytest.mark.parametrize("typ,bytes_per_cell", [("f16", 2 * 1024 * 2), ("q8_0", 2 * 1024 // 32 * 34),
                                                ("q4_0", 2 * 1024 // 32 * 18)])
def test_kv_types(typ, bytes_per_cell):
    assert L.kv_layer_bytes_per_cell(LLAMA31, "full", typ, typ, True) == bytes_per_cell


def test_quantized_v_needs_flash_attention():
    with pytest.raises(InvalidRequest) as exc:
        _plan(LLAMA31, "Q4_K_M", 4096, 1, 2048, 512, 99, False, 7000, "cuda", type_k="q8_0", type_v="q8_0")
    assert "flash attention" in str(exc.value)
    p = _plan(LLAMA31, "Q4_K_M", 4096, 1, 2048, 512, 99, True, 7000, "cuda", type_k="q8_0", type_v="q8_0")
    assert p.gpus[0].kv_bytes == 32 * 4096 * 2 * 1088


def test_flash_attention_removes_the_kq_scores():
    off = _plan(LLAMA31, "Q4_K_M", 32768, 1, 2048, 512, 99, False, 7000, "cuda")
    on = _plan(LLAMA31, "Q4_K_M", 32768, 1, 2048, 512, 99, True, 7000, "cuda")
    assert off.compute.attention_bytes - on.compute.attention_bytes >= 32768 * 512 * 32 * 4 - 32768 * 512 * 2
    assert on.gpus[0].compute_bytes < off.gpus[0].compute_bytes


def test_tensors_from_a_gguf_file():
    """A GGUF file's own tensor table decides the bytes: blk.N tensors go with layer N, output with the output
    layer, token_embd to the host."""
    tensors = [GGUFTensor("token_embd.weight", "Q4_K", (4096, 128256), 100 * MiB, 0),
               GGUFTensor("output.weight", "Q6_K", (4096, 128256), 200 * MiB, 0),
               GGUFTensor("output_norm.weight", "F32", (4096,), 16384, 0)]
    for i in range(32):
        tensors.append(GGUFTensor(f"blk.{i}.attn_q.weight", "Q4_K", (4096, 4096), 10 * MiB, 0))
    gf = GGUFFile("fake.gguf", 3, {"general.architecture": "llama"}, tuple(tensors), 0, 32, 0)
    placed = L.tensors_from_gguf(gf)
    p = L.llamacpp_memory(LLAMA31, placed, n_ctx=4096, n_gpu_layers=16, flash_attn=True, version=7000)
    assert p.gpus[0].model_bytes == 16 * 10 * MiB
    assert p.host.model_bytes == 100 * MiB + 200 * MiB + 16384 + 16 * 10 * MiB
    p = L.llamacpp_memory(LLAMA31, placed, n_ctx=4096, n_gpu_layers=99, flash_attn=True, version=7000)
    assert p.gpus[0].model_bytes == 32 * 10 * MiB + 200 * MiB + 16384 and p.host.model_bytes == 100 * MiB


def test_builds():
    assert L.parse_build("b4343") == 4343 and L.parse_build("4775 (abc)") == 4775
    assert L.rules_for("b4400").label == "b2900"
    with pytest.raises(UnknownName):
        L.rules_for("b10")
    with pytest.raises(UnknownName):
        L.kv_type("q3_k")


def test_cli_partial_offload(run_json):
    r = run_json("inference", "llama-3.1-8b", "--engine", "llama.cpp", "-q", "Q4_K_M", "--max-model-len", "8k",
                 "--n-gpu-layers", "10", "--flash-attn", "on", "--gpu", "rtx-4090")
    mem, host = r["memory"], r["host_memory"]
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    assert host["weights"] > mem["weights"] > 0 and host["kv_cache"] == 22 * 8192 * 1024 * 2 * 2
    assert r["engine"]["n_gpu_layers"] == 10 and r["engine"]["flash_attn"] is True
    assert r["capacity"]["kv_cache_tokens"] == 8192 and r["devices"][0]["kv_layers"] == 10


def test_cli_full_offload_text(run_cli):
    code, out, err = run_cli("inference", "llama-3.1-8b", "--engine", "llama.cpp", "-q", "Q4_0",
                             "--max-model-len", "2048", "--flash-attn", "off")
    assert code == 0 and "GiB" in out and "no flash attention" in out


def test_cpu_moe_keeps_routed_experts_in_host_ram(run_json, run_cli):
    """llama.cpp --n-cpu-moe N / --cpu-moe: the routed experts of the first N (all) layers stay in host RAM."""
    base = run_json("inference", "qwen3-30b-a3b", "-q", "Q4_K_M", "--engine", "llama.cpp", "--max-model-len", "8k")
    some = run_json("inference", "qwen3-30b-a3b", "-q", "Q4_K_M", "--engine", "llama.cpp", "--max-model-len", "8k",
                    "--n-cpu-moe", "10")
    every = run_json("inference", "qwen3-30b-a3b", "-q", "Q4_K_M", "--engine", "llama.cpp", "--max-model-len", "8k",
                     "--cpu-moe")
    from vramplan.api import load_model
    from vramplan.engines.llamacpp import tensors_from_spec

    placed = tensors_from_spec(load_model("qwen3-30b-a3b").spec, "Q4_K_M")
    experts = [t for t in placed if ".experts." in t.name]
    moved = base["memory"]["weights"] - some["memory"]["weights"]
    assert moved == sum(t.nbytes for t in experts if t.layer < 10)
    assert some["host_memory"]["weights"] - base["host_memory"]["weights"] == moved
    assert base["memory"]["weights"] - every["memory"]["weights"] == sum(t.nbytes for t in experts)
    assert every["memory"]["kv_cache"] == base["memory"]["kv_cache"]  # attention and the KV cache stay on the GPU
    code, _, err = run_cli("inference", "llama-3.1-8b", "-q", "Q4_K_M", "--engine", "llama.cpp", "--n-cpu-moe", "4")
    assert code == 1 and "no routed experts" in err


def test_non_gguf_formats_map_to_the_nearest_mix():
    from vramplan.api import load_model, resolve_format
    from vramplan.catalog.formats import get_format
    from vramplan.engines.llamacpp import mix_for

    assert mix_for(get_format("mxfp4-experts")) == "MXFP4_MOE"
    assert mix_for(resolve_format(load_model("kimi-k3"))) == "MXFP4_MOE"  # compressed-tensors MXFP4, group 32
    assert mix_for(get_format("nvfp4")) == "Q4_K_M" and mix_for(get_format("mxfp8")) == "Q8_0"
    assert mix_for(get_format("awq")) == "Q4_K_M" and mix_for(get_format("bf16")) == "BF16"


def test_pipeline_parallel_copies_and_mmproj_towers():
    """llama-context.cpp: several GPUs holding every layer with the layer split turn pipeline parallelism on, and the
    scheduler keeps GGML_SCHED_MAX_COPIES (4) copies of the compute buffers (a public 2-GPU Qwen3.5-27B log: 1,597
    MiB per GPU for a 404 MiB graph); --n-cpu-moe (a tensor override) or partial offload turn it off. Vision / audio
    towers belong to the separate mmproj GGUF."""
    from vramplan.api import load_model, plan_inference
    from vramplan.engines.llamacpp import PIPELINE_COPIES, tensors_from_spec

    lm = load_model("llama-3.1-8b")
    one = plan_inference(lm, max_model_len=8192, engine="llama.cpp", quantization="Q4_K_M")
    two = plan_inference(lm, max_model_len=8192, engine="llama.cpp", quantization="Q4_K_M", tensor_parallel_size=2)
    assert two["devices"][0]["compute"] == PIPELINE_COPIES * one["devices"][0]["compute"]
    part = plan_inference(lm, max_model_len=8192, engine="llama.cpp", quantization="Q4_K_M", tensor_parallel_size=2,
                          n_gpu_layers=20)
    assert part["devices"][0]["compute"] < two["devices"][0]["compute"]
    spec = load_model("qwen3.5-27b").spec
    assert spec.extra_params and not any(t.name in dict(spec.extra_params) for t in tensors_from_spec(spec, "Q4_K_M"))
