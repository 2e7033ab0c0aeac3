"""Weight formats as bits per weight, with the tensors each format leaves in 16-bit (formulas.md section 2).

A :class:`WeightFormat` describes the storage of the tensors it quantizes: ``bits`` per value plus per-group,
per-row, per-column and per-tensor overheads (scales, zero points, ``g_idx``, code tables). Everything else (embeddings,
lm_head, norms, biases, routers unless the format says otherwise) stays at ``base_bytes`` per value. Bytes are computed
once per tensor from its real shape, so group padding and per-row scales are exact.
"""

from __future__ import annotations

from functools import lru_cache
from math import ceil, prod

from .model import EXPERT_ROLES, LINEAR_ROLES, ModelSpec, Tensor, iter_tensors, layer_groups, global_tensors
from .records import record

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2, "float8_e4m3fn": 1,
               "fp8": 1, "int8": 1, "float64": 8}


@record
class WeightFormat:
    """How weights are stored. ``bits`` is per quantized value; overheads are in bits per group/row/column/tensor."""

    name: str
    bits: float
    group_size: int = 0  # values per scale group along the input dimension (0: none)
    group_bits: float = 0.0  # scale + zero-point bits per group
    superblock: int = 0  # second-level grouping of group scales (bnb double quant: 256)
    superblock_bits: float = 0.0
    row_bits: float = 0.0  # bits per output row (per-channel scales)
    col_bits: float = 0.0  # bits per input column (GPTQ g_idx)
    tensor_bits: float = 0.0  # bits per tensor (per-tensor scale, code tables)
    block2d: tuple[int, int] = (0, 0)  # 2-D scale blocks (DeepSeek FP8 128x128): one scale per block
    block2d_bits: float = 0.0
    base_bytes: int = 2  # bytes per value of tensors the format leaves alone (bf16/fp16)
    roles: frozenset[str] = LINEAR_ROLES  # which tensor roles the format quantizes
    keep_roles: frozenset[str] = frozenset()  # roles explicitly left in base precision
    label: str = ""
    source: str = ""
    # roles left in base precision in some layers only (a checkpoint's ignore / exclude_modules list): (role, layers)
    keep_layers: tuple[tuple[str, frozenset[int]], ...] = ()
    # the routed experts in another format (DeepSeek-V4: MXFP4 experts beside FP8 block-scaled linears)
    expert_format: object = None

    @property
    def is_quantized(self) -> bool:
        return self.roles != frozenset() and self.bits < 8 * self.base_bytes

    def quantizes(self, t: Tensor) -> bool:
        if self.expert_format is not None and t.role in EXPERT_ROLES:
            return self.expert_format.quantizes(t)
        return t.role in self.roles and t.role not in self.keep_roles and len(t.shape) >= 2

    def kept_layers(self, role: str) -> frozenset[int]:
        """The layers in which tensors of ``role`` stay in base precision although the role is quantized."""
        for r, layers in self.keep_layers:
            if r == role:
                return layers
        return frozenset()

    def tensor_bytes_at(self, t: Tensor, layer: int) -> int:
        """Bytes of tensor ``t`` in decoder layer ``layer`` (-1: outside the layers)."""
        if self.keep_layers and layer in self.kept_layers(t.role):
            return t.numel * max(self.base_bytes, t.dtype_bytes)
        return self.tensor_bytes(t)

    def layers_bytes(self, t: Tensor, layers: tuple[int, ...]) -> tuple[int, int]:
        """(bytes, values left in base precision) of tensor ``t`` repeated in ``layers``."""
        kept = len(self.kept_layers(t.role).intersection(layers)) if self.keep_layers else 0
        if not self.quantizes(t):
            return len(layers) * t.numel * max(self.base_bytes, t.dtype_bytes), len(layers) * t.numel
        return (len(layers) - kept) * self.tensor_bytes(t) + kept * t.numel * self.base_bytes, kept * t.numel

    def tensor_bytes(self, t: Tensor) -> int:
        """Bytes one tensor occupies in this format."""
        if self.expert_format is not None and t.role in EXPERT_ROLES:
            return self.expert_format.tensor_bytes(t)
        if not self.quantizes(t):
            return t.numel * max(self.base_bytes, t.dtype_bytes)
        shape = t.shape
        experts = prod(shape[:-2]) if len(shape) > 2 else 1
        out_f, in_f = shape[-2], shape[-1]
        numel = experts * out_f * in_f
        bits = numel * self.bits
        if self.group_size:
            groups = experts * out_f * ceil(in_f / self.group_size)
            bits += groups * self.group_bits
            if self.superblock:
                bits += ceil(groups / self.superblock) * self.superblock_bits
        bits += experts * (out_f * self.row_bits + in_f * self.col_bits) + self.tensor_bits
        if self.block2d[0]:
            bo, bi = self.block2d
            bits += experts * ceil(out_f / bo) * ceil(in_f / bi) * self.block2d_bits
        return ceil(bits / 8)


def dense_format(name: str, nbytes: int, source: str = "") -> WeightFormat:
    """Every tensor at one width (fp32, bf16, fp16)."""
    return WeightFormat(name=name, bits=8.0 * nbytes, base_bytes=nbytes, roles=frozenset(), label=name,
                        source=source)


@record
class WeightBytes:
    """Weight bytes by breakdown group, and how many parameters were quantized."""

    groups: tuple[tuple[str, int], ...]
    total_bytes: int
    quantized_params: int
    kept_params: int
    format_name: str
    mtp_bytes: int = 0

    @property
    def bits_per_weight(self) -> float:
        n = self.quantized_params + self.kept_params
        return 8.0 * self.total_bytes / n if n else 0.0

    def as_dict(self) -> dict[str, int]:
        return dict(self.groups)


@lru_cache(maxsize=1024)
def weight_bytes(spec: ModelSpec, fmt: WeightFormat) -> WeightBytes:
    """Exact bytes of every weight tensor of ``spec`` stored in ``fmt`` (per-layer groups multiplied out)."""
    groups: dict[str, int] = {}
    q = kept = 0
    for g in layer_groups(spec):
        n = len(g.layers)
        for t in g.tensors:
            nbytes, base = fmt.layers_bytes(t, g.layers)
            groups[t.group] = groups.get(t.group, 0) + nbytes
            q += n * t.numel - base
            kept += base
    for t in global_tensors(spec):
        groups[t.group] = groups.get(t.group, 0) + fmt.tensor_bytes(t)
        kept += t.numel
    return WeightBytes(tuple(groups.items()), sum(groups.values()), q, kept, fmt.name)


def expert_weight_bytes(spec: ModelSpec, fmt: WeightFormat) -> int:
    """Bytes of the routed experts alone (for offload and MoE decode reads)."""
    total = 0
    for g in layer_groups(spec):
        for t in g.tensors:
            if t.role in EXPERT_ROLES or (t.group == "experts"):
                total += fmt.layers_bytes(t, g.layers)[0]
    return total


def per_layer_bytes(spec: ModelSpec, fmt: WeightFormat) -> list[int]:
    """Weight bytes of each decoder layer, by index (for pipeline splits and llama.cpp layer offload)."""
    out = [0] * spec.num_layers
    for i, t in iter_tensors(spec):
        if i >= 0:
            out[i] += fmt.tensor_bytes_at(t, i)
    return out


KV_DTYPE_BITS = {
    # vLLM / HF: 16-bit, fp8 (1 byte + per-layer scalar scales), int8; llama.cpp block types (formulas.md 3.4)
    "auto": 16.0, "fp16": 16.0, "float16": 16.0, "bf16": 16.0, "bfloat16": 16.0, "f16": 16.0, "fp32": 32.0,
    "float32": 32.0, "f32": 32.0,
    "fp8": 8.0, "fp8_e4m3": 8.0, "fp8_e5m2": 8.0, "int8": 8.0,
    "q8_0": 8.5, "q5_1": 6.0, "q5_0": 5.5, "q4_1": 5.0, "q4_0": 4.5, "iq4_nl": 4.5,
}


@record
class QuantSummary:
    """What a checkpoint's quantization_config says, as a format name and parameters."""

    format_name: str
    params: tuple[tuple[str, object], ...] = ()
