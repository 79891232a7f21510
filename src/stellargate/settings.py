"""The configuration: one YAML file plus the environment, validated once at start-up.

``load_settings`` returns one frozen ``Settings`` object that the app carries; nothing reads the
environment or the file after that. Every problem is reported as a ``ConfigProblem`` naming the
file, the key path (with its line when known) and the fix, and all problems are reported at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from stellargate.counters.figures import LimitFigures
from stellargate.proxy import ProxyConfigError, ProxyEnvironment, parse_proxy_url, proxy_environment

ENV_CONFIG = "STELLARGATE_CONFIG"
ENV_DATA_DIR = "STELLARGATE_DATA_DIR"
ENV_ADMIN_KEY = "STELLARGATE_ADMIN_KEY"
ENV_TASK_SECRET = "SECRET_TOKEN"  # the task API's shared token, named as that API documents it


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Model):
    """Seconds. ``first_byte`` is until the response headers (the whole answer for non-streams)."""

    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(120.0, gt=0)
    idle: float = Field(60.0, gt=0)  # longest silence between two stream chunks
    total: float = Field(600.0, gt=0)


class TimeoutOverrides(_Model):
    """Per-model timeouts: each one given replaces the provider's, the rest are the provider's."""

    connect: float | None = Field(None, gt=0)
    first_byte: float | None = Field(None, gt=0)
    idle: float | None = Field(None, gt=0)
    total: float | None = Field(None, gt=0)

    def over(self, base: Timeouts) -> Timeouts:
        return base.model_copy(update=self.model_dump(exclude_none=True))


class ServerSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    max_body_mb: float = Field(10.0, gt=0, le=1024)
    # Seconds a graceful shutdown waits for in-flight requests before closing them.
    shutdown_grace: float = Field(30.0, ge=0)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class ProviderSettings(_Model):
    type: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(1000, ge=1)
    # Let the gateway fetch client-given image URLs that resolve to private, loopback or
    # link-local addresses (for providers that take images only inline). Off: an SSRF guard.
    allow_private_media: bool = False
    # An http:// proxy for this provider's connections (http://user:pass@host:port), or "none" to
    # go direct; unset: the environment's HTTPS_PROXY / HTTP_PROXY / NO_PROXY (see proxy.py).
    # Secret because it may carry the proxy's password.
    proxy: SecretStr | None = None

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: SecretStr | None) -> SecretStr | None:
        raw = v.get_secret_value().strip() if v is not None else ""
        if not raw:
            return None  # an unset ${VAR}: the environment decides, as when the key is absent
        if raw.lower() != "none":
            parse_proxy_url(raw)  # ProxyConfigError is a ValueError; check_semantics words it better
        return SecretStr(raw)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class PriceSettings(_Model):
    """USD per million tokens; ``per_image`` is USD per generated image."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    per_image: float | None = Field(None, ge=0)


class DeploymentSettings(_Model):
    """One place a model group can be served from (see pipeline/deployments.py)."""

    provider: str
    model: str | None = None  # the upstream id; defaults to the group's upstream id
    weight: float = Field(1.0, gt=0)
    rpm: int | None = Field(None, ge=1)  # requests per minute the provider grants (per process)
    tpm: int | None = Field(None, ge=1)  # tokens per minute the provider grants (per process)


FallbackClass = Literal["5xx", "429", "timeout", "connect", "context_window"]
FALLBACK_CLASSES: tuple[FallbackClass, ...] = ("5xx", "429", "timeout", "connect", "context_window")


class ModelSettings(_Model):
    name: str = Field(min_length=1)  # the id clients send
    # Required unless ``deployments`` lists where the model is served.
    provider: str = ""
    model: str | None = None  # the upstream id; defaults to name
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    price: PriceSettings | None = None
    # Legacy /v1/completions: `chat` translates them to chat completions (a chat-only model);
    # `native` forwards them; unset: native when the provider has the endpoint, else chat.
    completions: Literal["native", "chat"] | None = None
    # A model group: several deployments behind one name, picked by ``strategy``.
    deployments: list[DeploymentSettings] = Field(default_factory=list)
    strategy: Literal["weighted", "least_inflight", "latency", "priority"] = "weighted"
    fallbacks: list[str] = Field(default_factory=list)  # model names, tried in order
    fallback_on: list[FallbackClass] = Field(default_factory=lambda: list(FALLBACK_CLASSES))
    timeouts: TimeoutOverrides | None = None

    @model_validator(mode="before")
    @classmethod
    def _provider_of_group(cls, data: Any) -> Any:
        # A group's `provider` (shown as owned_by, in the banner) is its first deployment's.
        if isinstance(data, dict) and not data.get("provider"):
            deps = data.get("deployments")
            if isinstance(deps, list) and deps and isinstance(deps[0], dict) and deps[0].get("provider"):
                return {**data, "provider": deps[0]["provider"]}
        return data

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


class BackoffSettings(_Model):
    base: float = Field(0.2, gt=0)  # seconds; full jitter over base * 2**retry, capped at max
    max: float = Field(5.0, gt=0)


class RetryBudgetSettings(_Model):
    # Retries within any 10 s window stay under max(min, ratio * requests) per deployment.
    ratio: float = Field(0.2, ge=0, le=1)
    min: int = Field(3, ge=0)


class BreakerSettings(_Model):
    failures: int = Field(5, ge=1)  # consecutive failures that eject a deployment
    error_rate: float = Field(0.5, gt=0, le=1)  # or this failure rate over ``window``...
    window: float = Field(30.0, gt=0)
    min_requests: int = Field(20, ge=1)  # ...once the window holds this many requests
    cooldown: float = Field(30.0, gt=0)  # first ejection; doubles on each repeat
    max_cooldown: float = Field(300.0, gt=0)


class RoutingSettings(_Model):
    retries: int = Field(2, ge=0, le=10)  # per request and model, on top of the first attempt
    max_retry_wait: float = Field(10.0, ge=0)  # longest upstream Retry-After waited for in-request
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)
    retry_budget: RetryBudgetSettings = Field(default_factory=RetryBudgetSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    redis_prefix: str = "stellargate"  # names the Redis channel and keys that share ejections


class UsageSettings(_Model):
    flush_interval: float = Field(0.25, gt=0, le=60)
    batch_size: int = Field(500, ge=1, le=10_000)
    max_buffer: int = Field(50_000, ge=100)


class KeySettings(_Model):
    cache_ttl: float = Field(60.0, gt=0)  # seconds a cached key is trusted without re-reading it
    poll_interval: float = Field(2.0, gt=0)  # how often workers look for key changes made elsewhere


class IdempotencySettings(_Model):
    ttl: float = Field(86400.0, gt=0)  # seconds a finished response is replayed for its key
    # Seconds a first request holds its key; past it (its process died) a repeat runs afresh.
    lock_timeout: float = Field(660.0, gt=0)
    max_response_mb: float = Field(10.0, gt=0)  # larger responses are not kept (a repeat runs again)


class AuditSettings(_Model):
    flush_interval: float = Field(0.5, gt=0, le=60)  # seconds between writes of buffered events
    max_buffer: int = Field(10_000, ge=100)  # buffered events beyond this are dropped and counted


class WebhookSettings(_Model):
    # Deliver to URLs on private, loopback or link-local addresses (off: an SSRF guard).
    allow_private: bool = False
    max_attempts: int = Field(8, ge=1, le=50)  # then the delivery is marked failed
    backoff_initial: float = Field(5.0, gt=0)  # seconds before the 2nd attempt; doubles, with jitter
    backoff_max: float = Field(3600.0, gt=0)
    timeout: float = Field(10.0, gt=0)  # seconds an endpoint has to answer
    poll_interval: float = Field(1.0, gt=0, le=60)  # how often due deliveries are looked for
    # Seconds between scans for keys expiring within 7 days (key.expiring); the first runs
    # min(5 s, this) after start. Below a second it would only load the database.
    key_expiry_interval: float = Field(3600.0, ge=1, le=86400)
    # Seconds between looks at the circuit breakers (deployment.ejected / .recovered).
    breaker_poll_interval: float = Field(2.0, ge=0.1, le=60)


class TracingSettings(_Model):
    enabled: bool = False  # needs the optional OpenTelemetry packages: pip install 'stellargate[otel]'
    endpoint: str = "http://127.0.0.1:4318/v1/traces"  # OTLP over HTTP (protobuf)
    service_name: str = "stellargate"
    sample_ratio: float = Field(1.0, ge=0, le=1)


class MetricsSettings(_Model):
    enabled: bool = True  # serve GET /metrics
    token: SecretStr | None = None  # when set, /metrics needs "Authorization: Bearer <token>"


class Settings(_Model):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: str = ""  # empty: SQLite in the data directory
    redis: str | None = None
    admin_key: SecretStr | None = None
    # Also accepted as X-API-Key by the task API (/llm/...); from SECRET_TOKEN when not set here.
    task_api_secret_token: SecretStr | None = None
    data_dir: Path = Path(".stellargate")
    auto_migrate: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: list[ModelSettings] = Field(default_factory=list)
    # Prices by model id or glob pattern, over the bundled table (see data/prices.yaml).
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    # Limits and budgets per key: the defaults of every key, and named plans keys may reference.
    limits: LimitFigures = Field(default_factory=LimitFigures)
    plans: dict[str, LimitFigures] = Field(default_factory=dict)
    # While the shared counters (Redis) are unreachable: admit on request-rate and concurrency
    # limits (true) or refuse (false). Token and spend budgets always refuse.
    rate_limit_fail_open: bool = True
    # The last N changes of every spend and token budget counter, recorded with the change itself
    # (GET /admin/v1/keys/{key_id}/limits/trail); 0: off. Top-level, not under limits:, because
    # that section's shape is also a plan's and a key's overrides, and this is neither.
    budget_trail: int = Field(0, ge=0, le=100_000)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    log_format: Literal["text", "json"] = "text"
    # per_key: keys with log_prompts on have each request's prompt and completion logged;
    # off: never, whatever the keys say (a deployment that must not keep prompts in its logs).
    prompt_logging: Literal["per_key", "off"] = "per_key"
    # Characters kept of each text in a prompt record (a message, a completion); 0: no cap. A
    # 200k-token prompt would otherwise be one multi-megabyte log line, and a stream's text is
    # held in memory until it ends.
    prompt_log_max_chars: int = Field(32_768, ge=0, le=10_000_000)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # Where the settings came from and which ${VARS} were unset, for messages; not settings.
    source: str = "<defaults>"
    unset_variables: tuple[str, ...] = ()
    # The proxy variables of the environment the settings were loaded in (proxy.ENV_VARIABLES).
    proxy_environment: dict[str, str] = Field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.data_dir / 'stellargate.db'}"

    def model(self, name: str) -> ModelSettings | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    path: str  # dotted key path, e.g. providers.groq.base_url
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top level)'}: {self.message} — fix: {self.fix}"


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---------------------------------------------------------------------------------------------
# ${VAR} interpolation
#
# Variables are swapped for placeholders before YAML parsing, because `${X}` inside a flow mapping
# (`{api_key: ${X}}`) is not valid YAML, and resolved in the parsed values afterwards, so that an
# environment value can never change the document's structure.

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"__sgvar_(\d+)__|\$\$")


def protect_variables(text: str) -> tuple[str, list[tuple[str, str | None]]]:
    found: list[tuple[str, str | None]] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$$"
        found.append((m.group(1), m.group(2)))
        return f"__sgvar_{len(found) - 1}__"

    return _VAR.sub(sub, text), found


def interpolate(
    value: Any,
    env: Mapping[str, str],
    variables: list[tuple[str, str | None]],
    unset: set[str],
    path: str = "",
) -> Any:
    """Resolve placeholders in every string; ``$$`` is a literal ``$``.

    An unset variable without a default becomes the empty string and is reported in ``unset``,
    so that a provider whose key is not exported is simply not live rather than a crash.
    """
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = variables[int(m.group(1))]
            if name in env:
                return env[name]
            if default is None:
                unset.add(f"{name} (at {path or 'top level'})")
                return ""
            return default

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, variables, unset, f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, variables, unset, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


# ---------------------------------------------------------------------------------------------
# Loading


def _line_index(text: str) -> dict[str, int]:
    """Map dotted key paths of a YAML document to their 1-based line numbers."""
    index: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: str) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = str(k.value)
                sub = f"{path}.{key}" if path else key
                index[sub] = k.start_mark.line + 1
                walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return index


_FIELD_HINTS = {
    "int_parsing": "give a whole number",
    "int_type": "give a whole number",
    "float_parsing": "give a number",
    "float_type": "give a number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "give a string (quote it if YAML reads it as something else)",
    "missing": "add this key",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "dict_type": "give a mapping (key: value pairs)",
    "model_type": "give a mapping (key: value pairs)",
    "list_type": "give a list",
    "literal_error": "use one of the values named",
    "string_too_short": "give a non-empty value",
}


def _loc_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_fields_at(path_parts: list[int | str]) -> list[str]:
    """The keys allowed at a location, for did-you-mean suggestions on unknown keys."""
    model: type[BaseModel] | None = Settings
    for part in path_parts:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        model = None
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
            for inner in getattr(cand, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    model = inner
    return list(model.model_fields) if model is not None else []


_INTERNAL = ("source", "unset_variables", "proxy_environment")


def _problems_from_validation(err: ValidationError, file: str, lines: dict[str, int]) -> list[ConfigProblem]:
    problems = []
    for e in err.errors():
        loc = list(e["loc"])
        path = _loc_path(loc)
        if e["type"] == "extra_forbidden":
            allowed = [f for f in _model_fields_at(loc[:-1]) if f not in _INTERNAL]
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"remove it; allowed here: {', '.join(allowed)}"
            problems.append(ConfigProblem(file, path, "unknown key", fix, lines.get(path)))
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        fix = _FIELD_HINTS.get(e["type"], "correct the value")
        problems.append(ConfigProblem(file, path, msg, fix, lines.get(path)))
    return problems


def _defaults_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The embedded configuration used when no file is given."""
    from stellargate.providers.registry import providers_from_env

    data: dict[str, Any] = {"providers": providers_from_env(env)}
    if env.get(ENV_ADMIN_KEY):
        data["admin_key"] = env[ENV_ADMIN_KEY]
    return data


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, interpolate and validate the configuration; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    unset: set[str] = set()
    if path is None:
        file = "<defaults>"
        data = _defaults_from_env(env)
        lines: dict[str, int] = {}
    else:
        file = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(
                [ConfigProblem(file, "", f"cannot read the file: {e.strerror}", "check the path")]
            ) from None
        text, variables = protect_variables(text)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise ConfigError(
                [
                    ConfigProblem(
                        file, "", f"not valid YAML: {getattr(e, 'problem', e)}", "fix the syntax", line
                    )
                ]
            ) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                [ConfigProblem(file, "", "the top level must be a mapping", "use key: value pairs")]
            )
        data = interpolate(raw, env, variables, unset)
        lines = _line_index(text)
    if "data_dir" not in data and env.get(ENV_DATA_DIR):
        data["data_dir"] = env[ENV_DATA_DIR]
    if "admin_key" not in data and env.get(ENV_ADMIN_KEY):
        data["admin_key"] = env[ENV_ADMIN_KEY]
    if data.get("admin_key") == "":
        data["admin_key"] = None
    if "task_api_secret_token" not in data and env.get(ENV_TASK_SECRET):
        data["task_api_secret_token"] = env[ENV_TASK_SECRET]
    if data.get("task_api_secret_token") == "":
        data["task_api_secret_token"] = None
    data["source"] = file
    data["unset_variables"] = tuple(sorted(unset))
    data["proxy_environment"] = proxy_environment(env)
    problems = check_semantics(data, file, lines) + _proxy_environment_problems(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        schema = _problems_from_validation(e, file, lines)
        semantic_paths = {p.path for p in problems}
        raise ConfigError([p for p in schema if p.path not in semantic_paths] + problems) from None
    if problems:
        raise ConfigError(problems)
    return settings


# Counters (rate limits, budgets), idempotency locks and circuit state must be shared by every
# process that serves one key; worker processes share nothing but Redis.
WORKERS_NEED_REDIS = (
    "more than one worker needs redis: rate limits, budgets, idempotency and circuit state are shared "
    "through it (each worker would otherwise enforce a key's limits on its own)",
    "set redis: redis://127.0.0.1:6379/0, or run one worker",
)


def check_semantics(
    data: Mapping[str, Any], file: str, lines: Mapping[str, int] | None = None
) -> list[ConfigProblem]:
    """Cross-field checks a schema cannot express. They read the raw data defensively, so they
    run even when schema validation failed and every problem is reported in one pass."""
    from stellargate.providers.registry import provider_types

    lines = lines or {}
    problems: list[ConfigProblem] = []

    def add(path: str, message: str, fix: str) -> None:
        problems.append(ConfigProblem(file, path, message, fix, lines.get(path)))

    server = data.get("server")
    workers = server.get("workers") if isinstance(server, dict) else None
    if isinstance(workers, int) and workers > 1 and not data.get("redis"):
        add("server.workers", *WORKERS_NEED_REDIS)

    types = provider_types()
    providers = data.get("providers")
    providers = providers if isinstance(providers, dict) else {}
    for name, p in providers.items():
        path = f"providers.{name}"
        if "/" in str(name):
            add(path, "a provider name cannot contain '/'", "rename it")
        ptype = p.get("type") if isinstance(p, dict) else None
        if isinstance(ptype, str) and ptype not in types:
            close = difflib.get_close_matches(ptype, types, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(sorted(types))}"
            add(f"{path}.type", f"unknown provider type '{ptype}'", fix)
        proxy = p.get("proxy") if isinstance(p, dict) else None
        if isinstance(proxy, str) and proxy.strip() and proxy.strip().lower() != "none":
            try:
                parse_proxy_url(proxy)
            except ProxyConfigError as e:
                add(f"{path}.proxy", str(e), f"{e.fix}, or none to go direct")
    models = data.get("models")
    seen: set[str] = set()
    for i, m in enumerate(models if isinstance(models, list) else []):
        if not isinstance(m, dict):
            continue
        path = f"models[{i}]"
        name, provider = m.get("name"), m.get("provider")
        if isinstance(name, str):
            if name in seen:
                add(f"{path}.name", f"model '{name}' is listed twice", "keep one entry")
            seen.add(name)
        deps = m.get("deployments")
        deps = deps if isinstance(deps, list) else []
        if not provider and not deps:
            add(f"{path}.provider", "a model needs a provider or deployments", "add provider: <name>")
        for j, d in enumerate(deps):
            dp = d.get("provider") if isinstance(d, dict) else None
            if isinstance(dp, str) and dp not in providers:
                add(f"{path}.deployments[{j}].provider", f"no provider named '{dp}'", "define it")
        if isinstance(provider, str) and provider and provider not in providers:
            close = difflib.get_close_matches(provider, [str(k) for k in providers], n=1)
            fix = (
                f"did you mean '{close[0]}'?"
                if close
                else f"define it under providers: (configured: {', '.join(map(str, providers)) or 'none'})"
            )
            add(f"{path}.provider", f"no provider named '{provider}'", fix)
    names = {m.get("name") for m in (models if isinstance(models, list) else []) if isinstance(m, dict)}
    for i, m in enumerate(models if isinstance(models, list) else []):
        fbs = m.get("fallbacks") if isinstance(m, dict) else None
        for j, fb in enumerate(fbs if isinstance(fbs, list) else []):
            if isinstance(fb, str) and fb not in names and "/" not in fb:
                add(f"models[{i}].fallbacks[{j}]", f"no model named '{fb}'", "list it under models:")
    db = data.get("database")
    if isinstance(db, str) and db and not re.match(r"^(sqlite|postgres|postgresql)(\+\w+)?://", db):
        add(
            "database",
            "unsupported database URL",
            "use sqlite:///path/to/file.db or postgresql://user@host:5432/db",
        )
    rd = data.get("redis")
    if isinstance(rd, str) and rd and not re.match(r"^rediss?://", rd):
        add("redis", "unsupported Redis URL", "use redis://host:6379/0")
    return problems


def _proxy_environment_problems(data: Mapping[str, Any]) -> list[ConfigProblem]:
    """A proxy variable that cannot be used fails the start, named as the variable it came from,
    rather than leaving the providers that rely on it to go direct (or nowhere) in silence. Only
    when some provider relies on the environment: with a ``proxy`` on each, it is not read."""
    providers = data.get("providers")
    providers = providers if isinstance(providers, dict) else {}
    if all(isinstance(p, dict) and str(p.get("proxy") or "").strip() for p in providers.values()):
        return []
    _, found = ProxyEnvironment.parse(data.get("proxy_environment") or {})
    return [ConfigProblem("environment", var, str(e), f"{e.fix} in {var}, or unset it") for var, e in found]
