"""The state dir: where the store and every run's files live.

The state dir is the rendezvous between server processes and sidecars (DESIGN invariant
1), so its location must be computed the same way everywhere: an explicit argument, else
``$RESEARCH_MCP_HOME``, else ``.research-mcp/`` under the current working directory.
Every file path handed out to a caller is built here and checked to stay inside it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mcp_server.core.errors import InvalidInput

STATE_DIR_ENV = "RESEARCH_MCP_HOME"
DEFAULT_DIRNAME = ".research-mcp"
GITIGNORE = "# research-mcp's state: the store, run logs and env files (secrets) stay out of git.\n*\n"


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        root = Path(explicit)
    elif os.environ.get(STATE_DIR_ENV):
        root = Path(os.environ[STATE_DIR_ENV])
    else:
        root = Path.cwd() / DEFAULT_DIRNAME
    return root.expanduser().absolute()


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def open(cls, explicit: str | os.PathLike[str] | None = None) -> StateDir:
        """Resolve and create (0700: run logs and env files are private) the state dir.

        It ignores itself in git: the default state dir sits inside the user's project, where a
        ``git add -A`` would otherwise commit the store, the logs and every run's env.sh."""
        root = resolve_state_dir(explicit)
        created = not root.exists()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created:
            os.chmod(root, 0o700)
        (root / "runs").mkdir(mode=0o700, exist_ok=True)
        ignore = root / ".gitignore"
        if not ignore.exists():
            # Private like every file here (nothing in it is secret, but one rule is simpler to check).
            fd = os.open(ignore, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(GITIGNORE)
        return cls(root.resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "research.db"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        # run ids are validated before they get here; the containment check is a second lock.
        # A plain name under a real runs/ dir, neither a symlink, cannot leave the state dir:
        # two lstat calls say so, where resolving the path costs one per component (every
        # run query asks this of each live run).
        path = self.runs_dir / run_id
        plain = bool(run_id) and "/" not in run_id and run_id not in (".", "..")
        if plain and not _is_link(path) and not _is_link(path.parent):
            return path
        return self.inside(path)

    def file_in(self, path: Path) -> Path:
        """``path`` (a file of a run dir from ``run_dir``), refused if it leaves the state dir: a
        file that is not a symlink cannot, so that costs one lstat instead of a resolve."""
        return path if path.parent.parent == self.runs_dir and not _is_link(path) else self.inside(path)

    def sweep_dir(self, sweep_id: str) -> Path:
        """A sweep's own files (its env.sh, for runs an adaptive sweep creates later)."""
        return self.inside(self.root / "sweeps" / sweep_id)

    def inside(self, path: Path) -> Path:
        """Return ``path`` resolved, or refuse it if it leaves the state dir (symlinks included)."""
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise InvalidInput(f"path {str(path)!r} is outside the state dir {str(self.root)!r}; refused.")
        return resolved

    @property
    def tmux_socket(self) -> str:
        """One private tmux server per state dir, so tests and projects never share windows."""
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return f"research-mcp-{digest}"
