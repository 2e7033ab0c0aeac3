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
    return load_json_object(data, name=str(path), what=what)


def _parse(cfg: dict, name: str, where: str, quantize_config: dict | None = None):
    try:
        return parse_config(cfg, name, quantize_config)
    except InvalidModelSpec as exc:
        raise InvalidModelSpec(f"{where}: {exc}") from None


def load_local(path_text: str):
    from pathlib import Path

    path = Path(path_text)
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise SourceError("no such file or directory", path_text) from None
    except (RuntimeError, OSError) as exc:  # symlink loops
        raise SourceError(f"cannot resolve path ({exc.__class__.__name__}: symlink loop?)", path_text) from None
    if real.is_dir():
        return _load_dir(real, path_text)
    if real.suffix.lower() == ".gguf":
        return _load_gguf(real, path_text)
    cfg = _read_json(real, "config")
    name = real.parent.name if real.name == "config.json" else real.stem
    qc = None
    qpath = real.parent / "quantize_config.json"
    if real.name == "config.json" and qpath.is_file():
        qc = _read_json(qpath, "quantize_config.json")
    spec = _parse(cfg, name, path_text, qc)
    return _lm(spec=spec, name=name, source="file", provenance=f"config file {path_text}")


def _load_dir(real, shown: str):
    cfg_path = real / "config.json"
    ggufs = sorted(real.glob("*.gguf"))
    if not cfg_path.is_file():
        if ggufs:
            return _load_gguf(ggufs[0], str(ggufs[0]))
        raise SourceError("directory has no config.json (and no .gguf file)", shown)
    cfg = _read_json(cfg_path, "config.json")
    qc = _read_json(real / "quantize_config.json", "quantize_config.json") \
        if (real / "quantize_config.json").is_file() else None
    spec = _parse(cfg, real.name, shown, qc)
    messages = []
    stored = None
    by_dtype: tuple = ()
    if any(real.glob("*.safetensors")):
        try:
            from . import safetensors as st

            census = st.census(st.read_safetensors_dir(real))
            stored = census.total_bytes
            by_dtype = tuple(sorted(census.bytes_by_dtype.items()))
            messages.append(f"weights from safetensors headers: {stored:,} bytes (preferred over the config-derived "
                            f"figure)")
        except VramplanError:
            raise
        except (AttributeError, ImportError):  # reader not available in this build
            pass
    return _lm(spec=spec, name=real.name, source="directory", provenance=f"model directory {shown}",
               messages=tuple(messages), stored_weight_bytes=stored, stored_by_dtype=by_dtype)


def _load_gguf(real, shown: str):
    from . import gguf as g

    gf = g.read_gguf(real)
    cfg = g.gguf_to_config(gf)
    spec = _parse(cfg, real.stem, shown)
    total = sum(t.nbytes for t in gf.tensors)
    ftype = None
    for mix in ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q8_0", "Q3_K_M", "Q3_K_L", "Q3_K_S", "Q2_K",
                "IQ4_XS", "F16", "BF16"):
        if mix.lower() in real.name.lower():
            ftype = mix
            break
    by_type: dict[str, int] = {}
    for t in gf.tensors:
        by_type[t.ggml_type_name] = by_type.get(t.ggml_type_name, 0) + t.nbytes
    return _lm(spec=spec, name=real.stem, source="gguf", provenance=f"GGUF file {shown}",
               messages=(f"weights from the GGUF tensor table: {total:,} bytes",), stored_weight_bytes=total,
               stored_by_dtype=tuple(sorted(by_type.items())), gguf_ftype=ftype, extra={"gguf": gf})


def load_catalog(entry):
    from ..catalog import models as catalog

    cfg = catalog.load_catalog_config(entry)
    qc = None
    qpath = catalog.entry_file(entry, "quantize_config.json")
    if qpath:
        from pathlib import Path

        qc = _read_json(Path(qpath), "quantize_config.json")
    spec = _parse(cfg, entry.key, f"catalog entry {entry.key}", qc)
    return _lm(spec=spec, name=entry.key, source="catalog", hf_id=entry.hf_id,
               provenance=f"embedded catalog ({entry.provenance}; {entry.source})")


def load_hub(repo_id: str, revision: str | None = None, fallback=None):
    """The Hub when online (config + safetensors headers), else the library's cache, else the embedded catalog."""
    messages = []
    try:
        from . import hub

        art = hub.fetch_hub_files(repo_id, revision=revision)
    except ImportError:
        art = None
        messages.append("huggingface_hub is not installed (pip install 'vramplan[hub]')")
    except SourceError as exc:
        art = None
        messages.append(f"Hub unavailable ({exc})")
    if art is not None:
        spec = _parse(art.config, repo_id.split("/")[-1], f"{repo_id} config.json", art.quantize_config)
        stored = getattr(art, "stored_weight_bytes", None)
        used = getattr(art, "source", "hub")
        messages.append(f"read {repo_id} from the {'Hub' if used == 'hub' else 'local Hub cache'}")
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
