"""vramplan inference MODEL [...]: inference memory per GPU (CONTRACT.md)."""

from __future__ import annotations

from . import add_model_arguments, fraction, impossible, positive_int, tokens


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--engine", choices=["vllm", "sglang", "llama.cpp", "transformers"], default=None,
                   help="follow this engine's memory accounting (default: plain accounting)")
    p.add_argument("--engine-version", default=None, help="engine release whose accounting to follow")
    p.add_argument("--gpu", default=None, help="GPU to fit into (e.g. h100, rtx-4090, 24GiB)")
    p.add_argument("--tensor-parallel-size", "-tp", type=positive_int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=positive_int, default=1)
    p.add_argument("--dtype", default="auto", help="auto|bfloat16|float16|float32")
    p.add_argument("--quantization", "-q", default=None,
                   help="weight format: fp8, int8, int4, gptq, awq, bnb-nf4, mxfp4, nvfp4, Q4_K_M, ...")
    p.add_argument("--kv-cache-dtype", default="auto", help="auto|fp16|bf16|fp8|int8|q8_0|q4_0")
    p.add_argument("--max-model-len", type=tokens, default=None, help="context tokens: 8192, 128k (=131072)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="concurrent sequences")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=None)
    p.add_argument("--max-num-batched-tokens", type=positive_int, default=None)
    p.add_argument("--max-num-seqs", type=positive_int, default=None)
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=None, help="llama.cpp: layers offloaded to the GPU")
    p.add_argument("--flash-attn", choices=["on", "off"], default=None, help="llama.cpp flash attention")
    p.add_argument("--n-cpu-moe", type=int, default=None,
                   help="llama.cpp: keep the routed experts of the first N layers in host RAM")
    p.add_argument("--cpu-moe", action="store_true", help="llama.cpp: keep every layer's routed experts in host RAM")
    p.add_argument("--ubatch-size", type=positive_int, default=None, help="llama.cpp n_ubatch")
    p.add_argument("--gb", action="store_true", help="show decimal GB instead of GiB")
    p.add_argument("--plot", default=None, help="write charts to FILE (.png, .svg or .html)")


def run(args) -> dict:
    from ..api import plan_inference

    extra = {}
    for k in ("n_gpu_layers", "flash_attn", "ubatch_size", "n_cpu_moe"):
        v = getattr(args, k, None)
        if v is not None:
            extra[k] = v
    if getattr(args, "cpu_moe", False):
        extra["cpu_moe"] = True
    from ..api import load_model

    lm = load_model(args.model, revision=args.revision, source=args.source)
    options = dict(
        quantization=args.quantization, dtype=args.dtype, kv_cache_dtype=args.kv_cache_dtype,
        batch_size=args.batch_size, tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size, engine=args.engine, engine_version=args.engine_version,
        gpu=args.gpu, gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs, **extra)
    result = plan_inference(lm, max_model_len=args.max_model_len, **options)
    if args.plot:
        from ..charts import context_sweep, default_contexts, write_inference_plot

        contexts = default_contexts(result["request"]["max_model_len"], lm.spec.max_position_embeddings)
        sweep = context_sweep(lambda c: plan_inference(lm, max_model_len=c, **options), contexts)
        result["plot"] = write_inference_plot(result, args.plot, sweep=sweep, unit="GB" if args.gb else "GiB")
    cap = result.get("capacity")
    if cap and cap.get("fits") is False:
        from ..units import format_bytes as fb

        where = result["request"].get("gpu") or "the GPU"
        conc = cap.get("max_concurrency")
        if conc is not None and 0 < conc < 1:  # an engine pool that fills the GPU but holds less than one request
            ctx = result["request"].get("max_model_len")
            impossible(result, f"does not fit {where}: the KV cache pool holds {cap.get('kv_cache_tokens', 0):,} "
                               f"tokens, less than one {ctx:,}-token request ({conc:.2f}x); lower --max-model-len, "
                               f"use an fp8 KV cache or more GPUs (vramplan fit {args.model} shows what does)")
        else:
            impossible(result, f"does not fit {where}: {fb(result['memory']['total'])} per GPU needed, "
                               f"{fb(cap['gpu_memory_bytes'])} there; vramplan fit {args.model} shows what does")
    return result


def render(r: dict, args) -> str:
    from ..render import size, table, title

    unit = "GB" if getattr(args, "gb", False) else "GiB"
    m = r["model"]
    req = r["request"]
    lines = [title(f"{m['name']}: inference memory per GPU"),
             f"{m['params']:,} parameters ({m['active_params']:,} active per token)",
             f"context {req['max_model_len']:,} tokens"
             + (" (the model's maximum, as engines default; --max-model-len to change)"
                if req.get("max_model_len_default") else "")
             + f" x batch {req['batch_size']}, KV cache {req['kv_cache_dtype']}, "
             f"TP={req['tensor_parallel_size']} PP={req['pipeline_parallel_size']}"
             + (f", engine {r.get('engine', {}).get('name', req['engine'])} {r.get('engine', {}).get('version', '')}"
                if req.get("engine") else ", plain accounting (no engine)")]
    wf = r.get("weights_format", {})
    if wf:
        lines.append(f"weights format: {wf.get('label', wf.get('name'))}, {wf.get('bits_per_weight', 0):.3f} bits/weight")
    rows = [[k, size(v, unit), f"{v:,} B"] for k, v in r["memory"].items() if k != "total"]
    rows.append(["total", size(r["memory"]["total"], unit), f"{r['memory']['total']:,} B"])
    lines += ["", table(rows, ["component", unit, "bytes"])]
    cap = r.get("capacity")
    if cap:
        lines.append("")
        if r.get("kv_bytes_per_token") == 0 and not cap.get("kv_cache_tokens"):  # purely recurrent: no KV cache
            lines.append(f"recurrent state capacity: {cap['max_concurrency']:.2f} sequences at any context length "
                         f"(the state does not grow with tokens; no KV cache)")
        else:
            lines.append(f"KV cache capacity: {cap['kv_cache_tokens']:,} tokens, max concurrency "
                         f"{cap['max_concurrency']:.2f} sequences of {req['max_model_len']:,} tokens")
        lines[-1] += "" if cap.get("fits", True) else "  ** does not fit **"
    for line in r.get("explain", []):
        lines.append(f"  - {line}")
    for msg in r.get("source", {}).get("messages", []):
        lines.append(f"  note: {msg}")
    if r.get("plot"):
        lines.append(f"chart written to {r['plot']}")
    lines.append(f"(1 GiB = 2^30 bytes, 1 GB = 10^9 bytes)")
    return "\n".join(lines)
