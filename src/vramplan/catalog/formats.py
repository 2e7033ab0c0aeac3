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
    from ..errors import InvalidModelSpec, VramplanError

    try:
        fmt = _format_from_quant_config(qc, base_bytes)
    except VramplanError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError, AttributeError, IndexError) as exc:
        raise InvalidModelSpec(f"malformed quantization_config ({type(exc).__name__}: {str(exc)[:80]})",
                               field="quantization_config") from None
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


# Hugging Face module paths (after "layers.{i}.") of each quantizable tensor role, with the other codebases' names.
_ROLE_MODULES: dict[str, tuple[str, ...]] = {
    "attn_q": ("self_attn.q_proj", "mixer.q_proj"), "attn_k": ("self_attn.k_proj", "mixer.k_proj"),
    "attn_v": ("self_attn.v_proj", "mixer.v_proj"), "attn_output": ("self_attn.o_proj", "mixer.o_proj"),
    "attn_q_a": ("self_attn.q_a_proj",), "attn_q_b": ("self_attn.q_b_proj",),
    "attn_kv_a_mqa": ("self_attn.kv_a_proj_with_mqa",), "attn_kv_b": ("self_attn.kv_b_proj",),
    "attn_idx_q": ("self_attn.indexer.wq_b",), "attn_idx_k": ("self_attn.indexer.wk",),
    "ffn_gate": ("mlp.gate_proj",), "ffn_up": ("mlp.up_proj", "mixer.up_proj"),
    "ffn_down": ("mlp.down_proj", "mixer.down_proj"),
    "ffn_gate_exps": ("mlp.experts.0.gate_proj", "block_sparse_moe.experts.0.w1"),
    "ffn_up_exps": ("mlp.experts.0.up_proj", "block_sparse_moe.experts.0.w3", "mixer.experts.0.up_proj"),
    "ffn_down_exps": ("mlp.experts.0.down_proj", "block_sparse_moe.experts.0.w2", "mixer.experts.0.down_proj"),
    "ffn_gate_shexp": ("mlp.shared_experts.gate_proj", "mlp.shared_expert.gate_proj"),
    "ffn_up_shexp": ("mlp.shared_experts.up_proj", "mlp.shared_expert.up_proj", "mixer.shared_experts.up_proj"),
    "ffn_down_shexp": ("mlp.shared_experts.down_proj", "mlp.shared_expert.down_proj",
                       "mixer.shared_experts.down_proj"),
    "ffn_latent_in": ("mixer.fc1_latent_proj",), "ffn_latent_out": ("mixer.fc2_latent_proj",),
    "ssm_in": ("mixer.in_proj", "mamba.in_proj", "linear_attn.in_proj_qkvz"), "ssm_ba": ("linear_attn.in_proj_ba",),
    "ssm_out": ("mixer.out_proj", "mamba.out_proj", "linear_attn.out_proj"), "ssm_x": ("mixer.x_proj",),
    "ssm_dt": ("mixer.dt_proj",), "ssm_f_a": ("self_attn.f_a_proj",), "ssm_f_b": ("self_attn.f_b_proj",),
    "ssm_g_a": ("self_attn.g_a_proj",), "ssm_g_b": ("self_attn.g_b_proj",), "ssm_beta": ("self_attn.b_proj",),
    "attn_gate_full": ("self_attn.g_proj",),
}
_PREFIXES = ("model.", "model.language_model.", "language_model.model.", "backbone.", "")
_SCAN_LAYERS = 512  # regex patterns that name only some layers are tried on layers 0..511


def ignored_roles(patterns: list[str], quantized: frozenset[str]) -> tuple[frozenset[str], dict[str, set[int]]]:
    """Roles an ignore list keeps in base precision: (in every layer, {role: layers}). Entries are module names
    (``model.layers.3.self_attn``: the module and what it contains), globs (``*self_attn*``) or, with ``re:``,
    regular expressions (``re:.*mlp\\.(gate|up|down)_proj.*``), matched against each role's Hugging Face module
    path. Names outside the decoder layers (lm_head, embeddings, vision towers, MTP) are left alone by every format
    anyway."""
    import re
    from fnmatch import fnmatchcase

    everywhere: set[str] = set()
    in_layers: dict[str, set[int]] = {}
    roles = [r for r in _ROLE_MODULES if r in quantized]
    for raw in patterns:
        if raw.startswith("re:"):
            try:
                rx = re.compile(raw[3:])
            except re.error:
                continue

            def hit(role: str, layer: int) -> bool:
                return any(rx.search(f"{p}layers.{layer}.{m}") for m in _ROLE_MODULES[role] for p in _PREFIXES)

            for role in roles:
                if all(hit(role, i) for i in range(4)):
                    everywhere.add(role)
                elif any(hit(role, i) for i in range(4)) or "layers" in raw:
                    found = {i for i in range(_SCAN_LAYERS) if hit(role, i)}
                    if found:
                        in_layers.setdefault(role, set()).update(found)
            continue
        k = raw.find("layers.")
        if any(x in (raw[:k] if k >= 0 else raw) for x in ("mtp", "vision", "visual", "audio", "encoder", "lm_head",
                                                             "embed")):
            continue  # lm_head, embeddings, vision tower, mtp: not decoder-layer roles
        globbed = any(c in raw for c in "*?[")
        if k < 0:
            if not globbed:
                continue
            pat = raw if raw.startswith("*") else "*" + raw  # '*self_attn*': any layer
            layer = None
        else:
            pat = raw[k:]
            m = re.match(r"layers\.(\d+)(\.|$)", pat)
            if m is None and re.match(r"layers\.[\d*?\[]", pat) and not pat.startswith("layers.*"):
                # 'layers.1*' and the like: try each layer number
                for role in roles:
                    found = {i for i in range(_SCAN_LAYERS)
                             if any(fnmatchcase(f"layers.{i}.{mod}", pat) or fnmatchcase(f"layers.{i}.{mod}", pat + ".*")
                                    for mod in _ROLE_MODULES[role])}
                    if found:
                        in_layers.setdefault(role, set()).update(found)
                continue
            layer = int(m.group(1)) if m else None
        for role in roles:
            for mod in _ROLE_MODULES[role]:
                name = f"layers.{layer if layer is not None else 0}.{mod}"
                if globbed and (fnmatchcase(name, pat) or fnmatchcase(name, pat + ".*")) \
                        or name == pat or name.startswith(pat + "."):
                    if layer is None:
                        everywhere.add(role)
                    else:
                        in_layers.setdefault(role, set()).add(layer)
                    break
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
            wbs = qc["weight_block_size"]
            if (not isinstance(wbs, (list, tuple)) or len(wbs) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in wbs)):
                from ..errors import InvalidModelSpec

                raise InvalidModelSpec(f"expected two positive whole numbers, got {wbs!r}",
                                       field="quantization_config.weight_block_size")
            bo, bi = wbs
            # the stored scale width: fp32 by default (DeepSeek-V3/V3.1/V3.2 keep fp32 even with scale_fmt ue8m0);
            # DeepSeek-V4 stores float8_e8m0fnu and Qwen's FP8 releases bf16 (set by the config reader)
            sd = str(qc.get("scale_dtype", "")).lower()
            extra = {"block2d_bits": 8} if sd in ("e8m0", "float8_e8m0fnu") else \
                {"block2d_bits": 16} if sd in ("bfloat16", "bf16") else {}
            fmt = _build("fp8-block", _table()["fp8-block"], block2d=(int(bo), int(bi)), base_bytes=base_bytes,
                         **extra)
        else:
            fmt = get_format("fp8", base_bytes)
        if str(qc.get("expert_dtype", "")).lower() == "fp4":  # DeepSeek-V4: MXFP4 routed experts
            fmt = fmt._replace(expert_format=get_format("mxfp4-experts", base_bytes),
                               name=fmt.name + "+mxfp4-experts", label=fmt.label + "; routed experts MXFP4")
        return fmt
    if method == "mxfp4":
        return get_format("mxfp4-experts", base_bytes)
    if method == "mxfp8":
        return get_format("mxfp8", base_bytes)
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
        group = qc.get("group_size") or 128
        if isinstance(group, bool) or not isinstance(group, int) or not 0 < group <= 1 << 20:
            from ..errors import InvalidModelSpec

            raise InvalidModelSpec(f"expected a positive whole number, got {group!r}",
                                   field="quantization_config.group_size")
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
        kind = ("MXFP4" if is_float and bits == 4 and gs == 32 else "NVFP4-style" if is_float and bits == 4
                else f"{'FP' if is_float else 'INT'}{bits}")
        how = (f"one scale per {gs} values" if strategy == "group" and gs else "one scale per output channel"
               if strategy == "channel" else "2-D block scales" if strategy == "block" else "one scale per tensor")
        label = f"compressed-tensors {kind} weights, {how} (from checkpoint)"
        return WF(name=name, label=label, **kw)
    return None
