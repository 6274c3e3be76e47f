"""TensorBoard event files (``events.out.tfevents.*``): their scalars at their exact steps.

An event file is TFRecord framing around ``Event`` protocol buffers. This reader decodes
the few fields a scalar needs straight from the wire format, with no protobuf or
TensorBoard import: the maintained readers cost a sidecar too much to load (tensorboard's
EventFileLoader: ~190 ms and ~33 MB RSS, and a 150 MB dependency tree; tbparse adds
pandas) — measured in the report of issue 11 and in ``bench/ingest.py``. Tests check this
reader against tensorboard's own on recorded files.

Framing: ``u64 length | u32 masked crc32c(length) | data | u32 masked crc32c(data)``. A
record whose bytes are not all there yet waits (the writer is mid-record), like a partial
line. The length's checksum is verified (a wrong one means the offset is not at a record:
the file is counted as corrupt and no longer read); the data checksum is not (pure-Python
CRC over every byte would dominate the cost, and the length check already pins framing).

Scalars: ``Summary.Value.simple_value`` (torch's SummaryWriter, tensorboardX) and
single-number ``tensor`` values of the scalars plugin (TensorFlow 2 / Keras); text,
images, histograms and hparams are skipped.
"""

from __future__ import annotations

import struct
from pathlib import Path

HEADER = 12
FOOTER = 4
MAX_RECORD = 64 << 20  # a length beyond this is not a record boundary


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class Framing:
    """Complete records cut from bytes read at a record boundary."""

    __slots__ = ("consumed", "corrupt", "records")

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.consumed = 0
        self.corrupt = False


def split_records(data: bytes) -> Framing:
    out = Framing()
    pos, size = 0, len(data)
    unpack = struct.unpack_from
    while size - pos >= HEADER:
        length, crc = unpack("<QI", data, pos)
        if length > MAX_RECORD or masked_crc32c(data[pos : pos + 8]) != crc:
            out.corrupt = True
            break
        end = pos + HEADER + length + FOOTER
        if end > size:
            break
        out.records.append(data[pos + HEADER : pos + HEADER + length])
        pos = end
    out.consumed = pos
    return out


# ---- protocol buffer wire format ------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of one message: ints for varints, bytes otherwise."""
    out: list[tuple[int, int, object]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: object
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


# TensorProto dtypes that hold one number, with how tensor_content packs them.
_DTYPES = {1: "<f", 2: "<d", 3: "<i", 9: "<q", 4: "<B", 5: "<h", 6: "<b", 10: "<?"}


def _tensor_scalar(buf: bytes) -> float | None:
    dtype, content, packed = 0, b"", {}
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value  # type: ignore[assignment]
        elif number == 2:
            if any(n == 2 for n, _, _ in _fields(value)):  # type: ignore[arg-type]
                for n, _, dim in _fields(value):  # type: ignore[arg-type]
                    if n == 2 and any(f == 1 and v != 1 for f, _, v in _fields(dim)):  # type: ignore[arg-type]
                        return None  # not a single number
        elif number == 4:
            content = value  # type: ignore[assignment]
        elif number in (5, 6, 7, 10):
            packed[number] = (wire, value)
    fmt = _DTYPES.get(dtype)
    if fmt is None:
        return None
    if content:
        return float(struct.unpack_from(fmt, content)[0]) if len(content) == struct.calcsize(fmt) else None
    for number, kind in ((5, "<f"), (6, "<d")):
        if number in packed:
            wire, value = packed[number]
            raw = value if isinstance(value, bytes) else b""
            return float(struct.unpack_from(kind, raw)[0]) if len(raw) == struct.calcsize(kind) else None
    for number in (7, 10):
        if number in packed:
            wire, value = packed[number]
            if wire == 0:
                return float(value)  # type: ignore[arg-type]
            return float(_varint(value, 0)[0]) if value else None  # type: ignore[arg-type]
    return None


def _plugin(buf: bytes) -> str:
    for number, _, value in _fields(buf):
        if number == 1:  # SummaryMetadata.plugin_data
            for n, _, v in _fields(value):  # type: ignore[arg-type]
                if n == 1:  # PluginData.plugin_name
                    return bytes(v).decode("utf-8", "replace")  # type: ignore[call-overload]
    return ""


def event_scalars(record: bytes) -> tuple[int, list[tuple[str, float]]]:
    """The step of one Event and its scalar (tag, value) pairs; ValueError if it is garbled."""
    step = 0
    found: list[tuple[str, float]] = []
    for number, wire, value in _fields(record):
        if number == 2 and wire == 0:
            step = value  # type: ignore[assignment]
        elif number == 5 and wire == 2:  # Event.summary
            for n, _, item in _fields(value):  # type: ignore[arg-type]
                if n != 1:
                    continue
                tag, scalar, tensor, plugin = "", None, None, ""
                for f, w, v in _fields(item):  # type: ignore[arg-type]
                    if f == 1:
                        tag = bytes(v).decode("utf-8", "replace")  # type: ignore[call-overload]
                    elif f == 2 and w == 5:
                        scalar = struct.unpack("<f", v)[0]  # type: ignore[arg-type]
                    elif f == 8:
                        tensor = v
                    elif f == 9:
                        plugin = _plugin(v)  # type: ignore[arg-type]
                if scalar is None and tensor is not None and plugin in ("scalars", ""):
                    scalar = _tensor_scalar(tensor)  # type: ignore[arg-type]
                if scalar is not None and tag:
                    found.append((tag, float(scalar)))
    if step >= 1 << 63:
        step -= 1 << 64  # int64 on the wire
    return step, found


# ---- which key a tag becomes ------------------------------------------------------------------

_SPLIT_DIRS = frozenset({"train", "validation", "val", "eval", "test"})


def key_for(path: Path, tag: str) -> str:
    """A tag's metric key: its own name, unless the file's directory names the series.

    Keras (and TensorFlow) write one directory per split with the same tags
    (``logs/train``, ``logs/validation``: ``epoch_loss`` in both) → ``validation/epoch_loss``.
    torch's ``add_scalars("loss", {"val": v})`` writes tag ``loss`` under ``<dir>/loss_val`` →
    ``loss/val``.
    """
    directory = path.parent.name
    if directory in _SPLIT_DIRS:
        return f"{directory}/{tag}"
    stem = tag.replace("/", "_") + "_"
    if directory.startswith(stem) and len(directory) > len(stem):
        return f"{tag}/{directory[len(stem) :]}"
    return tag


def writer_pid(path: Path) -> int | None:
    """The writer's pid from ``events.out.tfevents.<time>.<host>.<pid>.<n>[.v2]``."""
    parts = path.name.removesuffix(".v2").split(".")
    if len(parts) >= 7 and parts[-2].isdigit():
        return int(parts[-2])
    return None
