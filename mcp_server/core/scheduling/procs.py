"""Questions about local processes: alive, whose, which session, running which script.

Leases and the GPU inventory need these answers from processes that are not our
children (a launch script started by another server process, a GPU process of another
user), so everything goes through pids and /proc rather than process handles.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_server.core.execution.jobfiles import JobFiles

PROC = Path("/proc")


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_of(pid: int) -> int | None:
    """The session id of ``pid``; None when it is gone or not visible (another pid namespace)."""
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def user_of(pid: int) -> str | None:
    """Login name owning ``pid`` (uid as text when it has no name); None when not visible."""
    try:
        uid = (PROC / str(pid)).stat().st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def runs_script(pid: int, script: Path) -> bool:
    """True when ``pid`` is alive and is a shell running ``script`` (guards against pid reuse)."""
    if not process_alive(pid):
        return False
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # alive but unreadable (no /proc access): trust the pid
    return os.fsencode(str(script)) in argv


def job_lives(files: JobFiles) -> bool:
    """True while the run's launch script or its job's process group lives.

    Either one still has the exit code to come: the group is the user's command, the
    launch script records the code just after the group ends (or waits for a GPU before
    it starts). Both outlive the tmux pane, so this, not the window, says a run is gone.
    """
    pgid = files.read_pgid()
    if pgid is not None and group_alive(pgid):
        return True
    launcher = files.read_launcher_pid()
    return launcher is not None and runs_script(launcher, files.launch)
