"""A local model path -> its artefacts: config.json, quantize_config.json, safetensors census, or a GGUF file.

``read_model_dir`` accepts a model folder, a ``config.json``, a ``.safetensors`` file or index, or a ``.gguf`` file
(or a folder holding a single GGUF model). It never imports or runs code from the folder (no ``auto_map``, no
``trust_remote_code``): only JSON and binary headers are read, each under a size cap.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError
from ._safejson import CONFIG_MAX_BYTES, load_json_object
from .gguf import GGUFFile, gguf_census, gguf_to_config, read_gguf_split, split_count
from .safetensors import Census, SafetensorsHeader, census, read_safetensors_dir, safetensors_files

CONFIG_FILE = "config.json"
QUANTIZE_CONFIG_FILE = "quantize_config.json"
HF_QUANT_CONFIG_FILE = "hf_quant_config.json"  # NVIDIA ModelOpt checkpoints (FP8, NVFP4)


@dataclass(frozen=True, slots=True)
class LocalArtefacts:
    """What a local path holds. ``kind`` is 'directory', 'config', 'safetensors' or 'gguf'.

    ``config`` is the parsed config.json (for GGUF: the dict ``gguf_to_config`` derives from the metadata);
    ``census`` sums the weight headers (safetensors or GGUF) when there are any: its byte and parameter figures are
    exact for the files and should be preferred over config-derived ones.
    """

    path: str
    kind: str
    config: dict | None
    quantize_config: dict | None = None
    headers: tuple[SafetensorsHeader, ...] = ()
    census: Census | None = None
    gguf: tuple[GGUFFile, ...] = ()
    notes: tuple[str, ...] = field(default=())


def load_json_file(path: str | os.PathLike, *, what: str = "config", max_bytes: int = CONFIG_MAX_BYTES) -> dict:
    """A JSON object from a file, under a size cap, a nesting cap and strict UTF-8; one clear line if not."""
    p = _checked(Path(path))
    name = str(p)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError("not a regular file", name)
        if st.st_size > max_bytes:
            raise SourceError(f"{what} is {st.st_size:,} bytes, more than the {max_bytes:,}-byte limit", name)
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", name) from None
    return load_json_object(data, name=name, max_bytes=max_bytes, what=what, constants=True)


def _checked(p: Path) -> Path:
    """The path must exist; a symlink loop or a dangling link is reported as such."""
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceError("symbolic link loop", str(p)) from None
        if exc.errno == errno.ENOENT:
            if os.path.islink(p):
                raise SourceError("dangling symbolic link", str(p)) from None
            raise SourceError("no such file or folder", str(p)) from None
        raise SourceError(f"cannot read: {exc.strerror or exc}", str(p)) from None
    return p


def read_model_dir(path: str | os.PathLike) -> LocalArtefacts:
    """Read a local model: a folder, a config.json, a .safetensors file or index, or a .gguf file."""
    p = _checked(Path(path))
    if p.is_dir():
        return _read_folder(p)
    if not p.is_file():
        raise SourceError("not a regular file or folder", str(p))
    low = p.name.lower()
    if low.endswith(".gguf"):
        return _read_gguf(p)
    if low.endswith(".safetensors") or low.endswith(".safetensors.index.json"):
        headers = read_safetensors_dir(p)
        cfg, qcfg, notes = _optional_configs(p.parent)
        return LocalArtefacts(str(p), "safetensors", cfg, qcfg, headers, census(headers, bits=_bits(cfg, qcfg)),
                              notes=tuple(notes))
    if low.endswith(".json"):
        cfg = load_json_file(p)
        qcfg = None
        if p.name == CONFIG_FILE:
            qcfg = sidecar_quant_config(p.parent)
        return LocalArtefacts(str(p), "config", cfg, qcfg, notes=tuple(_remote_code_notes(cfg)))
    raise SourceError("not a model file: expected a folder, config.json, .safetensors or .gguf", str(p))


def _read_folder(folder: Path) -> LocalArtefacts:
    if not (folder / CONFIG_FILE).exists() and not os.path.islink(folder / CONFIG_FILE):
        ggufs = sorted(e.name for e in folder.iterdir() if e.name.lower().endswith(".gguf") and e.is_file())
        firsts = [n for n in ggufs if "-of-" not in n or "-00001-of-" in n]
        models = [n for n in firsts if not n.lower().startswith("mmproj")]
        if len(models) == 1:
            return _read_gguf(folder / models[0])
        if models:
            raise SourceError("no config.json, and several GGUF files: name one of " + ", ".join(models[:8]),
                              str(folder))
        raise SourceError("no config.json in this folder (and no .gguf file); a model folder needs its "
                          "config.json", str(folder))
    cfg, qcfg, notes = _optional_configs(folder)
    files, _ = safetensors_files(folder)
    if not files:
        notes.append("no .safetensors files: sizes come from config.json")
        return LocalArtefacts(str(folder), "directory", cfg, qcfg, notes=tuple(notes))
    headers = read_safetensors_dir(folder)
    c = census(headers, bits=_bits(cfg, qcfg))
    return LocalArtefacts(str(folder), "directory", cfg, qcfg, headers, c, notes=tuple(notes) + c.notes)


def _optional_configs(folder: Path) -> tuple[dict | None, dict | None, list[str]]:
    cfg = qcfg = None
    notes: list[str] = []
    if (folder / CONFIG_FILE).exists() or os.path.islink(folder / CONFIG_FILE):
        cfg = load_json_file(folder / CONFIG_FILE)
        notes += _remote_code_notes(cfg)
    qcfg = sidecar_quant_config(folder)
    return cfg, qcfg, notes


def sidecar_quant_config(folder: Path, read=None) -> dict | None:
    """A quantization config kept beside config.json: quantize_config.json (old GPTQ/AWQ repos) or ModelOpt's
    hf_quant_config.json (turned into the quantization_config vLLM derives from it). ``read(name)`` returns a
    file's JSON object or None (default: from ``folder``)."""
    if read is None:
        def read(name: str) -> dict | None:
            f = folder / name
            return load_json_file(f, what=name.removesuffix(".json")) if f.exists() or os.path.islink(f) else None
    q = read(QUANTIZE_CONFIG_FILE)
    if q is not None:
        return q
    hq = read(HF_QUANT_CONFIG_FILE)
    return modelopt_quantization_config(hq) if hq is not None else None


def modelopt_quantization_config(hf_quant: dict) -> dict | None:
    """hf_quant_config.json (``{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", ...}}``)
    -> ``{"quant_method": "modelopt", "quant_algo": ..., "exclude_modules": [...], ...}``."""
    q = hf_quant.get("quantization")
    if not isinstance(q, dict):
        raise SourceError("expected a 'quantization' object", HF_QUANT_CONFIG_FILE)
    out = {k: v for k, v in q.items() if isinstance(k, str)}
    out["quant_method"] = "modelopt"
    return out


def _read_gguf(p: Path) -> LocalArtefacts:
    files = read_gguf_split(p)
    notes = []
    if split_count(files[0]) > 1:
        notes.append(f"split GGUF: {len(files)} parts read")
    return LocalArtefacts(str(p), "gguf", gguf_to_config(files), None, census=gguf_census(files), gguf=files,
                          notes=tuple(notes))


def _bits(cfg: dict | None, qcfg: dict | None) -> int | None:
    """The packed width of int weights, from quantize_config.json or config.json's quantization_config."""
    for source in (qcfg, (cfg or {}).get("quantization_config")):
        if isinstance(source, dict):
            bits = source.get("bits", source.get("w_bit"))
            if isinstance(bits, int) and not isinstance(bits, bool):
                return bits
            groups = source.get("config_groups")  # compressed-tensors
            if isinstance(groups, dict):
                for group in groups.values():
                    w = group.get("weights") if isinstance(group, dict) else None
                    if isinstance(w, dict) and isinstance(w.get("num_bits"), int):
                        return w["num_bits"]
    return None


def _remote_code_notes(cfg: dict) -> list[str]:
    if "auto_map" in cfg:
        return ["config.json names custom code (auto_map); vramplan reads the config only and never runs it"]
    return []
