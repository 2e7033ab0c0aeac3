"""GGUF headers: agreement with gguf-py's reader, incremental reads, hostile files, fuzzing, the config mapping."""

from __future__ import annotations

import struct
from math import prod

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramplan.errors import InvalidModelSpec, SourceError
from vramplan.sources.gguf import (
    GGUFArray,
    GGUFFile,
    GGUFTensor,
    file_type_name,
    ggml_types,
    gguf_census,
    gguf_to_config,
    parse_gguf,
    read_gguf,
    read_gguf_split,
)

Q = gguf.GGMLQuantizationType


# ---------------------------------------------------------------------------------------------------------------
# fixtures written with gguf-py's GGUFWriter, checked against gguf-py's GGUFReader
# ---------------------------------------------------------------------------------------------------------------
def quant_rows(rows: int, cols: int, qtype: Q) -> np.ndarray:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return np.zeros((rows, cols // block * size), np.uint8)


def write_model(path, *, endian=gguf.GGUFEndian.LITTLE, alignment=None, tokens=100, big_tensor_rows=4):
    w = gguf.GGUFWriter(str(path), "llama", endianess=endian)
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_block_count(1)
    w.add_context_length(8192)
    w.add_embedding_length(256)
    w.add_feed_forward_length(512)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(15)
    w.add_token_list([f"tok{i}" for i in range(tokens)])
    w.add_array("tokenizer.ggml.scores", [0.5] * tokens)
    w.add_string("tokenizer.chat_template", "{{ messages }} é")
    w.add_tensor("token_embd.weight", quant_rows(tokens, 256, Q.Q4_K), raw_dtype=Q.Q4_K)
    w.add_tensor("blk.0.attn_q.weight", quant_rows(256, 256, Q.Q4_K), raw_dtype=Q.Q4_K)
    w.add_tensor("blk.0.attn_v.weight", quant_rows(128, 256, Q.Q6_K), raw_dtype=Q.Q6_K)
    w.add_tensor("blk.0.ffn_down.weight", quant_rows(256 * big_tensor_rows, 512, Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(256, np.float32))
    w.add_tensor("output.weight", np.zeros((tokens, 256), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("endian,alignment", [(gguf.GGUFEndian.LITTLE, None), (gguf.GGUFEndian.BIG, None),
                                              (gguf.GGUFEndian.LITTLE, 64)])
def test_agrees_with_gguf_py_reader(tmp_path, endian, alignment):
    path = write_model(tmp_path / "m.gguf", endian=endian, alignment=alignment)
    g = read_gguf(path)
    ref = gguf.GGUFReader(str(path))
    assert g.version == 3 and g.big_endian == (endian == gguf.GGUFEndian.BIG)
    assert g.alignment == (alignment or 32)
    assert [t.name for t in g.tensors] == [t.name for t in ref.tensors]
    for mine, theirs in zip(g.tensors, ref.tensors):
        assert mine.ggml_type_name == theirs.tensor_type.name
        assert mine.shape == tuple(int(d) for d in theirs.shape)
        assert mine.nbytes == int(theirs.n_bytes)
        assert g.tensor_data_offset + mine.offset == int(theirs.data_offset)
    assert g.metadata["llama.block_count"] == 1
    assert g.metadata["tokenizer.chat_template"] == "{{ messages }} é"
    assert len(g.metadata["tokenizer.ggml.tokens"]) == 100
    assert g.file_type == "Q4_K_M"


def test_long_arrays_are_kept_as_counts(tmp_path):
    g = read_gguf(write_model(tmp_path / "m.gguf", tokens=70_000))
    tokens = g.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and tokens.type_name == "STRING" and len(tokens) == 70_000
    assert g.metadata["tokenizer.ggml.scores"] == GGUFArray("FLOAT32", 70_000)


def test_reads_only_the_header_incrementally(tmp_path):
    path = write_model(tmp_path / "m.gguf", big_tensor_rows=64)  # ~0.5 MiB of tensor data after the header
    blob = path.read_bytes()
    calls: list[tuple[int, int]] = []

    def read(offset, n):
        calls.append((offset, n))
        return blob[offset:offset + n]

    g = parse_gguf(read, len(blob), name="remote", chunk=512)
    read_bytes = sum(n for _, n in calls)
    assert g.tensor_data_offset + g.tensor_bytes <= len(blob)
    assert read_bytes < g.tensor_data_offset + 4096  # the header, plus at most the last chunk's overshoot
    assert len(blob) > 10 * read_bytes
    assert g == parse_gguf(blob, name="remote")  # same result from bytes


def test_census_and_catalog_sizes(tmp_path):
    g = read_gguf(write_model(tmp_path / "m.gguf"))
    c = gguf_census(g)
    assert c.scheme == "Q4_K_M" and c.tensor_count == 6
    assert c.bytes_by_dtype["Q4_K"] == (100 + 256) * 256 // 256 * 144
    assert c.bytes_by_dtype["Q6_K"] == 128 * 256 // 256 * 210
    assert c.total_params == sum(t.numel for t in g.tensors)
    assert c.quantized_params == c.total_params - 256 - 100 * 256


@pytest.mark.parametrize("name,bpw", [("Q4_K", 4.5), ("Q6_K", 6.5625), ("Q8_0", 8.5), ("Q5_K", 5.5), ("Q4_0", 4.5),
                                      ("IQ4_XS", 4.25), ("MXFP4", 4.25), ("NVFP4", 4.5), ("Q2_K", 2.625),
                                      ("F32", 32), ("BF16", 16)])
def test_type_table_matches_formulas(name, bpw):
    # formulas.md section 2.1 (bits per weight of each ggml block format)
    assert ggml_types()[name].bits_per_weight == bpw


def test_type_table_matches_gguf_py():
    for name, t in ggml_types().items():
        assert gguf.GGML_QUANT_SIZES[Q[name]] == (t.block_elems, t.block_bytes)
        assert Q[name].value == t.id
    assert file_type_name(15) == "Q4_K_M" and file_type_name(7) == "Q8_0" and file_type_name(999) is None


# ---------------------------------------------------------------------------------------------------------------
# hostile files, made byte by byte
# ---------------------------------------------------------------------------------------------------------------
def gstr(s) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def kv_u32(key, v):
    return kv(key, 4, struct.pack("<I", v))


def kv_str(key, v):
    return kv(key, 8, gstr(v))


def tinfo(name, dims, type_id, offset) -> bytes:
    return gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) \
        + struct.pack("<I", type_id) + struct.pack("<Q", offset)


def build(kvs=(), tensors=(), data=0, *, version=3, n_tensors=None, n_kv=None, align=32, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    body += bytes(-len(body) % align)
    return body + bytes(data)


ARCH = kv_str("general.architecture", "llama")
F32 = 0

HOSTILE = [
    ("tiny", b"GGUF", "too short"),
    ("bad magic", build(magic=b"GGML"), "not a GGUF file"),
    ("version 1", build(version=1), "version 1 is not supported"),
    ("version 99", build(version=99), "unsupported GGUF version 99"),
    ("lying tensor count", build([ARCH], n_tensors=10**9), "claims 1,000,000,000 tensors"),
    ("lying kv count", build([ARCH], n_kv=2**40), "metadata entries"),
    ("kv count past end", build([ARCH], n_kv=3, align=1), "truncated"),
    ("empty key", build([ARCH], n_kv=2), "empty metadata key"),
    ("string too long", build([kv("k", 8, struct.pack("<Q", 2**60))]), "claims"),
    ("key too long", build([gstr("k" * 5000) + struct.pack("<I", 4) + bytes(4)]), "claims 5,000 bytes"),
    ("array too long", build([kv("a", 9, struct.pack("<IQ", 4, 2**40))]), "over the 16,777,216-item limit"),
    ("array past end", build([kv("a", 9, struct.pack("<IQ", 4, 2**20))]), "claims 1,048,576 UINT32 items"),
    ("string array too long", build([kv("a", 9, struct.pack("<IQ", 8, 10**7))]), "STRING items"),
    ("nested array", build([kv("a", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 0))]),
     "unsupported array element type 9"),
    ("unknown value type", build([kv("a", 42, bytes(8))]), "unknown value type 42"),
    ("bad bool", build([kv("b", 7, b"\x05")]), "a bool must be 0 or 1"),
    ("non-utf8 key", build([kv(b"\xff\xfe", 4, bytes(4))]), "not valid UTF-8"),
    ("duplicate key", build([ARCH, ARCH]), "duplicate metadata key"),
    ("bad alignment", build([ARCH, kv_u32("general.alignment", 24)]), "power of two"),
    ("alignment wrong type", build([ARCH, kv_str("general.alignment", "32")]), "power of two"),
    ("five dims", build([ARCH], [tinfo("t", [1, 1, 1, 1, 1], F32, 0)], 64), "5 dimensions"),
    ("zero dims", build([ARCH], [tinfo("t", [], F32, 0)], 64), "0 dimensions"),
    ("unknown type", build([ARCH], [tinfo("t", [4], 4, 0)], 64), "unknown ggml type id 4"),
    ("type 99", build([ARCH], [tinfo("t", [4], 99, 0)], 64), "unknown ggml type id 99"),
    ("row not blocks", build([ARCH], [tinfo("t", [33], 12, 0)], 640), "not a multiple of the Q4_K block size 256"),
    ("huge shape", build([ARCH], [tinfo("t", [2**40, 2**40], F32, 0)], 64), "overflows"),
    ("tensor past end", build([ARCH], [tinfo("t", [1024], F32, 0)], 100), "truncated: tensor 't'"),
    ("misaligned offset", build([ARCH], [tinfo("t", [4], F32, 8)], 64), "not aligned"),
    ("overlap", build([ARCH], [tinfo("a", [16], F32, 0), tinfo("b", [16], F32, 32)], 256), "overlaps"),
    ("duplicate tensor", build([ARCH], [tinfo("a", [4], F32, 0), tinfo("a", [4], F32, 32)], 64), "duplicate tensor"),
    ("non-utf8 tensor name", build([ARCH], [tinfo(b"w\xc3", [4], F32, 0)], 64), "not valid UTF-8"),
    ("truncated infos", build([ARCH], [tinfo("t", [4], F32, 0)])[:-40], "truncated"),
]


@pytest.mark.parametrize("label,blob,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_raise_clear_errors(label, blob, message):
    with pytest.raises(SourceError) as err:
        parse_gguf(blob, name="h.gguf")
    assert message in str(err.value) and str(err.value).startswith("h.gguf: ")


def test_hand_built_valid_file_parses():
    blob = build([ARCH, kv_u32("llama.block_count", 2)], [tinfo("a", [32, 2], 8, 0), tinfo("b", [3], F32, 96)],
                 96 + 12)
    g = parse_gguf(blob, name="ok")
    assert [(t.name, t.ggml_type_name, t.shape, t.nbytes) for t in g.tensors] == [
        ("a", "Q8_0", (32, 2), 68), ("b", "F32", (3,), 12)]


def test_lying_tensor_count_reads_nothing_more():
    blob = build([ARCH], n_tensors=10**6)
    calls = []

    def read(offset, n):
        calls.append(n)
        return blob[offset:offset + n]

    with pytest.raises(SourceError, match="tensors"):
        parse_gguf(read, len(blob), name="x", chunk=64)
    assert sum(calls) <= 64


def test_file_size_is_required_for_a_reader():
    with pytest.raises(SourceError, match="file size is needed"):
        parse_gguf(lambda o, n: b"", None, name="x")


def test_reader_errors_become_source_errors():
    def read(offset, n):
        raise OSError("connection reset")

    with pytest.raises(SourceError, match="connection reset"):
        parse_gguf(read, 1000, name="x")


def test_split_set(tmp_path):
    for i in range(2):
        blob = build([ARCH, kv(b"split.no", 2, struct.pack("<H", i)), kv(b"split.count", 2, struct.pack("<H", 2))],
                     [tinfo(f"t{i}", [8], F32, 0)], 32)
        (tmp_path / f"m-{i + 1:05d}-of-00002.gguf").write_bytes(blob)
    parts = read_gguf_split(tmp_path / "m-00002-of-00002.gguf")
    assert [t.name for p in parts for t in p.tensors] == ["t0", "t1"]
    assert gguf_census(parts).tensor_count == 2
    (tmp_path / "m-00001-of-00002.gguf").unlink()
    with pytest.raises(SourceError, match="no such file|cannot read"):
        read_gguf_split(tmp_path / "m-00002-of-00002.gguf")


def test_not_a_regular_file(tmp_path):
    with pytest.raises(SourceError, match="not a regular file"):
        read_gguf(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# fuzzing
# ---------------------------------------------------------------------------------------------------------------
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = build([ARCH, kv_u32("llama.block_count", 2), kv("arr", 9, struct.pack("<IQ", 4, 3) + bytes(12)),
               kv("s", 9, struct.pack("<IQ", 8, 2) + gstr("ab") + gstr("c"))],
              [tinfo("a", [32, 2], 8, 0), tinfo("b", [3], F32, 96)], 96 + 12)


def _only_source_errors(blob: bytes):
    try:
        g = parse_gguf(blob, name="fuzz", chunk=64)
    except SourceError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    gguf_census(g)
    try:
        gguf_to_config(g)
    except InvalidModelSpec:
        pass


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(blob):
    _only_source_errors(b"GGUF" + blob)
    _only_source_errors(blob)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(VALID)))
def test_fuzz_mutated_valid_file(edits, cut):
    blob = bytearray(VALID)
    for pos, value in edits:
        blob[pos] = value
    _only_source_errors(bytes(blob))
    _only_source_errors(bytes(blob[:cut]))


# ---------------------------------------------------------------------------------------------------------------
# gguf_to_config: metadata as llama.cpp's converter writes it -> a config the HF parser turns into the right model
# ---------------------------------------------------------------------------------------------------------------
def fake_gguf(arch: str, meta: dict, *, vocab: int, hidden: int, untied: bool = True, extra_tensors=()) -> GGUFFile:
    tensors = [GGUFTensor("token_embd.weight", "F16", (hidden, vocab), 2 * hidden * vocab, 0)]
    if untied:
        tensors.append(GGUFTensor("output.weight", "F16", (hidden, vocab), 2 * hidden * vocab, 0))
    tensors += [GGUFTensor(n, "F32", (1,), 4, 0) for n in extra_tensors]
    md = {"general.architecture": arch} | {f"{arch}.{k}": v for k, v in meta.items()}
    return GGUFFile("fake.gguf", 3, md, tuple(tensors), 0, 32, 0)


def llama_meta(h, layers, heads, kv, ffn, ctx=131072, **extra):
    return {"embedding_length": h, "block_count": layers, "attention.head_count": heads,
            "attention.head_count_kv": kv, "feed_forward_length": ffn, "context_length": ctx,
            "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 500000.0} | extra


# Parameter totals are the pinned values of reference/formulas.md section 1 (transformers meta-device counts).
CONFIG_CASES = [
    ("Llama-3.1-8B", fake_gguf("llama", llama_meta(4096, 32, 32, 8, 14336, **{"attention.key_length": 128}),
                               vocab=128256, hidden=4096), "llama", 8_030_261_248),
    ("Mistral-7B-v0.1", fake_gguf("llama", llama_meta(4096, 32, 32, 8, 14336, ctx=32768),
                                  vocab=32000, hidden=4096), "llama", 7_241_732_096),
    ("Mixtral-8x7B", fake_gguf("llama", llama_meta(4096, 32, 32, 8, 14336, **{"expert_count": 8,
                                                                               "expert_used_count": 2}),
                               vocab=32000, hidden=4096), "mixtral", 46_702_792_704),
    ("Qwen2.5-7B", fake_gguf("qwen2", llama_meta(3584, 28, 28, 4, 18944), vocab=152064, hidden=3584), "qwen2",
     7_615_616_512),
    ("Qwen2.5-0.5B", fake_gguf("qwen2", llama_meta(896, 24, 14, 2, 4864), vocab=151936, hidden=896, untied=False),
     "qwen2", 494_032_768),
    ("Phi-3-mini", fake_gguf("phi3", llama_meta(3072, 32, 32, 32, 8192, ctx=4096,
                                                **{"attention.sliding_window": 2047}),
                             vocab=32064, hidden=3072), "phi3", 3_821_079_552),
    ("Gemma-2-9B", fake_gguf("gemma2", llama_meta(3584, 42, 16, 8, 14336, ctx=8192,
                                                  **{"attention.key_length": 256, "attention.value_length": 256,
                                                     "attention.sliding_window": 4096}),
                             vocab=256000, hidden=3584, untied=False), "gemma2", 9_241_705_984),
    ("Qwen1.5-MoE-A2.7B", fake_gguf("qwen2moe", llama_meta(2048, 24, 16, 16, 5632, **{
        "expert_count": 60, "expert_used_count": 4, "expert_feed_forward_length": 1408,
        "expert_shared_feed_forward_length": 5632}), vocab=151936, hidden=2048), "qwen2_moe", 14_315_784_192),
    ("DeepSeek-V2-Lite", fake_gguf("deepseek2", llama_meta(2048, 27, 16, 16, 10944, **{
        "expert_count": 64, "expert_used_count": 6, "expert_feed_forward_length": 1408, "expert_shared_count": 2,
        "leading_dense_block_count": 1, "attention.kv_lora_rank": 512, "rope.dimension_count": 64,
        "attention.key_length": 192, "attention.value_length": 128, "expert_gating_func": 1}),
        vocab=102400, hidden=2048), "deepseek_v2", 15_706_484_224),
    ("DeepSeek-V2-Lite (MLA-absorbed GGUF)", fake_gguf("deepseek2", llama_meta(2048, 27, 16, 1, 10944, **{
        "expert_count": 64, "expert_used_count": 6, "expert_feed_forward_length": 1408, "expert_shared_count": 2,
        "leading_dense_block_count": 1, "attention.kv_lora_rank": 512, "rope.dimension_count": 64,
        "attention.key_length": 576, "attention.value_length": 512, "attention.key_length_mla": 192,
        "attention.value_length_mla": 128}), vocab=102400, hidden=2048), "deepseek_v2", 15_706_484_224),
]


@pytest.mark.parametrize("label,g,model_type,params", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_gguf_to_config_gives_the_published_parameter_count(label, g, model_type, params):
    from vramplan.core.model import count_params
    from vramplan.sources.hf_config import parse_config

    cfg = gguf_to_config(g)
    assert cfg["model_type"] == model_type
    spec = parse_config(cfg, name=label)
    assert count_params(spec).total == params


def test_gguf_to_config_fields():
    g = fake_gguf("gemma3", llama_meta(2560, 34, 8, 4, 10240, **{"attention.key_length": 256,
                                                                  "attention.sliding_window": 1024}),
                  vocab=262208, hidden=2560, untied=False)
    cfg = gguf_to_config(g)
    assert cfg["model_type"] == "gemma3_text" and cfg["sliding_window_pattern"] == 6 and cfg["head_dim"] == 256
    assert cfg["tie_word_embeddings"] is True and cfg["vocab_size"] == 262208

    oss = fake_gguf("gpt-oss", llama_meta(2880, 24, 64, 8, 2880, **{
        "expert_count": 32, "expert_used_count": 4, "expert_feed_forward_length": 2880, "attention.key_length": 64,
        "attention.sliding_window": 128}), vocab=201088, hidden=2880)
    cfg = gguf_to_config(oss)
    assert cfg["model_type"] == "gpt_oss" and cfg["num_local_experts"] == 32 and cfg["intermediate_size"] == 2880
    assert cfg["layer_types"][:3] == ["sliding_attention", "full_attention", "sliding_attention"]

    v3 = fake_gguf("deepseek2", llama_meta(7168, 62, 128, 128, 18432, **{
        "expert_count": 256, "expert_used_count": 8, "expert_feed_forward_length": 2048, "expert_shared_count": 1,
        "leading_dense_block_count": 3, "attention.q_lora_rank": 1536, "attention.kv_lora_rank": 512,
        "rope.dimension_count": 64, "attention.key_length": 192, "attention.value_length": 128,
        "expert_gating_func": 2, "nextn_predict_layers": 1}), vocab=129280, hidden=7168,
        extra_tensors=["blk.61.nextn.eh_proj.weight"])
    cfg = gguf_to_config(v3)
    assert cfg["model_type"] == "deepseek_v3" and cfg["topk_method"] == "noaux_tc"
    assert cfg["num_hidden_layers"] == 61 and cfg["num_nextn_predict_layers"] == 1
    assert (cfg["q_lora_rank"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]) == (1536, 128, 128)


def test_gguf_to_config_vocab_from_tokens_and_missing_fields(tmp_path):
    g = read_gguf(write_model(tmp_path / "m.gguf"))
    cfg = gguf_to_config(g)
    assert cfg["vocab_size"] == 100 and cfg["tie_word_embeddings"] is False and cfg["num_key_value_heads"] == 2
    bare = GGUFFile("x", 3, {"general.architecture": "llama"}, (), 0, 32, 0)
    with pytest.raises(InvalidModelSpec, match="llama.attention.head_count"):
        gguf_to_config(bare)
    with pytest.raises(InvalidModelSpec, match="general.architecture"):
        gguf_to_config(GGUFFile("x", 3, {}, (), 0, 32, 0))
    wrong = GGUFFile("x", 3, {"general.architecture": "llama", "llama.attention.head_count": "32"}, (), 0, 32, 0)
    with pytest.raises(InvalidModelSpec, match="expected an integer"):
        gguf_to_config(wrong)


def test_exact_bytes_for_the_file(tmp_path):
    g = read_gguf(write_model(tmp_path / "m.gguf"))
    # every tensor's bytes follow from its type's block size: the file holds exactly these bytes of weights
    types = ggml_types()
    for t in g.tensors:
        ty = types[t.ggml_type_name]
        assert t.nbytes == prod(t.shape) // ty.block_elems * ty.block_bytes
    assert g.tensor_data_offset + max(t.offset + t.nbytes for t in g.tensors) <= g.file_size


meta_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 1 << 20), st.floats(allow_nan=False),
                        st.text(max_size=5), st.tuples(st.integers(0, 64)),
                        st.lists(st.booleans(), max_size=4).map(tuple),
                        st.builds(GGUFArray, st.just("STRING"), st.integers(0, 1 << 20)))
META_KEYS = ["block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
             "feed_forward_length", "context_length", "attention.key_length", "attention.value_length",
             "expert_count", "expert_used_count", "expert_feed_forward_length", "attention.sliding_window",
             "attention.sliding_window_pattern", "rope.dimension_count", "attention.kv_lora_rank",
             "attention.key_length_mla", "nextn_predict_layers", "rope.scaling.type", "rope.scaling.factor"]


@FUZZ
@given(st.sampled_from(["llama", "qwen2", "qwen2moe", "qwen3moe", "gemma3", "deepseek2", "gpt-oss", "phi3", "other"]),
       st.dictionaries(st.sampled_from(META_KEYS), meta_values, max_size=12),
       st.one_of(st.none(), st.integers(0, 10), st.text(max_size=3),
                 st.builds(GGUFArray, st.just("STRING"), st.integers(0, 10))))
def test_fuzz_config_mapping_raises_only_invalid_model_spec(arch, meta, tokens):
    md = {"general.architecture": arch} | {f"{arch}.{k}": v for k, v in meta.items()}
    if tokens is not None:
        md["tokenizer.ggml.tokens"] = tokens
    try:
        cfg = gguf_to_config(GGUFFile("f", 3, md, (), 0, 32, 0))
    except InvalidModelSpec:
        return
    assert {"model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"} <= set(cfg)
