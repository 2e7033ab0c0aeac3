"""The REST API in process: responses equal the CLI's --json, bad input is 4xx JSON naming the field, no path on the
server is reachable, uploads are capped and kept in a bounded memory store, and a burst does not stall the server."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import io
import json
import re
import socket
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from vramplan import cli  # noqa: E402
from vramplan.web import app as web  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CATALOG_CONFIG = REPO / "src/vramplan/catalog/models/meta-llama/Llama-3.1-8B/config.json"


@pytest.fixture(scope="module")
def client():
    return TestClient(web.create_app(), raise_server_exceptions=False)


def cli_json(*argv) -> tuple[int, dict]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main([*argv, "--json"])
    return code, json.loads(out.getvalue())


def command_exists(name: str) -> bool:
    return importlib.util.find_spec(f"vramplan.commands.{cli.COMMANDS[name][0]}") is not None


def flags(params: dict) -> list[str]:
    out = []
    for key, value in params.items():
        if key == "model":
            continue
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


# ----- one code path: the API answers what the CLI prints ------------------------------------------------------

INFERENCE_CASES = [
    {"model": "llama-3.1-8b", "max_model_len": "8k"},
    {"model": "meta-llama/Llama-3.1-8B", "max_model_len": "131072", "batch_size": 4},
    {"model": "qwen3-30b-a3b", "quantization": "fp8", "kv_cache_dtype": "fp8", "max_model_len": "32k"},
    {"model": "llama-3.1-70b", "tensor_parallel_size": 4, "gpu": "h100", "max_model_len": "16k"},
    {"model": "llama-3.1-8b", "engine": "vllm", "gpu": "h100", "max_model_len": "8k"},
    {"model": "llama-3.1-8b", "quantization": "Q4_K_M", "max_model_len": "4096"},
]


@pytest.mark.parametrize("params", INFERENCE_CASES, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_inference_equals_cli_json(client, params):
    code, expected = cli_json("inference", params["model"], *flags(params))
    got = client.get("/api/inference", params=params)
    if code != 0:  # the CLI refused it: the API must refuse it too, with the same message
        assert got.status_code in range(400, 500)
        assert got.json()["error"] in expected["error"]
        return
    assert got.status_code == 200, got.text
    assert got.json() == expected
    posted = client.post("/api/inference", json={**params})
    assert posted.status_code == 200
    assert posted.json() == expected


def test_formats_and_models_equal_cli(client):
    assert client.get("/api/formats").json() == cli_json("formats")[1]
    assert client.get("/api/formats", params={"model": "llama-3.2-3b"}).json() == cli_json("formats", "llama-3.2-3b")[1]
    assert client.get("/api/models").json() == cli_json("models")[1]
    assert client.get("/api/models", params={"search": "qwen"}).json() == cli_json("models", "qwen")[1]


@pytest.mark.parametrize("endpoint,command,api_func,params", [
    ("/api/fit", "fit", "plan_fit", {"model": "llama-3.1-8b", "max_model_len": "8k", "top": 3}),
    ("/api/speed", "speed", "plan_speed", {"model": "llama-3.1-8b", "gpu": "rtx-4090", "max_model_len": "8k"}),
])
def test_fit_and_speed_equal_the_cli_or_the_api(client, endpoint, command, api_func, params):
    got = client.get(endpoint, params=params)
    if command_exists(command):
        code, expected = cli_json(command, params["model"], *flags(params))
        expected.pop("_exit", None)
    else:
        fit_api = pytest.importorskip("vramplan.fit_api")
        expected = json.loads(json.dumps(getattr(fit_api, api_func)(
            params["model"], **{k: v for k, v in params.items() if k != "model"}), default=str))
        expected.pop("_exit", None)
    assert got.status_code == 200, got.text
    assert got.json() == expected


def test_train_equals_cli_or_says_501(client):
    params = {"model": "llama-3.2-1b", "method": "lora", "seq_len": "2k", "batch_size": 2}
    got = client.get("/api/train", params=params)
    if command_exists("train"):
        code, expected = cli_json("train", params["model"], *flags(params))
        assert got.status_code == 200, got.text
        assert got.json() == expected
    elif importlib.util.find_spec("vramplan.training_api") is None:
        assert got.status_code == 501
        assert "not available" in got.json()["error"]
    else:
        assert got.status_code == 200, got.text
        assert got.json()["memory"]["total"] > 0


def test_missing_planning_module_is_a_clear_501(client, monkeypatch):
    def missing(path):
        raise web.NotAvailable(f"vramplan.{path} is not available in this build yet")

    monkeypatch.setattr(web, "_command", lambda name: None)
    monkeypatch.setattr(web, "_module", missing)
    for path in ("/api/train", "/api/fit", "/api/speed", "/api/launch"):
        r = client.get(path, params={"model": "llama-3.1-8b"})
        assert r.status_code == 501, path
        assert "not available" in r.json()["error"]


def test_sweep_points_equal_single_plans(client):
    r = client.get("/api/inference/sweep", params={"model": "llama-3.1-8b", "max_model_len": "8k"})
    assert r.status_code == 200
    points = r.json()["points"]
    contexts = [p["max_model_len"] for p in points]
    assert contexts == sorted(contexts) and 8192 in contexts and len(contexts) <= web.SWEEP_MAX_POINTS
    totals = [p["memory"]["total"] for p in points]
    assert totals == sorted(totals)  # more context never needs less memory
    for p in (points[0], points[-1]):
        single = client.get("/api/inference", params={"model": "llama-3.1-8b", "max_model_len": p["max_model_len"]})
        assert single.json()["memory"] == p["memory"]
    chosen = client.get("/api/inference/sweep", params={"model": "llama-3.1-8b", "contexts": "1k,4096,64k"}).json()
    assert [p["max_model_len"] for p in chosen["points"]] == [1024, 4096, 65536]


def test_catalog_listings(client):
    gpus = client.get("/api/gpus").json()["gpus"]
    assert gpus and all(g["memory_total_bytes"] > 0 and g["key"] for g in gpus)
    opts = client.get("/api/options").json()
    assert "vllm" in opts["inference"]["engine"] and opts["available"]["inference"] is True
    assert "fp8" in opts["kv_cache_dtypes"]


# ----- bad input: 4xx JSON naming the field ----------------------------------------------------------------------

BAD = [
    ({"batch_size": 0}, 422, "batch_size"),
    ({"batch_size": "many"}, 422, "batch_size"),
    ({"tensor_parallel_size": -2}, 422, "tensor_parallel_size"),
    ({"max_model_len": "abc"}, 422, "max_model_len"),
    ({"max_model_len": "0"}, 422, "max_model_len"),
    ({"gpu_memory_utilization": 1.5}, 422, "gpu_memory_utilization"),
    ({"bogus": 1}, 422, "bogus"),
    ({"gpu": "h1000"}, 400, "gpu"),
    ({"quantization": "q9"}, 400, "quantization"),
    ({"kv_cache_dtype": "fp7"}, 400, "kv_cache_dtype"),
    ({"engine": "tensorrt"}, 400, "engine"),
    ({"model": "llama-3.1-8bb"}, 404, "model"),
    ({"model": "/etc/passwd"}, 400, "model"),
    ({"model": "~/models/llama"}, 400, "model"),
    ({"model": "../../etc/passwd"}, 400, "model"),
    ({"model": "..\\secret"}, 400, "model"),
    ({"model": "C:\\models\\x"}, 400, "model"),
    ({"model": "org/name/extra"}, 400, "model"),
    ({"model": "config.json"}, 400, "model"),
    ({"model": "weights.gguf"}, 400, "model"),
    ({"model": "upload:../../etc"}, 400, "model"),
    ({"model": "upload:0123456789abcdef"}, 404, "model"),
    ({"model": "x" * 300}, 422, "model"),
]


@pytest.mark.parametrize("override,status,field", BAD, ids=[str(b[0])[:40] for b in BAD])
def test_bad_parameters_are_4xx_json_naming_the_field(client, override, status, field):
    params = {"model": "llama-3.1-8b", "max_model_len": "8k", **override}
    for r in (client.get("/api/inference", params=params), client.post("/api/inference", json=params)):
        assert r.status_code == status, r.text
        body = r.json()
        assert body["field"] == field
        assert isinstance(body["error"], str) and body["error"]
        assert "Traceback" not in r.text


def test_unknown_names_carry_suggestions(client):
    body = client.get("/api/inference", params={"model": "llama-3.1-8bb"}).json()
    assert "llama-3.1-8b" in body["suggestions"]


def test_a_name_that_exists_on_disk_is_refused(client, tmp_path, monkeypatch):
    (tmp_path / "somemodel").mkdir()
    (tmp_path / "somemodel" / "config.json").write_bytes(CATALOG_CONFIG.read_bytes())
    monkeypatch.chdir(tmp_path)
    r = client.get("/api/inference", params={"model": "somemodel"})
    assert r.status_code == 400 and r.json()["field"] == "model"
    assert "path on the server" in r.json()["error"]


@pytest.mark.parametrize("path", ["/static/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
                                  "/static/../../../../etc/passwd", "/static/index.html%00.js", "/etc/passwd",
                                  "/api/../pyproject.toml"])
def test_no_file_outside_the_static_set_is_served(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text and "[project]" not in r.text


def test_static_assets_ship_in_the_package_and_load_nothing_from_elsewhere(client):
    for name in web.STATIC_FILES:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.content
        # no CDN, no external fonts or scripts: every asset comes from this server
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text), name
        urls = set(re.findall(r"https?://[^\s\"'<>)]+", r.text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)  # an XML namespace, never fetched
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/docs").status_code == 200


def test_openapi_schema_documents_the_endpoints(client):
    spec = client.get("/api/openapi.json").json()
    for path in ("/api/inference", "/api/inference/sweep", "/api/train", "/api/fit", "/api/speed", "/api/gpus",
                 "/api/models", "/api/formats", "/api/config"):
        assert path in spec["paths"], path
    names = {p["name"] for p in spec["paths"]["/api/inference"]["get"]["parameters"]}
    assert {"model", "max_model_len", "batch_size", "kv_cache_dtype", "gpu", "quantization"} <= names


# ----- uploads ---------------------------------------------------------------------------------------------------

def test_upload_plans_like_the_same_file_on_the_command_line(client):
    data = CATALOG_CONFIG.read_bytes()
    r = client.post("/api/config", content=data, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert re.fullmatch(r"upload:[0-9a-f]{16}", body["id"])
    via_file = cli_json("inference", str(CATALOG_CONFIG), "--max-model-len", "8k")[1]
    via_upload = client.get("/api/inference", params={"model": body["id"], "max_model_len": "8k"}).json()
    for key in ("memory", "weights_format", "kv_bytes_per_token", "request"):
        assert via_upload[key] == via_file[key], key
    assert via_upload["model"]["params"] == via_file["model"]["params"] == body["model"]["params"]
    assert via_upload["source"]["kind"] == "upload"
    # the same bytes as multipart give the same id (a content hash), and nothing is written to disk
    again = client.post("/api/config", files={"file": ("config.json", data, "application/json")})
    assert again.status_code == 200 and again.json()["id"] == body["id"]


@pytest.mark.parametrize("content,ctype,status", [
    (b"[1, 2, 3]", "application/json", 400),
    (b"{not json", "application/json", 400),
    (b"", "application/json", 400),
    (b'{"a": {"a": ' * 200 + b"1" + b"}" * 400, "application/json", 400),
    (b'{"model_type": "llama"}', "application/json", 400),
    (b"{}" + b" " * (300 * 1024), "application/json", 413),
    (b"<html></html>", "text/html", 415),
])
def test_bad_uploads_are_refused_with_json(client, content, ctype, status):
    r = client.post("/api/config", content=content, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert r.json()["field"] in ("file", "body")


def test_upload_store_is_a_bounded_lru():
    app = web.create_app()
    c = TestClient(app)
    cfg = json.loads(CATALOG_CONFIG.read_text())
    ids = []
    for i in range(web.UPLOAD_SLOTS + 3):
        variant = copy.deepcopy(cfg)
        variant["vocab_size"] = 32000 + i
        r = c.post("/api/config", content=json.dumps(variant), headers={"content-type": "application/json"})
        assert r.status_code == 200
        ids.append(r.json()["id"])
    assert len(set(ids)) == len(ids)
    assert len(app.state.models.uploads) == web.UPLOAD_SLOTS
    assert c.get("/api/inference", params={"model": ids[0]}).status_code == 404
    assert c.get("/api/inference", params={"model": ids[-1]}).status_code == 200


def test_request_bodies_are_capped(client):
    big = {"model": "llama-3.1-8b", "engine_version": "x" * (web.BODY_MAX_BYTES + 10)}
    r = client.post("/api/inference", content=json.dumps(big), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"


# ----- Hub ids go to the Hub loader, never to the filesystem ------------------------------------------------------

def test_hub_ids_use_the_hub_loader(monkeypatch):
    from vramplan.api import load_model
    from vramplan.errors import SourceError
    from vramplan.sources import loaders

    seen = []

    def fake_hub(repo_id, revision=None, fallback=None):
        seen.append(repo_id)
        if repo_id == "someorg/missing-model":
            raise SourceError("not found on the Hub")
        lm = load_model("llama-3.2-1b")
        changes = {"name": repo_id, "source": "hub", "hf_id": repo_id}
        if hasattr(lm, "_replace"):  # LoadedModel is a NamedTuple (or a dataclass in older builds)
            return lm._replace(**changes)
        from dataclasses import replace

        return replace(lm, **changes)

    monkeypatch.setattr(loaders, "load_hub", fake_hub)
    c = TestClient(web.create_app(), raise_server_exceptions=False)
    ok = c.get("/api/inference", params={"model": "someorg/Some-Model-1B", "max_model_len": "4k"})
    assert ok.status_code == 200 and ok.json()["model"]["name"] == "someorg/Some-Model-1B"
    missing = c.get("/api/inference", params={"model": "someorg/missing-model"})
    assert missing.status_code == 404 and missing.json()["field"] == "model"
    assert seen == ["someorg/Some-Model-1B", "someorg/missing-model"]


# ----- the serve command --------------------------------------------------------------------------------------------

def test_serve_defaults_to_localhost():
    from vramplan.commands import serve

    server = serve.make_server()
    assert server.config.host == "127.0.0.1" and server.config.port == 8000
    assert server.config.limit_concurrency == serve.LIMIT_CONCURRENCY
    parser, _ = web._command("serve")
    ns = parser.parse_args([])
    assert (ns.host, ns.port) == ("127.0.0.1", 8000)


def test_serve_rejects_a_bad_port():
    code = cli.main(["serve", "--port", "70000"])
    assert code == 2


def test_serve_without_the_web_extra_says_what_to_install(monkeypatch):
    import builtins

    from vramplan.commands import serve
    from vramplan.errors import VramplanError

    real_import = builtins.__import__

    def no_uvicorn(name, *a, **kw):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'", name="uvicorn")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    with pytest.raises(VramplanError, match=r"pip install 'vramplan\[web\]'"):
        serve.make_server()


# ----- a burst of requests over loopback -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_server():
    from vramplan.commands.serve import make_server

    server = make_server("127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_a_burst_of_requests_does_not_stall_the_server(live_server):
    urls = []
    for i in range(200):
        kind = i % 4
        if kind == 0:
            urls.append(f"/api/inference?model=llama-3.1-8b&max_model_len={1024 * (1 + i % 64)}")
        elif kind == 1:
            urls.append("/api/inference?model=qwen3-30b-a3b&quantization=fp8&batch_size=" + str(1 + i % 8))
        elif kind == 2:
            urls.append("/api/inference?model=/etc/passwd")
        else:
            urls.append("/api/inference/sweep?model=llama-3.2-1b&contexts=1k,8k,32k")

    async def burst():
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=live_server, limits=limits, timeout=60.0) as ac:
            return await asyncio.gather(*(ac.get(u) for u in urls))

    # the bound is generous (a safety net against a stall, not a speed test)
    responses = asyncio.run(asyncio.wait_for(burst(), timeout=120))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 150 and codes.count(400) == 50
    for r in responses:
        assert r.headers["content-type"].startswith("application/json")
    after = httpx.get(live_server + "/api/health", timeout=10)
    assert after.status_code == 200 and after.json()["ok"] is True


@pytest.mark.parametrize("command,model", [
    ("inference", web.InferenceRequest), ("train", web.TrainRequest), ("fit", web.FitRequest),
    ("speed", web.SpeedRequest), ("launch", web.LaunchRequest),
])
def test_every_request_field_is_an_option_of_the_command(command, model):
    """The API takes exactly the CLI's options (by their dest names), so one dict serves both."""
    cmd = web._command(command)
    if cmd is None:
        pytest.skip(f"the {command} command is not in this build")
    parser, _ = cmd
    dests = {a.dest for a in parser._actions}
    extra = web.FIT_TRAINING_FIELDS if command == "fit" else frozenset()
    assert set(model.model_fields) - {"model"} - extra <= dests
    assert extra <= set(web.TrainRequest.model_fields)


def test_training_fit_uses_the_training_options(client):
    params = {"model": "llama-3.2-1b", "workload": "training", "method": "lora", "seq_len": "8k",
              "gpus": "h100,rtx-4090"}
    fit = client.get("/api/fit", params=params)
    assert fit.status_code == 200, fit.text
    train = client.get("/api/train", params={"model": "llama-3.2-1b", "method": "lora", "seq_len": "8k"}).json()
    one = [row for row in fit.json()["by_gpu"] if row.get("count") == 1]
    assert one and all(row["memory_per_gpu"] == train["memory"]["total"] for row in one)


def test_train_peft_options_equal_cli(client):
    """PEFT method options reach `vramplan train` through the API (POST body and repeated GET parameters)."""
    body = {"model": "llama-3.2-1b", "method": "vera", "peft_option": ["r=256"], "seq_len": 1024}
    cli = cli_json("train", "llama-3.2-1b", "--method", "vera", "--peft-option", "r=256", "--seq-len", "1024")[1]
    post = client.post("/api/train", json=body)
    assert post.status_code == 200, post.text
    assert post.json() == cli
    get = client.get("/api/train", params={"model": "llama-3.2-1b", "method": "vera", "peft_option": "r=256",
                                           "seq_len": "1024"})
    assert get.status_code == 200, get.text
    assert get.json() == cli
    bad = client.post("/api/train", json={**body, "peft_option": ["r=; rm -rf"]})
    assert bad.status_code in (400, 422) and "peft_option" in bad.text
