"""Render the per-run files a backend executes: command.sh, env.sh and launch.sh.

The user's command lives verbatim in command.sh and runs under bash. Environment values
go to env.sh (mode 0600) and are sourced by the launch script, so a value never appears
on a command line, in the launch script, in tmux scrollback or in a log.

launch.sh runs the command in its own session (``setsid``) so that stop signals reach the
command's whole process group but not the launch script, which must survive to record
the exit code; ``tee`` keeps the output both in output.log and visible in the pane.
Once the command runs, the launch script and tee also outlive the pane (a killed tmux
server), so the run still ends with its true exit code.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence

from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.provenance_probe import probe_files


def q(value: object) -> str:
    return shlex.quote(str(value))


def write_private(path: os.PathLike[str] | str, text: str, mode: int = 0o600) -> None:
    """Create ``path`` with ``mode`` from the first byte (no window where it is world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def write_command(files: JobFiles, command: str) -> None:
    write_private(files.command, f"# research-mcp: the run's command, run with bash\n{command}\n", 0o600)


def write_env(files: JobFiles, env: Mapping[str, str]) -> None:
    lines = [f"export {key}={q(value)}" for key, value in sorted(env.items())]
    write_private(files.env, "\n".join(lines) + ("\n" if lines else ""), 0o600)


def read_env(files: JobFiles) -> dict[str, str]:
    """The values ``write_env`` wrote (a rerun with env overrides starts from them)."""
    try:
        text = files.env.read_text()
    except FileNotFoundError:
        return {}
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line) if line.startswith("export ") else []
        if len(words) == 2 and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return env


# Runs as the job's session leader: records its pgid (the "command started" marker that
# stop signals target), then becomes the user's command, whose shell first sources the
# provenance probe (core.provenance_probe) through BASH_ENV.
JOB_WRAPPER = (
    r"""setsid bash -c 'printf "%s\n" "$$" > "$1/pgid.tmp" && mv -f "$1/pgid.tmp" "$1/pgid" """
    r"""&& RESEARCH_PREV_BASH_ENV="${BASH_ENV-}" BASH_ENV="$1/probe.sh" exec bash "$1/command.sh"'"""
)


def render_launch_script(
    *,
    run_id: str,
    workdir: str,
    files: JobFiles,
    pre_command: Sequence[str] = (),
    post_command: Sequence[str] = (),
    echo_output: bool = True,
) -> str:
    """Bash that runs one job and leaves ``exit_code`` behind whatever happens to the command.

    ``pre_command``/``post_command`` are trusted bash lines from backends and gpuwrap
    (e.g. waiting for a GPU lease); they run with ``RUN_DIR`` set and may call ``finish``.
    ``echo_output`` also copies the output to the script's stdout (a tmux pane shows it;
    under Slurm it would only duplicate output.log into the scheduler's file).
    Both run once per attempt; a post line's ``continue`` starts another attempt (a run
    requeued after GPU contention), and the exit code is still written once, at the end.
    """
    sink = "" if echo_output else " > /dev/null"
    pre = "\n".join(pre_command)
    post = "\n".join(post_command)
    return f"""#!/usr/bin/env bash
# research-mcp launch script for run {run_id} (generated; do not edit).
set -u
RUN_DIR={q(files.run_dir)}
# Who records the exit code: while this script lives, the run has not ended unseen.
printf '%s\\n' "$$" > "$RUN_DIR/launcher.pid"
finish() {{
    printf '%s\\n' "$1" > "$RUN_DIR/exit_code.tmp" && mv -f "$RUN_DIR/exit_code.tmp" "$RUN_DIR/exit_code"
    exit "$1"
}}
if ! cd -- {q(workdir)}; then
    echo "research-mcp: cannot enter workdir {q(workdir)}" | tee -a "$RUN_DIR/output.log"
    finish 127
fi
export RESEARCH_RUN_ID={q(run_id)}
export RESEARCH_RUN_DIR="$RUN_DIR"
export RESEARCH_METRICS_FILE="$RUN_DIR/metrics.jsonl"
export PYTHONUNBUFFERED=1
if [ -f "$RUN_DIR/env.sh" ]; then . "$RUN_DIR/env.sh"; fi
# One pass per attempt: post_command lines may `continue` to run the command again.
while :; do
{pre}
# While the job runs, a hang-up (its tmux pane or server gone) must end neither this script,
# which records the exit code, nor tee, which keeps output.log growing; the job is its own
# session and never sees it. Before the job starts a hang-up still ends a waiting script.
trap : HUP
{JOB_WRAPPER} \\
    research-job "$RUN_DIR" < /dev/null 2>&1 | (trap '' HUP; exec tee -i -a "$RUN_DIR/output.log"){sink}
code=${{PIPESTATUS[0]}}
trap - HUP
{post}
break
done
finish "$code"
"""


def write_launch_script(files: JobFiles, script: str) -> None:
    for name, text in probe_files().items():
        write_private(files.run_dir / name, text, 0o600)
    write_private(files.launch, script, 0o700)
