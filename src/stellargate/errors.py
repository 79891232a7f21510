"""The one error tree of the gateway.

Every failure that reaches a client is a ``GatewayError``; each dialect renders it in its own
wire shape (OpenAI, Anthropic, Gemini, task API), so nothing else needs to know those shapes.

    GatewayError (500 internal_error)
    ├── InvalidRequest (400 invalid_request_error)
    │   ├── InvalidJSON (400 invalid_json)
    │   └── SchemaError (422 invalid_request_error / invalid_schema)
    ├── AuthenticationError (401 invalid_api_key)
    ├── PermissionDenied (403 permission_denied)
    ├── NotFound (404 not_found)
    │   └── ModelNotFound (404 model_not_found)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── RateLimited (429 rate_limit_exceeded, retry_after)
    └── UpstreamError (502 upstream_error; the raw upstream body is kept for the log only)
        ├── UpstreamAuthError (502 upstream_auth_error)
        ├── UpstreamUnavailable (503 upstream_unavailable)
        └── UpstreamTimeout (504 upstream_timeout)

``kind`` is the class of error independent of the dialect (what the OpenAI shape calls
``type``); dialects map it to their own vocabulary.
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    kind: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
        upstream_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.http_status = status or self.status
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        # Kept for the log, never sent to the client: it may echo the provider key or internals.
        self.upstream_body = upstream_body
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.http_status}, {self.code!r}, {self.message!r})"


class InvalidRequest(GatewayError):
    status = 400
    kind = "invalid_request_error"
    default_code = "invalid_request"


class InvalidJSON(InvalidRequest):
    default_code = "invalid_json"


class SchemaError(InvalidRequest):
    status = 422
    default_code = "invalid_schema"


class AuthenticationError(GatewayError):
    status = 401
    kind = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    kind = "permission_error"
    default_code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    kind = "not_found_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    kind = "invalid_request_error"
    default_code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    kind = "invalid_request_error"
    default_code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "invalid_request_error"
    default_code = "payload_too_large"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    """The gateway itself cannot serve now (e.g. shutting down, a dependency it needs is down)."""

    status = 503
    kind = "api_error"
    default_code = "service_unavailable"


class UpstreamError(GatewayError):
    status = 502
    kind = "api_error"
    default_code = "upstream_error"


class UpstreamAuthError(UpstreamError):
    default_code = "upstream_auth_error"


class UpstreamUnavailable(UpstreamError):
    status = 503
    default_code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout_error"
    default_code = "upstream_timeout"
