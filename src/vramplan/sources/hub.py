"""The Hugging Face Hub (optional, online): config.json and the weights' headers, never the weights.

Everything goes through ``huggingface_hub`` (imported inside the functions, so vramplan runs without it):

* ``config.json`` and ``quantize_config.json`` with ``hf_hub_download``, so they land in, and come back from, the
  library's cache; their size is checked with a HEAD first (10 MiB cap) and they are parsed under the JSON caps.
* safetensors headers with HTTP range requests on the library's session (``hf_hub_url`` + ``build_hf_headers`` +
  ``Range``): the 8-byte length and the header of each shard, through the same strict parser as local files. A
  server that ignores ``Range`` is read only as far as the header and then hung up on.
* GGUF headers the same way, feeding the incremental parser (``fetch_hub_gguf``).

Settings are read when a function is called, not when the library was imported: ``HF_ENDPOINT`` (mirrors),
``HF_TOKEN`` (or the library's saved login; gated models need one), ``HF_HUB_OFFLINE`` (no network: the cache only),
``HF_HOME`` / ``HF_HUB_CACHE`` (where the cache is). When the Hub cannot be reached the cache answers, and the result
says so (``source`` = "cache"). When neither can, :class:`HubError` says why (``reason``), so the caller can fall
back to its embedded catalog and tell the user. Remote code (``trust_remote_code``/``auto_map``) is never run.
"""

from __future__ import annotations

import itertools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError
from ._safejson import CONFIG_MAX_BYTES
from .gguf import GGUFFile, gguf_census, gguf_to_config, parse_gguf, read_gguf_split, split_count, split_names
from .local import _bits, _remote_code_notes, load_json_file, sidecar_quant_config
from .safetensors import (INDEX_FILE, MAX_INDEX_BYTES, SINGLE_FILE, Census, SafetensorsHeader, census,
                          check_index_matches, header_length, parse_safetensors_header, read_index,
                          read_safetensors)

FIRST_READ_BYTES = 64 << 10  # one request usually covers the length prefix and the whole header
TIMEOUT_S = 20.0
MAX_PARALLEL = 8

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9_.-]{1,96})?$")


class HubError(SourceError):
    """The Hub (and the cache) could not give the model. ``reason`` is one of: 'offline' (offline mode and not
    cached), 'unreachable' (network or server error and not cached), 'gated', 'not-found' (no such repo or file),
    'revision-not-found', 'no-config' (the repo has no config.json), 'invalid' (a malformed id or revision),
    'missing-library' (huggingface_hub is not installed). Every one lets the caller fall back to its catalog."""

    def __init__(self, reason: str, message: str, repo_id: str | None = None):
        self.reason = reason
        super().__init__(message, repo_id)


@dataclass(frozen=True, slots=True)
class HubArtefacts:
    repo_id: str
    revision: str | None  # as asked (None: the default branch)
    commit: str | None  # the commit the files came from, when known
    source: str  # "hub" or "cache"
    endpoint: str
    config: dict
    quantize_config: dict | None = None
    headers: tuple[SafetensorsHeader, ...] = ()
    census: Census | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def stored_weight_bytes(self) -> int | None:
        """Tensor bytes from the safetensors headers (exact for the checkpoint), None without headers."""
        return self.census.total_bytes if self.census else None

    @property
    def stored_by_dtype(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.census.bytes_by_dtype.items())) if self.census else ()


@dataclass(frozen=True, slots=True)
class HubGGUF:
    repo_id: str
    filename: str
    commit: str | None
    source: str  # "hub" or "cache"
    files: tuple[GGUFFile, ...]
    config: dict
    census: Census
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class HubSettings:
    endpoint: str
    offline: bool
    cache_dir: str
    token: str | bool | None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_settings(token: str | None = None, *, endpoint: str | None = None, offline: bool | None = None,
                 cache_dir: str | os.PathLike | None = None) -> HubSettings:
    """The effective endpoint / offline flag / cache folder, from the arguments, then the environment now, then
    what ``huggingface_hub.constants`` read at import."""
    hf = _import_hub()
    const = hf.constants
    env = os.environ
    if endpoint is None:
        endpoint = env.get("HF_ENDPOINT") or const.ENDPOINT
    if offline is None:
        offline = (_truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE"))
                   or bool(const.HF_HUB_OFFLINE))
    if cache_dir is None:
        if env.get("HF_HUB_CACHE"):
            cache_dir = env["HF_HUB_CACHE"]
        elif env.get("HF_HOME"):
            cache_dir = os.path.join(os.path.expanduser(env["HF_HOME"]), "hub")
        else:
            cache_dir = const.HF_HUB_CACHE
    return HubSettings(endpoint.rstrip("/"), bool(offline), str(cache_dir), token)


def _import_hub():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401
    except ImportError:
        raise HubError("missing-library", "reading from the Hugging Face Hub needs the huggingface_hub package "
                       "(pip install 'vramplan[hub]')") from None
    return huggingface_hub


def check_repo_id(repo_id: str, revision: str | None = None) -> None:
    if not isinstance(repo_id, str) or not _REPO_RE.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise HubError("invalid", f"{repo_id!r} is not a Hub model id (expected 'owner/name')")
    if revision is not None and (not isinstance(revision, str) or not revision or len(revision) > 256
                                 or any(c.isspace() for c in revision) or ".." in revision):
        raise HubError("invalid", f"{revision!r} is not a revision (a branch, tag or commit)", repo_id)


def parse_hub_gguf_ref(text: str) -> tuple[str, str] | None:
    """'owner/repo/file.gguf' (or a path inside the repo) -> (repo_id, filename); None if it is not one."""
    parts = text.split("/")
    if len(parts) < 3 or not parts[-1].lower().endswith(".gguf") or any(not p or p == ".." for p in parts):
        return None
    return "/".join(parts[:2]), "/".join(parts[2:])


# --------------------------------------------------------------------------------------------------------------
# error classification
# --------------------------------------------------------------------------------------------------------------
def _network_errors() -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod, attr in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                      ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            out.append(getattr(__import__(mod), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(out)


def _classify(exc: BaseException, repo_id: str, revision: str | None, filename: str) -> HubError | None:
    """A library error -> HubError for the fatal kinds; None for 'the Hub is unreachable, try the cache'."""
    from huggingface_hub import errors as E

    if isinstance(exc, E.GatedRepoError):
        return HubError("gated", f"{repo_id} is a gated model: accept its licence on the Hub and set HF_TOKEN "
                        "(or log in with the huggingface_hub CLI)", repo_id)
    if isinstance(exc, E.RepositoryNotFoundError):
        return HubError("not-found", f"{repo_id} is not on the Hub, or it is private/gated and no valid token was "
                        "sent (set HF_TOKEN)", repo_id)
    if isinstance(exc, E.RevisionNotFoundError):
        return HubError("revision-not-found", f"{repo_id} has no revision {revision!r}", repo_id)
    if isinstance(exc, E.EntryNotFoundError):
        if filename == "config.json":
            return HubError("no-config", f"{repo_id} has no config.json (for a GGUF repo, name the file: "
                            f"{repo_id}/<file>.gguf)", repo_id)
        return HubError("not-found", f"{repo_id} has no {filename}", repo_id)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, E.HfHubHTTPError) and status is not None and status < 500 and status != 429:
        return HubError("unreachable", f"the Hub answered {status} for {filename} of {repo_id}", repo_id)
    return None  # network trouble, offline mode, a server error: the cache may still answer


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------------------
# range reads on the library's session
# --------------------------------------------------------------------------------------------------------------
class RangeHTTPError(HubError):
    """A range request answered with an HTTP error."""


_ERROR_CODES = {"GatedRepo": "gated", "RepoNotFound": "not-found", "RevisionNotFound": "revision-not-found",
                "EntryNotFound": "not-found"}


class _RangeReader:
    """Bounded reads of one remote file: ``read(offset, n)`` sends ``Range: bytes=offset-(offset+n-1)`` and reads at
    most n bytes of the answer even if the server ignores the range (it then skips offset bytes, and hangs up)."""

    def __init__(self, url: str, headers: dict, name: str):
        from huggingface_hub.utils import get_session

        self.url, self.headers, self.name = url, headers, name
        self.session = get_session()
        self.file_size: int | None = None
        self.requests = 0
        self.bytes_received = 0

    def read(self, offset: int, n: int) -> bytes:
        if n <= 0:
            return b""
        headers = {**self.headers, "Range": f"bytes={offset}-{offset + n - 1}", "Accept-Encoding": "identity"}
        self.requests += 1
        if callable(getattr(self.session, "stream", None)):  # httpx-style client (huggingface_hub >= 1.0)
            with self.session.stream("GET", self.url, headers=headers, timeout=TIMEOUT_S) as resp:
                return self._consume(resp, offset, n, resp.iter_bytes())
        resp = self.session.get(self.url, headers=headers, timeout=TIMEOUT_S, stream=True)  # requests (< 1.0)
        try:
            return self._consume(resp, offset, n, resp.iter_content(chunk_size=64 << 10))
        finally:
            resp.close()

    def _consume(self, resp, offset: int, n: int, chunks) -> bytes:
        status = resp.status_code
        if status >= 400:  # classified from the status and the Hub's X-Error-Code; the body is not read
            code = resp.headers.get("X-Error-Code", "")
            reason = _ERROR_CODES.get(code) or ("not-found" if status in (401, 404) else "unreachable")
            raise RangeHTTPError(reason, f"HTTP {status}{' ' + code if code else ''} reading {self.name}")
        if status == 206:
            total = _content_range_total(resp.headers.get("Content-Range"))
            if total is not None:
                self.file_size = total
            data = _read_at_most(chunks, n)
        elif status == 200:  # range ignored: the whole file follows; take only what was asked
            length = resp.headers.get("Content-Length")
            if length and length.isdigit():
                self.file_size = int(length)
            rest = _skip(chunks, offset)
            data = _read_at_most(itertools.chain([rest], chunks), n)
        else:
            raise SourceError(f"unexpected HTTP {status} for a range request", self.name)
        self.bytes_received += len(data)
        return data


def _read_at_most(chunks, n: int) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) >= n:
            break
    return bytes(out[:n])


def _skip(chunks, n: int) -> bytes:
    """Drop the first n bytes of a stream (a server that ignored Range); return what the last chunk held past them.
    Only used for offsets inside a header, so what is dropped is header bytes already read."""
    left = n
    while left > 0:
        chunk = next(chunks, None)
        if chunk is None:
            return b""
        if len(chunk) > left:
            return bytes(chunk[left:])
        left -= len(chunk)
    return b""


def _content_range_total(value: str | None) -> int | None:
    m = re.match(r"^\s*bytes\s+\d+-\d+/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _remote_safetensors_header(url: str, headers: dict, name: str) -> SafetensorsHeader:
    reader = _RangeReader(url, headers, name)
    first = reader.read(0, FIRST_READ_BYTES)
    size = reader.file_size
    if size is None:
        raise SourceError("the server did not say how large the file is (no Content-Range)", name)
    n = header_length(first, file_size=size, name=name)
    if len(first) < 8 + n:
        first += reader.read(len(first), 8 + n - len(first))
    return parse_safetensors_header(first, file_size=size, name=name)


# --------------------------------------------------------------------------------------------------------------
# the public entry points
# --------------------------------------------------------------------------------------------------------------
def fetch_hub_files(repo_id: str, revision: str | None = None, token: str | None = None, *,
                    endpoint: str | None = None, offline: bool | None = None,
                    cache_dir: str | os.PathLike | None = None, headers: bool = True) -> HubArtefacts:
    """config.json (+ quantize_config.json) and the safetensors census of a Hub model, from the Hub or the cache.

    Raises :class:`HubError` when neither can give config.json; its ``reason`` tells why.
    """
    check_repo_id(repo_id, revision)
    s = hub_settings(token, endpoint=endpoint, offline=offline, cache_dir=cache_dir)
    if s.offline:
        return _from_cache(repo_id, revision, s, "offline mode (HF_HUB_OFFLINE) is on", headers)
    try:
        return _from_hub(repo_id, revision, s, headers)
    except HubError:
        raise
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; anything unexpected is re-raised
        fatal = _classify(exc, repo_id, revision, "config.json")
        if fatal is not None:
            raise fatal from None
        if not isinstance(exc, _fallback_errors()):
            raise
        return _from_cache(repo_id, revision, s, f"the Hub at {s.endpoint} could not be reached "
                           f"({_describe(exc)})", headers)


def _fallback_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors as E

    return (E.OfflineModeIsEnabled, E.FileMetadataError, E.HfHubHTTPError) + _network_errors()


def _head(hf, s: HubSettings, repo_id: str, filename: str, revision: str | None):
    url = hf.hf_hub_url(repo_id, filename, revision=revision, endpoint=s.endpoint)
    return hf.get_hf_file_metadata(url, token=s.token, timeout=TIMEOUT_S)


def _exists(hf, s: HubSettings, repo_id: str, filename: str, revision: str | None):
    from huggingface_hub import errors as E

    try:
        return _head(hf, s, repo_id, filename, revision)
    except E.EntryNotFoundError:
        return None


def _download_json(hf, s: HubSettings, repo_id: str, filename: str, revision: str | None, meta, cap: int,
                   what: str) -> dict:
    if meta.size is not None and meta.size > cap:
        raise SourceError(f"{what} is {meta.size:,} bytes, more than the {cap:,}-byte limit", f"{repo_id}/{filename}")
    path = hf.hf_hub_download(repo_id, filename, revision=revision, token=s.token, endpoint=s.endpoint,
                              cache_dir=s.cache_dir)
    return load_json_file(path, what=what, max_bytes=cap)


def _from_hub(repo_id: str, revision: str | None, s: HubSettings, want_headers: bool) -> HubArtefacts:
    hf = _import_hub()
    meta = _head(hf, s, repo_id, "config.json", revision)
    commit = meta.commit_hash
    cfg = _download_json(hf, s, repo_id, "config.json", revision, meta, CONFIG_MAX_BYTES, "config")
    pinned = commit or revision  # later files from the same commit as config.json
    notes = _remote_code_notes(cfg)
    def side(name: str) -> dict | None:
        m = _exists(hf, s, repo_id, name, pinned)
        return None if m is None else _download_json(hf, s, repo_id, name, pinned, m, CONFIG_MAX_BYTES,
                                                      name.removesuffix(".json"))

    qcfg = sidecar_quant_config(Path("."), side)
    hdrs: tuple[SafetensorsHeader, ...] = ()
    cen = None
    if want_headers:
        try:
            hdrs = _hub_headers(hf, s, repo_id, pinned)
        except RangeHTTPError as exc:
            notes.append(f"the safetensors headers could not be read ({exc}): sizes come from config.json")
        except _network_errors() as exc:
            notes.append(f"the safetensors headers could not be read ({_describe(exc)}): sizes come from "
                         "config.json")
        if hdrs:
            cen = census(hdrs, bits=_bits(cfg, qcfg))
            notes += list(cen.notes)
        else:
            notes.append("no safetensors weights in the repo: sizes come from config.json")
    return HubArtefacts(repo_id, revision, commit, "hub", s.endpoint, cfg, qcfg, hdrs, cen, tuple(notes))


def _hub_headers(hf, s: HubSettings, repo_id: str, revision: str | None) -> tuple[SafetensorsHeader, ...]:
    from huggingface_hub.utils import build_hf_headers

    imeta = _exists(hf, s, repo_id, INDEX_FILE, revision)
    wmap = None
    if imeta is not None:
        if imeta.size is not None and imeta.size > MAX_INDEX_BYTES:
            raise SourceError(f"safetensors index is {imeta.size:,} bytes, over the limit", f"{repo_id}/{INDEX_FILE}")
        path = hf.hf_hub_download(repo_id, INDEX_FILE, revision=revision, token=s.token, endpoint=s.endpoint,
                                  cache_dir=s.cache_dir)
        wmap, _ = read_index(path)
        files = sorted(set(wmap.values()))
    elif _exists(hf, s, repo_id, SINGLE_FILE, revision) is not None:
        files = [SINGLE_FILE]
    else:
        return ()
    http_headers = build_hf_headers(token=s.token)

    def one(filename: str) -> SafetensorsHeader:
        url = hf.hf_hub_url(repo_id, filename, revision=revision, endpoint=s.endpoint)
        return _remote_safetensors_header(url, http_headers, filename)

    if len(files) == 1:
        out = [one(files[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(files))) as pool:
            out = list(pool.map(one, files))
    if wmap is not None:
        check_index_matches(wmap, out, f"{repo_id}/{INDEX_FILE}")
    return tuple(out)


def _from_cache(repo_id: str, revision: str | None, s: HubSettings, why: str, want_headers: bool) -> HubArtefacts:
    hf = _import_hub()
    reason = "offline" if s.offline else "unreachable"

    def cached(filename: str) -> str | None:
        path = hf.try_to_load_from_cache(repo_id, filename, cache_dir=s.cache_dir, revision=revision)
        return path if isinstance(path, str) else None

    cfg_path = cached("config.json")
    if cfg_path is None:
        raise HubError(reason, f"{why}, and {repo_id}{'@' + revision if revision else ''} is not in the "
                       f"Hugging Face cache ({s.cache_dir})", repo_id)
    cfg = load_json_file(cfg_path)
    commit = Path(cfg_path).parent.name
    def side(name: str) -> dict | None:
        path = cached(name)
        return load_json_file(path, what=name.removesuffix(".json")) if path else None

    qcfg = sidecar_quant_config(Path("."), side)
    notes = [f"{why}: read {repo_id} from the Hugging Face cache"] + _remote_code_notes(cfg)
    hdrs: tuple[SafetensorsHeader, ...] = ()
    cen = None
    if want_headers:
        hdrs = _cached_headers(cached)
        if hdrs:
            cen = census(hdrs, bits=_bits(cfg, qcfg))
            notes += list(cen.notes)
        else:
            notes.append("the weights are not in the cache: sizes come from config.json")
    return HubArtefacts(repo_id, revision, commit, "cache", s.endpoint, cfg, qcfg, hdrs, cen, tuple(notes))


def _cached_headers(cached) -> tuple[SafetensorsHeader, ...]:
    index = cached(INDEX_FILE)
    if index:
        wmap, _ = read_index(index)
        paths = [cached(f) for f in sorted(set(wmap.values()))]
        if not all(paths):
            return ()
        hdrs = tuple(read_safetensors(p) for p in paths)
        check_index_matches(wmap, hdrs, index)
        return hdrs
    single = cached(SINGLE_FILE)
    return (read_safetensors(single),) if single else ()


def fetch_hub_gguf(repo_id: str, filename: str, revision: str | None = None, token: str | None = None, *,
                   endpoint: str | None = None, offline: bool | None = None,
                   cache_dir: str | os.PathLike | None = None) -> HubGGUF:
    """The header of a GGUF file in a Hub repo (and of the other parts of a split set), by range requests."""
    check_repo_id(repo_id, revision)
    if not filename.lower().endswith(".gguf") or ".." in filename.split("/") or filename.startswith("/"):
        raise HubError("invalid", f"{filename!r} is not a .gguf file name inside the repo", repo_id)
    s = hub_settings(token, endpoint=endpoint, offline=offline, cache_dir=cache_dir)
    hf = _import_hub()
    why = "offline mode (HF_HUB_OFFLINE) is on"
    if not s.offline:
        try:
            return _gguf_from_hub(hf, s, repo_id, filename, revision)
        except (HubError, SourceError):
            raise
        except Exception as exc:  # noqa: BLE001
            fatal = _classify(exc, repo_id, revision, filename)
            if fatal is not None:
                raise fatal from None
            if not isinstance(exc, _fallback_errors()):
                raise
            why = f"the Hub at {s.endpoint} could not be reached ({_describe(exc)})"
    path = hf.try_to_load_from_cache(repo_id, filename, cache_dir=s.cache_dir, revision=revision)
    if not isinstance(path, str):
        raise HubError("offline" if s.offline else "unreachable",
                       f"{why}, and {repo_id}/{filename} is not in the Hugging Face cache", repo_id)
    files = read_gguf_split(path)
    return HubGGUF(repo_id, filename, Path(path).parent.name, "cache", files, gguf_to_config(files),
                   gguf_census(files), (f"{why}: read {filename} from the Hugging Face cache",))


def _gguf_from_hub(hf, s: HubSettings, repo_id: str, filename: str, revision: str | None) -> HubGGUF:
    from huggingface_hub.utils import build_hf_headers

    meta = _head(hf, s, repo_id, filename, revision)
    commit = meta.commit_hash
    pinned = commit or revision
    http_headers = build_hf_headers(token=s.token)

    def one(fname: str, size: int | None) -> GGUFFile:
        url = hf.hf_hub_url(repo_id, fname, revision=pinned, endpoint=s.endpoint)
        if size is None:
            size = _head(hf, s, repo_id, fname, pinned).size
        if size is None:
            raise SourceError("the Hub did not say how large the file is", fname)
        reader = _RangeReader(url, http_headers, fname)
        return parse_gguf(reader.read, size, name=fname, chunk=256 << 10)

    first = one(filename, meta.size)
    files = [first]
    count = split_count(first)
    if count > 1:
        folder, _, base = filename.rpartition("/")
        files = []
        for i, fname in enumerate(split_names(base, count)):
            full = f"{folder}/{fname}" if folder else fname
            part = first if full == filename else one(full, None)
            if part.metadata.get("split.no", i) != i:
                raise SourceError(f"split.no is {part.metadata.get('split.no')!r}, expected {i}", full)
            files.append(part)
    files_t = tuple(files)
    return HubGGUF(repo_id, filename, commit, "hub", files_t, gguf_to_config(files_t), gguf_census(files_t))
