"""Charts outside the browser: SVG and HTML written by hand, PNG through matplotlib when it is installed."""

from __future__ import annotations

import io
import json
import sys
import xml.etree.ElementTree as ET
from contextlib import redirect_stdout

import pytest

from vramplan import api, charts, cli
from vramplan.errors import InvalidRequest, SourceError
from vramplan.units import GB_bytes, GiB_bytes

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def result():
    return api.plan_inference("llama-3.1-8b", max_model_len=8192, gpu="rtx-4090")


@pytest.fixture(scope="module")
def sweep():
    contexts = charts.default_contexts(8192, 131072)
    return charts.context_sweep(lambda c: api.plan_inference("llama-3.1-8b", max_model_len=c, gpu="rtx-4090"),
                                contexts)


@pytest.mark.parametrize("chosen,max_pos,expected", [
    (8192, 131072, [1 << k for k in range(10, 18)]),
    (5000, 32768, [1024, 2048, 4096, 5000, 8192, 16384, 32768]),
    (4096, None, [1 << k for k in range(10, 18)]),
    (300000, 131072, [1 << k for k in range(10, 19)] + [131072, 300000]),
    (512, 2048, [512, 1024, 2048]),
])
def test_default_contexts(chosen, max_pos, expected):
    assert charts.default_contexts(chosen, max_pos) == sorted(set(expected))


@pytest.mark.parametrize("top", [0.3, 1, 7.2, 17.24, 80, 99.9, 1234])
def test_nice_ticks_cover_the_range_in_even_steps(top):
    ticks = charts.nice_ticks(top)
    assert ticks[0] == 0 and ticks[-1] >= top
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    assert 2 <= len(ticks) <= 12


def test_context_sweep_calls_the_plan_once_per_context():
    calls = []

    def plan(ctx):
        calls.append(ctx)
        return {"memory": {"weights": 10, "kv_cache": ctx, "total": 10 + ctx}}

    points = charts.context_sweep(plan, [1024, 2048])
    assert calls == [1024, 2048]
    assert [p["memory"]["total"] for p in points] == [1034, 2058]


def test_svg_has_the_numbers_of_the_result(tmp_path, result, sweep):
    path = charts.write_inference_plot(result, str(tmp_path / "plan.svg"), sweep=sweep)
    text = (tmp_path / "plan.svg").read_text()
    root = ET.fromstring(text)  # well-formed XML
    assert root.tag == SVG + "svg" and path.endswith("plan.svg")
    total = result["memory"]["total"]
    assert f"{total / GiB_bytes:,.2f} GiB" in text and f"{total / GB_bytes:,.2f} GB" in text
    for name, value in result["memory"].items():
        if name != "total":
            assert f"{name}: {value / GiB_bytes:,.2f} GiB ({value:,} bytes)" in text
    gpu_bytes = result["capacity"]["gpu_memory_bytes"]
    assert f"{result['request']['gpu']}: {gpu_bytes / GiB_bytes:,.2f} GiB" in text
    # one stacked area per component in the context chart, one point per context
    polygons = [e for e in root.iter(SVG + "polygon")]
    assert len(polygons) == len([k for k in result["memory"] if k != "total"])
    assert len(list(root.iter(SVG + "circle"))) == len(sweep)


def test_svg_in_gb_labels_every_number_gb(tmp_path, result):
    charts.write_inference_plot(result, str(tmp_path / "gb.svg"), unit="GB")
    text = (tmp_path / "gb.svg").read_text()
    for name, value in result["memory"].items():
        if name != "total":
            assert f"{name}: {value / GB_bytes:,.2f} GB ({value:,} bytes)" in text
    assert f"{result['memory']['total'] / GB_bytes:,.2f} GB" in text


def test_html_is_self_contained(tmp_path, result, sweep):
    charts.write_inference_plot(result, str(tmp_path / "plan.html"), sweep=sweep)
    text = (tmp_path / "plan.html").read_text()
    assert text.startswith("<!doctype html>")
    assert "<script" not in text and "src=" not in text and "href=" not in text  # nothing to fetch
    for value in result["memory"].values():
        assert f"{value:,}" in text
    for line in result["explain"]:
        assert line.split(":")[0] in text


def test_svg_without_a_sweep_draws_only_the_breakdown(tmp_path, result):
    charts.write_inference_plot(result, str(tmp_path / "bar.svg"))
    root = ET.fromstring((tmp_path / "bar.svg").read_text())
    assert not list(root.iter(SVG + "polygon"))


def test_training_plot(tmp_path):
    training = {"model": {"name": "tiny", "params": 1000, "active_params": 1000}, "trainable_params": 12,
                "memory": {"weights": 3 * GiB_bytes, "gradients": GiB_bytes, "optimizer": 2 * GiB_bytes,
                           "activations": GiB_bytes // 2, "runtime": GiB_bytes // 2, "total": 7 * GiB_bytes},
                "request": {"method": "lora", "seq_len": 2048}}
    charts.write_training_plot(training, str(tmp_path / "t.svg"))
    text = (tmp_path / "t.svg").read_text()
    ET.fromstring(text)
    assert "7.00 GiB" in text and "gradients: 1.00 GiB" in text and "12 trainable params" in text
    charts.write_training_plot(training, str(tmp_path / "t.html"))
    assert "optimizer" in (tmp_path / "t.html").read_text()


def test_png_needs_matplotlib_and_says_so(tmp_path, result, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(InvalidRequest, match=r"matplotlib.*\.svg or \.html") as err:
        charts.write_inference_plot(result, str(tmp_path / "x.png"))
    assert err.value.field == "plot"
    assert not (tmp_path / "x.png").exists()


def test_png_with_matplotlib(tmp_path, result, sweep):
    pytest.importorskip("matplotlib")
    charts.write_inference_plot(result, str(tmp_path / "x.png"), sweep=sweep)
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["plan.pdf", "plan", "plan.svgz"])
def test_unknown_extensions_are_refused(tmp_path, result, name):
    with pytest.raises(InvalidRequest, match="png, .svg or .html"):
        charts.write_inference_plot(result, str(tmp_path / name))


def test_unwritable_path_is_a_source_error(tmp_path, result):
    with pytest.raises(SourceError):
        charts.write_inference_plot(result, str(tmp_path / "no" / "such" / "dir.svg"))


def test_cli_plot_writes_the_file(tmp_path):
    target = tmp_path / "cli.svg"
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["inference", "llama-3.2-1b", "--max-model-len", "4k", "--plot", str(target), "--json"])
    assert code == 0
    data = json.loads(out.getvalue())
    assert data["plot"] == str(target)
    text = target.read_text()
    assert f"{data['memory']['total'] / GiB_bytes:,.2f} GiB" in text


def test_text_is_escaped(tmp_path, result):
    hostile = json.loads(json.dumps(result))
    hostile["model"]["name"] = "<script>alert(1)</script>"
    charts.write_inference_plot(hostile, str(tmp_path / "h.html"))
    text = (tmp_path / "h.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
