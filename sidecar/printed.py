"""Printed output, piece by piece, into metric points at the framework's own step.

Which step a printed number belongs to is often said by a *neighbouring* piece, so this is
a small state machine over the pieces in order (``sidecar.printed_formats`` reads each one):

- A Hugging Face Trainer dict carries no step: it waits for the next draw of the main
  progress bar, which tqdm redraws right after the dict with the counter it has reached
  (the draw *before* it may be stale: tqdm throttles redraws). A dict that no bar follows
  takes the last counter the main bar showed. Eval dicts follow the same rule, so they
  land at the training step they were computed at. A nested bar (the eval loop's, drawn
  below the main one) never gives a step.
- A tqdm postfix is one point per update: the last values drawn at a counter (tqdm redraws
  the bar with the old postfix when it counts, then again with the new one).
- Keras prints running averages while an epoch runs; the epoch's values are the last draw
  of its final batch (``23/23``), the one its newline leaves on screen; step = epoch (0-based,
  as Keras' callbacks count). Lightning's bars show ``Epoch E`` and the batch counter: their
  step is inferred as ``E × batches + n`` and flagged as not exact (a file source wins).
- Lines of another rank (``[rank1]:``, ``[default1]:`` from torchrun/accelerate) are skipped
  unless all ranks are asked for; then their keys get a ``rank1/`` prefix.

The state is a small JSON-able dict saved with the output offset, so a restarted sidecar
resumes mid-stretch exactly where the last commit left it.
"""

from __future__ import annotations

from typing import Any

from sidecar.printed_formats import Parsed, clean, parse_piece

# (key, step, value, the step is the framework's own); a piece that says no step is
# numbered by its record ordinal (not exact).
Point = tuple[str, int, float, bool]


class PrintedStream:
    def __init__(
        self, state: dict[str, Any] | None = None, records: int = 0, all_ranks: bool = False
    ) -> None:
        s = state or {}
        self.main: list[Any] | None = s.get("main")  # [step, exact] of the main bar's last draw
        self.dicts: list[dict[str, float]] = s.get("dicts", [])  # dicts waiting for a bar
        self.post: list[Any] | None = s.get("post")  # [step, exact, values] drawn at a counter
        self.flushed: list[Any] | None = s.get("flushed")  # [step, keys] of the last postfix stored
        self.keras_epoch: int | None = s.get("keras_epoch")
        self.keras: dict[str, float] | None = s.get("keras")  # the epoch's final-batch values
        self.rich: bool = s.get("rich", False)  # the last printed line was Lightning's rich bar
        self.last: dict[str, float] | None = s.get("last")  # plain pairs of the line being redrawn
        self.all_ranks = all_ranks
        self.points: list[Point] = []
        self.records = records  # pieces that gave points so far (numbers the stepless ones)
        self.bad = 0
        self.example: str | None = None

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("main", "dicts", "post", "flushed", "keras_epoch", "keras", "rich", "last"):
            value = getattr(self, name)
            if value is not None and value is not False and value != [] and value != {}:
                out[name] = value  # (an epoch 0 is kept)
        return out

    # ---- input --------------------------------------------------------------------------

    def feed(self, raw: str, new_line: bool, ends: bool) -> None:
        """One piece; ``new_line``: it starts a printed line; ``ends``: a newline follows it."""
        text, rank, nested = clean(raw)
        prefix = ""
        if rank:
            if not self.all_ranks:
                return
            prefix = f"rank{rank}/"
        parsed = parse_piece(text, nested)
        if self.rich and (parsed is None or parsed.kind != "continuation"):
            self._flush_post()  # the rich bar's block of lines is over
            self.rich = False
        if new_line:
            self.last = None
        if parsed is None:
            return
        for bad in parsed.bad:
            self.bad += 1
            self.example = self.example or bad
        if prefix:
            parsed.values = {prefix + k: v for k, v in parsed.values.items()}
        handler = getattr(self, f"_on_{parsed.kind}")
        handler(parsed, ends)

    def finish(self) -> None:
        """The writer is gone: what still waits takes the best step it has."""
        self._flush_post()
        self._flush_keras()
        self._resolve_dicts(self.main)
        self.rich = False

    # ---- kinds --------------------------------------------------------------------------

    def _on_bar(self, p: Parsed, ends: bool) -> None:
        exact = p.epoch is None
        step = p.n if exact else p.epoch * (p.total or 0) + p.n  # type: ignore[operator]
        if not p.nested:
            self.main = [step, exact]
            self._resolve_dicts(self.main)
        if p.values and p.n > 0:  # at 0 nothing was counted yet: a reset bar shows stale values
            if self.post is not None and self.post[0] != step:
                self._flush_post()
            self.post = [step, exact, p.values]
        if ends:
            self._flush_post()

    def _on_dict(self, p: Parsed, ends: bool) -> None:
        if p.step is not None or self.main is None:  # no bar at all (disable_tqdm): no step to wait for
            self._emit(p.values, p.step, p.step is not None)
            return
        self.dicts.append(p.values)

    def _on_keras_epoch(self, p: Parsed, ends: bool) -> None:
        self._flush_keras()
        self.keras_epoch = (p.epoch or 1) - 1

    def _on_keras_bar(self, p: Parsed, ends: bool) -> None:
        if p.n == p.total and self.keras_epoch is not None:
            self.keras = p.values
            if ends:
                self._flush_keras()

    def _on_rich(self, p: Parsed, ends: bool) -> None:
        self._flush_post()
        step = (p.epoch or 0) * (p.total or 0) + p.n
        self.post = [step, False, p.values]
        self.rich = True

    def _on_continuation(self, p: Parsed, ends: bool) -> None:
        if self.rich and self.post is not None:
            self.post[2].update(p.values)
        else:
            self._on_pairs(p, ends)

    def _on_fairseq(self, p: Parsed, ends: bool) -> None:
        self._emit(p.values, p.step, p.step is not None)

    def _on_pairs(self, p: Parsed, ends: bool) -> None:
        if not p.values:
            return
        if self.last == p.values:
            return  # the same line redrawn with '\r'
        self.last = p.values
        self._emit(p.values, p.step, p.step is not None)

    # ---- output -------------------------------------------------------------------------

    def _emit(self, values: dict[str, float], step: int | None, exact: bool) -> None:
        if step is None:
            step, exact = self.records, False
        self.records += 1
        self.points.extend((key, step, value, exact) for key, value in values.items())

    def _resolve_dicts(self, main: list[Any] | None) -> None:
        step = None if main is None else main[0]
        for values in self.dicts:
            self._emit(values, step, step is not None and bool(main and main[1]))
        self.dicts = []

    def _flush_post(self) -> None:
        if self.post is not None:
            step, exact, values = self.post
            self.post = None
            done = self.flushed[1] if self.flushed and self.flushed[0] == step else []
            # A bar redrawn later at the same counter (Lightning, after validation) adds only
            # what is new there: one point per key per update.
            fresh = {k: v for k, v in values.items() if k not in done}
            self.flushed = [step, [*done, *fresh]]
            if fresh:
                self._emit(fresh, step, exact)

    def _flush_keras(self) -> None:
        if self.keras is not None and self.keras_epoch is not None:
            self._emit(self.keras, self.keras_epoch, True)
        self.keras = None
