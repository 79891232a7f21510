from pathlib import Path

import pytest

from stellargate.settings import ConfigError, load_settings

GOOD = """
server: {host: 127.0.0.1, port: 8000, workers: 2, max_body_mb: 10}
database: sqlite:///.stellargate/stellargate.db
redis: redis://127.0.0.1:6379/0
admin_key: ${STELLARGATE_ADMIN_KEY}
providers:
  openai: {type: openai, api_key: ${OPENAI_API_KEY}}
  groq:   {type: openai, base_url: https://api.groq.com/openai/v1, api_key: ${GROQ_API_KEY}}
  local:  {type: openai, base_url: http://127.0.0.1:11434/v1}
models:
  - name: gpt-4o
    provider: openai
    model: gpt-4o
    context_window: 128000
    price: {input: 2.50, output: 10.00, cached_input: 1.25}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_the_documented_example_loads(tmp_path: Path) -> None:
    env = {"STELLARGATE_ADMIN_KEY": "adm", "OPENAI_API_KEY": "sk-o", "GROQ_API_KEY": "gsk"}
    s = load_settings(write(tmp_path, GOOD), env)
    assert s.server.workers == 2
    assert s.providers["groq"].api_key is not None
    assert s.providers["groq"].api_key.get_secret_value() == "gsk"
    assert s.admin_key is not None
    assert s.model("gpt-4o") is not None
    assert s.models[0].price is not None
    assert s.models[0].price.cached_input == 1.25


def test_unset_variables_become_empty_and_defaults_apply(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "admin_key: ${NOPE}\ndatabase: ${DB:-sqlite:///x.db}\n"), {})
    assert s.admin_key is None
    assert s.database == "sqlite:///x.db"


def test_every_problem_is_reported_with_path_line_and_fix(tmp_path: Path) -> None:
    bad = """
server:
  port: eighty
  wrkers: 2
providers:
  groq: {type: opnai, base_url: ftp://x}
models:
  - name: m
    provider: grok
"""
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, bad), {})
    text = str(e.value)
    problems = {p.path: p for p in e.value.problems}
    assert "server.port" in problems
    assert problems["server.port"].line == 3
    assert "server.wrkers" in problems
    assert "did you mean 'workers'" in problems["server.wrkers"].fix
    assert "providers.groq.base_url" in problems
    assert "config.yaml" in text
    assert "fix:" in text


def test_semantic_problems(tmp_path: Path) -> None:
    bad = """
providers:
  groq: {type: opnai}
models:
  - {name: m, provider: grok}
  - {name: m, provider: groq}
"""
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, bad), {})
    paths = {p.path: p for p in e.value.problems}
    assert "did you mean 'openai'" in paths["providers.groq.type"].fix
    assert "did you mean 'groq'" in paths["models[0].provider"].fix
    assert "models[1].name" in paths


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, "server:\n  port: [1,\n"), {})
    assert e.value.problems[0].line is not None


def test_no_file_uses_environment_providers() -> None:
    s = load_settings(None, {"OPENAI_API_KEY": "sk-x", "OLLAMA_BASE_URL": "http://127.0.0.1:11434"})
    assert set(s.providers) == {"openai", "ollama"}
    assert s.providers["ollama"].base_url == "http://127.0.0.1:11434/v1"
    assert s.database_url.startswith("sqlite:///")


def test_variables_inside_flow_mappings_and_numbers(tmp_path: Path) -> None:
    text = "server: {port: ${PORT}, host: '${HOST:-0.0.0.0}'}\nadmin_key: a$$b\n"
    s = load_settings(write(tmp_path, text), {"PORT": "9001"})
    assert s.server.port == 9001
    assert s.server.host == "0.0.0.0"
    assert s.admin_key is not None
    assert s.admin_key.get_secret_value() == "a$b"


def test_environment_values_cannot_change_structure(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "admin_key: ${K}\n"), {"K": "x\nserver: {port: 1}"})
    assert s.server.port == 8000
    assert s.admin_key is not None
    assert "server" in s.admin_key.get_secret_value()


def test_unset_variables_are_listed(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, "providers:\n  openai: {type: openai, api_key: ${OPENAI_API_KEY}}\n"), {}
    )
    assert any("OPENAI_API_KEY" in v for v in s.unset_variables)


def test_several_workers_need_redis(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, "server: {workers: 4}\n"), {})
    (problem,) = e.value.problems
    assert problem.path == "server.workers"
    assert problem.line == 1
    assert "redis" in problem.fix
    s = load_settings(write(tmp_path, "server: {workers: 4}\nredis: redis://127.0.0.1:6379/0\n"), {})
    assert s.server.workers == 4


def test_webhook_scan_intervals_are_bounded(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "webhooks: {key_expiry_interval: 1, breaker_poll_interval: 0.1}\n"), {})
    assert (s.webhooks.key_expiry_interval, s.webhooks.breaker_poll_interval) == (1, 0.1)
    assert load_settings(None, {}).webhooks.key_expiry_interval == 3600
    bad = "webhooks: {key_expiry_interval: 0.5, breaker_poll_interval: 61}\n"
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, bad), {})
    paths = {p.path for p in e.value.problems}
    assert {"webhooks.key_expiry_interval", "webhooks.breaker_poll_interval"} <= paths
