import builtins
import json
import subprocess
from pathlib import Path

import pytest

from mcp_server.core.execution import logs
from mcp_server.core.execution.logs import compile_filter, read_window, tail_lines
from tests.helpers import PYTHON


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "output.log"
    path.write_text("".join(f"step {i} loss={1 / (i + 1):.4f}\n" for i in range(5000)))
    return path


def test_tail_returns_the_last_lines_and_their_offsets(log: Path) -> None:
    t = tail_lines(log, 3, 1 << 20)
    assert t.text == "step 4997 loss=0.0002\nstep 4998 loss=0.0002\nstep 4999 loss=0.0002\n"
    assert t.lines == 3 and t.truncated and t.end == t.size == log.stat().st_size
    assert log.read_bytes()[t.start :].decode() == t.text


def test_tail_without_trailing_newline_and_short_files(tmp_path: Path) -> None:
    p = tmp_path / "x.log"
    p.write_text("a\nb\nc")
    t = tail_lines(p, 2, 100)
    assert t.text == "b\nc" and t.lines == 2
    t = tail_lines(p, 10, 100)
    assert t.text == "a\nb\nc" and not t.truncated
    assert tail_lines(tmp_path / "missing.log", 5, 100).text == ""


def test_byte_cap_keeps_whole_lines(log: Path) -> None:
    t = tail_lines(log, 1000, 50)
    assert len(t.text.encode()) <= 50 and t.text.startswith("step ") and t.text.endswith("\n")
    assert t.truncated and t.lines == t.text.count("\n")


def test_filter_finds_matching_lines_from_the_end(log: Path) -> None:
    t = tail_lines(log, 2, 1 << 20, compile_filter(r"step 4?12\d "))
    assert t.text == "step 4128 loss=0.0002\nstep 4129 loss=0.0002\n"
    assert tail_lines(log, 5, 1 << 20, compile_filter("no such text")).text == ""


def test_window_reads_bytes_from_an_offset(log: Path) -> None:
    w = read_window(log, 0, 10)
    assert w.text == "step 0 los" and w.start == 0 and w.end == 10 and w.truncated
    w = read_window(log, -22, 100)
    assert w.text == "step 4999 loss=0.0002\n" and w.end == w.size


def test_tail_of_a_huge_file_reads_only_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        fh.truncate(2 * 1024**3)  # 2 GiB sparse file
        fh.seek(0, 2)
        fh.write(b"".join(b"line %d\n" % i for i in range(200)))
    read_bytes = 0
    real_open = builtins.open

    class Counting:
        def __init__(self, fh):  # type: ignore[no-untyped-def]
            self.fh = fh

        def read(self, n: int = -1) -> bytes:
            nonlocal read_bytes
            data = self.fh.read(n)
            read_bytes += len(data)
            return data

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.fh, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

    monkeypatch.setattr(logs, "open", lambda p, mode="r": Counting(real_open(p, mode)), raising=False)
    t = tail_lines(big, 100, 1 << 20)
    assert t.text.endswith("line 199\n") and t.lines == 100
    assert read_bytes <= 2 * logs.BLOCK


def test_filter_over_a_log_without_newlines_is_linear_and_bounded(tmp_path: Path) -> None:
    """A log with no line separators at all must not be re-split block after block."""
    blob = tmp_path / "blob.log"
    blob.write_bytes(b"needle" + b"x" * (24 * 1024 * 1024) + b"haystack-end")
    small = tmp_path / "small.log"
    small.write_bytes(b"needle" + b"x" * 100_000)
    # Measured in a fresh interpreter: tracemalloc counts every thread, and a test worker's
    # process may still run threads that earlier tests started.
    probe = f"""
import json, time, tracemalloc
from mcp_server.core.execution.logs import compile_filter, tail_lines
tail_lines({str(small)!r}, 5, 4096, compile_filter("no such text"))  # lazy imports, compiled filters
tracemalloc.start()
began = time.monotonic()
t = tail_lines({str(blob)!r}, 5, 4096, compile_filter("no such text"))
print(json.dumps([t.text, t.lines, tracemalloc.get_traced_memory()[1], time.monotonic() - began]))
"""
    out = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    text, lines, peak, took = json.loads(out.stdout)
    assert text == "" and lines == 0
    assert peak < 4 * logs.MAX_LINE  # the unbounded carry held the whole 24 MiB
    assert took < 10
    # The over-long line is searched piece by piece, so its start is still found.
    t = tail_lines(blob, 1, 4096, compile_filter("^needle"))
    assert t.lines == 1 and t.start == 0 and t.text.startswith("needle")
    assert len(t.text.encode()) <= 4096


def test_filter_sees_each_progress_bar_redraw_as_a_line(tmp_path: Path) -> None:
    """tqdm redraws with '\\r' only; a filter returns the latest redraws, one per line."""
    bar = tmp_path / "tqdm.log"
    bar.write_text(
        "start\n" + "".join(f"\r{i}%|{'█' * (i // 10)}| loss={3 - i / 50:.2f}" for i in range(101))
    )
    t = tail_lines(bar, 2, 1 << 20, compile_filter(r"loss=1\.0"))
    assert t.text == "99%|█████████| loss=1.02\n100%|██████████| loss=1.00\n"
    assert t.lines == 2 and t.truncated
    assert bar.read_bytes()[t.start :].startswith(b"99%|")


def test_filter_searches_only_the_start_of_a_huge_line(tmp_path: Path) -> None:
    p = tmp_path / "wide.log"
    p.write_text("loss=1 early\n" + "x" * (2 * logs.MATCH_PREFIX) + " loss=2 late\nend\n")
    t = tail_lines(p, 5, 1 << 20, compile_filter("loss="))
    assert t.text == "loss=1 early\n" and t.lines == 1


def test_tail_of_one_line_longer_than_the_byte_cap_returns_its_end(tmp_path: Path) -> None:
    """A 138 KB tqdm line used to come back as text='' lines=0."""
    bar = tmp_path / "tqdm.log"
    redraws = "".join(f"\rtrain {i}/2000 |{'█' * (i % 40)}|" for i in range(2000))
    bar.write_text("epoch 0\n" + redraws)
    size = bar.stat().st_size
    t = tail_lines(bar, 50, 64 * 1024)
    assert t.text and t.lines == 1 and t.truncated and t.end == size
    assert t.text.endswith("train 1999/2000 |" + "█" * 39 + "|")
    assert "\ufffd" not in t.text  # the cut does not split a multi-byte character
    assert bar.read_bytes()[t.start :].decode() == t.text
    assert size - t.start <= 64 * 1024
