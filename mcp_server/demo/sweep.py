"""``research-mcp demo``: what the product is for, in under a minute on a laptop's CPU.

A sweep of three learning rates of the bundled training script goes through exactly the
code path ``create_sweep`` uses; the largest rate diverges and its monitor raises an
alert. Then the run table (each run's best loss and a sparkline, read the way
``get_sweep``/``get_metrics`` read them), the alert with its choices, and the dashboard's
login link.
"""

from __future__ import annotations

import shlex
import sys
import time

from mcp_server.core.execution.run_status import TERMINAL
from mcp_server.core.services import Services
from mcp_server.core.workflow.overview import glance
from mcp_server.demo import train

LEARNING_RATES = [0.03, 0.3, 1.6]  # 1.6 is past 2/λmax of this problem: it diverges
METRIC = "loss"
_BARS = "▁▂▃▄▅▆▇█"
_ENDED = {s.value for s in TERMINAL}


def spark_text(values: list[float | None]) -> str:
    """A one-line sparkline; a NaN/Inf point shows as ×."""
    finite = [v for v in values if v is not None]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    return "".join("×" if v is None else _BARS[round((v - lo) / span * (len(_BARS) - 1))] for v in values)


def _wait_all(sv: Services, run_ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = sv.runs.list(limit=len(run_ids) + 50).runs
        if all(row.status in _ENDED for row in rows if row.id in run_ids):
            return
        time.sleep(0.3)


def run_demo(sv: Services, *, steps: int, timeout_s: float, workdir: str, dashboard_url: str) -> int:
    command = f"{shlex.quote(sys.executable)} {shlex.quote(train.__file__)} --steps {int(steps)} --lr {{lr}}"
    sweep = sv.sweeps.create(
        name="demo-lr",
        goal="which learning rate fits y = 3x - 1 best?",
        base_command=command,
        parameters={"lr": LEARNING_RATES},
        workdir=workdir,
        backend="local",  # the embedded default, whatever cluster this machine is on
    )
    ids = [r.id for r in sweep.runs]
    rates = ", ".join(map(str, LEARNING_RATES))
    print(f"sweep {sweep.name} ({sweep.id}): {len(ids)} runs of the bundled training script, lr = {rates};")
    print("each runs in its own tmux window with a monitor; waiting...", flush=True)
    _wait_all(sv, ids, timeout_s)
    ranked = sv.sweeps.get(sweep.id, metric=METRIC, direction="min")  # the agent's own ranking
    seen = glance(sv.store, ids, METRIC)
    print()
    header = f"{'RUN':<12} {'STATUS':<9} {'LR':>5} {'BEST LOSS':>10} {'LAST LOSS':>10}  CURVE OF LOSS"
    print(header)
    for row in ranked.runs:
        g = seen.get(row.id)
        best = "-" if g is None or g.best is None else f"{g.best:.4g}"
        last = "-" if g is None or g.last is None else f"{g.last:.4g}"
        mark = "  ← best" if ranked.best and ranked.best.run_id == row.id else ""
        curve = spark_text(g.spark) if g else ""
        lr = row.params.get("lr", "")
        print(f"{row.name:<12} {row.status:<9} {lr:>5} {best:>10} {last:>10}  {curve}{mark}")
    alerts = [a for run_id in ids for a in sv.alerts.list(run_id=run_id, status="all").alerts]
    print()
    for a in alerts[:3]:
        name = next((r.name for r in ranked.runs if r.id == a.run_id), a.run_id)
        print(f"alert [{a.severity}] {a.kind} on {name}: {a.message}")
        print(f"      choices: {' / '.join(a.choices)}  (resolve_alert, or a button in the dashboard)")
    if not alerts:
        print("no alert fired (the diverging run may have ended before its monitor read it)")
    print()
    print(f"dashboard: run `research-mcp ui` and open {dashboard_url}")
    print(f"state dir: {sv.state.root}")
    return 0 if all(r.status in _ENDED for r in ranked.runs) and ranked.best is not None else 1
