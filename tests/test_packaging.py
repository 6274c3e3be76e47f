"""The wheel installs into a fresh venv and works outside the source tree."""

import os
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fresh_venv_install_then_demo(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = subprocess.run(
        [env_dir / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RESEARCH_MCP_HOME")}
    demo = subprocess.run(
        [env_dir / "bin" / "research-mcp", "demo", "--steps", "40"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "finished" in demo.stdout
        # it ran the installed copy, not the checkout
        installed = subprocess.run(
            [env_dir / "bin" / "python", "-c", "import mcp_server.demo.train as t; print(t.__file__)"],
            cwd=elsewhere, capture_output=True, text=True, env=env,
        ).stdout  # fmt: skip
        assert str(env_dir) in installed and str(ROOT) not in installed
    finally:
        from tests.helpers import kill_state_dir_jobs

        kill_state_dir_jobs(elsewhere / ".research-mcp")
