"""launch_commands: the command lines that serve a plan (``vllm serve``, SGLang, ``llama-server``, Ollama) and an
OpenAI-compatible streaming client in Python (importable from :mod:`vramplan.fit_api`)."""

from __future__ import annotations

import json

from ._plan_common import (_check_tp, _context, _fraction, _gpu, _int, _layout_for, _model_summary, _parallel_sizes,
                           _Workload)
from .api import load_model
from .core import fit as F
from .core.memory import kv_bits
from .errors import UnknownName, suggest
from .units import format_bytes

ENGINES = ("vllm", "sglang", "llama.cpp", "ollama")
PORTS = {"vllm": 8000, "sglang": 30000, "llama.cpp": 8080, "ollama": 11434}
_VLLM_QUANT = {"fp8": "fp8", "bnb-nf4": "bitsandbytes", "bitsandbytes": "bitsandbytes"}
_SGLANG_QUANT = {"fp8": "fp8"}
_LLAMACPP_KV = {"auto": "f16", "fp16": "f16", "bf16": "bf16", "f16": "f16", "float16": "f16", "bfloat16": "bf16",
                "fp8": "q8_0", "fp8_e4m3": "q8_0", "fp8_e5m2": "q8_0", "int8": "q8_0", "q8_0": "q8_0",
                "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "iq4_nl": "iq4_nl",
                "fp32": "f32", "float32": "f32", "f32": "f32"}
_VLLM_KV = {"fp8": "fp8", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2", "int8": "fp8", "q8_0": "fp8"}
_SGLANG_KV = {"fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2", "int8": "fp8_e4m3",
              "q8_0": "fp8_e4m3"}


def _shell(argv: list[str], env: dict | None = None) -> str:
    """One shell command, quoted; when long, each option and its value on a continuation line."""
    import shlex

    head = [f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items()]
    words = [shlex.quote(str(a)) for a in argv]
    one_line = " ".join(head + words)
    if len(one_line) <= 100:
        return one_line
    lead = 3 if argv[1:2] == ["-m"] else 1  # the program: "vllm", "llama-server", or "python -m module"
    groups, i = [" ".join(words[:lead])], lead
    while i < len(words):
        if words[i].startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            groups.append(f"{words[i]} {words[i + 1]}")
            i += 2
        else:
            groups.append(words[i])
            i += 1
    first_opt = next((k for k, g in enumerate(groups) if k and g.startswith("-")), len(groups))
    lines = [" ".join(head + groups[:first_opt])] + ["  " + g for g in groups[first_opt:]]
    return " \\\n".join(lines)


def launch_commands(model, *, gpu=None, tensor_parallel_size=None, pipeline_parallel_size=None,
                    max_model_len=None, quantization=None, dtype: str = "auto", kv_cache_dtype: str = "auto",
                    gpu_memory_utilization: float = 0.9, batch_size: int = 1, engine: str | None = None,
                    gguf_file: str | None = None, served_model_name: str | None = None, host: str = "0.0.0.0",
                    port=None, n_gpu_layers=None, headroom: float = F.DEFAULT_HEADROOM) -> dict:
    """The exact command lines that serve a plan: ``vllm serve``, ``python -m sglang.launch_server``,
    ``llama-server`` and Ollama (Modelfile + environment), plus an OpenAI-compatible streaming client in Python.

    TP/PP: as given, else the fewest GPUs of ``gpu`` that fit (TP=1 when no GPU is named). Uneven pipeline stages
    become ``VLLM_PP_LAYER_PARTITION``; a llama.cpp plan that offloads layers becomes ``-ngl``.
    """
    lm = load_model(model)
    if engine not in (None, "", "all") and engine not in ENGINES:
        raise UnknownName("engine", str(engine), suggest(str(engine), ENGINES))
    # checked in this order (the first bad argument is the one named), so not _batch_and_context
    batch = _int(batch_size, "batch_size")
    util = _fraction(gpu_memory_utilization, "gpu_memory_utilization", 0.05, 1.0)
    if port is not None:
        port = _int(port, "port", 1, 65535)
    kv_bits(kv_cache_dtype)
    ctx = _context(lm, max_model_len)
    w = _Workload(lm, quantization=quantization, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                  batch=batch)
    cand = None
    gpu_obj = _gpu(gpu) if gpu else None
    if gpu_obj is not None:
        cand, _ = _layout_for(w, gpu_obj, tensor_parallel_size, pipeline_parallel_size, n_gpu_layers, headroom)
    tp, pp = (cand.tp, cand.pp) if cand else _parallel_sizes(tensor_parallel_size, pipeline_parallel_size)
    _check_tp(w, tp)
    stages = cand.stage_layers if cand and cand.pp > 1 else (F.layout_need(w.stack, tp, pp).stage_layers
                                                             if pp > 1 else (lm.spec.num_layers,))
    name = served_model_name or lm.name
    repo = lm.hf_id or lm.name
    messages = list(lm.messages)
    local = lm.source in ("file", "directory", "safetensors")
    if local:  # engines load the folder that holds config.json and the weights
        from pathlib import Path

        where = Path(lm.provenance.split(" ", 1)[-1])
        folder = where if lm.source == "directory" else where.parent
        repo = str(folder)
        name = served_model_name or (folder.name or lm.name).removesuffix(".json")
        if lm.source != "directory":
            messages.append(f"the commands serve {repo}, the folder of {where.name}: the weights must sit beside it")
    if lm.spec.o_groups:  # DeepSeek-V4
        messages.append("the engines' own memory accounting for DeepSeek-V4 is not modelled: these commands follow "
                        "the plain plan (weights + KV cache); check the engine's start-up log")
    typed = str(model) if isinstance(model, str) else ""
    short = typed.lower()
    if (lm.source == "catalog" and typed and "/" not in typed and short != lm.name
            and short != repo.rsplit("/", 1)[-1].lower()):
        if any(w in short for w in ("instruct", "chat", "-it")) and not any(
                w in repo.lower() for w in ("instruct", "chat", "-it")):
            messages.append(f"'{typed}' shares the catalog entry {lm.name}, whose repo {repo} is the base model: the "
                            f"commands serve {repo}; name the instruct/chat repo's Hugging Face id to serve it instead")
        else:
            messages.append(f"'{typed}' is listed under the catalog entry {lm.name} (the same architecture): the "
                            f"commands serve {repo}; name a Hugging Face id to serve another repo")
    fmt_name = w.fmt.name
    from .core.gguf_mix import GGUFMixFormat

    is_gguf_mix = isinstance(w.fmt, GGUFMixFormat)
    commands: dict[str, dict] = {}
    want = ENGINES if engine in (None, "", "all") else (engine,)

    if "vllm" in want:
        argv = ["vllm", "serve", repo, "--served-model-name", name, "--host", host,
                "--port", str(port or PORTS["vllm"]), "--max-model-len", str(ctx),
                "--gpu-memory-utilization", f"{util:g}", "--max-num-seqs", str(batch)]
        if tp > 1:
            argv += ["--tensor-parallel-size", str(tp)]
        if pp > 1:
            argv += ["--pipeline-parallel-size", str(pp)]
        notes, env = [], {}
        if quantization and not is_gguf_mix:
            q = _VLLM_QUANT.get(fmt_name.lower())
            if q:
                argv += ["--quantization", q]
            else:
                notes.append(f"{fmt_name}: point vLLM at a checkpoint already quantized to it (vLLM reads its "
                             "quantization_config); there is no on-the-fly flag")
        if is_gguf_mix:
            notes.append("GGUF mixes are llama.cpp's format; serve them with llama-server or Ollama")
        if dtype not in (None, "", "auto"):
            argv += ["--dtype", dtype]
        towers = {n for n, _ in lm.spec.extra_params}
        if any("vision" in n or "projector" in n or "audio" in n for n in towers):
            limits = {"image": 0, "video": 0} | ({"audio": 0} if any("audio" in n for n in towers) else {})
            argv += ["--limit-mm-per-prompt", json.dumps(limits, separators=(",", ":"))]
            notes.append("text-only serving, as planned: the zero multimodal limits skip vLLM's encoder profiling, "
                         "which the plan does not include (drop the flag to accept images; the KV cache then shrinks, "
                         "by up to tens of GiB with video)")
        kv = _VLLM_KV.get(kv_cache_dtype.lower())
        if kv:
            argv += ["--kv-cache-dtype", kv]
        if pp > 1 and len(set(stages)) > 1:
            env["VLLM_PP_LAYER_PARTITION"] = ",".join(str(s) for s in stages)
            notes.append("uneven pipeline stages (the embedding sits on the first, the head on the last)")
        if cand and cand.nodes > 1:
            notes.append(f"{cand.nodes} nodes: start a Ray cluster across them first (ray start --head / "
                         "ray start --address=...), then run this on the head node")
        if cand and cand.offload_layers:
            notes.append(_offload_only_note(cand, fmt_name))
        commands["vllm"] = {"argv": argv, "env": env, "command": _shell(argv, env), "notes": notes,
                            "base_url": f"http://localhost:{port or PORTS['vllm']}/v1"}

    if "sglang" in want:
        argv = ["python", "-m", "sglang.launch_server", "--model-path", repo, "--served-model-name", name,
                "--host", host, "--port", str(port or PORTS["sglang"]), "--context-length", str(ctx),
                "--mem-fraction-static", f"{util:g}", "--max-running-requests", str(batch)]
        if tp > 1:
            argv += ["--tp-size", str(tp)]
        if pp > 1:
            argv += ["--pp-size", str(pp)]
        notes = []
        if quantization and not is_gguf_mix:
            q = _SGLANG_QUANT.get(fmt_name.lower())
            if q:
                argv += ["--quantization", q]
            else:
                notes.append(f"{fmt_name}: load a checkpoint already quantized to it")
        if is_gguf_mix:
            notes.append("GGUF mixes are llama.cpp's format; serve them with llama-server or Ollama")
        kv = _SGLANG_KV.get(kv_cache_dtype.lower())
        if kv:
            argv += ["--kv-cache-dtype", kv]
        if cand and cand.nodes > 1:
            notes.append(f"{cand.nodes} nodes: add --nnodes {cand.nodes} --node-rank N --dist-init-addr HEAD:PORT "
                         "on each node")
        if cand and cand.offload_layers:
            notes.append(_offload_only_note(cand, fmt_name))
        commands["sglang"] = {"argv": argv, "env": {}, "command": _shell(argv), "notes": notes,
                              "base_url": f"http://localhost:{port or PORTS['sglang']}/v1"}

    gguf_mix = fmt_name.upper() if is_gguf_mix else "Q4_K_M"
    own_file = lm.provenance.removeprefix("GGUF file ") if lm.source == "gguf" else None
    gguf = gguf_file or own_file or f"{name if local else lm.name}-{gguf_mix}.gguf"
    # llama.cpp and Ollama load the GGUF file named below: when the plan's format is not a GGUF mix, the layers that
    # fit on the GPU are planned again for that file's mix (Q4_K_M layers are about a third of bf16 ones)
    gcand, gguf_note = cand, None
    if (gpu_obj is not None and not is_gguf_mix and not gguf_file and lm.source != "gguf"
            and ("llama.cpp" in want or "ollama" in want)):
        wg = _Workload(lm, quantization=gguf_mix, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                       batch=batch)
        gcand, _ = _layout_for(wg, gpu_obj, tensor_parallel_size, pipeline_parallel_size, n_gpu_layers, headroom)
        if gcand is not None:
            where = f"{gcand.count} x {gcand.gpu.name}" + (
                f" + {gcand.offload_layers} layers in host RAM" if gcand.offload_layers else "")
            gguf_note = (f"planned for the {gguf_mix} file: {where}, {format_bytes(gcand.need_bytes)} per GPU"
                         + ("" if gcand.fits else " (does not fit)"))
    ngl = lm.spec.num_layers + 1
    if gcand and gcand.offload_layers:
        ngl = lm.spec.num_layers - gcand.offload_layers
    elif n_gpu_layers is not None:
        ngl = _int(n_gpu_layers, "n_gpu_layers", 0, 100000)
    lkv = _LLAMACPP_KV.get(kv_cache_dtype.lower(), "f16")
    if "llama.cpp" in want:
        argv = ["llama-server", "-m", gguf, "--alias", name, "--host", host,
                "--port", str(port or PORTS["llama.cpp"]), "-c", str(ctx * batch), "-np", str(batch),
                "-ngl", str(ngl), "-fa", "on"]
        if lkv != "f16":
            argv += ["--cache-type-k", lkv, "--cache-type-v", lkv]
        count = gcand.count if gcand else tp * pp
        notes = [f"-c is the total context: {batch} slot(s) x {ctx:,} tokens (llama-server divides -c by -np)"]
        if gguf_note:
            notes.append(gguf_note)
        if count > 1:
            argv += ["--split-mode", "layer", "--tensor-split", ",".join("1" for _ in range(count))]
            notes.append("llama.cpp splits layers over the GPUs (pipeline-style); TP as in vLLM is not used")
        if not is_gguf_mix and not gguf_file and lm.source != "gguf":
            stem = name if local else lm.name
            src = repo if local else "<model dir>"
            notes.append(f"make the GGUF first: python convert_hf_to_gguf.py {src} --outtype bf16 --outfile "
                         f"{stem}-BF16.gguf, then llama-quantize {stem}-BF16.gguf {gguf} {gguf_mix}")
        commands["llama.cpp"] = {"argv": argv, "env": {}, "command": _shell(argv), "notes": notes,
                                 "base_url": f"http://localhost:{port or PORTS['llama.cpp']}/v1"}

    if "ollama" in want:
        modelfile = [f"FROM ./{gguf}", f"PARAMETER num_ctx {ctx}"]
        if gcand and gcand.offload_layers:
            modelfile.append(f"PARAMETER num_gpu {ngl}")
        env = {"OLLAMA_NUM_PARALLEL": str(batch), "OLLAMA_FLASH_ATTENTION": "1"}
        if lkv in ("q8_0", "q4_0"):
            env["OLLAMA_KV_CACHE_TYPE"] = lkv
        if port and port != PORTS["ollama"]:
            env["OLLAMA_HOST"] = f"{host}:{port}"
        serve = ["ollama", "serve"]
        # the server first (create and run talk to it), with the environment that sets the KV type and parallelism
        steps = ["cat > Modelfile <<'EOF'\n" + "\n".join(modelfile) + "\nEOF", _shell(serve, env) + " &",
                 "until ollama list >/dev/null 2>&1; do sleep 1; done",  # wait until the server answers
                 _shell(["ollama", "create", name, "-f", "Modelfile"]), _shell(["ollama", "run", name])]
        notes = ["Ollama reserves num_ctx for each parallel request", "the server must be started with the "
                 "environment shown for the KV cache type and parallelism to apply"] + ([gguf_note] if gguf_note else [])
        commands["ollama"] = {"argv": serve, "env": env, "modelfile": "\n".join(modelfile),
                              "command": "\n".join(steps), "notes": notes,
                              "base_url": f"http://localhost:{port or PORTS['ollama']}/v1"}

    clients = {k: _client_snippet(v["base_url"], name) for k, v in commands.items()}
    first = next(iter(commands))
    return {"model": _model_summary(lm),
            "plan": {"gpu": cand.gpu.name if cand else None, "count": cand.count if cand else tp * pp,
                     "tensor_parallel_size": tp, "pipeline_parallel_size": pp, "stage_layers": list(stages),
                     "max_model_len": ctx, "max_num_seqs": batch, "quantization": quantization,
                     "weights_format": fmt_name, "kv_cache_dtype": kv_cache_dtype,
                     "gpu_memory_utilization": util, "fits": cand.fits if cand else None,
                     "memory_per_gpu": cand.need_bytes if cand else None,
                     "offload_layers": cand.offload_layers if cand else 0},
            "commands": commands, "client": {"python": clients[first], "engine": first, "by_engine": clients,
                                             "requires": "pip install openai"},
            "messages": messages}


def _offload_only_note(cand, fmt_name: str) -> str:
    return (f"does not fit: {cand.gpu.name} holds {fmt_name} only with {cand.offload_layers} layers in host RAM, "
            f"which llama.cpp and Ollama do and this engine does not; more GPUs or a smaller format: vramplan fit")


def _client_snippet(base_url: str, model_name: str) -> str:
    return "\n".join([
        "from openai import OpenAI",
        "",
        f'client = OpenAI(base_url="{base_url}", api_key="not-needed")',
        "stream = client.chat.completions.create(",
        f'    model="{model_name}",',
        '    messages=[{"role": "user", "content": "Explain the KV cache in one paragraph."}],',
        "    max_tokens=256,",
        "    stream=True,",
        ")",
        "for chunk in stream:",
        "    if chunk.choices and chunk.choices[0].delta.content:",
        '        print(chunk.choices[0].delta.content, end="", flush=True)',
        "print()",
    ])


__all__ = ["launch_commands"]
