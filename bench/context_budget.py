"""What an agent's context pays: tools/list and each tool's default answer, against the budgets.

A realistic session through the real MCP client: detect the cluster, create a sweep of 3
local runs (a real Slurm on the machine is left alone; Slurm runs answer with the same
fields) that each log 8 metric keys × 5,000 steps (one NaN on the way) and print a progress
line every 10 steps, wait for them, then call every tool with only its required arguments.
Bytes are counted as a client forwards them: the compact JSON of ``tools/list`` and, per
answer, the text block and the compact JSON of ``structuredContent`` (Claude Code hands the
model the structured copy, other clients the text; the larger of the two is judged).

Budgets (README "Context budget"): tools/list ≤ 16 KB; every default answer ≤ 8 KB, typical
≤ 2 KB. Same-run baselines: each figure is printed as a ratio to its budget, and the
answers that stand in for reading files are also compared with those files (get_metrics
against the runs' metrics.jsonl, get_logs against output.log), which is what an agent
without this server would read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from bench.common import figure, temp_state_dir

TOOLS_BUDGET = 16 * 1024
ANSWER_BUDGET = 8 * 1024
TYPICAL = 2 * 1024
KEYS = ("train/loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "grad_norm", "epoch", "tokens")

TRAIN = """
import json, math, os, sys
steps = int(sys.argv[1]); lr = float(sys.argv[2])
with open(os.environ["RESEARCH_METRICS_FILE"], "a") as f:
    for step in range(steps):
        loss = 2.5 * math.exp(-lr * 300 * step / steps) + 0.05 * math.sin(step / 7)
        rec = {"step": step, "train/loss": loss, "val_loss": loss * 1.1 + 0.01,
               "accuracy": 1 - loss / 3, "val_accuracy": 1 - loss / 2.8,
               "learning_rate": lr * (1 - step / steps), "grad_norm": 1 / (1 + step),
               "epoch": step / 500, "tokens": step * 4096}
        if lr > 0.005 and step == steps // 2:
            rec["grad_norm"] = float("nan")
        f.write(json.dumps(rec) + "\\n")
        if step % 10 == 0:
            print(f"step {step}/{steps} loss={loss:.4f} lr={lr:.2e} | 12.3 it/s", flush=True)
print("done", flush=True)
"""


def compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Session:
    def __init__(self, client: Client) -> None:
        self.c = client
        self.rows: list[tuple[str, int, int]] = []

    async def call(self, label: str, tool: str, **args: Any) -> dict[str, Any]:
        res = await self.c.call_tool(tool, args)
        assert not res.is_error, (tool, res.content)
        text = sum(len(b.text.encode()) for b in res.content if getattr(b, "text", None) is not None)
        structured = compact(res.structured_content) if res.structured_content is not None else 0
        self.rows.append((label, text, structured))
        return res.structured_content or {}


async def wait_ended(s: Session, run_ids: list[str], timeout_s: float = 600) -> None:
    cursor = 0
    ended: set[str] = set()
    with anyio.fail_after(timeout_s):
        while not ended.issuperset(run_ids):
            res = await s.c.call_tool(
                "wait_for_events", {"cursor": cursor, "timeout_s": 60, "run_ids": run_ids}
            )
            batch = res.structured_content or {}
            cursor = batch["cursor"]
            ended |= {e["run_id"] for e in batch["events"] if e["kind"] == "run_ended"}


async def session(state: Path, workdir: Path, steps: int) -> tuple[int, dict[str, int], Session]:
    from mcp_server.server import create_server

    (workdir / "train.py").write_text(textwrap.dedent(TRAIN))
    git_repo(workdir)  # runs record their commit and uncommitted diff, as in a real project
    async with Client(create_server(state)) as c:
        listing = await c.list_tools()
        tools_bytes = compact(listing.model_dump(mode="json", by_alias=True, exclude_none=True))
        names = {t.name for t in listing.tools}
        s = Session(c)
        py = sys.executable
        await s.call("detect_cluster", "detect_cluster")
        await s.call("get_cluster", "get_cluster")
        sweep = await s.call(
            "create_sweep (3 runs)",
            "create_sweep",
            name="lr",
            goal="which learning rate converges best",
            base_command=f"{py} train.py {steps} {{lr}}",
            parameters={"lr": [0.001, 0.003, 0.01]},
            backend="local",
            workdir=str(workdir),
        )
        run_ids = [r["id"] for r in sweep["runs"]]
        await wait_ended(s, run_ids)
        first = run_ids[-1]
        await s.call("wait_for_events (3 ended)", "wait_for_events", cursor=0, run_ids=run_ids)
        await s.call("list_runs", "list_runs")
        await s.call("get_run", "get_run", run_id=first)
        await s.call("get_logs", "get_logs", run_id=first)
        await s.call("get_metrics (1 run)", "get_metrics", run_ids=[first])
        await s.call("get_metrics (3 runs)", "get_metrics", run_ids=run_ids)
        await s.call("get_sweep", "get_sweep", sweep_id=sweep["id"])
        await s.call("get_sweep (metric)", "get_sweep", sweep_id=sweep["id"], metric="val_loss")
        if "write_report" in names:  # the report lands in the bench's throwaway project dir
            await s.call("write_report", "write_report", sweep_id=sweep["id"])
        alerts = await s.call("list_alerts", "list_alerts")
        if alerts.get("alerts"):
            await s.call(
                "resolve_alert", "resolve_alert", alert_id=alerts["alerts"][0]["id"], choice="Ignore"
            )
        ready = await s.call(
            "create_run",
            "create_run",
            name="smoke",
            command="sleep 30",
            workdir=str(workdir),
            auto_start=False,
            backend="local",
        )
        await s.call("start_run", "start_run", run_id=ready["id"])
        await s.call("stop_run", "stop_run", run_id=ready["id"])
        await s.call("rerun", "rerun", run_id=first, auto_start=False)
        if "compare_runs" in names:
            await s.call("compare_runs (3 runs)", "compare_runs", run_ids=run_ids, metric="val_loss")
            await s.call(
                "rerun (overrides)", "rerun", run_id=first, auto_start=False,
                overrides={"params": {"lr": 0.002}, "args": {"epochs": 3}},
            )  # fmt: skip
            await s.call(
                "create_sweep (preview)", "create_sweep", name="again", goal="repeat", preview=True,
                base_command=f"{py} train.py {steps} {{lr}}", parameters={"lr": [0.001, 0.003, 0.01]},
                backend="local", workdir=str(workdir),
            )  # fmt: skip
        plan_md = "\n\n".join(
            f"## {h}\n\ntext"
            for h in ("Objective", "Compute Setup", "Approach", "Metrics", "Success Criteria",
                      "Risks & Mitigations", "Estimated Effort")
        )  # fmt: skip
        plan = await s.call("save_plan", "save_plan", title="lr sweep", goal="pick lr", raw_markdown=plan_md)
        await s.call("list_plans", "list_plans")
        await s.call("get_plan", "get_plan", plan_id=plan["id"])
        await s.call("update_plan", "update_plan", plan_id=plan["id"], status="approved")
        memory = await s.call("add_memory", "add_memory", title="lr 3e-3 is best", content="see sweep lr")
        await s.call("list_memories", "list_memories")
        await s.call("update_memory", "update_memory", memory_id=memory["id"], active=False)
        if "stop_sweep" in names:
            held = await c.call_tool(
                "create_sweep",
                {"name": "held", "goal": "stop me", "base_command": "sleep 30 # {x}",
                 "parameters": {"x": [1, 2, 3]}, "parallel": 1, "workdir": str(workdir), "backend": "local"},
            )  # fmt: skip
            held_id = (held.structured_content or {})["id"]
            if "extend_sweep" in names:
                await s.call("extend_sweep", "extend_sweep", sweep_id=held_id, configs=[{"x": 4}])
            await s.call("stop_sweep", "stop_sweep", sweep_id=held_id)
        files: dict[str, int] = {}
        run_dir = Path(state) / "runs" / first
        files["metrics.jsonl (1 run)"] = (run_dir / "metrics.jsonl").stat().st_size
        files["metrics.jsonl (3 runs)"] = sum(
            (Path(state) / "runs" / r / "metrics.jsonl").stat().st_size for r in run_ids
        )
        files["output.log"] = (run_dir / "output.log").stat().st_size
        return tools_bytes, files, s


def git_repo(workdir: Path) -> None:
    """A committed train.py with one uncommitted edit (skipped where git is missing)."""
    import subprocess

    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    try:
        subprocess.run([*git, "init", "-q"], cwd=workdir, check=True)
        subprocess.run([*git, "add", "train.py"], cwd=workdir, check=True)
        subprocess.run([*git, "commit", "-qm", "train"], cwd=workdir, check=True)
    except (OSError, subprocess.CalledProcessError):
        return
    with open(workdir / "train.py", "a") as fh:
        fh.write("# an uncommitted edit\n")


def report(tools_bytes: int, files: dict[str, int], s: Session) -> bool:
    ok = tools_bytes <= TOOLS_BUDGET
    print(f"{'tools/list':<28} {tools_bytes:>8} B  {tools_bytes / TOOLS_BUDGET:5.2f} of 16 KB  "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    print()
    print(f"{'default answer':<28} {'text':>8} {'struct':>8}  {'of 8 KB':>7}  verdict")
    worst = 0
    typical = 0
    for label, text, structured in s.rows:
        size = max(text, structured)
        worst = max(worst, size)
        typical += size <= TYPICAL
        good = size <= ANSWER_BUDGET
        ok &= good
        print(f"{label:<28} {text:>8} {structured:>8}  {size / ANSWER_BUDGET:7.2f}  "
              f"{'PASS' if good else 'FAIL'}{'' if size > TYPICAL else ' (typical)'}")  # fmt: skip
    print()
    print(f"answers: {len(s.rows)}, largest {worst} B, {typical} of {len(s.rows)} within the typical 2 KB")
    by_label = {label: max(t, st) for label, t, st in s.rows}
    for label, file_label in (
        ("get_metrics (1 run)", "metrics.jsonl (1 run)"),
        ("get_metrics (3 runs)", "metrics.jsonl (3 runs)"),
        ("get_logs", "output.log"),
    ):
        print(f"{label:<28} {by_label[label]:>8} B = {by_label[label] / files[file_label]:.4f} × "
              f"{file_label} ({files[file_label]} B)")  # fmt: skip
    figure(
        "context_budget", "tools/list bytes / its 16 KB budget", tools_bytes / TOOLS_BUDGET, "≤ 1",
        tools_bytes <= TOOLS_BUDGET, f"{tools_bytes} B",
    )  # fmt: skip
    figure(
        "context_budget", "largest default answer / its 8 KB budget", worst / ANSWER_BUDGET, "≤ 1",
        worst <= ANSWER_BUDGET, f"{worst} B; {typical} of {len(s.rows)} answers within the typical 2 KB",
    )  # fmt: skip
    print("PASS" if ok else "FAIL", "context budget")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps each run logs (8 keys each)")
    args = parser.parse_args(argv)
    with temp_state_dir() as state:
        workdir = state.parent / "project"
        workdir.mkdir()
        os.environ["RESEARCH_MCP_PROJECT_DIR"] = str(workdir)
        tools_bytes, files, s = anyio.run(session, state, workdir, args.steps)
    return 0 if report(tools_bytes, files, s) else 1


if __name__ == "__main__":
    raise SystemExit(main())
