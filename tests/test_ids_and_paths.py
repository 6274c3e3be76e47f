import os
import stat
from pathlib import Path

import pytest

from mcp_server.core.errors import InvalidInput
from mcp_server.core.ids import new_id, validate_env_key, validate_id, validate_name
from mcp_server.core.paths import StateDir, resolve_state_dir


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "x;rm -rf", "a b", "$(id)", "-flag", "x" * 65, "é"])
def test_bad_names_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(InvalidInput, match="letters, digits"):
        validate_name(bad)


def test_generated_ids_validate_and_are_safe_file_names() -> None:
    rid = new_id("run")
    assert validate_id(rid, "run") == rid
    assert "/" not in rid and validate_name(rid)
    with pytest.raises(InvalidInput, match="not a valid run id"):
        validate_id("run-../../etc", "run")
    with pytest.raises(InvalidInput):
        validate_id(new_id("sweep"), "run")


def test_env_keys() -> None:
    assert validate_env_key("CUDA_HOME")
    for bad in ("1X", "A-B", "A B", ""):
        with pytest.raises(InvalidInput):
            validate_env_key(bad)


def test_state_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESEARCH_MCP_HOME", raising=False)
    assert resolve_state_dir() == tmp_path / ".research-mcp"
    monkeypatch.setenv("RESEARCH_MCP_HOME", str(tmp_path / "env"))
    assert resolve_state_dir() == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_state_dir_is_private_and_contains_paths(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "s")
    assert stat.S_IMODE(os.stat(state.root).st_mode) == 0o700
    assert state.inside(state.root / "runs" / "x") == state.root / "runs" / "x"
    with pytest.raises(InvalidInput, match="outside the state dir"):
        state.inside(state.root / ".." / "elsewhere")
    (state.root / "runs" / "link").symlink_to("/etc")
    with pytest.raises(InvalidInput, match="outside the state dir"):
        state.inside(state.root / "runs" / "link" / "passwd")


def test_tmux_socket_differs_per_state_dir(tmp_path: Path) -> None:
    assert StateDir.open(tmp_path / "a").tmux_socket != StateDir.open(tmp_path / "b").tmux_socket


def test_the_state_dir_keeps_itself_and_its_secrets_out_of_git(tmp_path: Path) -> None:
    import subprocess

    from mcp_server.core.services import Services
    from mcp_server.transports import load_or_create_token

    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "train.py").write_text("print('hi')\n")
    services = Services(project / ".research-mcp")  # the default place: inside the project
    try:
        run = services.runs.create(
            name="secret",
            command="true",
            workdir=str(project),
            env={"WANDB_API_KEY": "s3cret"},
            auto_start=False,
        )
        token = load_or_create_token(services.state.root)
    finally:
        services.close()
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    staged = subprocess.run(
        ["git", "-C", str(project), "diff", "--cached", "--name-only"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert staged == ["train.py"]
    env_sh = Path(run.run_dir) / "env.sh"
    assert "s3cret" in env_sh.read_text()
    assert token.path is not None and stat.S_IMODE(token.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_sh.stat().st_mode) == 0o600


def test_two_processes_opening_a_new_state_dir_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other one wrote .gitignore between this one's look and its write."""
    root = tmp_path / "new"
    real_exists = Path.exists

    def looked_before_the_other_wrote(self: Path, *args: object, **kwargs: object) -> bool:
        if self.name == ".gitignore" and not real_exists(self):
            self.write_text("# the other server's\n*\n")
            return False
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", looked_before_the_other_wrote)
    state = StateDir.open(root)
    assert (state.root / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_state_dir_made_by_an_older_version_gets_its_gitignore(tmp_path: Path) -> None:
    (tmp_path / "old" / "runs").mkdir(parents=True)
    StateDir.open(tmp_path / "old")
    assert (tmp_path / "old" / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize(
    ("prefix", "lister"),
    [("run", "list_runs"), ("alert", "list_alerts"), ("plan", "list_plans"), ("mem", "list_memories")],
)
def test_a_malformed_id_error_names_the_lister_of_its_kind(prefix: str, lister: str) -> None:
    with pytest.raises(InvalidInput, match=f"Use {lister} ") as caught:
        validate_id("nope", prefix)
    others = {"list_runs", "list_alerts", "list_plans", "list_memories"} - {lister}
    assert not any(other in str(caught.value) for other in others)
