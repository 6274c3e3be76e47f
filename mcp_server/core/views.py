"""What tools and the CLI return: plain pydantic models (no sqlmodel, cheap to import).

These double as the tools' output schemas, so field descriptions are written for the
model reading them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunRow(BaseModel):
    """One run, compact."""

    id: str
    name: str
    status: str = Field(description="ready, queued, launching, running, finished, failed, stopped or lost")
    status_reason: str = Field(description="why the run is in this status, in words")
    exit_code: int | None = None
    backend: str
    gpus: int
    sweep_id: str | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = Field(None, description="seconds from command start to end (or to now)")


class RunDetail(RunRow):
    """One run in full."""

    command: str
    workdir: str
    params: dict[str, Any] = Field(default_factory=dict)
    env_keys: list[str] = Field(
        default_factory=list, description="names of env vars set for the run (values hidden)"
    )
    options: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    parent_run_id: str | None = None
    backend_ref: str | None = Field(
        None, description="the backend's handle, e.g. a tmux target or Slurm job id"
    )
    run_dir: str
    queued_at: str | None = None
    launched_at: str | None = None
    updated_at: str
    stop_requested_at: str | None = None


class RunPage(BaseModel):
    runs: list[RunRow]
    total: int = Field(description="runs matching the filters")
    offset: int
    limit: int
    next_offset: int | None = Field(
        None, description="pass as offset for the next page; null on the last page"
    )


class LogChunk(BaseModel):
    run_id: str
    source: Literal["output", "sidecar"]
    text: str
    start_offset: int = Field(description="byte offset of the first returned byte in the file")
    end_offset: int = Field(description="byte offset just past the last returned byte")
    file_size: int
    lines: int = Field(description="number of lines returned")
    truncated: bool = Field(description="true when more text existed than the caps allowed")
    note: str = ""
