"""Anthropic-style errors: the exception the fake raises and the exact bodies Anthropic sends.

Body: ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": "req_..."}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATUS_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
FAULT_MESSAGES = {
    "invalid_request_error": "Your request is invalid (injected fault).",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": (
        "This request would exceed the rate limit for your organization of 50 requests per minute."
    ),
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}


class AnthropicHTTPError(Exception):
    """An error the fake answers with Anthropic's ``{"type": "error", ...}`` envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = (
            type_ or STATUS_TYPE.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        )
        self.headers: dict[str, str] = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.type, "message": self.message},
            "request_id": request_id,
        }


def invalid(message: str) -> AnthropicHTTPError:
    return AnthropicHTTPError(400, message)


def field_required(path: str) -> AnthropicHTTPError:
    return invalid(f"{path}: Field required")


def extra_forbidden(path: str) -> AnthropicHTTPError:
    return invalid(f"{path}: Extra inputs are not permitted")


def missing_api_key() -> AnthropicHTTPError:
    return AnthropicHTTPError(401, "x-api-key header is required")


def invalid_api_key() -> AnthropicHTTPError:
    return AnthropicHTTPError(401, "invalid x-api-key")


def missing_version() -> AnthropicHTTPError:
    return invalid("anthropic-version: header is required")


def bad_version(value: str) -> AnthropicHTTPError:
    return invalid(f"anthropic-version: invalid version '{value}'")


def model_not_found(model: str) -> AnthropicHTTPError:
    return AnthropicHTTPError(404, f"model: {model}")


def not_json() -> AnthropicHTTPError:
    return invalid("There was an issue with the format of your request: the body is not valid JSON")


def unknown_route(method: str, path: str) -> AnthropicHTTPError:
    return AnthropicHTTPError(404, f"Not Found: {method} {path}")


def fault_error(status: int, retry_after: float) -> AnthropicHTTPError:
    """The error an injected ``status=N`` fault answers with, as Anthropic sends that status."""
    error = AnthropicHTTPError(status, "")
    error.message = FAULT_MESSAGES.get(error.type, f"HTTP {status}")
    if status == 429:
        error.headers["retry-after"] = str(
            int(retry_after) if retry_after == int(retry_after) else retry_after
        )
    if status >= 500:
        error.headers["x-should-retry"] = "true"
    return error


def named_error(name: str) -> AnthropicHTTPError:
    """The error an `error=NAME` fault answers with: `overflow` is Anthropic's context-overflow 400
    (no dedicated type: ``invalid_request_error`` with this message), `overflow_max_tokens` the one
    for prompt plus ``max_tokens``, `invalid` an ordinary 400."""
    messages = {
        "overflow": "prompt is too long: 210000 tokens > 200000 maximum",
        "overflow_max_tokens": "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, "
        "decrease input length or `max_tokens` and try again",
        "invalid": "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for "
        "claude-sonnet-4-5",
    }
    if name not in messages:
        return AnthropicHTTPError(400, f"unknown fake error {name!r}")
    return AnthropicHTTPError(400, messages[name])
