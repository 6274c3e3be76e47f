"""What exactly a run ran: its code, interpreter and packages, host, GPUs and seeds.

Two halves, both kept in the run dir (so a store rebuilt from run dirs keeps them):

- at launch, before the backend gets the job, the server records ``provenance.json``: the
  workdir's git facts and its uncommitted diff as ``code.patch`` (``core.execution.provenance_git``),
  the GPUs' models and driver through the NVML boundary, and the seed-like params;
- inside the job's own shell, after the command's environment activation, the launch
  script's probe writes ``job.txt`` (host, first program, interpreter, venv/conda,
  CUDA_VISIBLE_DEVICES) and ``python.json`` (interpreter version and packages)
  (``core.execution.provenance_probe``).

``load`` merges them into one document (``runs://{id}/provenance``); ``brief`` is the
compact line get_run shows. Files written by the job are untrusted: read bounded, and
anything unreadable is reported as such.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_server.core.execution.jobfiles import JobFiles
from mcp_server.core.execution.launch import write_private
from mcp_server.core.execution.provenance_git import snapshot
from mcp_server.core.run_views import ProvenanceBrief

if TYPE_CHECKING:
    from mcp_server.core.storage.models import Run

log = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
PATCH = "code.patch"
JOB = "job.txt"
PYTHON = "python.json"
TIMEOUT_ENV = "RESEARCH_MCP_PROVENANCE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 5.0
READ_MAX = 1024 * 1024  # a job-written file larger than this is not read
MAX_SEEDS = 8
_SEED_NAME = re.compile(r"seed", re.I)
_SEED_OPTION = re.compile(r"(?:^|\s)(-{0,2}[\w.-]*seed[\w.-]*)(?:=|\s+)([^\s;&|]+)", re.I)


def timeout_s() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def seeds_of(params: dict[str, Any], command: str) -> dict[str, Any]:
    """Seed-like values: params named *seed*, and --seed/--*seed* options of the command."""
    found = {k: v for k, v in params.items() if _SEED_NAME.search(k)}
    for m in _SEED_OPTION.finditer(command):
        name = m.group(1).lstrip("-")
        if name and name not in found and not m.group(2).startswith("-"):
            found[name] = m.group(2).strip("'\"")
    return dict(list(found.items())[:MAX_SEEDS])


def gpu_facts(run: Run, probe_timeout_s: float) -> dict[str, Any] | None:
    """The models and driver of this machine's GPUs, for a local run that asked for GPUs."""
    if run.gpus <= 0:
        return None
    if run.backend != "local":
        return {"note": f"allocated by {run.backend} on the node that runs the job"}
    from mcp_server.core.scheduling import nvml
    from mcp_server.core.scheduling.probes import bounded, probe_gpus

    inventory = probe_gpus(probe_timeout_s)
    if not inventory.ok:
        return {"note": inventory.error or "no GPU inventory (" + "; ".join(inventory.signals) + ")"}
    facts: dict[str, Any] = {"names": [g.name for g in inventory.gpus], "source": inventory.source}
    try:
        facts["driver"] = bounded(nvml.driver_version, probe_timeout_s, "NVML driver version")
    except Exception as err:  # the models are still worth recording
        facts["driver_error"] = str(err)
    return facts


def capture(run: Run, files: JobFiles, probe_timeout_s: float = 3.0) -> None:
    """Record the launch-side facts; never raises (a run launches even when git misbehaves)."""
    t0 = time.monotonic()
    doc: dict[str, Any] = {"captured_at": time.time(), "workdir": run.workdir}
    try:
        doc["git"] = snapshot(run.workdir, run.command, files.run_dir / PATCH, timeout_s())
    except Exception as err:
        log.exception("git provenance of %s failed", run.id)
        doc["git"] = {"repo": None, "note": f"not recorded: {err}"}
    doc["launched_from"] = socket.gethostname()
    if seeds := seeds_of(run.params or {}, run.command):
        doc["seeds"] = seeds
    try:
        if (gpus := gpu_facts(run, probe_timeout_s)) is not None:
            doc["gpus"] = gpus
    except Exception as err:
        doc["gpus"] = {"note": f"not recorded: {err}"}
    doc["capture_s"] = round(time.monotonic() - t0, 4)
    try:
        write_private(files.run_dir / PROVENANCE, json.dumps(doc))
    except OSError:
        log.exception("could not write the provenance of %s", run.id)


def _read_bounded(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > READ_MAX:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None


def _job_facts(run_dir: Path) -> dict[str, Any] | None:
    text = _read_bounded(run_dir / JOB)
    if text is None:
        return None
    facts: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep and key.isidentifier() and len(facts) < 16:
            facts[key] = value[:4096]
    return facts


def load(run_dir: Path) -> dict[str, Any] | None:
    """The whole provenance document of a run, or None for a run never launched (or from
    before provenance was recorded)."""
    raw = _read_bounded(run_dir / PROVENANCE)
    if raw is None:
        return None
    try:
        doc: dict[str, Any] = json.loads(raw)
    except ValueError:
        return {"note": f"{PROVENANCE} is unreadable"}
    job = _job_facts(run_dir)
    doc["job"] = job if job is not None else {"note": "the job has not started its first program (yet)"}
    py = _read_bounded(run_dir / PYTHON)
    if py is not None:
        try:
            doc["python"] = json.loads(py)
        except ValueError:
            doc["python"] = {"note": f"{PYTHON} is unreadable"}
    return doc


def _python_line(doc: dict[str, Any]) -> str | None:
    job = doc.get("job") or {}
    py = doc.get("python") or {}
    interp = job.get("interpreter")
    if "program" in job and not job.get("program"):
        return "none: the command ran shell builtins only"
    if "program" in job and not interp:
        return f"none: the job's first program is {job.get('program')!r} and no Python is on its PATH"
    if not py and not interp:
        return None
    parts = [str(py.get("version") or "?"), str(py.get("executable") or interp)]
    env = job.get("virtual_env") or job.get("conda_prefix")
    if env:
        parts.append(f"env {env}")
    if "package_count" in py:
        parts.append(f"{py['package_count']} packages")
    elif not py:
        parts.append("packages not recorded yet")
    if job.get("how") == "path":
        parts.append(f"(first program {job.get('program')!r} is not Python; this is the PATH's python3)")
    return ", ".join(parts)


def _gpu_line(gpus: dict[str, Any], visible: str | None) -> str:
    """ "1× NVIDIA A100 (driver 550.54); CUDA_VISIBLE_DEVICES=2": the models the job could see."""
    names: list[str] = gpus.get("names") or []
    shown = names
    if visible and visible != "unset":
        picked = [names[int(i)] for i in visible.split(",") if i.strip().isdigit() and int(i) < len(names)]
        shown = picked or names
    text = ", ".join(f"{n}× {name}" for name, n in Counter(shown).items()) or gpus.get("note", "")
    if gpus.get("driver"):
        text += f" (driver {gpus['driver']})"
    if visible and visible != "unset":
        text += f"; CUDA_VISIBLE_DEVICES={visible}"
    return text


def brief(doc: dict[str, Any] | None) -> ProvenanceBrief | None:
    if doc is None:
        return None
    git = doc.get("git") or {}
    out = ProvenanceBrief(note=str(doc.get("note") or git.get("note") or ""))
    if git.get("repo"):
        out.commit = (git.get("commit") or "")[:12] or None
        out.branch = git.get("branch")
        out.dirty = bool(git.get("dirty"))
        files = git.get("patch_files") or []
        if files:
            added = sum(f.get("added", 0) for f in files)
            removed = sum(f.get("removed", 0) for f in files)
            out.patch = f"{git.get('patch')}: {len(files)} file(s), +{added} -{removed}"
        out.omitted = [f"{o.get('path')} ({o.get('why')})" for o in git.get("omitted") or []][:8]
    out.python = _python_line(doc)
    job = doc.get("job") or {}
    out.host = job.get("host") or doc.get("launched_from")
    gpus = doc.get("gpus")
    if gpus:
        out.gpus = _gpu_line(gpus, job.get("cuda_visible_devices"))
    out.seeds = doc.get("seeds") or {}
    return out
