"""What a metric's name says about it: lower-is-better (loss-like) or higher-is-better.

Used by the sidecar (which keys get spike/divergence rules, which log pairs count as
metrics) and by get_metrics ("best" is the min of a loss and the max of an accuracy),
so both read names the same way. Stdlib only: the sidecar imports it.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Literal

_TOKEN = re.compile(r"[A-Za-z]+[0-9]*")
_LOWER = frozenset({"loss", "nll", "ppl", "perplexity", "error", "err", "mse", "mae", "rmse", "wer", "cer"})
_HIGHER = frozenset(
    {"acc", "accuracy", "top1", "top5", "f1", "bleu", "rouge", "auc", "auroc", "precision", "recall",
     "map", "iou", "miou", "dice", "reward", "return", "score", "exact", "em"}
)  # fmt: skip
# Words that look like a loss or accuracy but are not one (fp16 loss scaling, counters).
_NOT_A_METRIC = frozenset(
    {"scale", "scaler", "count", "num", "samples", "tokens", "runtime", "per", "second"}
)

Goal = Literal["min", "max"]


def _tokens(key: str) -> list[str]:
    # "train/loss", "eval_accuracy", "valLoss" → words; camelCase splits too.
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key)
    return [t.lower() for t in _TOKEN.findall(spaced)]


@functools.lru_cache(maxsize=4096)  # called per ingested point: a run has few distinct keys
def goal(key: str) -> Goal | None:
    """ "min" for loss-like names, "max" for accuracy-like ones, None when the name says neither."""
    words = _tokens(key)
    if not words or _NOT_A_METRIC.intersection(words):
        return None
    bases = [w.rstrip("0123456789") for w in words]  # "loss2" reads as "loss", "top1" stays
    if any(b in _LOWER or b.endswith("loss") for b in bases):
        return "min"
    if any(w in _HIGHER or b in _HIGHER or b.startswith("acc") for w, b in zip(words, bases, strict=True)):
        return "max"
    return None


def is_loss_like(key: str) -> bool:
    return goal(key) == "min"


def similar_keys(wanted: str, existing: list[str], limit: int = 5) -> list[str]:
    """Existing keys a caller probably meant: same last word ("loss" → "train/loss"), or close spelling."""
    w = wanted.lower()
    last = (_tokens(wanted) or [w])[-1]
    hits = [k for k in existing if k.lower() != w and (w in k.lower() or last in _tokens(k))]
    hits += [k for k in difflib.get_close_matches(wanted, existing, n=limit, cutoff=0.6) if k not in hits]
    return hits[:limit]


_HELD_OUT = frozenset({"val", "valid", "validation", "eval", "test", "dev"})


def key_metric(keys: list[str]) -> str | None:
    """The metric a person would judge a run by, when nobody said: a held-out loss or accuracy
    over a training one, a loss over an accuracy, the shorter name on a tie; None when no key
    reads as either (a learning rate is never "the" metric)."""
    ranked = [
        (bool(_HELD_OUT.intersection(_tokens(k))), goal(k) == "min", -len(k), k)
        for k in keys
        if goal(k) is not None
    ]
    return max(ranked)[3] if ranked else None
