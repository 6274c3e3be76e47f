"""gpuwrap: a local run's GPUs come from a lease, not from a guess.

This module decides, per run, whether it goes through admission and how: the GPU pool
(gpuwrap on: lease N free GPUs, export ``CUDA_VISIBLE_DEVICES`` for exactly those, with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers GPUs like NVML), the CPU pool (a
cpu_only machine's run limit), or none. It also renders the launch-script lines that
wait for admission and settle each attempt (``core.scheduling.gpu_attempt``); values reach the job
through ``admission.env`` in the run dir, never a command line.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_server.core.errors import InvalidInput
from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_private
from mcp_server.core.scheduling import dispatch
from mcp_server.core.scheduling.admission import POOL_CPU, POOL_GPU
from mcp_server.core.scheduling.nvml import FAKE_ENV
from mcp_server.core.settings import Settings

DEFAULT_RETRY_DELAY_S = 10.0
MAX_RETRY_DELAY_S = 24 * 3600.0
MAX_RETRIES = 1_000_000
OPTION_KEYS = ("enabled", "retries", "retry_delay_seconds")

# Exit codes of ``python -m mcp_server.core.scheduling.gpu_attempt`` the launch script acts on.
EXIT_REQUEUED = 75  # settle: GPU contention, requeued; run the next attempt

# Shell assignment (``CUDA_VISIBLE_DEVICES=1 python …``, ``export CUDA_VISIBLE_DEVICES=…``)
# or Python's ``os.environ["CUDA_VISIBLE_DEVICES"] = …``; reading the variable does not count.
_SETS_CVD = re.compile(
    r"(?<![\w$])CUDA_VISIBLE_DEVICES=|environ\[\s*['\"]CUDA_VISIBLE_DEVICES['\"]\s*\]\s*=(?!=)"
)


@dataclass(frozen=True)
class GpuwrapOptions:
    enabled: bool | None = None  # None: on for local_gpu machines when gpus ≥ 1
    retries: int | None = None  # None: wait as long as it takes
    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_S


def parse_options(raw: Mapping[str, Any] | None) -> GpuwrapOptions:
    if raw is None:
        return GpuwrapOptions()
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            "gpuwrap must be an object like {'enabled': true, 'retries': 3, 'retry_delay_seconds': 30}."
        )
    unknown = sorted(set(raw) - set(OPTION_KEYS))
    if unknown:
        raise InvalidInput(
            f"gpuwrap has unknown key(s) {', '.join(unknown)}; valid: {', '.join(OPTION_KEYS)}."
        )
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise InvalidInput(f"gpuwrap.enabled={enabled!r} must be true, false or null (automatic).")
    retries = raw.get("retries")
    if retries is not None and (
        not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES
    ):
        raise InvalidInput(
            f"gpuwrap.retries={retries!r} must be a whole number from 0 to {MAX_RETRIES}, or null (no limit)."
        )
    delay = raw.get("retry_delay_seconds", DEFAULT_RETRY_DELAY_S)
    if delay is None:
        delay = DEFAULT_RETRY_DELAY_S
    if (
        not isinstance(delay, int | float)
        or isinstance(delay, bool)
        or not math.isfinite(delay)
        or not 0 < delay <= MAX_RETRY_DELAY_S
    ):
        raise InvalidInput(
            f"gpuwrap.retry_delay_seconds={delay!r} must be a number of seconds above 0 and at most "
            f"{MAX_RETRY_DELAY_S:g}."
        )
    return GpuwrapOptions(enabled, retries, float(delay))


def sets_cuda_visible_devices(command: str, env: Mapping[str, str]) -> str | None:
    """Why the run picks its own GPUs (so gpuwrap must stay out of its way), or None."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return "gpuwrap off: the run's env sets CUDA_VISIBLE_DEVICES itself"
    if _SETS_CVD.search(command):
        return "gpuwrap off: the command sets CUDA_VISIBLE_DEVICES itself"
    return None


@dataclass(frozen=True)
class Plan:
    pool: str | None  # gpu | cpu | None (no admission)
    record: dict[str, Any]  # kept in run.options["gpuwrap"]


def plan_admission(
    *,
    cluster_type: str,
    gpus: int,
    options: GpuwrapOptions,
    command: str,
    env: Mapping[str, str],
) -> Plan:
    """Decide how a local run is admitted (other backends allocate GPUs themselves)."""
    record: dict[str, Any] = {
        "enabled": False,
        "requested": options.enabled,
        "retries": options.retries,
        "retry_delay_seconds": options.retry_delay_seconds,
    }
    wanted = options.enabled if options.enabled is not None else cluster_type == "local_gpu"
    cpu_pool = POOL_CPU if cluster_type == "cpu_only" else None
    if not wanted or gpus == 0:
        if gpus and options.enabled is None:
            record["note"] = f"gpuwrap off by default on a {cluster_type} machine"
        return Plan(cpu_pool, record)
    if reason := sets_cuda_visible_devices(command, env):
        record["note"] = reason
        return Plan(cpu_pool, record)
    record["enabled"] = True
    return Plan(POOL_GPU, record)


def options_of(record: Mapping[str, Any] | None) -> GpuwrapOptions:
    record = record or {}
    return GpuwrapOptions(
        record.get("requested"),
        record.get("retries"),
        float(record.get("retry_delay_seconds") or DEFAULT_RETRY_DELAY_S),
    )


def give_up_at(options: GpuwrapOptions, waiting_since: float, contentions: int) -> float | None:
    """When a waiting run stops waiting: it tries once, then ``retries`` more times, one delay apart.

    Each GPU-contention failure has used one retry already.
    """
    if options.retries is None:
        return None
    remaining = max(0, options.retries - contentions)
    return waiting_since + remaining * options.retry_delay_seconds


def write_admission_env(files: JobFiles, gpu_indices: tuple[int, ...] | list[int]) -> None:
    """The environment the admitted attempt runs with; written atomically, then sourced."""
    lines = ["# research-mcp: written when the run was admitted; sourced by launch.sh"]
    if gpu_indices:
        lines += [
            "export CUDA_DEVICE_ORDER=PCI_BUS_ID",
            f"export CUDA_VISIBLE_DEVICES={','.join(str(i) for i in gpu_indices)}",
        ]
    # A temp name of this writer's own: the dispatcher and a repair after a killed dispatcher
    # (rewrite_admission) may write the same run's file at once (same content).
    own = f"{files.admission_env.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp = files.admission_env.with_name(own)
    write_private(tmp, "\n".join(lines) + "\n")
    tmp.replace(files.admission_env)


def knobs(settings: Settings) -> dict[str, str]:
    # The dispatcher must decide exactly as this server would, whatever env tmux was started with.
    knobs = settings.as_env()
    if fake := os.environ.get(FAKE_ENV):
        knobs[FAKE_ENV] = fake
    return knobs


def _admit_command(action: str, state_root: str, run_id: str, settings: Settings) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(knobs(settings).items()))
    return (
        f"env {env} {shlex.quote(sys.executable)} -m mcp_server.core.scheduling.gpu_attempt {action} "
        f"--state-dir {shlex.quote(state_root)} --run-id {shlex.quote(run_id)}"
    )


def pre_lines(state_root: str, run_id: str, settings: Settings) -> list[str]:
    """Wait for admission unless the server admitted the run already, then take its environment.

    The wait costs no process: the script blocks on a read from its own FIFO, which the
    state dir's dispatcher (``core.scheduling.dispatch``) writes to once it has admitted the run or
    ended it (stopped, out of retries). Every few seconds it checks that a dispatcher
    lives, and starts one if not.
    """
    return [
        *dispatch.start_lines(state_root, knobs(settings)),
        "wait_for_admission() {",
        '    [ -p "$RUN_DIR/wake" ] || mkfifo -m 600 "$RUN_DIR/wake" 2>/dev/null',
        '    nap() { sleep "$1"; }',
        '    if exec 8<>"$RUN_DIR/wake"; then nap() { read -r -u 8 -t "$1" _; }; fi 2>/dev/null',
        '    while [ ! -f "$RUN_DIR/admission.env" ]; do',
        '        if [ -e "$RUN_DIR/queue.ended" ]; then exec 8<&-; return 1; fi',
        "        dispatcher_alive || start_dispatcher",
        "        nap $(( RANDOM % 3 + 1 ))",
        "    done",
        "    exec 8<&-",
        "}",
        'if [ ! -f "$RUN_DIR/admission.env" ]; then',
        # The run was ended in the store while it waited: no command, no exit code.
        "    wait_for_admission || exit 0",
        "fi",
        '. "$RUN_DIR/admission.env"',
    ]


def finish_lines(state_root: str) -> list[str]:
    """After the exit code is written: wake the dispatcher, whose slot or GPUs just came back."""
    wake = shlex.quote(str(Path(state_root) / dispatch.QUEUE_DIR / dispatch.WAKE))
    return [f"if [ -p {wake} ]; then printf '\\n' 1<> {wake}; fi 2>/dev/null"]


def post_lines(state_root: str, run_id: str, settings: Settings) -> list[str]:
    """After a failed attempt: classify it; on GPU contention with retries left, go round again."""
    settle = _admit_command("settle", state_root, run_id, settings)
    return [
        'if [ "$code" -ne 0 ]; then',
        f'    {settle} --code "$code" >> "$RUN_DIR/queue.log" 2>&1',
        f'    if [ "$?" -eq {EXIT_REQUEUED} ]; then continue; fi',
        "fi",
    ]
