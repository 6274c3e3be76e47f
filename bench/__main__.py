"""``python -m bench``: run every benchmark and print one table of their figures.

Each figure is a ratio to a baseline measured in the same run doing the same work the plain
way (see each script's docstring), with its target. Every bench runs in its own process
(they set environment variables and start servers, tmux runs and sidecars) under a time
limit; its figures come back through ``$RESEARCH_MCP_BENCH_FIGURES``.

    python -m bench                   # everything this machine can run
    python -m bench --skip-slow       # leave out the minutes-long ones (ingest, sidecar_cost, ...)
    python -m bench --skip-slurm      # leave out the two that submit to the real Slurm
    python -m bench --only list_runs metrics_read
    python -m bench --quick           # smaller sizes and fewer rounds: a first look, not the figures
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import FIGURES_ENV


@dataclass(frozen=True)
class Bench:
    name: str  # the script (bench/<name>.py), and a variant's words after it
    args: list[str]  # the figures' sizes
    quick: list[str]  # --quick
    limit_s: int  # a bench still running after this is stopped and counted as failed
    tags: frozenset[str] = field(default_factory=frozenset)  # slow, slurm, browser, mlflow


SLOW, SLURM = frozenset({"slow"}), frozenset({"slurm"})
PRINTED, EVENTS = ["--source", "printed"], ["--source", "events"]
BENCHES = [
    Bench("list_runs", ["--rounds", "200"], ["--rounds", "40"], 300),
    Bench("metrics_read", ["--points", "10000000", "--rounds", "200"], ["--points", "1000000"], 600),
    Bench("cold_start", ["--rounds", "20"], ["--rounds", "6"], 600),
    Bench("logs_follow", ["-n", "100", "--idle", "30"], ["-n", "40", "--idle", "10"], 300),
    Bench("logs_tail", ["--size-gb", "1", "--rounds", "30"], ["--size-gb", "0.2", "--rounds", "20"], 300),
    Bench("detect_cluster", ["-n", "30", "--cold", "5"], ["-n", "10", "--cold", "2"], 300),
    Bench("launch_latency", ["-n", "20"], ["-n", "5"], 300),
    Bench("wait_latency", ["-n", "20"], ["-n", "5"], 600),
    Bench("alert_latency", ["-n", "20"], ["-n", "5"], 600),
    Bench("context_budget", [], [], 600),
    Bench("launch_burst", [], ["--runs", "20"], 1200, SLOW),
    Bench("sidecar_cost", [], ["--seconds", "15", "--runs", "10", "--window", "10"], 900, SLOW),
    Bench("event_readers", [], ["--steps", "20000", "--repeat", "1"], 600, SLOW),
    Bench("ingest", [], ["--lines", "100000"], 1800, SLOW | {"mlflow"}),
    Bench("ingest --source printed", ["--source", "printed"], [*PRINTED, "--size", "20000"], 900, SLOW),
    Bench("ingest --source events", ["--source", "events"], [*EVENTS, "--size", "20000"], 900, SLOW),
    Bench("dashboard", [], ["--loads", "2", "--window", "5"], 600, SLOW | {"browser"}),
    Bench("adaptive_sweep", [], ["--seeds", "1"], 900, SLOW),
    Bench("slurm_submit", [], ["-n", "3"], 600, SLURM),
    Bench("slurm_poll_load", [], ["--runs", "10", "--seconds", "30"], 600, SLURM),
    Bench("ray_submit", [], ["-n", "3"], 600, frozenset({"ray"})),
]


def runnable(b: Bench, args: argparse.Namespace) -> str | None:
    """Why ``b`` is left out, or None to run it."""
    if args.only and b.name.split()[0] not in args.only and b.name not in args.only:
        return "not asked for (--only)"
    if args.skip_slow and "slow" in b.tags:
        return "slow (--skip-slow)"
    if "slurm" in b.tags and (args.skip_slurm or shutil.which("sbatch") is None):
        return "--skip-slurm" if args.skip_slurm else "no Slurm here (sbatch not on PATH)"
    if "ray" in b.tags and importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install -e '.[ray]')"
    if "browser" in b.tags and shutil.which("chromedriver") is None:
        return "no chromedriver here"
    return None


def run(b: Bench, quick: bool, figures: Path) -> tuple[int | None, float]:
    argv = [sys.executable, "-m", f"bench.{b.name.split()[0]}", *(b.quick if quick else b.args)]
    env = {**os.environ, FIGURES_ENV: str(figures)}
    t0 = time.monotonic()
    print(f"\n=== {b.name}: {' '.join(argv[2:])}", flush=True)
    try:
        code: int | None = subprocess.run(argv, env=env, timeout=b.limit_s, check=False).returncode
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - t0


def _ratio(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "-"


def table(rows: list[dict[str, object]]) -> str:
    heads = ("bench", "figure (ours / same-run baseline)", "ratio", "target", "result", "detail")
    cells = [
        (str(r["bench"]), str(r["name"]), _ratio(r.get("ratio")), str(r["target"]), str(r["result"]),
         str(r.get("detail", "")))
        for r in rows
    ]  # fmt: skip
    widths = [min(62, max(len(h), *(len(c[i]) for c in cells))) for i, h in enumerate(heads[:-1])]
    out = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=False)) + "  " + heads[-1]]
    for c in cells:
        out.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=False)) + "  " + c[-1])
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-slow", action="store_true", help="leave out the minutes-long benches")
    parser.add_argument("--skip-slurm", action="store_true", help="leave out the benches that use Slurm")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. list_runs)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="rmcp-bench-figures-") as tmp:
        for b in BENCHES:
            why = runnable(b, args)
            if why == "not asked for (--only)":
                continue
            if why is not None:
                skipped = {"bench": b.name, "name": "skipped", "target": "", "result": "skip", "detail": why}
                rows.append(skipped)
                continue
            figures = Path(tmp) / f"{b.name.replace(' ', '_')}.jsonl"
            code, took = run(b, args.quick, figures)
            got = [json.loads(line) for line in figures.read_text().splitlines()] if figures.exists() else []
            for f in got:
                rows.append({**f, "bench": b.name, "result": "PASS" if f["ok"] else "FAIL"})
            if code is None or (code != 0 and not got):
                what = f"stopped after {b.limit_s} s" if code is None else f"exited {code} with no figure"
                rows.append({"bench": b.name, "name": what, "target": "", "result": "FAIL", "detail": ""})
            print(f"=== {b.name}: {took:.0f} s", flush=True)
    print("\n" + table(rows))
    failed = [r for r in rows if r["result"] == "FAIL"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows without a failure{' (quick sizes)' * args.quick}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
