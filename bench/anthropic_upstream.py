#!/usr/bin/env python3
"""A fast fake Anthropic Messages upstream for ../shared/bench, to measure translated streaming.

The harness's own fake upstream speaks OpenAI only; this one answers `POST /v1/messages` in
Anthropic's wire format, with the same costs in mind (raw asyncio Protocol + httptools on uvloop,
every response pre-rendered) and the same controls: `UPSTREAM_PORT` (19090), `UPSTREAM_CHUNKS`
(20 text deltas), `UPSTREAM_CHUNK_DELAY_MS` (the harness uses 1), and `GET /health` and
`GET /stats` so that measure.py can check every request reached it (run measure.py with
`--no-upstream` after starting this, pinned to the client CPU).

A stream is the event sequence Anthropic sends: message_start, content_block_start, ping,
N content_block_delta (text_delta), content_block_stop, message_delta (stop_reason, usage),
message_stop: N + 6 events, each written on its own like the harness's upstream does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import httptools

PORT = int(os.environ.get("UPSTREAM_PORT", "19090"))
CHUNKS = max(1, int(os.environ.get("UPSTREAM_CHUNKS", "20")))
CHUNK_DELAY = float(os.environ.get("UPSTREAM_CHUNK_DELAY_MS", "0")) / 1000
MODEL = "claude-bench"
WORDS = ("Sure. A reverse proxy accepts client connections, authenticates the request, picks an upstream "
         "from its pool, forwards the body unchanged and streams the answer back.").split()
TEXT = " ".join(WORDS)
USAGE_IN, USAGE_OUT = 262, 41


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def http(body: bytes, ctype: bytes = b"application/json", status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def event(name: str, obj: Any) -> bytes:
    data = b"event: " + name.encode() + b"\ndata: " + dumps({"type": name, **obj}) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


MESSAGE = http(dumps({
    "id": "msg_bench0000000000000000", "type": "message", "role": "assistant", "model": MODEL,
    "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 0},
}))
_bounds = [round(i * len(WORDS) / CHUNKS) for i in range(CHUNKS + 1)]
_pieces = [" ".join(WORDS[a:b]) for a, b in zip(_bounds, _bounds[1:], strict=False)]  # CHUNKS text deltas
STREAM = [
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
    + event("message_start", {"message": {
        "id": "msg_bench0000000000000000", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}}),
    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    event("ping", {}),
    *[event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p + " "}}) for p in _pieces],
    event("content_block_stop", {"index": 0}),
    event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": USAGE_OUT}}),
    event("message_stop", {}) + b"0\r\n\r\n",
]
STATS = {"requests": 0, "streams": 0}


class Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: Any = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.t.close()

    def on_message_begin(self) -> None:
        self.url, self.body = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        method = self.parser.get_method()
        if method == b"POST" and path.endswith(b"/messages"):
            if json.loads(b"".join(self.body)).get("stream"):
                asyncio.get_running_loop().create_task(self.stream())
                return
            STATS["requests"] += 1
            self.t.write(MESSAGE)
        elif path == b"/health":
            self.t.write(http(b"ok", b"text/plain"))
        elif path == b"/stats":
            self.t.write(http(dumps(STATS)))
        else:
            self.t.write(http(b'{"type":"error","error":{"type":"not_found_error","message":"not found"}}',
                              status=b"404 Not Found"))

    async def stream(self) -> None:
        for i, part in enumerate(STREAM):
            if i:
                await asyncio.sleep(CHUNK_DELAY)
            if self.t.is_closing():
                return
            self.t.write(part)
        STATS["requests"] += 1
        STATS["streams"] += 1


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", PORT, backlog=2048, reuse_address=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    print(f"fake Anthropic upstream on http://127.0.0.1:{PORT} pid={os.getpid()} events/stream={len(STREAM)}",
          flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
