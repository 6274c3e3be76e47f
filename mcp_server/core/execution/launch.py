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

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.provenance_probe import probe_files


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
# stop signals target), takes the run's environment (only the job's processes carry
# RESEARCH_RUN_ID, which is how processes it leaves behind are recognised), then becomes
# the user's command, whose shell first sources the provenance probe (core.execution.provenance_probe)
# through BASH_ENV. The pgid is recorded best-effort: a full disk must not stop the job.
JOB_WRAPPER = (
    r"""setsid bash -c 'printf "%s\n" "$$" > "$1/pgid.tmp" && mv -f "$1/pgid.tmp" "$1/pgid"; """
    r"""export RESEARCH_RUN_ID="$2" RESEARCH_RUN_DIR="$1" RESEARCH_METRICS_FILE="$1/metrics.jsonl" """
    r"""PYTHONUNBUFFERED=1; if [ -f "$1/env.sh" ]; then . "$1/env.sh"; fi; """
    r"""RESEARCH_PREV_BASH_ENV="${BASH_ENV-}" BASH_ENV="$1/probe.sh" exec bash "$1/command.sh"'"""
)

# Processes the job started that outlive its command (``sleep 600 &``, a ``setsid`` daemon):
# every one carries the job's RESEARCH_RUN_ID in its environment.
LEFTOVER_LINES = r"""leftover_pids() {
    local f pid out=()
    for f in $(grep -lsxzF -- "RESEARCH_RUN_ID=$RUN_ID" /proc/[0-9]*/environ 2>/dev/null); do
        pid=${f#/proc/}; out+=("${pid%/environ}")
    done
    echo "${out[*]}"
}
# A child caught between its fork and its exec still shows the job's environment even when
# it execs without the run's id (the provenance probe's helper does): look again a moment
# later and count only the processes that still carry the id and have not ended.
still_ours() {
    local pid out=()
    for pid in $1; do
        if grep -qsxzF -- "RESEARCH_RUN_ID=$RUN_ID" "/proc/$pid/environ"; then out+=("$pid"); fi
    done
    echo "${out[*]}"
}
leftovers=$(leftover_pids)
if [ -n "$leftovers" ]; then sleep 0.2; leftovers=$(still_ours "$leftovers"); fi
alive=
if [ -n "$leftovers" ]; then
    alive=$(ps -o pid=,stat=,args= -p "${leftovers// /,}" 2>/dev/null | awk '$2 !~ /^Z/ {$2 = ""; print}')
fi
if [ -n "$alive" ]; then
    count=$(grep -c . <<< "$alive")
    what=$(head -n 5 <<< "$alive" | sed 's/^ *//' | cut -c1-80 | paste -sd ';' -)
    if [ "$END_LEFTOVERS" = 1 ]; then fate="ended (RESEARCH_MCP_END_LEFTOVERS=1)"
    else fate="left running; set RESEARCH_MCP_END_LEFTOVERS=1 to end them with the command"; fi
    note="the command left $count background process(es) behind: $what; $fate"
    printf '%s\n' "$note" > "$RUN_DIR/leftovers" 2>/dev/null
    printf 'research-mcp: %s\n' "$note" >> "$RUN_DIR/output.log" 2>/dev/null
fi"""

END_LEFTOVER_LINES = r"""if [ -n "$leftovers" ] && [ "$END_LEFTOVERS" = 1 ]; then
    kill -TERM $leftovers 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -n "$(leftover_pids)" ] || break
        sleep 0.2
    done
    left=$(leftover_pids)
    if [ -n "$left" ]; then kill -KILL $left 2>/dev/null; fi
fi"""


def render_launch_script(
    *,
    run_id: str,
    workdir: str,
    files: JobFiles,
    pre_command: Sequence[str] = (),
    post_command: Sequence[str] = (),
    on_finish: Sequence[str] = (),
    echo_output: bool = True,
    end_leftovers: bool = False,
    run_dir_expr: str | None = None,
) -> str:
    """Bash that runs one job and leaves ``exit_code`` behind whatever happens to the command.

    ``pre_command``/``post_command`` are trusted bash lines from backends and gpuwrap
    (e.g. waiting for a GPU lease); they run with ``RUN_DIR`` set and may call ``finish``.
    ``on_finish`` lines run once the exit code is recorded (e.g. waking the queue).
    ``echo_output`` also copies the output to the script's stdout (a tmux pane shows it;
    under Slurm it would only duplicate output.log into the scheduler's file).
    Both run once per attempt; a post line's ``continue`` starts another attempt (a run
    requeued after GPU contention), and the exit code is still written once, at the end.

    The run ends when its command ends: the script waits for the command's process, not
    for the output pipe, which a background child may hold open for hours. Such children
    are named in ``leftovers`` and the log, and ended when ``end_leftovers`` is set.
    The exit code's file is taken when the script starts and overwritten in place at the
    end, so a disk that filled up meanwhile cannot lose it; a write that still fails is
    retried while this script lives (and while it lives, the run is not lost).
    ``run_dir_expr``: a bash expression for the run dir instead of its path here (a copy of
    the script that an engine ships to a worker that does not share this filesystem).
    """
    run_dir = run_dir_expr if run_dir_expr is not None else q(files.run_dir)
    sink = "" if echo_output else " > /dev/null"
    pre = "\n".join(pre_command)
    post = "\n".join(post_command)
    after = "\n".join(f"    {line}" for line in on_finish)
    return f"""#!/usr/bin/env bash
# research-mcp launch script for run {run_id} (generated; do not edit).
set -u
RUN_DIR={run_dir}
RUN_ID={q(run_id)}
END_LEFTOVERS={1 if end_leftovers else 0}
# Who records the exit code: while this script lives, the run has not ended unseen.
printf '%s\\n' "$$" > "$RUN_DIR/launcher.pid"
# The exit code's room, taken now (see finish).
printf '%-15s\\n' pending > "$RUN_DIR/exit_code.tmp" 2>/dev/null
record_exit() {{
    {{ [ -f "$RUN_DIR/exit_code.tmp" ] && printf '%-15s\\n' "$1" 1<> "$RUN_DIR/exit_code.tmp"; }} \\
        2>/dev/null || printf '%s\\n' "$1" 2>/dev/null > "$RUN_DIR/exit_code.tmp" || return 1
    # -T: never move the code into a directory the job named exit_code; set that aside instead.
    mv -fT "$RUN_DIR/exit_code.tmp" "$RUN_DIR/exit_code" 2>/dev/null && return 0
    if [ -d "$RUN_DIR/exit_code" ] && [ ! -L "$RUN_DIR/exit_code" ]; then
        mv -T "$RUN_DIR/exit_code" "$RUN_DIR/exit_code.invalid.$$" 2>/dev/null
    fi
    return 1
}}
recorded() {{
    # A full disk: keep trying while the run dir exists (space may come back).
    until record_exit "$1"; do
        [ -d "$RUN_DIR" ] || return 1
        sleep 2
    done
}}
after_exit() {{
    :
{after}
}}
# What the job printed last may still be in the pipe when it ends: tee writes it before the
# exit code says the run ended, or the monitor's last read could miss the final metrics.
# Bounded, as a background child the job left may hold the pipe (and tee) open for hours.
output_written() {{
    local st i
    [ -n "$1" ] || return 0
    for ((i = 0; i < 100; i++)); do
        st=gone
        {{ read -r _ _ st _ < "/proc/$1/stat"; }} 2>/dev/null
        if [ "$st" = gone ] || [ "$st" = Z ]; then return 0; fi
        sleep 0.02
    done
}}
finish() {{
    recorded "$1"
    after_exit
    exit "$1"
}}
if ! cd -- {q(workdir)}; then
    echo "research-mcp: cannot enter workdir {q(workdir)}" | tee -a "$RUN_DIR/output.log"
    finish 127
fi
# One pass per attempt: post_command lines may `continue` to run the command again.
while :; do
{pre}
# While the job runs, a hang-up (its tmux pane or server gone) must end neither this script,
# which records the exit code, nor tee, which keeps output.log growing; the job is its own
# session and never sees it. Before the job starts a hang-up still ends a waiting script.
trap : HUP
exec {{job_out}}> >(trap '' HUP; exec tee -i -a "$RUN_DIR/output.log"{sink})
tee_pid=${{!:-}}  # an older bash may not set it for a process substitution
{JOB_WRAPPER} \\
    research-job "$RUN_DIR" "$RUN_ID" < /dev/null >&"$job_out" {{job_out}}>&- 2>&1
code=$?
exec {{job_out}}>&-
output_written "$tee_pid"
trap - HUP
{post}
break
done
trap '' HUP
{LEFTOVER_LINES}
recorded "$code"
{END_LEFTOVER_LINES}
after_exit
exit "$code"
"""


def write_launch_script(files: JobFiles, script: str) -> None:
    for name, text in probe_files().items():
        write_private(files.run_dir / name, text, 0o600)
    write_private(files.launch, script, 0o700)
