"""What a Ray run ships: its job's working dir, and the entrypoint that picks how to run.

Every Ray job gets the run's launch files as its ``working_dir`` (a few KB, uploaded by Ray's
client, about 40 ms): ``rmcp_start.sh`` looks whether this worker sees the state dir's run
dir (the same path holds this submission's random token), and then runs the run's own
``launch.sh`` there, as a local or Slurm run would (files land where every reader looks).
Otherwise it runs the shipped copy in the job's working dir under ``rmcp_ship.py``, which sends
the output, the metrics and the exit code back through the job's log (``frames``).

The entrypoint string is ``bash rmcp_start.sh``: no command, no environment value. Env values
stay in env.sh (0600), shipped inside the working-dir package, never in the job's runtime_env
(which the dashboard shows) nor on a command line.
"""

from __future__ import annotations

import secrets
import shutil
from importlib import resources
from pathlib import Path

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import q, write_private

BUNDLE = "ray-job"  # in the run dir
TOKEN = "ray.token"  # in the run dir: proves a worker sees this very run dir
START = "rmcp_start.sh"
SHIP = "rmcp_ship.py"
ENTRYPOINT = f"bash {START}"


def start_script(run_dir: Path, token: str, always_ship: bool = False) -> str:
    rd = q(run_dir)
    shared = "false" if always_ship else "true"
    return f"""#!/usr/bin/env bash
# research-mcp: how this Ray job runs (generated; do not edit).
RUN_DIR={rd}
if {shared} && [ -w "$RUN_DIR" ] && [ "$(cat "$RUN_DIR/{TOKEN}" 2>/dev/null)" = {q(token)} ]; then
    exec bash "$RUN_DIR/launch.sh"
fi
# This worker does not share the state dir's filesystem: run the shipped copy here.
PY=$(command -v python3 || command -v python)
exec "$PY" {SHIP}
"""


def build(files: JobFiles, shipped_launch: str, always_ship: bool = False) -> Path:
    """Write the run's bundle (a fresh token each submission) and return its directory.

    ``always_ship``: run the shipped copy even where the worker sees the run dir (a shared
    filesystem too slow or too lagging to read from, and how the shipped path is tested on one node).
    """
    token = secrets.token_hex(16)
    write_private(files.run_dir / TOKEN, token + "\n")
    bundle = files.run_dir / BUNDLE
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(mode=0o700)
    write_private(bundle / START, start_script(files.run_dir, token, always_ship), 0o700)
    write_private(bundle / "launch.sh", shipped_launch, 0o700)
    ship = resources.files("mcp_server.core.backends.ray_jobs").joinpath("ship.py").read_text()
    write_private(bundle / SHIP, ship)
    for name in ("command.sh", "env.sh"):
        source = files.run_dir / name
        if source.exists():
            write_private(bundle / name, source.read_text())
    return bundle
