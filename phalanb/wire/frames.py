"""The framed batch format (``.pbatch``): a JSONL batch's records with the exact bytes stored raw, not in base64.

A JSONL batch spends most of its reading on two things that carry no information: base64-decoding the exact bytes
and scanning them inside the JSON text. A framed batch holds the very same records, laid out so a reader slices the
bytes out instead::

    line 1     the JSONL batch's header, plus "framing": "phalanb.frames/1"  (JSON, ending in "\\n")
    frame      b"PBF1" | u32 payload length | u32 record count | payload     (little-endian)
    payload    records, one after another:
    record     u32 meta length | u32 request length | u32 response length | meta | request | response

``meta`` is the JSONL line's object without ``request_b64`` and ``response_b64`` — ``{"exchange": {...},
"signature": {...}}`` — and ``request``/``response`` are the exact bytes those two fields would hold; a record
whose ``exchange`` is null holds no bytes. A record therefore means exactly what its JSONL line means, and is read
by the same rules (:func:`phalanb.audit.batch.load_items`, :func:`phalanb.audit.fastpath.read_record`).

Frames exist so that workers can share a file without reading it twice: the parent walks only the 12-byte frame
heads to cut the file into spans of whole frames, and each worker reads its spans itself. Every length is checked
against what holds it (the file, the frame) before anything is read, so a truncated or lying file is a
:class:`~phalanb.errors.ParseError` naming the field and the file offset, never a read past its end.

This module only lays records out and takes them apart; what a record says is decided elsewhere.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO, Iterable, Iterator

from ..errors import InputError, ParseError

#: The header's ``framing`` value for this layout (a JSONL batch has none).
FRAMING = "phalanb.frames/1"
#: The file name suffix :func:`phalanb.audit.batch.write_batch` and folder scans use for framed batches.
SUFFIX = ".pbatch"
MAGIC = b"PBF1"
FRAME_HEAD = struct.Struct("<4sII")
RECORD_HEAD = struct.Struct("<III")
#: A frame's payload may not exceed this: a worker holds one span (at least one frame) in memory at a time.
MAX_FRAME_BYTES = 64 << 20
#: Records the writer puts in a frame before starting the next: a quarter of a worker's usual share
#: (phalanb.audit.fastpath.SPAN_BYTES), so that spans, made of whole frames, can be cut finer where it helps.
FRAME_TARGET_BYTES = 256 << 10


class FrameError(Exception):
    """Where a framed span stops making sense: the record's place in the span (0 = the first), the file offset,
    what is wrong and the field. The caller, who knows how many records came before, words it for the user."""

    def __init__(self, record: int, offset: int, detail: str, field: str):
        super().__init__(record, offset, detail, field)
        self.record, self.offset, self.detail, self.field = record, offset, detail, field


# -- writing -----------------------------------------------------------------------------------------------------

def encode_record(meta: dict[str, Any], request: bytes, response: bytes) -> bytes:
    """One record: ``meta`` (the record without its bytes) as JSON, then the exact bytes."""
    if meta.get("exchange") is None and (request or response):
        raise InputError("a record without an exchange holds no bytes")
    text = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    return RECORD_HEAD.pack(len(text), len(request), len(response)) + text + request + response


def write_frames(fh: BinaryIO, records: Iterable[bytes]) -> int:
    """Write encoded records as frames of about :data:`FRAME_TARGET_BYTES`; returns how many records."""
    pending: list[bytes] = []
    size = total = 0

    def flush() -> None:
        nonlocal size
        if pending:
            fh.write(FRAME_HEAD.pack(MAGIC, size, len(pending)))
            fh.writelines(pending)
            pending.clear()
            size = 0

    for record in records:
        if len(record) > MAX_FRAME_BYTES:
            raise InputError(f"a reply of {len(record)} bytes does not fit in a frame of a framed batch "
                             f"({MAX_FRAME_BYTES} bytes at most): write this batch as JSON lines (.jsonl)")
        if size and size + len(record) > FRAME_TARGET_BYTES:
            flush()
        pending.append(record)
        size += len(record)
        total += 1
    flush()
    return total


# -- reading -----------------------------------------------------------------------------------------------------

_FILE_END = "the end of the file (byte {end}): the file is truncated"
#: A worker reads one span: a frame that runs past it was whole when the parent cut the file, so the file changed.
_SPAN_END = "the end of the span the file was cut into (byte {end}): the file changed while it was being read"


def _frame_head(head: bytes, at: int, total: int, limit: str = _FILE_END) -> tuple[int, int]:
    """(payload length, record count) of the frame whose 12 head bytes start at file offset ``at``, checked
    against ``total``, the end of what was read (``limit`` says what that end is)."""
    if len(head) < FRAME_HEAD.size:
        raise ParseError(f"the frame at byte {at} is cut short: {len(head)} of its {FRAME_HEAD.size} head bytes "
                         f"come before {limit.format(end=total)}", field="frame", offset=at)
    magic, size, count = FRAME_HEAD.unpack(head)
    if magic != MAGIC:
        raise ParseError(f"the bytes at {at} are not a frame: they start {magic!r}, a frame starts {MAGIC!r}",
                         field="frame.magic", offset=at)
    if size > MAX_FRAME_BYTES:
        raise ParseError(f"the frame at byte {at} declares {size} payload bytes; a frame holds at most "
                         f"{MAX_FRAME_BYTES}", field="frame.length", offset=at + 4)
    end = at + FRAME_HEAD.size + size
    if end > total:
        raise ParseError(f"the frame at byte {at} declares {size} payload bytes, which run past "
                         f"{limit.format(end=total)}", field="frame.length", offset=at + 4)
    if count * RECORD_HEAD.size > size:
        raise ParseError(f"the frame at byte {at} declares {count} records in {size} bytes, less than their "
                         f"{RECORD_HEAD.size}-byte heads need", field="frame.records", offset=at + 8)
    return size, count


def tail_size(size: int, left: int) -> int:
    """The size of the next span when ``left`` bytes remain: finer toward the end of the file, so that the workers
    run out of work at about the same time (one of them is not left with a large span while the others wait)."""
    return min(size, max(left // 8, 64 << 10))


def spans(path: str | os.PathLike[str], start: int, *, sizes: Iterator[int]) -> Iterator[tuple[int, int, int]]:
    """Cut a framed batch from byte ``start`` (just after the header line) into (start, end, records) spans of
    whole frames, each about the next of ``sizes`` bytes, reading only the frame heads."""
    total = os.path.getsize(path)
    size = next(sizes)
    with open(path, "rb") as fh:
        span_start, records, at = start, 0, start
        while at < total:
            fh.seek(at)
            try:
                length, count = _frame_head(fh.read(FRAME_HEAD.size), at, total)
            except ParseError as exc:
                raise ParseError(f"{path}: {exc.reason}", field=exc.field, offset=exc.offset) from None
            at += FRAME_HEAD.size + length
            records += count
            if at - span_start >= size:
                yield span_start, at, records
                span_start, records, size = at, 0, tail_size(next(sizes), total - at)
        if at > span_start:
            yield span_start, at, records


def count(data: bytes, base: int) -> int:
    """How many records the whole frames in ``data`` (read from file offset ``base``) declare, from their heads."""
    pos = total = 0
    while pos < len(data):
        try:
            size, records_ = _frame_head(data[pos:pos + FRAME_HEAD.size], base + pos, base + len(data), _SPAN_END)
        except ParseError as exc:
            raise FrameError(total, exc.offset, exc.reason, exc.field) from None
        pos += FRAME_HEAD.size + size
        total += records_
    return total


def records(data: bytes, base: int) -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
    """The records of ``data``, whole frames read from file offset ``base``: (place in the span, the record's
    file offset, meta, request, response). Raises :class:`FrameError` where the layout does not hold."""
    total = len(data)
    unpack = RECORD_HEAD.unpack_from
    head = RECORD_HEAD.size
    pos = number = 0
    while pos < total:
        try:
            size, count = _frame_head(data[pos:pos + FRAME_HEAD.size], base + pos, base + total, _SPAN_END)
        except ParseError as exc:
            raise FrameError(number, exc.offset, exc.reason, exc.field) from None
        frame_at, end = pos, pos + FRAME_HEAD.size + size
        pos += FRAME_HEAD.size
        for i in range(count):
            at = pos
            if end - pos < head:
                raise FrameError(number, base + at, f"record {i + 1} of the frame at byte {base + frame_at} is cut "
                                 f"short: its {head}-byte head runs past the frame's end (byte {base + end})",
                                 "record.head")
            meta_len, request_len, response_len = unpack(data, pos)
            pos += head
            if meta_len + request_len + response_len > end - pos:
                raise FrameError(number, base + at, f"record {i + 1} of the frame at byte {base + frame_at} "
                                 f"declares {meta_len} + {request_len} + {response_len} bytes (meta, request, "
                                 f"response), which run past the frame's end (byte {base + end})", "record.length")
            meta = data[pos:pos + meta_len]
            pos += meta_len
            request = data[pos:pos + request_len]
            pos += request_len
            response = data[pos:pos + response_len]
            pos += response_len
            yield number, base + at, meta, request, response
            number += 1
        if pos != end:
            raise FrameError(number, base + pos, f"the frame at byte {base + frame_at} declares {count} records, but "
                             f"{end - pos} bytes are left after them", "frame.records")
