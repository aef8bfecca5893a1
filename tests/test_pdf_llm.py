"""The LLM notes generator against a local server speaking the chat-completions API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from jobserver.pdf.llm import endpoint, parse_notes
from jobserver.pdf.offline import build_notes
from tests import pdfs
from tests.conftest import MakeApi
from tests.test_pdf_api import STAGES, events, run, stages_of

ANSWER = {
    "title": "Keeping Bees in the City",
    "summary": "A guide to urban hives. It covers health, harvest and winter.",
    "keyPoints": [{"text": "Mites are the main threat.", "page": 3},
                  {"text": "Harvest capped frames.", "page": 99}],
    "keywords": ["urban beekeeping", "varroa", "honey"],
}  # fmt: skip


class FakeModel:
    """A chat-completions endpoint; ``reply`` decides each answer."""

    def __init__(self, reply: Callable[[dict[str, Any]], web.StreamResponse | str]) -> None:
        self.reply = reply
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        answer = self.reply(body)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
        })  # fmt: skip


async def model_server(aiohttp_server: Any, model: FakeModel) -> str:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/v1"))


async def test_notes_come_from_the_model_when_one_is_configured(
    make_api: MakeApi, aiohttp_server: Any
) -> None:
    model = FakeModel(lambda body: "```json\n" + orjson.dumps(ANSWER).decode() + "\n```")
    url = await model_server(aiohttp_server, model)
    api = await make_api(llm_url=url, llm_model="test-model", llm_api_key="k-123")
    done = await run(api, pdfs.outline_pdf())
    assert done["status"] == "completed", done["error"]
    _, note = await api.get(f"/api/notes/{done['result']['noteId']}")
    assert note["generator"] == "llm:test-model" and note["title"] == ANSWER["title"]
    assert note["summary"] == ANSWER["summary"] and note["keywords"] == ANSWER["keywords"]
    assert [(p["text"], p["page"]) for p in note["keyPoints"]] == [
        ("Mites are the main threat.", 3), ("Harvest capped frames.", 5)]  # page kept in range
    # Sections stay the document's own outline.
    titles = [s["title"] for s in note["sections"]]
    assert all(f"Chapter {n}: {h}" in titles for n, (h, _) in enumerate(pdfs.SECTIONS, 1))
    assert stages_of(await events(api, done["jobId"]))[1:] == STAGES

    [(headers, body)] = model.requests
    assert headers["Authorization"] == "Bearer k-123" and body["model"] == "test-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    assert "[page 1]" in user and "[page 5]" in user and "Varroa mites" in user

    again = await run(api, pdfs.outline_pdf())
    assert again["result"]["cacheHit"] is True, again["result"]
    assert again["result"]["title"] == ANSWER["title"]
    assert len(model.requests) == 1


def _server_error(body: dict[str, Any]) -> web.StreamResponse:
    return web.json_response({"error": {"message": "overloaded"}}, status=503)


@pytest.mark.parametrize(
    "reply",
    [_server_error, lambda body: "I am sorry, I cannot do that.", lambda body: '{"title": 3}'],
    ids=["http-503", "not-json", "wrong-shape"],
)
async def test_any_model_failure_falls_back_to_the_offline_notes(
    make_api: MakeApi, aiohttp_server: Any, reply: Any
) -> None:
    model = FakeModel(reply)
    api = await make_api(llm_url=await model_server(aiohttp_server, model), llm_model="m")
    data = pdfs.text_pdf(3)
    done = await run(api, data)
    assert done["status"] == "completed", done["error"]
    _, note = await api.get(f"/api/notes/{done['result']['noteId']}")
    assert note["generator"] == "offline" and note["title"] == "Urban Beekeeping Guide"
    assert len(model.requests) == 1
    # Offline notes are not cached as the model's: the next upload asks the model again.
    await run(api, data)
    assert len(model.requests) == 2


async def test_a_model_slower_than_its_timeout_falls_back(
    make_api: MakeApi, aiohttp_server: Any
) -> None:
    release = asyncio.Event()

    class Slow(FakeModel):
        async def handle(self, request: web.Request) -> web.StreamResponse:
            self.requests.append((dict(request.headers), await request.json()))
            await release.wait()
            return web.json_response({})

    model = Slow(lambda body: "")
    api = await make_api(llm_url=await model_server(aiohttp_server, model),
                         llm_timeout_seconds=0.3)  # fmt: skip
    try:
        done = await run(api, pdfs.text_pdf(2))
    finally:
        release.set()
    assert done["status"] == "completed", done["error"]
    _, note = await api.get(f"/api/notes/{done['result']['noteId']}")
    assert note["generator"] == "offline"


def test_endpoint_accepts_a_base_url_or_the_full_address() -> None:
    assert endpoint("http://127.0.0.1:9/v1/") == "http://127.0.0.1:9/v1/chat/completions"
    full = "http://127.0.0.1:9/v1/chat/completions"
    assert endpoint(full) == full


def test_parse_notes_rejects_answers_without_a_summary() -> None:
    from jobserver.pdf.extract import Document

    draft = build_notes(Document(("Bees make honey in hives all summer long, every year.",)))
    with pytest.raises(ValueError):
        parse_notes('{"title": "x"}', draft, "llm:m")
    with pytest.raises(ValueError):
        parse_notes("no json here", draft, "llm:m")
