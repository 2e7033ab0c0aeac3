"""Turn what a user points at into a LoadedModel: a local file or directory, a catalog entry, a Hub id."""

from __future__ import annotations

import os

from ..errors import InvalidModelSpec, SourceError, VramplanError
from .hf_config import parse_config


def _lm(**kw):
    from ..api import LoadedModel

    return LoadedModel(**kw)


def _read_json(path, what: str) -> dict:
    from ._safejson import CONFIG_MAX_BYTES, load_json_object

    try:
        size = path.stat().st_size
        if size > CONFIG_MAX_BYTES:
            raise SourceError(f"{what} is {size:,} bytes, more than the {CONFIG_MAX_BYTES:,}-byte limit", str(path))
        data = path.read_bytes()
    except OSError as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(exc.strerror or str(exc), str(path)) from None
    return load_json_object(data, name=str(path), what=what, constants=True)


def _parse(cfg: dict, name: str, where: str, quantize_config: dict | None = None):
    try:
        return parse_config(cfg, name, quantize_config)
    except InvalidModelSpec as exc:
        raise InvalidModelSpec(f"{where}: {exc}") from None


def load_local(path_text: str):
    """A config.json, a model folder (config + safetensors headers), a .safetensors file or index, or a .gguf."""
    from .local import read_model_dir

    if not os.path.lexists(path_text):
        raise SourceError("no such file or directory", path_text)
    art = read_model_dir(path_text)
    base = os.path.basename(os.path.normpath(art.path))
    name = os.path.basename(os.path.dirname(os.path.abspath(art.path))) if base == "config.json" else base
    messages = list(art.notes)
    if art.gguf:
        from .gguf import gguf_to_config

        gf = art.gguf[0]
        spec = _parse(gguf_to_config(art.gguf), name.removesuffix(".gguf"), path_text)
        total = sum(t.nbytes for f in art.gguf for t in f.tensors)
        by_type: dict[str, int] = {}
        for f in art.gguf:
            for t in f.tensors:
                by_type[t.ggml_type_name] = by_type.get(t.ggml_type_name, 0) + t.nbytes
        messages.append(f"weights from the GGUF tensor table: {total:,} bytes"
                        + (f" ({gf.file_type})" if gf.file_type else ""))
        return _lm(spec=spec, name=name.removesuffix(".gguf"), source="gguf", provenance=f"GGUF file {path_text}",
                   messages=tuple(messages), stored_weight_bytes=total, stored_by_dtype=tuple(sorted(by_type.items())),
                   gguf_ftype=gf.file_type, extra={"gguf": art.gguf[0], "gguf_parts": art.gguf})
    if art.config is None:
        raise SourceError("no config.json next to these weights: the architecture is unknown", path_text)
    spec = _parse(art.config, name, path_text, art.quantize_config)
    stored = by_dtype = None
    if art.census is not None:
        stored = art.census.total_bytes
        by_dtype = tuple(sorted(art.census.bytes_by_dtype.items()))
        messages.append(f"weights from safetensors headers: {stored:,} bytes in {art.census.files} file(s) "
                        f"(preferred over the config-derived figure)")
    kind = {"config": "file", "directory": "directory"}.get(art.kind, art.kind)
    return _lm(spec=spec, name=name, source=kind, provenance=f"{art.kind} {path_text}", messages=tuple(messages),
               stored_weight_bytes=stored, stored_by_dtype=by_dtype or (),
               extra={"census": art.census} if art.census is not None else None)


def load_catalog(entry):
    from ..catalog import models as catalog

    cfg = catalog.load_catalog_config(entry)
    qc = None
    if catalog.entry_file(entry, "quantize_config.json") or catalog.entry_file(entry, "hf_quant_config.json"):
        from pathlib import Path

        from .local import sidecar_quant_config

        def read(name: str) -> dict | None:
            path = catalog.entry_file(entry, name)
            return _read_json(Path(path), name) if path else None

        qc = sidecar_quant_config(Path("."), read)
    spec = _parse(cfg, entry.key, f"catalog entry {entry.key}", qc)
    return _lm(spec=spec, name=entry.key, source="catalog", hf_id=entry.hf_id,
               provenance=f"embedded catalog ({entry.provenance}; {entry.source})")


def load_hub(repo_id: str, revision: str | None = None, fallback=None):
    """The Hub when online (config + safetensors headers), else the library's cache, else the embedded catalog."""
    messages = []
    from . import hub

    ref = hub.parse_hub_gguf_ref(repo_id)
    if ref is not None:  # owner/repo/file.gguf: the GGUF header by range requests
        g = hub.fetch_hub_gguf(ref[0], ref[1], revision=revision)
        spec = _parse(g.config, ref[1].rsplit("/", 1)[-1].removesuffix(".gguf"), repo_id)
        ftype = g.files[0].file_type
        return _lm(spec=spec, name=repo_id, source="hub" if g.source == "hub" else "hub-cache", hf_id=ref[0],
                   provenance=f"GGUF {ref[1]} in Hugging Face {ref[0]}", messages=tuple(g.notes),
                   stored_weight_bytes=g.census.total_bytes, stored_by_dtype=tuple(sorted(g.census.bytes_by_dtype.items())),
                   gguf_ftype=ftype, extra={"gguf": g.files[0], "gguf_parts": g.files})
    try:
        art = hub.fetch_hub_files(repo_id, revision=revision)
    except SourceError as exc:
        art = None
        reason = getattr(exc, "reason", None)
        messages.append(f"Hub unavailable ({reason + ': ' if reason else ''}{exc})")
    if art is not None:
        spec = _parse(art.config, repo_id.split("/")[-1], f"{repo_id} config.json", art.quantize_config)
        stored = getattr(art, "stored_weight_bytes", None)
        used = getattr(art, "source", "hub")
        messages.append(f"read {repo_id} from the {'Hub' if used == 'hub' else 'local Hub cache'}")
        messages.extend(getattr(art, "notes", ()) or ())
        return _lm(spec=spec, name=repo_id, source="hub" if used == "hub" else "hub-cache", hf_id=repo_id,
                   provenance=f"Hugging Face {repo_id}@{revision or 'main'}", messages=tuple(messages),
                   stored_weight_bytes=stored)
    if fallback is None:
        from ..catalog import models as catalog

        fallback = catalog.find_model(repo_id)
        if fallback is None:
            detail = "; ".join(messages)
            raise SourceError(f"cannot read {repo_id!r} from the Hub or its cache, and it is not in the embedded "
                              f"catalog ({detail})")
    lm = load_catalog(fallback)
    return lm._replace(messages=tuple(messages) + (f"used the embedded catalog entry {fallback.key}",))


def env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
