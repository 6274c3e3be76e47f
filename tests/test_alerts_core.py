from pathlib import Path

from sqlmodel import select

from mcp_server.core.alerts import raise_alert
from mcp_server.core.models import Alert, Event
from mcp_server.core.store import Store


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
