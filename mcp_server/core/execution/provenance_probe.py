"""The job-side half of provenance: which interpreter and packages the job really ran with.

Only the job's own shell knows: a command such as ``source .venv/bin/activate && python
train.py`` changes PATH before Python starts. The launch script runs the command's shell
with ``BASH_ENV`` pointing at ``probe.sh``, which bash sources before the command. It sets
a DEBUG trap that waits for the first external program (builtins, functions and variable
assignments, which is what activation scripts run, are let by; no fork until then), records the host, the
program, the interpreter it resolves to (a ``python*`` program, or a script whose shebang
names Python, else the ``python3`` on the PATH of that moment) and the environment
markers, then removes itself. The package list comes from that interpreter
(``importlib.metadata``, bounded in time and size) at a lower priority, in a process of its
own session started in the background, so it neither delays the job's start nor counts
among the job's processes; the run's monitor waits for it (a few seconds at most) before
it exits, so nothing writes to the run dir after that. A job whose first program is
not Python is recorded as such.
"""

from __future__ import annotations

import time
from pathlib import Path

MAX_PACKAGES = 5000
PACKAGES_TIMEOUT_S = 30

PROBE_SH = r"""# research-mcp: sourced by the run's shell (BASH_ENV) before its command (generated).
if [ -n "${RESEARCH_PREV_BASH_ENV:-}" ]; then BASH_ENV=$RESEARCH_PREV_BASH_ENV; else unset BASH_ENV; fi
unset RESEARCH_PREV_BASH_ENV
__research_path=$PATH  # our own tools (mv, setsid) are found on the launch script's PATH
# Everything up to the detached helper runs without a fork, so the job starts as fast as before.
__research_which() {  # the file a command name runs, from bash's own hash table
    case $1 in
        */*) [ -f "$1" ] && [ -x "$1" ] && __research_found=$1 ;;
        *) hash -- "$1" 2> /dev/null && __research_found=${BASH_CMDS[$1]} ;;
    esac
}
__research_probe() {
    local -a __w
    read -r -a __w <<< "$BASH_COMMAND"
    local __i=0 __p=""
    while [ "$__i" -lt "${#__w[@]}" ]; do
        case ${__w[$__i]} in
            [A-Za-z_]*=*|exec|command|nohup|env|time|nice|-*) __i=$((__i + 1)) ;;
            *) __p=${__w[$__i]}; break ;;
        esac
    done
    [ -n "$__p" ] || return 0
    case $__p in  # bash's builtins and keywords: activation scripts are made of these
        .|:|'['|'[['|']]'|alias|bg|bind|break|builtin|caller|cd|compgen|complete|compopt|continue|\
        declare|dirs|disown|echo|enable|eval|exit|export|false|fc|fg|getopts|hash|help|history|jobs|\
        kill|let|local|logout|mapfile|popd|printf|pushd|pwd|read|readarray|readonly|return|set|shift|\
        shopt|source|suspend|test|times|trap|true|type|typeset|ulimit|umask|unalias|unset|wait|\
        if|then|else|elif|fi|for|while|until|do|done|case|esac|'{'|'}'|'!'|'(('|function|select|\
        coproc|in) return 0 ;;
    esac
    declare -F -- "$__p" > /dev/null && return 0  # a function (conda activate, module load)
    [ -z "${BASH_ALIASES[$__p]+x}" ] || return 0
    __research_record "$__p"
}
__research_record() {  # once: at the first external program, or as a builtins-only command ends
    [ -z "${__research_done-}" ] || return 0
    __research_done=1
    trap '' DEBUG  # (`trap - DEBUG` inside the DEBUG handler does not stick in bash 5)
    local __p=$1 __i __exe="" __py="" __how=path __line="" __research_found=""
    [ -z "$__p" ] || { __research_which "$__p"; __exe=$__research_found; }
    case ${__p##*/} in
        python|python[0-9]*|pypy*) __py=$__exe; __how=program ;;
        *)  if [ -n "$__exe" ]; then IFS= read -r __line < "$__exe" 2> /dev/null; fi
            case $__line in
                '#!'*python*)
                    local -a __s
                    read -r -a __s <<< "${__line#\#!}"
                    if [ "${__s[0]##*/}" = env ]; then
                        for __i in "${__s[@]:1}"; do
                            case $__i in -*|*=*) ;; *) __research_found=""; __research_which "$__i";
                                                       __py=$__research_found; break ;; esac
                        done
                    else
                        __py=${__s[0]}
                    fi
                    __how=shebang ;;
            esac ;;
    esac
    if [ -z "$__py" ]; then
        __research_found=""
        __research_which python3 || __research_which python
        __py=$__research_found
        __how=path
    fi
    {
        printf 'host\t%s\n' "${HOSTNAME:-}"
        printf 'program\t%s\n' "$__p"
        printf 'program_path\t%s\n' "$__exe"
        printf 'interpreter\t%s\n' "$__py"
        printf 'how\t%s\n' "$__how"
        printf 'virtual_env\t%s\n' "${VIRTUAL_ENV:-}"
        printf 'conda_prefix\t%s\n' "${CONDA_PREFIX:-}"
        printf 'cuda_visible_devices\t%s\n' "${CUDA_VISIBLE_DEVICES-unset}"
    } > "$RESEARCH_RUN_DIR/job.tmp" 2> /dev/null
    # One detached helper, in a session of its own and with an empty RESEARCH_RUN_ID (so it is
    # not one of the job's processes, nor a leftover): it puts job.txt in place and, for a
    # Python, lists that interpreter's packages at a lower priority.
    RESEARCH_RUN_ID= PATH=$__research_path setsid -f bash -c 'mv -f "$2/job.tmp" "$2/job.txt"
        [ -n "$1" ] || exit 0
        timeout __TIMEOUT__ nice -n 10 "$1" "$2/probe.py" > "$2/python.tmp" \
            2> /dev/null && mv -f "$2/python.tmp" "$2/python.json"' \
        research-probe "$__py" "$RESEARCH_RUN_DIR" < /dev/null > /dev/null 2>&1 &
    disown 2> /dev/null  # in the background: the job never waits for it, nor does its `wait`
    unset -f __research_probe
    return 0
}
trap '__research_probe' DEBUG
trap '__research_record ""' EXIT  # a command of shell builtins only is recorded as it ends
"""

# Runs under the job's interpreter (any Python 3): stdlib only, nothing from the workdir.
PROBE_PY = """# research-mcp: prints the interpreter and its installed packages as JSON (generated).
import sys
sys.path[:] = [p for p in sys.path[1:] if p not in ("", ".")]
import json, platform
out = {"executable": sys.executable, "version": platform.python_version(), "prefix": sys.prefix,
       "base_prefix": getattr(sys, "base_prefix", sys.prefix)}
try:
    from importlib import metadata
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = "%s==%s" % (name, dist.version)
    packages = sorted(seen.values(), key=str.lower)
    out["package_count"] = len(packages)
    out["packages"] = packages[:__MAX__]
except Exception as err:
    out["packages_error"] = "%s: %s" % (type(err).__name__, err)
json.dump(out, sys.stdout)
"""


PROBE_WAIT_S = 3.0


def wait_for_probe(run_dir: Path, timeout_s: float = PROBE_WAIT_S) -> None:
    """Let the job's probe finish listing packages, so that nothing writes to a run dir once
    its monitor has exited (the run's sidecar calls this last); bounded: a lister may hang."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (run_dir / "python.json").exists():
        job = run_dir / "job.txt"
        placed = job.exists()
        try:
            facts = (job if placed else run_dir / "job.tmp").read_text(errors="replace")[:65536]
        except OSError:
            return  # the probe never ran (the command started no program, or never started)
        if placed and ("interpreter\t\n" in facts or "interpreter\t" not in facts):
            return  # no Python to list
        time.sleep(0.05)


def probe_files() -> dict[str, str]:
    """The probe's files for the run dir, by name (beside the launch script: the job may run on
    another node, where this package's own files are not)."""
    return {
        "probe.sh": PROBE_SH.replace("__TIMEOUT__", str(PACKAGES_TIMEOUT_S)),
        "probe.py": PROBE_PY.replace("__MAX__", str(MAX_PACKAGES)),
    }
