"""OpenAI-style error responses: the exception the fake raises and the exact bodies OpenAI sends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

API_KEYS_URL = "https://platform.openai.com/account/api-keys"


class OpenAIHTTPError(Exception):
    """An error the fake answers with OpenAI's `{"error": {...}}` envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def json_type_name(value: object) -> str:
    """How OpenAI's validator names the type it got: 'a string', 'an integer', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def quote_list(values: Sequence[str]) -> str:
    """`'a'`, `'a' and 'b'`, `'a', 'b', and 'c'` (OpenAI's Oxford-comma listing)."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> OpenAIHTTPError:
    return OpenAIHTTPError(400, message, param=param, code=code)


def missing_param(param: str) -> OpenAIHTTPError:
    return invalid_request(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def missing_model() -> OpenAIHTTPError:
    return invalid_request("you must provide a model parameter")


def invalid_type(param: str, expected: str, got: object) -> OpenAIHTTPError:
    return invalid_request(
        f"Invalid type for '{param}': expected {expected}, but got {json_type_name(got)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: object, supported: Sequence[str]) -> OpenAIHTTPError:
    return invalid_request(
        f"Invalid value: '{value}'. Supported values are: {quote_list(supported)}.",
        param=param,
        code="invalid_value",
    )


def out_of_range(param: str, kind: str, value: float, *, bound: float, below: bool) -> OpenAIHTTPError:
    """`kind` is 'decimal' or 'integer'; `below` says whether `bound` is the minimum (else the maximum)."""
    if below:
        where, op, suffix = "below minimum", ">=", "below_min_value"
    else:
        where, op, suffix = "above maximum", "<=", "above_max_value"
    return invalid_request(
        f"Invalid '{param}': {kind} {where} value. Expected a value {op} {bound}, but got {value} instead.",
        param=param,
        code=f"{kind}_{suffix}",
    )


def empty_array(param: str) -> OpenAIHTTPError:
    return invalid_request(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        param=param,
        code="empty_array",
    )


def array_too_long(param: str, maximum: int, length: int) -> OpenAIHTTPError:
    return invalid_request(
        f"Invalid '{param}': array too long. Expected an array with maximum length {maximum}, "
        f"but got an array with length {length} instead.",
        param=param,
        code="array_above_max_length",
    )


def unrecognized_argument(name: str) -> OpenAIHTTPError:
    return invalid_request(f"Unrecognized request argument supplied: {name}")


def unparseable_json() -> OpenAIHTTPError:
    return invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
        "JSON. If you have trouble figuring out how to fix this, please contact us through our help center "
        "at help.openai.com.)"
    )


def mask_key(key: str) -> str:
    """OpenAI shows the first 8 and last 4 characters of a long key; short keys are shown as sent."""
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def missing_api_key() -> OpenAIHTTPError:
    return OpenAIHTTPError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
        "if you're accessing the API from your browser and are prompted for a username and password. "
        f"You can obtain an API key from {API_KEYS_URL}.",
    )


def incorrect_api_key(key: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(
        401,
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at {API_KEYS_URL}.",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def model_lookup_not_found(model: str) -> OpenAIHTTPError:
    """GET /v1/models/{id} for an unknown id."""
    return OpenAIHTTPError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")


def invalid_url(method: str, path: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(404, f"Invalid URL ({method} {path})")


def rate_limited(model: str, retry_after: float) -> OpenAIHTTPError:
    wait_ms = max(1, round(retry_after * 1000))
    return OpenAIHTTPError(
        429,
        f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        f"Limit 10000, Used 10000, Requested 1. Please try again in {wait_ms}ms. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
        type_="requests",
        code="rate_limit_exceeded",
        headers={
            "retry-after": f"{retry_after:g}",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{wait_ms}ms",
        },
    )


def server_error(request_id: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(
        500,
        "The server had an error processing your request. Sorry about that! You can retry your request, "
        "or contact us through our help center at help.openai.com if you keep seeing this error. "
        f"(Please include the request ID {request_id} in your email.)",
        type_="server_error",
    )


def overloaded(request_id: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(
        503,
        "That model is currently overloaded with other requests. You can retry your request, or contact us "
        "through our help center at help.openai.com if the error persists. "
        f"(Please include the request ID {request_id} in your message.)",
        type_="server_error",
    )


def context_length_exceeded() -> OpenAIHTTPError:
    return invalid_request(
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "131072 tokens. Please reduce the length of the messages.",
        param="messages",
        code="context_length_exceeded",
    )


def fault_error(status: int, *, model: str, request_id: str, retry_after: float) -> OpenAIHTTPError:
    """The body a real upstream sends for an injected `status=N` fault."""
    if status == 400:
        return context_length_exceeded()
    if status == 401:
        return incorrect_api_key("sk-revoked-key-0000")
    if status == 403:
        return OpenAIHTTPError(
            403,
            "Country, region, or territory not supported",
            type_="request_forbidden",
            code="unsupported_country_region_territory",
        )
    if status == 404:
        return model_not_found(model)
    if status == 429:
        return rate_limited(model, retry_after)
    if status == 503:
        return overloaded(request_id)
    if status >= 500:
        error = server_error(request_id)
        error.status = status
        return error
    return OpenAIHTTPError(status, f"Injected error with status {status}.")


class CompatHTTPError(OpenAIHTTPError):
    """An OpenAI-compatible server's error, in that server's own body shape."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, str(body))
        self._body = body

    def body(self) -> dict[str, Any]:
        return self._body


def _overflow_bodies() -> dict[str, dict[str, Any]]:
    """Context-overflow 400s as each compatible server words them (from their issue trackers)."""
    vllm_message = (
        "This model's maximum context length is 8192 tokens. However, you requested 9216 tokens "
        "(8192 in the messages, 1024 in the completion). Please reduce the length of the messages or "
        "completion."
    )
    return {
        "overflow_vllm": {
            "object": "error",
            "message": vllm_message,
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        "overflow_deepseek": {
            "error": {
                "message": "This model's maximum context length is 131072 tokens. However, you requested "
                "131134 tokens (122942 in the messages, 8192 in the completion). Please reduce the length "
                "of the messages or completion.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
        "overflow_groq": {
            "error": {
                "message": "Please reduce the length of the messages or completion.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        "overflow_mistral": {
            "object": "error",
            "message": "Prompt contains 40982 tokens and 0 draft tokens, too large for model with 32768 "
            "maximum context length",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        },
        "overflow_llamacpp": {
            "error": {
                "code": 400,
                "message": "request (4390 tokens) exceeds the available context size (4096 tokens), "
                "try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 4390,
                "n_ctx": 4096,
            }
        },
        "overflow_ollama": {
            "error": {
                "message": "prompt too long; exceeded max context length by 4096 tokens",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    }


def named_error(name: str) -> OpenAIHTTPError:
    """The error an `error=NAME` fault answers with: `overflow` (OpenAI's own), an `overflow_<server>`
    of a compatible server, or `invalid` (an ordinary 400 that is no overflow)."""
    if name == "overflow":
        return context_length_exceeded()
    if name == "invalid":
        return invalid_request(
            "Invalid value for 'temperature': must be between 0 and 2.", param="temperature", code=None
        )
    body = _overflow_bodies().get(name)
    if body is None:
        raise OpenAIHTTPError(400, f"unknown fake error {name!r}", type_="fake_fault_error")
    return CompatHTTPError(400, body)
