"""The real frameworks, run live through create_run: each fixture's record.py, checked against
the truth file its framework's callback writes during that same run.

Marked ``frameworks``: it needs torch and the frameworks, which are no dependency of
research-mcp (torch alone is hundreds of MB). Interpreters are taken from
``RESEARCH_MCP_FRAMEWORKS_PYTHON`` (a ``:``-separated list; each fixture uses the first one
that has what it needs — transformers 4.x and 5.x cannot share a venv), else this one. A
fixture whose packages no interpreter has is skipped, saying which.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_server.core.services import Services
from tests.conftest import kill_state_dir_jobs
from tests.helpers import wait_for
from tests.test_frameworks import FIXTURES, expect, missing, truth

pytestmark = pytest.mark.frameworks

# What each recording needs: a module and the major version it must have (None: any).
NEEDS: dict[str, list[tuple[str, int | None]]] = {
    "hf_trainer_5": [("torch", None), ("transformers", 5), ("tensorboard", None)],
    "hf_trainer_4": [("torch", None), ("transformers", 4), ("tensorboard", None)],
    "keras_fit": [("torch", None), ("keras", 3)],
    "keras_tensorboard": [("tensorflow", None), ("keras", 3), ("tensorboard", None)],
    "lightning": [("lightning", 2), ("tensorboard", None)],
    "lightning_csv": [("lightning", 2)],
    "torch_summarywriter": [("torch", None), ("tensorboard", None)],
    "nanogpt": [("torch", None)],
    "fairseq": [("torch", None)],
    "torchrun_ddp": [("torch", None)],
    "tqdm_postfix": [("torch", None), ("tqdm", None)],
}
PROBE = (
    "import importlib, json, os, sys\n"
    "out = {}\n"
    "for name in sorted(sys.argv[1:], key=lambda n: n == 'keras'):\n"
    "    if name == 'keras':  # Keras needs a backend to import: the one this venv has\n"
    "        os.environ['KERAS_BACKEND'] = 'torch' if 'torch' in out else 'tensorflow'\n"
    "    try:\n"
    "        out[name] = getattr(importlib.import_module(name), '__version__', '0')\n"
    "    except Exception:\n"
    "        pass\n"
    "print(json.dumps(out))\n"
)


def interpreters() -> dict[str, dict[str, str]]:
    listed = os.environ.get("RESEARCH_MCP_FRAMEWORKS_PYTHON") or sys.executable
    modules = sorted({m for needs in NEEDS.values() for m, _ in needs})
    found = {}
    for python in filter(None, listed.split(":")):
        env = {**os.environ, "KERAS_BACKEND": "torch"}  # as the runs get it (keras_tensorboard picks its own)
        probe = subprocess.run(
            [python, "-c", PROBE, *modules], capture_output=True, text=True, timeout=300, env=env
        )
        found[python] = json.loads(probe.stdout or "{}") if probe.returncode == 0 else {}
    return found


def pick(name: str, found: dict[str, dict[str, str]]) -> str | None:
    for python, versions in found.items():
        if all(
            m in versions and (major is None or versions[m].split(".")[0] == str(major))
            for m, major in NEEDS[name]
        ):
            return python
    return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every fixture whose framework is installed, recorded again live, all at once."""
    found = interpreters()
    root = tmp_path_factory.mktemp("live")
    state = root / "state"
    services = Services(state)
    results: dict[str, Any] = {}
    try:
        runs = {}
        for name in NEEDS:
            python = pick(name, found)
            if python is None:
                results[name] = f"needs {', '.join(m for m, _ in NEEDS[name])} in one of {list(found)}"
                continue
            work = root / name
            work.mkdir()
            shutil.copy(FIXTURES / name / "record.py", work)
            launcher = (
                "-m torch.distributed.run --nproc-per-node 2 --tee 3 " if name == "torchrun_ddp" else ""
            )
            runs[name] = services.runs.create(
                name=name.replace("_", "-"),
                command=f"{python} -u {launcher}record.py",
                workdir=str(work),
                env={"TRUTH_FILE": str(work / "truth.jsonl"), "KERAS_BACKEND": "torch"},
            )

        def ended() -> bool:
            return all(
                (r := services.runs.get(run.id)).status in ("finished", "failed", "stopped", "lost")
                and r.monitor is not None
                and r.monitor.exited
                for run in runs.values()
            )

        wait_for(ended, 900, interval=1.0, what="every live framework run ended")
        for name, run in runs.items():
            detail = services.runs.get(run.id)
            with sqlite3.connect(state / "research.db") as con:
                rows = con.execute(
                    "SELECT s.key, s.source, p.step, p.value FROM metric_points p JOIN metric_series s "
                    "ON s.id = p.series_id WHERE s.run_id = ?",
                    (run.id,),
                ).fetchall()
            truth_rows = [json.loads(x) for x in (root / name / "truth.jsonl").read_text().splitlines()]
            results[name] = {"run": detail, "points": list(rows), "truth": truth_rows}
        yield results
    finally:
        services.close()
        kill_state_dir_jobs(state)


@pytest.mark.parametrize("name", list(NEEDS))
def test_a_live_run_gives_every_value_its_framework_logged(name: str, live: dict[str, Any]) -> None:
    got = live[name]
    if isinstance(got, str):
        pytest.skip(f"{name}: {got} (set RESEARCH_MCP_FRAMEWORKS_PYTHON)")
    assert got["run"].status == "finished", got["run"].status_reason
    e = expect(name)
    vias = e["files"] or e["printed"]
    absent = set(e["absent"])
    wanted = [t for t in got["truth"] if t["via"] in vias and t["key"] not in absent]
    assert wanted and missing(got["points"], wanted) == []
    assert truth(name, vias), "the recorded fixture has the same kinds of truth"
