"""Parameter spaces: validation, grid and seeded random expansion, and the commands they make."""

import math
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_server.core.errors import InvalidInput
from mcp_server.core.search.sweep_space import expand, grid_size, render_command, validate_space


def test_a_grid_is_the_product_in_the_order_given() -> None:
    space = validate_space({"lr": [0.1, 0.01], "bs": [16, 32, 64]}, "grid")
    configs = expand(space, "grid", None, None)
    assert grid_size(space) == 6
    assert configs == [
        {"lr": 0.1, "bs": 16},
        {"lr": 0.1, "bs": 32},
        {"lr": 0.1, "bs": 64},
        {"lr": 0.01, "bs": 16},
        {"lr": 0.01, "bs": 32},
        {"lr": 0.01, "bs": 64},
    ]


def test_a_grid_larger_than_max_runs_is_refused_with_its_size() -> None:
    space = validate_space({"lr": [1, 2, 3], "bs": [1, 2]}, "grid")
    with pytest.raises(InvalidInput, match=r"6 combinations \(3 lr × 2 bs\), more than max_runs=5"):
        expand(space, "grid", 5, None)


def test_random_sampling_is_reproducible_with_a_seed_and_stays_in_bounds() -> None:
    space = validate_space(
        {
            "lr": {"min": 1e-5, "max": 1e-2, "log": True},
            "dropout": {"min": 0.0, "max": 0.5},
            "layers": {"min": 2, "max": 8},
            "width": {"min": 16, "max": 1024, "log": True},
            "opt": ["adam", "sgd"],
        },
        "random",
    )
    a = expand(space, "random", 50, seed=7)
    assert a == expand(space, "random", 50, seed=7)
    assert a != expand(space, "random", 50, seed=8)
    for cfg in a:
        assert 1e-5 <= cfg["lr"] <= 1e-2 and 0.0 <= cfg["dropout"] <= 0.5
        assert isinstance(cfg["layers"], int) and 2 <= cfg["layers"] <= 8
        assert isinstance(cfg["width"], int) and 16 <= cfg["width"] <= 1024
        assert cfg["opt"] in ("adam", "sgd")
    # a log-range spreads over decades: both ends of 1e-5..1e-2 are reached in 50 draws
    decades = {math.floor(math.log10(cfg["lr"])) for cfg in a}
    assert {-5, -3} <= decades


@pytest.mark.parametrize(
    ("space", "method", "message"),
    [
        ({"lr": {"min": 0.1, "max": 1}}, "grid", "grid sweeps need a list"),
        ({"lr": []}, "grid", "empty list"),
        ({"lr": [[1, 2]]}, "grid", "no nested lists"),
        ({"lr": {"min": 1, "max": 1}}, "random", "must be less than max"),
        ({"lr": {"min": 0, "max": 1, "log": True}}, "random", "log-range needs min > 0"),
        ({"lr": {"lo": 0, "hi": 1}}, "random", "a range is"),
        ({"lr": 0.1}, "random", "give a list of values, a range"),
        ({"bad name": [1]}, "grid", "parameter name 'bad name' is not allowed"),
        ({"x": [1]}, "bayes", "valid: grid, random"),
    ],
)
def test_bad_spaces_are_refused_saying_what_is_valid(space: dict, method: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_space(space, method)


def test_random_needs_max_runs() -> None:
    with pytest.raises(InvalidInput, match="needs max_runs"):
        expand(validate_space({"lr": [1, 2]}, "random"), "random", None, 1)


def test_values_fill_placeholders_or_are_appended_quoted() -> None:
    values = {"lr": 0.001, "name": "it's", "amp": True, "bs": 32}
    cmd = render_command("python train.py --lr {lr} --tag {name} && echo ${lr}", values)
    assert cmd == "python train.py --lr 0.001 --tag 'it'\"'\"'s' && echo ${lr} --amp=true --bs=32"


@settings(max_examples=25, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\n"), min_size=1)
)
def test_any_value_reaches_the_command_as_one_literal_argument(value: str) -> None:
    cmd = (
        render_command("printf '%s|' {v}", {"v": value})
        + " && "
        + render_command("printf '%s|'", {"w": value})
    )
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, check=True).stdout.decode()
    assert out == f"{value}|--w={value}|"


def test_a_value_that_looks_like_a_placeholder_is_never_expanded_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "injected"
    values = {"a": "{b}", "b": f"; touch {marker} #"}
    cmd = render_command("echo {a} {b}", values)
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, check=True, text=True).stdout
    assert not marker.exists(), f"the sweep space ran a command: {cmd}"
    assert out == f"{{b}} ; touch {marker} #\n"
