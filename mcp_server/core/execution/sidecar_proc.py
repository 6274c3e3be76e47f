"""Starting a sidecar process and recognising a live one. Stdlib only.

A sidecar is ``python -m sidecar --state-dir D --run-id R``: detached (its own session,
so a server's Ctrl-C or exit does not reach it), stdin/stdout on /dev/null and stderr
appended to the run's sidecar.log (where a crash at import would show). Its argv holds
no secret; its environment is the server's minus the server's own bearer token, and keeps
the provider keys the LLM judge may need.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Never handed to a sidecar: it does not serve MCP.
_PRIVATE_TO_SERVER = ("RESEARCH_MCP_TOKEN",)


def sidecar_argv(state_root: Path, run_id: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", "--state-dir", str(state_root), "--run-id", run_id]


def is_sidecar(pid: int | None, run_id: str) -> bool:
    """True when ``pid`` is a live sidecar process for ``run_id`` (not a recycled pid)."""
    if not pid or pid <= 0:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): fall back to "some process has this pid"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        if state.rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, waiting to be reaped
    except (OSError, IndexError):
        pass
    return b"sidecar" in argv and run_id.encode() in argv


def spawn_sidecar(state_root: Path, run_id: str, log_path: Path) -> int:
    """Start a detached sidecar for ``run_id``; returns its pid."""
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_TO_SERVER}
    # The sidecar package ships beside mcp_server; make it importable even from a source tree.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            sidecar_argv(state_root, run_id),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
            cwd=str(state_root),
            env=env,
        )
    finally:
        os.close(fd)
    # Reap it when it exits so a long-lived server does not collect zombies.
    threading.Thread(target=proc.wait, name=f"reap-sidecar-{proc.pid}", daemon=True).start()
    return proc.pid
