"""The optional LLM notes generator: an OpenAI-compatible chat-completions endpoint.

Used only when ``llm_url`` is set. Any failure (network, status, timeout, an answer that is
not the JSON asked for) falls back to the offline notes, which the parser always makes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
import orjson

from .extract import Document
from .notes import KeyPoint, NotesContent

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 24_000
MAX_KEY_POINTS = 8
MAX_KEYWORDS = 12

SYSTEM_PROMPT = (
    "You write concise study notes about a document. Reply with one JSON object and nothing "
    'else, with these keys: "title" (the document\'s title), "summary" (two to four sentences), '
    '"keyPoints" (at most 8 objects {"text": one sentence, "page": the page number it comes '
    'from}) and "keywords" (at most 12 short terms from the document).'
)


def endpoint(url: str) -> str:
    """``url`` may be the API base (``.../v1``) or the full chat-completions address."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def prompt(document: Document) -> str:
    parts: list[str] = []
    budget = MAX_PROMPT_CHARS
    for number, text in enumerate(document.pages, start=1):
        chunk = f"[page {number}]\n{' '.join(text.split())}\n"
        if len(chunk) > budget:
            parts.append(chunk[:budget])
            break
        parts.append(chunk)
        budget -= len(chunk)
    return "".join(parts)


def _json_object(content: str) -> dict[str, Any]:
    content = re.sub(r"^```(?:json)?|```$", "", content.strip()).strip()
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    data = orjson.loads(content[start : end + 1])
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    return data


def parse_notes(content: str, draft: NotesContent, generator: str) -> NotesContent:
    """The model's answer as notes; sections stay the draft's (outline or headings)."""
    data = _json_object(content)
    title, summary = data.get("title"), data.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError("the answer has no summary")
    points: list[KeyPoint] = []
    for item in data.get("keyPoints") or []:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        page = item.get("page")
        if isinstance(page, bool) or not isinstance(page, int):
            page = 1
        points.append(KeyPoint(item["text"].strip(), min(max(1, page), draft.page_count or 1)))
    words = [k.strip() for k in data.get("keywords") or [] if isinstance(k, str) and k.strip()]
    return NotesContent(
        title=title.strip()[:160] if isinstance(title, str) and title.strip() else draft.title,
        summary=summary.strip(),
        key_points=tuple(points[:MAX_KEY_POINTS]) or draft.key_points,
        sections=draft.sections,
        keywords=tuple(words[:MAX_KEYWORDS]) or draft.keywords,
        page_count=draft.page_count,
        generator=generator,
        sections_from=draft.sections_from,
    )


class LlmGenerator:
    """Notes from a chat-completions model, falling back to the offline draft on any error.

    Args:
        url: the API base or the full chat-completions URL.
        model: sent as ``model`` in each request.
        api_key: sent as a bearer token when not empty.
        timeout: seconds one request may take.
    """

    needs_text = True

    def __init__(self, url: str, model: str, api_key: str, timeout: float) -> None:
        self.url = endpoint(url)
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"llm:{model}"
        self.label = f"Generating notes with {model}"
        self.failures = 0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _ask(self, text: str) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": text},
            ],
        }
        async with self._session.post(
            self.url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
        ) as resp:
            if resp.status != 200:
                raise ValueError(f"the endpoint answered {resp.status}")
            data = await resp.json(content_type=None)
        content = data["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("the answer has no message content")
        return content

    async def generate(self, draft: NotesContent, document: Document | None) -> NotesContent:
        if document is None:
            return draft
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._ask(prompt(document))
            return parse_notes(answer, draft, self.name)
        except Exception as exc:  # any failure at all: the offline notes are good notes too
            self.failures += 1
            log.warning("LLM notes failed (%s: %s); using the offline notes",
                        type(exc).__name__, exc)  # fmt: skip
            return draft
