"""TensorBoard event-file readers compared: import time, peak RSS, time to read one file's scalars.

Why the sidecar reads event files with its own small decoder (sidecar/sources/tfevents.py)
rather than a maintained reader: every run has its own sidecar, so what a reader adds to
a process is paid per run. Each option runs in a fresh interpreter (the median of
``--repeat`` runs); options whose package is missing are reported as such:

    python -m bench.event_readers                       # the tensorboard from '.[test]'
    python -m bench.event_readers --python /path/venv/bin/python   # a venv with tbparse too

Options: ours (framing + wire decoding, stdlib only); tensorboard's EventFileLoader (the
reader TensorBoard itself uses); tensorboard's event_pb2 protobuf classes behind our
framing (the lightest maintained decoding); tbparse (a pandas DataFrame of the scalars);
tensorboardX has no reader (it is a writer only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import figure

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
path = sys.argv[1]
{read}
t2 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "read_ms": (t2 - t1) * 1000, "points": n,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

OPTIONS = {
    "bare python (no reader)": ("", "n = 0"),
    "ours (sidecar.sources.tfevents)": (
        "from sidecar.sources.tfevents import event_scalars, split_records",
        "n = sum(len(event_scalars(r)[1]) for r in split_records(open(path, 'rb').read()).records)",
    ),
    "tensorboard event_pb2 + our framing": (
        "from tensorboard.compat.proto import event_pb2\nfrom sidecar.sources.tfevents import split_records",
        "n = 0\nfor r in split_records(open(path, 'rb').read()).records:\n"
        "    e = event_pb2.Event.FromString(r)\n"
        "    n += sum(1 for v in e.summary.value if v.HasField('simple_value'))",
    ),
    "tensorboard (Legacy)EventFileLoader": (
        "from tensorboard.backend.event_processing import event_file_loader\n"
        "EventFileLoader = event_file_loader.LegacyEventFileLoader",
        "n = sum(1 for e in EventFileLoader(path).Load()\n"
        "        for v in e.summary.value if v.HasField('simple_value'))",
    ),
    "tbparse SummaryReader (pandas)": (
        "from tbparse import SummaryReader",
        "n = len(SummaryReader(path, pivot=False).scalars)",
    ),
}


def write_events(path: Path, steps: int) -> int:
    """An event file with two scalars per step, written by TensorBoard's own writer."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(path))
    for step in range(steps):
        values = [
            summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0 / (step + 1)),
            summary_pb2.Summary.Value(tag="lr", simple_value=1e-3),
        ]
        writer.add_event(event_pb2.Event(step=step, wall_time=0.0, summary=summary_pb2.Summary(value=values)))
    writer.close()
    return 2 * steps


def measure(python: str, imports: str, read: str, path: Path) -> dict[str, float] | str:
    code = MEASURE.format(imports=imports, read=read)
    # Through a shell: a process forked straight from this one would start with its RSS as its peak.
    argv = ["sh", "-c", '"$0" "$@"; exit $?', python, "-c", code, str(path)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or ["failed"])[-1][:80]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(python: str, steps: int, repeat: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        points = write_events(Path(tmp), steps)
        (path,) = Path(tmp).glob("events.out.tfevents.*")
        size = path.stat().st_size / 1e6
        print(f"event file: {steps:,} events, {points:,} scalars, {size:.1f} MB; interpreter {python}")
        print(f"{'reader':<38}{'import ms':>10}{'peak RSS MB':>13}{'read ms':>10}{'scalars/s':>12}")
        results: dict[str, dict[str, float]] = {}
        for name, (imports, read) in OPTIONS.items():
            runs = [measure(python, imports, read, path) for _ in range(repeat)]
            if any(isinstance(r, str) for r in runs):
                print(f"{name:<38}  not available: {next(r for r in runs if isinstance(r, str))}")
                continue
            med = {k: statistics.median(r[k] for r in runs) for k in ("import_ms", "rss_mb", "read_ms")}  # type: ignore[index]
            n = runs[0]["points"]  # type: ignore[index]
            rate = n / (med["read_ms"] / 1000) if n and med["read_ms"] else 0.0
            print(
                f"{name:<38}{med['import_ms']:>10.0f}{med['rss_mb']:>13.1f}{med['read_ms']:>10.0f}{rate:>12,.0f}"
            )
            results[name] = med
    ours = results.get("ours (sidecar.sources.tfevents)")
    theirs = results.get("tensorboard (Legacy)EventFileLoader")
    if ours and theirs:  # what a sidecar pays to read events: import + read, and its peak memory
        cost = (ours["import_ms"] + ours["read_ms"]) / (theirs["import_ms"] + theirs["read_ms"])
        figure(
            "event_readers", "our event reader import+read / TensorBoard's loader's", cost, "≤ 1", cost <= 1,
            f"{ours['import_ms'] + ours['read_ms']:.0f} vs {theirs['import_ms'] + theirs['read_ms']:.0f} ms; "
            f"peak RSS {ours['rss_mb']:.0f} vs {theirs['rss_mb']:.0f} MB",
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure the readers in")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raise SystemExit(main(args.python, args.steps, args.repeat))
