"""The CLI, run as the user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STELLARGATE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "stellargate.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=60,
    )


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "sg.yaml"
    p.write_text(f"database: sqlite:///{tmp_path}/k.db\ndata_dir: {tmp_path}/data\n")
    return p


def test_keys_lifecycle(cfg: Path) -> None:
    r = run(
        "keys", "create", "--config", str(cfg), "--name", "cli-key", "--models", "gpt-*", "--expires-in", "7d"
    )
    assert r.returncode == 0, r.stderr
    secret = next(w for w in r.stdout.split() if w.startswith("sg-") and len(w) > 20)
    assert "shown once" in r.stdout
    created = json.loads(run("keys", "create", "--config", str(cfg), "--name", "second", "--json").stdout)
    listed = json.loads(run("keys", "list", "--config", str(cfg), "--json").stdout)
    assert {k["name"] for k in listed} == {"cli-key", "second"}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    shown = json.loads(run("keys", "show", created["id"], "--config", str(cfg), "--json").stdout)
    assert shown["id"] == created["id"]
    rotated = json.loads(run("keys", "rotate", created["id"], "--config", str(cfg), "--json").stdout)
    assert rotated["key"] != created["key"]
    revoked = json.loads(run("keys", "revoke", created["id"], "--config", str(cfg), "--json").stdout)
    assert revoked["status"] == "revoked"
    listed = json.loads(run("keys", "list", "--config", str(cfg), "--json").stdout)
    assert [k["name"] for k in listed] == ["cli-key"]
    assert len(json.loads(run("keys", "list", "--all", "--config", str(cfg), "--json").stdout)) == 2
    table = run("keys", "list", "--config", str(cfg)).stdout
    assert "cli-key" in table
    assert secret not in table
    missing = run("keys", "show", "key_nope", "--config", str(cfg))
    assert missing.returncode == 1
    assert "No API key" in missing.stderr


def test_config_from_environment_variable(cfg: Path) -> None:
    r = run("keys", "create", "--name", "env", "--json", env={"STELLARGATE_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert (cfg.parent / "k.db").exists()


def test_check_config_reports_problems_and_fixes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("providers:\n  o: {type: openai, api_key: ${OPENAI_API_KEY}}\n")
    r = run("check-config", str(good))
    assert r.returncode == 0
    assert "OK" in r.stdout
    assert "OPENAI_API_KEY" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: high\nproviders:\n  o: {type: opnai}\n")
    r = run("check-config", str(bad))
    assert r.returncode == 2
    assert f"{bad}:2: server.port" in r.stderr
    assert "providers.o.type" in r.stderr
    assert "did you mean 'openai'" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_refuses_a_bad_config_with_the_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {wrkers: 2}\n")
    r = run("serve", "--config", str(bad))
    assert r.returncode == 2
    assert "server.wrkers" in r.stderr
    assert "did you mean 'workers'" in r.stderr


def test_db_upgrade(cfg: Path) -> None:
    r = run("db", "upgrade", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "empty ->" in r.stdout
    r = run("db", "upgrade", "--config", str(cfg))
    assert "-> " in r.stdout
    assert "empty" not in r.stdout


def test_default_data_dir_from_environment(tmp_path: Path) -> None:
    r = run(
        "keys",
        "create",
        "--name",
        "d",
        "--json",
        cwd=tmp_path,
        env={"STELLARGATE_DATA_DIR": str(tmp_path / "dd")},
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dd" / "stellargate.db").exists()


def test_serve_refuses_several_workers_without_redis(cfg: Path) -> None:
    r = run("serve", "--config", str(cfg), "--workers", "2", "--port", "0")
    assert r.returncode == 2
    assert "needs redis" in r.stderr
    assert "fix:" in r.stderr


def test_keys_create_with_prompt_logging(cfg: Path) -> None:
    on = json.loads(
        run("keys", "create", "--config", str(cfg), "--name", "on", "--log-prompts", "--json").stdout
    )
    off = json.loads(run("keys", "create", "--config", str(cfg), "--name", "off", "--json").stdout)
    assert (on["log_prompts"], off["log_prompts"]) == (True, False)
    shown = run("keys", "show", on["id"], "--config", str(cfg))
    assert "log_prompts True" in " ".join(shown.stdout.split())
