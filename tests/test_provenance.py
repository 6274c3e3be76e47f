"""Provenance: what each run ran, recorded at launch in a real git repository and a real venv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_server.core.execution.provenance import load, seeds_of
from mcp_server.core.execution.provenance_git import snapshot
from mcp_server.core.services import Services
from tests.helpers import PYTHON, wait_for

TRAIN = "import sys\nlr = float(sys.argv[1])\nprint('loss', 1.0 / lr)\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(workdir: Path) -> Path:
    git(workdir, "init", "-q", "-b", "main")
    (workdir / "train.py").write_text(TRAIN)
    (workdir / "data.bin").write_bytes(bytes(range(256)))
    git(workdir, "add", ".")
    git(workdir, "commit", "-q", "-m", "first")
    return workdir


def ended(services: Services, run_id: str) -> bool:
    services.settler.tick()
    return services.runs.load(run_id).status in ("finished", "failed", "stopped", "lost")


def test_an_uncommitted_edit_is_saved_as_a_patch_that_reproduces_the_file_on_the_commit(
    services: Services, repo: Path, tmp_path: Path
) -> None:
    commit = git(repo, "rev-parse", "HEAD").strip()
    edited = TRAIN.replace("1.0 / lr", "2.0 / lr")
    (repo / "train.py").write_text(edited)
    (repo / "data.bin").write_bytes(bytes(reversed(range(256))))  # binary: named, not copied
    (repo / "helper.py").write_text("X = 1\n")  # untracked, named by the command
    (repo / "notes.txt").write_text("not named by the command\n")
    run = services.runs.create(
        name="edited",
        command=f"{PYTHON} train.py 0.5 && {PYTHON} helper.py --seed 7",
        workdir=str(repo),
        params={"lr": 0.5, "seed": 3},
    )
    wait_for(lambda: ended(services, run.id), 30, what="the run to end")
    doc = load(services.runs.files(run.id).run_dir)
    assert doc is not None
    g = doc["git"]
    assert (g["commit"], g["branch"], g["dirty"]) == (commit, "main", True)
    assert g["untracked"] == ["helper.py"]
    assert g["omitted"] == [{"path": "data.bin", "why": "binary"}]
    assert {f["path"] for f in g["patch_files"]} == {"train.py", "helper.py"}
    assert doc["seeds"] == {"seed": 3}

    # The patch applies cleanly to the recorded commit and gives back the edited file.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", commit)
    git(clone, "apply", "--check", str(services.runs.files(run.id).run_dir / "code.patch"))
    git(clone, "apply", str(services.runs.files(run.id).run_dir / "code.patch"))
    assert (clone / "train.py").read_text() == edited
    assert (clone / "helper.py").read_text() == "X = 1\n"
    assert not (clone / "notes.txt").exists()

    brief = services.runs.get(run.id).provenance
    assert brief is not None
    assert brief.commit == commit[:12] and brief.dirty and brief.branch == "main"
    assert brief.patch == "code.patch: 2 file(s), +2 -1"
    assert brief.omitted == ["data.bin (binary)"]


def test_a_venv_activated_in_the_command_is_the_interpreter_and_packages_recorded(
    services: Services, repo: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    dist = site / "tinypkg-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.2.3\n")
    run = services.runs.create(
        name="venv",
        command=f"source {venv}/bin/activate && python train.py 0.5",
        workdir=str(repo),
    )
    run_dir = services.runs.files(run.id).run_dir
    wait_for(lambda: ended(services, run.id) and (run_dir / "python.json").exists(), 30, what="the probe")
    doc = load(run_dir)
    assert doc is not None and not doc["git"]["dirty"] and "patch" not in doc["git"]
    assert doc["job"]["interpreter"] == str(venv / "bin" / "python")
    assert doc["job"]["virtual_env"] == str(venv)
    assert doc["python"]["executable"] == str(venv / "bin" / "python")
    assert doc["python"]["packages"] == ["tinypkg==1.2.3"]
    brief = services.runs.get(run.id).provenance
    assert brief is not None and brief.python is not None
    assert f"{venv}/bin/python" in brief.python and "1 packages" in brief.python
    assert services.runs.logs(run.id).text == "loss 2.0\n"  # the probe changed nothing the job saw


def test_a_command_that_is_not_python_says_so_and_a_workdir_outside_git_is_no_error(
    services: Services, workdir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    (empty / "tool").write_text("#!/bin/sh\necho tool ran\n")
    (empty / "tool").chmod(0o755)
    run = services.runs.create(
        name="notpy", command=f"export PATH={empty}; for i in 1 2; do tool; done", workdir=str(workdir)
    )
    run_dir = services.runs.files(run.id).run_dir
    wait_for(lambda: ended(services, run.id) and (run_dir / "job.txt").exists(), 30, what="the probe")
    doc = load(run_dir)
    assert doc is not None
    assert doc["git"] == {"repo": None, "note": "the workdir is not in a git repository"}
    assert doc["job"]["program"] == "tool" and doc["job"]["interpreter"] == ""
    brief = services.runs.get(run.id).provenance
    assert brief is not None and brief.commit is None
    assert brief.note == "the workdir is not in a git repository"
    assert brief.python == "none: the job's first program is 'tool' and no Python is on its PATH"
    assert services.runs.logs(run.id).text == "tool ran\ntool ran\n"  # the probe ran once, silently


def test_gpus_are_recorded_through_the_nvml_boundary(services: Services, workdir: Path, fake_gpus) -> None:  # type: ignore[no-untyped-def]
    run = services.runs.create(
        name="gpu", command="printenv CUDA_VISIBLE_DEVICES", workdir=str(workdir), gpus=1
    )
    run_dir = services.runs.files(run.id).run_dir
    wait_for(lambda: ended(services, run.id) and (run_dir / "job.txt").exists(), 30, what="the probe")
    brief = services.runs.get(run.id).provenance
    assert brief is not None
    assert brief.gpus == "1× NVIDIA A100-SXM4-80GB (driver fake); CUDA_VISIBLE_DEVICES=0"


def test_git_snapshot_is_bounded_and_names_what_it_did_not_copy(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text(TRAIN + "# " + "x" * 300_000 + "\n")
    facts = snapshot(str(repo), "python train.py", tmp_path / "p.patch", 5.0)
    assert facts["dirty"] and "patch" not in facts
    assert facts["omitted"] == [{"path": "train.py", "why": "its diff is 293 KiB"}]
    facts = snapshot(str(repo), "python train.py", tmp_path / "p.patch", 0.0)
    assert facts["repo"] is None and "did not answer" in facts["note"]


def test_seed_like_values_come_from_params_and_options() -> None:
    found = seeds_of({"seed": 1, "lr": 0.1}, "python t.py --data-seed 5 --lr 1")
    assert found == {"seed": 1, "data-seed": "5"}
    assert seeds_of({}, "python t.py seed=3 --other 1") == {"seed": "3"}
    assert json.dumps(seeds_of({}, "python t.py")) == "{}"
