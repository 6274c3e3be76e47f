"""Small helpers shared by tests (importable, unlike conftest)."""

from tests.conftest import PYTHON, kill_state_dir_jobs, wait_for

__all__ = ["PYTHON", "kill_state_dir_jobs", "wait_for"]
