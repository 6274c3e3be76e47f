"""What the sidecar reads out of one metrics.jsonl line."""

import json
import math

import pytest

from sidecar.jsonl import parse_metrics_line


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


def test_the_first_skipped_value_is_kept_as_an_example() -> None:
    rec = parse_metrics_line(b'{"step": 3, "loss": 0.5, "lr": "1e-4", "tag": "warmup"}')
    assert rec is not None and rec.skipped == 2 and rec.example == 'lr="1e-4"'
