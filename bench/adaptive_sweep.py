"""Runs a TPE sweep needs to get within 10% of a known optimum, against a grid of the same
resolution, in the same run.

The objective is a tiny CPU script whose final metric is a smooth function of its params
with its optimum 1.0 at lr = 3e-3, dropout = 0.15:

    loss = 1 + (log10(lr) - log10(3e-3))² / 4 + ((dropout - 0.15) / 0.3)²

Both sweeps run for real through the same services the MCP tools use (runs in tmux, metrics
read by sidecars, TPE asked whenever a slot frees). The grid is 7 × 7 (lr log-spaced over
1e-5..1, dropout 0..0.6); TPE searches the same box (lr as a log-range), ``max_runs`` 49,
stopped once a run is within 10%. The figure is the number of runs launched until the first
one within 10% of the optimum: TPE's median over seeds, against the grid in the order a grid
sweep launches it (the first parameter slowest) and, so the baseline is not a strawman, the
grid's expected count had its runs been launched in a random order (from the same results).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure, temp_state_dir

OBJECTIVE = """import json, math, os, sys
args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:])
lr, dropout = float(args["lr"]), float(args["dropout"])
loss = 1 + (math.log10(lr) - math.log10(3e-3)) ** 2 / 4 + ((dropout - 0.15) / 0.3) ** 2
with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
    f.write(json.dumps({"step": 0, "loss": loss}) + "\\n")
"""
OPTIMUM = 1.0
WITHIN = 1.10 * OPTIMUM
LR = [10 ** (-5 + 5 * i / 6) for i in range(7)]
DROPOUT = [round(0.1 * i, 1) for i in range(7)]
SPACE = {"lr": {"min": 1e-5, "max": 1.0, "log": True}, "dropout": {"min": 0.0, "max": 0.6}}


def loss_of(params: dict[str, Any]) -> float:
    return (
        1 + (math.log10(params["lr"]) - math.log10(3e-3)) ** 2 / 4 + ((params["dropout"] - 0.15) / 0.3) ** 2
    )


def wait_done(services: Any, sweep_id: str, stop_when_within: bool, timeout: float = 900) -> list[Any]:
    """Settle until the sweep ends (or, for TPE, a run got within 10%); runs in launch order."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.settler.tick()
        runs = services.sweeps.runs_of(sweep_id)
        finished = [r for r in runs if r.status == "finished"]
        if stop_when_within and any(loss_of(r.params) <= WITHIN for r in finished):
            services.sweeps.stop(sweep_id)
            return runs
        if services.sweeps.get(sweep_id).status not in ("running", "pending"):
            # read again: a run that ended after ``runs`` was read is what ended the sweep
            return services.sweeps.runs_of(sweep_id)
        time.sleep(0.1)
    raise TimeoutError(f"sweep {sweep_id} did not end within {timeout} s")


def runs_until_within(runs: list[Any], key: Any) -> int | None:
    ordered = sorted(runs, key=key)
    for i, run in enumerate(ordered, start=1):
        if loss_of(run.params) <= WITHIN:
            return i
    return None


def expected_random_order(losses: list[float]) -> float:
    """Expected position of the first hit among n runs in a random order with k hits: (n+1)/(k+1)."""
    hits = sum(1 for v in losses if v <= WITHIN)
    return (len(losses) + 1) / (hits + 1)


def main(seeds: int, parallel: int) -> int:
    os.environ.setdefault("RESEARCH_MCP_CLUSTER_TYPE", "cpu_only")
    os.environ.setdefault("RESEARCH_MCP_CPU_RUN_LIMIT", str(parallel))
    from mcp_server.core.services import Services

    with temp_state_dir() as state, tempfile.TemporaryDirectory() as work:
        Path(work, "objective.py").write_text(OBJECTIVE)
        services = Services(state)
        base = f"{sys.executable} objective.py"
        t0 = time.monotonic()
        grid = services.sweeps.create(
            name="grid", goal="bench", base_command=base, parameters={"lr": LR, "dropout": DROPOUT},
            parallel=parallel, workdir=work,
        )  # fmt: skip
        grid_runs = wait_done(services, grid.id, stop_when_within=False)
        grid_s = time.monotonic() - t0
        by_pk = runs_until_within(grid_runs, key=lambda r: r.pk)
        losses = [loss_of(r.params) for r in grid_runs if r.status == "finished"]
        expected = expected_random_order(losses)
        tpe_counts: list[int] = []
        tpe_s: list[float] = []
        for seed in range(seeds):
            t0 = time.monotonic()
            sweep = services.sweeps.create(
                name=f"tpe-{seed}", goal="bench", base_command=base, method="tpe", seed=seed,
                parameters=SPACE, max_runs=len(LR) * len(DROPOUT), parallel=parallel, metric="loss",
                workdir=work,
            )  # fmt: skip
            runs = wait_done(services, sweep.id, stop_when_within=True)
            tpe_s.append(time.monotonic() - t0)
            count = runs_until_within(runs, key=lambda r: r.options.get("trial", 1 << 30))
            tpe_counts.append(count if count is not None else len(runs) + 1)
            print(f"tpe seed {seed}: within 10% at run {count} ({tpe_s[-1]:.1f} s)", flush=True)
        services.close()
    median = statistics.median(tpe_counts)
    n = len(losses)
    print(f"\nobjective optimum {OPTIMUM}, target ≤ {WITHIN:.2f}; grid {len(LR)}×{len(DROPOUT)} = {n} runs")
    print(f"grid, in its launch order:          within 10% at run {by_pk}  ({grid_s:.1f} s for all {n})")
    print(f"grid, expected in a random order:   within 10% at run {expected:.1f}")
    print(f"TPE (parallel={parallel}), {seeds} seeds:     within 10% at runs {tpe_counts}, median {median}")
    print(f"ratio TPE median / grid launch order: {median / (by_pk or math.inf):.2f}")
    print(f"ratio TPE median / grid random order: {median / expected:.2f}")
    ok = by_pk is not None and median < by_pk
    figure(
        "adaptive_sweep",
        "TPE median runs / grid runs to within 10%",
        median / (by_pk or math.inf),
        "< 1",
        ok,
        f"TPE {tpe_counts} vs grid {by_pk} of {n}; random-order grid {expected:.1f}",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    raise SystemExit(main(args.seeds, args.parallel))
