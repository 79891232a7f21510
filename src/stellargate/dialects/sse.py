"""Server-sent events: an incremental decoder for upstream streams and the encoder for clients.

The decoder follows the WHATWG event-stream rules that matter for LLM APIs: events end at a
blank line, ``data`` lines of one event are joined with newlines, ``event``/``id`` fields are
kept, comment lines (``:``) are dropped, and CRLF or CR line ends are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None
    id: str | None = None
    raw: bytes = b""  # the event's bytes as received, terminator included (LF-normalised)


class SSEDecoder:
    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if b"\r" in chunk or self._cr:
            # Normalise line ends; a CR at the end of a chunk may be the first half of a CRLF.
            chunk = (b"\r" if self._cr else b"") + chunk
            self._cr = chunk.endswith(b"\r")
            if self._cr:
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        if b"\n\n" not in buf:
            self._buf = buf
            return []
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        events = []
        for block in blocks:
            ev = _parse_block(block)
            if ev is not None:
                events.append(ev)
        return events

    def flush(self) -> list[SSEEvent]:
        """An unterminated last event at end of stream (some servers omit the final blank line)."""
        block, self._buf = self._buf, b""
        ev = _parse_block(block.rstrip(b"\n"))
        return [ev] if ev is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        # The common case, one data line: no per-line work.
        return SSEEvent(data=block[6:], raw=block + b"\n\n")
    data: list[bytes] = []
    event = id_ = None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id":
            id_ = value.decode("utf-8", "replace")
    if not data and event is None:
        return None
    return SSEEvent(data=b"\n".join(data), event=event, id=id_, raw=block + b"\n\n")


def encode(data: bytes, event: str | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
