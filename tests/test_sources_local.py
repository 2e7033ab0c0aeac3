"""Local model paths: folders, config files, weights, GGUF files, and the ways they can be broken or hostile."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from conftest import write_gguf_header
from vramplan.errors import SourceError
from vramplan.sources.local import load_json_file, read_model_dir

CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000}


def st_file(tensors: dict) -> bytes:
    sizes = {"BF16": 2, "F32": 4, "I32": 4, "F16": 2, "U8": 1}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def write_gguf(path, arch="llama"):
    return write_gguf_header(path, arch, layers=1, hidden=64, heads=4, kv_heads=4, ff=128, context=2048, vocab=50,
                             output=False)


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(CONFIG))
    (d / "model.safetensors").write_bytes(st_file({"embed.weight": ("BF16", (1000, 64)), "norm": ("F32", (64,))}))
    return d


# ---------------------------------------------------------------------------------------------------------------
# what each kind of path gives
# ---------------------------------------------------------------------------------------------------------------
def test_folder_with_config_and_weights(model_dir):
    art = read_model_dir(model_dir)
    assert art.kind == "directory" and art.config == CONFIG
    assert art.census.total_params == 64_000 + 64 and art.census.total_bytes == 128_000 + 256
    assert len(art.headers) == 1 and art.gguf == ()


def test_folder_with_config_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    art = read_model_dir(tmp_path)
    assert art.census is None and any("sizes come from config.json" in n for n in art.notes)


def test_config_file_and_quantize_config(model_dir):
    (model_dir / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 128}))
    art = read_model_dir(model_dir / "config.json")
    assert art.kind == "config" and art.config == CONFIG and art.quantize_config["bits"] == 4
    assert art.census is None  # a config path means the config only


def test_safetensors_file_path_picks_up_the_config(model_dir):
    art = read_model_dir(model_dir / "model.safetensors")
    assert art.kind == "safetensors" and art.config == CONFIG and art.census.tensor_count == 2


def test_bits_from_quantization_config(tmp_path):
    cfg = dict(CONFIG, quantization_config={"quant_method": "gptq", "bits": 8, "group_size": 128})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(st_file({"l.qweight": ("I32", (16, 64)), "l.g_idx": ("I32", (64,)),
                                                          "l.scales": ("F16", (1, 64))}))
    art = read_model_dir(tmp_path)
    assert art.census.scheme == "gptq" and art.census.bits == 8
    assert art.census.total_params == 16 * 64 * 4  # 8-bit: 4 values per int32 word


def test_gguf_file_and_folder(tmp_path):
    path = write_gguf(tmp_path / "tiny-Q4_K_M.gguf")
    art = read_model_dir(path)
    assert art.kind == "gguf" and art.config["model_type"] == "llama" and art.config["vocab_size"] == 50
    assert art.census.total_params == 50 * 64 and len(art.gguf) == 1
    # a folder with one GGUF model (and a vision projector) and no config.json reads the GGUF
    write_gguf(tmp_path / "mmproj-f16.gguf", arch="clip")
    assert read_model_dir(tmp_path).kind == "gguf"
    write_gguf(tmp_path / "tiny-Q8_0.gguf")
    with pytest.raises(SourceError, match="several GGUF files: name one of tiny-Q4_K_M.gguf, tiny-Q8_0.gguf"):
        read_model_dir(tmp_path)


def test_remote_code_is_noted_never_run(tmp_path):
    cfg = dict(CONFIG, auto_map={"AutoConfig": "configuration_x.XConfig"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "configuration_x.py").write_text("raise SystemExit('remote code ran')\n")
    art = read_model_dir(tmp_path)
    assert any("never runs it" in n for n in art.notes)


def test_hf_cache_layout_with_symlinked_blobs(tmp_path):
    blobs = tmp_path / "blobs"
    snap = tmp_path / "snapshots" / ("a" * 40)
    blobs.mkdir()
    snap.mkdir(parents=True)
    (blobs / "cfg").write_text(json.dumps(CONFIG))
    (blobs / "w").write_bytes(st_file({"x": ("BF16", (8, 8))}))
    (snap / "config.json").symlink_to(os.path.relpath(blobs / "cfg", snap))
    (snap / "model.safetensors").symlink_to(os.path.relpath(blobs / "w", snap))
    art = read_model_dir(snap)
    assert art.config == CONFIG and art.census.total_params == 64


# ---------------------------------------------------------------------------------------------------------------
# broken and hostile paths: one clear line each
# ---------------------------------------------------------------------------------------------------------------
def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(st_file({"x": ("BF16", (2,))}))
    with pytest.raises(SourceError, match="no config.json in this folder"):
        read_model_dir(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        read_model_dir(tmp_path / "nope")


def test_symlink_loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(SourceError, match="symbolic link loop"):
        read_model_dir(tmp_path / "a")
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").symlink_to(d / "config.json")
    with pytest.raises(SourceError, match="symbolic link loop"):
        read_model_dir(d)


def test_dangling_config_link(tmp_path):
    (tmp_path / "config.json").symlink_to(tmp_path / "gone.json")
    with pytest.raises(SourceError, match="dangling symbolic link"):
        read_model_dir(tmp_path)


def test_directory_loop_does_not_hang(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(CONFIG))
    (d / "loop").symlink_to(d)  # a folder that contains itself
    assert read_model_dir(d).config == CONFIG


@pytest.mark.parametrize("content,message", [
    (b"[1, 2, 3]", "must be a JSON object at the top level, got an array"),
    (b'"llama"', "got a string"),
    (b"{not json", "not valid JSON"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than 64 levels"),
    (b'{"model_type": "llama\xff"}', "not valid UTF-8"),
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b"", "not valid JSON"),
])
def test_bad_config_files(tmp_path, content, message):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(SourceError) as err:
        read_model_dir(tmp_path)
    assert message in str(err.value) and "config.json" in str(err.value)


def test_oversized_config_is_not_read(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    with open(path, "wb") as f:
        f.truncate(11 << 20)  # sparse: 11 MiB that were never written
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    with pytest.raises(SourceError, match="more than the 10,485,760-byte limit"):
        load_json_file(path)
    assert str(path) not in opened  # refused from its size alone


def test_fifo_config_is_refused(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(SourceError, match="not a regular file"):
        read_model_dir(tmp_path)


def test_corrupt_weights_in_a_folder(model_dir):
    (model_dir / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(SourceError, match="limit"):
        read_model_dir(model_dir)


def test_unknown_file_kind(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(SourceError, match="not a model file"):
        read_model_dir(tmp_path / "weights.bin")
