"""The Hub reader against a local HTTP server that answers the endpoints huggingface_hub uses.

The real huggingface_hub code path runs (hf_hub_download, get_hf_file_metadata, its HTTP session), pointed at
127.0.0.1 through HF_ENDPOINT, with HF_HOME in a temporary folder. Nothing touches the internet.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import gguf
import numpy as np
import pytest

from vramplan.errors import SourceError
from vramplan.sources.hub import (
    FIRST_READ_BYTES,
    HubError,
    fetch_hub_files,
    fetch_hub_gguf,
    hub_settings,
    parse_hub_gguf_ref,
)

TOKEN = "hf_testtoken123"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hanging up mid-body is expected here
        pass


class FakeHub:
    """repos: {repo_id: {"refs": {name: commit}, "files": {commit: {filename: bytes}}, "gated": bool}}."""

    def __init__(self):
        self.repos: dict = {}
        self.log: list[dict] = []
        self.ignore_range = False
        self.fake_sizes: dict[str, int] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, head=True)

            def do_GET(self):
                hub.answer(self, head=False)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def add(self, repo_id: str, files: dict[str, bytes], *, ref: str = "main", gated: bool = False) -> str:
        commit = hashlib.sha1(repr((repo_id, ref, sorted(files))).encode()).hexdigest()
        repo = self.repos.setdefault(repo_id, {"refs": {}, "files": {}, "gated": gated})
        repo["refs"][ref] = commit
        repo["files"][commit] = files
        return commit

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def sent(self, filename: str) -> int:
        return sum(e["sent"] for e in self.log if e["file"] == filename)

    # -- the endpoint: /{repo_id}/resolve/{revision}/{filename} -------------------------------------------------
    def answer(self, h: BaseHTTPRequestHandler, head: bool):
        parts = unquote(urlparse(h.path).path).lstrip("/").split("/")
        entry = {"method": h.command, "path": h.path, "range": h.headers.get("Range"), "sent": 0, "file": None,
                 "auth": h.headers.get("Authorization")}
        self.log.append(entry)
        if len(parts) < 5 or parts[2] != "resolve":
            return self.reply(h, 404, {"X-Error-Code": "EntryNotFound"}, b"", head)
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        entry["file"] = filename
        repo = self.repos.get(repo_id)
        if repo is None:
            return self.reply(h, 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
                              b"", head)
        if repo["gated"] and h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(h, 403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, b"", head)
        commit = repo["refs"].get(revision, revision if revision in repo["files"] else None)
        if commit is None:
            return self.reply(h, 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "no revision"}, b"",
                              head)
        data = repo["files"][commit].get(filename)
        base = {"X-Repo-Commit": commit}
        if data is None:
            return self.reply(h, 404, base | {"X-Error-Code": "EntryNotFound", "X-Error-Message": "no entry"}, b"",
                              head)
        etag = '"' + hashlib.sha256(data).hexdigest() + '"'
        headers = base | {"ETag": etag, "Accept-Ranges": "bytes"}
        size = self.fake_sizes.get(filename, len(data))
        rng = h.headers.get("Range")
        if rng and not self.ignore_range and not head:
            start, _, end = rng.removeprefix("bytes=").partition("-")
            start, end = int(start), min(int(end), len(data) - 1)
            body = data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
            return self.reply(h, 206, headers, body, head, entry)
        if head:
            headers["Content-Length"] = str(size)
            return self.reply(h, 200, headers, b"", True, entry, length_set=True)
        return self.reply(h, 200, headers, data, head, entry)

    @staticmethod
    def reply(h, status, headers, body, head, entry=None, length_set=False):
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            if not length_set:
                h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if not head and body:
                for i in range(0, len(body), 16384):
                    h.wfile.write(body[i:i + 16384])
                    if entry is not None:
                        entry["sent"] += len(body[i:i + 16384])
        except (BrokenPipeError, ConnectionResetError):
            pass


# ---------------------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------------------
def st_file(tensors: dict[str, tuple[str, tuple[int, ...]]], pad_header_to: int = 0) -> bytes:
    sizes = {"BF16": 2, "F32": 4, "I32": 4, "F16": 2}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * max(pad_header_to - len(raw), -len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000,
          "torch_dtype": "bfloat16"}
BIG = {"model.embed_tokens.weight": ("BF16", (1000, 256)), "model.layers.0.mlp.weight": ("BF16", (512, 512))}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    # the library read these at import; the saved-login path must not find a real token on this machine
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.close()


def add_single(hub, repo="org/tiny", **kw):
    return hub.add(repo, {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": st_file(BIG)}, **kw)


# ---------------------------------------------------------------------------------------------------------------
# online
# ---------------------------------------------------------------------------------------------------------------
def test_settings_follow_the_environment_now(hub, tmp_path, monkeypatch):
    s = hub_settings()
    assert s.endpoint == hub.url and not s.offline and s.cache_dir == str(tmp_path / "hf_home" / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_settings().offline


def test_single_file_repo_reads_config_and_header_only(hub):
    commit = add_single(hub)
    art = fetch_hub_files("org/tiny")
    assert art.source == "hub" and art.commit == commit and art.endpoint == hub.url
    assert art.config["hidden_size"] == 64
    assert art.census.total_params == 1000 * 256 + 512 * 512
    assert art.census.bytes_by_dtype == {"BF16": 2 * (1000 * 256 + 512 * 512)}
    assert art.stored_weight_bytes == 2 * (1000 * 256 + 512 * 512)
    weights = len(st_file(BIG))
    assert weights > 10 * FIRST_READ_BYTES
    assert 0 < hub.sent("model.safetensors") <= FIRST_READ_BYTES  # the header, never the weights
    ranges = [e["range"] for e in hub.log if e["file"] == "model.safetensors" and e["method"] == "GET"]
    assert ranges == [f"bytes=0-{FIRST_READ_BYTES - 1}"]
    # no file outside config / quantize_config / weights headers was asked for
    assert {e["file"] for e in hub.log} <= {"config.json", "quantize_config.json", "hf_quant_config.json", "model.safetensors.index.json",
                                            "model.safetensors"}


@pytest.mark.parametrize("ignore_range", [False, True])
def test_sharded_repo_and_a_header_larger_than_the_first_read(hub, ignore_range):
    hub.ignore_range = ignore_range
    shard1 = st_file({"a.weight": ("BF16", (64, 64))}, pad_header_to=3 * FIRST_READ_BYTES)
    shard2 = st_file({"b.weight": ("F32", (32,)), "c.weight": ("BF16", (4, 4))})
    index = {"metadata": {"total_size": 0}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors",
        "c.weight": "model-00002-of-00002.safetensors"}}
    hub.add("org/sharded", {"config.json": json.dumps(CONFIG).encode(),
                            "model.safetensors.index.json": json.dumps(index).encode(),
                            "model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2})
    art = fetch_hub_files("org/sharded")
    assert art.census.files == 2 and art.census.total_params == 64 * 64 + 32 + 16
    gets = [e["range"] for e in hub.log if e["file"] == "model-00001-of-00002.safetensors" and e["method"] == "GET"]
    assert len(gets) == 2 and gets[1].startswith(f"bytes={FIRST_READ_BYTES}-")
    if not ignore_range:
        assert hub.sent("model-00001-of-00002.safetensors") == len(shard1) - 64 * 64 * 2  # header only


def test_server_ignoring_range_is_hung_up_on(hub, monkeypatch):
    from vramplan.sources import hub as hub_mod

    pulled = []
    real = hub_mod._read_at_most

    def counting(chunks, n):
        def counted():
            for chunk in chunks:
                pulled.append(len(chunk))
                yield chunk
        return real(counted(), n)

    monkeypatch.setattr(hub_mod, "_read_at_most", counting)
    add_single(hub)
    hub.ignore_range = True
    art = fetch_hub_files("org/tiny")
    assert art.census.total_params == 1000 * 256 + 512 * 512
    # the answers were whole files (200), but no more than the first read plus one network chunk was pulled
    weights = len(st_file(BIG))
    assert sum(pulled) < FIRST_READ_BYTES + (256 << 10) < weights


def test_quantize_config_and_remote_code_note(hub):
    cfg = dict(CONFIG, auto_map={"AutoModelForCausalLM": "modeling_evil.EvilModel"})
    hub.add("org/gptq", {"config.json": json.dumps(cfg).encode(),
                         "quantize_config.json": json.dumps({"bits": 8, "group_size": 128}).encode(),
                         "modeling_evil.py": b"raise SystemExit('remote code ran')",
                         "model.safetensors": st_file({"l.qweight": ("I32", (16, 64)), "l.g_idx": ("I32", (64,))})})
    art = fetch_hub_files("org/gptq")
    assert art.quantize_config == {"bits": 8, "group_size": 128}
    assert art.census.scheme == "gptq" and art.census.bits == 8 and art.census.total_params == 16 * 64 * 4
    assert any("never runs it" in n for n in art.notes)
    assert all(e["file"] != "modeling_evil.py" for e in hub.log)


def test_modelopt_hf_quant_config_from_the_hub(hub):
    hq = {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8", "exclude_modules": ["lm_head"]}}
    hub.add("nvidia/tiny-fp8", {"config.json": json.dumps(CONFIG).encode(),
                                "hf_quant_config.json": json.dumps(hq).encode()})
    art = fetch_hub_files("nvidia/tiny-fp8", headers=False)
    assert art.quantize_config == {"quant_algo": "FP8", "exclude_modules": ["lm_head"], "quant_method": "modelopt"}


def test_revision(hub):
    add_single(hub)
    v1 = hub.add("org/tiny", {"config.json": json.dumps(dict(CONFIG, hidden_size=96)).encode()}, ref="v1")
    art = fetch_hub_files("org/tiny", revision="v1", headers=False)
    assert art.config["hidden_size"] == 96 and art.commit == v1 and art.revision == "v1"
    with pytest.raises(HubError) as err:
        fetch_hub_files("org/tiny", revision="nope")
    assert err.value.reason == "revision-not-found"


def test_gated_needs_a_token(hub, monkeypatch):
    add_single(hub, repo="meta/gated", gated=True)
    with pytest.raises(HubError) as err:
        fetch_hub_files("meta/gated")
    assert err.value.reason == "gated" and "HF_TOKEN" in str(err.value)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    art = fetch_hub_files("meta/gated")
    assert art.census is not None and art.source == "hub"
    assert all(e["auth"] == f"Bearer {TOKEN}" for e in hub.log if e["file"] == "model.safetensors")
    monkeypatch.delenv("HF_TOKEN")
    assert fetch_hub_files("meta/gated", token=TOKEN).source == "hub"  # an explicit token works too


@pytest.mark.parametrize("repo,reason", [("org/missing", "not-found"), ("org/noconfig", "no-config"),
                                         ("not a repo", "invalid"), ("../etc", "invalid")])
def test_errors_have_reasons(hub, repo, reason):
    hub.add("org/noconfig", {"model-Q4_K_M.gguf": b"GGUF"})
    with pytest.raises(HubError) as err:
        fetch_hub_files(repo)
    assert err.value.reason == reason
    assert isinstance(err.value, SourceError)


def test_oversized_config_is_refused_before_download(hub):
    add_single(hub)
    hub.fake_sizes["config.json"] = 11 << 20
    with pytest.raises(SourceError, match="more than the 10,485,760-byte limit"):
        fetch_hub_files("org/tiny")
    assert all(e["method"] == "HEAD" for e in hub.log if e["file"] == "config.json")


def test_bad_remote_header_is_a_clear_error(hub):
    blob = struct.pack("<Q", 50) + b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 9]}}' + bytes(9)
    blob = struct.pack("<Q", len(blob) - 8 - 9) + blob[8:]
    hub.add("org/bad", {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": blob})
    with pytest.raises(SourceError, match="needs 8"):
        fetch_hub_files("org/bad")


# ---------------------------------------------------------------------------------------------------------------
# offline and unreachable: the cache answers, and says so
# ---------------------------------------------------------------------------------------------------------------
def test_offline_mode_uses_the_cache(hub, monkeypatch):
    commit = add_single(hub)
    online = fetch_hub_files("org/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(hub.log)
    art = fetch_hub_files("org/tiny")
    assert len(hub.log) == n  # not one request
    assert art.source == "cache" and art.config == online.config and art.commit == commit
    assert any("offline mode" in note for note in art.notes)
    assert art.census is None and any("not in the cache" in note for note in art.notes)
    with pytest.raises(HubError) as err:
        fetch_hub_files("org/other")
    assert err.value.reason == "offline" and "not in the Hugging Face cache" in str(err.value)


def test_offline_reads_headers_of_cached_weights(hub, monkeypatch):
    import huggingface_hub

    add_single(hub)
    fetch_hub_files("org/tiny")
    huggingface_hub.hf_hub_download("org/tiny", "model.safetensors", endpoint=hub.url,
                                    cache_dir=hub_settings().cache_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    art = fetch_hub_files("org/tiny")
    assert art.source == "cache" and art.census.total_params == 1000 * 256 + 512 * 512


def test_unreachable_hub_falls_back_to_the_cache(hub, monkeypatch):
    add_single(hub)
    fetch_hub_files("org/tiny")
    hub.close()
    art = fetch_hub_files("org/tiny")
    assert art.source == "cache" and "could not be reached" in art.notes[0]
    with pytest.raises(HubError) as err:
        fetch_hub_files("org/never-fetched")
    assert err.value.reason == "unreachable"


# ---------------------------------------------------------------------------------------------------------------
# GGUF in a repo, by range requests
# ---------------------------------------------------------------------------------------------------------------
def gguf_blob(tmp_path, rows=16384) -> bytes:
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_block_count(1)
    w.add_embedding_length(256)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_feed_forward_length(512)
    w.add_context_length(32768)
    w.add_file_type(15)
    w.add_token_list([f"t{i}" for i in range(300)])
    w.add_tensor("token_embd.weight", np.zeros((300, 256), np.float16))
    w.add_tensor("blk.0.ffn_down.weight", np.zeros((rows, 256 // 32 * 34), np.uint8),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def test_remote_gguf_by_range_requests(hub, tmp_path, monkeypatch):
    blob = gguf_blob(tmp_path)
    hub.add("org/tiny-GGUF", {"model-Q4_K_M.gguf": blob})
    res = fetch_hub_gguf("org/tiny-GGUF", "model-Q4_K_M.gguf")
    assert res.source == "hub" and res.census.scheme == "Q4_K_M"
    assert res.config["model_type"] == "qwen2" and res.config["vocab_size"] == 300
    assert [t.name for f in res.files for t in f.tensors] == ["token_embd.weight", "blk.0.ffn_down.weight"]
    header_end = res.files[0].tensor_data_offset
    assert hub.sent("model-Q4_K_M.gguf") < header_end + (1 << 20)
    assert hub.sent("model-Q4_K_M.gguf") < len(blob) / 2
    # offline: only the cache, which does not hold it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as err:
        fetch_hub_gguf("org/tiny-GGUF", "model-Q4_K_M.gguf")
    assert err.value.reason == "offline"


def test_remote_gguf_errors(hub, tmp_path):
    hub.add("org/g", {"bad.gguf": b"GGUF" + bytes(100)})
    with pytest.raises(SourceError, match="unsupported GGUF version 0"):
        fetch_hub_gguf("org/g", "bad.gguf")
    with pytest.raises(HubError) as err:
        fetch_hub_gguf("org/g", "absent.gguf")
    assert err.value.reason == "not-found" and "absent.gguf" in str(err.value)
    with pytest.raises(HubError, match="not a .gguf file name"):
        fetch_hub_gguf("org/g", "../x.gguf")


@pytest.mark.parametrize("text,expected", [
    ("bartowski/Llama-3.1-8B-GGUF/Llama-3.1-8B-Q4_K_M.gguf", ("bartowski/Llama-3.1-8B-GGUF",
                                                             "Llama-3.1-8B-Q4_K_M.gguf")),
    ("org/repo/sub/dir/x-00001-of-00002.gguf", ("org/repo", "sub/dir/x-00001-of-00002.gguf")),
    ("meta-llama/Llama-3.1-8B", None),
    ("org/repo/../x.gguf", None),
    ("model-Q4_K_M.gguf", None),
])
def test_parse_hub_gguf_ref(text, expected):
    assert parse_hub_gguf_ref(text) == expected
