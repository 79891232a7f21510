"""Gemini-style errors: the exception the fake raises and the bodies Google's API sends.

Shape: ``{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [...]}}``.
Wording follows what generativelanguage.googleapis.com answers (unknown fields, roles, turn order,
API keys, quota), so that the gateway's error mapping is tested against realistic bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_SERVICE = "generativelanguage.googleapis.com"


class GoogleHTTPError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid(message: str, *, violations: list[tuple[str, str]] | None = None) -> GoogleHTTPError:
    details = None
    if violations:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": f, "description": d} for f, d in violations],
            }
        ]
    return GoogleHTTPError(400, message, details=details)


def unknown_field(name: str, path: str) -> GoogleHTTPError:
    where = f" at '{path}'" if path else ""
    msg = f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'
    return invalid(msg, violations=[(path, msg)])


def field_error(path: str, why: str) -> GoogleHTTPError:
    """The ``* GenerateContentRequest.<path>: <why>`` form of semantic validation errors."""
    return invalid(f"* GenerateContentRequest.{path}: {why}\n")


def bad_value(path: str, kind: str, value: Any) -> GoogleHTTPError:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    msg = f"Invalid value at '{path}' ({kind}), {shown}"
    return invalid(msg, violations=[(path, msg)])


def unparseable() -> GoogleHTTPError:
    return invalid("Invalid JSON payload received. Unexpected token.")


def missing_key() -> GoogleHTTPError:
    return GoogleHTTPError(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API key or other form of API consumer identity to call this API.",
    )


def invalid_key() -> GoogleHTTPError:
    message = "API key not valid. Please pass a valid API key."
    return GoogleHTTPError(
        400,
        message,
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": _SERVICE},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def model_not_found(model: str, method: str, version: str = "v1beta") -> GoogleHTTPError:
    return GoogleHTTPError(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods.",
    )


def not_found_path(path: str) -> GoogleHTTPError:
    return GoogleHTTPError(404, f"Method not found: {path}")


def quota(model: str, retry_after: float) -> GoogleHTTPError:
    return GoogleHTTPError(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": f"{_SERVICE}/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "15",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"},
        ],
    )


_FAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}


def fault_error(status: int, *, model: str, retry_after: float) -> GoogleHTTPError:
    """The error a `status=N` fault answers with, worded as Gemini words that status."""
    if status == 429:
        return quota(model, retry_after)
    return GoogleHTTPError(status, _FAULT_MESSAGES.get(status, f"HTTP {status}"))


def named_error(name: str) -> GoogleHTTPError:
    """The error an `error=NAME` fault answers with: `overflow` is Gemini's context-overflow 400,
    `invalid` an ordinary INVALID_ARGUMENT."""
    if name == "overflow":
        return GoogleHTTPError(
            400, "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."
        )
    if name == "invalid":
        return invalid("* GenerateContentRequest.generation_config.temperature: must be in [0, 2]\n")
    return GoogleHTTPError(400, f"unknown fake error {name!r}")
