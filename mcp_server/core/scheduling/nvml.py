"""The NVML boundary: the only module that talks to pynvml.

Everything above it (inventory, leases, queueing, CUDA_VISIBLE_DEVICES, contention)
works on the plain ``NvmlGpu`` records returned by ``query``. Setting
``RESEARCH_MCP_FAKE_NVML=/path/inventory.json`` swaps pynvml for ``FakeNvml``, a
pynvml-like object that answers the same calls from that JSON file, re-read on every
query. Because it is selected by an environment variable, every process sees the same
fake inventory: servers, launch scripts' waiters, other test processes. Format::

    {"gpus": [{"uuid": "GPU-…", "name": "NVIDIA A100", "memory_total_mib": 81920,
               "memory_used_mib": 0, "utilization_pct": 0,
               "processes": [{"pid": 1234, "used_memory_mib": 500, "kind": "compute"}]}],
     "driver_version": "550.54.15",             # optional (default "fake")
     "error": "NVML_ERROR_DRIVER_NOT_LOADED",   # optional: nvmlInit raises this NVML error
     "hang_s": 30}                              # optional: nvmlInit blocks (a wedged driver)

Without a driver ``pynvml.nvmlInit()`` raises ``NVMLError_LibraryNotFound``; that is
the common cpu_only path, so it is reported as ``NvmlUnavailable(library_missing=True)``
without logging anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FAKE_ENV = "RESEARCH_MCP_FAKE_NVML"
MIB = 1024 * 1024


@dataclass(frozen=True)
class NvmlProcess:
    pid: int
    used_memory_mib: float | None
    kind: str  # compute | graphics


@dataclass(frozen=True)
class NvmlGpu:
    index: int
    uuid: str
    name: str
    memory_total_mib: float
    memory_used_mib: float
    utilization_pct: int | None
    processes: tuple[NvmlProcess, ...] = field(default_factory=tuple)


class NvmlUnavailable(Exception):
    """NVML could not be used; ``library_missing`` means no NVIDIA driver is installed at all."""

    def __init__(self, message: str, *, library_missing: bool = False) -> None:
        super().__init__(message)
        self.library_missing = library_missing


class FakeNvml:
    """The pynvml calls research-mcp uses, answered from a JSON inventory file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import pynvml  # for its error classes, so callers catch the same exceptions

        self.path = Path(path)
        self.label = f"fake NVML ({self.path})"
        self.NVMLError = pynvml.NVMLError
        self._pynvml = pynvml
        self._doc: dict[str, Any] = {}

    def nvmlInit(self) -> None:
        try:
            self._doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as err:
            raise self.NVMLError(self._pynvml.NVML_ERROR_UNKNOWN) from err
        if error := self._doc.get("error"):
            raise self.NVMLError(getattr(self._pynvml, str(error)))
        if hang := self._doc.get("hang_s"):
            time.sleep(float(hang))

    def nvmlShutdown(self) -> None:
        self._doc = {}

    def _gpus(self) -> list[dict[str, Any]]:
        return list(self._doc.get("gpus", []))

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._doc.get("driver_version", "fake"))

    def nvmlDeviceGetCount(self) -> int:
        return len(self._gpus())

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        gpus = self._gpus()
        if not 0 <= index < len(gpus):
            raise self.NVMLError(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpus[index]

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:
        return str(handle["uuid"])

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:
        return str(handle.get("name", "Fake GPU"))

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        total = int(float(handle.get("memory_total_mib", 16384)) * MIB)
        used = int(float(handle.get("memory_used_mib", 0)) * MIB)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(gpu=int(handle.get("utilization_pct", 0)), memory=0)

    def _procs(self, handle: dict[str, Any], kind: str) -> list[SimpleNamespace]:
        out = []
        for proc in handle.get("processes", []):
            if proc.get("kind", "compute") == kind:
                mib = proc.get("used_memory_mib")
                out.append(
                    SimpleNamespace(
                        pid=int(proc["pid"]), usedGpuMemory=None if mib is None else int(mib * MIB)
                    )
                )
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict[str, Any]) -> list[SimpleNamespace]:
        return self._procs(handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: dict[str, Any]) -> list[SimpleNamespace]:
        return self._procs(handle, "graphics")


def fake_path() -> str | None:
    return os.environ.get(FAKE_ENV) or None


def backend() -> Any:
    """pynvml itself, or the fake when ``RESEARCH_MCP_FAKE_NVML`` names an inventory."""
    if path := fake_path():
        return FakeNvml(path)
    import pynvml

    return pynvml


def source_name() -> str:
    return "fake-nvml" if fake_path() else "nvml"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _processes(lib: Any, handle: Any) -> tuple[NvmlProcess, ...]:
    procs: list[NvmlProcess] = []
    for kind, call in (
        ("compute", lib.nvmlDeviceGetComputeRunningProcesses),
        ("graphics", lib.nvmlDeviceGetGraphicsRunningProcesses),
    ):
        try:
            found = call(handle)
        except lib.NVMLError:
            continue  # not supported on this GPU: no processes of that kind to report
        for p in found:
            used = getattr(p, "usedGpuMemory", None)
            procs.append(NvmlProcess(int(p.pid), None if used is None else round(used / MIB, 1), kind))
    return tuple(procs)


def query(lib: Any = None) -> list[NvmlGpu]:
    """All GPUs NVML sees, in NVML (PCI bus) order; raises ``NvmlUnavailable``."""
    lib = lib if lib is not None else backend()
    label = getattr(lib, "label", "NVML")
    try:
        lib.nvmlInit()
    except lib.NVMLError as err:
        missing = err.__class__.__name__ == "NVMLError_LibraryNotFound"
        raise NvmlUnavailable(f"{label}: {err}", library_missing=missing) from None
    try:
        gpus = []
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            mem = lib.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: int | None = int(lib.nvmlDeviceGetUtilizationRates(handle).gpu)
            except lib.NVMLError:
                util = None
            gpus.append(
                NvmlGpu(
                    index=index,
                    uuid=_text(lib.nvmlDeviceGetUUID(handle)),
                    name=_text(lib.nvmlDeviceGetName(handle)),
                    memory_total_mib=round(mem.total / MIB, 1),
                    memory_used_mib=round(mem.used / MIB, 1),
                    utilization_pct=util,
                    processes=_processes(lib, handle),
                )
            )
        return gpus
    except lib.NVMLError as err:
        raise NvmlUnavailable(f"{label} query failed: {err}") from None
    finally:
        with contextlib.suppress(lib.NVMLError):
            lib.nvmlShutdown()


def driver_version(lib: Any = None) -> str:
    """The NVIDIA driver's version (a run's provenance); raises ``NvmlUnavailable``."""
    lib = lib if lib is not None else backend()
    try:
        lib.nvmlInit()
    except lib.NVMLError as err:
        missing = err.__class__.__name__ == "NVMLError_LibraryNotFound"
        raise NvmlUnavailable(f"{getattr(lib, 'label', 'NVML')}: {err}", library_missing=missing) from None
    try:
        return _text(lib.nvmlSystemGetDriverVersion())
    except lib.NVMLError as err:
        raise NvmlUnavailable(f"driver version query failed: {err}") from None
    finally:
        with contextlib.suppress(lib.NVMLError):
            lib.nvmlShutdown()
