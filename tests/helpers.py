"""Small helpers shared by tests (importable, unlike conftest)."""

from tests.conftest import PYTHON, kill_state_dir_jobs, sidecar_pids, wait_for

__all__ = ["PYTHON", "kill_state_dir_jobs", "sidecar_pids", "wait_for"]
