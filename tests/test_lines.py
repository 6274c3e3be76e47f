"""Cutting bytes read at a file offset into complete lines (and progress-bar redraws)."""

from hypothesis import given
from hypothesis import strategies as st

from sidecar.lines import MAX_LINE, split_lines


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


def test_each_piece_says_whether_a_newline_ends_it() -> None:
    # A bar's last draw before its newline is the one left on screen ('a\r\n' too).
    cut = split_lines(b"a\rb\r\nc\rd\re\n\rf\r", split_cr=True)
    assert cut.lines == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert cut.ends == [False, True, False, False, True, False]
    assert cut.new_line == [False, False, True, False, False, True]
