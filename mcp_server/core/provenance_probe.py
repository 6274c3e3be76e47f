"""The job-side half of provenance: which interpreter and packages the job really ran with.

Only the job's own shell knows: a command such as ``source .venv/bin/activate && python
train.py`` changes PATH before Python starts. The launch script runs the command's shell
with ``BASH_ENV`` pointing at ``probe.sh``, which bash sources before the command. It sets
a DEBUG trap that waits for the first external program (builtins, functions and variable
assignments, which is what activation scripts run, are let by), records the host, the
program, the interpreter it resolves to (a ``python*`` program, or a script whose shebang
names Python, else the ``python3`` on the PATH of that moment) and the environment
markers, then removes itself. The package list comes from that interpreter
(``importlib.metadata``, bounded in time and size) a second later, at a lower priority, in
a process of its own session, so it neither delays the job's start nor counts among the
job's processes. A job whose first program is
not Python is recorded as such.
"""

from __future__ import annotations

MAX_PACKAGES = 5000
PACKAGES_TIMEOUT_S = 30
# The package listing waits this long, at a lower priority, so it never competes with the
# job's own start-up for the CPU (the interpreter it lists does not change meanwhile).
PACKAGES_DELAY_S = 1

PROBE_SH = r"""# research-mcp: sourced by the run's shell (BASH_ENV) before its command (generated).
if [ -n "${RESEARCH_PREV_BASH_ENV:-}" ]; then BASH_ENV=$RESEARCH_PREV_BASH_ENV; else unset BASH_ENV; fi
unset RESEARCH_PREV_BASH_ENV
__research_path=$PATH  # our own tools (mv, setsid) are found on the launch script's PATH
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
    case $__p in
        source|.|cd|export|unset|set|shopt|'['|'[['|test|echo|printf|true|false|:|local|declare|typeset|\
        readonly|eval|alias|unalias|hash|return|shift|trap|umask|ulimit|pushd|popd|read|wait|let|\
        break|continue|exit|type|enable|builtin|if|then|else|elif|fi|for|while|until|do|done|case|esac|\
        '{'|'}'|'!'|'(('|function|select|coproc) return 0 ;;
    esac
    declare -F -- "$__p" > /dev/null && return 0
    case $(type -t -- "$__p" 2> /dev/null) in builtin|keyword|function|alias) return 0 ;; esac
    __research_record "$__p"
}
__research_record() {
    trap '' DEBUG  # (`trap - DEBUG` inside the DEBUG handler does not stick in bash 5)
    case $(trap -p EXIT) in *__research_record*) trap - EXIT ;; esac
    unset -f __research_probe __research_record
    local __p=$1 __i __exe="" __py="" __how=path __line=""
    [ -z "$__p" ] || __exe=$(type -P -- "$__p" 2> /dev/null)
    case ${__p##*/} in
        python|python[0-9]*|pypy*) __py=$__exe; __how=program ;;
        *)  if [ -n "$__exe" ] && [ -f "$__exe" ]; then IFS= read -r __line < "$__exe" 2> /dev/null; fi
            case $__line in
                '#!'*python*)
                    local -a __s
                    read -r -a __s <<< "${__line#\#!}"
                    if [ "${__s[0]##*/}" = env ]; then
                        for __i in "${__s[@]:1}"; do
                            case $__i in -*|*=*) ;; *) __py=$(type -P -- "$__i"); break ;; esac
                        done
                    else
                        __py=${__s[0]}
                    fi
                    __how=shebang ;;
            esac ;;
    esac
    [ -n "$__py" ] || { __py=$(type -P python3 2> /dev/null || type -P python 2> /dev/null); __how=path; }
    {
        printf 'host\t%s\n' "${HOSTNAME:-}"
        printf 'program\t%s\n' "$__p"
        printf 'program_path\t%s\n' "$__exe"
        printf 'interpreter\t%s\n' "$__py"
        printf 'how\t%s\n' "$__how"
        printf 'virtual_env\t%s\n' "${VIRTUAL_ENV:-}"
        printf 'conda_prefix\t%s\n' "${CONDA_PREFIX:-}"
        printf 'cuda_visible_devices\t%s\n' "${CUDA_VISIBLE_DEVICES-unset}"
    } > "$RESEARCH_RUN_DIR/job.tmp" 2> /dev/null &&
        PATH=$__research_path mv -f "$RESEARCH_RUN_DIR/job.tmp" "$RESEARCH_RUN_DIR/job.txt"
    if [ -n "$__py" ]; then
        # Without RESEARCH_RUN_ID: the lister is not one of the job's processes (nor a leftover).
        PATH=$__research_path env -u RESEARCH_RUN_ID setsid -f bash -c \
            'sleep __DELAY__; timeout __TIMEOUT__ nice -n 10 "$1" "$2/probe.py" > "$2/python.tmp" \
            2> /dev/null && mv -f "$2/python.tmp" "$2/python.json"' \
            research-probe "$__py" "$RESEARCH_RUN_DIR" < /dev/null > /dev/null 2>&1
    fi
    unset __research_path
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


def probe_files() -> dict[str, str]:
    """The probe's files for the run dir, by name (beside the launch script: the job may run on
    another node, where this package's own files are not)."""
    return {
        "probe.sh": PROBE_SH.replace("__TIMEOUT__", str(PACKAGES_TIMEOUT_S)).replace(
            "__DELAY__", str(PACKAGES_DELAY_S)
        ),
        "probe.py": PROBE_PY.replace("__MAX__", str(MAX_PACKAGES)),
    }
