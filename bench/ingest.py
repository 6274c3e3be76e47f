"""Ingest of a 1,000,000-line metrics.jsonl: the sidecar vs MLflow's log_batch, same points.

Ours: a real sidecar process (``python -m sidecar``) catching up on a run whose
metrics.jsonl already holds every line — parse, rules, batched inserts, offsets; timed
from process start to exit (interpreter start-up included, which only counts against us).
MLflow: ``bench/mlflow_ingest.py`` under a separate venv with MLflow installed, logging the
same points with ``MlflowClient.log_batch`` into a SQLite-backed tracking store (timed
after MLflow's import and run creation). Both runs happen in this one invocation.

MLflow is not a dependency of research-mcp; the bench makes its own venv on first use:

    python -m bench.ingest                      # creates bench/.venv-mlflow (pip install mlflow)
    python -m bench.ingest --mlflow-python PATH # or use the python of an existing MLflow venv
    python -m bench.ingest --lines 100000       # a quicker trial (--keys N: N metrics per line)
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import temp_state_dir, verdict

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".venv-mlflow"


def mlflow_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    python = DEFAULT_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {DEFAULT_VENV} with MLflow (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "mlflow"], check=True)
    return str(python)


def write_metrics(path: Path, lines: int, keys: int) -> int:
    """A realistic log: step, a noisy decreasing loss, then (with keys > 1) an lr schedule etc."""
    rng = random.Random(0)
    extra = [f"metric_{i}" for i in range(keys - 1)]
    with open(path, "w") as fh:
        for step in range(lines):
            record: dict[str, float] = {
                "step": step,
                "loss": round(2.0 / (1 + step * 1e-4) + rng.uniform(-0.01, 0.01), 6),
            }
            for i, key in enumerate(extra):
                record[key] = round(rng.random() * (i + 1), 6)
            fh.write(json.dumps(record) + "\n")
    return lines * keys


def ours(path: Path) -> tuple[float, int]:
    from mcp_server.core.services import Services

    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        sv = Services(state)
        try:
            run = sv.runs.create(
                name="ingest", command="true", workdir=work, auto_start=False, backend="local"
            )
            sv.runs.stop(run.id)  # an ended run: its sidecar catches up on the file and exits
            target = sv.runs.files(run.id).metrics
            target.unlink()
            target.hardlink_to(path)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "sidecar", "--state-dir", str(state), "--run-id", run.id], check=True
            )
            seconds = time.perf_counter() - t0
            with sqlite3.connect(state / "research.db") as con:
                (stored,) = con.execute("SELECT COUNT(*) FROM metric_points").fetchone()
        finally:
            sv.close()
    return seconds, stored


def theirs(python: str, path: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [python, str(BENCH_DIR / "mlflow_ingest.py"), str(path), str(Path(tmp) / "mlflow.db")],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), int(result["stored"])


def main(lines: int, keys: int, python: str | None) -> int:
    mlflow = mlflow_python(python)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        points = write_metrics(path, lines, keys)
        size_mb = path.stat().st_size / 1e6
        print(f"metrics.jsonl: {lines:,} lines, {points:,} points, {size_mb:.0f} MB")
        our_s, our_n = ours(path)
        print(f"research-mcp sidecar      {our_s:8.2f} s  {our_n / our_s:12,.0f} points/s  stored {our_n:,}")
        their_s, their_n = theirs(mlflow, path)
        rate = their_n / their_s
        print(f"MLflow log_batch (SQLite) {their_s:8.2f} s  {rate:12,.0f} points/s  stored {their_n:,}")
    assert our_n == points == their_n, (our_n, points, their_n)
    ratio = their_s / our_s
    print(verdict("ingest speed-up over MLflow log_batch (×)", ratio, "≥ 10×", ratio >= 10))
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1, help="metrics per line (MLflow takes ~5 min per 1M)")
    parser.add_argument("--mlflow-python", default=None, help="python of a venv with mlflow installed")
    args = parser.parse_args()
    raise SystemExit(main(args.lines, args.keys, args.mlflow_python))
