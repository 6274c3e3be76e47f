"""Recorded real framework runs, replayed as real runs: every truth value lands at its step.

Each fixture in tests/fixtures/frameworks/ was recorded from a real run (its record.py,
versions.json) with a truth file of (step, key, value) written by the framework's own
callback. Here each is replayed through ``create_run`` (``replay.py`` writes the recorded
bytes and log files as the job) and read back through the metrics service:

- printed output alone: every value of the fixture's printed truth (``expect.json``:
  ``printed``) is stored at its step (printed numbers are rounded: 3 significant digits);
- printed output and the log files together: every value of the files' truth is stored at
  its step (exactly, unless the key only exists in print), and no (key, step) holds more
  points than the framework logged there — the printed duplicate of a file's key is not
  stored.

All replays run at once (module fixture), so the whole file costs about one run's time.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.core.services import Services
from tests.conftest import kill_state_dir_jobs
from tests.helpers import PYTHON, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expect.json").exists())
PRINTED_REL = 5e-3  # printed values carry 3-4 significant digits
PRINTED_ABS = 6e-4  # and fairseq/Keras print a fixed 3-4 decimals
FILE_REL = 1e-6  # event files hold float32


def expect(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "expect.json").read_text())


def truth(name: str, vias: list[str]) -> list[dict[str, Any]]:
    absent = set(expect(name)["absent"])
    rows = [json.loads(line) for line in (FIXTURES / name / "truth.jsonl").read_text().splitlines()]
    return [r for r in rows if r["via"] in vias and r["key"] not in absent]


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, bool], dict[str, Any]]]:
    """Every fixture replayed twice (printed output only; output and files), all at once."""
    root = tmp_path_factory.mktemp("frameworks")
    state = root / "state"
    saved = {k: os.environ.get(k) for k in ("RESEARCH_MCP_SIDECAR_DISCOVER_S",)}
    os.environ["RESEARCH_MCP_SIDECAR_DISCOVER_S"] = "0.2"  # inherited by the sidecars: files found mid-run
    services = Services(state)
    try:
        runs = {}
        for name in NAMES:
            for with_files in (False, True):
                if with_files and not (FIXTURES / name / "files").is_dir():
                    continue
                work = root / f"{name}-{'files' if with_files else 'printed'}"
                work.mkdir()
                flag = "" if with_files else " --no-files"
                command = f"{PYTHON} {FIXTURES / 'replay.py'} {FIXTURES / name}{flag}"
                runs[(name, with_files)] = services.runs.create(
                    name=name.replace("_", "-"), command=command, workdir=str(work)
                )

        def ended() -> bool:
            return all(
                (r := services.runs.get(run.id)).status in ("finished", "failed")
                and r.monitor
                and r.monitor.exited
                for run in runs.values()
            )

        wait_for(ended, 240, interval=0.5, what="every replay ended and its sidecar exited")
        con = sqlite3.connect(state / "research.db")
        out = {}
        for key, run in runs.items():
            rows = con.execute(
                "SELECT s.key, s.source, p.step, p.value FROM metric_points p JOIN metric_series s "
                "ON s.id = p.series_id WHERE s.run_id = ?",
                (run.id,),
            ).fetchall()
            out[key] = {"run": services.runs.get(run.id), "points": rows}
        con.close()
        yield out
    finally:
        services.close()
        kill_state_dir_jobs(state)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def close(value: float | None, expected: float, source: str) -> bool:
    if value is None:
        return math.isnan(expected)
    if source == "log":
        return math.isclose(value, expected, rel_tol=PRINTED_REL, abs_tol=PRINTED_ABS)
    return math.isclose(value, expected, rel_tol=FILE_REL, abs_tol=1e-12)


def missing(points: list[tuple[str, str, int, float | None]], wanted: list[dict[str, Any]]) -> list[Any]:
    stored: dict[tuple[str, int], list[tuple[float | None, str]]] = {}
    for key, source, step, value in points:
        stored.setdefault((key, step), []).append((value, source))
    return [
        (t["via"], t["key"], t["step"], t["value"], stored.get((t["key"], t["step"])))
        for t in wanted
        if not any(close(v, t["value"], src) for v, src in stored.get((t["key"], t["step"]), []))
    ]


def doubled(points: list[tuple[str, str, int, float | None]], logged: list[dict[str, Any]]) -> dict[Any, int]:
    """(key, step) stored more often than the framework logged a value there (at least once)."""
    times = Counter((t["key"], t["step"]) for t in logged)
    stored = Counter((key, step) for key, _, step, _ in points)
    return {k: n for k, n in stored.items() if n > max(1, times.get(k, 0))}


@pytest.mark.parametrize("name", [n for n in NAMES if expect(n)["printed"]])
def test_printed_output_gives_every_value_at_the_frameworks_step(
    name: str, replays: dict[tuple[str, bool], dict[str, Any]]
) -> None:
    got = replays[(name, False)]
    wanted = truth(name, expect(name)["printed"])
    assert wanted, f"{name}: its truth file has no printed values"
    assert got["run"].status == "finished"
    assert missing(got["points"], wanted) == []
    assert {source for _, source, _, _ in got["points"]} == {"log"}
    assert doubled(got["points"], wanted) == {}, "a redraw or another rank's line stored again"


@pytest.mark.parametrize("name", [n for n in NAMES if expect(n)["files"]])
def test_log_files_give_every_value_and_no_point_is_stored_twice(
    name: str, replays: dict[tuple[str, bool], dict[str, Any]]
) -> None:
    got = replays[(name, True)]
    wanted = truth(name, expect(name)["files"])
    assert got["run"].status == "finished"
    assert missing(got["points"], wanted) == []
    logged = truth(name, expect(name)["printed"] + expect(name)["files"])
    assert doubled(got["points"], logged) == {}, (
        f"{name}: points stored more often than the framework logged them"
    )
    sources = {s.kind for s in got["run"].monitor.sources}
    assert sources - {"log", "jsonl"}, f"{name}: get_run names no log file among its sources: {sources}"


def test_a_file_replaces_the_printed_series_of_the_same_key(
    replays: dict[tuple[str, bool], dict[str, Any]],
) -> None:
    """HF prints 'loss' (4 significant digits, at the bar's counter) and saves it in trainer_state.json."""
    got = replays[("hf_trainer_5", True)]
    series = {m.key: m for m in got["run"].metrics}
    assert series["loss"].source == "trainer_state" and series["train/loss"].source == "tfevents"
    assert series["train_runtime"].source == "log"  # only printed: the last checkpoint predates it
    loss = sorted((step, value) for key, _, step, value in got["points"] if key == "loss")
    on_log = sorted((t["step"], t["value"]) for t in truth("hf_trainer_5", ["on_log"]) if t["key"] == "loss")
    assert loss == on_log  # full precision, each step once
    ingest = got["run"].monitor.ingest
    assert ingest.duplicates > 0 and ingest.non_numeric == 0
    paths = [s.path for s in got["run"].monitor.sources]
    assert paths[0] == "output.log" and "*/trainer_state.json" in paths
    assert any(p.startswith("out/runs/") and "events.out.tfevents" in p for p in paths)
