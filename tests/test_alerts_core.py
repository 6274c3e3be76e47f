from pathlib import Path

from sqlmodel import select

from mcp_server.core.monitoring.alerts import raise_alert
from mcp_server.core.storage.models import Alert, Event
from mcp_server.core.storage.store import Store


def test_same_signature_raises_once_within_its_ttl(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    kw = dict(run_id="run-x", kind="nan", severity="critical", message="loss is NaN", signature="nan:loss")
    with store.write() as s:
        first = raise_alert(s, **kw)  # type: ignore[arg-type]
        again = raise_alert(s, **kw)  # type: ignore[arg-type]
        other_run = raise_alert(s, **{**kw, "run_id": "run-y"})  # type: ignore[arg-type]
    assert first is not None and again is None and other_run is not None
    assert first.choices == ["Ignore", "Stop run"]
    with store.write() as s:
        assert raise_alert(s, **kw, ttl_s=0) is not None  # type: ignore[arg-type]
    with store.read() as s:
        assert len(s.exec(select(Alert)).all()) == 3
        events = s.exec(select(Event).where(Event.kind == "alert")).all()
    assert len(events) == 3 and events[0].data["alert_id"] == first.id


def test_stopping_a_run_from_one_alert_closes_its_other_stop_only_alerts(services, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    run = services.runs.create(name="noisy", command="sleep 300", workdir=str(workdir))
    other = services.runs.create(name="other", command="sleep 300", workdir=str(workdir))
    with services.store.write() as s:
        spike = raise_alert(
            s, run_id=run.id, kind="spike", severity="warning", message="spike", signature="a"
        )
        stall = raise_alert(
            s, run_id=run.id, kind="stall", severity="warning", message="stall", signature="b"
        )
        judge = raise_alert(
            s, run_id=run.id, kind="judge", severity="info", message="try lr/2", signature="c",
            choices=("Ignore", "Rerun"),
        )  # fmt: skip
        elsewhere = raise_alert(
            s, run_id=other.id, kind="stall", severity="warning", message="x", signature="b"
        )
    assert spike and stall and judge and elsewhere
    done = services.alerts.resolve(spike.id, "Stop run")
    assert done.action == "stopped" and done.closed == [stall.id] and "closed 1 other alert" in done.note
    still_open = {a.id for a in services.alerts.list(status="open").alerts}
    assert still_open == {judge.id, elsewhere.id}  # another action, or another run: left to decide
    closed = services.alerts.list(status="resolved").alerts
    assert {(a.id, a.resolution) for a in closed} == {(spike.id, "Stop run"), (stall.id, "Stop run")}
    with services.store.read() as s:
        events = s.exec(select(Event).where(Event.kind == "alert_resolved")).all()
    assert {e.data["alert_id"] for e in events} == {spike.id, stall.id}
    services.runs.stop(other.id)
