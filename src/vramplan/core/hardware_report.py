"""The rest of the machine: host RAM, disk, power and PSU, and the interconnect tensor parallelism needs.

The Llama 3.1 memory article's hardware sections ("RAM Specifications", "Storage Considerations", "Cooling and Power
Supply", "Network Infrastructure") give rules of thumb for 70B: at least 256 GB of RAM over a >140 GB model, NVMe SSDs
of 1 TB or more, PSUs of 1200 W or higher, 10 Gbps Ethernet or faster. Here each becomes a formula with its inputs and
the constants stated, so that it holds for any model and configuration. Pure: standard library and the core only.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from .hardware import GPU
from .model import ModelSpec
from .throughput import INTERNODE_BYTES_PER_S, PCIE4_X16_BYTES_PER_S, tp_bytes_per_token

_GiB = 1 << 30

# ----- host RAM ---------------------------------------------------------------------------------------------------

HOST_BASE_BYTES = 8 * _GiB
"""Operating system, the serving process's Python and tokenizer, page tables: 8 GiB [our allowance]."""
HOST_PER_GPU_PROCESS_BYTES = 2 * _GiB
"""Each GPU worker process (torch + CUDA libraries resident, pinned staging buffers): 2 GiB [inferred; torch with
CUDA maps ~1-3 GiB of host memory per process]."""
RAM_SIZES_GIB = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
"""Installable host RAM sizes (GiB) to round up to: common DIMM population totals."""


@dataclass(frozen=True, slots=True)
class HostRam:
    minimum_bytes: int  # the process can start: offloaded layers + base + per-process, checkpoint streamed (mmap)
    recommended_bytes: int  # the whole checkpoint fits in the page cache as well (fast restarts, no thrashing)
    recommended_size_gib: int  # rounded up to an installable size
    checkpoint_bytes: int
    offload_bytes: int
    processes: int

    def as_dict(self) -> dict:
        return {"minimum": self.minimum_bytes, "recommended": self.recommended_bytes,
                "recommended_installed_GiB": self.recommended_size_gib, "checkpoint": self.checkpoint_bytes,
                "offloaded": self.offload_bytes, "gpu_processes": self.processes,
                "formula": "minimum = offloaded + 8 GiB base + 2 GiB per GPU process; recommended = minimum + "
                           "checkpoint (page cache), rounded up to an installable size"}


def round_up_ram_gib(n_bytes: int) -> int:
    need = n_bytes / _GiB
    for size in RAM_SIZES_GIB:
        if size >= need:
            return size
    return int(ceil(need))


def host_ram(checkpoint_bytes: int, *, offload_bytes: int = 0, gpu_processes: int = 1,
             unified_memory: bool = False) -> HostRam:
    """Host RAM for serving a checkpoint of ``checkpoint_bytes``.

    Loaders memory-map safetensors/GGUF files, so a load streams through the page cache and does not strictly need
    RAM for the whole checkpoint (minimum); keeping it cached is what the article's "256 GB for a >140 GB model" buys
    (recommended = checkpoint + the minimum). Offloaded layers (llama.cpp ``-ngl`` below the layer count) live in RAM
    and count in full. On unified memory the weights already sit in RAM, so the checkpoint counts once.
    """
    if checkpoint_bytes < 0 or offload_bytes < 0 or gpu_processes < 0:
        raise ValueError("sizes and process counts must be non-negative")
    minimum = offload_bytes + HOST_BASE_BYTES + gpu_processes * HOST_PER_GPU_PROCESS_BYTES
    if unified_memory:
        minimum += checkpoint_bytes
        recommended = minimum
    else:
        recommended = minimum + checkpoint_bytes
    return HostRam(minimum, recommended, round_up_ram_gib(recommended), checkpoint_bytes, offload_bytes,
                   gpu_processes)


# ----- disk -------------------------------------------------------------------------------------------------------

DISK_ALLOWANCE_FRACTION = 0.05
"""Tokenizer, configs, safetensors JSON headers and file-system slack on top of the tensor bytes: 5% [our
allowance; a safetensors header is a few hundred KB and a tokenizer a few MB, so this is generous]."""


@dataclass(frozen=True, slots=True)
class Disk:
    checkpoint_bytes: int
    needed_bytes: int
    with_conversion_bytes: int  # a second copy during a conversion/quantization (HF -> GGUF, ...)

    def as_dict(self) -> dict:
        return {"checkpoint": self.checkpoint_bytes, "needed": self.needed_bytes,
                "with_conversion": self.with_conversion_bytes,
                "formula": f"checkpoint tensor bytes x (1 + {DISK_ALLOWANCE_FRACTION}); a conversion needs the "
                           "source and the result side by side"}


def disk(checkpoint_bytes: int, converted_bytes: int = 0) -> Disk:
    """Disk for one checkpoint; ``converted_bytes`` is the size of a converted copy made from it (0: none)."""
    need = ceil(checkpoint_bytes * (1 + DISK_ALLOWANCE_FRACTION))
    conv = need + ceil(converted_bytes * (1 + DISK_ALLOWANCE_FRACTION)) if converted_bytes else need
    return Disk(checkpoint_bytes, need, conv)


# ----- power -------------------------------------------------------------------------------------------------------

HOST_WATTS_WORKSTATION = 200.0
"""CPU, board, RAM, drives and fans of a desktop/workstation under load. With :data:`PSU_LOAD_FACTOR` it reproduces
NVIDIA's own PSU advice: RTX 4090 (450 W board power) -> (450 + 200) / 0.8 = 812 W -> an 850 W PSU, which is what
NVIDIA recommends (hothardware.com, 'NVIDIA itself recommends an 850-watt power supply')."""
HOST_WATTS_PER_DATACENTER_GPU = 575.0
"""Platform power per GPU in an 8-GPU server: DGX H100's maximum system power is ~10.2 kW with 8 x 700 W GPUs, so the
rest (CPUs, NVSwitches, NICs, fans, drives) draws ~4.6 kW, 575 W per GPU (NVIDIA DGX H100 datasheet [vendor value])."""
SXM_CLASS_WATTS = 500.0
"""Boards at or above this power are SXM/OAM modules in 8-GPU baseboards (H100 SXM 700 W, MI300X 750 W, B200
1000 W) and get the DGX platform share; PCIe data-center cards (L4, A10, L40S, H100 PCIe at 350 W) are planned like a
workstation host [our threshold]."""
PSU_LOAD_FACTOR = 0.8
"""Size a PSU so the steady load is at most 80% of its rating (efficiency sweet spot, margin for transients)."""
PSU_SIZES_W = (450, 550, 650, 750, 850, 1000, 1200, 1300, 1500, 1600, 2000, 2400, 2800)
"""ATX/workstation PSU ratings on sale; above 2.8 kW a single consumer PSU does not exist (use several, or a server)."""


@dataclass(frozen=True, slots=True)
class Power:
    gpu_watts: float
    host_watts: float
    total_watts: float
    psu_watts: int | None  # a single ATX PSU rating; None for servers and Apple machines
    note: str

    def as_dict(self) -> dict:
        return {"gpus_W": self.gpu_watts, "host_W": self.host_watts, "total_W": self.total_watts,
                "psu_W": self.psu_watts, "note": self.note}


def power(gpu: GPU, count: int, nodes: int = 1) -> Power | None:
    """Power draw of ``count`` GPUs (board power x count) plus the host, and a PSU size where one PSU makes sense.
    None when the catalog has no power figure for the GPU."""
    if gpu.power_w is None:
        return None
    if gpu.unified_memory:
        return Power(gpu.power_w, 0.0, gpu.power_w, None,
                     "Apple silicon: the figure is the whole machine's maximum; the power supply is built in")
    gpus_w = gpu.power_w * count
    if gpu.category in ("datacenter", "accelerator") and gpu.power_w >= SXM_CLASS_WATTS:
        host_w = HOST_WATTS_PER_DATACENTER_GPU * count
        total = gpus_w + host_w
        per_node = total / nodes
        return Power(gpus_w, host_w, total, None,
                     f"server platform: ~{per_node / 1000:.1f} kW per node at maximum; servers use redundant "
                     f"PSUs (N+N), so provision at least that per node and per rack circuit")
    host_w = HOST_WATTS_WORKSTATION * nodes
    total = gpus_w + host_w
    need = total / PSU_LOAD_FACTOR
    psu = next((s for s in PSU_SIZES_W if s >= need), None)
    note = f"PSU sized at {PSU_LOAD_FACTOR:.0%} load: ({gpus_w:.0f} W GPUs + {host_w:.0f} W host) / {PSU_LOAD_FACTOR}"
    if psu is None:
        note += f" = {need:.0f} W exceeds any single ATX PSU: split the GPUs over several PSUs or use a server"
    return Power(gpus_w, host_w, total, psu, note)


# ----- interconnect ---------------------------------------------------------------------------------------------------

ETHERNET_10G_BYTES_PER_S = 1.25e9
"""The article's network floor, '10 Gbps Ethernet or higher' = 1.25 GB/s."""


@dataclass(frozen=True, slots=True)
class Interconnect:
    tp: int
    pp: int
    nodes: int
    bytes_per_token: float  # sent by one GPU for TP, per generated or prefilled token
    link_name: str
    link_bytes_per_s: float  # bidirectional, per GPU
    decode_need_bytes_per_s: float
    prefill_need_bytes_per_s: float
    decode_share: float  # of one direction of the link
    prefill_share: float
    pp_bytes_per_token: float  # crossing one stage boundary
    verdict: str

    def as_dict(self) -> dict:
        return {"tensor_parallel_size": self.tp, "pipeline_parallel_size": self.pp, "nodes": self.nodes,
                "tp_bytes_per_token_per_gpu": round(self.bytes_per_token),
                "link": self.link_name, "link_bytes_per_s": self.link_bytes_per_s,
                "decode_need_bytes_per_s": round(self.decode_need_bytes_per_s),
                "prefill_need_bytes_per_s": round(self.prefill_need_bytes_per_s),
                "decode_link_share": round(self.decode_share, 4), "prefill_link_share": round(self.prefill_share, 4),
                "pp_bytes_per_token_per_boundary": round(self.pp_bytes_per_token), "verdict": self.verdict,
                "formula": "TP sends 2 x (TP-1)/TP x h x 2 bytes x layers x 2 per token per GPU (ring all-reduce, "
                           "two per layer); PP sends h x 2 bytes per token per stage boundary"}


def interconnect(spec: ModelSpec, gpu: GPU, *, tp: int, pp: int = 1, nodes: int = 1,
                 decode_tokens_per_s: float = 0.0, prefill_tokens_per_s: float = 0.0) -> Interconnect:
    """What tensor and pipeline parallelism ask of the links, against what ``gpu``'s link (or the network) gives.

    Needs are the bytes per token times the rates: the aggregate decode throughput (all sequences) and the prefill
    rate. A share above ~0.5 of one direction means communication takes a large part of each step.
    """
    per_tok = tp_bytes_per_token(spec, tp)
    gpus_per_node = max(1, (tp * pp) // max(nodes, 1))
    if tp > gpus_per_node:
        link, name = INTERNODE_BYTES_PER_S, "InfiniBand NDR 400 Gb/s per GPU (TP spans nodes)"
    else:
        link = gpu.interconnect_bytes_per_s or PCIE4_X16_BYTES_PER_S
        name = gpu.interconnect or "PCIe 4.0 x16 (no link listed for this GPU)"
    one_way = link / 2
    dec = per_tok * decode_tokens_per_s
    pre = per_tok * prefill_tokens_per_s
    pp_tok = spec.hidden_size * 2.0 if pp > 1 else 0.0
    if tp <= 1 and pp <= 1:
        verdict = "one GPU: no GPU-to-GPU traffic"
    elif tp <= 1:
        verdict = (f"pipeline only: {pp_tok:,.0f} B per token crosses each stage boundary; "
                   + ("10 GbE or better between nodes suffices for the activations" if nodes > 1
                      else "any link (PCIe) suffices"))
    else:
        share = pre / one_way if one_way else float("inf")
        if tp > gpus_per_node:
            verdict = ("tensor parallelism across nodes: all-reduces cross the network every layer; keep TP inside "
                       "a node (NVLink) and put pipeline stages across nodes instead")
        elif share > 0.5:
            verdict = (f"prefill all-reduces need {share:.0%} of one direction of the link: NVLink-class "
                       "bandwidth is needed for TP to pay off")
        else:
            verdict = f"the link carries TP traffic with room to spare (prefill uses {share:.0%} of one direction)"
        if nodes > 1:
            verdict += f"; between nodes, PP needs only {pp_tok:,.0f} B per token per boundary"
    return Interconnect(tp, pp, nodes, per_tok, name, link, dec, pre, dec / one_way if one_way else 0.0,
                        pre / one_way if one_way else 0.0, pp_tok, verdict)
