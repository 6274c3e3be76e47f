"""What one printed piece of a training log says, format by format. Pure functions, no I/O.

A piece is a line cut on ``\\n`` or ``\\r`` (see ``sidecar.lines``), ANSI colours, backspaces
and a torchrun/accelerate rank prefix already handled by ``clean``. Each ``parse_*``
recognises one framework's shape and returns its numbers, or None; which step they belong
to is decided by ``sidecar.printed``, which sees the pieces in order.

Formats (as printed by the versions in tests/fixtures/frameworks):
- tqdm bars ``desc: 30%|███ | 3/10 [00:01<00:02, 2.9it/s, loss=0.5]`` — counter and postfix;
  Lightning's bar has ``Epoch 2`` as its description.
- Hugging Face Trainer dicts, 4.x numbers and 5.x quoted numbers (``{'loss': '4.675', ...}``).
- Keras 3 ``fit``: ``Epoch 1/4`` then ``23/23 ━━━━ 0s 8ms/step - loss: 0.65 - val_loss: 0.1``.
- Lightning's rich bar ``Epoch 2/2  ━━━━ 32/32 0:00:00 • ... v_num: 0.000`` and its indented
  continuation lines ``train_loss: 0.021``.
- fairseq ``| INFO | train_inner | epoch 001:  10 / 25 loss=5.8, ..., num_updates=10`` and
  ``| valid | epoch 001 | valid on 'valid' subset | loss 5.7 | ... | num_updates 25``.
- nanoGPT ``iter 10: loss 3.6, time 3.05ms, mfu 1.2%`` and ``step 20: train loss 3.6, val loss 3.7``.
- any ``loss=0.5`` / ``val_acc: 0.9`` pairs of loss- or accuracy-like names, with an optional
  ``step``/``iter``/``global_step`` number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcp_server.core.monitoring.metric_keys import goal

NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_NUM_ONLY = re.compile(NUM + r"\Z", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x08\x00]")
_NESTED = "\x1b[A"  # tqdm draws a bar at position > 0 after moving the cursor up
_RANK = re.compile(r"\[(?:rank|default)(\d+)\]:\s?")
_NOT_METRICS = frozenset({"v_num"})  # Lightning's logger version in its bar
MAX_STEP = 1 << 62


@dataclass
class Parsed:
    """The numbers of one piece and what kind of piece it was."""

    kind: str  # bar | dict | keras_epoch | keras_bar | rich | fairseq | pairs | continuation
    values: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    n: int = 0  # bars: counter
    total: int | None = None
    epoch: int | None = None  # bars with "Epoch E" (Lightning), keras_epoch
    nested: bool = False  # a tqdm bar below another (an eval bar inside training)
    bad: list[str] = field(default_factory=list)  # metric-like values that are not numbers


def clean(raw: str) -> tuple[str, int | None, bool]:
    """Strip colours and a rank prefix; returns (text, rank or None, drawn as a nested bar)."""
    nested = _NESTED in raw
    text = _ANSI.sub("", raw) if "\x1b" in raw or "\x08" in raw else raw
    rank = None
    if text.startswith("[") and (m := _RANK.match(text)):
        rank = int(m.group(1))
        text = text[m.end() :]
    return text, rank, nested


def number(text: str) -> float | None:
    text = text.strip().strip("'\"")
    return float(text) if _NUM_ONLY.match(text) else None


def _step(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text)
    return value if value < MAX_STEP else None


# ---- progress bars ------------------------------------------------------------------------

_TQDM = re.compile(r"(?:^|\s)(\d{1,3})%\|[^|]*\|\s*(\d{1,15})/(\d{1,15}|\?)\s*\[([^\]]*)\]")
_TQDM_NO_TOTAL = re.compile(r"(?:^|:\s)\s*(\d{1,15})it\s*\[([^\]]*)\]")
_EPOCH_DESC = re.compile(r"Epoch (\d{1,9})\s*$")
_POSTFIX_PAIR = re.compile(r"([A-Za-z_][\w./-]{0,100})=([^,\]]*)")


def parse_bar(text: str, nested: bool) -> Parsed | None:
    """A tqdm bar: counter, total, the description's epoch (Lightning) and the postfix."""
    if "|" in text and (m := _TQDM.search(text)):
        n, total_text, inside = int(m.group(2)), m.group(3), m.group(4)
        total = None if total_text == "?" else int(total_text)
        desc = text[: m.start()].rstrip(": ")
    elif "it [" in text and (m := _TQDM_NO_TOTAL.search(text)):
        n, total, inside = int(m.group(1)), None, m.group(2)
        desc = text[: m.start()].rstrip(": ")
    else:
        return None
    out = Parsed("bar", n=n, total=total, nested=nested)
    if (e := _EPOCH_DESC.search(desc)) is not None:
        out.epoch = int(e.group(1))
    # The postfix follows the rate: "00:01<00:02, 2.9it/s, loss=0.5, acc=0.9".
    for key, value in _POSTFIX_PAIR.findall(inside):
        if key in _NOT_METRICS:
            continue
        parsed = number(value)
        if parsed is None:
            out.bad.append(f"{key}={value.strip()[:40]}")
        else:
            out.values[key] = parsed
    return out


# ---- Hugging Face Trainer dicts -------------------------------------------------------------

_DICT = re.compile(r"\{[^{}]{1,20000}\}")
# 'key': value — the value a number, a quoted number (transformers 5.x), a numpy/torch
# scalar (np.float64(0.5), tensor(0.5)) or anything else up to the next comma.
_DICT_PAIR = re.compile(
    r"""['"]([^'"]{1,200})['"]\s*:\s*(?:(?:np|numpy)\.\w+\(|tensor\()?\s*('[^']*'|"[^"]*"|[^,}()]*)"""
)


def parse_dict(text: str) -> Parsed | None:
    """A printed metrics dict (a config dict is not one: it needs a metric name or epoch)."""
    for match in _DICT.finditer(text):
        values: dict[str, float] = {}
        bad: list[str] = []
        for key, raw in _DICT_PAIR.findall(match.group(0)):
            parsed = number(raw)
            if parsed is not None:
                values[key] = parsed
            elif goal(key):
                bad.append(f"{key}={raw.strip()[:40]}")
        if values and ("epoch" in values or any(goal(k) for k in values)):
            out = Parsed("dict", values=values, bad=bad)
            for key in ("global_step", "step"):
                if key in values:
                    value = values.pop(key)
                    if value.is_integer() and 0 <= value < MAX_STEP:
                        out.step = int(value)
            return out
    return None


# ---- Keras and Lightning's rich bar --------------------------------------------------------

_KERAS_EPOCH = re.compile(r"\s*Epoch (\d{1,9})/(\d{1,9})\s*\Z")
_KERAS_BAR = re.compile(r"\s*(\d{1,15})/(\d{1,15}) (?:\[[=>.]*\]|[━─]+|-)\s.*?\s-\s(.*)\Z")
_KERAS_PAIR = re.compile(r"([A-Za-z_][\w./-]{0,100}): (\S+)")
_RICH = re.compile(r"\s*Epoch (\d{1,9})/(\d{1,9})\s+[━─\s]*\s(\d{1,15})/(\d{1,15})\s")
_COLON_PAIR = re.compile(r"([A-Za-z_][\w./-]{0,100}):\s+(" + NUM + r")(?![\w.])", re.IGNORECASE)
_CONTINUATION = re.compile(r"\s{8,}(?:[A-Za-z_][\w./-]{0,100}:\s+" + NUM + r"\s*)+\Z", re.IGNORECASE)


def parse_keras_epoch(text: str) -> Parsed | None:
    m = _KERAS_EPOCH.match(text)
    return None if m is None else Parsed("keras_epoch", epoch=int(m.group(1)), total=int(m.group(2)))


def parse_keras_bar(text: str) -> Parsed | None:
    m = _KERAS_BAR.match(text)
    if m is None:
        return None
    out = Parsed("keras_bar", n=int(m.group(1)), total=int(m.group(2)))
    for key, raw in _KERAS_PAIR.findall(m.group(3)):
        parsed = number(raw)
        if parsed is None:
            out.bad.append(f"{key}={raw[:40]}")
        else:
            out.values[key] = parsed
    return out


def parse_rich(text: str) -> Parsed | None:
    m = _RICH.match(text)
    if m is None:
        return None
    out = Parsed("rich", epoch=int(m.group(1)), n=int(m.group(3)), total=int(m.group(4)))
    out.values = {k: float(v) for k, v in _COLON_PAIR.findall(text[m.end() :]) if k not in _NOT_METRICS}
    return out


def parse_continuation(text: str) -> Parsed | None:
    """An indented line of ``key: value`` pairs (rich prints each metric on a line of its own)."""
    if not _CONTINUATION.match(text):
        return None
    return Parsed("continuation", values={k: float(v) for k, v in _COLON_PAIR.findall(text)})


# ---- fairseq and nanoGPT --------------------------------------------------------------------

_FAIRSEQ = re.compile(r"\|\s*(?:([\w.-]+)\s*\|\s*)?epoch\s+(\d{1,9})(?::\s*\d+\s*/\s*\d+\s+(.*)|\s*\|(.*))\Z")
_FAIRSEQ_EQ = re.compile(r"([A-Za-z_][\w./-]{0,100})=([^,\s]+)")
_FAIRSEQ_SUBSET = re.compile(r"valid on '([^']+)' subset")
_NANO_ITER = re.compile(r"iter (\d{1,15}): loss (" + NUM + r"),", re.IGNORECASE)
_NANO_EVAL = re.compile(r"step (\d{1,15}): train loss (" + NUM + r"), val loss (" + NUM + r")", re.IGNORECASE)


def parse_fairseq(text: str) -> Parsed | None:
    """fairseq's simple log format; the step is ``num_updates``. Summary keys get their tag."""
    if "epoch" not in text or "|" not in text or not (m := _FAIRSEQ.search(text)):
        return None
    tag, inner, summary = m.group(1), m.group(3), m.group(4)
    out = Parsed("fairseq", epoch=int(m.group(2)))
    if inner is not None:
        pairs = _FAIRSEQ_EQ.findall(inner)
        prefix = "" if tag in (None, "train_inner") else f"{tag}/"
    else:
        pairs = [tuple(p.strip().split(" ", 1)) for p in summary.split("|") if " " in p.strip()]
        subset = _FAIRSEQ_SUBSET.search(summary)
        named = subset.group(1) if subset is not None else tag
        prefix = "" if named is None else f"{named}/"
    for key, raw in pairs:
        parsed = number(raw)
        if key == "num_updates" and parsed is not None and parsed.is_integer():
            out.step = int(parsed)
        elif parsed is not None:
            out.values[prefix + key] = parsed
    return out if out.values else None


def parse_nanogpt(text: str) -> Parsed | None:
    if (m := _NANO_ITER.match(text)) is not None:
        return Parsed("pairs", values={"loss": float(m.group(2))}, step=_step(m.group(1)))
    if (m := _NANO_EVAL.match(text)) is not None:
        values = {"train/loss": float(m.group(2)), "val/loss": float(m.group(3))}
        return Parsed("pairs", values=values, step=_step(m.group(1)))
    return None


# ---- plain pairs ----------------------------------------------------------------------------

# key=value or key: value, the key not glued to a preceding word.
_PAIR = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]{0,100})\s*[=:]\s*(" + NUM + r")(?!\w)", re.IGNORECASE)
_BAD_PAIR = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]{0,100})=(\S+)")
_STEP = re.compile(r"\b(?:global_step|step|iter(?:ation)?)\b\s*[=:]?\s*(\d{1,18})\b", re.IGNORECASE)


def _unreadable(key: str, value: str) -> bool:
    return goal(key) is not None and number(value) is None


def parse_pairs(text: str) -> Parsed | None:
    """``loss=0.5`` / ``val_acc: 0.9`` pairs of loss- or accuracy-like names."""
    if "=" not in text and ":" not in text:
        return None
    values = {k: float(v) for k, v in _PAIR.findall(text) if goal(k)}
    bad = [f"{k}={v[:40]}" for k, v in _BAD_PAIR.findall(text) if k not in values and _unreadable(k, v)]
    if not values and not bad:
        return None
    m = _STEP.search(text)
    return Parsed("pairs", values=values, step=_step(m.group(1)) if m else None, bad=bad)


def parse_piece(text: str, nested: bool) -> Parsed | None:
    """The first format that recognises ``text`` (most specific first)."""
    if "{" in text and (found := parse_dict(text)) is not None:
        return found
    if "Epoch" in text:
        for parse in (parse_rich, parse_keras_epoch):
            if (found := parse(text)) is not None:
                return found
    if (found := parse_bar(text, nested)) is not None:
        return found
    if " - " in text and (found := parse_keras_bar(text)) is not None:
        return found
    if (found := parse_fairseq(text)) is not None:
        return found
    if (found := parse_nanogpt(text)) is not None:
        return found
    if text.startswith("        ") and (found := parse_continuation(text)) is not None:
        return found
    return parse_pairs(text)
