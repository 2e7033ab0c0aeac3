"""safetensors headers -> exact tensor inventory (names, dtypes, shapes, bytes), without reading the weights.

File layout (huggingface/safetensors, docs "Format"): an 8-byte little-endian unsigned header length N, N bytes of
UTF-8 JSON ``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}`` (padded
with spaces), then the tensor data; offsets are relative to the end of the header, tensors are contiguous from 0,
and the last one ends at the end of the file. The reference implementation refuses headers over 100,000,000 bytes.

* :func:`parse_safetensors_header` is pure: bytes in, :class:`SafetensorsHeader` out, validated as strictly as the
  reference reader (contiguous offsets, ``end - begin == numel * dtype size``, exact file size when known).
* :func:`read_safetensors` reads 8 bytes and the header of one file, nothing else.
* :func:`read_safetensors_dir` reads a single file or every shard named by ``model.safetensors.index.json``.
* :func:`census` sums headers into bytes and parameters by dtype, and recognises quantized layouts (GPTQ/AWQ
  packed int32, FP8 with scales, bitsandbytes 4/8-bit, MXFP4 blocks, NVFP4, compressed-tensors) so that it can
  report both the stored elements and the logical parameter count.

Every problem is a :class:`~vramplan.errors.SourceError` naming the file.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from ..errors import SourceError
from ._safejson import load_json_object, loads_guarded

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's MAX_HEADER_SIZE
MAX_HEADER_VALUES = 12_000_000  # JSON values in one header (a real header has ~8 per tensor)
MAX_INDEX_BYTES = 64 << 20  # model.safetensors.index.json (DeepSeek-V3's is ~9 MB)
MAX_RANK = 16
MAX_TENSOR_BYTES = 1 << 50  # 1 PiB: no single tensor comes near

# bits per element (safetensors Dtype enum; F4/F6/F8_E8M0 were added in safetensors 0.6)
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_SHARD_RE = re.compile(r"^model-\d+-of-\d+\.safetensors$")


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    data_offsets: tuple[int, int]

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """One file's header. ``header_bytes`` is N (the JSON length); the file is 8 + N + ``data_bytes`` bytes."""

    name: str
    tensors: tuple[TensorInfo, ...]  # in data-offset order
    metadata: dict[str, str]
    header_bytes: int
    data_bytes: int

    @property
    def file_bytes(self) -> int:
        return 8 + self.header_bytes + self.data_bytes


# --------------------------------------------------------------------------------------------------------------
# pure parsing
# --------------------------------------------------------------------------------------------------------------
def header_length(prefix: bytes, *, file_size: int | None, name: str) -> int:
    """N from the first 8 bytes, checked against the cap and the file size before anything else is read."""
    if len(prefix) < 8:
        raise SourceError(f"too short for a safetensors file ({len(prefix)} bytes; the length prefix alone is 8)",
                          name)
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER_BYTES:
        raise SourceError(f"safetensors header length {n:,} bytes is over the {MAX_HEADER_BYTES:,}-byte limit "
                          "(not a safetensors file, or a corrupt one)", name)
    if file_size is not None and 8 + n > file_size:
        raise SourceError(f"safetensors header length {n:,} bytes is larger than the file ({file_size:,} bytes)",
                          name)
    if n < 2:
        raise SourceError(f"safetensors header length {n} is too small for a JSON object", name)
    return n


def parse_safetensors_header(data: bytes, *, file_size: int | None, name: str) -> SafetensorsHeader:
    """Parse the start of a safetensors file (the 8-byte length, then at least the header; more is ignored).

    ``file_size`` (when known) must be exactly 8 + N + the end of the last tensor, as the reference reader requires:
    a shorter file is truncated, a longer one has trailing bytes.
    """
    data = bytes(data)
    n = header_length(data, file_size=file_size, name=name)
    if len(data) < 8 + n:
        raise SourceError(f"truncated: the header needs {n:,} bytes after the length prefix, only "
                          f"{len(data) - 8:,} are present", name)
    raw = data[8:8 + n]
    if raw[:1] != b"{":
        raise SourceError("safetensors header does not start with '{'", name)
    obj = loads_guarded(raw, name=name, max_bytes=MAX_HEADER_BYTES, max_depth=4, max_values=MAX_HEADER_VALUES,
                        what="safetensors header")
    if not isinstance(obj, dict):
        raise SourceError("safetensors header must be a JSON object", name)
    metadata = _metadata(obj.pop("__metadata__", None), name)
    tensors = [_tensor(key, value, name) for key, value in obj.items()]
    tensors.sort(key=lambda t: t.data_offsets)
    end = 0
    for t in tensors:
        begin, stop = t.data_offsets
        if begin != end:
            what = "overlaps the previous tensor" if begin < end else f"leaves a gap of {begin - end:,} bytes"
            raise SourceError(f"tensor {t.name!r}: data_offsets [{begin}, {stop}] {what}", name)
        end = stop
    if file_size is not None:
        expected = 8 + n + end
        if file_size < expected:
            raise SourceError(f"truncated: the header describes {expected:,} bytes, the file has {file_size:,}",
                              name)
        if file_size > expected:
            raise SourceError(f"{file_size - expected:,} bytes follow the last tensor (the header describes "
                              f"{expected:,} of {file_size:,}); not a valid safetensors file", name)
    return SafetensorsHeader(name=name, tensors=tuple(tensors), metadata=metadata, header_bytes=n, data_bytes=end)


def _metadata(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SourceError("'__metadata__' must be an object of strings", name)
    for key, item in value.items():
        if not isinstance(item, str):
            raise SourceError(f"'__metadata__.{_clip(key)}' must be a string, got {_kind(item)}", name)
        _check_text(key, name, "metadata key")
        _check_text(item, name, "metadata value")
    return dict(value)


def _tensor(key: str, value: object, name: str) -> TensorInfo:
    _check_text(key, name, "tensor name")
    where = f"tensor {_clip(key)!r}"
    if not key:
        raise SourceError("empty tensor name", name)
    if not isinstance(value, dict):
        raise SourceError(f"{where}: expected an object with dtype, shape and data_offsets, got {_kind(value)}",
                          name)
    # other fields are ignored, as the reference reader (serde without deny_unknown_fields) ignores them
    dtype = value.get("dtype")
    if not isinstance(dtype, str):
        raise SourceError(f"{where}: 'dtype' must be a string, got {_kind(dtype)}", name)
    if dtype not in DTYPE_BITS:
        raise SourceError(f"{where}: unknown dtype {_clip(dtype)!r} (known: {', '.join(DTYPE_BITS)})", name)
    shape = value.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise SourceError(f"{where}: 'shape' must be a list of at most {MAX_RANK} integers", name)
    for i, dim in enumerate(shape):
        if not _is_int(dim) or dim < 0:
            raise SourceError(f"{where}: shape[{i}] must be a non-negative integer, got {_clip(repr(dim))}", name)
    offsets = value.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets)):
        raise SourceError(f"{where}: 'data_offsets' must be two non-negative integers [begin, end]", name)
    begin, end = offsets
    if end < begin:
        raise SourceError(f"{where}: data_offsets end {end} is before begin {begin}", name)
    bits = prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise SourceError(f"{where}: {prod(shape)} elements of {dtype} do not fill whole bytes", name)
    nbytes = bits // 8
    if nbytes > MAX_TENSOR_BYTES:
        raise SourceError(f"{where}: {nbytes:,} bytes is absurd for one tensor", name)
    if end - begin != nbytes:
        raise SourceError(f"{where}: data_offsets span {end - begin:,} bytes but shape {list(shape)} of {dtype} "
                          f"needs {nbytes:,}", name)
    return TensorInfo(name=key, dtype=dtype, shape=tuple(shape), nbytes=nbytes, data_offsets=(begin, end))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_text(text: str, name: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(f"{what} {_clip(ascii(text))} is not valid Unicode (lone surrogate escape)", name) from None


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _kind(v: object) -> str:
    return {list: "a list", dict: "an object", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------------------------------------------
# thin readers
# --------------------------------------------------------------------------------------------------------------
def read_safetensors(path: str | os.PathLike) -> SafetensorsHeader:
    """Read the length prefix and header of one file (never the tensor data)."""
    p = Path(path)
    name = str(p)
    try:
        _require_regular(p)
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            n = header_length(prefix, file_size=size, name=name)
            body = f.read(n)
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", name) from None
    return parse_safetensors_header(prefix + body, file_size=size, name=name)


def _require_regular(p: Path) -> None:
    """Stat before opening, so that a FIFO or a device is refused instead of blocking or streaming forever."""
    import stat

    if not stat.S_ISREG(os.stat(p).st_mode):
        raise SourceError("not a regular file", str(p))


def read_index(path: str | os.PathLike) -> tuple[dict[str, str], dict]:
    """``model.safetensors.index.json`` -> (weight_map tensor -> shard file, metadata)."""
    p = Path(path)
    data = _read_capped(p, MAX_INDEX_BYTES, "safetensors index")
    return parse_index(data, name=str(p))


def parse_index(data: bytes, *, name: str) -> tuple[dict[str, str], dict]:
    obj = load_json_object(data, name=name, max_bytes=MAX_INDEX_BYTES, what="safetensors index")
    wmap = obj.get("weight_map")
    if not isinstance(wmap, dict) or not wmap:
        raise SourceError("'weight_map' must be a non-empty object of tensor name -> shard file", name)
    for tensor, shard in wmap.items():
        if not isinstance(shard, str):
            raise SourceError(f"'weight_map.{_clip(tensor)}' must be a file name, got {_kind(shard)}", name)
        check_shard_name(shard, name)
    meta = obj.get("metadata")
    return dict(wmap), (meta if isinstance(meta, dict) else {})


def check_shard_name(shard: str, name: str) -> None:
    """A shard must be a plain file name in the same folder: no separators, no '..', no absolute path."""
    if (not shard or "/" in shard or "\\" in shard or shard in (".", "..") or "\x00" in shard
            or not shard.endswith(".safetensors")):
        raise SourceError(f"shard name {_clip(shard)!r} is not a plain .safetensors file name in the same folder",
                          name)


def _read_capped(p: Path, cap: int, what: str) -> bytes:
    name = str(p)
    try:
        _require_regular(p)
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise SourceError(f"{what} is {size:,} bytes, more than the {cap:,}-byte limit", name)
            return f.read(cap + 1)
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", name) from None


def safetensors_files(folder: Path) -> tuple[list[str], Path | None]:
    """Which weight files a folder holds: (file names, index path or None). Empty when there are none."""
    index = folder / INDEX_FILE
    if index.is_file():
        wmap, _ = read_index(index)
        return sorted(set(wmap.values())), index
    if (folder / SINGLE_FILE).is_file():
        return [SINGLE_FILE], None
    names = sorted(e.name for e in folder.iterdir() if e.name.endswith(".safetensors") and e.is_file())
    shards = [n for n in names if _SHARD_RE.match(n)]
    if shards:
        return shards, None
    # consolidated.safetensors (Mistral's own layout) duplicates the HF shards; adapters are not the model
    return [n for n in names if not n.startswith(("consolidated", "adapter_"))] or names, None


def read_safetensors_dir(path: str | os.PathLike) -> tuple[SafetensorsHeader, ...]:
    """Headers of a model's weights: a ``.safetensors`` file, an index file, or a folder holding either."""
    p = Path(path)
    if p.is_file():
        if p.name.endswith(".index.json"):
            folder, index = p.parent, p
            wmap, _ = read_index(index)
            files = sorted(set(wmap.values()))
        else:
            return (read_safetensors(p),)
    elif p.is_dir():
        folder = p
        files, index = safetensors_files(p)
        if not files:
            raise SourceError("no .safetensors files in this folder", str(p))
        wmap = read_index(index)[0] if index else None
    else:
        raise SourceError("no such file or folder", str(p))
    headers = []
    for shard in files:
        fp = folder / shard
        if not fp.is_file():
            raise SourceError(f"shard {shard!r} is listed in the index but missing", str(folder))
        headers.append(read_safetensors(fp))
    if index is not None and wmap is not None:
        check_index_matches(wmap, headers, str(index))
    return tuple(headers)


def check_index_matches(wmap: dict[str, str], headers: list[SafetensorsHeader] | tuple, name: str) -> None:
    """Every tensor the index names must be in the shard it names, and no shard may hold unlisted tensors."""
    held = {}
    for h in headers:
        shard = os.path.basename(h.name)
        for t in h.tensors:
            held[t.name] = shard
    for tensor, shard in wmap.items():
        if held.get(tensor) != shard:
            where = f"is in {held[tensor]!r}" if tensor in held else "is in no shard"
            raise SourceError(f"index puts tensor {_clip(tensor)!r} in {shard!r} but it {where}", name)
    extra = set(held) - set(wmap)
    if extra:
        raise SourceError(f"shard {held[min(extra)]!r} holds tensor {_clip(min(extra))!r} that the index does "
                          "not list", name)


# --------------------------------------------------------------------------------------------------------------
# census
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Census:
    """What the headers say, summed.

    * ``elements_by_dtype`` / ``total_elements``: stored elements, what the Hub shows as "safetensors parameters"
      (packed int32 counts once per word, FP8 scales count as parameters).
    * ``params_by_format`` / ``total_params``: logical parameters. Packed words are unpacked (GPTQ/AWQ int32 holds
      32/bits values, bitsandbytes 4-bit, MXFP4 and NVFP4 bytes hold 2), and quantization metadata (scales, zeros,
      g_idx, absmax, quant maps) is left out; it is counted in ``aux_elements`` / ``aux_bytes``.
    * ``total_bytes``: tensor data bytes; ``file_bytes`` adds the headers and length prefixes.
    """

    files: int
    tensor_count: int
    total_bytes: int
    file_bytes: int
    bytes_by_dtype: dict[str, int]
    elements_by_dtype: dict[str, int]
    total_elements: int
    params_by_format: dict[str, int]
    total_params: int
    aux_elements: int
    aux_bytes: int
    quantized_params: int  # logical parameters held in quantized tensors
    quantized_bytes: int  # their bytes, aux included
    scheme: str | None  # gptq, awq, fp8, bnb-nf4, bnb-fp4, bnb-int8, mxfp4, nvfp4, compressed-tensors; None: plain
    bits: int | None
    notes: tuple[str, ...] = field(default=())

    @property
    def params_by_dtype(self) -> dict[str, int]:
        """Stored elements by dtype (the Hub's "parameters" dict); logical counts are in ``params_by_format``."""
        return self.elements_by_dtype

    @property
    def quantized_bits_per_weight(self) -> float | None:
        return self.quantized_bytes * 8 / self.quantized_params if self.quantized_params else None

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__} | {
            "quantized_bits_per_weight": self.quantized_bits_per_weight}


_AUX_SUFFIXES = (
    ".qzeros", ".scales", ".g_idx",  # GPTQ / AWQ
    ".weight_scale", ".weight_scale_inv", ".weight_scale_2", ".input_scale", ".input_scale_inv",  # FP8 / NVFP4
    ".k_scale", ".v_scale", ".q_scale", ".kv_scale",  # FP8 KV-cache scales
    ".weight_zero_point", ".weight_g_idx", ".weight_shape", ".weight_global_scale", ".input_global_scale",
    ".SCB", ".weight_format",  # bnb int8
    ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",  # bnb 4-bit (under "<name>.weight.")
)
_BNB_STATE_RE = re.compile(r"\.quant_state\.bitsandbytes__(nf4|fp4)$")


def _is_aux(t: TensorInfo, names: set[str]) -> bool:
    n = t.name
    if _BNB_STATE_RE.search(n):
        return True
    if n.endswith("_scales") and n[: -len("_scales")] + "_blocks" in names:
        return True  # MXFP4 (gpt-oss): <name>_scales next to <name>_blocks
    if n.endswith((".qzeros", ".scales", ".g_idx")):
        return n.rsplit(".", 1)[0] + ".qweight" in names
    if n.endswith((".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map")):
        return ".weight." in n
    return n.endswith(_AUX_SUFFIXES)


def census(headers: SafetensorsHeader | tuple[SafetensorsHeader, ...] | list[SafetensorsHeader], *,
           bits: int | None = None) -> Census:
    """Sum headers. ``bits`` is the packed width of GPTQ/AWQ/compressed-tensors int weights when the config says;
    4 is assumed otherwise (and noted)."""
    if isinstance(headers, SafetensorsHeader):
        headers = (headers,)
    tensors = [t for h in headers for t in h.tensors]
    names = {t.name for t in tensors}
    notes: list[str] = []
    scheme = _scheme(tensors, names)
    packed_bits = bits
    if packed_bits is None and any(t.name.endswith((".qweight", ".weight_packed")) and t.dtype in ("I32", "U32")
                                   for t in tensors):
        packed_bits = 4
        notes.append("packed int32 weights: 4-bit assumed (no bits given by the config)")
    if packed_bits is not None and (packed_bits <= 0 or 32 % packed_bits):
        raise SourceError(f"cannot unpack {packed_bits}-bit values from int32 words", "quantization_config.bits")
    bytes_by: dict[str, int] = {}
    elems_by: dict[str, int] = {}
    params_by: dict[str, int] = {}
    aux_e = aux_b = q_params = q_bytes = 0
    for t in tensors:
        n = t.numel
        bytes_by[t.dtype] = bytes_by.get(t.dtype, 0) + t.nbytes
        elems_by[t.dtype] = elems_by.get(t.dtype, 0) + n
        if _is_aux(t, names):
            aux_e += n
            aux_b += t.nbytes
            continue
        fmt, logical = _logical(t, names, packed_bits)
        params_by[fmt] = params_by.get(fmt, 0) + logical
        if fmt != t.dtype or t.dtype.startswith("F8") or t.dtype in ("I8", "F4"):
            q_params += logical
            q_bytes += t.nbytes
    q_bytes += aux_b if q_params else 0
    return Census(
        files=len(headers), tensor_count=len(tensors), total_bytes=sum(bytes_by.values()),
        file_bytes=sum(h.file_bytes for h in headers), bytes_by_dtype=bytes_by, elements_by_dtype=elems_by,
        total_elements=sum(elems_by.values()), params_by_format=params_by, total_params=sum(params_by.values()),
        aux_elements=aux_e, aux_bytes=aux_b, quantized_params=q_params, quantized_bytes=q_bytes, scheme=scheme,
        bits=_scheme_bits(scheme, packed_bits), notes=tuple(notes))


def _logical(t: TensorInfo, names: set[str], packed_bits: int | None) -> tuple[str, int]:
    n = t.numel
    if t.name.endswith((".qweight", ".weight_packed")) and t.dtype in ("I32", "U32"):
        b = packed_bits or 4
        return f"int{b}", n * (32 // b)
    if t.dtype == "U8":
        if t.name.endswith("_blocks"):
            return "mxfp4", 2 * n
        if t.name.endswith(".weight"):
            state = next((m for m in ("nf4", "fp4") if f"{t.name}.quant_state.bitsandbytes__{m}" in names), None)
            if state or t.name + ".absmax" in names:
                return state or "nf4", 2 * n
            if t.name + "_scale" in names:  # NVFP4 (ModelOpt): <x>.weight uint8 + <x>.weight_scale fp8
                return "nvfp4", 2 * n
        if t.name.endswith(".weight_packed"):
            return "nvfp4", 2 * n
    return t.dtype, n


def _scheme(tensors: list[TensorInfo], names: set[str]) -> str | None:
    ends = lambda s: any(n.endswith(s) for n in names)  # noqa: E731
    if ends(".qweight"):
        return "gptq" if ends(".g_idx") else "awq"
    if any(_BNB_STATE_RE.search(n) for n in names) or ends(".weight.absmax"):
        return "bnb-fp4" if any(n.endswith("bitsandbytes__fp4") for n in names) else "bnb-nf4"
    if ends(".SCB"):
        return "bnb-int8"
    if ends("_blocks") and any(t.dtype == "U8" and t.name.endswith("_blocks") for t in tensors):
        return "mxfp4"
    if ends(".weight_packed"):
        return "compressed-tensors"
    if any(t.dtype == "U8" and t.name.endswith(".weight") and t.name + "_scale" in names for t in tensors):
        return "nvfp4"
    if any(t.dtype in ("F8_E4M3", "F8_E5M2") for t in tensors):
        return "fp8"
    return None


def _scheme_bits(scheme: str | None, packed_bits: int | None) -> int | None:
    return {"gptq": packed_bits, "awq": packed_bits, "compressed-tensors": packed_bits, "fp8": 8, "bnb-int8": 8,
            "bnb-nf4": 4, "bnb-fp4": 4, "mxfp4": 4, "nvfp4": 4}.get(scheme or "", None)
