"""GGUF headers -> metadata and an exact tensor inventory, read incrementally (a local file or HTTP ranges).

Format (ggml-org/ggml ``docs/gguf.md``, versions 2 and 3): magic ``GGUF``, uint32 version, uint64 tensor count,
uint64 key/value count; the key/values (string key, uint32 value type, value); one record per tensor (string name,
uint32 n_dims, n_dims x uint64 ne, uint32 ggml type, uint64 offset relative to the data section); padding to
``general.alignment`` (default 32); the data section. Strings are a uint64 length and UTF-8 bytes. ``ne[0]`` is the
innermost (contiguous) dimension, so ``token_embd.weight`` has shape ``(n_embd, n_vocab)`` here.

:func:`parse_gguf` is pure: it takes ``read(offset, size) -> bytes`` and the file size, and pulls only the header
through it, in growing chunks, with caps on every length it is told (strings, arrays, tensor and key counts against
the bytes left, n_dims <= 4, known ggml types, data inside the file). :func:`read_gguf` reads a local file,
:func:`read_gguf_split` a ``-00001-of-0000N.gguf`` set. Tensor sizes come from ``catalog/ggml_types.toml``.
:func:`gguf_to_config` maps the metadata to an HF-style ``config.json`` dict for ``sources.hf_config``.
"""

from __future__ import annotations

import os
import re
import struct
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from math import prod
from pathlib import Path
from typing import Callable, Sequence

from ..errors import SourceError

MAGIC = b"GGUF"
MAX_DIMS = 4  # GGML_MAX_DIMS
DEFAULT_ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT
MAX_STRING_BYTES = 16 << 20  # chat templates are tens of KiB
MAX_NAME_BYTES = 1024  # keys and tensor names (ggml itself caps tensor names at 63 bytes)
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 20
KEEP_ARRAY_ITEMS = 1 << 16  # larger arrays (token lists, merges, scores) are kept as a count only
MAX_ARRAY_ITEMS = 1 << 24  # the largest real arrays (BPE merges, 262k-token vocabularies) are far below this
MAX_CHUNK = 4 << 20  # chunks double up to this; a remote header costs a handful of range requests

Reader = Callable[[int, int], bytes]

# value types: id -> (name, struct code or None, size)
_VTYPES: dict[int, tuple[str, str | None, int]] = {
    0: ("UINT8", "B", 1), 1: ("INT8", "b", 1), 2: ("UINT16", "H", 2), 3: ("INT16", "h", 2),
    4: ("UINT32", "I", 4), 5: ("INT32", "i", 4), 6: ("FLOAT32", "f", 4), 7: ("BOOL", "?", 1),
    8: ("STRING", None, 8), 9: ("ARRAY", None, 12), 10: ("UINT64", "Q", 8), 11: ("INT64", "q", 8),
    12: ("FLOAT64", "d", 8),
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True, slots=True)
class GGMLType:
    name: str
    id: int
    block_elems: int
    block_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return self.block_bytes * 8 / self.block_elems


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[int, GGMLType], dict[int, str]]:
    text = resources.files("vramplan.catalog").joinpath("ggml_types.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    types = {row["id"]: GGMLType(name, row["id"], row["block_elems"], row["block_bytes"])
             for name, row in data["types"].items()}
    ftypes = {int(k): v for k, v in data["file_types"].items()}
    return types, ftypes


def ggml_types() -> dict[str, GGMLType]:
    """Every known ggml tensor type by name (F32, Q4_K, ...), from catalog/ggml_types.toml."""
    return {t.name: t for t in _catalog()[0].values()}


def file_type_name(file_type: int) -> str | None:
    """``general.file_type`` -> the quantize mix name (15 -> 'Q4_K_M'), None if unknown."""
    return _catalog()[1].get(file_type)


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """A metadata array too long to keep (token lists, merges): its element type and length only."""

    type_name: str
    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    name: str
    ggml_type_name: str
    shape: tuple[int, ...]  # GGUF order: ne[0] (innermost) first
    nbytes: int
    offset: int  # from the start of the data section

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def shape_rowmajor(self) -> tuple[int, ...]:
        """PyTorch order, (out_features, in_features) for a linear."""
        return tuple(reversed(self.shape))


@dataclass(frozen=True, slots=True)
class GGUFFile:
    name: str
    version: int
    metadata: dict
    tensors: tuple[GGUFTensor, ...]
    tensor_data_offset: int
    alignment: int
    file_size: int
    big_endian: bool = False

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else ""

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def file_type(self) -> str | None:
        ft = self.metadata.get("general.file_type")
        return file_type_name(ft) if isinstance(ft, int) and not isinstance(ft, bool) else None


# --------------------------------------------------------------------------------------------------------------
# incremental reading
# --------------------------------------------------------------------------------------------------------------
class _Cursor:
    """Sequential reads over ``read(offset, size)``, buffered in growing chunks, never past ``file_size``."""

    def __init__(self, read: Reader, file_size: int, name: str, chunk: int):
        self.read, self.size, self.name = read, file_size, name
        self.chunk = max(64, chunk)
        self.pos = 0
        self.buf = b""
        self.buf_start = 0
        self.bytes_read = 0
        self.big = False

    def remaining(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise SourceError(f"truncated: {what} needs {n:,} bytes at offset {self.pos:,}, the file has "
                              f"{self.size - self.pos:,} left", self.name)
        lo = self.pos - self.buf_start
        if lo + n > len(self.buf):
            keep = self.buf[lo:]
            want = max(n - len(keep), self.chunk)
            want = min(want, self.size - (self.pos + len(keep)))
            got = self._fetch(self.pos + len(keep), want)
            self.buf, self.buf_start, lo = keep + got, self.pos, 0
            if len(self.buf) < n:
                raise SourceError(f"truncated: {what} needs {n:,} bytes at offset {self.pos:,}, only "
                                  f"{len(self.buf):,} could be read", self.name)
            self.chunk = min(self.chunk * 2, MAX_CHUNK)
        out = self.buf[lo:lo + n]
        self.pos += n
        return out

    def _fetch(self, offset: int, size: int) -> bytes:
        try:
            data = self.read(offset, size)
        except SourceError:
            raise
        except OSError as exc:
            raise SourceError(f"cannot read {size:,} bytes at offset {offset:,}: {exc}", self.name) from None
        data = bytes(data)
        if len(data) > size:
            data = data[:size]
        self.bytes_read += len(data)
        return data

    def unpack(self, code: str, size: int, what: str):
        return struct.unpack(("<" if not self.big else ">") + code, self.take(size, what))[0]

    def u32(self, what: str) -> int:
        return self.unpack("I", 4, what)

    def u64(self, what: str) -> int:
        return self.unpack("Q", 8, what)

    def string_len(self, what: str, cap: int) -> int:
        n = self.u64(what)
        if n > cap or n > self.remaining():
            raise SourceError(f"{what} claims {n:,} bytes (limit {min(cap, self.remaining()):,})", self.name)
        return n

    def text(self, what: str, cap: int, strict: bool) -> str:
        raw = self.take(self.string_len(what, cap), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if strict:
                raise SourceError(f"{what} is not valid UTF-8: {raw[:40]!r}", self.name) from None
            return raw.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------------------------
def parse_gguf(source: Reader | bytes | bytearray | memoryview, file_size: int | None = None, *, name: str = "gguf",
               chunk: int = 1 << 20) -> GGUFFile:
    """Parse a GGUF header from ``read(offset, size) -> bytes`` (plus ``file_size``) or from a bytes-like object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob = bytes(source)
        file_size = len(blob) if file_size is None else file_size
        read: Reader = lambda off, n: blob[off:off + n]  # noqa: E731
    else:
        if file_size is None:
            raise SourceError("the file size is needed to read a GGUF header safely", name)
        read = source
    if file_size < 24:
        raise SourceError(f"too short for a GGUF file ({file_size} bytes)", name)
    cur = _Cursor(read, file_size, name, chunk)
    magic = cur.take(4, "magic")
    if magic != MAGIC:
        raise SourceError(f"not a GGUF file (magic {magic!r}, expected b'GGUF')", name)
    version = cur.u32("version")
    if version & 0xFFFF == 0 and version:  # written big-endian
        cur.big = True
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version == 1:
        raise SourceError("GGUF version 1 is not supported (convert the file with a current llama.cpp)", name)
    if version not in (2, 3):
        raise SourceError(f"unsupported GGUF version {version}", name)
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("key/value count")
    # every tensor record takes >= 32 bytes (name length 8, n_dims 4, one dim 8, type 4, offset 8) and every
    # key/value >= 13 (key length 8, type 4, a 1-byte value): a count the file cannot hold is a lie
    if n_tensors > MAX_TENSORS or n_tensors * 32 > cur.remaining():
        raise SourceError(f"header claims {n_tensors:,} tensors, more than a {file_size:,}-byte file can describe",
                          name)
    if n_kv > MAX_KV or n_kv * 13 > cur.remaining():
        raise SourceError(f"header claims {n_kv:,} metadata entries, more than a {file_size:,}-byte file can hold",
                          name)
    metadata: dict = {}
    for i in range(n_kv):
        key = cur.text(f"metadata key #{i}", MAX_NAME_BYTES, strict=True)
        if not key:
            raise SourceError(f"empty metadata key (entry #{i})", name)
        if key in metadata:
            raise SourceError(f"duplicate metadata key {key!r}", name)
        vtype = cur.u32(f"type of {key!r}")
        metadata[key] = _value(cur, vtype, key, depth=0)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0
            or alignment & (alignment - 1) or alignment > 1 << 20):
        raise SourceError(f"general.alignment must be a power of two, got {alignment!r}", name)

    types = _catalog()[0]
    infos = []
    seen: set[str] = set()
    for i in range(n_tensors):
        tname = cur.text(f"tensor #{i} name", MAX_NAME_BYTES, strict=True)
        if tname in seen:
            raise SourceError(f"duplicate tensor name {tname!r}", name)
        seen.add(tname)
        n_dims = cur.u32(f"tensor {tname!r} n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise SourceError(f"tensor {tname!r} has {n_dims} dimensions (GGML allows 1 to {MAX_DIMS})", name)
        shape = tuple(cur.u64(f"tensor {tname!r} dimension") for _ in range(n_dims))
        if any(d >= 1 << 63 for d in shape) or prod(shape) >= 1 << 63:
            raise SourceError(f"tensor {tname!r} shape {list(shape)} overflows", name)
        type_id = cur.u32(f"tensor {tname!r} type")
        gtype = types.get(type_id)
        if gtype is None:
            raise SourceError(f"tensor {tname!r} has unknown ggml type id {type_id}", name)
        offset = cur.u64(f"tensor {tname!r} offset")
        if shape[0] % gtype.block_elems:
            raise SourceError(f"tensor {tname!r}: row length {shape[0]} is not a multiple of the {gtype.name} "
                              f"block size {gtype.block_elems}", name)
        nbytes = prod(shape) // gtype.block_elems * gtype.block_bytes
        infos.append(GGUFTensor(tname, gtype.name, shape, nbytes, offset))

    data_offset = -(-cur.pos // alignment) * alignment
    if data_offset > file_size:
        raise SourceError(f"truncated: the data section would start at {data_offset:,}, past the end "
                          f"({file_size:,} bytes)", name)
    data_size = file_size - data_offset
    end = 0
    for t in sorted(infos, key=lambda t: t.offset):
        if t.offset % alignment:
            raise SourceError(f"tensor {t.name!r} offset {t.offset} is not aligned to {alignment}", name)
        if t.offset < end:
            raise SourceError(f"tensor {t.name!r} overlaps the tensor before it", name)
        end = t.offset + t.nbytes
        if end > data_size:
            raise SourceError(f"truncated: tensor {t.name!r} ({t.ggml_type_name}, {t.nbytes:,} bytes) ends "
                              f"{end - data_size:,} bytes past the end of the file", name)
    return GGUFFile(name=name, version=version, metadata=metadata, tensors=tuple(infos),
                    tensor_data_offset=data_offset, alignment=alignment, file_size=file_size, big_endian=cur.big)


def _value(cur: _Cursor, vtype: int, key: str, depth: int):
    if vtype not in _VTYPES:
        raise SourceError(f"metadata {key!r} has unknown value type {vtype}", cur.name)
    tname, code, size = _VTYPES[vtype]
    if vtype == _STRING:
        return cur.text(f"metadata {key!r}", MAX_STRING_BYTES, strict=False)
    if vtype == 7:
        byte = cur.take(1, f"metadata {key!r}")[0]
        if byte > 1:
            raise SourceError(f"metadata {key!r}: a bool must be 0 or 1, got {byte}", cur.name)
        return bool(byte)
    if vtype != _ARRAY:
        return cur.unpack(code, size, f"metadata {key!r}")
    if depth:
        raise SourceError(f"metadata {key!r}: nested arrays are not supported", cur.name)
    etype = cur.u32(f"metadata {key!r} element type")
    if etype not in _VTYPES or etype == _ARRAY:
        raise SourceError(f"metadata {key!r}: unsupported array element type {etype}", cur.name)
    count = cur.u64(f"metadata {key!r} length")
    ename, ecode, esize = _VTYPES[etype]
    if count > MAX_ARRAY_ITEMS:
        raise SourceError(f"metadata {key!r} claims {count:,} items, over the {MAX_ARRAY_ITEMS:,}-item limit",
                          cur.name)
    if count * esize > cur.remaining():
        raise SourceError(f"metadata {key!r} claims {count:,} {ename} items, more than the "
                          f"{cur.remaining():,} bytes left can hold", cur.name)
    keep = count <= KEEP_ARRAY_ITEMS
    if etype == _STRING:
        if keep:
            return tuple(cur.text(f"metadata {key!r} item", MAX_STRING_BYTES, strict=False) for _ in range(count))
        for _ in range(count):
            cur.take(cur.string_len(f"metadata {key!r} item", MAX_STRING_BYTES), f"metadata {key!r} item")
        return GGUFArray(ename, count)
    raw = cur.take(count * esize, f"metadata {key!r}")
    if not keep:
        return GGUFArray(ename, count)
    values = struct.unpack(("<" if not cur.big else ">") + f"{count}{ecode}", raw)
    if etype == 7 and any(b not in (0, 1) for b in raw):
        raise SourceError(f"metadata {key!r}: a bool must be 0 or 1", cur.name)
    return values


# --------------------------------------------------------------------------------------------------------------
# local files
# --------------------------------------------------------------------------------------------------------------
def read_gguf(path: str | os.PathLike, *, chunk: int = 1 << 20) -> GGUFFile:
    """Parse the header of a local GGUF file, reading only as far as the header goes."""
    import stat

    p = Path(path)
    name = str(p)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError("not a regular file", name)
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size

            def read(offset: int, n: int) -> bytes:
                f.seek(offset)
                return f.read(n)

            return parse_gguf(read, size, name=name, chunk=chunk)
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", name) from None


_SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def split_names(filename: str, count: int) -> list[str]:
    """All file names of a split set, from any one of them ('x-00002-of-00003.gguf' -> the three names)."""
    m = _SPLIT_RE.match(filename)
    if not m:
        raise SourceError("the file says it is one part of a split model, but its name does not follow "
                          "'<name>-00001-of-0000N.gguf'", filename)
    return [f"{m['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def split_count(g: GGUFFile) -> int:
    n = g.metadata.get("split.count", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 9999:
        raise SourceError(f"split.count must be an integer from 1 to 9999, got {n!r}", g.name)
    return n


def read_gguf_split(path: str | os.PathLike) -> tuple[GGUFFile, ...]:
    """A GGUF file, or every part of the split set it belongs to (in order)."""
    p = Path(path)
    first = read_gguf(p)
    count = split_count(first)
    if count == 1:
        return (first,)
    parts = []
    for i, fname in enumerate(split_names(p.name, count)):
        part = first if fname == p.name else read_gguf(p.with_name(fname))
        if part.metadata.get("split.no", i) != i:
            raise SourceError(f"split.no is {part.metadata.get('split.no')!r}, expected {i}", part.name)
        parts.append(part)
    return tuple(parts)


# --------------------------------------------------------------------------------------------------------------
# summaries and the config mapping
# --------------------------------------------------------------------------------------------------------------
def all_tensors(files: GGUFFile | Sequence[GGUFFile]) -> tuple[GGUFTensor, ...]:
    files = (files,) if isinstance(files, GGUFFile) else tuple(files)
    return tuple(t for g in files for t in g.tensors)


def gguf_census(files: GGUFFile | Sequence[GGUFFile]):
    """The same summary as ``safetensors.census``: bytes and elements by ggml type (GGUF stores logical elements,
    so stored elements and parameters coincide); ``scheme`` is the quantize mix (Q4_K_M) when the file says."""
    from .safetensors import Census

    files = (files,) if isinstance(files, GGUFFile) else tuple(files)
    bytes_by: dict[str, int] = {}
    elems_by: dict[str, int] = {}
    for t in all_tensors(files):
        bytes_by[t.ggml_type_name] = bytes_by.get(t.ggml_type_name, 0) + t.nbytes
        elems_by[t.ggml_type_name] = elems_by.get(t.ggml_type_name, 0) + t.numel
    plain = ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")
    q_params = sum(v for k, v in elems_by.items() if k not in plain)
    q_bytes = sum(v for k, v in bytes_by.items() if k not in plain)
    total = sum(elems_by.values())
    return Census(files=len(files), tensor_count=sum(len(g.tensors) for g in files),
                  total_bytes=sum(bytes_by.values()), file_bytes=sum(g.file_size for g in files),
                  bytes_by_dtype=bytes_by, elements_by_dtype=elems_by, total_elements=total,
                  params_by_format=dict(elems_by), total_params=total, aux_elements=0, aux_bytes=0,
                  quantized_params=q_params, quantized_bytes=q_bytes, scheme=files[0].file_type or "gguf",
                  bits=None, notes=())


from .gguf_config import gguf_to_config  # noqa: E402  (re-exported: the mapping lives in its own module)

__all__ = ["GGMLType", "GGUFArray", "GGUFFile", "GGUFTensor", "all_tensors", "file_type_name", "ggml_types",
           "gguf_census", "gguf_to_config", "parse_gguf", "read_gguf", "read_gguf_split", "split_count",
           "split_names"]
