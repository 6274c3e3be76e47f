"""The LLM judge through litellm against an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import secrets
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from mcp_server.core.services import Services
from sidecar.judge import build_digest, parse_verdict
from tests.fake_llm import VERDICT, FakeLLM
from tests.helpers import PYTHON, wait_for

SCRIPT = """
import json, os, time
f = open(os.environ["RESEARCH_METRICS_FILE"], "a", buffering=1)
step = 0
while not os.path.exists("stop"):
    if not os.path.exists("pause"):
        f.write(json.dumps({"step": step, "loss": 0.7 + 0.001 * (step % 3)}) + "\\n")
        step += 1
    time.sleep(0.05)
"""


def test_verdict_parsing() -> None:
    v = parse_verdict(
        '```json\n{"action": "alert", "severity": "critical", "message": "m", "choices": ["A"]}\n```'
    )
    assert (v.action, v.severity, v.message, v.choices) == ("alert", "critical", "m", ("A",))
    assert parse_verdict('{"action": "ignore"}').action == "ignore"
    for bad, why in [
        ("no json here", "no JSON object"),
        ('{"action": "panic"}', "action must be"),
        ('{"action": "alert", "severity": "dire", "message": "m"}', "severity must be"),
        ('{"action": "alert", "message": ""}', "non-empty message"),
        ('{"action": "alert", "message": "m", "choices": "Stop"}', "choices must be"),
        ("{not: json}", "invalid JSON"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_verdict(bad)


def test_digest_is_compact_and_bounded() -> None:
    digest = build_digest(
        run={"id": "run-1", "name": "n", "status": "running", "command": "python train.py", "elapsed_s": 3.0},
        metrics=[
            {"key": "loss", "count": 5, "first": 2.0, "min": 0.5, "max": 2.0, "last": 0.5, "last_step": 4,
             "recent": [1.0, 0.5], "nonfinite": 0}
        ],
        log_tail="x" * 100_000,
        open_alerts=["[warning] loss spiked"],
    )  # fmt: skip
    assert "python train.py" in digest and "loss: n=5" in digest and "loss spiked" in digest
    assert len(digest) < 7000


def _judge_row(state_dir: Path, run_id: str) -> tuple[int, int, int, int]:
    with sqlite3.connect(state_dir / "research.db") as con:
        return con.execute(
            "SELECT judge_calls, judge_errors, judge_prompt_tokens, judge_completion_tokens FROM sidecars "
            "WHERE run_id = ?",
            (run_id,),
        ).fetchone()


def test_judge_verdicts_alert_and_failures_only_reach_the_log(
    state_dir: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = "sk-test-" + secrets.token_hex(12)
    fake = FakeLLM()
    with fake.running():
        # The sidecar inherits these from the process that launches the run, as from a server.
        monkeypatch.setenv("RESEARCH_MCP_JUDGE_MODEL", "openai/judge-test")
        monkeypatch.setenv("OPENAI_API_BASE", fake.api_base)
        monkeypatch.setenv("OPENAI_API_KEY", api_key)
        monkeypatch.setenv("RESEARCH_MCP_JUDGE_INTERVAL_S", "0.3")
        monkeypatch.setenv("RESEARCH_MCP_JUDGE_TIMEOUT_S", "1")
        services = Services(state_dir)
        try:
            (workdir / "train.py").write_text(textwrap.dedent(SCRIPT))
            run = services.runs.create(name="judged", command=f"{PYTHON} train.py", workdir=str(workdir))
            sidecar_log = Path(run.run_dir) / "sidecar.log"

            def points() -> int:
                m = services.runs.get(run.id).monitor
                return m.ingest.points if m else 0

            def logged(text: str) -> bool:
                return text in sidecar_log.read_text()

            # Garbage, an HTTP 500 and a timeout: a line in sidecar.log each, nothing else changes.
            for mode, evidence in [
                ("garbage", "judge answer was not a usable verdict"),
                ("500", "InternalServerError"),
                ("slow", "Timeout"),
            ]:
                fake.mode = mode
                before = points()
                wait_for(lambda e=evidence: logged(e), 40, interval=0.1, what=f"the judge's {mode} line")
                assert fake.served(mode) >= 1
                assert services.alerts.list(run_id=run.id, status="all").total == 0
                wait_for(lambda b=before: points() > b, 10, what="metrics still flowing")
                assert services.runs.get(run.id).status == "running"

            # A real verdict becomes an alert with the model's choices.
            fake.mode = "alert"
            alert = wait_for(
                lambda: services.alerts.list(run_id=run.id).alerts, 20, what="the judge's alert"
            )[0]
            assert (
                alert.kind == "judge" and alert.severity == "warning" and alert.message == VERDICT["message"]
            )
            assert alert.choices == VERDICT["choices"]
            calls, errors, prompt_tokens, completion_tokens = _judge_row(state_dir, run.id)
            assert calls >= 4 and errors >= 3
            assert prompt_tokens >= 240 and completion_tokens >= 60  # the garbage answer cost tokens too

            # What the judge sent: the command and a metric summary, under a bounded size.
            _, body = next((m, b) for m, b in fake.requests if m == "alert")
            digest = body["messages"][-1]["content"]
            assert "train.py" in digest and "loss: n=" in digest and len(digest) < 8000

            # No new data → no new verdicts, however many intervals pass.
            (workdir / "pause").touch()
            time.sleep(1.0)
            asked = len(fake.requests)
            time.sleep(1.5)
            assert len(fake.requests) == asked

            # The provider key reached the provider, and no log.
            assert any(h.get("authorization") == f"Bearer {api_key}" for h in fake.headers)
            assert api_key not in sidecar_log.read_text()
            (workdir / "stop").touch()
            wait_for(lambda: services.runs.get(run.id).status == "finished", 20)
        finally:
            services.close()
