"""Waiting for a run's files to change: inotify where the kernel has it, a poll elsewhere.

Following a log by polling pays twice: a line shows up to a poll interval late, and an
idle follower still wakes every interval. A follower here blocks on the kernel's file
events for the run's directory (output.log growing, exit_code appearing, the sidecar's
log) through inotify_simple, so a written line is seen within a millisecond or two and an
idle follower costs nothing. Where inotify is missing (not Linux, or no watch left) it
falls back to waking every ``poll_s``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A file written (every write), closed after writing, created, or renamed into the directory.
_MASK_NAMES = ("MODIFY", "CLOSE_WRITE", "CREATE", "MOVED_TO", "ATTRIB")


def _inotify() -> Any | None:
    """An inotify instance and its event mask, or None where there is none."""
    try:
        import inotify_simple  # Linux only; imported where a follower needs it
    except ImportError:
        return None
    try:
        ino = inotify_simple.INotify()
    except OSError as err:  # no inotify in this kernel, or no instance left
        log.info("no inotify (%s): following files by polling", err)
        return None
    mask = 0
    for name in _MASK_NAMES:
        mask |= getattr(inotify_simple.flags, name)
    return ino, mask


class DirWatch:
    """Block until something changes in any of the watched directories (or a timeout).

    One instance per follower; ``wait`` returns the files that changed (an empty set on a
    timeout; with polling, the watched directories themselves, as a poll cannot tell which)."""

    def __init__(self, dirs: Iterable[Path] = (), poll_s: float = 0.5) -> None:
        self.poll_s = poll_s
        made = _inotify()
        self._ino: Any = made[0] if made is not None else None
        self._mask: int = made[1] if made is not None else 0
        self._wds: dict[int, Path] = {}
        self._dirs: dict[Path, int | None] = {}
        self._lock = threading.Lock()
        self._sleep = threading.Event()
        for d in dirs:
            self.add(d)

    @property
    def evented(self) -> bool:
        """Whether changes are told by the kernel (False: found by polling)."""
        return self._ino is not None

    def add(self, directory: Path) -> None:
        with self._lock:
            if directory in self._dirs:
                return
            wd = None
            if self._ino is not None:
                try:
                    wd = self._ino.add_watch(os.fspath(directory), self._mask)
                    self._wds[wd] = directory
                except OSError as err:  # not there yet, or out of watches: poll it
                    log.debug("cannot watch %s (%s): polling it", directory, err)
            self._dirs[directory] = wd

    def remove(self, directory: Path) -> None:
        with self._lock:
            wd = self._dirs.pop(directory, None)
            if wd is not None and self._ino is not None:
                self._wds.pop(wd, None)
                with contextlib.suppress(OSError):
                    self._ino.rm_watch(wd)

    @property
    def dirs(self) -> list[Path]:
        with self._lock:
            return list(self._dirs)

    def wait(self, timeout_s: float) -> set[Path]:
        """The paths that changed (a file, or a whole directory when polled), as soon as one does;
        an empty set after ``timeout_s``."""
        with self._lock:
            unwatched = [d for d, wd in self._dirs.items() if wd is None]
        if self._ino is None or unwatched:
            # Polled: a directory that could not be watched is looked at every poll_s.
            self._sleep.wait(min(timeout_s, self.poll_s))
            return set(unwatched if self._ino is not None else self.dirs)
        try:
            events = self._ino.read(timeout=max(0, int(timeout_s * 1000)))
        except OSError:  # the instance was closed under a waiting reader
            return set()
        with self._lock:
            dirs = [(self._wds[e.wd], e.name) for e in events if e.wd in self._wds]
        return {d / name if name else d for d, name in dirs}

    def close(self) -> None:
        self._sleep.set()
        if self._ino is not None:
            with contextlib.suppress(OSError):
                self._ino.close()


def follow_dirs(
    dirs: Callable[[], Iterable[Path]],
    changed: Callable[[set[Path]], None],
    stop: threading.Event,
    *,
    refresh_s: float = 1.0,
    wake: threading.Event | None = None,
) -> None:
    """Call ``changed`` with the paths that change, until ``stop`` is set (a thread's body).

    ``dirs`` is asked again every ``refresh_s`` for the directories to watch now (a page may
    start or stop watching a run), and at once when ``wake`` is set while nothing is
    watched. A directory newly watched is reported as changed: what was written to it
    before its watch was set is not missed."""
    watch = DirWatch()
    wake = wake or stop
    try:
        while not stop.is_set():
            wanted = set(dirs())
            for d in set(watch.dirs) - wanted:
                watch.remove(d)
            added = wanted - set(watch.dirs)
            for d in added:
                watch.add(d)
            if added:
                changed(added)
            if not wanted:
                wake.wait(refresh_s)
                if wake is not stop:
                    wake.clear()
                continue
            hit = watch.wait(refresh_s)
            if hit:
                changed(hit)
    finally:
        watch.close()
