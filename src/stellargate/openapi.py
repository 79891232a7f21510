"""``GET /v1/openapi.json``: the OpenAPI 3.1 document of every public and admin endpoint.

Built once per process from the schemas in openapi_schemas.py. Each operation names the error
shape of its client API (OpenAI's, Anthropic's, Gemini's or the task API's) as its ``default``
answer, so a client generated from it parses errors too. Every path is also served under
``/api/v1`` (not repeated here). tests/gateway/test_openapi.py fuzzes the gateway against it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from stellargate import __version__
from stellargate import openapi_schemas as s
from stellargate.web import Reply, Request, Result, Router

S = dict[str, Any]
JSON = "application/json"
SSE = "text/event-stream"
ERRORS = {
    "openai": s.OPENAI_ERROR,
    "anthropic": s.ANTHROPIC_ERROR,
    "gemini": s.GEMINI_ERROR,
    "tasks": s.TASK_ERROR,
    # GET /v1/models answers in the asking SDK's shape (anthropic-version, x-goog-api-key headers).
    "models": {"anyOf": [s.OPENAI_ERROR, s.ANTHROPIC_ERROR, s.GEMINI_ERROR]},
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "openai": [{"bearer": []}],
    "admin": [{"bearer": []}],
    "anthropic": [{"x_api_key": []}, {"bearer": []}],
    "gemini": [{"x_goog_api_key": []}],
    "tasks": [{"x_api_key": []}, {"bearer": []}],
}
IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Every POST takes it. The first request with a key runs; a repeat with the same body within"
        " 24 h gets the first successful response byte for byte, with Idempotent-Replayed: true."
        " A repeat while the first runs is a 409, one with another body a 422. Scoped to the caller"
        " (the API key, or the admin key)."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "Sent on an answer replayed for an Idempotency-Key.",
        "schema": {"const": "true"},
    }
}
# One stable operationId per operation: the function names of a generated client.
OPERATION_IDS = {
    ("post", "/v1/chat/completions"): "createChatCompletion",
    ("post", "/v1/completions"): "createCompletion",
    ("post", "/v1/embeddings"): "createEmbeddings",
    ("post", "/v1/images/generations"): "createImages",
    ("get", "/v1/models"): "listModels",
    ("get", "/v1/models/{model_id}"): "getModel",
    ("post", "/v1/messages"): "createMessage",
    ("post", "/v1/messages/count_tokens"): "countMessageTokens",
    ("post", "/v1beta/models/{model}:generateContent"): "geminiGenerateContent",
    ("post", "/v1beta/models/{model}:streamGenerateContent"): "geminiStreamGenerateContent",
    ("get", "/v1beta/models"): "geminiListModels",
    ("get", "/v1beta/models/{model}"): "geminiGetModel",
    ("get", "/"): "taskApiStatus",
    ("get", "/llm/providers"): "taskApiProviders",
    ("post", "/llm/generation"): "taskGeneration",
    ("post", "/llm/classification"): "taskClassification",
    ("post", "/llm/summarization"): "taskSummarization",
    ("post", "/llm/generation/stream"): "taskGenerationStream",
    ("get", "/v1/audit-log"): "listAuditEvents",
    ("get", "/v1/openapi.json"): "getOpenapiDocument",
    ("get", "/metrics"): "getMetrics",
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
    ("post", "/admin/v1/keys"): "createKey",
    ("get", "/admin/v1/keys"): "listKeys",
    ("get", "/admin/v1/keys/{key_id}"): "getKey",
    ("patch", "/admin/v1/keys/{key_id}"): "updateKey",
    ("delete", "/admin/v1/keys/{key_id}"): "deleteKey",
    ("post", "/admin/v1/keys/{key_id}/revoke"): "revokeKey",
    ("post", "/admin/v1/keys/{key_id}/rotate"): "rotateKey",
    ("get", "/admin/v1/keys/{key_id}/limits"): "getKeyLimits",
    ("patch", "/admin/v1/keys/{key_id}/limits"): "updateKeyLimits",
    ("get", "/admin/v1/keys/{key_id}/limits/trail"): "getBudgetTrail",
    ("get", "/admin/v1/usage"): "listUsage",
    ("get", "/admin/v1/deployments"): "listDeployments",
    ("post", "/admin/v1/reload"): "reloadConfig",
    ("post", "/admin/v1/webhooks"): "createWebhook",
    ("get", "/admin/v1/webhooks"): "listWebhooks",
    ("get", "/admin/v1/webhooks/{endpoint_id}"): "getWebhook",
    ("patch", "/admin/v1/webhooks/{endpoint_id}"): "updateWebhook",
    ("delete", "/admin/v1/webhooks/{endpoint_id}"): "deleteWebhook",
    ("post", "/admin/v1/webhooks/{endpoint_id}/rotate-secret"): "rotateWebhookSecret",
    ("post", "/admin/v1/webhooks/{endpoint_id}/test"): "testWebhook",
    ("get", "/admin/v1/webhooks/{endpoint_id}/deliveries"): "listWebhookDeliveries",
}


def _path_param(name: str) -> S:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _query(name: str, schema: S, description: str = "") -> S:
    p: S = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        p["description"] = description
    return p


def op(
    summary: str,
    tag: str,
    ok: S | None,
    *,
    status: int = 200,
    body: S | None = None,
    errors: str = "openai",
    auth: str | None = "openai",
    params: list[S] | None = None,
    stream: bool = False,
) -> S:
    content: S = {JSON: {"schema": ok or {}}}
    if stream:
        content[SSE] = {"schema": {}}  # events in the client API's own stream format
    out: S = {
        "summary": summary,
        "tags": [tag],
        "responses": {
            str(status): {"description": "Success", "content": content},
            "default": {"description": "An error", "content": {JSON: {"schema": ERRORS[errors]}}},
        },
    }
    if auth is not None:
        out["security"] = SECURITY[auth]
    if body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        out["parameters"] = params
    return out


def _model_post(
    summary: str, body: S, ok: S, *, errors: str = "openai", auth: str = "openai", stream: bool = True
) -> S:
    return op(summary, "models", ok, body=body, errors=errors, auth=auth, stream=stream)


def _paths() -> S:
    kid, eid = [_path_param("key_id")], [_path_param("endpoint_id")]
    page_q = [_query("limit", {"type": "integer", "minimum": 1, "maximum": 200}), _query("cursor", s.STR)]
    time_q = {"type": "string", "description": "unix seconds or ISO 8601"}
    g_model = [_path_param("model")]
    return {
        "/v1/chat/completions": {
            "post": _model_post("OpenAI Chat Completions", s.CHAT_REQUEST, s.CHAT_COMPLETION)
        },
        "/v1/completions": {
            "post": _model_post("OpenAI legacy completions", s.COMPLETIONS_REQUEST, s.COMPLETION)
        },
        "/v1/embeddings": {
            "post": _model_post("Embeddings", s.EMBEDDINGS_REQUEST, s.EMBEDDINGS, stream=False)
        },
        "/v1/images/generations": {
            "post": _model_post("Image generation", s.IMAGES_REQUEST, s.IMAGES, stream=False)
        },
        "/v1/models": {
            "get": op(
                "The models the key may use, in the asking SDK's shape",
                "models",
                {"anyOf": [s.MODEL_LIST, s.ANTHROPIC_MODEL_LIST, s.GEMINI_MODEL_LIST]},
                errors="models",
            )
        },
        "/v1/models/{model_id}": {
            "get": op(
                "One model, in the asking SDK's shape",
                "models",
                {"anyOf": [s.MODEL, s.ANTHROPIC_MODEL, s.GEMINI_MODEL]},
                errors="models",
                params=[_path_param("model_id")],
            )
        },
        "/v1/messages": {
            "post": _model_post(
                "Anthropic Messages",
                s.MESSAGES_REQUEST,
                s.MESSAGE_RESPONSE,
                errors="anthropic",
                auth="anthropic",
            )
        },
        "/v1/messages/count_tokens": {
            "post": op(
                "Estimate input tokens",
                "models",
                s.COUNT_TOKENS,
                body=s.MESSAGES_REQUEST,
                errors="anthropic",
                auth="anthropic",
            )
        },
        "/v1beta/models/{model}:generateContent": {
            "post": {
                **_model_post(
                    "Gemini generateContent",
                    s.GEMINI_REQUEST,
                    s.GEMINI_RESPONSE,
                    errors="gemini",
                    auth="gemini",
                    stream=False,
                ),
                "parameters": g_model,
            }
        },
        "/v1beta/models/{model}:streamGenerateContent": {
            "post": {
                **_model_post(
                    "Gemini streamGenerateContent (SSE)",
                    s.GEMINI_REQUEST,
                    s.GEMINI_RESPONSE,
                    errors="gemini",
                    auth="gemini",
                ),
                "parameters": [
                    *g_model,
                    {"name": "alt", "in": "query", "required": True, "schema": {"const": "sse"}},
                ],
            }
        },
        "/v1beta/models": {
            "get": op(
                "Gemini models list",
                "models",
                s.obj({"models": s.arr(s.GEMINI_MODEL)}),
                errors="gemini",
                auth="gemini",
            )
        },
        "/v1beta/models/{model}": {
            "get": op(
                "One Gemini model", "models", s.GEMINI_MODEL, errors="gemini", auth="gemini", params=g_model
            )
        },
        "/": {"get": op("Task API status", "tasks", s.ANY_OBJ, errors="tasks", auth="tasks")},
        "/llm/providers": {"get": op("Task API providers", "tasks", s.ANY_OBJ, errors="tasks", auth="tasks")},
        **{
            f"/llm/{task}": {
                "post": _model_post(
                    f"Task API: {task}",
                    s.TASK_REQUEST,
                    s.TASK_RESPONSE,
                    errors="tasks",
                    auth="tasks",
                    stream=task.endswith("stream"),
                )
            }
            for task in ("generation", "classification", "summarization", "generation/stream")
        },
        "/v1/audit-log": {
            "get": op(
                "The audit log (admin key or audit:read)",
                "audit",
                s.AUDIT_PAGE,
                params=[
                    _query("actor", s.STR),
                    _query("action", s.STR),
                    _query("target", s.STR),
                    _query("since", time_q),
                    _query("until", time_q),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("cursor", s.STR),
                ],
            )
        },
        "/v1/openapi.json": {"get": op("This document", "meta", s.ANY_OBJ, auth=None)},
        "/metrics": {
            "get": {
                **op("Prometheus metrics", "meta", None, auth=None),
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": s.STR}},
                    },
                    "default": {"description": "An error", "content": {JSON: {"schema": s.OPENAI_ERROR}}},
                },
            }
        },
        "/healthz": {"get": op("Liveness", "meta", s.obj({"status": s.STR}, ("status",)), auth=None)},
        "/readyz": {
            "get": {
                **op("Readiness", "meta", s.ANY_OBJ, auth=None),
                "responses": {
                    "200": {"description": "Ready", "content": {JSON: {"schema": s.ANY_OBJ}}},
                    "503": {"description": "Not ready", "content": {JSON: {"schema": s.ANY_OBJ}}},
                },
            }
        },
        "/admin/v1/keys": {
            "post": op("Create a key", "admin", s.KEY, status=201, body=s.KEY_CREATE, auth="admin"),
            "get": op(
                "List keys",
                "admin",
                s.KEY_PAGE,
                auth="admin",
                params=[*page_q, _query("include_revoked", {"enum": ["true", "false"]})],
            ),
        },
        "/admin/v1/keys/{key_id}": {
            "get": op("One key", "admin", s.KEY, auth="admin", params=kid),
            "patch": op("Change a key", "admin", s.KEY, body=s.KEY_UPDATE, auth="admin", params=kid),
            "delete": op("Revoke a key", "admin", s.KEY, auth="admin", params=kid),
        },
        "/admin/v1/keys/{key_id}/revoke": {
            "post": op("Revoke a key", "admin", s.KEY, auth="admin", params=kid)
        },
        "/admin/v1/keys/{key_id}/rotate": {
            "post": op("A new secret", "admin", s.KEY, auth="admin", params=kid)
        },
        "/admin/v1/keys/{key_id}/limits": {
            "get": op("A key's limits and their use", "admin", s.ANY_OBJ, auth="admin", params=kid),
            "patch": op(
                "Change a key's plan and limits", "admin", s.ANY_OBJ, body=s.ANY_OBJ, auth="admin", params=kid
            ),
        },
        "/admin/v1/keys/{key_id}/limits/trail": {
            "get": op(
                "A budget's recorded changes, oldest first (404 budget_trail_off unless budget_trail is set)",
                "admin",
                s.BUDGET_TRAIL,
                auth="admin",
                params=[
                    *kid,
                    {**_query("budget", s.BUDGET_TRAIL["properties"]["budget"]), "required": True},
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100_000}, "the most recent"),
                    _query("period", s.STR, "YYYY-MM-DD (a daily budget) or YYYY-MM; default: now"),
                ],
            )
        },
        "/admin/v1/usage": {
            "get": op(
                "The usage ledger",
                "admin",
                s.page(s.ANY_OBJ),
                auth="admin",
                params=[
                    _query("key_id", s.STR),
                    _query("model", s.STR),
                    _query("since", time_q),
                    _query("until", time_q),
                    _query("group_by", {"enum": ["model", "key", "day"]}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("cursor", s.STR),
                ],
            )
        },
        "/admin/v1/deployments": {
            "get": op("Deployments and their breakers", "admin", s.ANY_OBJ, auth="admin")
        },
        "/admin/v1/reload": {"post": op("Reload the configuration", "admin", s.RELOAD, auth="admin")},
        "/admin/v1/webhooks": {
            "post": op(
                "Register a webhook endpoint",
                "webhooks",
                s.WEBHOOK,
                status=201,
                body=s.WEBHOOK_WRITE,
                auth="admin",
            ),
            "get": op(
                "List webhook endpoints",
                "webhooks",
                s.obj({"data": s.arr(s.WEBHOOK)}, ("data",)),
                auth="admin",
            ),
        },
        "/admin/v1/webhooks/{endpoint_id}": {
            "get": op("One webhook endpoint", "webhooks", s.WEBHOOK, auth="admin", params=eid),
            "patch": op(
                "Change a webhook endpoint",
                "webhooks",
                s.WEBHOOK,
                body=s.WEBHOOK_WRITE,
                auth="admin",
                params=eid,
            ),
            "delete": op("Delete a webhook endpoint", "webhooks", s.ANY_OBJ, auth="admin", params=eid),
        },
        "/admin/v1/webhooks/{endpoint_id}/rotate-secret": {
            "post": op("Rotate the signing secret", "webhooks", s.WEBHOOK, auth="admin", params=eid)
        },
        "/admin/v1/webhooks/{endpoint_id}/test": {
            "post": op("Send a test event", "webhooks", s.ANY_OBJ, status=202, auth="admin", params=eid)
        },
        "/admin/v1/webhooks/{endpoint_id}/deliveries": {
            "get": op(
                "Deliveries to an endpoint",
                "webhooks",
                s.DELIVERY_PAGE,
                auth="admin",
                params=[*eid, *page_q],
            )
        },
    }


def _with_models(node: Any, names: list[str]) -> Any:
    """Name the configured models in every request body's ``model`` (any provider/model id too)."""
    if isinstance(node, dict):
        out = {k: _with_models(v, names) for k, v in node.items()}
        props = out.get("properties")
        if names and isinstance(props, dict) and props.get("model") == {"type": "string", "minLength": 1}:
            props["model"] = {"anyOf": [{"enum": names}, {"type": "string", "pattern": "^[^/]+/.+$"}]}
        return out
    if isinstance(node, list):
        return [_with_models(v, names) for v in node]
    return node


def _derived_id(method: str, path: str) -> str:
    """A unique id for an operation not yet named in OPERATION_IDS (a test asks for a name)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w]
    return method + "".join(w[:1].upper() + w[1:] for w in words)


def _conventions(paths: S) -> S:
    """What holds for every operation: an operationId; on every POST, Idempotency-Key and the
    Idempotent-Replayed header of its success answers."""
    for path, item in paths.items():
        for method, operation in item.items():
            operation["operationId"] = OPERATION_IDS.get((method, path)) or _derived_id(method, path)
            if method != "post":
                continue
            operation["parameters"] = [*operation.get("parameters", []), IDEMPOTENCY]
            for status, answer in operation["responses"].items():
                if status.startswith("2"):
                    answer["headers"] = REPLAYED
    return paths


def _refs(node: Any, names: dict[int, str], top: bool = False) -> Any:
    """The named schemas (``COMPONENTS``, found by identity) replaced by ``$ref``s to them."""
    if isinstance(node, dict):
        name = names.get(id(node))
        if name is not None and not top:
            return {"$ref": f"#/components/schemas/{name}"}
        return {k: _refs(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [_refs(v, names) for v in node]
    return node


def document(models: list[str] | None = None) -> S:
    names = {id(schema): name for name, schema in s.COMPONENTS.items()}
    schemas = {name: _refs(schema, names, top=True) for name, schema in s.COMPONENTS.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StellarGate",
            "version": __version__,
            "description": "Self-hosted LLM API gateway. Every path is also served under /api/v1.",
        },
        "components": {
            "schemas": _with_models(schemas, models or []),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x_api_key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "x_goog_api_key": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
            },
        },
        "paths": _with_models(_refs(_conventions(_paths()), names), models or []),
    }


class OpenAPIRoute:
    def __init__(self, models: list[str] | None = None) -> None:
        self._body = orjson.dumps(document(models))

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/openapi.json", self.serve)

    async def serve(self, req: Request) -> Result:
        return Reply(200, self._body)
