"""Reading a file from an offset, bounded; the few file calls every source makes."""

from __future__ import annotations

import os
from pathlib import Path

READ_CAP = 4 << 20  # bytes read per file per poll; a backlog is drained poll after poll without sleeping


def stat_of(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def size_of(path: Path) -> int:
    st = stat_of(path)
    return st.st_size if st else 0


def read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)
