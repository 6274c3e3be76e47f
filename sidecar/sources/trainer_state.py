"""Hugging Face ``trainer_state.json``: the Trainer's ``log_history``, saved with each checkpoint.

Every checkpoint holds the whole history so far, so all ``checkpoint-*/trainer_state.json``
of a run are one source: the newest file is read and only entries past the saved cursor
(how many were taken, and the step of the last one) are new. The file is rewritten in
place, so one that does not parse yet is read again on the next look.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sidecar.batch import FileProgress
from sidecar.jsonl import parse_metrics_line

Scalar = tuple[str, int, float]
PATH = "*/trainer_state.json"  # the one row that stands for every checkpoint's copy
MAX_BYTES = 64 << 20


def newest(files: list[Path]) -> Path | None:
    found = []
    for path in files:
        try:
            found.append((os.stat(path).st_mtime_ns, str(path), path))
        except OSError:
            continue
    return max(found)[2] if found else None


def read_trainer_state(path: Path, rel: str, fp: FileProgress, final: bool) -> list[Scalar]:
    """Entries of ``path``'s log_history past the cursor in ``fp.state`` → (key, step, value)."""
    try:
        st = os.stat(path)
        signature = [rel, st.st_size, st.st_mtime_ns]
        if signature == fp.state.get("seen") or st.st_size > MAX_BYTES:
            return []
        history = json.loads(path.read_bytes()).get("log_history")
    except (OSError, ValueError, AttributeError):
        if final:
            fp.bad += 1
            fp.example = fp.example or f"{rel}: not a JSON object with log_history"
        return []  # mid-write: the next look reads it whole
    if not isinstance(history, list):
        return []
    fp.state["seen"] = signature
    taken, last_step = fp.records, fp.state.get("step")
    entries = [e for e in history if isinstance(e, dict)]
    consistent = taken <= len(entries) and (taken == 0 or _step(entries[taken - 1]) == last_step)
    # A resumed run's history may restart earlier: then take what lies past the last step.
    new = entries[taken:] if consistent else [e for e in entries if (_step(e) or -1) > (last_step or -1)]
    out: list[Scalar] = []
    for entry in new:
        rec = parse_metrics_line(json.dumps(entry).encode())
        if rec is None:
            continue
        if rec.skipped:
            fp.bad += rec.skipped
            fp.example = fp.example or (rec.example or "")
        step = rec.step if rec.step is not None else fp.records
        out.extend((key, step, value) for key, value in rec.values.items())
        fp.records += 1
        fp.state["step"] = rec.step
    if not consistent:
        fp.records = len(entries)
    return out


def _step(entry: dict[str, object]) -> int | None:
    step = entry.get("step")
    return step if isinstance(step, int) else None
