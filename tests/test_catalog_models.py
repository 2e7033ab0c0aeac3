"""The embedded offline model catalog (src/vramplan/catalog/models.py + catalog/models/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramplan import errors
from vramplan.catalog import models as cat

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = (PROJECT_ROOT / ".." / "shared").resolve()
SHARED_CONFIGS = SHARED / "configs"
PUBLIC_JSONL = SHARED / "groundtruth" / "public.jsonl"

FILE_NAMES = ("config.json", "quantize_config.json", "model.safetensors.index.json")


def _shared_files() -> list[Path]:
    if not SHARED_CONFIGS.is_dir():
        return []
    return sorted(p for name in FILE_NAMES for p in SHARED_CONFIGS.rglob(name))


def _rows(*categories: str) -> list[dict]:
    if not PUBLIC_JSONL.is_file():
        return []
    out = []
    for line in PUBLIC_JSONL.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["category"] in categories:
                out.append(row)
    return out


needs_shared_configs = pytest.mark.skipif(not SHARED_CONFIGS.is_dir(), reason="../shared/configs not present")
needs_public = pytest.mark.skipif(not PUBLIC_JSONL.is_file(), reason="../shared/groundtruth/public.jsonl not present")


# ---- index integrity --------------------------------------------------------------------------------------


def test_catalog_is_not_empty_and_entries_are_well_formed():
    entries = cat.list_models()
    assert len(entries) >= 50
    for e in entries:
        assert e.key == e.key.lower() and e.key.strip() == e.key and " " not in e.key
        assert "/" in e.hf_id
        assert e.provenance in cat.PROVENANCES
        assert e.source.strip(), e.key
        assert e.family.strip(), e.key
        assert isinstance(e.aliases, tuple)
        files = cat.entry_files(e)
        assert "config.json" in files, e.key
        cfg = cat.load_catalog_config(e)
        assert isinstance(cfg.get("model_type"), str), e.key
        assert isinstance(cfg.get("architectures"), list), e.key


def test_entries_are_frozen():
    e = cat.list_models()[0]
    with pytest.raises(AttributeError):
        e.key = "other"  # type: ignore[misc]


def test_names_and_aliases_are_unique_across_the_catalog():
    seen: dict[str, str] = {}
    for e in cat.list_models():
        for name in {n.lower() for n in e.names()}:
            assert name not in seen or seen[name] == e.key, f"{name!r} used by {seen.get(name)} and {e.key}"
            seen[name] = e.key


def test_every_spelling_finds_its_own_entry():
    for e in cat.list_models():
        for name in e.names():
            assert cat.find_model(name) is e, name
            assert cat.find_model(name.upper()) is e, name


def test_built_entries_say_so_and_cite_a_source():
    built = [e for e in cat.list_models() if e.built]
    assert len(built) >= 20
    for e in built:
        assert e.provenance == "built-from-published-facts"
        assert "public.jsonl#" in e.source or "@" in e.source, e.key
        assert e.notes.strip(), e.key


def test_verbatim_sources_name_repo_commit_and_path():
    for e in cat.list_models():
        if e.built:
            continue
        assert "config.json <- " in e.source, e.key
        for part in e.source.split(" ; "):
            _file, _, where = part.partition(" <- ")
            repo, _, rest = where.partition("@")
            commit, _, path = rest.partition(":")
            assert "/" in repo and len(commit) == 40 and path, (e.key, part)


def test_extra_files_are_exposed_where_present():
    gptq = cat.resolve_model("llama-2-13b-chat-gptq")
    assert set(cat.entry_files(gptq)) == {"config.json", "quantize_config.json"}
    oss = cat.resolve_model("gpt-oss-20b")
    assert set(cat.entry_files(oss)) == {"config.json", "model.safetensors.index.json"}
    plain = cat.resolve_model("llama-3.1-8b")
    assert set(cat.entry_files(plain)) == {"config.json"}


# ---- lookup ----------------------------------------------------------------------------------------------

LOOKUPS = [
    ("llama-3.1-70b", "llama-3.1-70b"),
    ("LLAMA-3.1-70B", "llama-3.1-70b"),
    ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
    ("Llama-3.1-70B", "llama-3.1-70b"),
    ("llama3.1-70b", "llama-3.1-70b"),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),  # org + alias
    ("  qwen3-30b-a3b ", "qwen3-30b-a3b"),
    ("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-instruct"),
    ("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b"),
    ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
    ("gpt-oss-20b", "gpt-oss-20b"),
    ("google/gemma-3-4b-it", "gemma-3-4b-it"),
    ("google/gemma-2-9b-it", "gemma-2-9b"),
    ("TheBloke/Llama-2-13B-chat-GPTQ", "llama-2-13b-chat-gptq"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama-4-scout-17b-16e-instruct"),
]


@pytest.mark.parametrize(("name", "key"), LOOKUPS)
def test_find_model(name, key):
    entry = cat.find_model(name)
    assert entry is not None and entry.key == key
    assert cat.resolve_model(name) is entry


@pytest.mark.parametrize("name", ["", "   ", "llama-3.1-7b", "other-org/Llama-3.1-70B", "meta-llama/", "gpt-5"])
def test_find_model_misses(name):
    assert cat.find_model(name) is None


SUGGEST = [
    ("llama-3.1-7b", {"llama-3.1-70b", "llama-3.1-8b"}),
    ("qwen3-7b", {"qwen3-8b"}),
    ("mixtral-8x7", {"mixtral-8x7b"}),
    ("deepseek-v4", {"deepseek-v3"}),
    ("meta-llama/Llama-3.1-7B", {"llama-3.1-70b", "llama-3.1-8b"}),
]


@pytest.mark.parametrize(("name", "expected"), SUGGEST)
def test_unknown_name_suggests_close_matches(name, expected):
    with pytest.raises(errors.UnknownName) as info:
        cat.resolve_model(name)
    err = info.value
    assert err.kind == "model" and err.name == name
    assert expected <= set(err.suggestions), err.suggestions
    assert len(err.suggestions) <= 3
    assert all(cat.find_model(s) is not None for s in err.suggestions)
    assert "\n" not in str(err) and name in str(err)


def test_unknown_name_without_close_match_has_no_suggestions():
    with pytest.raises(errors.UnknownName) as info:
        cat.resolve_model("zzzz-qqqq-0000")
    assert info.value.suggestions == []


# ---- the shared verbatim configs ------------------------------------------------------------------------


@needs_shared_configs
@pytest.mark.parametrize("src", _shared_files(), ids=lambda p: str(p.relative_to(SHARED_CONFIGS)))
def test_shared_config_files_are_copied_byte_for_byte(src):
    rel = src.relative_to(SHARED_CONFIGS)
    hf_id = str(rel.parent).replace("\\", "/")
    entry = cat.find_model(hf_id)
    assert entry is not None, f"{hf_id} is not in the catalog"
    assert entry.hf_id == hf_id
    assert entry.provenance in ("verbatim", "verbatim-whitespace-edited")
    copy = cat.entry_files(entry).get(src.name)
    assert copy is not None, f"{rel} not copied"
    assert copy.read_bytes() == src.read_bytes()


@needs_shared_configs
def test_whitespace_edited_provenance_matches_the_manifest():
    manifest = json.loads((SHARED_CONFIGS / "MANIFEST.json").read_text(encoding="utf-8"))
    for m in manifest["models"]:
        if not m["found"]:
            continue
        entry = cat.find_model(m["hf_id"])
        assert entry is not None, m["hf_id"]
        edited = str(m["byte_verbatim"]).startswith("no")
        assert (entry.provenance == "verbatim-whitespace-edited") == edited, m["hf_id"]
        config_src = next(f for f in m["files"] if f["file"] == "config.json")
        assert f"{config_src['source_repo']}@{config_src['commit']}:{config_src['path']}" in entry.source


# ---- the groundtruth rows -------------------------------------------------------------------------------

ARCH_ROWS = _rows("config_arch", "param_count")


@needs_public
def test_groundtruth_has_rows_to_check():
    assert len(ARCH_ROWS) >= 50


@needs_public
@pytest.mark.parametrize("row", ARCH_ROWS, ids=lambda r: r["id"])
def test_every_groundtruth_model_resolves(row):
    entry = cat.resolve_model(row["hf_id"])
    assert entry.hf_id.lower() == row["hf_id"].lower()


# config keys compared with the rows: the architecture numbers (rows also carry engine-edited context lengths)
ARCH_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "vocab_size", "tie_word_embeddings", "moe_intermediate_size", "num_experts", "num_experts_per_tok",
    "num_local_experts", "shared_expert_intermediate_size", "n_routed_experts", "n_shared_experts",
    "first_k_dense_replace", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
)


def _text_config(cfg: dict) -> dict:
    return cfg.get("text_config", cfg)


@needs_public
@pytest.mark.parametrize("row", _rows("config_arch"), ids=lambda r: r["id"])
def test_catalog_configs_carry_the_row_architecture(row):
    entry = cat.resolve_model(row["hf_id"])
    cfg = _text_config(cat.load_catalog_config(entry))
    want = row["config"]
    checked = 0
    for key in ARCH_KEYS:
        if key not in want:
            continue
        got = cfg.get(key)
        if got is None and key == "num_key_value_heads":
            got = cfg.get("num_attention_heads")  # HF default: MHA
        if got is None and key == "tie_word_embeddings":
            got = True  # PretrainedConfig default
        assert got == want[key], f"{entry.key}: {key} = {got!r}, row says {want[key]!r}"
        checked += 1
    assert checked >= 5
    head_dim = want.get("head_dim", want.get("head_dim_effective"))
    if head_dim and "kv_lora_rank" not in want:
        got = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        assert got == head_dim, f"{entry.key}: head_dim {got}, row says {head_dim}"


@needs_shared_configs
@needs_public
def test_every_row_without_a_shared_config_is_a_built_entry_citing_its_rows():
    shared = {str(p.parent.relative_to(SHARED_CONFIGS)).lower() for p in SHARED_CONFIGS.rglob("config.json")}
    row_ids: dict[str, list[str]] = {}
    for row in ARCH_ROWS:
        row_ids.setdefault(row["hf_id"].lower(), []).append(row["id"])
    for hf_id, ids in row_ids.items():
        entry = cat.resolve_model(hf_id)
        if hf_id in shared:
            assert not entry.built, entry.key
        else:
            assert entry.built, entry.key
            assert any(f"public.jsonl#{i} " in entry.source + " " for i in ids), (entry.key, ids)
