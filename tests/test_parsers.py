"""What the sidecar reads out of metrics.jsonl and printed training logs."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.parsers import MAX_LINE, parse_log_line, parse_metrics_line, split_lines

# ---- cutting lines ------------------------------------------------------------------------


def test_a_partial_last_line_waits_for_its_end() -> None:
    cut = split_lines(b'{"loss": 1}\n{"loss": 2}\n{"lo', split_cr=False)
    assert cut.lines == [b'{"loss": 1}', b'{"loss": 2}'] and cut.consumed == 24 and cut.partial == 0
    rest = split_lines(b'{"lo' + b'ss": 3}\n', split_cr=False)
    assert rest.lines == [b'{"loss": 3}'] and rest.consumed == 12


def test_an_unterminated_line_counts_once_the_writer_is_gone() -> None:
    cut = split_lines(b'{"loss": 1}\n{"loss": 2}', split_cr=False, final=True)
    assert cut.lines == [b'{"loss": 1}', b'{"loss": 2}'] and cut.partial == 1 and cut.consumed == 23


def test_progress_bar_redraws_split_on_carriage_returns() -> None:
    data = b" 10%|#  | 1/10 [00:01, loss=0.9]\r 20%|## | 2/10 [00:02, loss=0.8]\r 30%|##"
    cut = split_lines(data, split_cr=True)
    assert [line.decode() for line in cut.lines] == [
        " 10%|#  | 1/10 [00:01, loss=0.9]",
        " 20%|## | 2/10 [00:02, loss=0.8]",
    ]
    assert data[cut.consumed :] == b" 30%|##"
    assert split_lines(b"a\r\nb\n", split_cr=True).lines == [b"a", b"b"]  # CRLF makes no empty line


def test_carriage_return_redraws_are_told_apart_from_printed_lines() -> None:
    data = b"\r 10%| 1/10 [loss=0.9]\r 10%| 1/10 [loss=0.9]\n{'loss': 0.9}\n\r 20%| 2/10 [loss=0.8]\r"
    cut = split_lines(data, split_cr=True)
    # The bar's redraws continue one printed line; the dict and the next bar each start one.
    assert cut.new_line == [False, False, True, True] and not cut.ends_line
    assert split_lines(b"a\nb\n", split_cr=True).ends_line


def test_huge_lines_are_skipped_and_counted_even_across_reads() -> None:
    big = b"x" * (MAX_LINE + 10)
    cut = split_lines(b'{"a": 1}\n' + big + b'\n{"a": 2}\n', split_cr=False)
    assert cut.lines == [b'{"a": 1}', b'{"a": 2}'] and cut.huge == 1
    # A huge line still being written: skip what is there, and its end on the next read.
    first = split_lines(b'{"a": 1}\n' + big, split_cr=False)
    assert first.lines == [b'{"a": 1}'] and first.skipping and first.consumed == 9 + len(big)
    second = split_lines(b'tail-of-huge"}\n{"a": 3}\n', split_cr=False, skipping=True)
    assert second.lines == [b'{"a": 3}'] and second.huge == 1 and not second.skipping


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20), st.integers(0, 400))
def test_any_split_point_yields_the_same_lines(parts: list[bytes], cut_at: int) -> None:
    data = b"".join(p + b"\n" for p in parts)
    whole = split_lines(data, split_cr=False).lines
    cut_at = min(cut_at, len(data))
    first = split_lines(data[:cut_at], split_cr=False)
    rest = split_lines(data[first.consumed :], split_cr=False)
    assert first.lines + rest.lines == whole
    assert first.consumed + rest.consumed == len(data)


# ---- metrics.jsonl ------------------------------------------------------------------------


def test_jsonl_keeps_numbers_and_reads_step() -> None:
    rec = parse_metrics_line(b'{"step": 7, "loss": 0.5, "lr": 1e-4, "tag": "x", "ok": true, "n": 3}')
    assert rec is not None
    assert rec.step == 7 and rec.values == {"loss": 0.5, "lr": 1e-4, "n": 3.0}
    assert rec.skipped == 2  # "tag" (a string) and "ok" (a bool is not a metric)


def test_jsonl_without_step_nested_and_nonfinite() -> None:
    rec = parse_metrics_line(
        json.dumps({"train": {"loss": 1.5}, "val": {"acc": 0.9}, "x": float("nan")}).encode()
    )
    assert rec is not None and rec.step is None
    assert rec.values["train/loss"] == 1.5 and rec.values["val/acc"] == 0.9 and math.isnan(rec.values["x"])
    inf = parse_metrics_line(b'{"loss": Infinity}')
    assert inf is not None and inf.values["loss"] == math.inf


@pytest.mark.parametrize(
    "line", [b"not json", b"[1, 2]", b'"loss"', b"\xff\xfe", b'{"loss": 1', b"{" * 100_000 + b"}" * 100_000]
)
def test_lines_that_are_not_json_objects_are_rejected(line: bytes) -> None:
    assert parse_metrics_line(line) is None


def test_bad_steps_and_oversized_numbers_are_counted_not_fatal() -> None:
    rec = parse_metrics_line(b'{"step": 1.5, "loss": 2, "big": ' + b"9" * 400 + b"}")
    assert rec is not None and rec.step is None and rec.values == {"loss": 2.0} and rec.skipped == 2


# ---- printed logs -------------------------------------------------------------------------


def test_hugging_face_trainer_dicts() -> None:
    rec = parse_log_line("{'loss': 0.5123, 'grad_norm': 1.25, 'learning_rate': 4.9e-05, 'epoch': 0.12}")
    assert rec is not None and rec.values == {
        "loss": 0.5123,
        "grad_norm": 1.25,
        "learning_rate": 4.9e-05,
        "epoch": 0.12,
    }
    nan = parse_log_line("{'loss': nan, 'grad_norm': inf, 'epoch': 1.0}")
    assert nan is not None and math.isnan(nan.values["loss"]) and nan.values["grad_norm"] == math.inf
    numpy = parse_log_line("{'eval_loss': np.float64(0.25), 'epoch': 2.0}")
    assert numpy is not None and numpy.values["eval_loss"] == 0.25


def test_a_printed_config_dict_is_not_a_metric() -> None:
    assert parse_log_line("config: {'lr': 0.1, 'batch_size': 32, 'seed': 0}") is None


@pytest.mark.parametrize(
    ("line", "values", "step"),
    [
        ("step 20/200 loss=0.12345 w=2.9 b=-0.9", {"loss": 0.12345}, 20),
        ("Epoch 1 | train/loss: 1.5e-02 | val_acc: 0.91", {"train/loss": 0.015, "val_acc": 0.91}, None),
        ("iter=300 val_loss=NaN", {"val_loss": math.nan}, 300),
        (" 50%|#####     | 50/100 [00:05<00:05, 9.9it/s, loss=0.123]", {"loss": 0.123}, 50),
        ("global_step: 12, eval_loss: 0.5.", {"eval_loss": 0.5}, 12),
    ],
)
def test_key_value_pairs_with_loss_like_names(line: str, values: dict[str, float], step: int | None) -> None:
    rec = parse_log_line(line)
    assert rec is not None and rec.step == step
    assert rec.values.keys() == values.keys()
    for key, value in values.items():
        assert rec.values[key] == value or (math.isnan(value) and math.isnan(rec.values[key]))


@pytest.mark.parametrize(
    "line",
    [
        "training: steps=200 lr=0.05 seed=0",  # hyper-parameters, not metrics
        "loading checkpoint from /tmp/loss=3/model.pt",  # a path
        "error: file not found",
        "Traceback (most recent call last):",
        "",
    ],
)
def test_lines_without_metrics(line: str) -> None:
    assert parse_log_line(line) is None
