"""The task API as a dialect: ``/llm/generation``, ``/llm/classification``, ``/llm/summarization``
and ``/llm/generation/stream``, each a chat request underneath.

One dialect object per task (``TasksDialect(task)``), because a task changes both the request
(the instructions, and for classification a JSON-schema ``enum`` that constrains the answer to the
given classes) and how the answer is rendered. Answers are ``{"status", "content", "usage"}``;
errors are ``{"status": "error", "error", "content": null, "usage": null}``; the stream is SSE
chunks ``{"id", "text", "is_final", "usage"}``, the final one carrying the whole text and usage.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson

from stellargate.core.request import ChatRequest, Message, ResponseFormat, TextPart
from stellargate.core.response import ChatResponse
from stellargate.core.stream import StreamEvent, StreamFailed, StreamStart, TextDelta, UsageReport
from stellargate.core.usage import Usage
from stellargate.dialects.base import Texts, error_headers, json_object
from stellargate.dialects.openai import bearer
from stellargate.dialects.sse import SSEEvent, encode
from stellargate.dialects.validate import is_integer, is_number
from stellargate.errors import GatewayError, InvalidRequest, SchemaError, UpstreamError

if TYPE_CHECKING:
    from stellargate.web import Request

Task = Literal["generation", "classification", "summarization"]
MAX_CLASSES = 256
DEFAULT_TEMPERATURE = 0.2
DEFAULT_MAX_TOKENS = 4096
MAX_TOKENS = 32768

CLASSIFY = (
    "Classify the text the user gives into exactly one of the classes below. Answer with a JSON "
    'object {"class": "<id>"} whose value is the id of the chosen class.\n\nClasses (id: label):\n'
)
SUMMARIZE = "Summarize the text the user gives, concisely. Answer with the summary only."


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _text(body: dict[str, Any], key: str, *, required: bool) -> str:
    v = body.get(key)
    if v is None:
        if required:
            raise _invalid(f"'{key}' is required.", key)
        return ""
    if not isinstance(v, str):
        raise _invalid(f"'{key}' must be a string.", key)
    if required and not v.strip():
        raise _invalid(f"'{key}' must not be empty.", key)
    return v


def _temperature(body: dict[str, Any]) -> float:
    v = body.get("temperature")
    if v is None:
        return DEFAULT_TEMPERATURE
    if not is_number(v) or not 0 <= v <= 1:
        raise _invalid(f"'temperature' must be a number from 0.0 to 1.0, got {v!r}.", "temperature")
    return float(v)


def _max_tokens(body: dict[str, Any]) -> int:
    v = body.get("max_tokens")
    if v is None:
        return DEFAULT_MAX_TOKENS
    if not is_integer(v) or not 1 <= v <= MAX_TOKENS:
        raise _invalid(
            f"'max_tokens' must be a whole number from 1 to {MAX_TOKENS}, got {v!r}.", "max_tokens"
        )
    return v


def _classes(body: dict[str, Any]) -> list[dict[str, str]]:
    v = body.get("classes")
    if not isinstance(v, list) or not v:
        raise _invalid('\'classes\' is required: a non-empty list of {"id", "label"} objects.', "classes")
    if len(v) > MAX_CLASSES:
        raise _invalid(f"'classes' may hold at most {MAX_CLASSES} classes.", "classes")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, c in enumerate(v):
        cid = c.get("id") if isinstance(c, dict) else None
        label = c.get("label") if isinstance(c, dict) else None
        if not isinstance(cid, str) or not cid.strip() or not isinstance(label, str):
            raise _invalid(
                f"'classes[{i}]' must be an object with a non-empty string 'id' and a string 'label'.",
                f"classes[{i}]",
            )
        if cid in seen:
            raise _invalid(
                f"'classes[{i}].id' repeats the id {cid!r}; ids must be unique.", f"classes[{i}].id"
            )
        seen.add(cid)
        out.append({"id": cid, "label": label})
    return out


def _system(instruction: str, prompt: str) -> str:
    return f"{instruction}\n\n{prompt}" if prompt.strip() else instruction


def parse_task_request(body: Any, task: Task, stream: bool = False) -> ChatRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("'model' is required, as 'provider/model_name' (e.g. 'openai/gpt-4o').", "model")
    prompt = _text(body, "prompt", required=False)
    user_prompt = _text(body, "user_prompt", required=True)
    raw: dict[str, Any] = dict(body)
    rf = None
    if task == "classification":
        classes = _classes(body)
        raw["classes"] = classes  # normalised, for render_response
        listing = "\n".join(f"- {c['id']}: {c['label']}" for c in classes)
        system = _system(CLASSIFY + listing, prompt)
        # Structured output: the model can only answer one of the ids.
        schema = {
            "type": "object",
            "properties": {"class": {"type": "string", "enum": [c["id"] for c in classes]}},
            "required": ["class"],
            "additionalProperties": False,
        }
        rf = ResponseFormat(type="json_schema", schema=schema, name="classification", strict=True)
    elif task == "summarization":
        system = _system(SUMMARIZE, prompt)
    else:
        system = prompt
    messages = [Message(role="system", content=[TextPart(system)])] if system.strip() else []
    messages.append(Message(role="user", content=[TextPart(user_prompt)]))
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=stream,
        response_format=rf,
        temperature=_temperature(body),
        max_tokens=_max_tokens(body),
        dialect="tasks",
        raw=raw,
    )


def usage_json(u: Usage | None) -> dict[str, int] | None:
    if u is None:
        return None
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}  # fmt: skip


def classify(answer: str | None, classes: list[dict[str, str]]) -> dict[str, str]:
    """The class the model chose, or an error: an answer outside the classes is never passed on."""
    choice: Any = None
    try:
        obj = orjson.loads(answer or "")
        choice = obj.get("class") if isinstance(obj, dict) else obj
    except orjson.JSONDecodeError:
        pass
    if isinstance(choice, str):
        for c in classes:
            if choice in (c["id"], c["label"]):
                return c
    shown = (answer or "")[:200]
    raise UpstreamError(
        f"The model's answer is not one of the given classes (got {shown!r}).",
        code="invalid_classification",
    )


@dataclass(slots=True)
class StreamState:
    id: str = ""
    n: int = 0
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None

    def next_id(self) -> str:
        if not self.id:
            self.id = uuid.uuid4().hex
        self.n += 1
        return f"{self.id}-{self.n}"


class TasksDialect:
    name: ClassVar[str] = "tasks"

    def __init__(self, task: Task = "generation", stream: bool = False) -> None:
        self.task: Task = task
        self.stream = stream

    def api_key(self, req: Request) -> str | None:
        # The task API's header; a gateway client's usual Bearer header works as well.
        return req.headers.get("x-api-key") or bearer(req.headers)

    def parse_request(self, body: Any, req: Request) -> ChatRequest:
        return parse_task_request(body, self.task, self.stream)

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        text = resp.choices[0].content if resp.choices else None
        content: Any
        if self.task == "classification":
            content = classify(text, (req.raw or {}).get("classes") or [])
        elif self.task == "summarization":
            content = {"summary": (text or "").strip()}
        else:
            content = text or ""
        return orjson.dumps({"status": "success", "content": content, "usage": usage_json(resp.usage)})

    def new_render_state(self, req: ChatRequest) -> StreamState:
        return StreamState()

    def _chunk(self, st: StreamState, text: str, final: bool, usage: Usage | None = None) -> bytes:
        return encode(
            orjson.dumps({"id": st.next_id(), "text": text, "is_final": final, "usage": usage_json(usage)})
        )

    def render_stream_event(self, ev: StreamEvent, st: StreamState) -> bytes:
        if isinstance(ev, TextDelta):
            if ev.index != 0:
                return b""
            st.parts.append(ev.text)
            return self._chunk(st, ev.text, False)
        if isinstance(ev, StreamStart):
            st.id = st.id or ev.id
        elif isinstance(ev, UsageReport):
            st.usage = ev.usage  # it goes out on the final chunk
        elif isinstance(ev, StreamFailed):
            return self.render_stream_error(ev.error, st.id)
        return b""

    def render_stream_end(self, st: StreamState) -> bytes:
        return self._chunk(st, "".join(st.parts), True, st.usage)

    def render_error(self, err: GatewayError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        headers = error_headers(err)
        # The task API documents 400 for every invalid parameter, shape errors included.
        status = 400 if isinstance(err, SchemaError) else err.http_status
        return status, headers, orjson.dumps(self._error(err))

    @staticmethod
    def _error(err: GatewayError) -> dict[str, Any]:
        return {"status": "error", "error": err.message, "content": None, "usage": None}

    def render_stream_error(self, err: GatewayError, request_id: str) -> bytes:
        # Also a final chunk, so that a client reading until is_final stops.
        chunk = {"id": request_id or uuid.uuid4().hex, "text": "", "is_final": True, **self._error(err)}
        return encode(orjson.dumps(chunk))

    def answer_texts(self, body: bytes) -> Texts:
        obj = json_object(body)
        content = obj.get("content") if obj is not None else None
        if isinstance(content, dict):  # classification's class, summarization's summary
            return [(0, orjson.dumps(content).decode())]
        return [(0, content)] if isinstance(content, str) and content else []

    def stream_texts(self, ev: SSEEvent) -> Texts:
        obj = json_object(ev.data)
        # The final chunk repeats the whole text: the increments before it are the answer.
        if obj is None or obj.get("is_final") is not False or not isinstance(obj.get("text"), str):
            return []
        return [(0, obj["text"])] if obj["text"] else []
