"""`stellargate serve | keys … | db upgrade | check-config`: a thin shell over the library."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from stellargate.settings import ENV_CONFIG, WORKERS_NEED_REDIS, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from pydantic import SecretStr

    from stellargate.proxy import ProxyEnvironment


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as e:
        print(f"configuration has {len(e.problems)} problem(s):", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        raise SystemExit(2) from None


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


# -- serve -----------------------------------------------------------------------------------


def banner(s: Settings, host: str, port: int, workers: int) -> str:
    from stellargate.providers.registry import base_url_for
    from stellargate.proxy import ProxyEnvironment

    proxy_env, _ = ProxyEnvironment.parse(s.proxy_environment)
    lines = [
        f"StellarGate listening on http://{host}:{port}  (OpenAI base URL: http://{host}:{port}/v1)",
        f"  workers: {workers}   database: {_redact(s.database_url)}   data: {s.data_dir}",
    ]
    if s.redis:
        lines.append(f"  redis: {_redact(s.redis)}")
    if s.providers:
        lines.append("  providers:")
        for name, p in s.providers.items():
            has_key = p.api_key is not None and bool(p.api_key.get_secret_value())
            state = "key set" if has_key else "no key"
            base = base_url_for(p, name)
            lines.append(f"    {name:<12} {p.type:<10} {base}  ({state}{_route(p.proxy, base, proxy_env)})")
    else:
        lines.append(
            "  providers: none — export OPENAI_API_KEY (or GROQ_API_KEY, OLLAMA_BASE_URL, …) or pass --config"
        )
    if s.models:
        lines.append(
            "  models: " + ", ".join(f"{m.name} -> {m.provider}/{m.upstream_model}" for m in s.models)
        )
    if s.providers:
        lines.append(
            "  any provider's model is also reachable as <provider>/<model>, e.g. "
            f"{next(iter(s.providers))}/<model-id>"
        )
    cfg = f" --config {s.source}" if s.source != "<defaults>" else ""
    lines.append(f"  create a key:  stellargate keys create{cfg} --name my-app")
    if s.admin_key is None:
        lines.append("  admin API: disabled (set admin_key or STELLARGATE_ADMIN_KEY)")
    return "\n".join(lines)


def _route(setting: SecretStr | None, base_url: str, proxy_env: ProxyEnvironment) -> str:
    """Which proxy a provider goes through, for the banner: its address, never its credentials."""
    from urllib.parse import urlsplit

    from stellargate.proxy import choose_proxy

    u = urlsplit(base_url)
    explicit = setting.get_secret_value() if setting is not None else None
    via = choose_proxy(
        explicit, proxy_env, u.scheme, u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    )
    if via is None:
        return ", proxy: none" if explicit else ""
    return f", via proxy {via.display}"


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn, so that port 0 works and the banner shows the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        print(f"cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn

    s = _settings(a.config)
    host = a.host or s.server.host
    port = a.port if a.port is not None else s.server.port
    workers = a.workers or s.server.workers
    if workers > 1 and not s.redis:
        message, fix = WORKERS_NEED_REDIS
        print(f"--workers {workers}: {message} — fix: {fix}", file=sys.stderr)
        return 2
    from stellargate.logs import configure_logging

    configure_logging(s.log_level, s.log_format)
    sock = _listen(host, port)
    print(banner(s, host, sock.getsockname()[1], workers), flush=True)
    common: dict[str, Any] = dict(
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=s.log_level,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=s.server.shutdown_grace,
        backlog=4096,
    )
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        # Each worker process builds its app from the same config file.
        if s.source != "<defaults>":
            os.environ[ENV_CONFIG] = s.source
        config = uvicorn.Config("stellargate.app:app_from_env", factory=True, workers=workers, **common)
        Multiprocess(config, sockets=[sock]).run()
    else:
        from stellargate.app import build_app

        uvicorn.Server(uvicorn.Config(build_app(s), **common)).run(sockets=[sock])
    return 0


# -- keys ------------------------------------------------------------------------------------


async def _with_service(s: Settings, fn: Callable[[Any], Awaitable[int]]) -> int:
    import redis.asyncio as aioredis

    from stellargate.invalidation import publish_keys_changed
    from stellargate.keyservice import KeyService
    from stellargate.pipeline.keycache import SharedGeneration
    from stellargate.storage.db import Database

    db = await Database.connect(s.database_url)
    gen = SharedGeneration(s.data_dir / "keys.generation")
    client = aioredis.Redis.from_url(s.redis) if s.redis else None
    try:
        if s.auto_migrate:
            await db.upgrade()

        async def notify() -> None:
            gen.bump()  # running workers on this data directory see it on their next request
            if client is not None:
                await publish_keys_changed(client)

        from stellargate.audit import AuditLog

        # The CLI's changes are audited like the admin API's, under the actor "cli".
        return await fn(KeyService(db.keys, notify, audit=AuditLog(db.audit), actor="cli"))
    finally:
        if client is not None:
            await client.aclose()
        await db.close()
        gen.close()


def _print_key(view: dict[str, Any], as_json: bool, secret: str | None = None) -> None:
    if as_json:
        print(json.dumps({**view, **({"key": secret} if secret else {})}, indent=2))
        return
    if secret:
        print(f"\n  {secret}\n\nThis key is shown once and cannot be recovered: store it now.\n")
    for k in ("id", "name", "prefix", "status", "models", "scopes", "metadata", "log_prompts"):
        v = view[k]
        print(f"  {k:<11} {', '.join(v) if isinstance(v, list) else v if v not in ({}, None) else '-'}")
    for k in ("created_at", "expires_at", "revoked_at"):
        print(f"  {k:<11} {_fmt_time(view[k])}")


def cmd_keys(a: argparse.Namespace) -> int:
    from stellargate.errors import GatewayError
    from stellargate.keyservice import public_view

    s = _settings(a.config)

    async def run(svc: Any) -> int:
        if a.keys_cmd == "create":
            meta = dict(kv.split("=", 1) for kv in a.metadata or [])
            rec, secret = await svc.create(
                name=a.name,
                models=a.models,
                scopes=a.scopes,
                expires_in=a.expires_in,
                metadata=meta,
                log_prompts=a.log_prompts,
            )
            _print_key(public_view(rec), a.json, secret)
        elif a.keys_cmd == "list":
            from stellargate.storage.db import Database

            db = await Database.connect(s.database_url)
            try:
                cursor: str | None = None
                rows: list[dict[str, Any]] = []
                while True:
                    recs, cursor = await db.keys.list(limit=200, cursor=cursor, include_revoked=a.all)
                    rows.extend(public_view(r) for r in recs)
                    if cursor is None:
                        break
            finally:
                await db.close()
            if a.json:
                print(json.dumps(rows, indent=2))
            else:
                print(f"{'ID':<30} {'NAME':<20} {'PREFIX':<13} {'STATUS':<9} {'EXPIRES':<21} MODELS")
                for v in rows:
                    print(
                        f"{v['id']:<30} {v['name'][:20]:<20} {v['prefix']:<13} {v['status']:<9} "
                        f"{_fmt_time(v['expires_at']):<21} {', '.join(v['models']) or '*'}"
                    )
        elif a.keys_cmd == "show":
            _print_key(public_view(await svc.get(a.id)), a.json)
        elif a.keys_cmd == "revoke":
            _print_key(public_view(await svc.revoke(a.id)), a.json)
        elif a.keys_cmd == "rotate":
            rec, secret = await svc.rotate(a.id)
            _print_key(public_view(rec), a.json, secret)
        return 0

    try:
        return asyncio.run(_with_service(s, run))
    except GatewayError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1


# -- db, check-config ------------------------------------------------------------------------


def cmd_db(a: argparse.Namespace) -> int:
    from stellargate.storage.db import Database

    s = _settings(a.config)

    async def run() -> int:
        db = await Database.connect(s.database_url)
        try:
            before, head = await db.migration_state()
            await db.upgrade()
            print(f"database {_redact(s.database_url)}: {before or 'empty'} -> {head}")
        finally:
            await db.close()
        return 0

    return asyncio.run(run())


def cmd_check_config(a: argparse.Namespace) -> int:
    path = a.file or a.config or os.environ.get(ENV_CONFIG)
    if not path:
        print("check-config needs a file: stellargate check-config FILE", file=sys.stderr)
        return 2
    s = _settings(path)
    print(f"{path}: OK — {len(s.providers)} provider(s), {len(s.models)} model(s)")
    for v in s.unset_variables:
        print(f"  warning: environment variable {v} is not set; it reads as empty")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stellargate", description="Self-hosted LLM API gateway")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--config", default=os.environ.get(ENV_CONFIG), help=f"config file (default: ${ENV_CONFIG})"
        )
        return sp

    sp = add("serve", "run the gateway")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--workers", type=int)
    sp.set_defaults(fn=cmd_serve)

    kp = add("keys", "create, list, show, revoke and rotate API keys")
    ks = kp.add_subparsers(dest="keys_cmd", required=True)
    c = ks.add_parser("create", help="create a key (printed once)")
    c.add_argument("--name", required=True)
    c.add_argument("--models", nargs="+", metavar="GLOB", help="allowed models (glob patterns); default all")
    c.add_argument("--scopes", nargs="+", help="allowed endpoint scopes; default all (*)")
    c.add_argument("--expires-in", help="e.g. 30d, 12h, 90m")
    c.add_argument("--metadata", nargs="+", metavar="K=V")
    c.add_argument(
        "--log-prompts",
        action="store_true",
        help="log each request's prompt and completion (logger stellargate.prompts)",
    )
    lst = ks.add_parser("list", help="list keys")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    for name in ("show", "revoke", "rotate"):
        x = ks.add_parser(name, help=f"{name} a key")
        x.add_argument("id")
    for x in (c, lst, *[ks.choices[n] for n in ("show", "revoke", "rotate")]):
        x.add_argument("--json", action="store_true", help="machine-readable output")
        x.add_argument("--config", default=argparse.SUPPRESS)
    kp.set_defaults(fn=cmd_keys)

    dp = add("db", "database maintenance")
    ds = dp.add_subparsers(dest="db_cmd", required=True)
    up = ds.add_parser("upgrade", help="apply pending migrations")
    up.add_argument("--config", default=argparse.SUPPRESS)
    dp.set_defaults(fn=cmd_db)

    cp = add("check-config", "validate a config file and report every problem")
    cp.add_argument("file", nargs="?")
    cp.set_defaults(fn=cmd_check_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = parser().parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = a.fn
    return fn(a)


if __name__ == "__main__":
    raise SystemExit(main())
