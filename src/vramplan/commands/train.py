"""vramplan train MODEL [...]: training memory per GPU (CONTRACT.md), with what torch allocates and what the GPU
must have, the model states after a step, host RAM for offload, and the smallest change that fits a --gpu."""

from __future__ import annotations

from ..core.peft_methods import METHODS as PEFT_METHODS
from . import add_model_arguments, impossible, positive_int, tokens


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--method", default="full",
                   help="full | lora | qlora | dora | ia3 | prompt | ln-tuning, or another PEFT method: "
                        + ", ".join(PEFT_METHODS) + " (default full)")
    p.add_argument("--peft-option", action="append", default=None, metavar="FIELD=VALUE",
                   help="a PEFT config field of the method, repeatable: r=256 (vera), oft_block_size=32 (oft), "
                        "n_frequency=1000 (fourierft), num_virtual_tokens=20 (prefix_tuning), "
                        "target_modules=q_proj,v_proj ...")
    p.add_argument("--modules-to-save", default=None,
                   help="train full copies of embed_tokens and/or lm_head with an adapter (PEFT modules_to_save)")
    p.add_argument("--optimizer", default=None,
                   help="adamw | adamw-8bit | paged-adamw-8bit | sgd | sgd-momentum | adafactor | lion "
                        "(default adamw; paged-adamw-8bit for qlora)")
    p.add_argument("--precision", default="bf16-mixed",
                   help="bf16-mixed (autocast, fp32 master) | fp16-mixed | bf16 (pure) | fp32 (default bf16-mixed)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="sequences per micro-batch per GPU")
    p.add_argument("--seq-len", type=tokens, default=None, help="tokens per sequence: 2048, 8k (default 2048)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute layers in backward")
    p.add_argument("--attention", default="sdpa", help="sdpa | flash | eager (eager keeps s^2 score tensors)")
    p.add_argument("--lora-rank", type=positive_int, default=None, help="LoRA / QLoRA / DoRA rank (default 16)")
    p.add_argument("--lora-targets", default=None, help="all-linear (default) or q_proj,v_proj,...")
    p.add_argument("--gpus", type=positive_int, default=1, help="data-parallel GPUs")
    p.add_argument("--zero", type=int, default=0, help="DeepSpeed ZeRO stage 0-3 (FSDP full shard = 3)")
    p.add_argument("--fsdp", action="store_true", help="shard with torch FSDP (full shard) instead of DeepSpeed")
    p.add_argument("--offload-optimizer", action="store_true", help="optimizer states in host RAM (ZeRO-Offload)")
    p.add_argument("--offload-params", action="store_true", help="parameters in host RAM (ZeRO-3 only)")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="gradient accumulation steps")
    p.add_argument("--loss", default="full", help="full (fp32 logits) | chunked | fused (Liger / Cut CE)")
    p.add_argument("--loop", default="trainer",
                   help="trainer (HF Trainer drops the outputs before backward) | custom (outputs kept)")
    p.add_argument("--padding-mask", action="store_true",
                   help="variable-length padded batches (transformers then repeats K/V for SDPA)")
    p.add_argument("--quantization", default=None, help="QLoRA base format (default bnb-nf4; gptq, awq, ...)")
    p.add_argument("--gpu", default=None, help="GPU to fit into (e.g. h100, a100-40gb, rtx-4090, 24GiB)")
    p.add_argument("--gb", action="store_true", help="show decimal GB instead of GiB")
    p.add_argument("--plot", default=None, help="write the breakdown chart to FILE (.png, .svg or .html)")


def run(args) -> dict:
    from ..api import load_model
    from ..training_api import plan_training

    from ..core.peft_methods import LORA_LIKE

    ranked = ("lora", "qlora", "dora", *LORA_LIKE)
    if args.lora_rank is not None and str(args.method).lower() not in ranked:
        from ..errors import InvalidRequest

        raise InvalidRequest(f"--lora-rank applies to --method {', '.join(ranked)}, not {args.method} (other PEFT "
                             f"methods take their rank as a --peft-option, e.g. r=N)", field="lora_rank")
    lm = load_model(args.model, revision=args.revision, source=args.source)
    result = plan_training(
        lm, method=args.method, optimizer=args.optimizer, precision=args.precision, batch_size=args.batch_size,
        seq_len=args.seq_len, gradient_checkpointing=args.gradient_checkpointing, attention=args.attention,
        lora_rank=args.lora_rank or 16, lora_targets=args.lora_targets, gpus=args.gpus, zero=args.zero,
        fsdp=args.fsdp, offload_optimizer=args.offload_optimizer, offload_params=args.offload_params,
        grad_accum=args.grad_accum, loss=args.loss, loop=args.loop, padding_mask=args.padding_mask,
        quantization=args.quantization, gpu=args.gpu, peft_options=getattr(args, "peft_option", None),
        modules_to_save=getattr(args, "modules_to_save", None))
    if getattr(args, "plot", None):
        from ..charts import write_training_plot

        result["plot"] = write_training_plot(result, args.plot, "GB" if args.gb else "GiB")
    cap = result.get("capacity")
    if cap and not cap.get("fits", True):
        advice = (result.get("fit_advice") or {}).get("text") or "does not fit"
        impossible(result, f"{result['request'].get('gpu')}: {advice}")
    return result


def render(r: dict, args) -> str:
    from ..render import size, table, title

    unit = "GB" if getattr(args, "gb", False) else "GiB"
    m, req = r["model"], r["request"]
    what = req["method"]
    if req.get("lora_rank"):
        what += f" r={req['lora_rank']} on {req['lora_targets']}"
    elif r.get("adapter", {}).get("options"):
        shown = {k: v for k, v in r["adapter"]["options"].items() if k != "target_modules"}
        what += " " + ", ".join(f"{k}={v}" for k, v in shown.items())
        if r["adapter"].get("targets"):
            what += f" on {','.join(dict.fromkeys(r['adapter']['targets']))}"
    lines = [title(f"{m['name']}: training memory per GPU"),
             f"{m['params']:,} parameters, {r['trainable_params']:,} trainable ({what})",
             f"{req['precision']}, {req['optimizer']}, batch {req['batch_size']} x {req['seq_len']:,} tokens, "
             f"attention {req['attention']}"
             + (", gradient checkpointing" if req["gradient_checkpointing"] else "")
             + (f", {req['gpus']} GPUs" + (" FSDP (full shard)" if req.get("fsdp") else f" ZeRO-{req['zero']}" if req["zero"] else " DDP") if req["gpus"] > 1
                else ", 1 GPU")]
    mem = r["memory"]
    rows = [[k, size(v, unit), f"{v:,} B"] for k, v in mem.items() if k != "total"]
    rows.append(["total (the GPU must have)", size(mem["total"], unit), f"{mem['total']:,} B"])
    lines += ["", f"at the peak ({r['peak']['phase']}):", table(rows, ["component", unit, "bytes"])]
    lines.append("")
    lines.append(f"torch allocated at the peak: {size(r['allocated_peak'], unit)}; reserved by the caching "
                 f"allocator: {size(r['reserved_peak'], unit)}; + CUDA context"
                 + (" and NCCL" if req["gpus"] > 1 else "") + f" = {size(mem['total'], unit)}")
    ms = r["model_states"]
    lines.append(f"model states after a step: weights {size(ms['weights'], unit)} + gradients "
                 f"{size(ms['gradients'], unit)} + optimizer {size(ms['optimizer'], unit)} = {size(ms['total'], unit)}")
    host = r.get("host", {})
    if host.get("offloaded_per_gpu"):
        lines.append(f"host RAM for offload: {size(host['offloaded_per_gpu'], unit)} per GPU, "
                     f"{size(host['offloaded_per_host'], unit)} per host ({host['gpus_per_host']} GPUs)")
    cap = r.get("capacity")
    if cap:
        spare = cap["gpu_memory_bytes"] - r["memory"]["total"]
        lines.append(f"{req.get('gpu')}: {size(cap['gpu_memory_bytes'], unit)} -> "
                     + (f"fits, {size(spare, unit)} spare" if cap["fits"] else "** does not fit **")
                     + (" (vramplan fit also keeps 5% headroom, so it may not list this GPU)"
                        if cap["fits"] and spare < 0.05 * cap["gpu_memory_bytes"] else ""))
        adv = r.get("fit_advice")
        if adv:
            lines.append(f"  {adv['text']}")
    lines.append("")
    for line in r.get("explain", []):
        lines.append(f"  - {line}")
    if r.get("plot"):
        lines.append(f"chart written to {r['plot']}")
    lines.append("(1 GiB = 2^30 bytes, 1 GB = 10^9 bytes)")
    return "\n".join(lines)
