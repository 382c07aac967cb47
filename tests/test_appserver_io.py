"""The app-server's stdout line reader and a turn's mailbox: the two pieces every message
from codex passes through."""

from __future__ import annotations

import asyncio

from codexpool.codex.appserver import LineReader
from codexpool.codex.mailbox import Mailbox


def _reader(limit: int = 1000) -> tuple[LineReader, list[bytes], list[bool]]:
    lines: list[bytes] = []
    closed: list[bool] = []
    return LineReader(lines.append, lambda: closed.append(True), "t", limit), lines, closed


def test_lines_split_across_reads_come_out_whole_and_in_order() -> None:
    reader, lines, closed = _reader()
    for piece in (b'{"a":1}\n{"b"', b":2", b'}\n\n{"c":3}\n{"d"', b":4}\n"):
        reader.data_received(piece)
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
    reader.data_received(b'{"last":5}')  # no newline before the end of the output
    reader.eof_received()
    reader.connection_lost(None)
    assert lines[-1] == b'{"last":5}' and closed == [True]


def test_an_over_long_line_is_dropped_and_the_next_one_kept() -> None:
    reader, lines, _ = _reader(limit=10)
    reader.data_received(b"x" * 8)
    reader.data_received(b"x" * 8)  # now over the limit: dropped
    reader.data_received(b"x" * 50 + b'\n{"ok":1}\n')
    assert lines == [b'{"ok":1}']


def test_a_long_line_in_many_pieces_comes_out_whole() -> None:
    """A turn's items can make one JSON-RPC line megabytes long, read 64 KiB at a time."""
    reader, lines, _ = _reader(limit=1 << 26)
    for i in range(256):
        reader.data_received(bytes([65 + i % 26]) * 65536)
    reader.data_received(b"\n")
    assert len(lines) == 1 and len(lines[0]) == 256 * 65536 and lines[0][-1:] == b"V"


async def test_mailbox_wakes_its_reader_and_times_out() -> None:
    box = Mailbox()
    assert not await box.wait(0.01)  # nothing came
    asyncio.get_running_loop().call_later(0.01, box.put, {"n": 1})
    assert await box.wait(5)
    box.put({"n": 2})
    assert len(box) == 2 and box.get_nowait() == {"n": 1} and box.get_nowait() == {"n": 2}
    assert not box
