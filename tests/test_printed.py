"""What the sidecar reads out of printed training output, and at which step.

Lines here are as the frameworks print them (see tests/fixtures/frameworks for whole
recorded runs); ``feed`` cuts a string the way output.log is cut (on '\\r' and '\\n').
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.lines import split_lines
from sidecar.printed import PrintedStream
from sidecar.printed_formats import clean, parse_piece

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"


def feed(text: str | bytes, stream: PrintedStream | None = None, final: bool = True) -> PrintedStream:
    stream = stream or PrintedStream()
    data = text.encode() if isinstance(text, str) else text
    cut = split_lines(data, split_cr=True, final=final)
    for line, new_line, ends in zip(cut.lines, cut.new_line, cut.ends, strict=True):
        stream.feed(line.decode("utf-8", "replace"), new_line, ends)
    if final:
        stream.finish()
    return stream


def at(stream: PrintedStream, key: str) -> list[tuple[int, float]]:
    return [(step, value) for k, step, value, _ in stream.points if k == key]


# ---- Hugging Face Trainer ------------------------------------------------------------------


def test_transformers_5_quoted_values_are_numbers() -> None:
    (p,) = [
        parse_piece(
            "{'loss': '4.675', 'grad_norm': '0.9005', 'learning_rate': '0.0003', 'epoch': '0.04'}", False
        )
    ]
    assert p is not None and p.kind == "dict"
    assert p.values == {"loss": 4.675, "grad_norm": 0.9005, "learning_rate": 0.0003, "epoch": 0.04}


def test_a_dict_takes_the_counter_of_the_bar_drawn_after_it() -> None:
    # tqdm throttles redraws: the bar before the dict still says 39; tqdm.write redraws it at 40.
    s = feed(
        "\r 78%|███████▊  | 39/50 [00:08<00:01,  8.72it/s]\r\r"
        "{'loss': '3.902', 'learning_rate': '6.6e-05', 'epoch': '0.8'}\n"
        "\r 80%|████████  | 40/50 [00:08<00:01,  8.72it/s]\r 82%|████████▏ | 41/50 [00:08<00:01]"
    )
    assert at(s, "loss") == [(40, 3.902)] and at(s, "epoch") == [(40, 0.8)]


def test_an_eval_dict_lands_at_the_training_step_not_the_eval_bars_counter() -> None:
    s = feed(
        "\r 50%|█████     | 25/50 [00:05<00:03,  6.38it/s]\n"
        "\r  0%|          | 0/4 [00:00<?, ?it/s]\x1b[A\r 75%|███████▌  | 3/4 [00:00<00:00]\x1b[A\r\n"
        "\r\x1b[A{'eval_loss': '3.912', 'eval_runtime': '0.0199', 'epoch': '0.5'}\n"
        "\r 50%|█████     | 25/50 [00:05<00:03,  6.38it/s]\n"
        "\r100%|██████████| 4/4 [00:00<00:00, 272.97it/s]\x1b[A\n"
    )
    assert at(s, "eval_loss") == [(25, 3.912)] and at(s, "eval_runtime") == [(25, 0.0199)]


def test_a_dict_with_no_bar_after_it_takes_the_last_counter_and_without_any_bar_the_ordinal() -> None:
    s = feed("\r 10%|█ | 5/50 [00:01]\n{'loss': 0.5, 'epoch': 0.1}\n")
    assert at(s, "loss") == [(5, 0.5)]
    plain = feed("{'loss': 0.5, 'epoch': 0.1}\n{'loss': 0.4, 'epoch': 0.2}\n")  # disable_tqdm: no bar at all
    assert [(step, exact) for k, step, _, exact in plain.points if k == "loss"] == [(0, False), (1, False)]


def test_a_step_key_in_the_dict_wins_and_a_config_dict_is_not_metrics() -> None:
    s = feed("{'loss': 0.25, 'global_step': 120, 'epoch': 2.0}\n")
    assert at(s, "loss") == [(120, 0.25)] and not at(s, "global_step")
    assert parse_piece("config: {'lr': 0.1, 'batch_size': 32, 'seed': 0}", False) is None


def test_numpy_and_torch_scalars_and_nonfinite_values() -> None:
    p = parse_piece(
        "{'eval_loss': np.float64(0.25), 'grad_norm': tensor(inf), 'loss': nan, 'epoch': 2.0}", False
    )
    assert p is not None and p.values["eval_loss"] == 0.25 and p.values["grad_norm"] == math.inf
    assert math.isnan(p.values["loss"])


def test_a_metric_value_that_is_not_a_number_is_counted_with_an_example() -> None:
    s = feed("{'loss': 'tensor([0.5, 0.6])', 'epoch': 1.0}\nstep 3 loss=None acc=0.5\n")
    assert s.bad == 2 and s.example == "loss='tensor([0.5, 0.6])'"
    assert at(s, "acc") == [(3, 0.5)] and not at(s, "loss")


# ---- other frameworks ----------------------------------------------------------------------------


def test_keras_epoch_end_values_at_the_epoch_running_averages_skipped() -> None:
    bar = "━" * 20
    s = feed(
        "Epoch 1/4\n"
        f"\r\x1b[1m 1/23\x1b[0m \x1b[37m{bar}\x1b[0m \x1b[1m0s\x1b[0m 15ms/step - loss: 7.5073"
        " - mae: 2.0523\x08\x08\x08"
        f"\r\x1b[1m23/23\x1b[0m \x1b[32m{bar}\x1b[0m \x1b[1m0s\x1b[0m 8ms/step - loss: 4.8184 - mae: 1.7197"
        " - val_loss: 1.6761 - val_mae: 1.0685\n"
        "Epoch 2/4\n15/15 - 0s - 11ms/step - loss: 1.4730 - val_loss: 0.5854\n"
    )
    assert at(s, "loss") == [(0, 4.8184), (1, 1.473)] and at(s, "val_mae") == [(0, 1.0685)]


def test_lightning_bars_step_is_epoch_times_batches_plus_counter_not_exact() -> None:
    s = feed(
        "Epoch 1:   3%|▎         | 1/32 [00:00<00:00, 140.1it/s, v_num=0, train_loss=0.669, val_loss=0.810]\r"
        "Epoch 1:   3%|▎         | 1/32 [00:00<00:00, 140.1it/s, v_num=0, train_loss=0.512, val_loss=0.810]\r"
        "Epoch 1:   6%|▋         | 2/32 [00:00<00:00, 140.1it/s, v_num=0, train_loss=0.498, val_loss=0.810]\n"
    )
    assert at(s, "train_loss") == [(33, 0.512), (34, 0.498)]  # the last value drawn at each counter
    assert not at(s, "v_num") and {exact for *_, exact in s.points} == {False}
    rich = feed(
        "Epoch 2/2  ━━━━━━━━━━━━━━━━ 32/32 0:00:00 • 0:00:00 375.75it/s v_num: 0.000     \n"
        "                                                               train_loss: 0.021\n"
        "                                                               val_loss: 0.048  \n"
    )
    assert at(rich, "train_loss") == [(96, 0.021)] and at(rich, "val_loss") == [(96, 0.048)]


def test_a_tqdm_postfix_is_one_point_per_update_at_the_counter() -> None:
    s = feed(
        "\rtrain:   5%|▌         | 2/40 [00:00<00:00, 68.80it/s, acc=0.594, loss=0.6853]"
        "\rtrain:   8%|▊         | 3/40 [00:00<00:00, 58.62it/s, acc=0.594, loss=0.6853]"
        "\rtrain:   8%|▊         | 3/40 [00:00<00:00, 58.62it/s, acc=0.633, loss=0.6508]\n"
    )
    assert at(s, "loss") == [(2, 0.6853), (3, 0.6508)] and at(s, "acc") == [(2, 0.594), (3, 0.633)]


@pytest.mark.parametrize(
    ("line", "expected", "step"),
    [
        (
            "2026-11-30 19:49:05 | INFO | train_inner | epoch 001:      5 / 25 loss=5.864, ppl=58.238, "
            "num_updates=5, lr=0.005, gnorm=0.618, wall=0",
            {"loss": 5.864, "ppl": 58.238, "lr": 0.005, "gnorm": 0.618, "wall": 0.0},
            5,
        ),
        (
            "2026-11-30 19:49:05 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 5.794 | "
            "ppl 55.4983 | num_updates 25 | best_loss 5.79437",
            {"valid/loss": 5.794, "valid/ppl": 55.4983, "valid/best_loss": 5.79437},
            25,
        ),
        ("| epoch 001 | loss 4.1 | ppl 17.1 | num_updates 100", {"loss": 4.1, "ppl": 17.1}, 100),
        ("iter 3: loss 3.6367, time 3.03ms, mfu -100.00%", {"loss": 3.6367}, 3),
        ("step 20: train loss 3.6729, val loss 3.5979", {"train/loss": 3.6729, "val/loss": 3.5979}, 20),
        ("step 20/200 loss=0.12345 w=2.9 b=-0.9", {"loss": 0.12345}, 20),
        ("Epoch 1 | train/loss: 1.5e-02 | val_acc: 0.91", {"train/loss": 0.015, "val_acc": 0.91}, None),
        ("global_step: 12, eval_loss: 0.5.", {"eval_loss": 0.5}, 12),
    ],
)
def test_fairseq_nanogpt_and_plain_pairs(line: str, expected: dict[str, float], step: int | None) -> None:
    p = parse_piece(clean(line)[0], False)
    assert p is not None and p.values == expected and p.step == step


@pytest.mark.parametrize(
    "line",
    [
        "training: steps=200 lr=0.05 seed=0",  # hyper-parameters, not metrics
        "loading checkpoint from /tmp/loss=3/model.pt",  # a path
        "error: file not found",
        "Traceback (most recent call last):",
        "  0%|          | 0/50 [00:00<?, ?it/s]",  # a bar without a postfix carries no metric
    ],
)
def test_lines_without_metrics(line: str) -> None:
    assert not feed(line + "\n").points


def test_only_rank_0_unless_all_ranks_are_asked_for() -> None:
    text = "[default0]:step 1 loss=0.5000\n[default1]:step 1 loss=0.7000\n[rank1]: step 2 loss=0.6\n"
    assert at(feed(text), "loss") == [(1, 0.5)]
    every = feed(text, PrintedStream(all_ranks=True))
    assert at(every, "loss") == [(1, 0.5)] and at(every, "rank1/loss") == [(1, 0.7), (2, 0.6)]


# ---- resuming --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["hf_trainer_5", "hf_trainer_4", "keras_fit", "lightning_csv", "tqdm_postfix"]
)
@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=12))
def test_a_restart_anywhere_gives_the_same_points(name: str, cuts: list[int]) -> None:
    """The stream's saved state (JSON, as the sidecar stores it) resumes mid-stretch exactly."""
    data = (FIXTURES / name / "output.log").read_bytes()
    whole = feed(data).points
    points, state, records, offset = [], None, 0, 0
    for size in [*cuts, len(data)]:
        last = offset + size >= len(data)
        cut = split_lines(data[offset : offset + size], split_cr=True, final=last)
        stream = PrintedStream(json.loads(json.dumps(state)) if state else None, records)
        for line, new_line, ends in zip(cut.lines, cut.new_line, cut.ends, strict=True):
            stream.feed(line.decode("utf-8", "replace"), new_line, ends)
        if last:
            stream.finish()
        points += stream.points
        state, records, offset = stream.state(), stream.records, offset + cut.consumed
        if last:
            break
    assert points == whole
