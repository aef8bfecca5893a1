"""Cross-site request forgery in Chromium: a page on another port of 127.0.0.1 (same site, so
``SameSite=Strict`` lets the cookie go) tries to act as the signed-in user, or to sign the
browser in as someone else (login CSRF). Both are refused; the server's own page still works.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from playwright.sync_api import BrowserContext, Page

from tests.liveserver import LiveServer
from tests.security.conftest import EvilSite

# A text/plain form whose one field is built so the body reads as JSON: the classic way to
# post JSON cross-site without a CORS preflight.
FORM = """<!doctype html><form method="post" enctype="text/plain" action="{action}">
<input name='{head}' value='"}}'></form><script>document.forms[0].submit()</script>"""
FETCH = """<!doctype html><script>
fetch("{action}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: {body}}}).finally(() => {{
  document.title = "sent"; }});
</script>"""


def form_page(action: str, fields: dict[str, Any]) -> str:
    # {"a": 1, "x": "=  "} with the '=' the form puts between name and value.
    head = json.dumps({**fields, "x": ""})[:-2]
    return FORM.format(action=action, head=head)


def sign_in_on_own_page(page: Page, server: LiveServer, user: str) -> None:
    page.goto(server.url + "/")
    status = page.evaluate("""async (user) => (await fetch('/api/session', {method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({userId: user})})).status""", user)  # fmt: skip
    assert status == 200


def who_am_i(page: Page) -> Any:
    return page.evaluate("async () => (await (await fetch('/api/session')).json()).userId")


def own_page_post(page: Page, path: str, body: dict[str, Any]) -> int:
    status: int = page.evaluate("""async ([path, body]) => (await fetch(path, {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})).status""",
                                [path, body])  # fmt: skip
    return status


def jobs_of(server: LiveServer, user: str) -> list[Any]:
    jobs: list[Any] = server.get("/api/jobs", server.token(user))["jobs"]
    return jobs


def submit_form_from(
    context: BrowserContext, evil_site: EvilSite, server: LiveServer, path: str, fields: Any
) -> Any:
    """The attacker's page submits a form to ``path`` of the server; the JSON it got back."""
    evil_site.pages["/form"] = form_page(server.url + path, fields)
    attacker = context.new_page()
    with attacker.expect_navigation(url=server.url + path):
        attacker.goto(evil_site.url + "/form")
    answer = json.loads(attacker.locator("body").inner_text())
    attacker.close()
    return answer


def test_a_page_on_another_port_cannot_post_with_the_victims_cookie(
    context: BrowserContext, live: LiveServer, evil_site: EvilSite
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    page = context.new_page()
    sign_in_on_own_page(page, live, victim)
    job = {"type": "demo.sleep", "payload": {"seconds": 0}}
    assert own_page_post(page, "/api/jobs", job) == 202  # the cookie works from its own page
    assert len(jobs_of(live, victim)) == 1

    answer = submit_form_from(context, evil_site, live, "/api/jobs", job)
    assert answer["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    evil_site.pages["/fetch"] = FETCH.format(action=live.url + "/api/jobs", body=json.dumps(
        json.dumps(job)))  # fmt: skip
    attacker = context.new_page()
    attacker.goto(evil_site.url + "/fetch")
    attacker.wait_for_function("document.title === 'sent'")
    assert len(jobs_of(live, victim)) == 1  # neither the form nor the fetch made a job
    assert who_am_i(page) == victim


def test_a_page_on_another_port_cannot_sign_the_browser_in_as_someone_else(
    context: BrowserContext, live: LiveServer, evil_site: EvilSite
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    page = context.new_page()
    sign_in_on_own_page(page, live, victim)
    answer = submit_form_from(context, evil_site, live, "/api/session", {"userId": "mallory"})
    assert answer["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    assert who_am_i(page) == victim  # still the victim's own session, not mallory's
    # A browser signing in on the server's own page still can.
    sign_in_on_own_page(page, live, "mallory")
    assert who_am_i(page) == "mallory"
