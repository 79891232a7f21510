"""What one model call carries through the stages, and how stages are chained."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stellargate.core.request import ChatRequest
from stellargate.core.usage import Usage
from stellargate.dialects.base import Dialect
from stellargate.providers.base import Target
from stellargate.storage.records import KeyRecord
from stellargate.web import Request, Result

if TYPE_CHECKING:
    from stellargate.pipeline.deployments import ModelGroup
    from stellargate.promptlog import Transcript


@dataclass(slots=True)
class Context:
    http: Request
    endpoint: str  # the scope it needs: chat, completions, embeddings, ...
    dialect: Dialect
    key: KeyRecord | None = None
    request: ChatRequest | None = None
    # Non-chat endpoints (embeddings, images) carry their canonical request here and the model id
    # in ``model``, which stages read when there is no ChatRequest.
    payload: Any = None
    model: str = ""
    target: Target | None = None
    # The model group routing chose; the Invoker picks a deployment of it per attempt.
    route: ModelGroup | None = None
    usage: Usage | None = None
    usage_estimated: bool = False
    streamed: bool = False
    status: int = 200
    error_code: str | None = None
    ttft_ms: float | None = None
    attempts: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # The gateway's own BPE count of the chat prompt, once something needed it (estimate.py).
    prompt_tokens: int | None = None
    # Only for a key with log_prompts on: the answer's text as the client gets it (promptlog.py).
    transcript: Transcript | None = None

    @property
    def request_id(self) -> str:
        return self.http.request_id

    def counted_prompt_tokens(self) -> int | None:
        """The prompt's token count if a stage already made one (the limits stage's reservation or
        the context-window check), else None: reading it never counts."""
        if self.prompt_tokens is not None:
            return self.prompt_tokens
        reserved = self.meta.get("reserved")
        if isinstance(reserved, dict) and self.request is not None:
            n = reserved.get("prompt_tokens")
            if isinstance(n, int):
                return n
        return None


Next = Callable[[Context], Awaitable[Result]]
Stage = Callable[[Context, Next], Awaitable[Result]]


def chain(stages: Sequence[Stage], terminal: Next) -> Next:
    """Compose stages once at start-up into one callable: stage[0] runs first."""
    call = terminal
    for stage in reversed(stages):
        call = _bind(stage, call)
    return call


def _bind(stage: Stage, nxt: Next) -> Next:
    async def run(ctx: Context) -> Result:
        return await stage(ctx, nxt)

    return run
