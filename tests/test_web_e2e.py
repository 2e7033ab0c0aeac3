"""The web page end to end in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A real uvicorn serves the app on 127.0.0.1; the browser loads the page, changes inputs, and every number checked on
the page is compared with what the REST API answers for the same inputs. A screenshot is saved (and copied to
/tmp/vramplan-screenshot.png for people to look at).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("VRAMPLAN_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[1]
CATALOG_CONFIG = REPO / "src/vramplan/catalog/models/meta-llama/Llama-3.2-1B/config.json"
SHARED_SCREENSHOT = Path("/tmp/vramplan-screenshot.png")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 20_000
GiB, GB = 2**30, 10**9


@pytest.fixture(scope="module")
def server():
    from vramplan.commands.serve import make_server

    srv = make_server("127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context, server):
    pg = browser_context.new_page()
    pg.problems = []
    pg.requests = []
    pg.on("pageerror", lambda exc: pg.problems.append(str(exc)))
    pg.on("request", lambda req: pg.requests.append(req.url))
    yield pg
    pg.close()


def api(server: str, path: str, **params) -> dict:
    url = f"{server}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def gib(n: int) -> str:
    return f"{n / GiB:,.2f} GiB"


def open_page(page, server: str, query: str = "", result: bool = True) -> None:
    page.goto(f"{server}/{query}")
    page.wait_for_selector("html[data-ready]")
    if result:
        page.wait_for_selector("#summary .big")


def total_text(page) -> str:
    return page.inner_text("#summary .big").split("\n")[0].strip()


def wait_total(page, expected: str) -> None:
    page.wait_for_function("(t) => document.querySelector('#summary .big') && "
                           "document.querySelector('#summary .big').textContent.startsWith(t)", arg=expected)


def only_local(page, server: str) -> None:
    foreign = [u for u in page.requests if not (u.startswith(server) or u.startswith("data:"))]
    assert not foreign, foreign


def test_page_follows_the_api_as_inputs_change(page, server, tmp_path):
    open_page(page, server, "?model=llama-3.1-8b&max_model_len=8k")
    expected = api(server, "/api/inference", model="llama-3.1-8b", max_model_len="8k")
    assert total_text(page).startswith(gib(expected["memory"]["total"]))
    # the breakdown table carries each component, labelled GiB
    table = page.inner_text("#breakdown")
    for name, value in expected["memory"].items():
        if name != "total":
            assert gib(value) in table, name
    # the stacked bar has one segment per non-zero component
    parts = page.eval_on_selector_all("#bar rect[data-part]", "els => els.map(e => e.dataset.part)")
    assert parts == [k for k, v in expected["memory"].items() if k != "total" and v > 0]

    # change the context: the page and the URL follow, and the number is the API's
    page.fill("#max_model_len", "32k")
    expected32 = api(server, "/api/inference", model="llama-3.1-8b", max_model_len="32k")
    assert expected32["memory"]["total"] > expected["memory"]["total"]
    wait_total(page, gib(expected32["memory"]["total"]))
    page.wait_for_function("() => location.search.includes('max_model_len=32k')")

    # choose a GPU: the fit badge says what the API's capacity says
    page.select_option("#gpu", "rtx-4090-24gb")
    with_gpu = api(server, "/api/inference", model="llama-3.1-8b", max_model_len="32k", gpu="rtx-4090-24gb")
    page.wait_for_selector("#summary .badge")
    badge = page.inner_text("#summary .badge")
    assert badge.startswith("fits" if with_gpu["capacity"]["fits"] else "does not fit")
    assert "RTX 4090" in badge
    # ... and its capacity is a line on the memory-vs-context chart
    page.wait_for_selector("#sweep line[data-cap='RTX 4090 24GB']", state="attached")
    sweep = api(server, "/api/inference/sweep", model="llama-3.1-8b", max_model_len="32k", gpu="rtx-4090-24gb")
    page.wait_for_function("(n) => document.querySelectorAll('#sweep circle[data-x]').length === n",
                           arg=len(sweep["points"]))

    # switch to GB: the same bytes, labelled GB
    page.click("[data-unit=GB]")
    assert total_text(page).startswith(f"{expected32['memory']['total'] / GB:,.2f} GB")
    page.click("[data-unit=GiB]")

    # batch 4 changes the KV cache by exactly what the API says
    page.fill("#batch_size", "4")
    batch4 = api(server, "/api/inference", model="llama-3.1-8b", max_model_len="32k", gpu="rtx-4090-24gb",
                 batch_size=4)
    wait_total(page, gib(batch4["memory"]["total"]))
    assert gib(batch4["memory"]["kv_cache"]) in page.inner_text("#breakdown")

    shot = tmp_path / "vramplan-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, SHARED_SCREENSHOT)
    assert not page.problems, page.problems
    only_local(page, server)


def test_model_search_as_you_type(page, server):
    open_page(page, server, "?model=llama-3.1-8b&max_model_len=8k")
    page.click("#model")
    page.fill("#model", "qwen3 30b")
    page.wait_for_selector("#model-list li[role=option]")
    options = page.inner_text("#model-list")
    assert "qwen3-30b-a3b" in options and "llama-3.1-8b" not in options
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_function("() => location.search.includes('model=qwen3-30b-a3b')")
    expected = api(server, "/api/inference", model="qwen3-30b-a3b", max_model_len="8k")
    wait_total(page, gib(expected["memory"]["total"]))
    assert "active" in page.inner_text("#summary .what")  # an MoE: active parameters shown
    assert not page.problems, page.problems


def test_shared_url_restores_the_state(page, server):
    query = "?model=llama-3.1-70b&max_model_len=16k&batch_size=2&kv_cache_dtype=fp8&count=4&quantization=awq"
    open_page(page, server, query)
    assert page.input_value("#max_model_len") == "16k"
    assert page.input_value("#batch_size") == "2"
    assert page.input_value("#kv_cache_dtype") == "fp8"
    assert page.input_value("#count") == "4"
    assert page.input_value("#quantization") == "awq"
    expected = api(server, "/api/inference", model="llama-3.1-70b", max_model_len="16k", batch_size=2,
                   kv_cache_dtype="fp8", tensor_parallel_size=4, quantization="awq")
    wait_total(page, gib(expected["memory"]["total"]))


def test_bad_input_shows_the_api_error_on_the_field(page, server):
    open_page(page, server, "?model=llama-3.1-8b&max_model_len=8k")
    page.fill("#max_model_len", "lots")
    page.wait_for_selector("#error:not([hidden])")
    assert "max_model_len" in page.inner_text("#error")
    assert page.get_attribute("#max_model_len", "aria-invalid") == "true"
    page.fill("#max_model_len", "4k")
    page.wait_for_selector("#error", state="hidden")
    assert page.get_attribute("#max_model_len", "aria-invalid") is None


def test_upload_a_config(page, server, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_bytes(CATALOG_CONFIG.read_bytes())
    open_page(page, server, "?model=llama-3.1-8b&max_model_len=4k")
    page.set_input_files("#upload", str(cfg))
    page.wait_for_function("() => location.search.includes('model=upload%3A')")
    model = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["model"][0]
    assert re.fullmatch(r"upload:[0-9a-f]{16}", model)
    expected = api(server, "/api/inference", model=model, max_model_len="4k")
    catalog = api(server, "/api/inference", model="llama-3.2-1b", max_model_len="4k")
    assert expected["memory"] == catalog["memory"]  # the same config, uploaded or from the catalog
    wait_total(page, gib(expected["memory"]["total"]))


def test_training_mode(page, server):
    from vramplan.web.app import _command

    available = _command("train") is not None
    if not available:
        import importlib.util

        available = importlib.util.find_spec("vramplan.training_api") is not None
    open_page(page, server, "?model=llama-3.2-1b&mode=train&method=lora&seq_len=2k", result=available)
    assert page.is_visible("#train-fields") and not page.is_visible("#inference-fields")
    if not available:
        page.wait_for_selector("#error:not([hidden])")
        assert "not available" in page.inner_text("#error")
        return
    params = {"model": "llama-3.2-1b", "method": "lora", "optimizer": "adamw", "precision": "bf16-mixed",
              "seq_len": "2k", "batch_size": 1}
    expected = api(server, "/api/train", **params)
    wait_total(page, gib(expected["memory"]["total"]))


def test_training_peft_method_options_and_modules_to_save(page, server):
    """The page offers every PEFT method the API models, passes FIELD=VALUE options and modules_to_save through,
    and shows a bad option on its field."""
    from vramplan.core.training_states import METHODS

    open_page(page, server, "?model=llama-3.2-1b&mode=train&method=lora&seq_len=2k")
    offered = page.eval_on_selector_all("#method option", "os => os.map(o => o.value)")
    assert offered == list(METHODS)
    page.select_option("#method", "vera")
    page.fill("#peft_option", "r=256 target_modules=q_proj,v_proj")
    page.select_option("#modules_to_save", "lm_head")
    url = (f"{server}/api/train?model=llama-3.2-1b&method=vera&optimizer=adamw&precision=bf16-mixed&seq_len=2k"
           "&batch_size=1&peft_option=r%3D256&peft_option=target_modules%3Dq_proj%2Cv_proj&modules_to_save=lm_head")
    with urllib.request.urlopen(url, timeout=30) as resp:
        expected = json.loads(resp.read())
    plain = api(server, "/api/train", model="llama-3.2-1b", method="vera", seq_len="2k")
    assert expected["trainable_params"] > plain["trainable_params"]  # lm_head is trained in full too
    wait_total(page, gib(expected["memory"]["total"]))
    assert "peft_option=r%3D256" in page.url and "modules_to_save=lm_head" in page.url
    page.fill("#peft_option", "bogus=3")
    page.wait_for_selector("#peft_option[aria-invalid=true]")
    assert "bogus" in page.inner_text("#error")


def test_phone_layout_has_no_sideways_scroll(browser_context, server, tmp_path):
    pg = browser_context.new_page()
    pg.set_viewport_size({"width": 390, "height": 844})
    try:
        open_page(pg, server, "?model=llama-3.1-8b&max_model_len=8k&gpu=h100-sxm-80gb")
        pg.wait_for_selector("#sweep svg")
        overflow = pg.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        font = pg.evaluate("() => parseFloat(getComputedStyle(document.querySelector('#max_model_len')).fontSize)")
        assert font >= 15  # readable, and no zoom-on-focus on phones
        pg.screenshot(path=str(tmp_path / "vramplan-phone.png"), full_page=True)
    finally:
        pg.close()


def test_an_engine_error_marks_old_results_stale(page, server):
    open_page(page, server, "?model=deepseek-v3&max_model_len=8k")
    page.select_option("#engine", "vllm")
    page.wait_for_selector("#error:not([hidden])")
    assert "KV cache" in page.inner_text("#error")
    assert page.evaluate("() => document.body.classList.contains('stale')")
    page.select_option("#engine", "")
    page.wait_for_function("() => !document.body.classList.contains('stale')")
    assert page.is_hidden("#error")


def test_speed_panel_shows_cost_for_a_priced_gpu(page, server):
    open_page(page, server, "?model=llama-3.2-1b&gpu=h100-sxm-80gb")
    page.wait_for_selector("#speed table")
    assert "$ per 1M output tokens" in page.inner_text("#speed")
    expected = api(server, "/api/speed", model="llama-3.2-1b", gpu="h100-sxm-80gb")
    assert f"${expected['cost']['usd_per_hour']:.2f}/h" in page.inner_text("#speed")
