"""Where a report is written: inside the project, never outside it.

The project is the directory the agent works in: ``$RESEARCH_MCP_PROJECT_DIR`` if set, else
the parent of a state dir named ``.research-mcp`` (the default layout), else the working
directory. A report goes to ``reports/<name>/report.md`` there unless a path is given;
either way the resolved path (symlinks followed) must stay inside the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp_server.core.errors import InvalidInput
from mcp_server.core.ids import validate_name
from mcp_server.core.paths import DEFAULT_DIRNAME

PROJECT_ENV = "RESEARCH_MCP_PROJECT_DIR"
REPORTS_DIR = "reports"
MAX_PATH_CHARS = 500


def project_dir(state_root: Path) -> Path:
    if os.environ.get(PROJECT_ENV):
        return Path(os.environ[PROJECT_ENV]).expanduser().resolve()
    if state_root.name == DEFAULT_DIRNAME:
        return state_root.parent.resolve()
    return Path.cwd().resolve()


def report_path(project: Path, name: str, path: str | None = None) -> Path:
    """The report's Markdown file, validated; its images go beside it."""
    if path is None:
        validate_name(name, "report name")
        return project / REPORTS_DIR / name / "report.md"
    if not isinstance(path, str) or not path.strip() or len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise InvalidInput(
            f"path must be a relative file path of 1-{MAX_PATH_CHARS} characters ending in .md."
        )
    if not path.endswith(".md"):
        raise InvalidInput(f"path {path!r} must end with .md (images are written beside it).")
    candidate = Path(path).expanduser()
    full = (candidate if candidate.is_absolute() else project / candidate).resolve()
    if project not in full.parents:
        raise InvalidInput(
            f"path {path!r} leaves the project {str(project)!r}; give a path inside it, e.g. "
            f"'{REPORTS_DIR}/my-sweep/report.md' (set {PROJECT_ENV} to report elsewhere)."
        )
    return full
