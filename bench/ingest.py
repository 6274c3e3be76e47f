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

Two more sources, each against a same-run baseline that reads the same bytes the plain way
(no storage, no rules — so the ratio is what storing them costs on top of reading them):

    python -m bench.ingest --source printed     # HF Trainer 5.x output (tqdm bars + quoted dicts)
                                                # vs splitting on \r/\n and ast.literal_eval of each dict
    python -m bench.ingest --source events      # a TensorBoard event file (found under the workdir)
                                                # vs TensorBoard's own EventFileLoader reading its scalars
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import figure, temp_state_dir

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


def ours(path: Path, place: str = "metrics") -> tuple[float, int, float]:
    """A real sidecar process catching up on an ended run whose ``place`` holds ``path``:
    ``metrics`` (metrics.jsonl), ``output`` (output.log) or ``workdir`` (a file under it).
    Returns seconds (process start to exit), points stored and the sidecar's peak RSS in MB
    (NaN without GNU time)."""
    from mcp_server.core.services import Services

    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        sv = Services(state)
        try:
            run = sv.runs.create(
                name="ingest", command="true", workdir=work, auto_start=False, backend="local"
            )
            sv.runs.stop(run.id)  # an ended run: its sidecar catches up on the file and exits
            files = sv.runs.files(run.id)
            if place == "workdir":
                # The run "started" before the file was written, so the file is the run's.
                with sqlite3.connect(state / "research.db") as con:
                    con.execute("UPDATE runs SET started_at = ? WHERE id = ?", (time.time() - 60, run.id))
                target = Path(work) / "runs" / "exp" / path.name
                target.parent.mkdir(parents=True)
                shutil.copy(path, target)
            else:
                target = files.metrics if place == "metrics" else files.output
                target.unlink(missing_ok=True)
                target.hardlink_to(path)
            # GNU time forks the sidecar from itself: a child forked straight from this (large)
            # process would start with this process's RSS as its peak.
            timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
            t0 = time.perf_counter()
            done = subprocess.run(
                [*timer, sys.executable, "-m", "sidecar", "--state-dir", str(state), "--run-id", run.id],
                check=True,
                stderr=subprocess.PIPE,
                text=True,
            )
            seconds = time.perf_counter() - t0
            peak_kb = float(done.stderr.split()[-1]) if timer else math.nan
            with sqlite3.connect(state / "research.db") as con:
                (stored,) = con.execute("SELECT COUNT(*) FROM metric_points").fetchone()
        finally:
            sv.close()
    return seconds, stored, peak_kb / 1024


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
        our_s, our_n, _ = ours(path)
        print(f"research-mcp sidecar      {our_s:8.2f} s  {our_n / our_s:12,.0f} points/s  stored {our_n:,}")
        their_s, their_n = theirs(mlflow, path)
        rate = their_n / their_s
        print(f"MLflow log_batch (SQLite) {their_s:8.2f} s  {rate:12,.0f} points/s  stored {their_n:,}")
    assert our_n == points == their_n, (our_n, points, their_n)
    ratio = their_s / our_s
    ok = figure(
        "ingest", f"ingest of {lines:,} lines: MLflow log_batch time / sidecar time", ratio, "≥ 10",
        ratio >= 10, f"{our_s:.1f} s vs MLflow {their_s:.1f} s",
    )  # fmt: skip
    return 0 if ok else 1


# ---- printed Trainer output and event files ------------------------------------------------------

BAR = "\r{pct:3d}%|{bar:<10}| {n}/{total} [00:{s:02d}<00:10,  9.51it/s]"


def write_trainer_output(path: Path, logs: int, every: int = 5) -> int:
    """transformers 5.x output: a tqdm bar redrawn at every step, a quoted dict every ``every``
    steps written as tqdm.write does (clear, dict, redraw). Returns the points in it."""
    total = logs * every
    rng = random.Random(0)
    with open(path, "w") as fh:
        for step in range(1, total + 1):
            pct = 100 * step // total
            bar = BAR.format(pct=pct, bar="█" * (pct // 10), n=step, total=total, s=step % 60)
            fh.write(bar)
            if step % every == 0:
                loss = 4.0 / (1 + step * 1e-4) + rng.uniform(-0.01, 0.01)
                fh.write("\r" + " " * 50 + "\r")
                fh.write(
                    f"{{'loss': '{loss:.4g}', 'grad_norm': '{rng.uniform(0.5, 1.5):.4g}', "
                    f"'learning_rate': '{3e-4 * (1 - step / total):.4g}', 'epoch': '{step / total:.4g}'}}\n"
                )
                fh.write(bar)
        fh.write("\n")
    return logs * 4


PLAIN_PRINTED = r"""
import ast, re, sys, time
t0 = time.perf_counter()
data = open(sys.argv[1], "rb").read().decode()
points = []
for piece in re.split(r"[\r\n]", data):
    if piece.startswith("{"):
        points.extend((k, float(v)) for k, v in ast.literal_eval(piece).items())
print(time.perf_counter() - t0, len(points))
"""

PLAIN_EVENTS = r"""
import sys, time
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader as EventFileLoader
t0 = time.perf_counter()
points = [(e.step, v.tag, v.simple_value) for e in EventFileLoader(sys.argv[1]).Load()
          for v in e.summary.value if v.HasField("simple_value")]
print(time.perf_counter() - t0, len(points))
"""


def baseline(code: str, path: Path) -> tuple[float, int]:
    """The plain read, in its own interpreter (after its imports, which only count against us)."""
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True)
    seconds, points = out.stdout.split()
    return float(seconds), int(points)


def other_source(kind: str, size: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "printed":
            path = Path(tmp) / "output.log"
            points = write_trainer_output(path, size)
            what, place, plain = f"{size:,} Trainer dicts", "output", PLAIN_PRINTED
            plain_name = "split + ast.literal_eval (no store)"
        else:
            from bench.event_readers import write_events

            points = write_events(Path(tmp), size)
            (path,) = Path(tmp).glob("events.out.tfevents.*")
            what, place, plain = f"{size:,} events", "workdir", PLAIN_EVENTS
            plain_name = "TensorBoard LegacyEventFileLoader alone"
        mb = path.stat().st_size / 1e6
        print(f"{kind}: {what}, {points:,} points, {mb:.1f} MB")
        our_s, our_n, rss = ours(path, place)
        print(
            f"research-mcp sidecar {our_s:31.2f} s  {our_n / our_s:12,.0f} points/s  stored {our_n:,}"
            f"  peak RSS {rss:.0f} MB"
        )
        their_s, their_n = baseline(plain, path)
        print(f"{plain_name:<40} {their_s:8.2f} s  {their_n / their_s:12,.0f} points/s  read {their_n:,}")
    assert our_n == points == their_n, (our_n, points, their_n)
    ratio = (our_n / our_s) / (their_n / their_s)
    ok = figure(
        "ingest", f"{kind}: sidecar points/s / {plain_name} points/s", ratio, "≥ 0.1 (storing costs ≤ 10×)",
        ratio >= 0.1, f"{our_s:.2f} s vs {their_s:.2f} s",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1, help="metrics per line (MLflow takes ~5 min per 1M)")
    parser.add_argument("--mlflow-python", default=None, help="python of a venv with mlflow installed")
    parser.add_argument("--source", choices=["jsonl", "printed", "events"], default="jsonl")
    parser.add_argument("--size", type=int, default=100_000, help="printed: Trainer dicts; events: events")
    args = parser.parse_args()
    if args.source != "jsonl":
        raise SystemExit(other_source(args.source, args.size))
    raise SystemExit(main(args.lines, args.keys, args.mlflow_python))
