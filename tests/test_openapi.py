"""The OpenAPI document is true: real responses over a real socket validate against it, every
route is described and every described operation is exercised here."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from jobserver.web.keys import POOL
from tests import pdfs
from tests.conftest import ApiClient, MakeApi
from tests.test_api import wait_status

# Served by the app but not HTTP API: the page, its files, the WebSocket (docs/websocket.md).
UNDESCRIBED = re.compile(r"^(/|/static(/.*)?|/ws)$")
METHODS = ("get", "put", "post", "delete", "patch")


def pattern(path: str) -> str:
    """A path with its {parameters} blanked, so /api/jobs/{job_id} matches /api/jobs/{jobId}."""
    return re.sub(r"\{[^}]+\}", "{}", path)


class Checked:
    """Calls the app over its socket and validates each request and response with openapi-core.

    Args:
        api: a signed-in client.
        document: the document as served at /api/openapi.json.
    """

    def __init__(self, api: ApiClient, document: dict[str, Any]) -> None:
        self.api = api
        self.document = document
        # Markdown is text: check it as a string, as openapi-core does text/plain.
        config = Config(extra_media_type_deserializers={"text/markdown": bytes.decode})
        self.openapi = OpenAPI.from_dict(document, config=config)
        self.templates = {pattern(p): p for p in document["paths"]}
        self.seen: set[tuple[str, str, int]] = set()

    def template(self, path: str) -> str:
        # The most literal template first: /api/notes/{}.md before /api/notes/{}.
        for blank, template in sorted(self.templates.items(), key=lambda t: -len(t[0])):
            regex = "^" + re.escape(blank).replace(r"\{\}", "[^/.]+") + "$"
            if re.match(regex, path):
                return template
        raise AssertionError(f"{path} is not in the OpenAPI document")

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        form: aiohttp.FormData | None = None,
        token: bool = True,
        valid_request: bool | None = None,
    ) -> tuple[int, Any]:
        """One real request; ``valid_request=False`` for the ones meant to be refused.

        A request without the token is valid only for the public operations.
        """
        headers = dict(self.api.headers) if token else {}
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        if form is not None:
            headers["Content-Type"] = "multipart/form-data"
            valid_request = False  # openapi-core does not parse multipart bodies
        self.api.client.session.cookie_jar.clear()  # the bearer header (or nothing) only
        sent = form if form is not None else data
        send_headers = {k: v for k, v in headers.items() if form is None or k != "Content-Type"}
        async with self.api.client.request(method, url, data=sent, headers=send_headers) as resp:
            status, content, ctype = resp.status, await resp.read(), resp.content_type
            resp_headers = dict(resp.headers)
        parts = urlsplit(url)
        request = MockRequest(
            "http://127.0.0.1", method.lower(), parts.path, args=dict(parse_qsl(parts.query)),
            headers=headers, data=data or b"", content_type=headers.get("Content-Type", ""),
        )  # fmt: skip
        response = MockResponse(content, status, resp_headers, content_type=ctype)
        self.openapi.validate_response(request, response)
        template = self.template(parts.path)
        if valid_request is None:
            public = self.document["paths"][template][method.lower()].get("security") == []
            valid_request = token or public
        if valid_request:
            self.openapi.validate_request(request)
        self.seen.add((method.lower(), template, status))
        return status, orjson.loads(content) if ctype == "application/json" else content


def described(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, path, status) for every response the document describes."""
    for path, item in document["paths"].items():
        for method in METHODS:
            for status in item.get(method, {}).get("responses", {}):
                yield method, path, status


@pytest.fixture
async def checked(make_api: MakeApi) -> Checked:
    api = await make_api(max_body_bytes=4096, max_upload_bytes=200_000)
    async with api.client.get("/api/openapi.json") as resp:  # no token needed
        assert resp.status == 200
        document = await resp.json()
    return Checked(api, document)


async def test_every_route_is_described(checked: Checked) -> None:
    routes = {
        (route.method.lower(), pattern(route.resource.canonical))
        for route in checked.api.app.router.routes()
        if route.resource is not None and route.method in {m.upper() for m in METHODS}
        and not UNDESCRIBED.match(route.resource.canonical)
    }  # fmt: skip
    documented = {(m, pattern(p)) for m, p, _ in described(checked.document)}
    assert routes - documented == set(), "routes missing from jobserver/web/openapi.py"
    assert documented - routes == set(), "described routes the app does not serve"


async def test_real_responses_match_the_document(checked: Checked) -> None:
    c = checked
    await exercise_jobs(c)
    await exercise_pdfs_notes_and_events(c)
    await exercise_debug(c)
    await exercise_operations(c)
    # Every described operation was exercised (a new route needs a case here).
    operations = {(m, p) for m, p, _ in described(c.document)}
    exercised = {(m, p) for m, p, _ in c.seen}
    assert operations - exercised == set(), "operations this test never called"


async def exercise_jobs(c: Checked) -> None:
    # Session.
    status, _ = await c.call("POST", "/api/session", body={"userId": "bob"}, token=False)
    assert status == 200
    status, _ = await c.call("POST", "/api/session", body={"userId": "no spaces"}, token=False,
                             valid_request=False)
    assert status == 400
    assert (await c.call("GET", "/api/session"))[0] == 200
    assert (await c.call("GET", "/api/session", token=False))[0] == 401
    status, methods = await c.call("GET", "/api/session/methods", token=False)
    assert status == 200 and "open" in methods["methods"]
    status, bob = await c.call("POST", "/api/session", body={"userId": "bob"}, token=False)
    refresh = {"refreshToken": bob["refreshToken"]}
    assert (await c.call("POST", "/api/session/refresh", body=refresh, token=False))[0] == 200
    status, _ = await c.call("POST", "/api/session", body={"userId": "bob", "password": "x" * 9},
                             token=False)  # fmt: skip
    assert status == 403  # this server has no accounts
    # Without a token it still answers (and clears the cookies); the client keeps its token.
    assert (await c.call("DELETE", "/api/session", token=False))[0] == 200
    assert (await c.call("POST", "/api/session/refresh", body={}, token=False))[0] == 401
    assert (await c.call("GET", "/api/meta"))[0] == 200
    # Jobs: created, deduplicated, refused.
    new = {"type": "demo.sleep", "payload": {"seconds": 0, "steps": 1}, "idempotencyKey": "k"}
    status, job = await c.call("POST", "/api/jobs", body=new)
    assert status == 202
    assert (await c.call("POST", "/api/jobs", body=new))[0] == 200
    batch = {"jobs": [new, {"type": "demo.sleep", "payload": {"seconds": 0}}]}
    status, made = await c.call("POST", "/api/jobs", body=batch)
    assert status == 202 and [j["created"] for j in made["jobs"]] == [False, True]
    status, refused = await c.call("POST", "/api/jobs", body={"jobs": [new, {"type": "no.such"}]})
    assert status == 400 and refused["error"]["index"] == 1
    assert (await c.call("POST", "/api/jobs", body={"type": "no.such"}))[0] == 400
    assert (await c.call("POST", "/api/jobs", raw=b"x" * 8192, valid_request=False))[0] == 413
    assert (await c.call("POST", "/api/jobs", body=new, token=False))[0] == 401
    await wait_status(c.api, job["jobId"], "completed")
    # Reading.
    assert (await c.call("GET", f"/api/jobs/{job['jobId']}"))[0] == 200
    assert (await c.call("GET", "/api/jobs/nope"))[0] == 404
    assert (await c.call("GET", "/api/jobs/nope", token=False))[0] == 401
    status, page = await c.call("GET", "/api/jobs?status=completed&limit=1")
    assert status == 200 and page["jobs"][0]["result"] is not None
    assert (await c.call("GET", "/api/jobs?status=bogus", valid_request=False))[0] == 400
    assert (await c.call("GET", "/api/jobs", token=False))[0] == 401
    # Cancel and retry, allowed and not.
    _, later = await c.call("POST", "/api/jobs", body={"type": "demo.sleep", "delaySeconds": 60})
    for action in ("cancel", "retry"):
        assert (await c.call("POST", f"/api/jobs/{later['jobId']}/{action}"))[0] == 200
        assert (await c.call("POST", f"/api/jobs/{job['jobId']}/{action}"))[0] == 409
        assert (await c.call("POST", f"/api/jobs/nope/{action}"))[0] == 404
        assert (await c.call("POST", f"/api/jobs/nope/{action}", token=False))[0] == 401
    status, failed = await c.call("POST", "/api/jobs", body={"type": "demo.fail"})
    await wait_status(c.api, failed["jobId"], "failed")
    status, body = await c.call("GET", f"/api/jobs/{failed['jobId']}")
    assert body["error"]["code"] == "DEMO_FAILURE"
    # The dashboard's routes: a job's events, search and counts, bulk, removal.
    status, events = await c.call("GET", f"/api/jobs/{job['jobId']}/events?limit=1")
    assert status == 200 and events["events"][0]["type"] == "job.queued" and events["nextAfter"]
    assert (await c.call("GET", "/api/jobs/nope/events"))[0] == 404
    assert (await c.call("GET", f"/api/jobs/{job['jobId']}/events?limit=0",
                         valid_request=False))[0] == 400  # fmt: skip
    status, page = await c.call("GET", "/api/jobs?q=demo.fail")
    assert status == 200 and page["total"] == page["counts"]["all"] == 1
    status, bulk = await c.call("POST", "/api/jobs/bulk",
                                body={"action": "remove", "ids": [failed["jobId"], "nope"]})
    assert status == 200 and [r["ok"] for r in bulk["results"]] == [True, False]
    assert (await c.call("POST", "/api/jobs/bulk", body={"action": "x", "ids": ["a"]},
                         valid_request=False))[0] == 400  # fmt: skip
    assert (await c.call("DELETE", f"/api/jobs/{job['jobId']}"))[0] == 200
    assert (await c.call("DELETE", f"/api/jobs/{job['jobId']}"))[0] == 404
    _, waiting = await c.call("POST", "/api/jobs", body={"type": "demo.sleep", "delaySeconds": 60})
    assert (await c.call("DELETE", f"/api/jobs/{waiting['jobId']}"))[0] == 409
    assert (await c.call("POST", f"/api/jobs/{waiting['jobId']}/cancel"))[0] == 200
    status, removed = await c.call("DELETE", "/api/jobs?status=cancelled")
    assert status == 200 and removed["removed"] >= 1
    assert (await c.call("DELETE", "/api/jobs?status=queued", valid_request=False))[0] == 400


async def exercise_pdfs_notes_and_events(c: Checked) -> None:
    def pdf_form(data: bytes) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(data), filename="bees.pdf",
                       content_type="application/pdf")
        return form

    status, job = await c.call("POST", "/api/jobs", form=pdf_form(pdfs.text_pdf(2)))
    assert status == 202 and job["type"] == "pdf-notes"
    assert (await c.call("POST", "/api/jobs", form=pdf_form(pdfs.not_a_pdf())))[0] == 415
    big = pdf_form(b"%PDF-1.4\n" + b"0" * 300_000)
    assert (await c.call("POST", "/api/jobs", form=big))[0] == 413
    done = await wait_status(c.api, job["jobId"], "completed", timeout=60)
    # Events: all of them, a resync, refusals.
    status, page = await c.call("GET", f"/api/events?since=0&jobId={job['jobId']}&timeout=0")
    assert status == 200 and page["events"][-1]["type"] == "job.completed"
    assert page["cursor"] == done["lastSeq"]
    status, page = await c.call("GET", "/api/events?since=0&epoch=other&timeout=0")
    assert status == 200 and page["type"] == "resync"
    assert (await c.call("GET", "/api/events?timeout=600", valid_request=False))[0] == 400
    assert (await c.call("GET", "/api/events?userId=mallory&timeout=0"))[0] == 404
    assert (await c.call("GET", "/api/events?timeout=0", token=False))[0] == 401
    # Notes.
    status, notes = await c.call("GET", "/api/notes?limit=10")
    assert status == 200 and notes["notes"]
    note_id = notes["notes"][0]["noteId"]
    assert (await c.call("GET", f"/api/notes/{note_id}"))[0] == 200
    for path in (f"/api/notes/{note_id}.md", f"/api/notes/{note_id}/markdown"):
        status, text = await c.call("GET", path)
        assert status == 200 and isinstance(text, bytes) and text.startswith(b"#")
    for path in ("/api/notes/nope", "/api/notes/nope.md", "/api/notes/nope/markdown"):
        assert (await c.call("GET", path))[0] == 404
        assert (await c.call("GET", path, token=False))[0] == 401
    assert (await c.call("GET", "/api/notes?limit=0", valid_request=False))[0] == 400
    assert (await c.call("GET", "/api/notes", token=False))[0] == 401


async def exercise_debug(c: Checked) -> None:
    lag = "/api/debug/loop-lag"
    assert (await c.call("POST", lag, body={"seconds": 5, "intervalMs": 5}))[0] == 202
    assert (await c.call("POST", lag, body={"seconds": -1}, valid_request=False))[0] == 400
    assert (await c.call("GET", lag))[0] == 200
    assert (await c.call("DELETE", lag))[0] == 200
    for method in ("POST", "GET", "DELETE"):
        assert (await c.call(method, lag, token=False))[0] == 401


async def exercise_operations(c: Checked) -> None:
    assert (await c.call("GET", "/api/openapi.json", token=False))[0] == 200
    assert (await c.call("GET", "/healthz", token=False))[0] == 200
    assert (await c.call("GET", "/metrics", token=False))[0] == 200
    assert (await c.call("GET", "/readyz", token=False))[0] == 200
    await c.api.app[POOL].stop()
    assert (await c.call("GET", "/readyz", token=False))[0] == 503
