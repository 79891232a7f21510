"""Field-level checks shared by every endpoint, each raising the OpenAIHTTPError OpenAI would send."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from tests.fakes import _errors
from tests.fakes._catalog import ModelKind, model_kind


def reject_unknown(body: Mapping[str, Any], allowed: Collection[str]) -> None:
    for name in body:
        if name not in allowed:
            raise _errors.unrecognized_argument(name)


def require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise _errors.missing_model()
    if not isinstance(model, str):
        raise _errors.invalid_type("model", "a string", model)
    return model


def check_model(model: str, models: Collection[str], kind: ModelKind) -> None:
    """Unknown model → 404 model_not_found; a model of another kind → OpenAI's wrong-endpoint error."""
    if model not in models:
        raise _errors.model_not_found(model)
    actual = model_kind(model)
    if actual == kind:
        return
    if kind == "chat":
        raise _errors.OpenAIHTTPError(
            404,
            "This is not a chat model and thus not supported in the v1/chat/completions endpoint. "
            "Did you mean to use v1/completions?",
            param="model",
        )
    if kind == "completion":
        raise _errors.OpenAIHTTPError(
            404,
            "This is a chat model and not supported in the v1/completions endpoint. "
            "Did you mean to use v1/chat/completions?",
            param="model",
        )
    if kind == "embedding":
        raise _errors.invalid_request("You are not allowed to generate embeddings from this model")
    raise _errors.invalid_value("model", model, [m for m in models if model_kind(m) == "image"])


def optional_number(
    body: Mapping[str, Any],
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    kind = "integer" if integer else "decimal"
    allowed = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise _errors.invalid_type(name, f"an {kind}" if integer else f"a {kind}", value)
    if minimum is not None and value < minimum:
        raise _errors.out_of_range(name, kind, value, bound=minimum, below=True)
    if maximum is not None and value > maximum:
        raise _errors.out_of_range(name, kind, value, bound=maximum, below=False)
    return value


def optional_int(
    body: Mapping[str, Any], name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    value = optional_number(body, name, minimum=minimum, maximum=maximum, integer=True)
    return None if value is None else int(value)


def optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _errors.invalid_type(name, "a boolean", value)
    return value


def optional_object(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _errors.invalid_type(name, "an object", value)
    return value


def optional_choice(body: Mapping[str, Any], name: str, supported: list[str]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _errors.invalid_type(name, "a string", value)
    if value not in supported:
        raise _errors.invalid_value(name, value, supported)
    return value


def stop_sequences(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _errors.invalid_type("stop", "a string or an array of strings", stop)
    if len(stop) > 4:
        raise _errors.array_too_long("stop", 4, len(stop))
    return tuple(stop)


def stream_options(body: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    options = optional_object(body, "stream_options")
    if options is None:
        return {}
    if not stream:
        raise _errors.invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    for key in ("include_usage", "include_obfuscation"):
        optional_bool(options, key)
    return options


def sampling_params(body: Mapping[str, Any]) -> None:
    """temperature, top_p and the penalties, with OpenAI's ranges."""
    optional_number(body, "temperature", minimum=0, maximum=2)
    optional_number(body, "top_p", minimum=0, maximum=1)
    optional_number(body, "presence_penalty", minimum=-2, maximum=2)
    optional_number(body, "frequency_penalty", minimum=-2, maximum=2)
