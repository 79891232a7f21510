"""The fake Gemini model: deterministic answers with FakeOpenAI's conventions, in Gemini's shapes.

Text is ``echo: <last user text>`` (``echoN:`` for candidate N > 0) with `` (saw K image(s))``;
"call NAME" in the last user text calls the declared functions named (several: parallel calls,
arguments fill the required properties with sample values); after function responses the answer
is ``tool results: name=result; ...``; JSON mime types answer a sample of responseSchema (or
``{"echo": text}``). ``[[block]]`` in the prompt blocks it (promptFeedback.blockReason SAFETY).
Tokens are words; each image costs 258 (Gemini's count for a small image); thinking models
(gemini-2.5*, gemini-3*) add THOUGHT_TOKENS thoughts per candidate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import secrets
from dataclasses import dataclass
from typing import Any

from tests.fakes._chat import apply_limits, mentioned_tools
from tests.fakes._gemini_request import Function, GenerateRequest
from tests.fakes._schema import sample_value
from tests.fakes._text import count_tokens, group_words, random_id

TOKENS_PER_IMAGE = 258
THOUGHT_TOKENS = 5
THINKING_PREFIXES = ("gemini-2.5", "gemini-3")
BLOCK_MARKER = "[[block]]"


@dataclass(frozen=True)
class Candidate:
    index: int
    text: str | None
    calls: tuple[dict[str, Any], ...]  # whole functionCall parts
    finish: str


@dataclass(frozen=True)
class Result:
    response_id: str
    model: str
    candidates: tuple[Candidate, ...]
    prompt_tokens: int
    thoughts: int
    blocked: bool = False

    @property
    def candidate_tokens(self) -> int:
        total = 0
        for c in self.candidates:
            total += count_tokens(c.text or "")
            for p in c.calls:
                fc = p["functionCall"]
                total += count_tokens(fc["name"]) + count_tokens(json.dumps(fc["args"]))
        return total


def _is_image(p: dict[str, Any]) -> bool:
    blob = p.get("inlineData") or p.get("fileData") or {}
    return str(blob.get("mimeType", "")).startswith("image/")


def _response_text(response: dict[str, Any]) -> str:
    for key in ("result", "output", "content"):
        if isinstance(response.get(key), str):
            return str(response[key])
    return json.dumps(response, separators=(",", ":"))


def last_user(req: GenerateRequest) -> tuple[str, int]:
    for c in reversed(req.contents):
        if c["role"] == "user" and not any("functionResponse" in p for p in c["parts"]):
            text = " ".join(p["text"] for p in c["parts"] if "text" in p)
            return text, sum(_is_image(p) for p in c["parts"])
    return "", 0


def _tool_results(req: GenerateRequest) -> str | None:
    last = req.contents[-1]
    responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
    if last["role"] != "user" or not responses:
        return None
    listing = "; ".join(f"{r['name']}={_response_text(r.get('response') or {})}" for r in responses)
    return f"tool results: {listing}"


def _planned(req: GenerateRequest) -> list[Function]:
    if not req.functions or req.mode == "NONE" or _tool_results(req) is not None:
        return []
    offered = [f for f in req.functions if not req.allowed or f.name in req.allowed]
    text = last_user(req)[0]
    mentioned: list[Function] = mentioned_tools(text, tuple(offered))  # type: ignore[arg-type]
    if not mentioned and req.mode == "ANY" and offered:
        mentioned = [offered[0]]
    return mentioned


def _call_parts(functions: list[Function], *, ids: bool, signed: bool) -> tuple[dict[str, Any], ...]:
    parts = []
    for n, f in enumerate(functions):
        args = sample_value(f.schema, text="sample", all_properties=False) if f.schema else {}
        fc: dict[str, Any] = {"name": f.name, "args": args if isinstance(args, dict) else {}}
        if ids:
            fc["id"] = random_id("", 8).lower()
        part: dict[str, Any] = {"functionCall": fc}
        if signed and n == 0:
            # Gemini 3 signs the first call of each step; the caller must send it back.
            part["thoughtSignature"] = base64.b64encode(secrets.token_bytes(24)).decode()
        parts.append(part)
    return tuple(parts)


def _answer(req: GenerateRequest, index: int) -> str:
    results = _tool_results(req)
    if results is not None:
        return results
    text, images = last_user(req)
    answer = "echo:" if index == 0 else f"echo{index}:"
    if text:
        answer += " " + text
    if images:
        answer += f" (saw {images} image{'s' if images != 1 else ''})"
    if req.mime == "application/json":
        if req.schema is not None:
            return json.dumps(sample_value(req.schema, text=answer, all_properties=True))
        return json.dumps({"echo": answer})
    return answer


def prompt_tokens(req: GenerateRequest) -> int:
    total = count_tokens(req.system)
    for c in req.contents:
        for p in c["parts"]:
            if "text" in p:
                total += count_tokens(p["text"])
            elif _is_image(p):
                total += TOKENS_PER_IMAGE
            elif "functionCall" in p:
                total += count_tokens(p["functionCall"]["name"]) + count_tokens(
                    json.dumps(p["functionCall"].get("args") or {})
                )
            elif "functionResponse" in p:
                total += count_tokens(json.dumps(p["functionResponse"].get("response") or {}))
    return max(total, 1)


def generate(req: GenerateRequest, *, call_ids: bool) -> Result:
    thinking = req.model.startswith(THINKING_PREFIXES)
    rid = random_id("", 22)
    if BLOCK_MARKER in last_user(req)[0]:
        return Result(rid, req.model, (), prompt_tokens(req), 0, blocked=True)
    functions = _planned(req)
    candidates = []
    for i in range(req.candidates):
        if functions:
            calls = _call_parts(functions, ids=call_ids, signed=req.model.startswith("gemini-3"))
            candidates.append(Candidate(i, None, calls, "STOP"))
            continue
        text, finish = apply_limits(_answer(req, i), req.stop, req.max_output_tokens)
        candidates.append(Candidate(i, text, (), "MAX_TOKENS" if finish == "length" else "STOP"))
    thoughts = THOUGHT_TOKENS * req.candidates if thinking else 0
    return Result(rid, req.model, tuple(candidates), prompt_tokens(req), thoughts)


def usage_metadata(r: Result, *, final: bool = True) -> dict[str, Any]:
    details = [{"modality": "TEXT", "tokenCount": r.prompt_tokens}]
    if not final:
        return {"promptTokenCount": r.prompt_tokens, "totalTokenCount": r.prompt_tokens,
                "promptTokensDetails": details}  # fmt: skip
    u: dict[str, Any] = {"promptTokenCount": r.prompt_tokens}
    if r.candidates:
        u["candidatesTokenCount"] = r.candidate_tokens
    u["totalTokenCount"] = r.prompt_tokens + r.candidate_tokens + r.thoughts
    u["promptTokensDetails"] = details
    if r.thoughts:
        u["thoughtsTokenCount"] = r.thoughts
    return u


def _envelope(r: Result, body: dict[str, Any], *, final: bool = True) -> dict[str, Any]:
    return {**body, "usageMetadata": usage_metadata(r, final=final), "modelVersion": r.model,
            "responseId": r.response_id}  # fmt: skip


def _blocked(r: Result) -> dict[str, Any]:
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
    return _envelope(r, {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings}})


def _content(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"parts": parts, "role": "model"}


def response_body(r: Result) -> dict[str, Any]:
    if r.blocked:
        return _blocked(r)
    candidates = []
    for c in r.candidates:
        parts = list(c.calls) if c.calls else [{"text": c.text or ""}]
        candidates.append({"content": _content(parts), "finishReason": c.finish, "index": c.index})
    return _envelope(r, {"candidates": candidates})


def stream_bodies(r: Result, *, words_per_chunk: int) -> list[dict[str, Any]]:
    """Every event of streamGenerateContent: text in word groups, calls whole, the finish and the
    complete usage in each candidate's last event (earlier events carry the prompt count only)."""
    if r.blocked:
        return [_blocked(r)]
    events: list[dict[str, Any]] = []
    for n, c in enumerate(r.candidates):
        last = n == len(r.candidates) - 1
        if c.calls:
            cand = {"content": _content(list(c.calls)), "finishReason": c.finish, "index": c.index}
            events.append(_envelope(r, {"candidates": [cand]}, final=last))
            continue
        pieces = group_words(c.text or "", words_per_chunk) or [""]
        for k, piece in enumerate(pieces):
            cand: dict[str, Any] = {"content": _content([{"text": piece}]), "index": c.index}
            if k == len(pieces) - 1:
                cand["finishReason"] = c.finish
            events.append(_envelope(r, {"candidates": [cand]}, final=last and k == len(pieces) - 1))
    return events


def embedding_values(model: str, text: str, dimensions: int | None) -> list[float]:
    """Deterministic unit vectors (768 wide; gemini-embedding-*: 3072), seeded by model and text;
    outputDimensionality truncates, then renormalises."""
    full = 3072 if model.startswith("gemini-embedding") else 768
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(full)][: dimensions or full]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
