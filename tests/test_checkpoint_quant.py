"""Checkpoint quantization read from beside or inside config.json: NVIDIA ModelOpt's hf_quant_config.json, and the
ignore / exclude_modules lists that keep some modules (in some layers) 16-bit. Also: configs with Infinity.

Expected bytes are counted here from the tensor shapes (linears at 1 byte + their scales, everything else at 2),
not taken from vramplan's output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramplan.api import load_model, model_weight_bytes
from vramplan.catalog import models as cat
from vramplan.catalog.formats import format_from_quant_config, ignored_roles
from vramplan.core.model import LINEAR_ROLES, iter_tensors
from vramplan.core.precision import per_layer_bytes

LLAMA_1B = Path(cat.entry_file(cat.find_model("llama-3.2-1b"), "config.json"))


def _folder(tmp_path: Path, cfg: dict, hf_quant: dict | None = None) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    if hf_quant is not None:
        (d / "hf_quant_config.json").write_text(json.dumps(hf_quant))
    return d


def _expected_fp8(spec, scale_bytes_per_linear: int, kept_layers_roles=frozenset()) -> int:
    total = 0
    for layer, t in iter_tensors(spec):
        linear = t.role in LINEAR_ROLES and len(t.shape) >= 2 and (layer, t.role) not in kept_layers_roles
        total += t.numel + scale_bytes_per_linear if linear else 2 * t.numel
    return total


def test_modelopt_fp8_folder(tmp_path, run_json):
    cfg = json.loads(LLAMA_1B.read_text())
    d = _folder(tmp_path, cfg, {"producer": {"name": "modelopt", "version": "0.23.0"},
                                "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
                                                 "exclude_modules": ["lm_head"]}})
    lm = load_model(str(d))
    assert json.loads(lm.spec.quantization)["quant_method"] == "modelopt"
    out = run_json("inference", str(d))
    # weight scale + input scale: one fp32 each per linear
    assert out["memory"]["weights"] == _expected_fp8(lm.spec, 8)
    plain = run_json("inference", str(LLAMA_1B))
    assert out["memory"]["weights"] < 0.62 * plain["memory"]["weights"]


def test_modelopt_nvfp4_in_config_and_per_layer_ignore(tmp_path):
    """quant_method modelopt inside config.json, with an ignore list naming self_attn of two layers only."""
    cfg = json.loads(LLAMA_1B.read_text())
    cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16,
                                  "ignore": ["lm_head", "model.layers.0.self_attn*", "model.layers.15.self_attn*"]}
    lm = load_model(str(_folder(tmp_path, cfg)))
    fmt = format_from_quant_config(lm.spec.quant_config)
    assert fmt.bits == 4 and fmt.group_size == 16
    wb = model_weight_bytes(lm.spec, fmt)
    attn = ("attn_q", "attn_k", "attn_v", "attn_output")
    expected = 0
    for layer, t in iter_tensors(lm.spec):
        if t.role in LINEAR_ROLES and not (layer in (0, 15) and t.role in attn):
            out_f, in_f = t.shape
            expected += out_f * in_f // 2 + out_f * (in_f // 16) + 8  # E2M1 values, E4M3 scales, 2 fp32 scalars
        else:
            expected += 2 * t.numel
    assert wb.total_bytes == expected
    per_layer = per_layer_bytes(lm.spec, fmt)
    assert per_layer[0] == per_layer[15] > per_layer[1] == per_layer[14]
    assert sum(per_layer) + sum(2 * t.numel for i, t in iter_tensors(lm.spec) if i < 0) == wb.total_bytes


def test_ignored_roles_patterns():
    everywhere, layers = ignored_roles(
        ["lm_head", "model.layers.0.mlp.gate", "re:.*shared_experts.*", "vision_tower*",
         "language_model.model.layers.3.self_attn*", "model.layers.5.mlp.experts.0.down_proj"], LINEAR_ROLES)
    assert everywhere == {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"}
    assert layers["attn_q"] == {3} and layers["attn_kv_b"] == {3}
    assert layers["ffn_down_exps"] == {5} and "ffn_gate_exps" not in layers
    assert "ffn_gate" not in layers  # the MoE router (mlp.gate) is not a quantized linear


def test_catalog_reads_hf_quant_config(tmp_path, monkeypatch):
    src = cat.find_model("llama-3.2-1b")
    root = tmp_path / "catalog"
    (root / src.path).mkdir(parents=True)
    (root / src.path / "config.json").write_text(LLAMA_1B.read_text())
    (root / src.path / "hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8", "exclude_modules": ["lm_head"]}}))
    monkeypatch.setattr(cat, "CATALOG_DIR", str(root))
    from vramplan.sources.loaders import load_catalog

    lm = load_catalog(src)
    assert json.loads(lm.spec.quantization)["quant_algo"] == "FP8"


def test_bad_hf_quant_config_names_the_file(tmp_path, run_cli):
    d = _folder(tmp_path, json.loads(LLAMA_1B.read_text()), {"producer": {"name": "modelopt"}, "quantization": 3})
    code, _, err = run_cli("inference", str(d))
    assert code == 1 and "Traceback" not in err
    assert "hf_quant_config.json" in err and "quantization" in err


def test_config_with_infinity_is_read(tmp_path, run_json):
    text = LLAMA_1B.read_text().rstrip().rstrip("}") + ', "time_step_limit": [0.0, Infinity]}'
    p = tmp_path / "config.json"
    p.write_text(text)
    assert run_json("inference", str(p))["model"]["params"] == 1_235_814_400


def test_infinity_where_a_count_belongs_is_refused(tmp_path, run_cli):
    text = LLAMA_1B.read_text().replace('"num_hidden_layers": 16', '"num_hidden_layers": Infinity')
    assert "Infinity" in text
    p = tmp_path / "config.json"
    p.write_text(text)
    code, _, err = run_cli("inference", str(p))
    assert code == 1 and "num_hidden_layers" in err and "Traceback" not in err


@pytest.mark.parametrize("blob", [b'{"a": NaN}', b'{"a": -Infinity}'])
def test_safetensors_index_still_refuses_constants(tmp_path, blob):
    from vramplan.errors import SourceError
    from vramplan.sources._safejson import load_json_object

    with pytest.raises(SourceError):
        load_json_object(blob, name="x.index.json", what="safetensors index")


def test_ignore_lists_with_regex_and_vendor_prefixes():
    kimi = ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", r"re:.*mlp\.(gate|up|gate_up|down)_proj.*"]
    everywhere, layers = ignored_roles(kimi, LINEAR_ROLES)
    assert {"attn_q_a", "attn_kv_b", "ffn_gate", "ffn_down", "ffn_up_shexp"} <= everywhere and not layers
    assert not everywhere & {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}  # the routed experts stay int4
    qwen35 = ["model.language_model.layers.3.mlp.shared_expert*", "model.language_model.layers.3.linear_attn*",
              "mtp.layers.0*", "model.visual*", "lm_head"]
    everywhere, layers = ignored_roles(qwen35, LINEAR_ROLES)
    assert not everywhere and set(layers) == {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "ssm_in",
                                              "ssm_ba", "ssm_out"}
    assert all(v == {3} for v in layers.values())


def test_kimi_k2_5_int4_checkpoint_bytes():
    """A public audit of Kimi-K2.5's safetensors headers sums the payload to 595,148,192,736 bytes (INT4 routed
    experts with group-32 scales; attention, shared experts, dense MLP, embeddings, head and vision tower 16-bit)."""
    spec = load_model("kimi-k2.5").spec
    wb = model_weight_bytes(spec, format_from_quant_config(spec.quant_config))
    assert abs(wb.total_bytes / 595_148_192_736 - 1) < 1e-5


def test_ignore_globs_without_layer_numbers_and_layer_globs():
    everywhere, _ = ignored_roles(["*self_attn*"], LINEAR_ROLES)
    assert {"attn_q", "attn_k", "attn_v", "attn_output"} <= everywhere
    _, layers = ignored_roles(["model.layers.1*"], LINEAR_ROLES)
    assert {1, 10, 19, 100}.issubset(layers["attn_q"]) and 2 not in layers["attn_q"]


@pytest.mark.parametrize("qc", [
    {"quant_method": "modelopt", "quant_algo": "W4A16_AWQ", "group_size": "x"},
    {"quant_method": "modelopt", "quant_algo": "W4A16_AWQ", "group_size": -5},
    {"quant_method": "fp8", "weight_block_size": [128]},
    {"quant_method": "gptq", "bits": "four"},
])
def test_malformed_quantization_configs_name_the_field(qc):
    from vramplan.errors import InvalidModelSpec

    with pytest.raises(InvalidModelSpec) as err:
        format_from_quant_config(qc)
    assert "quantization_config" in str(err.value)


def test_mxfp8_checkpoint_and_unknown_methods(tmp_path):
    """quant_method mxfp8 (MiniMax-M3's MXFP8 release): E4M3 values + one E8M0 byte per 32 along the input dim;
    a quant_method vramplan does not model is said in the format label, not silently billed at 16 bits."""
    from vramplan.api import resolve_format

    cfg = json.loads(LLAMA_1B.read_text())
    d = _folder(tmp_path, {**cfg, "quantization_config": {"quant_method": "mxfp8"}})
    lm = load_model(str(d))
    wb = model_weight_bytes(lm.spec, resolve_format(lm))
    expected = 0
    for _, t in iter_tensors(lm.spec):
        linear = t.role in LINEAR_ROLES and len(t.shape) >= 2
        expected += t.numel + t.numel // 32 if linear else 2 * t.numel
    assert wb.total_bytes == expected
    (tmp_path / "model" / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "zz"}}))
    fmt = resolve_format(load_model(str(d)))
    assert fmt.name == "bf16" and "'zz' is not modelled" in fmt.label
