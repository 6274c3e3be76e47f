"""Classify why a command failed from its exit code and the tail of its output.

Shared by gpuwrap (contention → requeue, own OOM → fail) and the sidecar's failure
alerts, so both read a log the same way. Patterns are the messages CUDA, PyTorch, NCCL
and Python actually print.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field

# Another process holds the device (exclusive-process mode, or a busy/unavailable GPU).
# Only CUDA's own wording: the OS's "Device or resource busy" (EBUSY, e.g. an NFS
# '.nfs…' file still open) is not contention, and retrying it would requeue forever.
_CONTENTION = re.compile(
    r"all CUDA-capable devices are busy or unavailable"
    r"|CUDA-capable device\(s\) is/are busy or unavailable"
    r"|cudaErrorDevicesUnavailable|CUDA_ERROR_DEVICES_UNAVAILABLE"
    r"|CUDA error:[^\n]*\bbusy\b",
    re.IGNORECASE,
)
# The run's own allocations did not fit.
_OOM = re.compile(
    r"CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"
    r"|RESOURCE_EXHAUSTED: Out of memory|cudaErrorMemoryAllocation|out of memory on device",
    re.IGNORECASE,
)
_NCCL = re.compile(
    r"NCCL (error|WARN)|ncclSystemError|ncclInternalError|ncclUnhandledCudaError|NCCL timeout", re.I
)
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):")
_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+')
# Frames of installed libraries and the interpreter itself, as opposed to the user's code.
_LIBRARY = re.compile(r"[/\\](site|dist)-packages[/\\]|[/\\]lib[/\\]python\d[^/\\]*[/\\]|^<")
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*)(?:Error|Exception|Interrupt|Exit)\b.*|^[A-Za-z_][\w.]*: .+"
)


@dataclass(frozen=True)
class Failure:
    kind: str  # contention | cuda_oom | nccl | exception | signal | exit_code
    summary: str
    lines: list[str] = field(default_factory=list)

    @property
    def retryable(self) -> bool:
        """Only contention is someone else's fault; everything else would fail again."""
        return self.kind == "contention"


def _matching(lines: list[str], pattern: re.Pattern[str], keep: int = 5) -> list[str]:
    return [line for line in lines if pattern.search(line)][-keep:]


def _is_user_frame(line: str) -> bool:
    frame = _FRAME.match(line)
    return frame is not None and not _LIBRARY.search(frame.group(1))


def _last_traceback(lines: list[str], keep: int = 12, user_frames: int = 3) -> list[str]:
    """The last traceback, cut to its end: the exception and the frames just above it, plus the
    deepest frames of the user's own code (``File ".../train.py", line 9`` and its source
    line), which a deep library stack would otherwise push out of the kept lines."""
    starts = [i for i, line in enumerate(lines) if _TRACEBACK.match(line)]
    if not starts:
        return []
    block = lines[starts[-1] :]
    if len(block) <= keep:
        return block
    tail_from = len(block) - keep
    mine = [i for i in range(1, tail_from) if _is_user_frame(block[i])][-user_frames:]
    out = [block[0]]
    last = 0
    for i in mine:
        if i > last + 1:
            out.append("  …")
        out.append(block[i])
        last = i
        if i + 1 < tail_from and not _FRAME.match(block[i + 1]):  # the frame's source line
            out.append(block[i + 1])
            last = i + 1
    if tail_from > last + 1:
        out.append("  …")
    return out + block[tail_from:]


def classify(exit_code: int | None, output_tail: str) -> Failure:
    lines = output_tail.splitlines()
    # OOM first: a log that shows both was the run's own allocation failing, and treating
    # it as contention would requeue a run that can never fit.
    if hits := _matching(lines, _OOM):
        return Failure(
            "cuda_oom", "CUDA out of memory: the run's own allocations did not fit on its GPU(s)", hits
        )
    if hits := _matching(lines, _CONTENTION):
        return Failure("contention", "the GPU was busy or unavailable (another process holds it)", hits)
    if hits := _matching(lines, _NCCL):
        return Failure("nccl", "NCCL (multi-GPU communication) error", hits)
    if tb := _last_traceback(lines):
        last = next((line for line in reversed(tb) if _EXCEPTION_LINE.match(line.strip())), tb[-1]).strip()
        return Failure("exception", f"Python exception: {last[:300]}", tb)
    if exit_code is not None and 128 < exit_code <= 128 + 64:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        hint = " (often the kernel's out-of-memory killer or a scheduler limit)" if name == "SIGKILL" else ""
        return Failure("signal", f"killed by {name}{hint}", lines[-5:])
    return Failure("exit_code", f"exited with code {exit_code}", lines[-5:])
