"""What can run here, and the allocator and device readings of a measurement (the ``allocator`` and ``device`` bases).

On the CPU every reading is None; torch is imported only inside the functions and methods that need it.
"""

from __future__ import annotations

import contextlib
import os
import platform

from ..errors import VramplanError

NO_GPU_MESSAGE = "no CUDA GPU found: measure needs one; here is the prediction only"
NO_TORCH_MESSAGE = ("measure needs torch and transformers (pip install 'vramplan[measure]'); "
                    "here is the prediction only")


class MeasureUnavailable(VramplanError):
    """torch/transformers are missing, or there is no CUDA GPU (and the CPU was not allowed)."""


# ----- what can run here ------------------------------------------------------------------------------------

def missing_packages() -> list[str]:
    """The packages measure needs that cannot be imported here (torch, transformers)."""
    import importlib.util

    return [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]


def cuda_available() -> bool:
    if missing_packages():
        return False
    import torch

    return bool(torch.cuda.is_available())


def unavailable_reason(allow_cpu: bool = False) -> str | None:
    """None when measure can run; otherwise the one line that says why not."""
    if missing_packages():
        return NO_TORCH_MESSAGE
    if not allow_cpu and not cuda_available():
        return NO_GPU_MESSAGE
    return None


# ----- memory readings --------------------------------------------------------------------------------------

class MemoryProbe:
    """Allocator and device readings on CUDA; on the CPU every reading is None (tensor bytes still work)."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self.cuda = dev.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def allocated(self) -> int | None:
        return int(self.torch.cuda.memory_allocated(self.device)) if self.cuda else None

    def reserved(self) -> int | None:
        return int(self.torch.cuda.memory_reserved(self.device)) if self.cuda else None

    def max_allocated(self) -> int | None:
        self.sync()
        return int(self.torch.cuda.max_memory_allocated(self.device)) if self.cuda else None

    def max_reserved(self) -> int | None:
        return int(self.torch.cuda.max_memory_reserved(self.device)) if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def device_used(self) -> int | None:
        if not self.cuda:
            return None
        self.sync()
        free, total = self.torch.cuda.mem_get_info(self.device)
        return int(total - free)

    def device_total(self) -> int | None:
        return int(self.torch.cuda.get_device_properties(self.device).total_memory) if self.cuda else None

    def start(self) -> None:
        """Create the CUDA context (and let go of cached blocks) before anything is measured."""
        if self.cuda:
            self.torch.cuda.set_device(self.device)
            self.torch.zeros(1, device=self.device)
            self.torch.cuda.empty_cache()
            self.reset_peak()

    def facts(self) -> dict:
        """GPU name, memory, compute capability and driver (empty on the CPU)."""
        if not self.cuda:
            return {}
        props = self.torch.cuda.get_device_properties(self.device)
        return {"gpu_name": props.name, "gpu_total_bytes": int(props.total_memory),
                "gpu_capability": f"{props.major}.{props.minor}", "driver": driver_version()}

    def name(self) -> str:
        if self.cuda:
            return self.torch.cuda.get_device_name(self.device)
        return platform.processor() or platform.machine() or "cpu"


class PhasePeaks:
    """Peak allocated/reserved per named phase (the allocator's peak is reset at each phase's start)."""

    def __init__(self, probe: MemoryProbe):
        self.probe = probe
        self.allocated: dict[str, int] = {}
        self.reserved: dict[str, int] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        self.probe.reset_peak()
        yield
        a, r = self.probe.max_allocated(), self.probe.max_reserved()
        if a is not None:
            self.allocated[name] = max(self.allocated.get(name, 0), a)
            self.reserved[name] = max(self.reserved.get(name, 0), r)

    def overall(self) -> tuple[int | None, int | None]:
        if not self.allocated:
            return None, None
        return max(self.allocated.values()), max(self.reserved.values())


def versions(probe: MemoryProbe | None = None) -> dict:
    """Library, GPU and driver versions to store beside every measurement."""
    import importlib.metadata as md

    out: dict = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("vramplan", "torch", "transformers", "peft", "accelerate", "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    if out["vramplan"] is None:
        from .. import __version__

        out["vramplan"] = __version__
    try:
        import torch

        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except ImportError:
        pass
    out["pytorch_cuda_alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or None
    if probe is not None:
        out.update(probe.facts())
    return out


def driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001 - optional; nvidia-smi next
        pass
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        res = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None
