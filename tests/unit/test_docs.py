"""Every public setting and endpoint is documented in the README; this fails when one is not."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from stellargate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
INTERNAL = {"source", "unset_variables", "proxy_environment"}


def _setting_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if name in INTERNAL:
            continue
        path = f"{prefix}{name}"
        ann = field.annotation
        origin = typing.get_origin(ann)
        args = typing.get_args(ann)
        inner = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if origin is dict and args and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            paths += _setting_paths(args[1], f"{path}.<name>.")
        elif origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            paths += _setting_paths(args[0], f"{path}[].")
        elif inner:
            paths += _setting_paths(inner[0], f"{path}.")
        else:
            paths.append(path)
    return paths


def test_every_setting_is_in_the_configuration_reference() -> None:
    missing = [p for p in _setting_paths(Settings) if f"| `{p}` |" not in README]
    assert not missing, f"document these settings in the README's table: {missing}"


def _routes() -> set[tuple[str, str]]:
    found = set()
    pattern = re.compile(r"""(?:\.add|\br)\(\s*"([A-Z,]+)",\s*"(/[^"]*)\"""")
    for f in (ROOT / "src" / "stellargate").rglob("*.py"):
        for methods, path in pattern.findall(f.read_text()):
            for m in methods.split(","):
                found.add((m, path))
    return found


def test_every_endpoint_is_documented() -> None:
    routes = _routes()
    assert ("POST", "/v1/chat/completions") in routes
    missing = sorted(f"{m} {p}" for m, p in routes if f"`{m} {p}`" not in README)
    assert not missing, f"document these endpoints in the README: {missing}"
