"""Prompt logging's parts: each dialect reading its own answers back, the transcript, the switch in
UsageStage, and structured fields in the log formatters."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from stellargate.core.request import ChatRequest, ImagePart, Message, TextPart, Tool
from stellargate.core.response import ChatResponse, Choice
from stellargate.core.stream import Finish, StreamEvent, StreamStart, TextDelta, ToolCallStart, UsageReport
from stellargate.core.usage import Usage, UsageRecord
from stellargate.dialects.anthropic import AnthropicDialect
from stellargate.dialects.base import Dialect
from stellargate.dialects.gemini import GeminiDialect
from stellargate.dialects.openai import OpenAIDialect
from stellargate.dialects.openai_completions import OpenAICompletionsDialect
from stellargate.dialects.sse import SSEDecoder, SSEEvent
from stellargate.dialects.tasks import TasksDialect
from stellargate.errors import UpstreamError
from stellargate.logs import JsonFormatter, TextFormatter
from stellargate.pipeline.context import Context
from stellargate.pipeline.usage import UsageStage
from stellargate.promptlog import Transcript, prompt_of
from stellargate.storage.records import KeyRecord
from stellargate.web import Reply, Request, Result, StreamReply

DIALECTS: list[Dialect] = [
    OpenAIDialect(),
    OpenAICompletionsDialect(),
    AnthropicDialect(),
    GeminiDialect(),
    TasksDialect(),
    TasksDialect("summarization"),
]


def _ids(d: Dialect) -> str:
    return f"{type(d).__name__}-{getattr(d, 'task', '')}"


def chat_request(stream: bool = False) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])], stream=stream)


def _texts(d: Dialect, data: bytes) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for ev in SSEDecoder().feed(data):
        out += d.stream_texts(ev)
    return out


@pytest.mark.parametrize("d", DIALECTS, ids=_ids)
def test_each_dialect_reads_back_the_text_it_renders(d: Dialect) -> None:
    resp = ChatResponse(
        "r1", "m", 0, [Choice(0, content="Hello, world", finish_reason="stop")], usage=Usage(3, 2)
    )
    texts = d.answer_texts(d.render_response(resp, chat_request()))
    if isinstance(d, TasksDialect) and d.task == "summarization":
        assert texts == [(0, '{"summary":"Hello, world"}')]
    else:
        assert texts == [(0, "Hello, world")]

    st = d.new_render_state(chat_request(stream=True))
    events: list[StreamEvent] = [
        StreamStart("r1", "m", 0),
        TextDelta("Hel"),
        TextDelta("lo, "),
        TextDelta("world"),
        Finish("stop"),
        UsageReport(Usage(3, 2)),
    ]
    wire = b"".join(d.render_stream_event(e, st) for e in events) + d.render_stream_end(st)
    got = _texts(d, wire)
    assert "".join(t for _, t in got) == "Hello, world"
    assert {i for i, _ in got} == {0}


@pytest.mark.parametrize("d", DIALECTS, ids=_ids)
def test_readers_never_raise_on_bodies_without_text(d: Dialect) -> None:
    for body in (b"", b"not json", b"[1, 2]", b'{"choices": 3, "content": [1], "candidates": [null]}'):
        assert d.answer_texts(body) == []
        assert d.stream_texts(SSEEvent(data=body)) == []
    err = UpstreamError("boom", code="upstream_error")
    assert _texts(d, d.render_stream_error(err, "req_1")) == []


def test_openai_reads_every_choice_by_index() -> None:
    d = OpenAIDialect()
    resp = ChatResponse(
        "r", "m", 0, [Choice(0, content="a"), Choice(1, content="b"), Choice(2, content=None)]
    )
    assert d.answer_texts(d.render_response(resp, chat_request())) == [(0, "a"), (1, "b")]
    st = d.new_render_state(chat_request(stream=True))
    events = [StreamStart("r", "m", 0), TextDelta("x", 1), TextDelta("y", 0), ToolCallStart(0, "c", "f", 0)]
    wire = b"".join(d.render_stream_event(e, st) for e in events)
    assert _texts(d, wire) == [(1, "x"), (0, "y")]


def test_gemini_leaves_out_thought_parts() -> None:
    body = orjson.dumps(
        {
            "candidates": [
                {"index": 0, "content": {"parts": [{"text": "hmm", "thought": True}, {"text": "ok"}]}}
            ]
        }
    )
    assert GeminiDialect().answer_texts(body) == [(0, "ok")]


def test_prompt_has_one_shape() -> None:
    req = ChatRequest(
        model="m",
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look: "), ImagePart(url="https://x.test/a.png")]),
            Message("user", [ImagePart(data="QUJD" * 100, media_type="image/png")]),
        ],
        tools=[Tool("lookup")],
    )
    ctx = Context(http=_http(), endpoint="chat", dialect=OpenAIDialect(), request=req)
    assert prompt_of(ctx) == {
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": "look: ",
                "attachments": [{"type": "image", "url": "https://x.test/a.png"}],
            },
            {
                "role": "user",
                "content": "",
                "attachments": [{"type": "image", "media_type": "image/png", "bytes": 300}],
            },
        ],
        "tools": ["lookup"],
    }


# -- the switch in UsageStage ----------------------------------------------------------------------


class _Outbox:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def add(self, rec: UsageRecord) -> None:
        self.records.append(rec)


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _http() -> Request:
    return Request({"method": "POST", "path": "/v1/chat/completions", "headers": []}, _receive)


def _key(log_prompts: bool) -> KeyRecord:
    return KeyRecord("key_1", "k", "h", "sg-00000000", 0.0, 0.0, log_prompts=log_prompts)


def _ctx(log_prompts: bool, stream: bool = False) -> Context:
    ctx = Context(http=_http(), endpoint="chat", dialect=OpenAIDialect(), key=_key(log_prompts))
    ctx.request = ChatRequest(model="m", messages=[Message("user", [TextPart("the prompt")])], stream=stream)
    return ctx


def _answer(text: str) -> bytes:
    d = OpenAIDialect()
    return d.render_response(ChatResponse("r", "m", 0, [Choice(0, content=text)]), chat_request())


async def _reply(ctx: Context) -> Result:
    return Reply(200, _answer("the answer"))


def _prompt_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "stellargate.prompts"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("stage_on", "key_on"), [(True, False), (False, True)])
async def test_nothing_is_gathered_or_logged_unless_the_key_and_the_config_allow(
    stage_on: bool, key_on: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outbox = _Outbox()
    ctx = _ctx(key_on)
    await UsageStage(outbox, log_prompts=stage_on)(ctx, _reply)  # type: ignore[arg-type]
    assert ctx.transcript is None
    assert len(outbox.records) == 1
    assert _prompt_records(caplog) == []
    assert not any("the prompt" in r.getMessage() or "the answer" in r.getMessage() for r in caplog.records)


async def test_a_reply_is_logged_with_its_prompt_and_completion(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ctx = _ctx(True)
    await UsageStage(_Outbox())(ctx, _reply)  # type: ignore[arg-type]
    [rec] = _prompt_records(caplog)
    assert rec["request_id"] == ctx.request_id and rec["key_id"] == "key_1"
    assert rec["prompt"] == {"messages": [{"role": "user", "content": "the prompt"}]}
    assert rec["completion"] == ["the answer"]
    assert (rec["dialect"], rec["endpoint"], rec["model"], rec["status"]) == ("openai", "chat", "m", 200)


async def test_a_stream_is_logged_once_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = OpenAIDialect()
    st = d.new_render_state(chat_request(stream=True))
    events = [StreamStart("r", "m", 0), TextDelta("stre"), TextDelta("amed"), Finish("stop")]
    wire = b"".join(d.render_stream_event(e, st) for e in events) + d.render_stream_end(st)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(wire), 7):  # events split across chunks
            yield wire[i : i + 7]

    async def stream(ctx: Context) -> Result:
        return StreamReply(chunks())

    ctx = _ctx(True, stream=True)
    result = await UsageStage(_Outbox())(ctx, stream)  # type: ignore[arg-type]
    assert isinstance(result, StreamReply)
    sent = b"".join([c async for c in result.chunks])
    assert sent == wire  # the tee changes nothing the client gets
    assert _prompt_records(caplog) == []
    for cb in result.on_done:
        cb(True)
    [rec] = _prompt_records(caplog)
    assert rec["completion"] == ["streamed"]


async def test_long_texts_are_cut_at_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = OpenAIDialect()
    st = d.new_render_state(chat_request(stream=True))
    events: list[StreamEvent] = [StreamStart("r", "m", 0)]
    events += [TextDelta("abcdefghij") for _ in range(50)]  # 500 characters in 50 deltas
    events.append(Finish("stop"))
    wire = b"".join(d.render_stream_event(e, st) for e in events) + d.render_stream_end(st)

    async def chunks() -> AsyncIterator[bytes]:
        yield wire

    async def stream(ctx: Context) -> Result:
        return StreamReply(chunks())

    ctx = _ctx(True, stream=True)
    ctx.request = chat_request(stream=True)
    ctx.request.messages = [Message("user", [TextPart("p" * 100)])]
    result = await UsageStage(_Outbox(), prompt_max_chars=25)(ctx, stream)  # type: ignore[arg-type]
    assert isinstance(result, StreamReply)
    assert b"".join([c async for c in result.chunks]) == wire  # the client still gets every byte
    for cb in result.on_done:
        cb(True)
    [rec] = _prompt_records(caplog)
    assert rec["completion"] == ["abcdefghij" * 2 + "abcde…[475 more characters not logged]"]
    assert rec["prompt"]["messages"][0]["content"] == "p" * 25 + "…[75 more characters not logged]"
    assert ctx.transcript is not None and sum(ctx.transcript._sizes.values()) == 25  # not held


def test_transcript_survives_a_reader_that_fails() -> None:
    class Broken(OpenAIDialect):
        def answer_texts(self, body: bytes) -> list[tuple[int, str]]:
            raise RuntimeError("bad reader")

    t = Transcript(Broken())
    t.watch(_ctx(True), Reply(200, _answer("x")))
    assert t.texts() == []


# -- structured fields in the formatters -----------------------------------------------------------


def _record(fields: dict[str, Any]) -> logging.LogRecord:
    rec = logging.LogRecord(
        "stellargate.prompts", logging.INFO, __file__, 1, "prompt and completion", None, None
    )
    rec.fields = fields
    rec.request_id = "req_1"
    return rec


def test_structured_fields_are_masked_and_stay_valid_json() -> None:
    secret = "sk-proj-ABCDEFGHIJKLMNOP"
    fields = {"prompt": {"messages": [{"content": f'use {secret} and "Bearer tok123"'}]}, "message": "x"}
    line = orjson.loads(JsonFormatter().format(_record(fields)))
    assert line["message"] == "prompt and completion"  # a field never replaces a standard key
    content = line["prompt"]["messages"][0]["content"]
    assert secret not in content and "tok123" not in content and "sk-pro***" in content
    text = TextFormatter().format(_record(fields))
    assert secret not in text and text.endswith("[req_1]")
