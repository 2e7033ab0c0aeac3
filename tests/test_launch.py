"""Launch commands: the flags each engine needs for a plan, and a client snippet that compiles."""

import json
import shlex

import pytest

from vramplan.api import load_model
from vramplan.errors import InvalidRequest, UnknownName
from vramplan.fit_api import launch_commands, plan_speed


def _argv(command: str) -> list[str]:
    """What a shell would run: backslash-newline continuations dropped, environment assignments left in front."""
    return [w for w in shlex.split(command) if w != "\n"]


def _opt(argv, flag):
    return argv[argv.index(flag) + 1]


def test_vllm_and_sglang_follow_the_plan():
    r = launch_commands("llama-3.1-70b", gpu="h100", max_model_len="32k", batch_size=16, kv_cache_dtype="fp8",
                        gpu_memory_utilization=0.85)
    tp = r["plan"]["tensor_parallel_size"]
    assert r["plan"]["fits"] and tp in (2, 4, 8)
    v = r["commands"]["vllm"]
    assert v["argv"][:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B"]
    assert _argv(v["command"]) == v["argv"]
    assert _opt(v["argv"], "--tensor-parallel-size") == str(tp)
    assert _opt(v["argv"], "--max-model-len") == "32768"
    assert _opt(v["argv"], "--kv-cache-dtype") == "fp8"
    assert _opt(v["argv"], "--gpu-memory-utilization") == "0.85"
    assert _opt(v["argv"], "--max-num-seqs") == "16"
    s = r["commands"]["sglang"]["argv"]
    assert s[:3] == ["python", "-m", "sglang.launch_server"]
    assert _opt(s, "--tp-size") == str(tp) and _opt(s, "--context-length") == "32768"
    assert _opt(s, "--kv-cache-dtype") == "fp8_e4m3" and _opt(s, "--mem-fraction-static") == "0.85"


@pytest.mark.parametrize("q,flag", [("fp8", "fp8"), ("bnb-nf4", "bitsandbytes")])
def test_vllm_quantization_flag(q, flag):
    v = launch_commands("llama-3.1-8b", quantization=q, engine="vllm")["commands"]["vllm"]["argv"]
    assert _opt(v, "--quantization") == flag


def test_prequantized_formats_get_a_note_not_a_flag():
    v = launch_commands("llama-3.1-8b", quantization="awq", engine="vllm")["commands"]["vllm"]
    assert "--quantization" not in v["argv"] and any("already quantized" in n for n in v["notes"])


def test_uneven_pipeline_stages_become_the_vllm_partition():
    r = launch_commands("gemma-2-27b", gpu="h100", tensor_parallel_size=8, pipeline_parallel_size=4,
                        max_model_len=4096, engine="vllm")
    v = r["commands"]["vllm"]
    part = [int(x) for x in v["env"]["VLLM_PP_LAYER_PARTITION"].split(",")]
    assert sum(part) == load_model("gemma-2-27b").spec.num_layers and len(set(part)) > 1
    assert part == r["plan"]["stage_layers"]
    assert v["command"].startswith("VLLM_PP_LAYER_PARTITION=")
    assert _opt(v["argv"], "--pipeline-parallel-size") == "4"


def test_llama_server_total_context_slots_and_kv_types():
    r = launch_commands("llama-3.1-8b", quantization="Q4_K_M", max_model_len=8192, batch_size=4,
                        kv_cache_dtype="q8_0", engine="llama.cpp")
    a = r["commands"]["llama.cpp"]["argv"]
    assert a[0] == "llama-server" and _opt(a, "-m") == "llama-3.1-8b-Q4_K_M.gguf"
    assert _opt(a, "-c") == str(8192 * 4) and _opt(a, "-np") == "4"  # llama-server divides -c by -np
    assert _opt(a, "--cache-type-k") == _opt(a, "--cache-type-v") == "q8_0"
    assert int(_opt(a, "-ngl")) > 32


def test_llama_server_offload_and_multi_gpu_split():
    r = launch_commands("llama-3.1-70b", gpu="rtx-4090", quantization="Q4_K_M", n_gpu_layers=40,
                        engine="llama.cpp")
    assert _opt(r["commands"]["llama.cpp"]["argv"], "-ngl") == "40"
    r = launch_commands("llama-3.1-70b", gpu="rtx-4090", quantization="Q4_K_M", tensor_parallel_size=4,
                        engine="llama.cpp")
    a = r["commands"]["llama.cpp"]["argv"]
    assert _opt(a, "--tensor-split") == "1,1,1,1" and _opt(a, "--split-mode") == "layer"


def test_ollama_modelfile_and_environment():
    r = launch_commands("llama-3.1-8b", quantization="Q4_K_M", max_model_len=16384, batch_size=2,
                        kv_cache_dtype="fp8", engine="ollama")
    o = r["commands"]["ollama"]
    assert "PARAMETER num_ctx 16384" in o["modelfile"] and o["modelfile"].startswith("FROM ./")
    assert o["env"]["OLLAMA_KV_CACHE_TYPE"] == "q8_0" and o["env"]["OLLAMA_NUM_PARALLEL"] == "2"
    assert o["env"]["OLLAMA_FLASH_ATTENTION"] == "1"
    assert "ollama create llama-3.1-8b -f Modelfile" in o["command"]


@pytest.mark.parametrize("engine,port", [("vllm", 8000), ("sglang", 30000), ("llama.cpp", 8080),
                                         ("ollama", 11434)])
def test_client_snippet_streams_and_compiles(engine, port):
    r = launch_commands("llama-3.1-8b", engine=engine)
    code = r["client"]["python"]
    compile(code, "client.py", "exec")
    assert f"http://localhost:{port}/v1" in code and "stream=True" in code
    assert 'model="llama-3.1-8b"' in code


def test_bad_launch_options():
    with pytest.raises(InvalidRequest) as exc:
        launch_commands("llama-3.1-8b", tensor_parallel_size=3)
    assert exc.value.field == "tensor_parallel_size"
    with pytest.raises(UnknownName) as exc:
        launch_commands("llama-3.1-8b", engine="vlm")
    assert "vllm" in exc.value.suggestions


def test_cli_launch_json_and_text(run_json, run_cli):
    r = run_json("launch", "llama-3.1-8b", "--engine", "vllm", "--max-model-len", "8k")
    assert set(r["commands"]) == {"vllm"} and r["plan"]["max_model_len"] == 8192
    code, out, _ = run_cli("launch", "llama-3.1-8b")
    assert code == 0 and "vllm serve" in out and "llama-server" in out and "ollama create" in out
    assert "from openai import OpenAI" in out


def test_cli_speed_json_and_text(run_json, run_cli):
    r = run_json("speed", "llama-3.1-8b", "--gpu", "h100", "--batch-size", "4", "--training-tokens", "1000000")
    d = r["decode"]
    assert d["batch"] == 4 and d["tokens_per_s"]["low"] <= d["tokens_per_s"]["expected"] <= d["tokens_per_s"]["high"]
    assert r["training"]["gpu_hours"]["expected"] > 0 and r["prefill"]["seconds"]["expected"] > 0
    assert r["efficiency"]["decode_mbu"]["source"]
    code, out, _ = run_cli("speed", "llama-3.1-8b", "--gpu", "m2-ultra")
    assert code == 0 and "tokens/s" in out and "no dense tensor FLOP/s" in out
    code, _, err = run_cli("speed", "llama-3.1-8b", "--gpu", "h1000")
    assert code == 1 and "did you mean" in err


def test_speed_picks_the_fewest_gpus_that_fit():
    r = plan_speed("llama-3.1-70b", gpu="h100")
    assert r["configuration"]["count"] == 2 and r["configuration"]["fits"]
    r = plan_speed("llama-3.1-70b", gpu="h100", tensor_parallel_size=1)
    assert "warning" in r  # 141 GB on one 80 GB card: timed anyway, flagged


def test_instruct_repo_named_is_the_repo_served():
    """An Instruct repo resolved to its base model's catalog entry (same architecture) is served as named; a short
    Instruct alias is served as the entry's base repo, and the plan says so."""
    r = launch_commands("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="vllm")
    assert _argv(r["commands"]["vllm"]["command"])[2] == "meta-llama/Llama-3.1-8B-Instruct"
    assert any("catalog entry llama-3.1-8b" in m for m in r["messages"])
    r = launch_commands("llama-3.1-8b-instruct", gpu="h100", engine="vllm")
    assert _argv(r["commands"]["vllm"]["command"])[2] == "meta-llama/Llama-3.1-8B"
    assert any("base model" in m for m in r["messages"])
    assert not launch_commands("llama-3.1-8b", gpu="h100", engine="vllm")["messages"]


def test_ollama_server_starts_before_create_and_says_which_file():
    r = launch_commands("llama-3.1-8b", gpu="rtx-4090", engine="ollama")
    steps = r["commands"]["ollama"]["command"].splitlines()
    serve = next(i for i, s in enumerate(steps) if "ollama serve" in s)
    create = next(i for i, s in enumerate(steps) if "ollama create" in s)
    assert serve < create and steps[serve].endswith("&")
    assert any("Q4_K_M" in n for n in r["commands"]["ollama"]["notes"])


def test_local_config_is_served_from_its_folder(tmp_path):
    import json as _json

    from vramplan.catalog import models as cat

    d = tmp_path / "my-model"
    d.mkdir()
    (d / "config.json").write_text(open(cat.entry_file(cat.find_model("llama-3.2-1b"), "config.json")).read())
    r = launch_commands(str(d / "config.json"), gpu="h100", engine="all")
    assert _argv(r["commands"]["vllm"]["command"])[2] == str(d)
    assert "my-model-Q4_K_M.gguf" in r["commands"]["llama.cpp"]["command"]
    assert any("the folder of config.json" in m for m in r["messages"])
    assert _json.dumps(r)  # serialisable
    v4 = launch_commands("deepseek-v4-flash", gpu="h200", engine="vllm")
    assert any("DeepSeek-V4 is not modelled" in m for m in v4["messages"])


def test_repo_ids_listed_as_aliases_are_served_as_listed():
    """Qwen3.6-27B is listed under qwen3.5-27b (identical tensor tables): naming it serves it, in the catalog's
    spelling; a name matched only by its last part (mistralai/mistral-nemo) serves the entry's own repo."""
    r = launch_commands("qwen/qwen3.6-27b", gpu="h200", engine="vllm")
    assert _argv(r["commands"]["vllm"]["command"])[2] == "Qwen/Qwen3.6-27B"
    r = launch_commands("mistralai/mistral-nemo", gpu="h100", engine="vllm")
    assert _argv(r["commands"]["vllm"]["command"])[2] == "mistralai/Mistral-Nemo-Instruct-2407"


def test_short_aliases_say_which_repo_is_served():
    r = launch_commands("qwen3.6-27b", gpu="h200", engine="vllm")
    assert _argv(r["commands"]["vllm"]["command"])[2] == "Qwen/Qwen3.6-27B"
    r = launch_commands("kimi-k2.6", gpu="h200", engine="vllm")
    assert any("'kimi-k2.6' is listed under the catalog entry kimi-k2.5" in m for m in r["messages"])


def test_multimodal_models_are_launched_text_only_as_planned():
    """vLLM profiles vision/audio encoders with dummy inputs unless every modality's limit is 0; the plan leaves that
    out, so the command sets the limits (Gemma 4 E2B has an audio tower too)."""
    r = launch_commands("gemma-4-26b-a4b", gpu="h100", engine="vllm")
    argv = _argv(r["commands"]["vllm"]["command"])
    assert json.loads(_opt(argv, "--limit-mm-per-prompt")) == {"image": 0, "video": 0}
    r = launch_commands("gemma-4-e2b-it", gpu="h100", engine="vllm")
    assert json.loads(_opt(_argv(r["commands"]["vllm"]["command"]), "--limit-mm-per-prompt"))["audio"] == 0
    assert "--limit-mm-per-prompt" not in launch_commands("llama-3.1-8b", gpu="h100", engine="vllm")[
        "commands"]["vllm"]["command"]
