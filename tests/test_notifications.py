"""Notification targets, filters and the outbox over a real store (no endpoint needed here)."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.storage.sqlwrites import insert_event
from mcp_server.core.workflow.notifications import outbox
from mcp_server.core.workflow.notifications.settings import NotifySettings
from mcp_server.core.workflow.notifications.targets import (
    EventFilter,
    NotifyConfig,
    Target,
    mask,
    scrub,
    split_urls,
)

SECRET = "T0K3NsecretABCDEF"
SLACK = f"slack://TA1B2C3D4/B0E1F2G3H/{SECRET}/#runs"


def test_event_filters_parse_the_documented_forms_and_refuse_the_rest() -> None:
    default = EventFilter.parse(None)
    assert default.kinds == {"run_finished", "run_failed", "run_lost", "sweep_done"}
    assert (
        default.wants_alert("warning") and default.wants_alert("critical") and not default.wants_alert("info")
    )
    only = EventFilter.parse("run_failed, alert>=critical")
    assert only.kinds == {"run_failed"} and not only.wants_alert("warning") and only.wants_alert("critical")
    assert EventFilter.parse("alert").wants_alert("info")
    assert EventFilter.parse(only.spec()) == only
    with pytest.raises(InvalidInput, match="unknown; give a comma-separated list of run_finished"):
        EventFilter.parse("run_done")
    with pytest.raises(InvalidInput):
        EventFilter.parse("alert>=loud")


def test_labels_and_error_texts_never_carry_the_url_secret() -> None:
    assert SECRET not in mask(SLACK) and mask(SLACK).startswith("slack://…#")
    assert mask("json://user:pw@10.0.0.5:8080/hook/abcdef123").startswith("json://10.0.0.5:8080/…#")
    assert SECRET not in scrub(f"POST /services/B0E1F2G3H/{SECRET} failed", SLACK)
    assert split_urls(f"{SLACK}, tgram://123:ABC/-100 mailto://u:p@x.com?to=a@x.com,b@y.com") == [
        SLACK,
        "tgram://123:ABC/-100",
        "mailto://u:p@x.com?to=a@x.com,b@y.com",
    ]


def test_the_config_file_is_private_git_ignored_and_merged_with_the_environment(tmp_path: Path) -> None:
    config = NotifyConfig(tmp_path, environ={"RESEARCH_MCP_NOTIFY": "json://127.0.0.1:9/a"})
    added = config.add(SLACK, "run_failed,alert>=critical")
    assert stat.S_IMODE(os.stat(tmp_path / "notify.json").st_mode) == 0o600
    assert (tmp_path / ".gitignore").read_text().splitlines()[-1] == "*"
    targets = config.targets()
    assert [(t.source, t.url) for t in targets] == [("env", "json://127.0.0.1:9/a"), ("config", SLACK)]
    assert targets[1].events.spec() == "run_failed,alert>=critical"
    with pytest.raises(InvalidInput, match="already configured"):
        config.add(SLACK)
    with pytest.raises(InvalidInput) as err:
        config.add("not a url " + SECRET)
    assert SECRET not in str(err.value)
    with pytest.raises(InvalidInput, match="RESEARCH_MCP_NOTIFY"):
        config.remove(targets[0].id)
    assert config.remove(added.id[:6]).url == SLACK
    assert [t.source for t in config.targets()] == ["env"]


def _run_event(services, run_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
    with services.store.write() as s:
        insert_event(
            s.connection().exec_driver_sql,
            ts=time.time(),
            kind="run_status",
            run_id=run_id,
            data={"status": status},
        )


def test_each_event_is_queued_once_per_target_however_many_processes_queue_it(services) -> None:  # type: ignore[no-untyped-def]
    target = Target(
        "json://127.0.0.1:9/x", EventFilter.parse("run_finished,run_failed,alert>=warning"), "env"
    )
    conn = outbox.connect(services.state.db_path)
    outbox.ensure_targets(conn, [target], time.time())
    _run_event(services, "run-20260101-000000-00000001", "running")  # not news
    _run_event(services, "run-20260101-000000-00000001", "finished")
    _run_event(services, "run-20260101-000000-00000002", "stopped")  # not in this filter
    with services.store.write() as s:
        raise_alert(s, run_id=None, kind="nonfinite", severity="critical", message="NaN", signature="nan")
        raise_alert(s, run_id=None, kind="failure", severity="critical", message="failed", signature="f")
        raise_alert(s, run_id=None, kind="stall", severity="info", message="quiet", signature="s")

    settings = NotifySettings()
    queued: list[int] = []

    def queue() -> None:
        own = outbox.connect(services.state.db_path)
        for _ in range(5):
            queued.append(outbox.enqueue(own, target, settings, time.time())[0])
        own.close()

    threads = [threading.Thread(target=queue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kinds = [r[0] for r in conn.execute("SELECT kind FROM notify_deliveries ORDER BY id")]
    # The finished run and the NaN alert; the failure alert comes as run_failed, info is below the bar.
    assert kinds == ["run_finished", "alert"] and sum(queued) == 2


def test_a_message_is_claimed_by_exactly_one_sender(services) -> None:  # type: ignore[no-untyped-def]
    target = Target("json://127.0.0.1:9/y", EventFilter.parse(None), "env")
    conn = outbox.connect(services.state.db_path)
    outbox.ensure_targets(conn, [target], time.time())
    _run_event(services, "run-20260101-000000-00000003", "failed")
    outbox.enqueue(conn, target, NotifySettings(), time.time())
    barrier = threading.Barrier(6)
    won: list[str] = []

    def claim(who: str) -> None:
        own = outbox.connect(services.state.db_path)
        barrier.wait()
        if outbox.claim_next(own, target.id, who, time.time(), 60) is not None:
            won.append(who)
        own.close()

    threads = [threading.Thread(target=claim, args=(f"sender-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    # Only the claimant may record the outcome.
    delivery_id = conn.execute("SELECT id FROM notify_deliveries").fetchone()[0]
    other = next(f"sender-{i}" for i in range(6) if f"sender-{i}" != won[0])
    assert not outbox.finish(conn, delivery_id, other, state="sent")
    assert outbox.finish(conn, delivery_id, won[0], state="sent")
    assert outbox.stats(conn, 10)[target.id].sent == 1
