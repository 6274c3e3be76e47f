"""Record run endings promptly and cheaply, for waiters and subscribers.

A run's end is only an event once someone settles it (a reconcile, a sidecar). Waiting
for events must not depend on someone else looking, so waiters and the server's watcher
call ``ExitSettler.tick`` every poll: it stats the exit-code files of watched runs (no
backend call) and settles just those that ended; every ``full_every_s`` it runs a full
reconcile (which also notices lost jobs) and tops up sweeps. Many processes may tick at
once: settling is a compare-and-set, so each ending is recorded once. Within one process,
ticks closer together than ``min_interval_s`` are skipped: a hundred concurrent waiters
then cost what one does, and an ending is still recorded within that interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mcp_server.core.execution.reconcile import Reconciler

log = logging.getLogger(__name__)


class ExitSettler:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        full_every_s: float = 15.0,
        min_interval_s: float = 0.1,
        after_full: list[Callable[[], object]] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.full_every_s = full_every_s
        self.after_full = after_full or []
        self.min_interval_s = min_interval_s
        self._last_full = time.monotonic()
        self._last_tick = -float("inf")
        self._lock = threading.Lock()

    def tick(self) -> int:
        """Settle what has ended; returns how many runs changed status (0 for a skipped tick)."""
        with self._lock:
            t = time.monotonic()
            if t - self._last_tick < self.min_interval_s:
                return 0
            self._last_tick = t
            full = t - self._last_full >= self.full_every_s
            if full:
                self._last_full = t
        runs = self.reconciler.watched_runs()
        if full:
            changed = self.reconciler.reconcile() if runs else []
            for hook in self.after_full:
                try:
                    hook()
                except Exception:  # a hook must not stop settling
                    log.exception("periodic settle hook failed")
            return len(changed)
        ended = self.reconciler.ended(runs)
        return len(self.reconciler.reconcile(ended)) if ended else 0
