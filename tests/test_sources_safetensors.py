"""safetensors headers: exact parsing, strict validation of hostile files, census of quantized layouts, fuzzing."""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramplan.errors import SourceError
from vramplan.sources import safetensors as stmod
from vramplan.sources._safejson import loads_guarded
from vramplan.sources.safetensors import (
    census,
    parse_safetensors_header,
    read_safetensors,
    read_safetensors_dir,
)

ELEMENT_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "U8": 1, "I8": 1, "F8_E4M3": 1, "I64": 8, "F64": 8,
                 "BOOL": 1}


def header_json(tensors: dict, metadata: dict | None = None) -> tuple[dict, int]:
    """{name: (dtype, shape)} -> (header dict with contiguous offsets, data bytes)."""
    out: dict = {}
    if metadata is not None:
        out["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        nbytes = n * ELEMENT_BYTES[dtype] if dtype != "F4" else n // 2
        out[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return out, offset


def st_bytes(tensors: dict, metadata: dict | None = None, *, raw_header: bytes | None = None,
             data_len: int | None = None, pad: bool = True) -> bytes:
    """A complete safetensors file (zero data) written by hand: u64 LE length, JSON, data."""
    header, data = header_json(tensors, metadata)
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    data = data if data_len is None else data_len
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


def parse(blob: bytes, file_size: int | None = -1):
    return parse_safetensors_header(blob, file_size=len(blob) if file_size == -1 else file_size, name="t.st")


# ---------------------------------------------------------------------------------------------------------------
# valid files
# ---------------------------------------------------------------------------------------------------------------
VALID = [
    # tensors, expected (tensor count, data bytes)
    ({}, (0, 0)),
    ({"w": ("BF16", (4, 8))}, (1, 64)),
    ({"a": ("F32", (3,)), "b": ("F16", (2, 2)), "c": ("U8", (5,))}, (3, 12 + 8 + 5)),
    ({"scalar": ("F64", ())}, (1, 8)),
    ({"empty": ("F32", (0, 7)), "x": ("I64", (2,))}, (2, 16)),
    ({"fp4": ("F4", (4, 6))}, (1, 12)),
    ({"m.layers.0.q.weight": ("F8_E4M3", (16, 16)), "m.layers.0.q.weight_scale": ("F32", ())}, (2, 256 + 4)),
]


@pytest.mark.parametrize("tensors,expected", VALID)
def test_valid_headers(tensors, expected):
    blob = st_bytes(tensors, {"format": "pt"})
    h = parse(blob)
    assert (len(h.tensors), h.data_bytes) == expected
    assert h.metadata == {"format": "pt"}
    assert h.file_bytes == len(blob)
    by_name = {t.name: t for t in h.tensors}
    for name, (dtype, shape) in tensors.items():
        assert by_name[name].dtype == dtype and by_name[name].shape == tuple(shape)
    # offsets are contiguous and sorted
    starts = [t.data_offsets[0] for t in h.tensors]
    assert starts == ([0] + [t.data_offsets[1] for t in h.tensors])[: len(starts)]


def test_extra_bytes_after_header_prefix_are_ignored_without_size():
    blob = st_bytes({"w": ("F32", (1000,))})
    # only the prefix + header, as a remote reader would fetch; size unknown
    n = struct.unpack("<Q", blob[:8])[0]
    h = parse_safetensors_header(blob[: 8 + n + 3], file_size=None, name="remote")
    assert h.tensors[0].nbytes == 4000


def test_unknown_tensor_fields_are_ignored_like_the_reference_reader():
    raw = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "note": "x"}}).encode()
    h = parse(struct.pack("<Q", len(raw)) + raw + bytes(8))
    assert h.tensors[0].nbytes == 8


def test_reference_bytes_from_the_format_docs():
    # the byte string of the safetensors project's own serialization test (attn.0: F32 [1,2,3])
    blob = bytes([64, 0, 0, 0, 0, 0, 0, 0]) + b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}' \
        + bytes(24)
    h = parse(blob)
    assert h.tensors[0].shape == (1, 2, 3) and h.tensors[0].nbytes == 24 and h.header_bytes == 64


# ---------------------------------------------------------------------------------------------------------------
# hostile files: each one a clear SourceError
# ---------------------------------------------------------------------------------------------------------------
def _hdr(obj) -> bytes:
    raw = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    return struct.pack("<Q", len(raw)) + raw


OK_T = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

HOSTILE = [
    ("short", b"\x01\x02", None, "too short"),
    ("length over cap", struct.pack("<Q", 200_000_000) + b"{}", None, "over the 100,000,000-byte limit"),
    ("length over file", struct.pack("<Q", 5000) + b"{}" + bytes(10), -1, "larger than the file"),
    ("length max u64", b"\xff" * 8 + b"{}", None, "limit"),
    ("header cut", struct.pack("<Q", 64) + b'{"a":', None, "truncated"),
    ("not json", _hdr(b"{not json}"), -1, "not valid JSON"),
    ("no brace", _hdr(b'["a"]   '), -1, "does not start with '{'"),
    ("non-utf8 name", _hdr(b'{"\xff\xfe":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}') + bytes(8), -1,
     "not valid UTF-8"),
    ("surrogate name", _hdr(b'{"\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}') + bytes(8), -1,
     "not valid Unicode"),
    ("deep nesting", _hdr(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"), -1, "nested deeper"),
    ("dtype number", _hdr({"a": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}}) + bytes(8), -1,
     "'dtype' must be a string"),
    ("unknown dtype", _hdr({"a": {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}}) + bytes(8), -1,
     "unknown dtype 'F12'"),
    ("shape string", _hdr({"a": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}) + bytes(8), -1,
     "'shape' must be a list"),
    ("shape negative", _hdr({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}) + bytes(8), -1,
     "shape[0] must be a non-negative integer"),
    ("shape bool", _hdr({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}) + bytes(4), -1,
     "shape[0]"),
    ("shape float", _hdr({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}) + bytes(8), -1,
     "shape[0]"),
    ("rank huge", _hdr({"a": {"dtype": "F32", "shape": [1] * 100, "data_offsets": [0, 4]}}) + bytes(4), -1,
     "at most 16"),
    ("offsets short", _hdr({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}) + bytes(8), -1,
     "'data_offsets' must be two"),
    ("offsets reversed", _hdr({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}) + bytes(8), -1,
     "before begin"),
    ("bytes mismatch", _hdr({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}) + bytes(8), -1,
     "needs 12"),
    ("overflowing shape", _hdr({"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}})
     + bytes(8), -1, "absurd"),
    ("gap", _hdr({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}) + bytes(16), -1, "gap"),
    ("overlap", _hdr({"a": OK_T, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}) + bytes(12), -1,
     "overlaps"),
    ("duplicate key", _hdr(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                           b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}') + bytes(8), -1, "duplicate"),
    ("tensor not object", _hdr({"a": [1, 2]}) + bytes(8), -1, "expected an object"),
    ("metadata not strings", _hdr({"__metadata__": {"k": 1}, "a": OK_T}) + bytes(8), -1,
     "'__metadata__.k' must be a string"),
    ("truncated data", _hdr({"a": OK_T}) + bytes(3), -1, "truncated"),
    ("trailing data", _hdr({"a": OK_T}) + bytes(20), -1, "follow the last tensor"),
    ("nan", _hdr(b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}') + bytes(8), -1, "NaN"),
]


@pytest.mark.parametrize("label,blob,size,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_headers_raise_clear_errors(label, blob, size, message):
    with pytest.raises(SourceError) as err:
        parse(blob, size)
    assert message in str(err.value)
    assert str(err.value).startswith("t.st: ")  # names the file
    assert "\n" not in str(err.value)


def test_json_value_count_cap():
    text = ("[" + ",".join("0" * 1 for _ in range(2000)) + "]").encode()
    with pytest.raises(SourceError, match="more than 1,000 values"):
        loads_guarded(text, name="x", max_values=1000)
    assert len(loads_guarded(text, name="x", max_values=5000)) == 2000


def test_brackets_inside_strings_do_not_count_as_nesting():
    deep_string = '{"k": "' + "[" * 500 + '\\"{{{"}'
    assert loads_guarded(deep_string.encode(), name="x", max_depth=2) == {"k": "[" * 500 + '"{{{'}


# ---------------------------------------------------------------------------------------------------------------
# the reader reads only the header
# ---------------------------------------------------------------------------------------------------------------
def test_read_safetensors_reads_only_the_header(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    blob = st_bytes({"big": ("F32", (1 << 20,))})  # 4 MiB of data
    path.write_bytes(blob)
    reads: list[int] = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    monkeypatch.setattr(stmod, "open", lambda p, mode="r": Counting(real_open(p, mode)), raising=False)
    h = read_safetensors(path)
    assert h.tensors[0].nbytes == 4 << 20
    assert all(n >= 0 for n in reads) and sum(reads) == 8 + h.header_bytes


def test_read_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match="not a regular file"):
        read_safetensors(fifo)


def test_read_symlink_loop(tmp_path):
    (tmp_path / "a.safetensors").symlink_to(tmp_path / "b.safetensors")
    (tmp_path / "b.safetensors").symlink_to(tmp_path / "a.safetensors")
    with pytest.raises(SourceError, match="cannot read"):
        read_safetensors(tmp_path / "a.safetensors")


# ---------------------------------------------------------------------------------------------------------------
# sharded sets
# ---------------------------------------------------------------------------------------------------------------
def write_sharded(folder, shards: dict[str, dict], wmap_override=None):
    wmap = {}
    for shard, tensors in shards.items():
        (folder / shard).write_bytes(st_bytes(tensors))
        wmap.update({t: shard for t in tensors})
    index = {"metadata": {"total_size": 0}, "weight_map": wmap_override or wmap}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


SHARDS = {
    "model-00001-of-00002.safetensors": {"embed.weight": ("BF16", (100, 16)), "l0.weight": ("BF16", (16, 16))},
    "model-00002-of-00002.safetensors": {"l1.weight": ("BF16", (16, 16)), "norm.weight": ("F32", (16,))},
}


def test_sharded_folder_census(tmp_path):
    write_sharded(tmp_path, SHARDS)
    headers = read_safetensors_dir(tmp_path)
    assert [os.path.basename(h.name) for h in headers] == sorted(SHARDS)
    c = census(headers)
    assert c.total_params == c.total_elements == 1600 + 256 + 256 + 16
    assert c.bytes_by_dtype == {"BF16": 2 * (1600 + 512), "F32": 64}
    assert c.scheme is None and c.files == 2 and c.tensor_count == 4
    # the index file itself is accepted as the path too
    assert read_safetensors_dir(tmp_path / "model.safetensors.index.json") == headers


@pytest.mark.parametrize("wmap,message", [
    ({"embed.weight": "model-00002-of-00002.safetensors"}, "index puts tensor 'embed.weight'"),
    ({"ghost": "model-00001-of-00002.safetensors"}, "is in no shard"),
    ({"embed.weight": "../evil.safetensors"}, "not a plain .safetensors file name"),
    ({"embed.weight": "/etc/passwd"}, "not a plain"),
    ({"embed.weight": "missing-00003.safetensors"}, "missing"),
])
def test_sharded_index_mismatches(tmp_path, wmap, message):
    write_sharded(tmp_path, SHARDS, wmap_override=wmap)
    with pytest.raises(SourceError, match=message):
        read_safetensors_dir(tmp_path)


def test_folder_prefers_hf_shards_over_consolidated(tmp_path):
    (tmp_path / "consolidated.safetensors").write_bytes(st_bytes({"x": ("BF16", (8,))}))
    (tmp_path / "model.safetensors").write_bytes(st_bytes({"y": ("BF16", (4,))}))
    headers = read_safetensors_dir(tmp_path)
    assert [t.name for h in headers for t in h.tensors] == ["y"]


def test_folder_without_weights(tmp_path):
    with pytest.raises(SourceError, match="no .safetensors files"):
        read_safetensors_dir(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# census of quantized layouts: stored elements vs logical parameters
# ---------------------------------------------------------------------------------------------------------------
IN, OUT, G = 256, 512, 128


def gptq_layer(prefix: str) -> dict:
    # AutoGPTQ QuantLinear buffers (formulas.md section 2): qweight [in*bits/32, out], qzeros [in/g, out*bits/32],
    # scales fp16 [in/g, out], g_idx int32 [in]
    return {f"{prefix}.qweight": ("I32", (IN // 8, OUT)), f"{prefix}.qzeros": ("I32", (IN // G, OUT // 8)),
            f"{prefix}.scales": ("F16", (IN // G, OUT)), f"{prefix}.g_idx": ("I32", (IN,)),
            f"{prefix}.bias": ("F16", (OUT,))}


def awq_layer(prefix: str) -> dict:
    # AutoAWQ WQLinear_GEMM: qweight [in, out/8], qzeros [in/g, out/8], scales [in/g, out]
    return {f"{prefix}.qweight": ("I32", (IN, OUT // 8)), f"{prefix}.qzeros": ("I32", (IN // G, OUT // 8)),
            f"{prefix}.scales": ("F16", (IN // G, OUT))}


def bnb4_layer(prefix: str, kind: str = "nf4") -> dict:
    n = IN * OUT
    return {f"{prefix}.weight": ("U8", (n // 2, 1)), f"{prefix}.weight.absmax": ("U8", (n // 64,)),
            f"{prefix}.weight.quant_map": ("F32", (16,)), f"{prefix}.weight.nested_absmax": ("F32", (n // 64 // 256,)),
            f"{prefix}.weight.nested_quant_map": ("F32", (256,)),
            f"{prefix}.weight.quant_state.bitsandbytes__{kind}": ("U8", (120,))}


def fp8_block_layer(prefix: str) -> dict:
    # DeepSeek-V3: F8_E4M3 weight, one fp32 weight_scale_inv per 128x128 block
    return {f"{prefix}.weight": ("F8_E4M3", (OUT, IN)), f"{prefix}.weight_scale_inv": ("F32", (OUT // 128, IN // 128))}


def mxfp4_experts(prefix: str, experts: int = 4) -> dict:
    # gpt-oss: <name>_blocks uint8 [E, out, in/32, 16] (2 values a byte), <name>_scales uint8 [E, out, in/32]
    return {f"{prefix}_blocks": ("U8", (experts, OUT, IN // 32, 16)),
            f"{prefix}_scales": ("U8", (experts, OUT, IN // 32)),
            f"{prefix}_bias": ("BF16", (experts, OUT))}


def nvfp4_layer(prefix: str) -> dict:
    # ModelOpt NVFP4: uint8 weight [out, in/2], fp8 weight_scale per 16 values, fp32 weight_scale_2
    return {f"{prefix}.weight": ("U8", (OUT, IN // 2)), f"{prefix}.weight_scale": ("F8_E4M3", (OUT, IN // 16)),
            f"{prefix}.weight_scale_2": ("F32", ()), f"{prefix}.input_scale": ("F32", ())}


EMBED = {"model.embed_tokens.weight": ("BF16", (64, IN))}

CENSUS_CASES = [
    # name, tensors, bits, scheme, logical params, expected quantized bits/weight (None: not checked)
    ("gptq", {**EMBED, **gptq_layer("l.q")}, 4, "gptq", 64 * IN + IN * OUT + OUT,
     (IN * OUT / 2 + (IN // G) * (OUT // 8) * 4 + (IN // G) * OUT * 2 + IN * 4) * 8 / (IN * OUT)),
    ("gptq 8-bit", {**EMBED, "l.q.qweight": ("I32", (IN // 4, OUT)), "l.q.g_idx": ("I32", (IN,))}, 8, "gptq",
     64 * IN + IN * OUT, None),
    ("awq", {**EMBED, **awq_layer("l.q")}, 4, "awq", 64 * IN + IN * OUT, 4 + 16 / G + 4 / G),
    ("bnb-nf4", {**EMBED, **bnb4_layer("l.q")}, None, "bnb-nf4", 64 * IN + IN * OUT, None),
    ("bnb-fp4", {**bnb4_layer("l.q", "fp4")}, None, "bnb-fp4", IN * OUT, None),
    ("bnb-int8", {"l.q.weight": ("I8", (OUT, IN)), "l.q.SCB": ("F32", (OUT,))}, None, "bnb-int8", IN * OUT,
     8 + 32 / IN),
    ("fp8 block", {**EMBED, **fp8_block_layer("l.q")}, None, "fp8", 64 * IN + IN * OUT, 8 + 32 / (128 * 128)),
    ("mxfp4", {**EMBED, **mxfp4_experts("l.experts.gate_up_proj")}, None, "mxfp4", 64 * IN + 4 * OUT * IN + 4 * OUT,
     4 + 8 / 32),
    ("nvfp4", {**EMBED, **nvfp4_layer("l.q")}, None, "nvfp4", 64 * IN + IN * OUT, 4 + 8 / 16 + 64 / (IN * OUT)),
    ("plain", {**EMBED, "l.q.weight": ("BF16", (OUT, IN))}, None, None, 64 * IN + IN * OUT, None),
]


@pytest.mark.parametrize("name,tensors,bits,scheme,params,bpw", CENSUS_CASES, ids=[c[0] for c in CENSUS_CASES])
def test_census_quantized_layouts(name, tensors, bits, scheme, params, bpw):
    h = parse(st_bytes(tensors))
    c = census(h, bits=bits)
    assert c.scheme == scheme
    assert c.total_params == params
    stored = sum(_numel(shape) for _, shape in tensors.values())
    assert c.total_elements == stored == sum(c.params_by_dtype.values())
    assert c.total_bytes == h.data_bytes
    # a quantized layout always makes stored elements and logical parameters differ (packing or scale tensors)
    assert (c.total_params != c.total_elements) == (scheme is not None)
    if bpw is not None:
        assert c.quantized_bits_per_weight == pytest.approx(bpw, rel=1e-9)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_census_assumes_4_bits_when_config_is_silent():
    c = census(parse(st_bytes(gptq_layer("l.q"))))
    assert c.bits == 4 and c.params_by_format["int4"] == IN * OUT
    assert any("4-bit assumed" in n for n in c.notes)


def test_census_fp8_scales_are_stored_elements_not_parameters():
    # like the Hub's DeepSeek-V3 metadata: the F32 scale tensors count in "parameters" there, not in ours
    c = census(parse(st_bytes(fp8_block_layer("a") | fp8_block_layer("b"))))
    scales = 2 * (OUT // 128) * (IN // 128)
    assert c.elements_by_dtype == {"F8_E4M3": 2 * IN * OUT, "F32": scales}
    assert c.total_elements - c.total_params == scales == c.aux_elements


def test_census_rejects_impossible_bits():
    with pytest.raises(SourceError, match="cannot unpack 5-bit"):
        census(parse(st_bytes(gptq_layer("l.q"))), bits=5)


# ---------------------------------------------------------------------------------------------------------------
# fuzzing: nothing but SourceError ever escapes
# ---------------------------------------------------------------------------------------------------------------
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_BLOB = st_bytes({"a.weight": ("BF16", (4, 4)), "a.qweight": ("I32", (2, 4)), "b": ("F32", (3,))},
                      {"format": "pt"})


def _only_source_errors(blob: bytes, size):
    try:
        h = parse_safetensors_header(blob, file_size=size, name="fuzz")
    except SourceError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    census(h)  # whatever parses must also summarise


@FUZZ
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 1 << 40)))
def test_fuzz_random_bytes(blob, size):
    _only_source_errors(blob, size)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID_BLOB) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(VALID_BLOB)))
def test_fuzz_mutated_valid_file(edits, cut):
    blob = bytearray(VALID_BLOB)
    for pos, value in edits:
        blob[pos] = value
    blob = bytes(blob[: max(cut, 8)]) if cut < 40 else bytes(blob)
    _only_source_errors(blob, len(blob))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20)


@FUZZ
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=4), st.integers(0, 64))
def test_fuzz_json_structures(obj, data_len):
    raw = json.dumps(obj).encode()
    _only_source_errors(struct.pack("<Q", len(raw)) + raw + bytes(data_len), None)
    _only_source_errors(struct.pack("<Q", len(raw)) + raw + bytes(data_len), len(raw) + 8 + data_len)


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=6),
                       st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "BF16", "U8", "F4", "X"]),
                                              "shape": st.lists(st.integers(-2, 9), max_size=3),
                                              "data_offsets": st.lists(st.integers(-1, 300), min_size=2,
                                                                       max_size=2)}),
                       max_size=4),
       st.integers(0, 400))
def test_fuzz_tensor_records(obj, data_len):
    raw = json.dumps(obj).encode()
    _only_source_errors(struct.pack("<Q", len(raw)) + raw + bytes(data_len), len(raw) + 8 + data_len)
