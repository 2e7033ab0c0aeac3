"""Speed from the roofline: decode tokens/s, prefill time, throughput at a batch, training time (formulas.md 6).

Decode is memory-bound: every step reads the weights once (for MoE only the experts some token in the batch was
routed to) plus every sequence's KV cache, so

    t_step = max(bytes_read / (BW_peak x MBU), FLOPs / (FLOP/s_dense x MFU)) + t_comm       tokens/s = B / t_step

Prefill is compute-bound: FLOPs = 2 P_matmul x tokens + attention, divided by dense FLOP/s x MFU (with the weight
read as a floor for short prompts). Training: 6 P per token (8 P with full recomputation), formulas.md 6.

The efficiency factors are not ours to invent: every one is a range with the measurements it comes from, and every
speed is a band (low <= expected <= high, as numbers: a time band's ``low`` is the shortest time). Multi-GPU: tensor
parallelism divides bytes and FLOPs over the ranks and adds two all-reduces per layer (latency + ring volume over the
link at a stated efficiency); pipeline parallelism splits layers, so one token still visits every stage in turn.

Pure: the standard library and the core only.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from .hardware import GPU
from .memory import kv_cache
from .model import FULL, MLA, SLIDING, ModelSpec, count_params
from .precision import WeightBytes

# ----- efficiency factors (each a range with its sources) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Efficiency:
    """An achieved fraction of a peak, as a range: ``low`` (pessimistic) <= ``expected`` <= ``high``."""

    name: str
    low: float
    expected: float
    high: float
    source: str

    def as_dict(self) -> dict:
        return {"name": self.name, "low": self.low, "expected": self.expected, "high": self.high,
                "source": self.source}


MBU_CUDA = Efficiency(
    "MBU, model bandwidth utilization (CUDA/ROCm serving stacks)", 0.50, 0.70, 0.85,
    "formulas.md 6: Databricks/MosaicML 'LLM Inference Performance Engineering: Best Practices' defines MBU = "
    "(model bytes + KV bytes) / TPOT / peak and works a 7B fp16 example at 14 ms TPOT = 50% of a 2 TB/s part (low); "
    "well-tuned CUDA stacks reach ~60-85% (expected 0.70 is the middle, high 0.85 the top of that range)")
MBU_APPLE = Efficiency(
    "MBU, model bandwidth utilization (Apple silicon, Metal)", 0.45, 0.65, 0.85,
    "formulas.md 6: M1/M2 Max GPUs 'can sustain 340 GB/s' of 400 = 0.85 (llama.cpp PR #2188, high); llama.cpp Metal "
    "Llama-2-7B F16 at ~70% and Q8_0 at ~55% of M2 Ultra's 800 GB/s (PR #2891; expected 0.65 between them); "
    "Q-types vary (IQ4_NL 58%, Q4_K_XL 29% on M1 Max, llama.cpp issue #27525): low 0.45, and slow quant kernels "
    "can fall below the band")
MBU_HOST = Efficiency(
    "host RAM bandwidth utilization for CPU-resident (offloaded) layers", 0.40, 0.60, 0.80,
    "[inferred] CPU decode rarely reaches DRAM peak; taken below the GPU band since llama.cpp CPU matmuls are "
    "compute- and thread-limited as well as bandwidth-limited; unmeasured here")
MFU_PREFILL = Efficiency(
    "MFU, model FLOPs utilization (inference prefill)", 0.30, 0.45, 0.60,
    "formulas.md 6: 'MFU typically 0.3-0.6 for inference prefill' [inferred range]")
MFU_TRAINING = Efficiency(
    "MFU, model FLOPs utilization (training)", 0.30, 0.40, 0.55,
    "Llama 3 (arXiv:2407.21783, Table 4): 38-43% BF16 MFU on 8K-16K H100s; PaLM (arXiv:2204.02311): 46.2%; "
    "MegaScale (arXiv:2402.15627): 55.2% on 12,288 GPUs (high). Small jobs without tuning sit lower (low 0.30)")

LAYER_STEP_SECONDS = Efficiency(
    "fixed time per decoder layer per decode step (kernel launches and their gaps, synchronisation, MoE routing; "
    "seconds, added to the bandwidth time)", 20e-6, 60e-6, 120e-6,
    "batch-1 decode measurements minus their bandwidth time (weights / peak / MBU 0.7) per layer: vLLM on A100 80GB "
    "(tenstorrent/tt-inference-server #340 GPU references: Qwen3-0.6B 4.2 ms -> ~120 us, Qwen3-14B 24.3 ms -> ~90 us, "
    "Qwen3-30B-A3B 9.6 ms -> ~100 us); vLLM 0.16 on B200 (docs.vultr.com concurrency-tuning: Nemotron Super 49B FP8 "
    "13.4 ms -> ~58 us, Nemotron Nano 30B FP8 TP2 2.91 ms -> ~48 us); vLLM 0.23 on A100 40GB, Llama-3.1-8B ~75 tok/s "
    "-> <= ~35 us (CUDA graphs, a dense model). low 20 / expected 60 / high 120 us; MLA + MoE stacks at batch 1 "
    "(DeepSeek-V3 on SGLang 0.4.1, ~33 ms at TP8) are slower still: above the band")
LAYER_STEP_SECONDS_MLA = Efficiency(
    "fixed time per decoder layer per decode step, MLA models (DeepSeek-V2/V3 family, Kimi K2, GLM-5; seconds)",
    300e-6, 450e-6, 600e-6,
    "batch-1 decode of DeepSeek-V3-architecture models at TP8 minus their bandwidth and all-reduce time, per layer "
    "(61 layers): SGLang 0.4.1, DeepSeek-V3 FP8, 8 x H200, 30.29 tok/s (sgl-project/sglang PR #2643) -> ~480 us; "
    "vLLM 0.13, DeepSeek-V3.2, 8 x H20, ~30 tok/s (vllm-project/vllm issue #30832) -> ~490 us. MLA decode with "
    "absorbed projections and grouped routing is overhead-bound at batch 1 on every GPU (~31-33 ms per token on "
    "H20, H100 and H200 alike; tenstorrent/tt-inference-server #356: DeepSeek-R1-0528 on 16 x H100, TPOT 31.2 ms). "
    "Set on these rows (in-sample); faster stacks (MTP speculation, newer kernels) fall above the band")


def layer_step_for(spec: ModelSpec, tp: int = 1) -> Efficiency:
    """The fixed per-layer decode time band for this model's attention layers: MLA layers under tensor parallelism
    have their own (slower) band, measured at TP8; on one GPU and for other layers, the general band."""
    return LAYER_STEP_SECONDS_MLA if spec.is_mla and tp > 1 else LAYER_STEP_SECONDS


def fixed_step_seconds(spec: ModelSpec, tp: int = 1) -> Band:
    """The fixed time per decode step: every layer at the general band, MLA layers at the MLA band when TP > 1
    (hybrids such as Kimi Linear: only their MLA layers). (low, expected, high) = (fastest, expected, slowest)."""
    n = spec.num_layers
    mla = spec.kinds.count(MLA) if spec.is_mla and tp > 1 else 0
    g, m = LAYER_STEP_SECONDS, LAYER_STEP_SECONDS_MLA
    return Band((n - mla) * g.low + mla * m.low, (n - mla) * g.expected + mla * m.expected,
                (n - mla) * g.high + mla * m.high)


COMM_EFFICIENCY = 0.7
"""Achieved fraction of a link's per-direction bandwidth in ring all-reduce [inferred; NCCL's bus bandwidth stays
below the link's peak]. Stated, not measured here."""
ALLREDUCE_LATENCY_S = 6e-6
"""Fixed cost of one small all-reduce: ~6 us for 2 H100s over NVLink with CUDA graphs (NVIDIA/nccl issue #1259,
nccl-tests all_reduce_perf). PCIe and inter-node all-reduces cost more; the figure is optimistic there."""
ALLREDUCE_LATENCY_PCIE_8GPU_S = 54.18e-6
"""One 8-byte all-reduce over 8 GPUs on PCIe: 54.18 us (nccl-tests all_reduce_perf, 8 x RTX 3090, NVIDIA/nccl issue
#1439). Scaled by the ring's steps, (TP-1)/7 of it for a smaller group, never below the NVLink figure."""


def allreduce_latency_s(gpu: GPU, tp: int) -> float:
    """Fixed cost of one small all-reduce over ``tp`` GPUs: NVLink / Infinity Fabric parts the NVLink figure, PCIe
    parts (consumer and workstation cards, PCIe-only datacenter cards) the PCIe measurement scaled to the group."""
    link = (gpu.interconnect or "").lower()
    pcie = link.startswith("pcie") or (link.startswith("nvlink bridge") and tp > 2)  # bridges join pairs only
    if not pcie:  # a GPU fabric (NVLink, Infinity Fabric, TPU ICI, Gaudi RoCE) or a link the catalog does not name
        return ALLREDUCE_LATENCY_S
    return max(ALLREDUCE_LATENCY_S, ALLREDUCE_LATENCY_PCIE_8GPU_S * (tp - 1) / 7)


PCIE4_X16_BYTES_PER_S = 64e9
"""Fallback GPU-to-GPU link when a GPU row names none: PCIe 4.0 x16, 32 GB/s per direction (64 GB/s both ways,
16 GT/s x 16 lanes with 128b/130b coding, rounded as vendors quote it)."""
INTERNODE_BYTES_PER_S = 100e9
"""Between nodes, per GPU: one 400 Gb/s InfiniBand NDR port per GPU (DGX H100: 8x ConnectX-7 400 Gb/s), i.e. 50 GB/s
per direction, 100 GB/s both ways (the same bidirectional convention as ``GPU.interconnect_bytes_per_s``)."""
DEFAULT_HOST_BYTES_PER_S = 76.8e9
"""Host RAM bandwidth when none is given: dual-channel DDR5-4800 = 4800 MT/s x 8 bytes x 2 channels (arithmetic)."""
ACTIVATION_BYTES = 2
"""Bytes per activation value exchanged between ranks (bf16/fp16)."""


def mbu_for(gpu: GPU) -> Efficiency:
    """Apple silicon (unified memory, Metal) has its own measured band; everything else uses the CUDA band."""
    return MBU_APPLE if gpu.unified_memory else MBU_CUDA


@dataclass(frozen=True, slots=True)
class Band:
    """A numeric range: low <= expected <= high (for a time, ``low`` is the fastest case)."""

    low: float
    expected: float
    high: float

    def as_dict(self, digits: int = 4) -> dict:
        return {"low": _round(self.low, digits), "expected": _round(self.expected, digits),
                "high": _round(self.high, digits)}

    def contains(self, value: float) -> bool:
        """Inclusive, allowing float rounding (a relative 1e-9) at the edges."""
        tol = 1e-9 * max(abs(self.low), abs(self.high))
        return self.low - tol <= value <= self.high + tol


def _round(x: float, digits: int) -> float:
    if x == 0 or x != x:
        return x
    from math import floor, log10

    return round(x, max(0, digits - 1 - floor(log10(abs(x)))))


def _band_from(value_at, eff: Efficiency, increasing: bool) -> Band:
    """Evaluate ``value_at(efficiency)`` at the three efficiencies and order the results."""
    vals = [value_at(eff.low), value_at(eff.expected), value_at(eff.high)]
    if not increasing:
        vals.reverse()
    return Band(*vals)


def roofline_seconds(bytes_read: float, bytes_per_s: float, eff: Efficiency) -> Band:
    """The memory roofline: seconds to read ``bytes_read`` at ``bytes_per_s`` x the efficiency band (formulas.md 6:
    t_token = bytes / (BW_peak x MBU)). ``low`` is the shortest time (the high efficiency)."""
    if bytes_per_s <= 0:
        raise ValueError("bandwidth must be positive")
    return _band_from(lambda e: bytes_read / (bytes_per_s * e), eff, increasing=False)


# ----- what one decode step reads ---------------------------------------------------------------------------------

def experts_touched(num_experts: int, experts_per_token: int, batch: int) -> float:
    """Expected distinct experts one MoE layer reads for ``batch`` tokens: E x (1 - (1 - k/E)^B).

    Each token picks k of E experts; with routing taken as uniform and independent between tokens, an expert is
    missed by one token with probability 1 - k/E. Real routers are skewed, which touches fewer experts.
    """
    if num_experts <= 0 or experts_per_token <= 0:
        return 0.0
    if batch <= 0:
        return 0.0
    p_miss = 1.0 - experts_per_token / num_experts
    return num_experts * (1.0 - p_miss ** batch)


@dataclass(frozen=True, slots=True)
class StepBytes:
    """Bytes one decode step reads for ``batch`` sequences at ``context`` tokens, whole model (all ranks)."""

    dense_bytes: int  # attention, dense MLP, shared experts, routers, norms, SSM: read every step
    experts_read_bytes: int  # the expected union of routed experts at this batch
    experts_total_bytes: int
    head_bytes: int  # lm_head (or the tied embedding matrix used as the head): V x h read in full
    embedding_rows_bytes: int  # B rows of the embedding table, not the table
    kv_bytes: int  # every sequence's KV cache at this context
    experts_touched_per_layer: float
    batch: int
    context: int

    @property
    def weights_bytes(self) -> int:
        return self.dense_bytes + self.experts_read_bytes + self.head_bytes + self.embedding_rows_bytes

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes

    def as_dict(self) -> dict:
        return {"dense": self.dense_bytes, "experts_read": self.experts_read_bytes,
                "experts_total": self.experts_total_bytes, "head": self.head_bytes,
                "embedding_rows": self.embedding_rows_bytes, "kv_cache": self.kv_bytes,
                "weights": self.weights_bytes, "total": self.total_bytes,
                "experts_touched_per_layer": round(self.experts_touched_per_layer, 3)}


_NOT_READ_IN_DECODE = ("vision", "projector", "audio")


def decode_step_bytes(spec: ModelSpec, wb: WeightBytes, context: int, batch: int = 1,
                      kv_dtype: str = "auto") -> StepBytes:
    """formulas.md 6: weights read per step = dense weights + for MoE the union of activated experts + shared
    experts, attention and the head (V x h); only B rows of the embedding; plus B x KV bytes at ``context``.

    Groups come from ``wb`` (any format, GGUF mixes included); towers outside the language model (vision,
    projector) are not read by text decoding.
    """
    if batch < 1 or context < 1:
        raise ValueError("batch and context must be at least 1")
    groups = wb.as_dict()
    embedding = groups.get("embedding", 0)
    experts_total = groups.get("experts", 0)
    head = embedding if spec.tie_embeddings else groups.get("lm_head", 0)
    ple_table = groups.get("per_layer_embedding_table", 0)  # Gemma 4 E-models: a lookup, like the embedding
    skip = {"embedding", "experts", "lm_head", "per_layer_embedding_table"}
    extras = {name for name, _ in spec.extra_params}
    dense = sum(v for k, v in groups.items()
                if k not in skip and k not in extras and not any(w in k for w in _NOT_READ_IN_DECODE))
    touched = experts_touched(spec.num_experts, spec.experts_per_token, batch) if spec.is_moe else 0.0
    experts_read = ceil(experts_total * touched / spec.num_experts) if spec.is_moe else 0
    rows = ceil(embedding * min(batch, spec.vocab_size) / spec.vocab_size) if spec.vocab_size else 0
    if ple_table:
        ple_vocab = spec.per_layer_vocab or spec.vocab_size
        rows += ceil(ple_table * min(batch, ple_vocab) / ple_vocab)
    kv = kv_cache(spec, context, batch, kv_dtype).total_bytes
    return StepBytes(dense, experts_read, experts_total, head, rows, kv, touched, batch, context)


def matmul_params(spec: ModelSpec) -> tuple[int, int]:
    """(active parameters that multiply every token, lm_head parameters): active params without the embedding
    (a lookup, no FLOPs) and without the head (which prefill applies to the last token only)."""
    pc = count_params(spec)
    groups = dict(pc.active_groups)
    head = spec.vocab_size * spec.hidden_size
    per_token = (pc.active - groups.get("embedding", 0) - groups.get("lm_head", 0)
                 - groups.get("per_layer_embedding_table", 0))
    for name, _ in spec.extra_params:
        per_token -= groups.get(name, 0)
    return max(per_token, 0), head


def attention_flops(spec: ModelSpec, tokens: int) -> float:
    """Score and value FLOPs of causal attention over one sequence of ``tokens`` (formulas.md 6).

    Per head and layer, query i attends to min(i, window) keys: QK^T costs 2 x keys x d_qk and A.V 2 x keys x d_v,
    so the sum is 2 (d_qk + d_v) x sum_i min(i, w), i.e. 2 n_h d s^2 per layer for full attention with d_qk = d_v = d
    (the causal mask halves the square). Recurrent (Mamba) layers have no such term.
    """
    s = tokens
    if spec.is_mla:
        d_qk, d_v = spec.qk_nope_head_dim + spec.qk_rope_head_dim, spec.value_head_dim
    else:
        d_qk, d_v = spec.head_dim, spec.value_head_dim
    full_keys = s * (s + 1) / 2
    total = 0.0
    for kind in spec.kinds:
        if kind in (FULL, MLA):
            keys = full_keys
        elif kind == SLIDING:
            w = spec.sliding_window or s
            keys = full_keys if s <= w else w * (w + 1) / 2 + (s - w) * w
        else:
            continue
        heads, dq, dv = spec.num_heads, d_qk, d_v
        if kind in (FULL, SLIDING) and (spec.global_head_dim or spec.sliding_num_heads):  # per-kind sizes
            heads, dq = spec.heads_for(kind), spec.head_dim_for(kind)
            dv = spec.v_head_dim or dq
        total += 2.0 * (dq + dv) * heads * keys
    return total


def prefill_flops(spec: ModelSpec, tokens: int, batch: int = 1) -> float:
    """2 x P_matmul x tokens + attention per sequence + the head on each sequence's last token."""
    per_token, head = matmul_params(spec)
    return batch * (2.0 * per_token * tokens + attention_flops(spec, tokens) + 2.0 * head)


# ----- parallel layout and links ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Layout:
    """How a model is spread: TP ranks x PP stages, how many layers live in host RAM (llama.cpp offload)."""

    tp: int = 1
    pp: int = 1
    offload_fraction: float = 0.0  # share of the layer bytes (weights and KV) read from host RAM
    nodes: int = 1
    host_bytes_per_s: float = DEFAULT_HOST_BYTES_PER_S

    def __post_init__(self) -> None:
        if self.tp < 1 or self.pp < 1 or self.nodes < 1:
            raise ValueError("tp, pp and nodes must be at least 1")
        if not 0.0 <= self.offload_fraction <= 1.0:
            raise ValueError("offload_fraction must be between 0 and 1")
        if self.host_bytes_per_s <= 0:
            raise ValueError("host_bytes_per_s must be positive")


def gpus_per_node(layout: Layout) -> int:
    return max(1, (layout.tp * layout.pp) // layout.nodes)


def tp_link_bytes_per_s(gpu: GPU, layout: Layout) -> float:
    """Bidirectional bytes/s one GPU has for tensor-parallel traffic: its own link (NVLink, PCIe...) while the TP
    group stays inside a node, the network (:data:`INTERNODE_BYTES_PER_S`) when it spans nodes, and PCIe 4.0 x16
    when the catalog row names no link."""
    link = gpu.interconnect_bytes_per_s or PCIE4_X16_BYTES_PER_S
    if layout.tp > gpus_per_node(layout):
        link = min(link, INTERNODE_BYTES_PER_S)
    return link


def pp_link_bytes_per_s(gpu: GPU, layout: Layout) -> float:
    """Link between pipeline stages: the network once stages sit on several nodes, the GPU's link otherwise."""
    link = gpu.interconnect_bytes_per_s or PCIE4_X16_BYTES_PER_S
    if layout.nodes > 1:
        link = min(link, INTERNODE_BYTES_PER_S)
    return link


def allreduce_seconds(message_bytes: float, tp: int, link_bytes_per_s: float,
                      efficiency: float = COMM_EFFICIENCY, latency_s: float = ALLREDUCE_LATENCY_S) -> float:
    """Ring all-reduce of ``message_bytes`` over ``tp`` ranks: each rank sends 2 (tp-1)/tp x the message over one
    direction of its link (half the bidirectional figure), at ``efficiency``, plus a fixed latency."""
    if tp <= 1:
        return 0.0
    volume = 2.0 * (tp - 1) / tp * message_bytes
    return latency_s + volume / (link_bytes_per_s / 2.0 * efficiency)


def tp_bytes_per_token(spec: ModelSpec, tp: int, act_bytes: int = ACTIVATION_BYTES) -> float:
    """Bytes one GPU sends per token for tensor parallelism: 2 all-reduces per layer (after attention and after the
    MLP) of h x act_bytes each, ring volume 2 (TP-1)/TP: 2 x (TP-1)/TP x h x bytes x layers x 2."""
    if tp <= 1:
        return 0.0
    return 2.0 * (tp - 1) / tp * spec.hidden_size * act_bytes * spec.num_layers * 2


def compute_flop_per_s(gpu: GPU, compute_dtype: str = "bf16") -> float | None:
    """Dense tensor FLOP/s for the arithmetic a format uses: fp8 (W8A8) and fp4 (W4A4) where the GPU has them,
    bf16 otherwise (weight-only int4/GGUF formats dequantize to 16-bit before the matmul)."""
    if compute_dtype == "fp4" and gpu.fp4_flop_per_s:
        return gpu.fp4_flop_per_s
    if compute_dtype in ("fp8", "fp4") and gpu.fp8_flop_per_s:
        return gpu.fp8_flop_per_s
    return gpu.bf16_flop_per_s or gpu.fp16_flop_per_s  # no bf16 (T4, V100): engines compute in fp16


# ----- decode --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodeSpeed:
    """Decode speed at one batch: per-sequence tokens/s, aggregate throughput, step time, and what bounds it."""

    tokens_per_s: Band  # per sequence (1 / time per output token)
    throughput_tokens_per_s: Band  # all sequences together
    step_seconds: Band  # time per output token (TPOT)
    step_bytes: StepBytes
    bytes_per_gpu: int  # read by the busiest rank per step (all its stages summed for PP)
    gpu_seconds_memory: Band
    compute_seconds: float | None  # at expected MFU
    comm_seconds: float
    host_seconds: Band | None
    bound: str  # "memory", "compute" or "host memory"
    mbu: Efficiency
    layout: Layout
    notes: tuple[str, ...]
    layer_step: Efficiency = LAYER_STEP_SECONDS  # the fixed per-layer time band of the attention layers
    fixed_seconds: Band | None = None  # the fixed time per step over all layers (MLA layers under TP at their band)

    def as_dict(self) -> dict:
        return {"tokens_per_s": self.tokens_per_s.as_dict(),
                "throughput_tokens_per_s": self.throughput_tokens_per_s.as_dict(),
                "time_per_output_token_s": self.step_seconds.as_dict(),
                "bytes_read_per_step": self.step_bytes.as_dict(), "bytes_per_gpu_per_step": self.bytes_per_gpu,
                "comm_seconds_per_step": _round(self.comm_seconds, 4),
                "compute_seconds_per_step": None if self.compute_seconds is None
                else _round(self.compute_seconds, 4),
                "bound": self.bound, "batch": self.step_bytes.batch, "context": self.step_bytes.context,
                "efficiency": self.mbu.as_dict(), "layer_step_seconds": self.layer_step.as_dict(),
                "fixed_seconds_per_step": self.fixed_seconds.as_dict() if self.fixed_seconds else None,
                "notes": list(self.notes)}


def decode_speed(spec: ModelSpec, wb: WeightBytes, gpu: GPU, *, context: int, batch: int = 1,
                 kv_dtype: str = "auto", layout: Layout = Layout(), compute_dtype: str = "bf16",
                 mbu: Efficiency | None = None) -> DecodeSpeed:
    """Roofline decode speed of ``batch`` sequences at ``context`` tokens on ``layout`` of ``gpu``.

    Per step: the GPU part reads (weights + KV) / TP per rank, every PP stage in turn (so PP adds capacity, not
    speed); an offloaded share is read from host RAM; TP adds 2 all-reduces per layer; every layer adds a fixed
    time (:data:`LAYER_STEP_SECONDS`: launches, synchronisation, routing), which dominates small and MoE models. Compute (2 P_active x B
    FLOPs) takes over when it is slower than the memory read (large batches).
    """
    if gpu.hbm_bytes_per_s <= 0:
        from ..errors import InvalidRequest

        raise InvalidRequest(f"the memory bandwidth of {gpu.name} is unknown, so its speed cannot be estimated",
                             field="gpu")
    mbu = mbu or mbu_for(gpu)
    sb = decode_step_bytes(spec, wb, context, batch, kv_dtype)
    tp = layout.tp
    kv_rank = kv_cache(spec, context, batch, kv_dtype, tp).total_bytes if tp > 1 else sb.kv_bytes
    gpu_share = 1.0 - layout.offload_fraction
    weights_rank = sb.weights_bytes / tp
    on_gpu = gpu_share * (weights_rank + kv_rank)
    on_host = layout.offload_fraction * (sb.weights_bytes + sb.kv_bytes)
    bytes_per_gpu = ceil(on_gpu)
    notes = []

    mem = roofline_seconds(on_gpu, gpu.hbm_bytes_per_s, mbu)
    host = None
    if on_host > 0:
        host = roofline_seconds(on_host, layout.host_bytes_per_s, MBU_HOST)
        notes.append(f"{layout.offload_fraction:.0%} of the layer bytes are read from host RAM at "
                     f"{layout.host_bytes_per_s / 1e9:.1f} GB/s peak")
    per_token, head = matmul_params(spec)
    flops_rank = 2.0 * (per_token + head) * batch / tp
    peak = compute_flop_per_s(gpu, compute_dtype)
    compute = None
    if peak:
        compute = flops_rank * gpu_share / (peak * MFU_PREFILL.expected)
    else:
        notes.append(f"{gpu.name} has no published dense tensor FLOP/s: the compute bound is not checked")
    comm = 0.0
    if tp > 1:
        link = tp_link_bytes_per_s(gpu, layout)
        lat = allreduce_latency_s(gpu, tp)
        comm = 2 * spec.num_layers * allreduce_seconds(batch * spec.hidden_size * ACTIVATION_BYTES, tp, link,
                                                       latency_s=lat)
        notes.append(f"TP={tp}: {2 * spec.num_layers} all-reduces per step over {link / 1e9:.0f} GB/s "
                     f"(bidirectional) at {COMM_EFFICIENCY:.0%} efficiency + {lat * 1e6:.0f} us each")
    if layout.pp > 1:
        link = pp_link_bytes_per_s(gpu, layout)
        comm += (layout.pp - 1) * (ALLREDUCE_LATENCY_S + batch * spec.hidden_size * ACTIVATION_BYTES
                                   / (link / 2 * COMM_EFFICIENCY))
        notes.append(f"PP={layout.pp}: a token visits the stages in turn; pipelining adds memory, not decode speed")

    floor = layer_step_for(spec, tp)
    fixed = fixed_step_seconds(spec, tp)

    def step(i: int) -> float:
        m = (mem.high, mem.expected, mem.low)[i]  # i = 0 pessimistic
        h = 0.0 if host is None else (host.high, host.expected, host.low)[i]
        c = 0.0 if compute is None else compute
        return max(m, c) + h + comm + (fixed.high, fixed.expected, fixed.low)[i]

    times = Band(step(2), step(1), step(0))
    bound = "memory"
    if compute is not None and compute > mem.expected:
        bound = "compute"
    if host is not None and host.expected > max(mem.expected, compute or 0.0):
        bound = "host memory"
    per_seq = Band(1.0 / times.high, 1.0 / times.expected, 1.0 / times.low)
    thr = Band(batch * per_seq.low, batch * per_seq.expected, batch * per_seq.high)
    return DecodeSpeed(per_seq, thr, times, sb, bytes_per_gpu, mem, compute, comm, host, bound, mbu, layout,
                       tuple(notes), floor, fixed)


# ----- prefill -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrefillTime:
    seconds: Band
    flops: float
    tokens: int
    batch: int
    bound: str
    mfu: Efficiency
    flop_per_s: float

    def as_dict(self) -> dict:
        tok = self.tokens * self.batch
        return {"seconds": self.seconds.as_dict(), "flops": float(f"{self.flops:.4g}"), "tokens": self.tokens,
                "batch": self.batch, "bound": self.bound,
                "tokens_per_s": Band(tok / self.seconds.high, tok / self.seconds.expected,
                                     tok / self.seconds.low).as_dict(),
                "efficiency": self.mfu.as_dict(), "dense_flop_per_s": self.flop_per_s}


def prefill_time(spec: ModelSpec, wb: WeightBytes, gpu: GPU, *, tokens: int, batch: int = 1,
                 layout: Layout = Layout(), compute_dtype: str = "bf16",
                 mfu: Efficiency = MFU_PREFILL) -> PrefillTime | None:
    """Time to process ``batch`` prompts of ``tokens`` tokens: FLOPs / (TP x dense FLOP/s x MFU), never less than
    one read of the weights, plus the TP all-reduces of the prompt's activations. None when the GPU publishes no
    dense tensor FLOP/s (Apple silicon, custom sizes)."""
    peak = compute_flop_per_s(gpu, compute_dtype)
    if not peak:
        return None
    flops = prefill_flops(spec, tokens, batch)
    tp = layout.tp
    read = decode_step_bytes(spec, wb, 1, min(batch * tokens, 1 << 16)).weights_bytes / tp
    comm = 0.0
    if tp > 1:
        link = tp_link_bytes_per_s(gpu, layout)
        comm = 2 * spec.num_layers * allreduce_seconds(batch * tokens * spec.hidden_size * ACTIVATION_BYTES, tp,
                                                       link, latency_s=allreduce_latency_s(gpu, tp))
    bw = gpu.hbm_bytes_per_s or 0.0
    mbu = mbu_for(gpu)

    def at(i: int) -> float:
        m = (mfu.low, mfu.expected, mfu.high)[i]
        c = flops / tp / (peak * m)
        r = read / (bw * (mbu.low, mbu.expected, mbu.high)[i]) if bw else 0.0
        return max(c, r) + comm

    secs = Band(at(2), at(1), at(0))
    c_exp = flops / tp / (peak * mfu.expected)
    r_exp = read / (bw * mbu.expected) if bw else 0.0
    return PrefillTime(secs, flops, tokens, batch, "compute" if c_exp >= r_exp else "memory", mfu, peak)


# ----- training --------------------------------------------------------------------------------------------------

TRAINING_METHODS = ("full", "lora", "qlora")


def training_flops_per_token(spec: ModelSpec, seq_len: int, method: str = "full",
                             recompute: bool = False) -> float:
    """FLOPs per trained token (formulas.md 6; Kaplan/nanoGPT accounting).

    Full fine-tuning: forward 2P + backward 4P = 6P, plus one more forward (2P) with full activation
    recomputation = 8P. LoRA/QLoRA: the frozen weights need no weight gradients, so the backward is 2P (input
    gradients only) = 4P, 6P with recomputation [inferred from the same accounting; adapters are negligible].
    Attention adds its forward cost x 3 (x 4 recomputed), averaged per token of a ``seq_len`` sequence.
    """
    if method not in TRAINING_METHODS:
        raise ValueError(f"method must be one of {', '.join(TRAINING_METHODS)}")
    per_token, head = matmul_params(spec)
    p = per_token + head  # training computes logits for every token
    mult = (6.0 if method == "full" else 4.0) + (2.0 if recompute else 0.0)
    attn = attention_flops(spec, seq_len) / seq_len * (mult / 2.0)
    return mult * p + attn


@dataclass(frozen=True, slots=True)
class TrainingTime:
    tokens: int
    n_gpus: int
    flops: float
    gpu_hours: Band
    wall_hours: Band
    step_seconds: Band | None
    tokens_per_step: int
    mfu: Efficiency
    flop_per_s: float
    flops_per_token: float

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "gpus": self.n_gpus, "flops": float(f"{self.flops:.4g}"),
                "flops_per_token": float(f"{self.flops_per_token:.4g}"),
                "gpu_hours": self.gpu_hours.as_dict(), "wall_hours": self.wall_hours.as_dict(),
                "step_seconds": self.step_seconds.as_dict() if self.step_seconds else None,
                "tokens_per_step": self.tokens_per_step, "efficiency": self.mfu.as_dict(),
                "dense_flop_per_s": self.flop_per_s}


def training_time(spec: ModelSpec, gpu: GPU, *, tokens: int, n_gpus: int = 1, seq_len: int = 4096,
                  tokens_per_step: int = 0, method: str = "full", recompute: bool = False,
                  compute_dtype: str = "bf16", mfu: Efficiency = MFU_TRAINING) -> TrainingTime | None:
    """GPU-hours and wall time to train on ``tokens`` tokens; step time when ``tokens_per_step`` is given (the
    global batch in tokens). None when the GPU publishes no dense tensor FLOP/s."""
    peak = compute_flop_per_s(gpu, compute_dtype)
    if not peak:
        return None
    if tokens < 1 or n_gpus < 1:
        raise ValueError("tokens and n_gpus must be at least 1")
    fpt = training_flops_per_token(spec, seq_len, method, recompute)
    flops = fpt * tokens

    def gpu_h(e: float) -> float:
        return flops / (peak * e) / 3600.0

    gh = _band_from(gpu_h, mfu, increasing=False)
    wall = Band(gh.low / n_gpus, gh.expected / n_gpus, gh.high / n_gpus)
    step = None
    if tokens_per_step:
        step = _band_from(lambda e: fpt * tokens_per_step / (peak * e * n_gpus), mfu, increasing=False)
    return TrainingTime(tokens, n_gpus, flops, gh, wall, step, tokens_per_step, mfu, peak, fpt)
