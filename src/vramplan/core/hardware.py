"""Hardware: what an accelerator can hold and how fast it moves and multiplies numbers.

Pure calculation and plain data; no files, no network. The catalog (``vramplan.catalog.gpus``) turns the sourced rows
of ``gpus.toml`` into :class:`GPU` values; everything here is what those rows mean.

Memory has three figures, all int bytes:

``memory_marketed_bytes``
    The vendor's figure converted as marketed. DRAM dies are binary-sized, so a vendor's "80 GB" of HBM or "24 GB" of
    GDDR is physically 80 GiB / 24 GiB: an A100 80GB reports exactly 81920 MiB and an RTX 4090 "24 GB" reports
    24563 MiB, more than 24e9 bytes could be (formulas.md section 7). Each catalog row says which reading it uses.
``memory_total_bytes``
    What the framework sees: ``torch.cuda.get_device_properties(i).total_memory`` where a measurement exists,
    otherwise :func:`derive_total_bytes` (and the row lists ``memory_total_bytes`` in ``inferred``). For Apple
    unified memory it is the machine's RAM.
``memory_usable_bytes``
    What a planner may fill: total minus :data:`CUDA_CONTEXT_BYTES` for a discrete device; for unified memory, the
    GPU working-set limit macOS applies by default (:func:`default_gpu_working_set_bytes`).

Rates are floats: ``hbm_bytes_per_s`` (bytes/s), ``*_flop_per_s`` (DENSE tensor FLOP/s, never the sparse "*" figure),
``interconnect_bytes_per_s`` (the vendor's bidirectional aggregate, as NVIDIA quotes NVLink's 900 GB/s).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

_MiB = 1 << 20
_GiB = 1 << 30

CUDA_CONTEXT_BYTES = 512 * _MiB
"""Per-process, per-GPU allowance for the CUDA context (plus cuBLAS workspaces), 0.5 GiB.

formulas.md 4.3: ~287 MB for a trivial torch program with lazy module loading (PyTorch PR #86509), "~300MB" to
"around 400MB" (ptrblck), 426 MiB measured on an RTX 6000 Ada (unsloth-zoo PR #1053); plan 0.3-0.6 GiB. We choose
0.5 GiB, inside that range and above every measurement quoted there. It is visible in nvidia-smi and
``torch.cuda.mem_get_info`` but not in ``torch.cuda.memory_allocated``. Other processes on the GPU come on top.
"""

CATEGORIES = ("datacenter", "workstation", "consumer", "apple", "accelerator")
"""Catalog categories. An ad-hoc device built from a bare memory size ("24GiB") has category ``CUSTOM_CATEGORY``."""
CUSTOM_CATEGORY = "custom"

# --- Deriving the framework-visible total where no measurement exists (formulas.md section 7) -------------------
MEMORY_RULES = ("hbm", "gddr-ecc", "gddr", "unified")
"""How a row's ``memory_total_bytes`` is derived when no torch measurement exists.

``hbm``       HBM parts are GiB-sized physically and lose a little to reserved regions (formulas.md 7, pattern a).
              total = marketed x 0.986, the lowest ratio measured on any HBM part quoted there
              (V100-SXM2-16GB 16160/16384 MiB = 0.9863; H100 PCIe 0.9889, A100-40GB 0.9896, H100 SXM 0.9898).
``gddr-ecc``  data-center GDDR with ECC on by default loses 1/16 to ECC plus a reserve (pattern b: "~0.5 GiB").
              total = marketed x 15/16 - 0.65 GiB; 0.65 GiB is the largest reserve measured (A40: 46080 - 45416 =
              664 MiB), so the rule never promises more than a measured card showed.
``gddr``      GeForce/workstation GDDR with ECC off loses ~0-2% (pattern c): total = marketed x 0.98, the lowest ratio
              measured (RTX 5090: 31.37 GiB of 32 per a vLLM log; RTX 6000 Ada 0.987, RTX 3090 0.987, RTX 4090 0.999).
``unified``   Apple unified memory: the total is the RAM itself (the GPU limit is a separate, usable figure).
"""
HBM_TOTAL_RATIO = 0.986
GDDR_ECC_RESERVE_BYTES = int(0.65 * _GiB)
GDDR_TOTAL_RATIO = 0.98


def derive_total_bytes(marketed_bytes: int, rule: str) -> int:
    """Framework-visible total for ``marketed_bytes`` under ``rule`` (see :data:`MEMORY_RULES`), floored to MiB."""
    if isinstance(marketed_bytes, bool) or not isinstance(marketed_bytes, int) or marketed_bytes <= 0:
        raise ValueError(f"marketed memory must be a positive int of bytes, got {marketed_bytes!r}")
    if rule == "hbm":
        total = marketed_bytes * HBM_TOTAL_RATIO
    elif rule == "gddr-ecc":
        total = marketed_bytes * 15 / 16 - GDDR_ECC_RESERVE_BYTES
    elif rule == "gddr":
        total = marketed_bytes * GDDR_TOTAL_RATIO
    elif rule == "unified":
        return marketed_bytes
    else:
        raise ValueError(f"unknown memory rule {rule!r} (expected one of {', '.join(MEMORY_RULES)})")
    return int(total // _MiB) * _MiB


# --- Apple unified memory: the default GPU working-set limit ------------------------------------------------------
APPLE_WORKING_SET_MEASURED_RAM_GIB = frozenset({8, 16, 32, 64, 96, 128})
"""RAM sizes whose default ``recommendedMaxWorkingSetSize`` was read from a public log (older macOS):

 8 GiB ->  5461.34 MiB (2/3)  llama.cpp issue #5207 ("( 5655.70 / 5461.34)")
16 GiB -> 10922.67 MiB (2/3)  llama-cpp-python issue #687
32 GiB -> 21845.34 MiB (2/3)  llama.cpp PR #2011 and ollama issue #434 (M1/M2 Max 32GB)
64 GiB -> 49152.00 MiB (3/4)  llama.cpp issue #1870 (M1 Max 64GB)
96 GiB -> 73728.00 MB  (3/4)  llama.cpp issue #3213 (M2 Max 96GB)
128 GiB -> ~96 GiB     (3/4)  stencel.io "Apple silicon limitations with usage on local LLM" (M1 Ultra 128GB)

macOS 26 raised it on 128 GiB hosts to 107.52 GiB (antirez/ds4 PR #893, M5 Max); we keep the older, lower figure.
``sudo sysctl iogpu.wired_limit_mb=N`` overrides the default (pass the result as a reserve or use a custom size).
"""
APPLE_SMALL_RAM_LIMIT_BYTES = 36 * _GiB


def default_gpu_working_set_bytes(ram_bytes: int) -> int:
    """The GPU working-set limit macOS applies by default on Apple silicon with ``ram_bytes`` of unified memory.

    2/3 of RAM up to 36 GiB, 3/4 above (see :data:`APPLE_WORKING_SET_MEASURED_RAM_GIB` for the measured points; 36 and
    48 GiB are not measured: 36 GiB takes the conservative 2/3, 48 GiB the 3/4 that every larger machine shows).
    """
    if isinstance(ram_bytes, bool) or not isinstance(ram_bytes, int) or ram_bytes <= 0:
        raise ValueError(f"RAM must be a positive int of bytes, got {ram_bytes!r}")
    if ram_bytes <= APPLE_SMALL_RAM_LIMIT_BYTES:
        return ram_bytes * 2 // 3
    return ram_bytes * 3 // 4


def working_set_is_measured(ram_bytes: int) -> bool:
    """True when the default working set for this RAM size was read from a log, not interpolated."""
    return ram_bytes % _GiB == 0 and ram_bytes // _GiB in APPLE_WORKING_SET_MEASURED_RAM_GIB


# --- The device -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GPU:
    """One accelerator as a framework sees it (one CUDA/ROCm/Metal device, one TPU chip).

    Unknown speed figures are ``None``; ``hbm_bytes_per_s`` is required to be a float and is 0.0 when unknown (only
    ad-hoc devices built from a bare memory size). ``inferred`` names the fields derived by a stated rule rather than
    read from a source; ``source`` and ``notes`` say where every number comes from.
    """

    name: str
    key: str
    vendor: str
    category: str
    memory_marketed_bytes: int
    memory_total_bytes: int
    memory_usable_bytes: int
    hbm_bytes_per_s: float
    bf16_flop_per_s: float | None
    fp8_flop_per_s: float | None
    fp4_flop_per_s: float | None
    power_w: float | None
    unified_memory: bool
    interconnect: str | None
    interconnect_bytes_per_s: float | None
    price_per_hour_usd: float | None
    aliases: tuple[str, ...]
    source: str
    notes: str
    inferred: tuple[str, ...]
    memory_type: str = ""
    devices_per_package: int = 1
    """Devices the runtime exposes per physical package (MI250X: two GCDs per OAM module); 1 for almost everything."""
    fp16_flop_per_s: float | None = None
    """Dense FP16 tensor FLOP/s where the GPU has no BF16 (T4, V100): engines run bf16 checkpoints in fp16 there."""

    def __post_init__(self) -> None:
        for name in ("name", "key", "vendor", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"GPU field '{name}' must be a non-empty string, got {value!r}")
        for name in ("notes", "memory_type"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"GPU field '{name}' must be a string")
        if self.category not in CATEGORIES and self.category != CUSTOM_CATEGORY:
            raise ValueError(f"GPU field 'category' must be one of {', '.join(CATEGORIES)}, got {self.category!r}")
        for name in ("memory_marketed_bytes", "memory_total_bytes", "memory_usable_bytes", "devices_per_package"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"GPU field '{name}' must be a non-negative int, got {value!r}")
        if self.devices_per_package < 1:
            raise ValueError("GPU field 'devices_per_package' must be at least 1")
        if self.memory_usable_bytes > self.memory_total_bytes:
            raise ValueError("GPU field 'memory_usable_bytes' exceeds 'memory_total_bytes'")
        if isinstance(self.hbm_bytes_per_s, bool) or not isinstance(self.hbm_bytes_per_s, (int, float)) \
                or self.hbm_bytes_per_s < 0:
            raise ValueError(f"GPU field 'hbm_bytes_per_s' must be a non-negative number, got {self.hbm_bytes_per_s!r}")
        for name in ("bf16_flop_per_s", "fp8_flop_per_s", "fp4_flop_per_s", "fp16_flop_per_s", "power_w",
                     "interconnect_bytes_per_s", "price_per_hour_usd"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"GPU field '{name}' must be a positive number or None, got {value!r}")
        if not isinstance(self.unified_memory, bool):
            raise ValueError("GPU field 'unified_memory' must be a bool")
        if self.interconnect is not None and not isinstance(self.interconnect, str):
            raise ValueError("GPU field 'interconnect' must be a string or None")
        for name in ("aliases", "inferred"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"GPU field '{name}' must be a tuple of non-empty strings")
        unknown = set(self.inferred) - _FIELD_NAMES
        if unknown:
            raise ValueError(f"GPU field 'inferred' names unknown fields: {', '.join(sorted(unknown))}")

    @property
    def is_custom(self) -> bool:
        return self.category == CUSTOM_CATEGORY


_FIELD_NAMES = frozenset(f.name for f in fields(GPU))


def usable_memory_bytes(gpu: GPU, reserve_bytes: int | None = None) -> int:
    """Bytes a plan may fill on one ``gpu``.

    ``reserve_bytes=None`` gives the catalog figure ``gpu.memory_usable_bytes`` (discrete: total minus
    :data:`CUDA_CONTEXT_BYTES`; unified: the default GPU working set). An explicit reserve replaces the CUDA-context
    allowance on a discrete device (``total - reserve``) and is taken off the working set on a unified one.
    """
    if reserve_bytes is None:
        return gpu.memory_usable_bytes
    if isinstance(reserve_bytes, bool) or not isinstance(reserve_bytes, int) or reserve_bytes < 0:
        raise ValueError(f"reserve must be a non-negative int of bytes, got {reserve_bytes!r}")
    base = gpu.memory_usable_bytes if gpu.unified_memory else gpu.memory_total_bytes
    return max(0, base - reserve_bytes)
