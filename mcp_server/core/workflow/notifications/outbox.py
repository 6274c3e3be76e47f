"""The notification outbox in the store: targets' cursors and leases, and one row per message.

Every statement here is a compare-and-set or runs in a ``BEGIN IMMEDIATE`` transaction, so
any number of processes may call any of it at once:

- queueing reads the event feed after a target's cursor and inserts one delivery per
  (target, event key) with ``INSERT OR IGNORE`` on a unique index, moving the cursor in the
  same transaction: an event is queued once per target, whoever queues it;
- a delivery is sent only by whoever moved it from ``pending`` to ``sending``, and only that
  claimant may mark it ``sent``, retry it or fail it.

Stdlib sqlite3 only: the watch loop in every server and sidecar calls the cheap reads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.storage import sqlite_open
from mcp_server.core.workflow.notifications.settings import NotifySettings
from mcp_server.core.workflow.notifications.targets import Target

BUSY_TIMEOUT_S = 30.0
SCAN = 500
_TERMINAL = tuple(sorted(s.value for s in TERMINAL))
# Endings arrive as run_failed / run_lost (with the cause); 'notify' is this module's own
# failure alert, never sent anywhere (a failing target would otherwise feed itself).
SKIPPED_ALERT_KINDS = frozenset({"failure", "lost", "notify"})
_CANDIDATES = (
    "kind = 'alert' OR (kind = 'run_status' AND json_extract(data, '$.status') IN "
    f"({', '.join(repr(s) for s in _TERMINAL)}))"
)


def connect(db_path: Path) -> sqlite3.Connection:
    return sqlite_open.connect(db_path, BUSY_TIMEOUT_S, check_same_thread=False)


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def latest_event(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


# ---- targets and leases -------------------------------------------------------------------


def ensure_targets(conn: sqlite3.Connection, targets: Iterable[Target], now: float) -> None:
    """A target first seen starts at the end of the feed: it is told what happens from now on."""
    rows = [(t.id, t.label, now) for t in targets]
    if rows:
        with write(conn):
            latest = latest_event(conn)
            conn.executemany(
                "INSERT OR IGNORE INTO notify_targets (id, label, cursor, created_at, sender_host) "
                "VALUES (?, ?, ?, ?, '')",
                [(i, label, latest, t) for i, label, t in rows],
            )


@dataclass(frozen=True)
class TargetState:
    id: str
    cursor: int
    sender_token: str | None
    sender_heartbeat: float | None
    unsent: int  # pending or sending deliveries


def target_states(conn: sqlite3.Connection, ids: list[str]) -> list[TargetState]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT t.id, t.cursor, t.sender_token, t.sender_heartbeat, "
        "(SELECT count(*) FROM notify_deliveries d WHERE d.target_id = t.id AND d.state IN "
        f"('pending', 'sending')) FROM notify_targets t WHERE t.id IN ({marks})",
        ids,
    ).fetchall()
    return [TargetState(*row) for row in rows]


def has_candidates(conn: sqlite3.Connection, after: int) -> bool:
    """Whether any event after ``after`` could become a notification (for any filter)."""
    row = conn.execute(f"SELECT 1 FROM events WHERE id > ? AND ({_CANDIDATES}) LIMIT 1", (after,)).fetchone()
    return row is not None


def skip_quiet(conn: sqlite3.Connection, target_id: str, old: int, new: int) -> None:
    """Move a cursor over events none of which could notify (compare-and-set on the old cursor)."""
    conn.execute("UPDATE notify_targets SET cursor = ? WHERE id = ? AND cursor = ?", (new, target_id, old))


def is_stale(state: TargetState, now: float, lease_s: float) -> bool:
    return (
        state.sender_token is None or state.sender_heartbeat is None or state.sender_heartbeat < now - lease_s
    )


def reserve(conn: sqlite3.Connection, ids: list[str], token: str, now: float, lease_s: float) -> list[str]:
    """Reserve the leases of ``ids`` that nobody holds, for a sender about to be started with ``token``."""
    won = []
    with write(conn):
        for target_id in ids:
            cur = conn.execute(
                "UPDATE notify_targets SET sender_token = ?, sender_pid = NULL, sender_heartbeat = ? "
                "WHERE id = ? AND (sender_token IS NULL OR sender_heartbeat IS NULL OR sender_heartbeat < ?)",
                (token, now, target_id, now - lease_s),
            )
            if cur.rowcount == 1:
                won.append(target_id)
    return won


def hold(
    conn: sqlite3.Connection, ids: list[str], token: str, pid: int, host: str, now: float, lease_s: float
) -> list[str]:
    """Take or keep the leases of ``ids`` (reserved for ``token``, already ours, or stale); return ours."""
    held = []
    with write(conn):
        for target_id in ids:
            cur = conn.execute(
                "UPDATE notify_targets SET sender_token = ?, sender_pid = ?, sender_host = ?, "
                "sender_heartbeat = ? WHERE id = ? AND (sender_token = ? OR sender_token IS NULL "
                "OR sender_heartbeat IS NULL OR sender_heartbeat < ?)",
                (token, pid, host, now, target_id, token, now - lease_s),
            )
            if cur.rowcount == 1:
                held.append(target_id)
    return held


def release(conn: sqlite3.Connection, ids: Iterable[str], token: str) -> None:
    with write(conn):
        for target_id in ids:
            conn.execute(
                "UPDATE notify_targets SET sender_token = NULL, sender_pid = NULL, sender_heartbeat = NULL "
                "WHERE id = ? AND sender_token = ?",
                (target_id, token),
            )


# ---- queueing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    key: str
    kind: str
    event_id: int
    run_id: str | None
    sweep_id: str | None
    alert_id: str | None


def _sweep_done(conn: sqlite3.Connection, sweep_id: str) -> int | None:
    """The number of runs of a sweep whose runs have all ended; None while any has not."""
    statuses = [r[0] for r in conn.execute("SELECT status FROM runs WHERE sweep_id = ?", (sweep_id,))]
    if statuses and all(s in _TERMINAL for s in statuses):
        return len(statuses)
    return None


def plan_event(conn: sqlite3.Connection, target: Target, row: tuple[Any, ...]) -> list[Planned]:
    """The messages one event makes for one target (none, one, or a run ending plus its sweep's end)."""
    event_id, stored_kind, run_id, raw, sweep_id = row
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return []
    wanted = target.events
    out: list[Planned] = []
    if stored_kind == "run_status" and data.get("status") in _TERMINAL:
        kind = f"run_{data['status']}"
        if kind in wanted.kinds:
            out.append(Planned(f"event:{event_id}", kind, event_id, run_id, sweep_id, None))
        if sweep_id and "sweep_done" in wanted.kinds and (n := _sweep_done(conn, sweep_id)) is not None:
            # Keyed by the sweep's size: extending a sweep and finishing it again is news again.
            out.append(Planned(f"sweep:{sweep_id}:{n}", "sweep_done", event_id, run_id, sweep_id, None))
    elif (
        stored_kind == "alert"
        and data.get("kind") not in SKIPPED_ALERT_KINDS
        and wanted.wants_alert(str(data.get("severity", "")))
    ):
        out.append(Planned(f"event:{event_id}", "alert", event_id, run_id, sweep_id, data.get("alert_id")))
    return out


def enqueue(
    conn: sqlite3.Connection, target: Target, settings: NotifySettings, now: float
) -> tuple[int, bool]:
    """Queue the target's messages for events after its cursor; returns (queued, more to read)."""
    with write(conn):
        row = conn.execute("SELECT cursor FROM notify_targets WHERE id = ?", (target.id,)).fetchone()
        if row is None:
            return 0, False
        cursor = int(row[0])
        events = conn.execute(
            "SELECT e.id, e.kind, e.run_id, e.data, r.sweep_id, e.ts FROM events e "
            "LEFT JOIN runs r ON r.id = e.run_id WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (cursor, SCAN),
        ).fetchall()
        queued = 0
        for *event, ts in events:
            if ts < now - settings.max_age_s:
                continue
            for p in plan_event(conn, target, tuple(event)):
                cur = conn.execute(
                    "INSERT OR IGNORE INTO notify_deliveries (target_id, key, kind, event_id, run_id, "
                    "sweep_id, alert_id, state, attempts, next_at, last_error, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, '', ?)",
                    (target.id, p.key, p.kind, p.event_id, p.run_id, p.sweep_id, p.alert_id, now, now),
                )
                queued += cur.rowcount
        if events:
            conn.execute("UPDATE notify_targets SET cursor = ? WHERE id = ?", (events[-1][0], target.id))
    return queued, len(events) == SCAN


# ---- sending ------------------------------------------------------------------------------

DELIVERY_COLUMNS = ("id", "target_id", "key", "kind", "event_id", "run_id", "sweep_id", "alert_id",
                    "state", "attempts", "next_at", "title", "body", "level")  # fmt: skip


@dataclass
class Delivery:
    id: int
    target_id: str
    key: str
    kind: str
    event_id: int | None
    run_id: str | None
    sweep_id: str | None
    alert_id: str | None
    state: str
    attempts: int
    next_at: float
    title: str | None
    body: str | None
    level: str


def reclaim_expired(conn: sqlite3.Connection, now: float) -> None:
    """Messages whose claimant died mid-send go back to pending (their claim ran out)."""
    expired = "state = 'sending' AND claim_until < ?"
    # Read first: an UPDATE that matches nothing still takes the store's write lock.
    if conn.execute(f"SELECT 1 FROM notify_deliveries WHERE {expired} LIMIT 1", (now,)).fetchone():
        conn.execute(
            f"UPDATE notify_deliveries SET state = 'pending', claimed_by = NULL WHERE {expired}", (now,)
        )


def claim_next(
    conn: sqlite3.Connection, target_id: str, who: str, now: float, claim_s: float
) -> Delivery | None:
    """Claim the target's oldest unsent message if it is due: one in flight per target, in order."""
    row = conn.execute(
        f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM notify_deliveries WHERE target_id = ? "
        "AND state IN ('pending', 'sending') ORDER BY id LIMIT 1",
        (target_id,),
    ).fetchone()
    if row is None:
        return None
    delivery = Delivery(*row)
    if delivery.state != "pending" or delivery.next_at > now:
        return None
    cur = conn.execute(
        "UPDATE notify_deliveries SET state = 'sending', claimed_by = ?, claim_until = ?, "
        "attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
        (who, now + claim_s, delivery.id),
    )
    if cur.rowcount != 1:
        return None  # another sender claimed it first
    delivery.state, delivery.attempts = "sending", delivery.attempts + 1
    return delivery


def save_text(conn: sqlite3.Connection, delivery_id: int, title: str, body: str, level: str) -> None:
    """Keep the rendered message, so every retry sends the same words."""
    conn.execute(
        "UPDATE notify_deliveries SET title = ?, body = ?, level = ? WHERE id = ?",
        (title, body, level, delivery_id),
    )


def finish(
    conn: sqlite3.Connection, delivery_id: int, who: str, *, state: str, error: str = "", next_at: float = 0.0
) -> bool:
    """Record the outcome of a claimed send: sent, pending again (retry at ``next_at``) or failed."""
    now = time.time()
    cur = conn.execute(
        "UPDATE notify_deliveries SET state = ?, last_error = ?, next_at = ?, claimed_by = NULL, "
        "claim_until = NULL, sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
        "WHERE id = ? AND state = 'sending' AND claimed_by = ?",
        (state, error[:500], next_at, state, now, delivery_id, who),
    )
    return cur.rowcount == 1


# ---- reading back (CLI, get_run) ----------------------------------------------------------


@dataclass(frozen=True)
class TargetStats:
    id: str
    label: str
    sent: int
    unsent: int
    failed: int
    last_error: str
    sender_alive: bool


def stats(conn: sqlite3.Connection, lease_s: float) -> dict[str, TargetStats]:
    now = time.time()
    out = {}
    rows = conn.execute(
        "SELECT t.id, t.label, t.sender_heartbeat, "
        "sum(d.state = 'sent'), sum(d.state IN ('pending', 'sending')), sum(d.state = 'failed'), "
        "(SELECT last_error FROM notify_deliveries e WHERE e.target_id = t.id AND e.last_error != '' "
        "ORDER BY e.id DESC LIMIT 1) "
        "FROM notify_targets t LEFT JOIN notify_deliveries d ON d.target_id = t.id GROUP BY t.id"
    ).fetchall()
    for tid, label, beat, sent, unsent, failed, error in rows:
        alive = beat is not None and beat >= now - lease_s
        out[tid] = TargetStats(tid, label, sent or 0, unsent or 0, failed or 0, error or "", alive)
    return out


def forget(conn: sqlite3.Connection, target_id: str) -> None:
    with write(conn):
        conn.execute("DELETE FROM notify_deliveries WHERE target_id = ?", (target_id,))
        conn.execute("DELETE FROM notify_targets WHERE id = ?", (target_id,))
