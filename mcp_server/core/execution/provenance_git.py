"""The code a run ran: the workdir's git commit, branch, dirty flag and uncommitted diff.

Captured on the launch path, so every git call is bounded (a deadline shared by all calls,
output read up to a cap) and read-only: ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from
refreshing the user's index, and nothing is written to the repository. The diff against
HEAD (staged and unstaged) plus the untracked files the command names is saved as a patch
that ``git apply`` replays on the recorded commit; a binary or too-large file is named in
``omitted`` instead of copied. A workdir outside any repository is said so, not an error.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PATCH_FILE_MAX = 256 * 1024  # one file's diff larger than this is named, not copied
PATCH_MAX = 1024 * 1024  # the whole patch
READ_CAP = 8 * 1024 * 1024  # git's output read at most (a huge diff is cut, then described)
MAX_NAMED = 32  # untracked files named by the command that are looked at
MAX_CHANGED_LISTED = 50

GIT_ENV = {
    "GIT_OPTIONAL_LOCKS": "0",  # never take index.lock (the user may be committing right now)
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}
_SECTION = re.compile(rb"^diff --git ", re.M)
_SECTION_PATH = re.compile(rb"^diff --git a/(.*) b/(.*)$")


class GitTimeout(Exception):
    pass


@dataclass
class Git:
    """Runs git in one repository under a shared deadline."""

    cwd: str
    deadline: float
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, ok: Sequence[int] = (0,), cap: int = READ_CAP) -> tuple[int, bytes, bool]:
        """(exit code, stdout up to ``cap`` bytes, whether it was cut); raises GitTimeout.

        Output goes to an unnamed temporary file, so a huge diff costs disk for a moment,
        never the server's memory; the deadline ends a git that hangs."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise GitTimeout(" ".join(args[:2]))
        env = {**os.environ, **GIT_ENV, **self.env}
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.run(
                    ["git", "-c", "core.quotepath=off", *args],
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    timeout=left,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise GitTimeout(" ".join(args[:2])) from None
            if proc.returncode not in ok:
                return proc.returncode, b"", False
            size = out.tell()
            out.seek(0)
            return proc.returncode, out.read(cap), size > cap


def _status(git: Git) -> tuple[str | None, str | None, list[str]]:
    """(commit, branch, changed tracked paths) from one ``git status --porcelain=v2``."""
    code, out, _ = git("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=no", ok=range(256))
    if code != 0:
        raise OSError(f"git status exited with {code} (a repository git refuses, e.g. safe.directory?)")
    commit = branch = None
    changed: list[str] = []
    entries = out.split(b"\0")
    i = 0
    while i < len(entries):
        entry = entries[i].decode(errors="replace")
        i += 1
        if entry.startswith("# branch.oid "):
            oid = entry.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif entry[:2] in ("1 ", "u "):
            changed.append(entry.split(" ", 8 if entry[0] == "1" else 10)[-1])
        elif entry.startswith("2 "):
            changed.append(entry.split(" ", 9)[-1])
            i += 1  # a rename's original path follows as its own entry
    return commit, branch, changed


def _named_paths(command: str, workdir: str, top: str) -> list[str]:
    """Files under the repository that the command names (relative to its top), as candidates."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    found: list[str] = []
    for word in words:
        for part in (word, word.split("=", 1)[-1]) if "=" in word else (word,):
            if not part or part.startswith("-") or len(part) > 4096 or "\0" in part:
                continue
            path = Path(part) if os.path.isabs(part) else Path(workdir) / part
            try:
                if not path.is_file():
                    continue
                rel = os.path.relpath(path.resolve(), top)
            except (OSError, ValueError):
                continue
            if not rel.startswith("..") and rel not in found:
                found.append(rel)
        if len(found) >= MAX_NAMED:
            break
    return found


def patch_sections(patch: bytes) -> list[tuple[str, bytes]]:
    starts = [m.start() for m in _SECTION.finditer(patch)]
    out = []
    for begin, end in zip(starts, [*starts[1:], len(patch)], strict=True):
        chunk = patch[begin:end]
        header = chunk.split(b"\n", 1)[0]
        m = _SECTION_PATH.match(header)
        path = (m.group(2) if m else header[len(b"diff --git ") :]).decode(errors="replace")
        out.append((path, chunk))
    return out


def _is_binary(section: bytes) -> bool:
    return b"\nGIT binary patch\n" in section or bool(re.search(rb"^Binary files .* differ$", section, re.M))


def _stat(section: bytes) -> tuple[int, int]:
    added = removed = 0
    in_hunk = False
    for line in section.split(b"\n"):
        if line.startswith(b"@@"):
            in_hunk = True
        elif in_hunk and line.startswith(b"+"):
            added += 1
        elif in_hunk and line.startswith(b"-"):
            removed += 1
    return added, removed


@dataclass
class PatchBuilder:
    """Keeps the sections that fit; names the others with the reason."""

    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    omitted: list[dict[str, str]] = field(default_factory=list)

    def add(self, path: str, section: bytes) -> None:
        if _is_binary(section):
            self.omitted.append({"path": path, "why": "binary"})
        elif len(section) > PATCH_FILE_MAX:
            self.omitted.append({"path": path, "why": f"its diff is {len(section) // 1024} KiB"})
        elif self.size + len(section) > PATCH_MAX:
            self.omitted.append({"path": path, "why": f"the patch reached {PATCH_MAX // 1024} KiB"})
        else:
            self.parts.append(section if section.endswith(b"\n") else section + b"\n")
            self.size += len(self.parts[-1])
            added, removed = _stat(section)
            self.files.append({"path": path, "added": added, "removed": removed})


def find_top(workdir: str) -> str | None:
    """The repository's top directory (the nearest one holding ``.git``), found without
    starting git: most launches from outside a repository then cost a few stat calls."""
    path = Path(workdir).absolute()
    return next((str(p) for p in (path, *path.parents) if (p / ".git").exists()), None)


DIFF_ARGS = (
    "diff",
    "HEAD",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)


def snapshot(workdir: str, command: str, patch_path: Path, timeout_s: float) -> dict[str, Any]:
    """The git facts of ``workdir`` at launch; writes the patch to ``patch_path`` when dirty.

    The calls that do not depend on each other (status, the diff against HEAD, which named
    files are untracked) run at once: a launch waits for the slowest, not for their sum."""
    git = Git(workdir, time.monotonic() + timeout_s)
    try:
        top = find_top(workdir)
        if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
            code, out, _ = git("rev-parse", "--show-toplevel", ok=(0, 128))
            top = out.decode(errors="replace").strip() if code == 0 else None
        if not top:
            return {"repo": None, "note": "the workdir is not in a git repository"}
        git.cwd = top
        named = _named_paths(command, workdir, top)
        with ThreadPoolExecutor(3, thread_name_prefix="provenance-git") as pool:
            status = pool.submit(_status, git)
            diff = pool.submit(git, *DIFF_ARGS, "--", ".", ok=(0, 128))
            others = pool.submit(git, "ls-files", "--others", "-z", "--", *named) if named else None
            commit, branch, changed = status.result()
            _, patch, cut = diff.result()
            untracked = (
                [p for p in others.result()[1].decode(errors="replace").split("\0") if p] if others else []
            )
        builder = PatchBuilder()
        if changed and commit is not None:
            for path, section in patch_sections(patch):
                builder.add(path, section)
        else:
            cut = False
        for rel in untracked:
            if os.path.getsize(os.path.join(top, rel)) > PATCH_FILE_MAX:
                builder.omitted.append({"path": rel, "why": "untracked and too large to copy"})
                continue
            _, section, _ = git("diff", "--no-index", "--no-color", "--", "/dev/null", rel, ok=(0, 1))
            builder.add(rel, section)
    except GitTimeout as err:
        return {"repo": None, "note": f"git did not answer within {timeout_s:g} s ({err})"}
    except (FileNotFoundError, OSError) as err:
        return {"repo": None, "note": f"git could not be run: {err}"}
    facts: dict[str, Any] = {
        "repo": top,
        "commit": commit,
        "branch": branch,
        "dirty": bool(changed),
        "changed": changed[:MAX_CHANGED_LISTED],
    }
    if len(changed) > MAX_CHANGED_LISTED:
        facts["changed_total"] = len(changed)
    if untracked:
        facts["untracked"] = untracked
    if cut:
        builder.omitted.append({"path": "*", "why": f"the diff is over {READ_CAP // 2**20} MiB; later files"})
    if builder.parts:
        patch_path.write_bytes(b"".join(builder.parts))
        os.chmod(patch_path, 0o600)
        facts["patch"] = patch_path.name
        facts["patch_files"] = builder.files
    if builder.omitted:
        facts["omitted"] = builder.omitted
    if commit is None:
        facts["note"] = "the repository has no commit yet"
    return facts
