"""Start the real gateway (`python -m stellargate.cli serve`) as a process on a free port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ADMIN_KEY = "adm-test-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProc:
    url: str
    port: int
    config_path: Path
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    admin_key: str = ADMIN_KEY
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_key}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, self.url + path, json=body, headers=self.admin_headers()) as r,
        ):
            return r.status, await r.json(content_type=None)

    async def create_key(self, name: str = "test", **fields: Any) -> tuple[str, str]:
        status, body = await self.admin("POST", "/admin/v1/keys", {"name": name, **fields})
        assert status == 201, body
        return body["id"], body["key"]


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))


async def start_gateway(
    tmp: Path,
    config: dict[str, Any],
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    port: int | None = None,
    wait: float = 30.0,
) -> GatewayProc:
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or 0  # the gateway binds a free port itself and says which in its banner
    data_dir = tmp / "data"
    cfg = {"admin_key": ADMIN_KEY, "data_dir": str(data_dir), **config}
    cfg.setdefault("database", f"sqlite:///{data_dir / 'gw.db'}")
    # Most suites pin how one upstream exchange reaches the client (its error mapping included):
    # no retries and no ejections unless a test configures routing (tests/gateway/test_resilience.py).
    cfg.setdefault("routing", {"retries": 0, "breaker": {"failures": 1000, "min_requests": 1000}})
    cfg_path = tmp / "config.yaml"
    write_config(cfg_path, cfg)
    log_path = tmp / "gateway.log"
    cmd = [
        sys.executable,
        "-m",
        "stellargate.cli",
        "serve",
        "--config",
        str(cfg_path),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STELLARGATE_")}
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    deadline = time.monotonic() + wait
    while not port:
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log_path.read_bytes())
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None or time.monotonic() > deadline:
            out = log_path.read_text(errors="replace")
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"gateway did not start:\n{out}")
        else:
            await asyncio.sleep(0.05)
    gw = GatewayProc(f"http://127.0.0.1:{port}", port, cfg_path, data_dir, log_path, proc)
    async with aiohttp.ClientSession() as s:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{gw.log()}")
            try:
                async with s.get(gw.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        break
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.monotonic() > deadline:
                gw.kill()
                raise RuntimeError(f"gateway did not become healthy in {wait}s:\n{gw.log()}")
            await asyncio.sleep(0.1)
        if workers > 1:
            # Every worker must be up before tests that count on them all.
            await asyncio.sleep(1.0)
    return gw


async def wait_until(pred: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = await pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {v!r})")
        await asyncio.sleep(interval)
