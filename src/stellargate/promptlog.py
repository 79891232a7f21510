"""Prompt logging (issue #7): for each request of a key whose ``log_prompts`` switch is on, one
structured INFO record on the logger ``stellargate.prompts`` when the call ends, carrying the
request id, the key, dialect, endpoint, model, status, the prompt as the gateway parsed it (in the
canonical shape, whatever the client's API) and the completion text as the client got it.

Cost. A key without the switch pays one attribute check in ``UsageStage``: nothing is gathered
for it and its stream is not wrapped. For a key with it, a non-streamed answer is parsed once
more, and a stream is teed: each chunk goes through an SSE decoder and the dialect's
``stream_texts``, and only the text is kept.

Why the client's bytes. The identity path forwards the provider's body and events untouched, so
there is no canonical response to read; the client's wire is the one form both paths share, and
it is what the client was actually given. Each dialect reads its own wire back
(``Dialect.answer_texts`` / ``stream_texts``).

Secrets in prompts are masked as in every other line: the formatters redact structured fields too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any

from stellargate.core.embeddings import EmbeddingsRequest
from stellargate.core.images import ImagesRequest
from stellargate.core.request import ImagePart, Message, OtherPart, TextPart
from stellargate.core.usage import UsageRecord
from stellargate.dialects.base import Dialect, Texts
from stellargate.dialects.sse import SSEDecoder, SSEEvent
from stellargate.web import Reply, Result

if TYPE_CHECKING:
    from stellargate.pipeline.context import Context

log = logging.getLogger("stellargate.prompts")


class Transcript:
    """The answer text of one request, per choice, gathered from what the client is sent."""

    __slots__ = ("_cut", "_decoder", "_dialect", "_max", "_parts", "_sizes")

    def __init__(self, dialect: Dialect, max_chars: int = 0) -> None:
        self._dialect = dialect
        self._max = max_chars  # per choice; 0: no cap
        self._decoder: SSEDecoder | None = None
        self._parts: dict[int, list[str]] = {}
        self._sizes: dict[int, int] = {}
        self._cut: dict[int, int] = {}  # characters left out per choice

    def watch(self, ctx: Context, result: Result) -> None:
        """Read a reply's text now, or tee a stream so its text is read as it goes out."""
        if ctx.request is None:
            return  # embeddings and images: their answers are vectors and pictures, not text
        if isinstance(result, Reply):
            if 200 <= result.status < 300:
                body = result.body
                self._read(lambda: self._dialect.answer_texts(body))
            return
        self._decoder = SSEDecoder()
        result.chunks = self._tee(result.chunks, self._decoder)

    async def _tee(self, inner: AsyncIterator[bytes], decoder: SSEDecoder) -> AsyncIterator[bytes]:
        # aclosing: a client that leaves closes this generator, which must close the upstream's.
        async with aclosing(inner) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                self._feed(partial(decoder.feed, chunk))
                yield chunk

    def _feed(self, events: Callable[[], list[SSEEvent]]) -> None:
        read = self._dialect.stream_texts
        self._read(lambda: [t for ev in events() for t in read(ev)])

    def _read(self, texts: Callable[[], Texts]) -> None:
        try:
            found = texts()
        except Exception:  # this only watches the request: it must never be what fails it
            log.debug("could not read the answer text", exc_info=True)
            return
        for i, text in found:
            size = self._sizes.get(i, 0)
            if self._max and size + len(text) > self._max:
                # Past the cap only the count is kept: a long stream must not grow in memory.
                keep = max(0, self._max - size)
                self._cut[i] = self._cut.get(i, 0) + len(text) - keep
                text = text[:keep]
            self._sizes[i] = size + len(text)
            self._parts.setdefault(i, []).append(text)

    def texts(self) -> list[str]:
        """The text of each choice, in choice order (an unterminated last event included)."""
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            self._feed(decoder.flush)
        return [_marked("".join(self._parts[i]), self._cut.get(i, 0)) for i in sorted(self._parts)]


def _marked(text: str, cut: int) -> str:
    return f"{text}…[{cut} more characters not logged]" if cut else text


def cap(text: str, max_chars: int) -> str:
    if not max_chars or len(text) <= max_chars:
        return text
    return _marked(text[:max_chars], len(text) - max_chars)


def write(rec: UsageRecord, ctx: Context, max_chars: int = 0) -> None:
    """Log the prompt record of a finished call; ``UsageStage`` calls it with the call's usage
    record when the key has the switch on (so it is written once, at the end of a stream).
    ``max_chars``: characters kept of each text (``prompt_log_max_chars``), 0 for all."""
    t = ctx.transcript
    fields = {
        "request_id": rec.request_id,
        "key_id": rec.key_id,
        "dialect": rec.dialect,
        "endpoint": rec.endpoint,
        "model": rec.model,
        "provider": rec.provider,
        "status": rec.status,
        "error_code": rec.error_code,
        "streamed": rec.streamed,
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "prompt": prompt_of(ctx, max_chars),
        "completion": t.texts() if t is not None else [],
    }
    log.info("prompt and completion", extra={"fields": fields})


def prompt_of(ctx: Context, max_chars: int = 0) -> dict[str, Any] | None:
    """The prompt as received, in one shape for every client API: ``messages`` (the system prompt
    is a message of role ``system``) and ``tools`` for chat-like calls, ``input`` for embeddings,
    ``prompt`` for images; None when the body could not be parsed."""
    req = ctx.request
    if req is not None:
        out: dict[str, Any] = {"messages": [_message(m, max_chars) for m in req.messages]}
        raw_prompt = (req.raw or {}).get("prompt")
        if not req.messages and raw_prompt is not None:
            out["prompt"] = raw_prompt  # a legacy completion's token arrays or list of prompts
        if req.tools:
            out["tools"] = [tool.name for tool in req.tools]
        return out
    p = ctx.payload
    if isinstance(p, EmbeddingsRequest):
        return {"input": [cap(i, max_chars) if isinstance(i, str) else i for i in p.inputs]}
    if isinstance(p, ImagesRequest):
        return {"prompt": cap(p.prompt, max_chars)}
    return None


def _message(m: Message, max_chars: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": cap(m.text(), max_chars)}
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": cap(c.arguments, max_chars)} for c in m.tool_calls
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    attachments = [_attachment(p) for p in m.content if not isinstance(p, TextPart)]
    if attachments:
        out["attachments"] = attachments
    return out


def _attachment(p: ImagePart | OtherPart) -> dict[str, Any]:
    if isinstance(p, ImagePart):
        if p.url is not None and not p.url.startswith("data:"):
            return {"type": "image", "url": p.url}
        # Inline data would flood the log; its type and size say enough.
        return {"type": "image", "media_type": p.media_type, "bytes": len(p.data or p.url or "") * 3 // 4}
    kind = p.raw.get("type")
    return {"type": kind if isinstance(kind, str) else "other"}
