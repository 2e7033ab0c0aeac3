"""Model names from web clients -> LoadedModel: catalog names, Hugging Face ids and uploaded config.json files.

Nothing here opens a path a client named: names that look like paths (or exist on disk) are refused, catalog names
come from the embedded catalog, Hub ids go to the Hub loader, and uploads (capped, JSON objects only) live in a
bounded in-memory LRU under the hash of their bytes. Nothing is written to disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from typing import Any

from ..errors import InvalidModelSpec, InvalidRequest, SourceError, UnknownName

UPLOAD_MAX_BYTES = 256 * 1024
"""An uploaded config.json may be at most 256 KiB (real ones are a few KiB)."""
UPLOAD_SLOTS = 64
"""Uploaded models kept in memory (least recently used dropped first)."""
MODEL_SLOTS = 128
"""Resolved catalog/Hub models kept in memory."""
UPLOAD_PREFIX = "upload:"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._\-]{0,95})?$")
_FILE_SUFFIXES = (".json", ".gguf", ".safetensors", ".bin", ".pt", ".pth", ".toml")
_UPLOAD_RE = re.compile(r"^upload:[0-9a-f]{16}$")
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._\-]+")


class _LRU:
    """A thread-safe bounded mapping; the least recently used entry goes first."""

    def __init__(self, slots: int):
        self.slots = slots
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: str, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.slots:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class Models:
    """Catalog names, Hub ids and uploads -> LoadedModel; nothing here ever opens a path a client named."""

    def __init__(self):
        self.uploads = _LRU(UPLOAD_SLOTS)
        self.resolved = _LRU(MODEL_SLOTS)

    @staticmethod
    def check_name(name: str, field: str = "model") -> str:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("a model name is required", field=field)
        name = name.strip()
        looks_like_path = (name[0] in "/\\~." or "\\" in name or ".." in name or "\x00" in name
                           or name.lower().endswith(_FILE_SUFFIXES))
        if looks_like_path or not _NAME_RE.match(name):
            raise InvalidRequest(f"{name[:80]!r} is not a catalog name or Hugging Face id (org/name); files on the "
                                 "server cannot be named, upload a config.json instead", field=field)
        try:
            on_disk = os.path.lexists(name)
        except (OSError, ValueError):
            on_disk = True
        if on_disk:
            raise InvalidRequest(f"{name!r} names a path on the server, which the API does not read; use a catalog "
                                 "name, a Hugging Face id or an upload", field=field)
        return name

    def resolve(self, name: str, field: str = "model"):
        if isinstance(name, str) and name.strip().startswith(UPLOAD_PREFIX):
            key = name.strip()
            if not _UPLOAD_RE.match(key):
                raise InvalidRequest(f"malformed upload id {key[:40]!r}", field=field)
            lm = self.uploads.get(key)
            if lm is None:
                raise UnknownName("uploaded model", key + " (uploads are kept in memory only; upload it again)")
            return lm
        name = self.check_name(name, field)
        cache_key = name.lower()
        lm = self.resolved.get(cache_key)
        if lm is not None:
            return lm
        from ..api import load_model
        from ..catalog import models as catalog

        if catalog.find_model(name) is not None:
            lm = load_model(name, source="catalog")
        elif "/" in name:
            lm = load_model(name, source="hub")
        else:
            catalog.resolve_model(name)  # raises UnknownName with suggestions
            lm = load_model(name, source="catalog")
        self.resolved.put(cache_key, lm)
        return lm

    def add_upload(self, data: bytes, filename: str | None = None) -> tuple[str, Any]:
        from ..api import LoadedModel
        from ..sources._safejson import load_json_object
        from ..sources.hf_config import parse_config

        if len(data) > UPLOAD_MAX_BYTES:
            raise InvalidRequest(f"config.json is {len(data):,} bytes; the limit is {UPLOAD_MAX_BYTES:,} bytes",
                                 field="file")
        if not data.strip():
            raise InvalidRequest("the upload is empty; send the text of a config.json", field="file")
        try:
            cfg = load_json_object(data, name="uploaded config.json", max_bytes=UPLOAD_MAX_BYTES,
                                   what="config.json", constants=True)
        except SourceError as exc:
            raise InvalidRequest(str(exc), field="file") from None
        digest = hashlib.sha256(data).hexdigest()[:16]
        key = UPLOAD_PREFIX + digest
        known = self.uploads.get(key)
        if known is not None:
            return key, known
        name = _upload_name(cfg, filename, digest)
        try:
            spec = parse_config(cfg, name)
        except InvalidModelSpec as exc:
            raise InvalidModelSpec(f"uploaded config.json: {exc}", field=getattr(exc, "field", None)) from None
        lm = LoadedModel(spec=spec, name=name, source="upload",
                         provenance=f"uploaded config.json (sha256 {hashlib.sha256(data).hexdigest()})")
        self.uploads.put(key, lm)
        return key, lm


def _upload_name(cfg: dict, filename: str | None, digest: str) -> str:
    for candidate in (cfg.get("_name_or_path"), filename):
        if isinstance(candidate, str) and candidate.strip():
            base = candidate.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
            base = re.sub(r"\.json$", "", base, flags=re.I)
            base = _SAFE_NAME_RE.sub("-", base).strip("-.")[:80]
            if base and base.lower() != "config":
                return base
    return f"uploaded-{digest[:8]}"
