"""llama.cpp quantization mixes: which ggml type each tensor gets, and the exact bytes.

The block sizes are ggml's (``ggml-common.h`` static_asserts, as tabulated in gguf-py ``GGML_QUANT_SIZES``; formulas.md
2.1). The per-tensor rules paraphrase the behaviour of llama.cpp ``src/llama-quant.cpp`` (``llama_tensor_get_type``,
summarised in formulas.md 2.1 "Mix rules"): the output tensor goes to Q6_K, ``attn_v``/``ffn_down`` get more bits on
about 3/8 of the layers in the _M mixes, 1-D tensors stay F32, and a type whose block does not divide the row falls
back to a compatible one. Pinned by the llama.cpp quantize README table for Llama-3.1-8B (tests).
"""

from __future__ import annotations

from functools import lru_cache
from math import ceil

from .model import ModelSpec, Tensor, iter_tensors
from .precision import WeightBytes
from .records import record

# type -> (values per block, bytes per block)
GGML_TYPES: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q8_1": (32, 40), "Q5_0": (32, 22),
    "Q5_1": (32, 24), "Q4_0": (32, 18), "Q4_1": (32, 20), "IQ4_NL": (32, 18), "MXFP4": (32, 17),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
    "Q8_K": (256, 292), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ2_S": (256, 82), "IQ3_XXS": (256, 98),
    "IQ3_S": (256, 110), "IQ1_S": (256, 50), "IQ1_M": (256, 56), "IQ4_XS": (256, 136), "TQ1_0": (256, 54),
    "TQ2_0": (256, 66), "NVFP4": (64, 36),
}

# mix name -> base type of the 2-D tensors
GGUF_MIXES: dict[str, str] = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
    "Q5_1": "Q5_1", "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K",
    "IQ4_XS": "IQ4_XS", "IQ4_NL": "IQ4_NL", "IQ3_XXS": "IQ3_XXS", "IQ3_S": "IQ3_S", "IQ2_XXS": "IQ2_XXS",
    "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS", "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M", "MXFP4_MOE": "Q8_0",
    "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0",
}

_FALLBACK = {"IQ4_XS": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL",
             "IQ3_S": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "Q2_K": "Q4_0", "Q3_K": "Q4_0",
             "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_LOW_IQ = {"IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ1_M"}

KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def ggml_nbytes(type_name: str, numel: int) -> int:
    block, nbytes = GGML_TYPES[type_name]
    return ceil(numel / block) * nbytes


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(mix: str, t: Tensor, layer: int, spec: ModelSpec) -> str:
    """The ggml type llama.cpp's quantizer gives tensor ``t`` (in layer ``layer``) under ``mix``."""
    base = GGUF_MIXES[mix]
    if mix in ("F32", "F16", "BF16"):
        return "F32" if len(t.shape) < 2 else base
    if len(t.shape) < 2 or t.role in ("ffn_gate_inp", "ffn_gate_inp_shexp", "pos_embd", "ssm_conv1d"):
        return "F32"
    n = spec.num_layers
    n_gqa = spec.num_heads // max(spec.num_kv_heads, 1)
    role = t.role
    is_output = role == "output" or (role == "token_embd" and spec.tie_embeddings)
    new = base
    if mix == "MXFP4_MOE":
        new = "MXFP4" if role.endswith("_exps") else "Q8_0"
    elif is_output:
        if mix in _LOW_IQ:
            new = "Q5_K"
        elif base != "Q8_0":
            new = "Q6_K"
    elif role == "token_embd":
        if mix in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            new = "Q2_K"
        elif mix in ("IQ2_S", "IQ3_XXS"):
            new = "IQ3_S"
        elif mix in ("TQ1_0", "TQ2_0"):
            new = "Q4_K"
    elif role == "attn_v":
        if mix in ("Q2_K", "Q2_K_S"):
            new = "Q4_K" if n_gqa >= 4 else ("Q3_K" if mix == "Q2_K" else base)
        elif mix == "Q3_K_M":
            new = "Q5_K" if layer < 2 else "Q4_K"
        elif mix == "Q3_K_L":
            new = "Q5_K"
        elif mix in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
            new = "Q5_K"
        elif mix in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n):
            new = "Q6_K"
        elif mix == "Q4_K_S" and layer < 4:
            new = "Q5_K"
        if spec.num_experts == 8:
            new = "Q8_0"
        if n == 80 and spec.model_type == "llama" and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"  # 70B-class: attn_v is n_gqa times smaller, so it is bumped cheaply
    elif role == "attn_k":
        if spec.num_experts == 8:
            new = "Q8_0"
    elif role.startswith("ffn_down"):
        if mix == "Q2_K":
            new = "Q3_K"
        elif mix == "Q2_K_S" and layer < n // 8:
            new = "Q4_K"
        elif mix == "Q3_K_M":
            new = "Q5_K" if layer < n // 16 else "Q4_K"
        elif mix == "Q3_K_L":
            new = "Q5_K"
        elif mix in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n):
            new = "Q6_K"
        elif mix in ("Q4_K_S", "IQ4_XS", "IQ4_NL") and layer < n // 8:
            new = "Q5_K"
    elif role == "attn_output":
        if spec.num_experts == 8:
            if mix in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ3_XXS", "IQ3_S", "Q4_K_S", "Q4_K_M"):
                new = "Q5_K"
        elif mix == "Q2_K":
            new = "Q3_K"
        elif mix == "Q3_K_M":
            new = "Q4_K"
        elif mix == "Q3_K_L":
            new = "Q5_K"
    block = GGML_TYPES[new][0]
    if t.shape[-1] % block:
        new = _FALLBACK.get(new, "F16")
        if t.shape[-1] % GGML_TYPES[new][0]:
            new = "F16"
    return new


@record
class GGUFMixFormat:
    """A llama.cpp mix used as a weight format (same interface as precision.WeightFormat where it matters)."""

    name: str
    label: str
    source: str = "llama.cpp src/llama-quant.cpp llama_tensor_get_type (formulas.md 2.1)"
    base_bytes: int = 2

    @property
    def is_quantized(self) -> bool:
        return self.name not in ("F32", "F16", "BF16")

    def quantizes(self, t: Tensor) -> bool:
        return len(t.shape) >= 2

    def tensor_bytes(self, t: Tensor) -> int:  # layer-independent upper view; exact bytes use gguf_weight_bytes
        return ggml_nbytes(GGUF_MIXES[self.name], t.numel)

    def tensor_bytes_at(self, t: Tensor, layer: int) -> int:
        return self.tensor_bytes(t)

    def layers_bytes(self, t: Tensor, layers: tuple[int, ...]) -> tuple[int, int]:
        return len(layers) * self.tensor_bytes(t), 0 if self.quantizes(t) else len(layers) * t.numel


def gguf_format(mix: str) -> GGUFMixFormat:
    return GGUFMixFormat(name=mix, label=f"GGUF {mix} (llama.cpp mix)")


@lru_cache(maxsize=256)
def gguf_tensor_types(spec: ModelSpec, mix: str) -> tuple[tuple[int, str, str, int], ...]:
    """(layer, tensor name, ggml type, bytes) for every tensor under ``mix``."""
    out = []
    for layer, t in iter_tensors(spec):
        typ = tensor_type(mix, t, layer, spec)
        out.append((layer, t.name, typ, ggml_nbytes(typ, t.numel)))
    return tuple(out)


@lru_cache(maxsize=256)
def gguf_weight_bytes(spec: ModelSpec, mix: str) -> WeightBytes:
    groups: dict[str, int] = {}
    q = kept = 0
    for layer, t in iter_tensors(spec):
        typ = tensor_type(mix, t, layer, spec)
        groups[t.group] = groups.get(t.group, 0) + ggml_nbytes(typ, t.numel)
        if typ in ("F32", "F16", "BF16"):
            kept += t.numel
        else:
            q += t.numel
    return WeightBytes(tuple(groups.items()), sum(groups.values()), q, kept, mix)
