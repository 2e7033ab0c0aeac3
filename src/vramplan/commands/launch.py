"""vramplan launch MODEL [...]: the command lines that serve a plan, and a streaming client to call it."""

from __future__ import annotations

from . import add_model_arguments, fraction, impossible, positive_int, tokens


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--engine", choices=["vllm", "sglang", "llama.cpp", "ollama", "all"], default="all")
    p.add_argument("--gpu", default=None, help="GPU to plan for: picks the fewest that fit unless TP/PP are given")
    p.add_argument("--tensor-parallel-size", "-tp", type=positive_int, default=None)
    p.add_argument("--pipeline-parallel-size", "-pp", type=positive_int, default=None)
    p.add_argument("--max-model-len", type=tokens, default=None,
                   help="context tokens per sequence (default 8192 or the model's maximum if smaller)")
    p.add_argument("--quantization", "-q", default=None, help="weight format (fp8, bnb-nf4, Q4_K_M, ...)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--kv-cache-dtype", default="auto", help="auto|fp8|q8_0|q4_0")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=0.9)
    p.add_argument("--batch-size", "--max-num-seqs", dest="batch_size", type=positive_int, default=1,
                   help="concurrent sequences (vLLM --max-num-seqs, SGLang --max-running-requests, llama.cpp -np)")
    p.add_argument("--gguf-file", default=None, help="the .gguf file llama.cpp and Ollama should load")
    p.add_argument("--served-model-name", default=None, help="the name clients ask for (default: the model's name)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=positive_int, default=None)
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=None, help="llama.cpp/Ollama: layers on the GPU")


def run(args) -> dict:
    from ..launch_api import launch_commands

    r = launch_commands(args.model, gpu=args.gpu, tensor_parallel_size=args.tensor_parallel_size,
                           pipeline_parallel_size=args.pipeline_parallel_size, max_model_len=args.max_model_len,
                           quantization=args.quantization, dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype,
                           gpu_memory_utilization=args.gpu_memory_utilization, batch_size=args.batch_size,
                           engine=args.engine, gguf_file=args.gguf_file, served_model_name=args.served_model_name,
                           host=args.host, port=args.port, n_gpu_layers=args.n_gpu_layers)
    p = r["plan"]
    if p.get("fits") is False:
        from ..units import format_bytes as fb

        impossible(r, f"does not fit: {p['count']} x {p['gpu']} (TP={p['tensor_parallel_size']}, "
                      f"PP={p['pipeline_parallel_size']}) needs {fb(p['memory_per_gpu'])} per GPU; "
                      f"vramplan fit {args.model} shows what does")
    return r


def render(r: dict, args) -> str:
    from ..render import size, title

    p = r["plan"]
    head = f"{r['model']['name']}: launch commands"
    lines = [title(head)]
    where = (f"{p['count']} x {p['gpu']}" if p["gpu"] else f"{p['count']} GPU(s)")
    if p.get("offload_layers"):
        where += f" + {p['offload_layers']} layers in host RAM (llama.cpp/Ollama only)"
    lines.append(f"plan: {where}, TP={p['tensor_parallel_size']}, PP={p['pipeline_parallel_size']}"
                 + (f" (layers {'/'.join(str(s) for s in p['stage_layers'])})" if p["pipeline_parallel_size"] > 1
                    else "")
                 + f", context {p['max_model_len']:,}, {p['max_num_seqs']} sequence(s), weights {p['weights_format']},"
                   f" KV {p['kv_cache_dtype']}")
    if p.get("memory_per_gpu") is not None:
        lines.append(f"planned memory per GPU: {size(p['memory_per_gpu'])}"
                     + ("" if p.get("fits") else "  ** does not fit: see vramplan fit **"))
    names = {"vllm": "vLLM", "sglang": "SGLang", "llama.cpp": "llama.cpp (llama-server)", "ollama": "Ollama"}
    for key, cmd in r["commands"].items():
        lines.append(title(names.get(key, key)))
        lines.append(cmd["command"])
        for note in cmd.get("notes", []):
            lines.append(f"  # {note}")
        lines.append(f"  # OpenAI-compatible endpoint: {cmd['base_url']}")
    names_used = [names.get(k, k) for k in r["commands"]]
    first = names.get(r["client"].get("engine", ""), r["client"].get("engine", ""))
    lines.append(title(f"Client (Python, streaming; {r['client']['requires']})"))
    if len(names_used) > 1:
        lines.append(f"# for {first}; for the other engines use their endpoint above as base_url (--json: "
                     f"client.by_engine)")
    lines.append(r["client"]["python"])
    for msg in r.get("messages", []):
        lines.append(f"note: {msg}")
    return "\n".join(lines)
