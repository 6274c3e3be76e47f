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
