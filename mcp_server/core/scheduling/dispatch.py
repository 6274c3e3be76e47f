"""Start, find and wake the queue dispatcher of a state dir. Stdlib only.

Queued local runs used to carry one Python waiter each (about 61 MB, polling the store's
write lock); 200 queued runs cost 12 GB and starved the lock until runs failed. Now a
queued run's launch script waits in bash, blocked on a read from its own FIFO
(``runs/<id>/wake``, no process started while it waits), and ONE dispatcher per state dir
(``core.scheduling.dispatcher``) admits runs in FIFO order, writes their ``admission.env`` and wakes
them. It is not a daemon to install: whoever queues a run (a server, a waiting launch
script that finds it gone) starts it, a file lock keeps it single, and it exits once the
queue has been empty for a while.

Whoever starts it takes the lock first and hands it to the child (``--lock-fd``), so a
burst of queued runs starts one dispatcher, not one per run: a starter that cannot take
the lock knows one runs (or is starting) and spawns nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

QUEUE_DIR = "queue"
LOCK = "dispatcher.lock"
PID = "dispatcher.pid"
WAKE = "wake"
LOG = "dispatcher.log"
MODULE = "mcp_server.core.scheduling.dispatch"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Never handed to the dispatcher (it serves nothing) nor marked as a run's process.
_NOT_INHERITED = ("RESEARCH_MCP_TOKEN", "RESEARCH_RUN_ID", "RESEARCH_RUN_DIR", "RESEARCH_METRICS_FILE")


def queue_dir(state_root: Path) -> Path:
    path = state_root / QUEUE_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def wake(fifo: Path) -> bool:
    """Write one byte to a FIFO without blocking; False when nobody listens (or no FIFO)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet; ENOENT: not made yet. The reader polls anyway.
        return False
    try:
        os.write(fd, b"\n")
    except OSError as err:
        return err.errno == errno.EAGAIN  # full: a wake-up is pending already
    finally:
        os.close(fd)
    return True


def running_pid(state_root: Path) -> int | None:
    """The pid of this state dir's live dispatcher, if any."""
    try:
        pid = int((state_root / QUEUE_DIR / PID).read_text().strip() or 0)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if MODULE.encode() in argv and str(state_root).encode() in argv else None


def argv(state_root: Path) -> list[str]:
    return [sys.executable, "-m", MODULE, "--state-dir", str(state_root)]


def child_env(knobs: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(knobs)
    return env


def ensure_running(state_root: Path, knobs: Mapping[str, str]) -> None:
    """Start the dispatcher unless one runs (or is being started by someone else)."""
    if running_pid(state_root) is not None:
        wake(state_root / QUEUE_DIR / WAKE)
        return
    lock = _take_lock(state_root)
    if lock is None:
        return  # held: a dispatcher runs or is starting
    log = os.open(queue_dir(state_root) / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [*argv(state_root), "--lock-fd", str(lock)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            pass_fds=(lock,),
            cwd=str(state_root),
            env=child_env(knobs),
        )
    finally:
        os.close(log)
        os.close(lock)  # the child's copy keeps the lock
    _reap_later(proc)


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    import threading

    threading.Thread(target=proc.wait, name=f"reap-dispatcher-{proc.pid}", daemon=True).start()


def start_lines(state_root: str, knobs: Mapping[str, str]) -> list[str]:
    """Bash for a waiting launch script: start the dispatcher if none lives (no fork while one does)."""
    qdir = shlex.quote(str(Path(state_root) / QUEUE_DIR))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(knobs.items()))
    unset = " ".join(f"-u {k}" for k in _NOT_INHERITED)
    pythonpath = shlex.quote(str(_PACKAGE_ROOT))
    cmd = " ".join(shlex.quote(a) for a in argv(Path(state_root)))
    return [
        f"QUEUE_DIR={qdir}",
        "dispatcher_alive() {",
        "    local dpid= argv=()",
        '    read -r dpid 2>/dev/null < "$QUEUE_DIR/dispatcher.pid" || return 1',
        '    [ -n "$dpid" ] && mapfile -d "" -t argv 2>/dev/null < "/proc/$dpid/cmdline" || return 1',
        f'    [[ "${{argv[*]}}" == *{MODULE}* ]]',
        "}",
        # The lock is taken here and handed to the child: racing waiters start one dispatcher.
        "start_dispatcher() {",
        '    mkdir -p -m 700 "$QUEUE_DIR"',
        '    ( exec 9>> "$QUEUE_DIR/dispatcher.lock" && flock -n 9 || exit 0',
        f"      PYTHONPATH={pythonpath}${{PYTHONPATH:+:$PYTHONPATH}} setsid env {unset} {env} {cmd} \\",
        '        --lock-fd 9 >> "$QUEUE_DIR/dispatcher.log" 2>&1 < /dev/null 8<&- & )',
        "}",
    ]


def _take_lock(state_root: Path) -> int | None:
    fd = os.open(queue_dir(state_root) / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _adopt_lock(fd: int) -> int | None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: succeeds at once
    except OSError:
        return None
    return fd


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--lock-fd", type=int, default=None, help="the lock, already taken by the starter")
    ns = parser.parse_args(args)
    root = Path(ns.state_dir).resolve()
    if not (root / "research.db").is_file():
        print(f"research-mcp dispatcher: no store in {root}; nothing to dispatch", file=sys.stderr)
        return 2
    lock = _adopt_lock(ns.lock_fd) if ns.lock_fd is not None else _take_lock(root)
    if lock is None:
        return 0  # another dispatcher serves this state dir
    pid_path = root / QUEUE_DIR / PID
    tmp = pid_path.with_name(f"{PID}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    os.chmod(tmp, 0o600)
    tmp.replace(pid_path)
    try:
        from mcp_server.core.scheduling.dispatcher import serve  # heavy: only the one that holds the lock

        return serve(root)
    finally:
        with contextlib.suppress(OSError):
            if pid_path.read_text().strip() == str(os.getpid()):
                pid_path.unlink()
        os.close(lock)


if __name__ == "__main__":
    raise SystemExit(main())
