"""What compare_runs and a run's lineage return (plain pydantic; no sqlmodel)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mcp_server.core.run_views import Value


class ComparedRun(BaseModel):
    id: str
    name: str
    status: str
    best: Value | None = None  # the run's best value of the metric over its history
    best_step: int | None = None
    last: Value | None = None  # its latest value
    d_best: Value | None = None  # best minus the first run's best
    d_last: Value | None = None  # last minus the first run's last


class FileChange(BaseModel):
    path: str
    added: int | None = None  # lines; null for a binary file
    removed: int | None = None


class CodeChange(BaseModel):
    """One run's code against the first run's (their commits plus saved uncommitted diffs)."""

    run_id: str
    same: bool = False
    files: list[FileChange] = Field(default_factory=list)
    commits: list[str] = Field(default_factory=list)  # when the commits differ: first run's, this run's
    patch: str | None = None  # with patch=true: the unified diff, bounded
    note: str = ""


class RunComparison(BaseModel):
    metric: str | None = None
    direction: Literal["min", "max"] = "min"
    runs: list[ComparedRun]
    params: dict[str, list[Any]] = Field(default_factory=dict)  # params that differ: one value per run
    code: list[CodeChange] = Field(default_factory=list)  # each later run vs the first
    other: dict[str, list[Any]] = Field(default_factory=dict)  # other settings that differ
    metric_keys: list[str] = Field(default_factory=list)  # without metric: keys every run logged
    note: str = ""


class LineageNode(BaseModel):
    id: str
    name: str
    status: str
    change: str = ""  # what differs from its parent, e.g. "lr 0.1→0.01; --epochs →3; env WANDB_MODE"
    children: list[LineageNode] = Field(default_factory=list)


class Lineage(BaseModel):
    """A run's ancestors (root first) and the tree of its descendants, each edge with its change."""

    run_id: str
    ancestors: list[LineageNode] = Field(default_factory=list)
    tree: LineageNode
    note: str = ""
