"""Named weight formats from precisions.json, GGUF mixes, and a checkpoint's own quantization_config."""

from __future__ import annotations

import json
from functools import lru_cache
import os

from ..core.model import EXPERT_ROLES, LINEAR_ROLES
from ..core.precision import WeightFormat
from ..errors import UnknownName, suggest

_ROLES = {"none": frozenset(), "linear": LINEAR_ROLES, "experts": EXPERT_ROLES}
_FIELDS = ("bits", "group_size", "group_bits", "superblock", "superblock_bits", "row_bits", "col_bits",
           "tensor_bits", "block2d_bits", "base_bytes")


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    with open(os.path.join(os.path.dirname(__file__), "precisions.json"), "rb") as fh:
        data = json.loads(fh.read())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _build(key: str, row: dict, **override) -> WeightFormat:
    kw = {f: row[f] for f in _FIELDS if f in row}
    if "block2d" in row:
        kw["block2d"] = tuple(row["block2d"])
    kw["roles"] = _ROLES[row.get("roles", "linear")]
    kw.update(override)
    return WeightFormat(name=key, label=row.get("label", key), source=row.get("source", ""), **kw)


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    out = {}
    for key, row in _table().items():
        out[key] = key
        for a in row.get("aliases", ()):
            out[a.lower()] = key
    return out


def format_names() -> list[str]:
    from ..core.gguf_mix import GGUF_MIXES

    return list(_table()) + sorted(GGUF_MIXES)


@lru_cache(maxsize=128)
def get_format(name: str, base_bytes: int = 2) -> WeightFormat:
    """A format by name: 'bf16', 'fp8', 'gptq', 'awq', 'bnb-nf4', 'mxfp4', 'nvfp4', 'Q4_K_M', ... .

    ``base_bytes`` is the width of the tensors a quantized format leaves alone (2 for bf16/fp16 checkpoints).
    """
    from ..core.gguf_mix import GGUF_MIXES, gguf_format

    low = name.strip().lower().replace("_", "-")
    key = _aliases().get(low) or _aliases().get(name.strip().lower())
    if key:
        row = _table()[key]
        if row.get("roles", "linear") == "none":
            return _build(key, row)
        return _build(key, row, base_bytes=base_bytes)
    up = name.strip().upper().replace("-", "_")
    if up in GGUF_MIXES:
        return gguf_format(up)
    raise UnknownName("weight format", name, suggest(name, list(_aliases()) + list(GGUF_MIXES)))


def format_from_quant_config(qc: dict, base_bytes: int = 2) -> WeightFormat | None:
    """The storage format a checkpoint's quantization_config describes (None if not quantized or unknown)."""
    from ..core.precision import WeightFormat as WF

    method = str(qc.get("quant_method", "")).lower()
    if method == "gptq":
        bits = int(qc.get("bits", 4))
        group = int(qc.get("group_size", 128) or 0)
        group = group if group > 0 else 0
        return WF(name=f"gptq-int{bits}-g{group or 'channel'}", bits=bits, group_size=group,
                  group_bits=(16 + bits) if group else 0, row_bits=0 if group else 16 + bits, col_bits=32,
                  base_bytes=base_bytes, label=f"GPTQ int{bits} group {group or 'per-channel'} (from checkpoint)",
                  source=_table()["gptq"]["source"])
    if method == "awq":
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        group = int(qc.get("group_size", qc.get("q_group_size", 128)))
        return WF(name=f"awq-int{bits}-g{group}", bits=bits, group_size=group, group_bits=16 + bits,
                  base_bytes=base_bytes, label=f"AWQ int{bits} group {group} (from checkpoint)",
                  source=_table()["awq"]["source"])
    if method == "bitsandbytes":
        if qc.get("load_in_8bit"):
            return get_format("int8", base_bytes)
        qt = str(qc.get("bnb_4bit_quant_type", "fp4")).lower()
        dq = bool(qc.get("bnb_4bit_use_double_quant", False))
        key = {("nf4", True): "bnb-nf4", ("nf4", False): "bnb-nf4-nodq", ("fp4", True): "bnb-fp4"}.get(
            (qt, dq), "bnb-nf4-nodq")
        return get_format(key, base_bytes)
    if method == "fp8":
        if qc.get("weight_block_size"):
            bo, bi = qc["weight_block_size"]
            return _build("fp8-block", _table()["fp8-block"], block2d=(int(bo), int(bi)), base_bytes=base_bytes)
        return get_format("fp8", base_bytes)
    if method == "mxfp4":
        return get_format("mxfp4-experts", base_bytes)
    if method in ("compressed-tensors", "compressed_tensors"):
        return _compressed_tensors(qc, base_bytes)
    if method in ("fbgemm_fp8",):
        return get_format("fp8-channel", base_bytes)
    if method in ("modelopt",) and "fp4" in str(qc.get("quant_algo", "")).lower():
        return get_format("nvfp4", base_bytes)
    return None


def _compressed_tensors(qc: dict, base_bytes: int) -> WeightFormat | None:
    from ..core.precision import WeightFormat as WF

    groups = qc.get("config_groups") or {}
    for g in groups.values():
        w = (g or {}).get("weights") or {}
        bits = int(w.get("num_bits", 8))
        strategy = str(w.get("strategy", "tensor"))
        gs = int(w.get("group_size") or 0)
        is_float = w.get("type") == "float"
        scale_bits = 8 if (is_float and bits == 4) else 16 if bits <= 4 else 32
        kw = dict(bits=bits, base_bytes=base_bytes, source="compressed-tensors config_groups")
        if strategy == "group" and gs:
            kw.update(group_size=gs, group_bits=scale_bits + (0 if w.get("symmetric", True) else bits))
        elif strategy == "channel":
            kw.update(row_bits=scale_bits)
        elif strategy == "block" and w.get("block_structure"):
            kw.update(block2d=tuple(int(x) for x in w["block_structure"]), block2d_bits=32)
        else:
            kw.update(tensor_bits=32)
        name = f"compressed-tensors-{'fp' if is_float else 'int'}{bits}-{strategy}"
        return WF(name=name, label=name, **kw)
    return None
