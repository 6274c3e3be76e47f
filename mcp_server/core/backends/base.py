"""The interface every execution backend implements (like submitit's executors)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from mcp_server.core.jobfiles import JobFiles
from mcp_server.core.lifecycle import Observation

if TYPE_CHECKING:
    from mcp_server.core.models import Run


class Backend(ABC):
    name: ClassVar[str]
    # Whether the launch script also prints the output (see launch.render_launch_script).
    echo_output: ClassVar[bool] = True

    @abstractmethod
    def submit(self, run: Run, files: JobFiles) -> str:
        """Start the job for ``run`` (its files already rendered); return the backend's handle."""

    @abstractmethod
    def observe(self, runs: Sequence[Run], files: dict[str, JobFiles]) -> dict[str, Observation]:
        """Observe many runs with as few backend calls as possible (ideally one)."""

    @abstractmethod
    def stop(self, run: Run, files: JobFiles, grace_s: float) -> None:
        """Ask the job to end; escalate after ``grace_s``. Returns once the job is gone or signalled."""

    def planned_ref(self, run: Run) -> str | None:
        """The handle ``submit`` will return, when it is known beforehand (then it is recorded
        with the launch, sparing a store write after the submit)."""
        return None

    def pre_command(self, run: Run) -> list[str]:
        """Extra bash lines run in the launch script before the command (e.g. GPU lease)."""
        return []

    def post_command(self, run: Run) -> list[str]:
        return []


def observe_files(files: JobFiles, present: bool | None, detail: str = "") -> Observation:
    """What the run dir says; shared by backends whose jobs write the usual files."""
    code, problem = files.exit_code_or_problem()
    return Observation(
        present=present,
        started_at=files.started_at(),
        exit_code=code,
        ended_at=files.ended_at() if code is not None else None,
        detail=detail,
        # Written before exit_code, so whoever sees the code also sees why.
        failure=files.read_failure() if code else None,
        bad_exit_code=problem,
        leftovers=files.read_leftovers() if code is not None else None,
    )
