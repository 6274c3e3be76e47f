"""The README's promises that tooling reads: the CI command and the client setup notes."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_ci_runs_the_linter_and_the_type_checker_in_one_pasteable_command() -> None:
    block = re.search(r"<!-- test-command -->\n```\n(.*?)```\n<!-- /test-command -->", README, re.S)
    assert block is not None
    (command,) = block.group(1).strip().splitlines()  # .ci/run runs exactly this one line
    steps = [step.strip() for step in command.split("&&")]
    assert "ruff check ." in steps and "mypy" in steps and steps[-1].startswith("python -m pytest")


def test_claude_code_setup_covers_the_project_approval_prompt() -> None:
    setup = README.split("## Use it from an agent", 1)[1].split("\n## ", 1)[0]
    assert "claude mcp add research -- research-mcp serve" in setup
    assert ".mcp.json" in setup and "approve" in setup and "claude mcp reset-project-choices" in setup
