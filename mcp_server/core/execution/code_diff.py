"""The code that differs between two runs: a diff of their snapshots (commit + saved patch).

Each run's snapshot is rebuilt as a git tree without touching the user's repository: a
temporary index and a temporary object directory (the repository's objects are only read,
as alternates), ``read-tree`` of the recorded commit, ``apply --cached`` of the run's
patch, ``write-tree``. Two such trees diff exactly, across commits and uncommitted edits
alike. When the repository or a commit is gone, the saved patches are compared file by
file instead, and the answer says so.
"""

from __future__ import annotations

import difflib
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp_server.core.execution.provenance_git import Git, GitTimeout, patch_sections

PATCH_ANSWER_MAX = 64 * 1024
TIMEOUT_S = 10.0


def _numstat(out: bytes) -> list[dict[str, Any]]:
    files = []
    for line in out.decode(errors="replace").splitlines():
        added, removed, path = [*line.split("\t", 2), "", ""][:3]
        files.append(
            {
                "path": path,
                "added": int(added) if added.isdigit() else None,  # None: binary
                "removed": int(removed) if removed.isdigit() else None,
            }
        )
    return files


def _tree(git: Git, commit: str, patch: Path | None, index: Path) -> str:
    git.env["GIT_INDEX_FILE"] = str(index)
    git("read-tree", commit)
    if patch is not None:
        code, _, _ = git("apply", "--cached", "--whitespace=nowarn", str(patch), ok=(0, 1))
        if code != 0:
            raise ValueError(f"{patch.name} no longer applies to {commit[:12]}")
    _, out, _ = git("write-tree")
    return out.decode().strip()


def _patch_of(run_dir: Path, git_facts: dict[str, Any]) -> Path | None:
    name = git_facts.get("patch")
    path = run_dir / name if isinstance(name, str) and "/" not in name else None
    return path if path is not None and path.is_file() else None


def diff_snapshots(
    a: tuple[Path, dict[str, Any]], b: tuple[Path, dict[str, Any]], with_patch: bool
) -> dict[str, Any]:
    """``{"files": [{path, added, removed}], "patch"?: str, "note"?: str}`` from run a to run b.

    ``a``/``b`` are (run dir, the git facts of its provenance)."""
    (dir_a, ga), (dir_b, gb) = a, b
    if not ga.get("repo") or not gb.get("repo"):
        which = "either run" if not ga.get("repo") and not gb.get("repo") else "one run"
        return {"note": f"code not compared: {which} was not launched from a git repository"}
    if not ga.get("commit") or not gb.get("commit"):
        return {"note": "code not compared: a run's repository had no commit"}
    pa, pb = _patch_of(dir_a, ga), _patch_of(dir_b, gb)
    same_patch = (pa.read_bytes() if pa else b"") == (pb.read_bytes() if pb else b"")
    if ga["commit"] == gb["commit"] and same_patch:
        return {"files": []}
    try:
        return _tree_diff(ga, gb, pa, pb, with_patch)
    except (GitTimeout, ValueError, OSError) as err:
        if ga["commit"] != gb["commit"]:
            return {"note": f"code not compared: commits {ga['commit'][:12]} and {gb['commit'][:12]} "
                    f"differ and the repository cannot diff them ({err})"}  # fmt: skip
        out = _patch_diff(pa, pb, with_patch)
        out["note"] = f"compared the saved patches (the repository could not rebuild the snapshots: {err})"
        return out


def _tree_diff(
    ga: dict[str, Any], gb: dict[str, Any], pa: Path | None, pb: Path | None, with_patch: bool
) -> dict[str, Any]:
    if ga["repo"] != gb["repo"]:
        raise ValueError(f"the runs come from different repositories ({ga['repo']}, {gb['repo']})")
    git = Git(ga["repo"], time.monotonic() + TIMEOUT_S)
    code, out, _ = git("rev-parse", "--path-format=absolute", "--git-common-dir", ok=(0, 128))
    if code != 0:
        raise ValueError(f"{ga['repo']} is no longer a git repository")
    objects = Path(out.decode().strip()) / "objects"
    with tempfile.TemporaryDirectory(prefix="research-mcp-diff-") as tmp:
        (Path(tmp) / "objects").mkdir()
        git.env.update(
            GIT_OBJECT_DIRECTORY=str(Path(tmp) / "objects"), GIT_ALTERNATE_OBJECT_DIRECTORIES=str(objects)
        )
        code, _, _ = git("cat-file", "-e", f"{ga['commit']}^{{commit}}", ok=(0, 1, 128))
        code_b, _, _ = git("cat-file", "-e", f"{gb['commit']}^{{commit}}", ok=(0, 1, 128))
        if code or code_b:
            raise ValueError("a recorded commit is no longer in the repository")
        tree_a = _tree(git, ga["commit"], pa, Path(tmp) / "index-a")
        tree_b = _tree(git, gb["commit"], pb, Path(tmp) / "index-b")
        _, out, _ = git("diff", "--numstat", "--no-renames", tree_a, tree_b)
        result: dict[str, Any] = {"files": _numstat(out)}
        if with_patch and result["files"]:
            _, text, cut = git(
                "diff", "--no-color", "--no-ext-diff", "--no-renames", tree_a, tree_b, cap=PATCH_ANSWER_MAX
            )
            result["patch"] = text.decode(errors="replace")
            if cut:
                result["note"] = f"the patch is cut at {PATCH_ANSWER_MAX // 1024} KiB"
    if ga["commit"] != gb["commit"]:
        result["commits"] = [ga["commit"][:12], gb["commit"][:12]]
    return result


def _patch_diff(pa: Path | None, pb: Path | None, with_patch: bool) -> dict[str, Any]:
    """Same commit, different saved patches: the files whose changes differ, with a diff of
    the two patches' sections for each."""
    sa = dict(patch_sections(pa.read_bytes())) if pa else {}
    sb = dict(patch_sections(pb.read_bytes())) if pb else {}
    files = []
    texts = []
    for path in sorted(set(sa) | set(sb)):
        if sa.get(path) == sb.get(path):
            continue
        lines = list(
            difflib.unified_diff(
                sa.get(path, b"").decode(errors="replace").splitlines(),
                sb.get(path, b"").decode(errors="replace").splitlines(),
                f"a-patch/{path}",
                f"b-patch/{path}",
                lineterm="",
            )
        )
        files.append({"path": path, "added": None, "removed": None})
        texts.append("\n".join(lines))
    out: dict[str, Any] = {"files": files}
    if with_patch and texts:
        out["patch"] = "\n".join(texts)[:PATCH_ANSWER_MAX]
    return out
