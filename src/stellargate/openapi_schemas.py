"""The JSON Schemas of the OpenAPI document (openapi.py): request bodies, answers, error shapes.

Request schemas say what the gateway validates (so generated clients send valid requests);
answer schemas name the fields the gateway always sends and allow more (providers add fields,
and the identity path forwards them), which is what "accurate" can mean for a proxy.
"""

from __future__ import annotations

from typing import Any

S = dict[str, Any]


def obj(props: S, required: tuple[str, ...] = (), extra: bool = True) -> S:
    out: S = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


def arr(items: S, **kw: Any) -> S:
    return {"type": "array", "items": items, **kw}


def nullable(s: S) -> S:
    return {"anyOf": [s, {"type": "null"}]}


STR: S = {"type": "string"}
INT: S = {"type": "integer"}
NUM: S = {"type": "number"}
BOOL: S = {"type": "boolean"}
ANY_OBJ: S = {"type": "object"}
TIME = {"type": "string", "format": "date-time"}

# -- errors, one shape per client API ------------------------------------------------------------

OPENAI_ERROR = obj(
    {
        "error": obj(
            {"message": STR, "type": STR, "code": nullable(STR), "param": nullable(STR)}, ("message", "type")
        ),
        "request_id": STR,
    },
    ("error",),
)
ANTHROPIC_ERROR = obj(
    {
        "type": {"const": "error"},
        "error": obj({"type": STR, "message": STR}, ("type", "message")),
        "request_id": STR,
    },
    ("type", "error"),
)
GEMINI_ERROR = obj(
    {
        "error": obj(
            {"code": INT, "message": STR, "status": STR, "details": arr(ANY_OBJ)},
            ("code", "message", "status"),
        )
    },
    ("error",),
)
TASK_ERROR = obj(
    {"status": {"const": "error"}, "error": STR, "content": {"type": "null"}, "usage": {"type": "null"}},
    ("status", "error"),
)

# -- OpenAI ----------------------------------------------------------------------------------------

_CONTENT_PART = obj(
    {"type": {"enum": ["text", "image_url"]}, "text": STR, "image_url": obj({"url": STR}, ("url",))},
    ("type",),
)
MESSAGE = obj(
    {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"anyOf": [STR, arr(_CONTENT_PART), {"type": "null"}]},
        "name": STR,
        "tool_call_id": STR,
        "tool_calls": arr(ANY_OBJ),
    },
    ("role",),
)
CHAT_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "messages": arr(MESSAGE, minItems=1),
        "stream": BOOL,
        "stream_options": nullable(obj({"include_usage": BOOL})),
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 8},
        "stop": {"anyOf": [STR, arr(STR, maxItems=4)]},
        "tools": arr(ANY_OBJ),
        "tool_choice": {"anyOf": [STR, ANY_OBJ]},
        "response_format": ANY_OBJ,
        "seed": INT,
        "user": STR,
    },
    ("model", "messages"),
)
USAGE = obj({"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT})
CHAT_COMPLETION = obj(
    {
        "id": STR,
        "object": {"const": "chat.completion"},
        "created": INT,
        "model": STR,
        "choices": arr(
            obj(
                {
                    "index": INT,
                    "message": obj(
                        {"role": STR, "content": nullable(STR), "tool_calls": arr(ANY_OBJ)}, ("role",)
                    ),
                    "finish_reason": nullable(STR),
                },
                ("index", "message"),
            )
        ),
        "usage": USAGE,
    },
    ("id", "object", "choices"),
)
COMPLETIONS_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "prompt": {"anyOf": [STR, arr(STR)]},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "stream": BOOL,
    },
    ("model", "prompt"),
)
COMPLETION = obj({"id": STR, "object": STR, "choices": arr(ANY_OBJ), "usage": USAGE}, ("choices",))
EMBEDDINGS_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "input": {"anyOf": [STR, arr(STR, minItems=1)]},
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1},
    },
    ("model", "input"),
)
EMBEDDINGS = obj(
    {
        "object": {"const": "list"},
        "data": arr(obj({"embedding": {"anyOf": [arr(NUM), STR]}, "index": INT})),
        "model": STR,
    },
    ("object", "data"),
)
IMAGES_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "prompt": {"type": "string", "minLength": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 10},
        "size": STR,
        "response_format": {"enum": ["url", "b64_json"]},
    },
    ("model", "prompt"),
)
IMAGES = obj({"created": INT, "data": arr(obj({"url": STR, "b64_json": STR}))}, ("data",))
MODEL = obj({"id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR}, ("id", "object"))
MODEL_LIST = obj({"object": {"const": "list"}, "data": arr(MODEL)}, ("data",))
ANTHROPIC_MODEL = obj({"type": {"const": "model"}, "id": STR, "display_name": STR}, ("type", "id"))
ANTHROPIC_MODEL_LIST = obj({"data": arr(ANTHROPIC_MODEL), "has_more": BOOL}, ("data", "has_more"))

# -- Anthropic and Gemini --------------------------------------------------------------------------

MESSAGES_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": arr(
            obj(
                {"role": {"enum": ["user", "assistant"]}, "content": {"anyOf": [STR, arr(ANY_OBJ)]}},
                ("role", "content"),
            ),
            minItems=1,
        ),
        "system": {"anyOf": [STR, arr(ANY_OBJ)]},
        "stream": BOOL,
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    },
    ("model", "max_tokens", "messages"),
)
MESSAGE_RESPONSE = obj(
    {
        "id": STR,
        "type": {"const": "message"},
        "role": STR,
        "content": arr(ANY_OBJ),
        "model": STR,
        "usage": ANY_OBJ,
    },
    ("id", "type", "content"),
)
COUNT_TOKENS = obj({"input_tokens": INT}, ("input_tokens",))
GEMINI_REQUEST = obj(
    {"contents": arr(ANY_OBJ, minItems=1), "systemInstruction": ANY_OBJ, "generationConfig": ANY_OBJ},
    ("contents",),
)
GEMINI_RESPONSE = obj({"candidates": arr(ANY_OBJ), "usageMetadata": ANY_OBJ}, ("candidates",))
GEMINI_MODEL = obj({"name": STR, "displayName": STR, "supportedGenerationMethods": arr(STR)}, ("name",))
GEMINI_MODEL_LIST = obj({"models": arr(GEMINI_MODEL)}, ("models",))

# -- task API --------------------------------------------------------------------------------------

TASK_REQUEST = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "prompt": STR,
        "user_prompt": {"type": "string", "minLength": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
        "classes": arr(STR),
    },
    ("model", "user_prompt"),
)
TASK_RESPONSE = obj({"status": STR, "content": {}, "usage": {}}, ("status",))

# -- admin -----------------------------------------------------------------------------------------

LOG_PROMPTS: S = {
    "type": "boolean",
    "default": False,
    "description": (
        "Log each request's prompt and completion text (logger stellargate.prompts, one record a"
        " request, secrets masked); the config's prompt_logging: off overrides it. Changes are audited."
    ),
}
KEY = obj(
    {
        "id": STR,
        "object": {"const": "api_key"},
        "name": STR,
        "prefix": STR,
        "status": {"enum": ["active", "disabled", "expired", "revoked"]},
        "created_at": NUM,
        "updated_at": NUM,
        "expires_at": nullable(NUM),
        "revoked_at": nullable(NUM),
        "enabled": BOOL,
        "models": arr(STR),
        "scopes": arr(STR),
        "metadata": ANY_OBJ,
        "plan": nullable(STR),
        "limits": ANY_OBJ,
        "log_prompts": LOG_PROMPTS,
        "key": {"type": "string", "description": "The secret: in the answers of create and rotate only"},
    },
    ("id", "object", "name", "prefix", "status"),
)
KEY_CREATE = obj(
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "models": arr({"type": "string", "minLength": 1}),
        "scopes": arr(
            {
                "enum": [
                    "*",
                    "chat",
                    "completions",
                    "embeddings",
                    "images",
                    "models",
                    "usage:read",
                    "audit:read",
                ]
            }
        ),
        "expires_in": {"anyOf": [STR, {"type": "number", "exclusiveMinimum": 0}]},
        "expires_at": NUM,
        "metadata": ANY_OBJ,
        "log_prompts": LOG_PROMPTS,
    },
    ("name",),
    extra=False,
)
KEY_UPDATE = obj(
    {
        "name": {"type": "string", "minLength": 1},
        "models": arr({"type": "string", "minLength": 1}),
        "enabled": BOOL,
        "expires_at": nullable(NUM),
        "metadata": ANY_OBJ,
        "log_prompts": LOG_PROMPTS,
    },
    extra=False,
)


def page(item: S) -> S:
    return obj(
        {"object": {"const": "list"}, "data": arr(item), "next_cursor": nullable(STR), "has_more": BOOL},
        ("data",),
    )


AUDIT_EVENT = obj(
    {
        "id": STR,
        "object": {"const": "audit_event"},
        "time": TIME,
        "actor": STR,
        "action": STR,
        "target": nullable(STR),
        "source": nullable(STR),
        "details": ANY_OBJ,
    },
    ("id", "time", "actor", "action"),
)
WEBHOOK = obj(
    {
        "id": STR,
        "object": {"const": "webhook_endpoint"},
        "url": STR,
        "description": nullable(STR),
        "events": arr(STR),
        "enabled": BOOL,
        "disabled_reason": nullable(STR),
        "created_at": TIME,
        "updated_at": TIME,
        "secret": STR,
    },
    ("id", "url", "events", "enabled"),
)
WEBHOOK_WRITE = obj(
    {
        "url": {"type": "string", "format": "uri"},
        "events": arr(STR),
        "description": nullable(STR),
        "enabled": BOOL,
    },
    extra=False,
)
DELIVERY = obj(
    {
        "id": STR,
        "object": {"const": "webhook_delivery"},
        "endpoint_id": STR,
        "event_type": STR,
        "state": {"enum": ["pending", "delivered", "failed", "cancelled"]},
        "attempts": INT,
        "created_at": TIME,
        "next_attempt_at": nullable(TIME),
        "last_status": nullable(INT),
        "last_error": nullable(STR),
    },
    ("id", "state", "attempts"),
)
RELOAD = obj(
    {
        "object": STR,
        "applied": arr(STR),
        "restart_required": arr(STR),
        # Deployments that kept their live state (breaker, latency) and those started afresh.
        "deployments": obj({"kept": arr(STR), "fresh": arr(STR)}, ("kept", "fresh")),
    },
    ("applied", "restart_required"),
)
BUDGET_TRAIL_ENTRY = obj(
    {
        "at": TIME,
        "op": {"enum": ["reserve", "settle", "refund", "seed"]},
        "request_id": nullable(STR),
        "used_delta": NUM,
        "reserved_delta": NUM,
        "used": NUM,
        "reserved": NUM,
    },
    ("at", "op", "used", "reserved"),
)
BUDGET_TRAIL = obj(
    {
        "object": {"const": "budget_trail"},
        "key_id": STR,
        "budget": {"enum": ["tokens_per_month", "spend_per_day", "spend_per_month"]},
        "unit": {"enum": ["usd", "tokens"]},
        "period": STR,
        "limit": nullable(NUM),
        "trail_length": INT,
        "kept": INT,
        "added": nullable(INT),
        "trimmed": nullable(INT),
        "data": arr(BUDGET_TRAIL_ENTRY),
    },
    ("object", "key_id", "budget", "unit", "period", "kept", "added", "data"),
)


KEY_PAGE = page(KEY)
AUDIT_PAGE = page(AUDIT_EVENT)
DELIVERY_PAGE = page(DELIVERY)

# Named schemas, served under components/schemas and referred to by $ref wherever they appear, so
# a generated client has one class per shape (one OpenAIError, not one per operation).
COMPONENTS: dict[str, S] = {
    "OpenAIError": OPENAI_ERROR,
    "AnthropicError": ANTHROPIC_ERROR,
    "GeminiError": GEMINI_ERROR,
    "TaskError": TASK_ERROR,
    "ChatCompletionRequest": CHAT_REQUEST,
    "ChatCompletion": CHAT_COMPLETION,
    "Usage": USAGE,
    "CompletionRequest": COMPLETIONS_REQUEST,
    "Completion": COMPLETION,
    "EmbeddingsRequest": EMBEDDINGS_REQUEST,
    "Embeddings": EMBEDDINGS,
    "ImagesRequest": IMAGES_REQUEST,
    "Images": IMAGES,
    "Model": MODEL,
    "ModelList": MODEL_LIST,
    "AnthropicModel": ANTHROPIC_MODEL,
    "AnthropicModelList": ANTHROPIC_MODEL_LIST,
    "MessagesRequest": MESSAGES_REQUEST,
    "Message": MESSAGE_RESPONSE,
    "CountTokens": COUNT_TOKENS,
    "GeminiRequest": GEMINI_REQUEST,
    "GeminiResponse": GEMINI_RESPONSE,
    "GeminiModel": GEMINI_MODEL,
    "GeminiModelList": GEMINI_MODEL_LIST,
    "TaskRequest": TASK_REQUEST,
    "TaskResponse": TASK_RESPONSE,
    "ApiKey": KEY,
    "ApiKeyCreate": KEY_CREATE,
    "ApiKeyUpdate": KEY_UPDATE,
    "ApiKeyList": KEY_PAGE,
    "AuditEvent": AUDIT_EVENT,
    "AuditEventList": AUDIT_PAGE,
    "WebhookEndpoint": WEBHOOK,
    "WebhookEndpointWrite": WEBHOOK_WRITE,
    "WebhookDelivery": DELIVERY,
    "WebhookDeliveryList": DELIVERY_PAGE,
    "ReloadResult": RELOAD,
    "BudgetTrail": BUDGET_TRAIL,
    "BudgetTrailEntry": BUDGET_TRAIL_ENTRY,
}
