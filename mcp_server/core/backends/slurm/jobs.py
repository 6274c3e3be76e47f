"""The shared cache of what the scheduler last said about each job (table ``slurm_jobs``).

One process per poll interval queries Slurm for all active jobs and writes the answers here;
the others read them, so scheduler load does not grow with the servers and sidecars watching.
The table is created by the store's migrations (step 4).
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class SlurmJob(SQLModel, table=True):
    """What the scheduler last said about one job, shared by every process."""

    __tablename__ = "slurm_jobs"

    job_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    state: str | None = None
    reason: str = ""
    exit_code: int | None = None
    seen_at: float | None = None
    ended_seen_at: float | None = None  # when a poll first saw a terminal state
    missing_since: float | None = None
    missing_polls: int = 0
    updated_at: float
