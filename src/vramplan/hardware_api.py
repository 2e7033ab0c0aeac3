"""hardware_report: host RAM, disk, power/PSU and interconnect for one configuration of a model, with the formulas
and constants stated (importable from :mod:`vramplan.fit_api`)."""

from __future__ import annotations

from ._plan_common import (_batch_and_context, _candidate_dict, _fraction, _gpu, _layout_for, _model_summary,
                           _Workload, compute_dtype)
from .api import load_model
from .core import fit as F
from .core import hardware_report as HR
from .core import throughput as T
from .errors import InvalidRequest
from .units import format_bytes


def hardware_report(model, *, gpu=None, tensor_parallel_size=None, pipeline_parallel_size=None, quantization=None,
                    dtype: str = "auto", kv_cache_dtype: str = "auto", max_model_len=None, batch_size: int = 1,
                    n_gpu_layers=None, headroom: float = F.DEFAULT_HEADROOM) -> dict:
    """Host RAM, disk, power/PSU and interconnect for one configuration (the given GPU and layout, or the cheapest
    configuration that fits), with the formulas and constants stated."""
    lm = load_model(model)
    batch, ctx = _batch_and_context(lm, batch_size, kv_cache_dtype, max_model_len)
    headroom = _fraction(headroom, "headroom")
    w = _Workload(lm, quantization=quantization, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context=ctx,
                  batch=batch)
    if gpu:
        cand, _ = _layout_for(w, _gpu(gpu), tensor_parallel_size, pipeline_parallel_size, n_gpu_layers, headroom)
    else:
        from .catalog.gpus import list_gpus

        res = w.search(list_gpus(), headroom=headroom, allow_offload=False)
        usual = [c for c in res.by_gpu if c.fits and c.gpu.category in ("datacenter", "workstation", "consumer")]
        pool = usual or [c for c in res.by_gpu if c.fits]
        # the least hardware that runs it: fewest GPUs, then the least total GPU memory
        cand = min(pool, key=lambda c: (c.count, c.count * c.capacity_bytes)) if pool else res.closest_miss()
    if cand is None:
        raise InvalidRequest(f"no configuration to report for {lm.name}", field="gpu")
    g = cand.gpu
    offload_bytes = cand.host_bytes if cand.offload_layers else 0
    ram = HR.host_ram(w.wb.total_bytes, offload_bytes=offload_bytes, gpu_processes=cand.count,
                      unified_memory=g.unified_memory)
    dsk = HR.disk(w.wb.total_bytes)
    pw = HR.power(g, cand.count, cand.nodes)
    dec = None
    if g.hbm_bytes_per_s > 0:
        dec = T.decode_speed(lm.spec, w.wb, g, context=ctx, batch=batch, kv_dtype=kv_cache_dtype,
                             layout=w.layout(cand), compute_dtype=compute_dtype(w.fmt))
    pre = T.prefill_time(lm.spec, w.wb, g, tokens=min(ctx, 2048), layout=w.layout(cand),
                         compute_dtype=compute_dtype(w.fmt))
    ic = HR.interconnect(lm.spec, g, tp=cand.tp, pp=cand.pp, nodes=cand.nodes,
                         decode_tokens_per_s=dec.throughput_tokens_per_s.expected if dec else 0.0,
                         prefill_tokens_per_s=(pre.tokens / pre.seconds.expected) if pre else 0.0)
    out = {"model": _model_summary(lm), "workload": w.describe(),
           "configuration": _candidate_dict(cand, w) | {"chosen": "as requested" if gpu else
                                                        "the least hardware that fits: fewest GPUs, then the least "
                                                        "GPU memory (data-center, workstation and consumer GPUs)"},
           "host_ram": ram.as_dict(), "disk": dsk.as_dict(), "power": pw.as_dict() if pw else None,
           "interconnect": ic.as_dict(),
           "article": {"ram": "the article recommends at least 256 GB of RAM for Llama 3.1 70B (>140 GB model), "
                              "512 GB-1 TB for several instances",
                       "storage": "NVMe SSDs of 1 TB or more", "power": "PSUs of 1200 W or higher",
                       "network": "10 Gbps Ethernet or higher between machines"}}
    if pw is None:
        out["power_note"] = f"the catalog has no power figure for {g.name}"
    out["text"] = _hardware_text(out, cand)
    return out


def _hardware_text(r: dict, cand: F.Candidate) -> str:
    ram, dsk, pw, ic = r["host_ram"], r["disk"], r["power"], r["interconnect"]
    chosen = r["configuration"].get("chosen", "")
    lines = [f"configuration: {cand.label()}" + (" (the least hardware that fits: fewest GPUs, then the least GPU "
                                                  "memory)" if chosen != "as requested" else ""),
             f"host RAM: at least {format_bytes(ram['minimum'])}, recommended {format_bytes(ram['recommended'])} "
             f"-> install {ram['recommended_installed_GiB']} GiB (checkpoint {format_bytes(ram['checkpoint'])} in "
             f"the page cache" + (f", {format_bytes(ram['offloaded'])} of offloaded layers" if ram['offloaded']
                                   else "") + ")",
             f"disk: {format_bytes(dsk['needed'])} ({dsk['needed'] / 1e9:,.1f} GB) = the checkpoint's "
             f"{format_bytes(dsk['checkpoint'])} + 5% for tokenizer, configs and file-system slack; NVMe keeps "
             f"loading fast"]
    if pw:
        lines.append(f"power: {pw['total_W']:,.0f} W ({pw['gpus_W']:,.0f} W GPUs + {pw['host_W']:,.0f} W host)"
                     + (f", PSU {pw['psu_W']} W" if pw.get("psu_W") else "") + f"; {pw['note']}")
    lines.append(f"interconnect: {ic['verdict']}")
    return "\n".join(lines)


__all__ = ["hardware_report"]
