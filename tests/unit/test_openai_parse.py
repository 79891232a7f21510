import pytest

from stellargate.core.request import ImagePart, TextPart
from stellargate.dialects.openai_parse import parse_chat_request
from stellargate.errors import InvalidRequest, SchemaError


def base(**kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


def test_full_request_parses() -> None:
    r = parse_chat_request(
        base(
            messages=[
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            tool_choice={"type": "function", "function": {"name": "f"}},
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
            stream=True,
            stream_options={"include_usage": True},
            temperature=0.5,
            stop="END",
            max_completion_tokens=10,
            seed=1,
            custom_param=3,
        )
    )
    assert r.stream
    assert r.include_usage
    assert r.stop == ["END"]
    assert r.max_tokens == 10
    assert r.extra == {"custom_param": 3}
    user = r.messages[1]
    assert isinstance(user.content[0], TextPart)
    img = user.content[1]
    assert isinstance(img, ImagePart)
    assert (img.media_type, img.data, img.detail) == ("image/png", "AAAA", "low")
    assert r.messages[2].tool_calls[0].name == "f"
    assert r.messages[3].tool_call_id == "c1"
    assert r.tool_choice is not None
    assert r.tool_choice.name == "f"
    assert r.response_format is not None
    assert r.response_format.schema == {"type": "object"}


@pytest.mark.parametrize(
    ("body", "exc", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, SchemaError, "model"),
        ({"model": "m"}, SchemaError, "messages"),
        (base(messages=[]), InvalidRequest, "messages"),
        (base(messages=[{"role": "wizard", "content": "x"}]), InvalidRequest, "messages[0].role"),
        (base(messages=[{"role": "user"}]), SchemaError, "messages[0].content"),
        (base(messages=[{"role": "tool", "content": "x"}]), SchemaError, "messages[0].tool_call_id"),
        (base(temperature=3), InvalidRequest, "temperature"),
        (base(temperature="hot"), SchemaError, "temperature"),
        (base(n=0), InvalidRequest, "n"),
        (base(stream="yes"), SchemaError, "stream"),
        (base(tool_choice="sometimes"), InvalidRequest, "tool_choice"),
        (base(stop=["a", "b", "c", "d", "e"]), InvalidRequest, "stop"),
    ],
)
def test_invalid_requests_name_the_param(body: dict[str, object], exc: type[Exception], param: str) -> None:
    with pytest.raises(exc) as e:
        parse_chat_request(body)
    assert getattr(e.value, "param", None) == param
    assert type(e.value) is exc


def test_schema_errors_are_422_and_value_errors_400() -> None:
    with pytest.raises(SchemaError) as e:
        parse_chat_request({"model": 5, "messages": []})
    assert e.value.http_status == 422
    with pytest.raises(InvalidRequest) as e2:
        parse_chat_request(base(top_p=2))
    assert e2.value.http_status == 400


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest):
        parse_chat_request([1, 2])
