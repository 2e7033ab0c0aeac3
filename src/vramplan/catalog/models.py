"""The embedded offline model catalog: HF ``config.json`` files shipped with vramplan.

Data lives next to this module, in ``catalog/models/``:

    index.json                      {"model": [...]}: one object per entry (key, hf_id, path, aliases, provenance,
                                    source, family, notes)
    <org>/<name>/config.json        the model's config (verbatim copy, or built from published facts)
    <org>/<name>/quantize_config.json, model.safetensors.index.json   where the source had them

A model is found by its short key ("llama-3.1-70b"), one of its aliases ("llama3.1-70b"), its HF id
("meta-llama/Llama-3.1-70B") or the last part of that id ("Llama-3.1-70B"), all case-insensitively.
"org/alias" is accepted when org is the entry's own HF organisation ("meta-llama/Llama-3.1-70B-Instruct").

Standard library only; parsing a config into a model spec is done elsewhere (sources.hf_config).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from vramplan import errors
from vramplan.core.records import record

CATALOG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")  # os.path: pathlib costs start-up
INDEX_PATH = os.path.join(CATALOG_DIR, "index.json")

PROVENANCES = ("verbatim", "verbatim-whitespace-edited", "built-from-published-facts")

#: file names an entry directory may hold besides config.json
EXTRA_FILES = ("quantize_config.json", "model.safetensors.index.json", "hf_quant_config.json")

_FIELDS = ("key", "hf_id", "path", "aliases", "provenance", "source", "family", "notes")


@record
class CatalogEntry:
    key: str
    hf_id: str
    path: str
    aliases: tuple[str, ...]
    provenance: str
    source: str
    family: str
    notes: str

    @property
    def org(self) -> str:
        """The HF organisation part of hf_id ("" when the id has none)."""
        return self.hf_id.rsplit("/", 1)[0] if "/" in self.hf_id else ""

    @property
    def hf_name(self) -> str:
        """The last path part of hf_id ("Llama-3.1-70B")."""
        return self.hf_id.rsplit("/", 1)[-1]

    @property
    def built(self) -> bool:
        """True when config.json was assembled from published facts rather than copied."""
        return self.provenance == "built-from-published-facts"

    def names(self) -> tuple[str, ...]:
        """Every spelling that finds this entry (key, aliases, hf id, hf id's last part)."""
        return (self.key, *self.aliases, self.hf_id, self.hf_name)


def _bad_index(message: str) -> errors.SourceError:
    return errors.SourceError(message, str(INDEX_PATH))


def _entry_from_table(i: int, table: dict) -> CatalogEntry:
    for name in _FIELDS:
        if name not in table:
            raise _bad_index(f"model #{i + 1} has no '{name}'")
    aliases = table["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise _bad_index(f"model '{table['key']}': aliases must be a list of non-empty strings")
    for name in _FIELDS:
        if name != "aliases" and not isinstance(table[name], str):
            raise _bad_index(f"model #{i + 1}: '{name}' must be a string")
    if table["provenance"] not in PROVENANCES:
        raise _bad_index(f"model '{table['key']}': unknown provenance {table['provenance']!r}")
    if table["key"] != table["key"].lower():
        raise _bad_index(f"model key {table['key']!r} must be lowercase")
    return CatalogEntry(
        key=table["key"],
        hf_id=table["hf_id"],
        path=table["path"],
        aliases=tuple(aliases),
        provenance=table["provenance"],
        source=table["source"],
        family=table["family"],
        notes=table["notes"],
    )


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[CatalogEntry, ...], dict[str, CatalogEntry]]:
    try:
        with open(INDEX_PATH, "rb") as fh:
            data = json.loads(fh.read())
    except OSError as exc:
        raise errors.SourceError(f"cannot read the model catalog: {exc.strerror or exc}", str(INDEX_PATH)) from exc
    except ValueError as exc:
        raise _bad_index(f"not valid JSON: {exc}") from exc
    tables = data.get("model")
    if not isinstance(tables, list) or not tables:
        raise _bad_index("no 'model' list")
    entries = tuple(_entry_from_table(i, t) for i, t in enumerate(tables))
    lookup: dict[str, CatalogEntry] = {}
    for entry in entries:
        for name in entry.names():
            low = name.lower()
            other = lookup.get(low)
            if other is not None and other is not entry:
                raise _bad_index(f"name {name!r} is used by both '{other.key}' and '{entry.key}'")
            lookup[low] = entry
    return entries, lookup


def list_models() -> list[CatalogEntry]:
    """Every catalog entry, in index order."""
    return list(_load()[0])


def find_model(name: str) -> CatalogEntry | None:
    """The entry whose key, alias, HF id or HF id's last part equals ``name`` (case-insensitive), or None."""
    if not isinstance(name, str):
        return None
    low = name.strip().lower()
    if not low:
        return None
    _entries, lookup = _load()
    hit = lookup.get(low)
    if hit is not None:
        return hit
    if "/" in low:
        org, _, rest = low.rpartition("/")
        hit = lookup.get(rest)
        if hit is not None and hit.org.lower() == org:
            return hit
    return None


def _suggestions(name: str, n: int = 3) -> list[str]:
    entries, _lookup = _load()
    by_name: dict[str, CatalogEntry] = {}
    for entry in entries:
        for spelling in (entry.key, *entry.aliases, entry.hf_name):
            by_name.setdefault(spelling.lower(), entry)
    query = name.strip()
    if "/" in query:
        query = query.rsplit("/", 1)[-1]
    out: list[str] = []
    for match in errors.suggest(query, list(by_name), n=3 * n):
        key = by_name[match.lower()].key
        if key not in out:
            out.append(key)
        if len(out) == n:
            break
    return out


def resolve_model(name: str) -> CatalogEntry:
    """Like find_model, but an unknown name raises errors.UnknownName with close matches."""
    entry = find_model(name)
    if entry is None:
        raise errors.UnknownName("model", str(name), _suggestions(str(name)))
    return entry


def entry_dir(entry: CatalogEntry):
    """The directory holding the entry's files (a pathlib.Path)."""
    from pathlib import Path

    return Path(CATALOG_DIR).joinpath(*entry.path.split("/"))


def entry_file(entry: CatalogEntry, name: str) -> str | None:
    """The path of one of the entry's files, or None when the entry has no such file."""
    p = os.path.join(CATALOG_DIR, *entry.path.split("/"), name)
    return p if os.path.isfile(p) else None


def entry_files(entry: CatalogEntry) -> dict:
    """Paths (pathlib.Path) of the entry's files that exist, by file name: config.json, and where present
    quantize_config.json and model.safetensors.index.json."""
    from pathlib import Path

    out = {}
    for name in ("config.json", *EXTRA_FILES):
        p = entry_file(entry, name)
        if p:
            out[name] = Path(p)
    return out


def load_catalog_config(entry: CatalogEntry) -> dict:
    """The entry's parsed config.json."""
    path = os.path.join(CATALOG_DIR, *entry.path.split("/"), "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise errors.SourceError(f"cannot read the catalog config of '{entry.key}': {exc.strerror or exc}", str(path)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.SourceError(f"catalog config of '{entry.key}' is not valid JSON: {exc}", str(path)) from exc
    if not isinstance(data, dict):
        raise errors.SourceError(f"catalog config of '{entry.key}' is not a JSON object", str(path))
    return data


__all__ = [
    "CATALOG_DIR",
    "CatalogEntry",
    "entry_dir",
    "entry_file",
    "entry_files",
    "find_model",
    "list_models",
    "load_catalog_config",
    "resolve_model",
]
