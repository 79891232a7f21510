"""The official google-genai SDK as the tests use it: no retries, a bounded timeout, and its one warning."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

# google-genai subclasses aiohttp.ClientSession, which aiohttp answers with a DeprecationWarning;
# the suite turns warnings into errors, so the modules that drive the SDK ignore that one.
SDK_WARNING = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged:DeprecationWarning"
)
TIMEOUT_MS = 10_000


def genai_client(base_url: str, api_key: str, version: str = "v1beta") -> genai.Client:
    """A client of the Gemini API at ``base_url`` (no version suffix); close with ``await c.aio.aclose()``."""
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(base_url=base_url, api_version=version, timeout=TIMEOUT_MS),
    )
