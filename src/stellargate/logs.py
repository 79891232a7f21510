"""Logging set-up: text or structured JSON lines, each carrying the request id it was written under.

The request id lives in a context variable set by the app for each request (one ``set`` per
request, tens of nanoseconds), so any module's log line made while serving it carries it without
passing it around. Secrets are never logged on purpose; as a second line of defence, anything that
looks like a gateway key (``sg-…``), a provider key (``sk-…``, ``sk-ant-…``, ``AIza…``), a bearer
token, a Basic credential or the user:password of a URL (a proxy's, a database's) is masked in
every line, structured fields included. Prompt and completion text is never
logged, except on the logger ``stellargate.prompts`` (promptlog.py), and there only for requests of
a key whose ``log_prompts`` switch is on.

A record may carry structured fields (``extra={"fields": {...}}``): JSON lines get them as
top-level keys (never replacing the standard ones), text lines as one JSON object at the end.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("stellargate_request_id", default=None)

_SECRET = re.compile(
    r"(?:\bsg-[A-Za-z0-9]{8})[A-Za-z0-9]+|\b(?:sk-(?:ant-)?|AIza)[A-Za-z0-9_\-]{8,}"
    r"|(?i:bearer\s+)\S+|\bBasic\s+[A-Za-z0-9+/]{8,}=*"
)
# Greedy to the last @ of the authority: a password may hold an unescaped @.
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")


def redact(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        s = m.group(0)
        if s.startswith("sg-"):
            return s[:11] + "…"  # the display prefix, as the key table keeps it
        return s.split()[0] + " ***" if s.lower().startswith(("bearer", "Basic")) else s[:6] + "***"

    text = _URL_USERINFO.sub(r"\1***@", text) if "@" in text else text
    return _SECRET.sub(sub, text)


def redact_fields(value: Any) -> Any:
    """``value`` with every string in it masked; walked rather than masked as JSON text, where a
    bearer token's ``\\S+`` would swallow the closing quote and break the line."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_fields(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_fields(v) for v in value]
    return value


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                if k not in out:
                    out[k] = redact_fields(v)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line += " " + orjson.dumps(redact_fields(fields), default=str).decode()
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid else line


def configure_logging(level: str, fmt: str) -> None:
    """Idempotent: the serving process and each worker process call it once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_stellargate", False):
            root.removeHandler(h)
    handler._stellargate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A key's log_prompts switch is an explicit request, not to be silenced by a quieter log_level.
    logging.getLogger("stellargate.prompts").setLevel(logging.INFO)
