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
    """The storage format a checkpoint's quantization_config describes (None if not quantized or unknown),
    with the modules its ignore / exclude_modules list leaves unquantized."""
    fmt = _format_from_quant_config(qc, base_bytes)
    if fmt is None or not fmt.roles:
        return fmt
    skipped = qc.get("ignore") or qc.get("exclude_modules") or qc.get("modules_to_not_convert") or ()
    if not isinstance(skipped, (list, tuple)):
        return fmt
    everywhere, in_layers = ignored_roles([str(x) for x in skipped], fmt.roles)
    if not everywhere and not in_layers:
        return fmt
    return fmt._replace(keep_roles=fmt.keep_roles | everywhere,
                        keep_layers=tuple(sorted((r, frozenset(ls)) for r, ls in in_layers.items()
                                                 if r not in everywhere)))


# Module names in ignore lists -> the tensor roles they hold (substring match on the name, most specific first).
_ATTN_ROLES = ("attn_q", "attn_k", "attn_v", "attn_output", "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b")
_NOT_LINEAR = ("shared_expert_gate", "mlp.gate.", "router")  # routers / gates: never quantized anyway
_ATTN_MODULES = (("q_a_proj", ("attn_q_a",)), ("q_b_proj", ("attn_q_b",)), ("kv_a_proj", ("attn_kv_a_mqa",)),
                 ("kv_b_proj", ("attn_kv_b",)), ("q_proj", ("attn_q",)), ("k_proj", ("attn_k",)),
                 ("v_proj", ("attn_v",)), ("o_proj", ("attn_output",)), ("self_attn", _ATTN_ROLES),
                 ("attention", _ATTN_ROLES))
_FFN_SCOPES = (("shared_expert", "_shexp"), ("experts", "_exps"), ("", ""))
_FFN_PROJ = (("gate_proj", ("ffn_gate",)), ("up_proj", ("ffn_up",)), ("down_proj", ("ffn_down",)))
_SSM_ROLES = ("ssm_in", "ssm_out", "ssm_x", "ssm_dt")


def _module_roles(name: str) -> tuple[str, ...]:
    if any(k in name for k in _NOT_LINEAR):
        return ()
    for key, roles in _ATTN_MODULES:
        if key in name:
            return roles
    if "mixer" in name:
        return _SSM_ROLES
    projs = [r for key, rs in _FFN_PROJ if key in name for r in rs] or ["ffn_gate", "ffn_up", "ffn_down"]
    if not (any(key in name for key, _ in _FFN_PROJ) or "mlp" in name or "expert" in name):
        return ()
    for key, suffix in _FFN_SCOPES:
        if key and key in name:
            return tuple(p + suffix for p in projs)
    if "mlp" in name and not any(key in name for key, _ in _FFN_PROJ):  # the whole block, experts included
        return tuple(p + suf for p in projs for _, suf in _FFN_SCOPES)
    return tuple(projs)


def ignored_roles(patterns: list[str], quantized: frozenset[str]) -> tuple[frozenset[str], dict[str, set[int]]]:
    """Roles an ignore list keeps in base precision: (in every layer, {role: layers}) for names such as
    ``lm_head``, ``model.layers.3.self_attn*``, ``re:.*mlp.gate$`` or ``*.shared_experts.*``. Names outside the
    decoder layers (lm_head, embeddings, vision towers) are already left alone by every format."""
    import re

    everywhere: set[str] = set()
    in_layers: dict[str, set[int]] = {}
    for raw in patterns:
        name = raw[3:] if raw.startswith("re:") else raw
        name = name.replace("\\", "").replace("$", "").replace("*", "").replace(".+", ".") + "."
        if "vision" in name or "visual" in name or "mm_projector" in name or "multi_modal" in name:
            continue
        roles = tuple(r for r in _module_roles(name) if r in quantized)
        if not roles:
            continue
        m = re.search(r"layers\.(\d+)\.", name)
        for r in roles:
            if m is None:
                everywhere.add(r)
            else:
                in_layers.setdefault(r, set()).add(int(m.group(1)))
    return frozenset(everywhere), in_layers


def _format_from_quant_config(qc: dict, base_bytes: int = 2) -> WeightFormat | None:
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
    if method == "modelopt":
        return _modelopt(qc, base_bytes)
    return None


def _modelopt(qc: dict, base_bytes: int) -> WeightFormat | None:
    """NVIDIA TensorRT Model Optimizer checkpoints (hf_quant_config.json, or quant_method "modelopt" in config.json):
    quant_algo FP8 stores E4M3 weights with one fp32 weight scale (+ one input scale) per linear; NVFP4 stores
    4-bit E2M1 values with one E4M3 scale per 16 values and fp32 global scales (vLLM modelopt.py)."""
    algo = str(qc.get("quant_algo", "")).upper()
    if algo in ("FP8",):
        return get_format("fp8", base_bytes)._replace(tensor_bits=64, name="modelopt-fp8",
                                                       label="FP8 E4M3, per-tensor weight + input scales (ModelOpt)")
    if algo in ("FP8_PER_CHANNEL_PER_TOKEN",):
        return get_format("fp8-channel", base_bytes)._replace(name="modelopt-fp8-channel")
    if algo in ("FP8_PB_WO", "FP8_BLOCK"):
        return _build("fp8-block", _table()["fp8-block"], base_bytes=base_bytes)
    if "FP4" in algo:
        return get_format("nvfp4", base_bytes)._replace(tensor_bits=64, name="modelopt-nvfp4",
                                                         label="NVFP4 (ModelOpt): E4M3 scale per 16 values, fp32 "
                                                               "global weight + input scales")
    if "AWQ" in algo and ("W4" in algo or "INT4" in algo):
        group = int(qc.get("group_size") or 128)
        return get_format("awq", base_bytes)._replace(group_size=group, name=f"modelopt-int4-awq-g{group}")
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
