"""The GPU catalog: every gpus.csv row present and faithful, lookups, suggestions, custom sizes, malformed rows."""

from __future__ import annotations

import ast
import csv
import re
import tomllib
from pathlib import Path

import pytest

from vramplan import errors
from vramplan.catalog import gpus as catalog
from vramplan.catalog.gpus import get_gpu, list_gpus, load_gpus
from vramplan.core import hardware
from vramplan.core.hardware import (
    CATEGORIES,
    CUDA_CONTEXT_BYTES,
    default_gpu_working_set_bytes,
    derive_total_bytes,
    usable_memory_bytes,
)
from vramplan.units import GB_bytes, GiB_bytes, MiB_bytes, TB_bytes

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT.parent / "shared" / "reference" / "gpus.csv"
TOML_PATH = ROOT / "src" / "vramplan" / "catalog" / "gpus.toml"


def _csv_rows() -> list[dict[str, str]]:
    if not CSV_PATH.exists():
        return []
    with CSV_PATH.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


CSV_ROWS = _csv_rows()
needs_csv = pytest.mark.skipif(not CSV_ROWS, reason="../shared/reference/gpus.csv not available")


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", cell)]


# --- every gpus.csv row -----------------------------------------------------------------------------------------
@needs_csv
def test_csv_has_the_expected_rows():
    assert len(CSV_ROWS) >= 34  # the reference table this catalog was built from


@needs_csv
@pytest.mark.parametrize("row", CSV_ROWS, ids=lambda r: r["gpu"])
def test_every_csv_row_is_in_the_catalog_with_its_figures(row):
    gpu = get_gpu(row["gpu"])  # the csv's own spelling resolves
    per = gpu.devices_per_package  # MI250X/MI250 rows describe a 2-GCD module; catalog entries are one GCD

    bandwidths = _numbers(row["mem_bandwidth_GBps"])
    assert any(abs(gpu.hbm_bytes_per_s * per / 1e9 - b) < 0.05 for b in bandwidths), (gpu.key, bandwidths)

    for column, value in (("bf16_dense_TFLOPS", gpu.bf16_flop_per_s), ("fp8_dense_TFLOPS", gpu.fp8_flop_per_s)):
        cell = row[column].strip()
        if not cell:
            assert value is None, (gpu.key, column)
        else:
            assert value is not None and abs(value * per / 1e12 - float(cell)) < 0.05, (gpu.key, column)

    marketed_gb = _numbers(row["memory_marketed"])[0]  # "up to 96 GB": bare chip names mean the largest size
    assert gpu.memory_marketed_bytes * per == marketed_gb * GiB_bytes  # vendor GB are GiB (see notes)

    assert gpu.source.strip() and row["source"].split(";")[0].strip()[:25] in gpu.source


@needs_csv
@pytest.mark.parametrize("row", [r for r in CSV_ROWS if r["torch_total_MiB_reported"].strip()],
                         ids=lambda r: r["gpu"])
def test_torch_reported_totals_match_the_csv(row):
    gpu = get_gpu(row["gpu"])
    cell = row["torch_total_MiB_reported"].strip()
    assert "memory_total_bytes" not in gpu.inferred
    exact = re.search(r"\((\d+) B\)", cell)
    if exact:
        assert gpu.memory_total_bytes == int(exact.group(1))
    elif cell.startswith("~"):  # derived from a rounded log figure
        assert abs(gpu.memory_total_bytes / MiB_bytes - _numbers(cell)[0]) <= 1
    else:
        m = re.match(r"(\d+)(?:-(\d+))?", cell)
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        assert low <= gpu.memory_total_bytes // MiB_bytes <= high


@needs_csv
@pytest.mark.parametrize("row", [r for r in CSV_ROWS if r["torch_total_MiB_reported"].strip()
                                 and re.match(r"^~\d", r["approx_usable_GiB"].strip())],
                         ids=lambda r: r["gpu"])
def test_usable_agrees_with_the_csv_estimate(row):
    gpu = get_gpu(row["gpu"])
    text = re.match(r"~(\d+(?:\.\d+)?)", row["approx_usable_GiB"].strip()).group(1)
    tolerance = 0.15 if "." in text else 0.5
    assert abs(gpu.memory_usable_bytes / GiB_bytes - float(text)) <= tolerance


# --- lookups ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed, key", [
    ("h100", "h100-sxm-80gb"),
    ("H100", "h100-sxm-80gb"),
    ("H100 SXM 80GB", "h100-sxm-80gb"),
    ("h100_sxm5", "h100-sxm-80gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm-80gb"),       # torch device name
    ("h100-pcie", "h100-pcie-80gb"),
    ("h200", "h200-sxm-141gb"),
    ("b200", "b200-hgx-180gb"),
    ("a100", "a100-sxm4-80gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
    ("a100-40gb", "a100-sxm4-40gb"),
    ("a10", "a10-24gb"),
    ("A10G", "a10g-24gb"),
    ("l40s", "l40s-48gb"),
    ("4090", "rtx-4090-24gb"),
    ("rtx4090", "rtx-4090-24gb"),
    ("RTX 4090", "rtx-4090-24gb"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090-24gb"),
    ("5090", "rtx-5090-32gb"),
    ("3060", "rtx-3060-12gb"),
    ("a6000", "rtx-a6000-48gb"),
    ("rtx-6000-ada", "rtx-6000-ada-48gb"),
    ("Tesla T4", "t4-16gb"),
    ("v100", "v100-sxm2-16gb"),
    ("v100-32gb", "v100-sxm2-32gb"),
    ("mi300x", "mi300x-192gb"),
    ("AMD Instinct MI300X", "mi300x-192gb"),
    ("mi250x", "mi250x-gcd-64gb"),
    ("m2-ultra", "apple-m2-ultra-192gb"),
    ("M2 Ultra 64GB", "apple-m2-ultra-64gb"),
    ("apple-m4-max", "apple-m4-max-128gb"),
    ("m4-max-36gb", "apple-m4-max-36gb"),
    ("gaudi3", "gaudi3-128gb"),
    ("Intel Gaudi 2", "gaudi2-96gb"),
    ("tpu-v5e", "tpu-v5e-16gb"),
    ("trillium", "tpu-v6e-32gb"),
])
def test_aliases_resolve(typed, key):
    assert get_gpu(typed).key == key


@pytest.mark.parametrize("typed, expected", [
    ("h10", "h100"),
    ("H100-SXN", "h100-sxm"),
    ("rtx 4900", "rtx4090"),
    ("mi300z", "mi300x"),
    ("gaudi4", "gaudi3"),
])
def test_unknown_names_suggest_close_matches(typed, expected):
    with pytest.raises(errors.UnknownName) as info:
        get_gpu(typed)
    assert isinstance(info.value, LookupError)
    assert expected in info.value.suggestions
    assert "did you mean" in str(info.value) and typed in str(info.value)


@pytest.mark.parametrize("typed", ["zzzz-not-a-gpu", "", "   ", "24"])
def test_unknown_without_a_match_still_raises_unknown_name(typed):
    with pytest.raises(errors.UnknownName):
        get_gpu(typed)


def test_aliases_are_unique_across_gpus():
    owner: dict[str, str] = {}
    for gpu in load_gpus():
        for label in {catalog._norm(x) for x in (gpu.key, gpu.name, *gpu.aliases)}:
            assert owner.setdefault(label, gpu.key) == gpu.key, f"{label!r}: {owner[label]} and {gpu.key}"


def test_keys_are_unique_and_slugs():
    keys = [g.key for g in load_gpus()]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", k) for k in keys)


# --- sanity of the numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gpu", load_gpus(), ids=lambda g: g.key)
def test_memory_figures_are_consistent(gpu):
    assert 0 < gpu.memory_usable_bytes < gpu.memory_total_bytes <= gpu.memory_marketed_bytes
    if gpu.unified_memory:
        assert gpu.category == "apple"
        assert gpu.memory_total_bytes == gpu.memory_marketed_bytes  # the RAM
        assert 0.6 <= gpu.memory_usable_bytes / gpu.memory_total_bytes <= 0.8  # macOS default GPU working set
    else:
        assert gpu.memory_total_bytes >= 0.9 * gpu.memory_marketed_bytes  # ECC costs 1/16 at most, plus a reserve
        assert gpu.memory_usable_bytes == gpu.memory_total_bytes - CUDA_CONTEXT_BYTES
    assert gpu.hbm_bytes_per_s > 1e11  # every catalog part moves more than 100 GB/s


@pytest.mark.parametrize("gpu", load_gpus(), ids=lambda g: g.key)
def test_speed_figures_are_ordered_and_sourced(gpu):
    if gpu.bf16_flop_per_s and gpu.fp8_flop_per_s:
        assert gpu.fp8_flop_per_s >= gpu.bf16_flop_per_s
    if gpu.fp8_flop_per_s and gpu.fp4_flop_per_s:
        assert gpu.fp4_flop_per_s >= gpu.fp8_flop_per_s
    assert gpu.category in CATEGORIES
    assert gpu.source and gpu.name and gpu.vendor
    if gpu.interconnect_bytes_per_s is not None:
        assert gpu.interconnect


def test_every_category_is_populated_and_filters():
    for category in CATEGORIES:
        members = list_gpus(category)
        assert members and all(g.category == category for g in members)
    assert sum(len(list_gpus(c)) for c in CATEGORIES) == len(list_gpus()) == len(load_gpus())


def test_unknown_category_suggests():
    with pytest.raises(errors.UnknownName) as info:
        list_gpus("consumr")
    assert "consumer" in info.value.suggestions


def _toml_rows() -> dict[str, dict]:
    with TOML_PATH.open("rb") as fh:
        return tomllib.load(fh)["gpu"]


def test_derivation_rules_never_promise_more_than_a_measured_card():
    """Each memory rule, applied to a card whose total was measured, gives at most that measurement."""
    rows = _toml_rows()
    checked = 0
    for gpu in load_gpus():
        if gpu.unified_memory or "memory_total_bytes" in gpu.inferred:
            continue
        derived = derive_total_bytes(gpu.memory_marketed_bytes, rows[gpu.key]["memory_rule"])
        assert derived <= gpu.memory_total_bytes, gpu.key
        assert derived >= 0.97 * gpu.memory_total_bytes, gpu.key  # and not absurdly pessimistic
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("rule, marketed_gib, total_mib", [
    ("hbm", 80, 80773),            # 80 GiB x 0.986, floored to MiB
    ("gddr-ecc", 48, 45414),       # 48 GiB x 15/16 - 0.65 GiB
    ("gddr", 24, 24084),           # 24 GiB x 0.98
    ("unified", 64, 65536),
])
def test_derive_total_bytes(rule, marketed_gib, total_mib):
    assert derive_total_bytes(marketed_gib * GiB_bytes, rule) == total_mib * MiB_bytes


def test_derive_total_bytes_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown memory rule"):
        derive_total_bytes(GiB_bytes, "sram")


@pytest.mark.parametrize("ram_gib, logged_mib", [
    (8, 5461.34), (16, 10922.67), (32, 21845.34), (64, 49152.0), (96, 73728.0), (128, 98304.0),
])
def test_apple_working_set_matches_logged_recommended_max(ram_gib, logged_mib):
    assert abs(default_gpu_working_set_bytes(ram_gib * GiB_bytes) / MiB_bytes - logged_mib) < 0.01


def test_cuda_context_allowance_is_half_a_gib_inside_the_planning_range():
    assert CUDA_CONTEXT_BYTES == GiB_bytes // 2
    assert 0.3 * GiB_bytes <= CUDA_CONTEXT_BYTES <= 0.6 * GiB_bytes


def test_usable_memory_bytes_with_a_reserve():
    h100, mac = get_gpu("h100"), get_gpu("m2-max-64gb")
    assert usable_memory_bytes(h100) == h100.memory_usable_bytes
    assert usable_memory_bytes(h100, GiB_bytes) == h100.memory_total_bytes - GiB_bytes
    assert usable_memory_bytes(h100, 0) == h100.memory_total_bytes
    assert usable_memory_bytes(mac) == 48 * GiB_bytes
    assert usable_memory_bytes(mac, 2 * GiB_bytes) == 46 * GiB_bytes
    assert usable_memory_bytes(h100, 10**15) == 0
    with pytest.raises(ValueError):
        usable_memory_bytes(h100, -1)


# --- custom memory sizes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed, total, name", [
    ("24GiB", 24 * GiB_bytes, "custom 24 GiB"),
    ("custom:24GB", 24 * GB_bytes, "custom 24 GB"),
    ("  16 gib ", 16 * GiB_bytes, "custom 16 GiB"),
    ("custom=1.5TB", int(1.5 * TB_bytes), "custom 1.5 TB"),
    ("Custom: 80 GiB", 80 * GiB_bytes, "custom 80 GiB"),
])
def test_custom_memory_sizes(typed, total, name):
    gpu = get_gpu(typed)
    assert gpu.name == name and gpu.is_custom and gpu.category == "custom"
    assert gpu.memory_total_bytes == gpu.memory_marketed_bytes == total
    assert gpu.memory_usable_bytes == total - CUDA_CONTEXT_BYTES
    assert gpu.hbm_bytes_per_s == 0.0  # unknown
    assert gpu.bf16_flop_per_s is None and gpu.fp8_flop_per_s is None and gpu.power_w is None


@pytest.mark.parametrize("typed", ["0GB", "custom:24", "custom:lots"])
def test_bad_custom_sizes_are_refused_with_one_line(typed):
    with pytest.raises(errors.InvalidRequest) as info:
        get_gpu(typed)
    assert info.value.field == "gpu" and "\n" not in str(info.value)


# --- malformed catalog rows -------------------------------------------------------------------------------------
GOOD_ROW = """
[gpu.test-gpu-8gb]
name = "Test GPU 8GB"
vendor = "Acme"
category = "consumer"
memory_marketed = "8 GB"
marketed_gb_are_gib = true
memory_rule = "gddr"
bandwidth_GB_per_s = 448
bf16_dense_TFLOPS = 20
aliases = ["testgpu"]
source = "made up for a test"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpus.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_temporary_catalog_parses(tmp_path):
    (gpu,) = catalog._load_catalog_file(_write(tmp_path, GOOD_ROW))
    assert gpu.key == "test-gpu-8gb" and gpu.bf16_flop_per_s == 20e12
    assert gpu.memory_total_bytes == derive_total_bytes(8 * GiB_bytes, "gddr")
    assert "memory_total_bytes" in gpu.inferred


@pytest.mark.parametrize("change, field", [
    (('bf16_dense_TFLOPS = 20', 'bf16_dense_TFLOPS = "20"'), "bf16_dense_TFLOPS"),
    (('bandwidth_GB_per_s = 448\n', ''), "bandwidth_GB_per_s"),
    (('vendor = "Acme"', 'vendr = "Acme"'), "vendr"),
    (('category = "consumer"', 'category = "gaming"'), "category"),
    (('memory_marketed = "8 GB"', 'memory_marketed = "eight"'), "memory_marketed"),
    (('memory_rule = "gddr"', 'memory_rule = "magic"'), "memory_rule"),
    (('aliases = ["testgpu"]', 'aliases = "testgpu"'), "aliases"),
    (('bf16_dense_TFLOPS = 20', 'bf16_dense_TFLOPS = -20'), "bf16_dense_TFLOPS"),
    (('marketed_gb_are_gib = true', 'marketed_gb_are_gib = "yes"'), "marketed_gb_are_gib"),
])
def test_malformed_rows_name_the_gpu_and_field(tmp_path, change, field):
    old, new = change
    assert old in GOOD_ROW
    with pytest.raises(errors.SourceError) as info:
        catalog._load_catalog_file(_write(tmp_path, GOOD_ROW.replace(old, new)))
    message = str(info.value)
    assert "test-gpu-8gb" in message and f"'{field}'" in message
    assert "\n" not in message


def test_duplicate_alias_across_rows_is_refused(tmp_path):
    second = GOOD_ROW.replace("test-gpu-8gb", "other-gpu-8gb").replace('"Test GPU 8GB"', '"Other GPU 8GB"')
    with pytest.raises(errors.SourceError, match="already used by GPU 'test-gpu-8gb'"):
        catalog._load_catalog_file(_write(tmp_path, GOOD_ROW + second))


def test_invalid_toml_is_a_source_error(tmp_path):
    with pytest.raises(errors.SourceError, match="not valid TOML"):
        catalog._load_catalog_file(_write(tmp_path, GOOD_ROW + "\nname = = 3\n"))


def test_core_hardware_imports_only_the_standard_library():
    tree = ast.parse(Path(hardware.__file__).read_text(encoding="utf-8"))
    imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "dataclasses"}
