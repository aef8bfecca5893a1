"""The sign-in form in Chromium: it offers the methods the server has on (issue 13, item 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from jobserver.auth import issue_token
from tests.browser.conftest import Session
from tests.liveserver import SECRET, LiveServer
from tests.security.helpers import add_account

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Reached through a proxy (so no open sign-in), with one account and no shared secret."""
    data = tmp_path_factory.mktemp("password") / "data"
    add_account(data, "Dana", PASSWORD)
    live = LiveServer(data, "--behind-proxy", env={"JOBSERVER_SECRET": ""}).start()
    yield live
    live.stop()


def test_password_sign_in_form(
    password_server: LiveServer, make_session: Callable[..., Session]
) -> None:
    session = make_session(password_server, user="dana")
    page = session.page
    page.goto(password_server.url + "/")
    expect(page.get_by_label("Password")).to_be_visible()
    expect(page.locator("#signin-open-note")).to_be_hidden()  # nobody can pick any name here
    expect(page.locator("#signin-token-form-wrap")).to_be_hidden()
    page.get_by_label("Your name").fill("Dana")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-error")).to_have_text(
        "That name and password do not match. Check them and try again. (BAD_CREDENTIALS)")
    expect(page.get_by_label("Password")).to_be_focused()
    # A short wrong one said "That name cannot be used" (the server answered INVALID_PAYLOAD).
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-error")).to_have_text(
        "That name and password do not match. Check them and try again. (BAD_CREDENTIALS)")
    # The password box is drawn like the name box above it, not as the browser's bare default.
    boxes = [page.get_by_label(name).bounding_box() for name in ("Your name", "Password")]
    assert boxes[0] and boxes[1] and boxes[0]["width"] == boxes[1]["width"], boxes
    assert boxes[0]["height"] == boxes[1]["height"], boxes
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    session.wait_connection("live")
    expect(page.locator("#who")).to_have_text("dana")
    token = page.context.cookies()[0]["value"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Password")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_value("")
    # The session ended on the server, not only in this browser.
    status = page.evaluate(
        """async (token) => (await fetch('/api/session',
             { headers: { Authorization: 'Bearer ' + token } })).status""", token,
    )  # fmt: skip
    assert status == 401


def test_open_sign_in_says_anyone_can_pick_any_name(
    server: LiveServer, make_session: Callable[..., Session]
) -> None:
    session = make_session(server)
    page = session.page
    page.goto(server.url + "/")
    expect(page.locator("#signin-open-note")).to_be_visible()
    expect(page.locator("#signin-open-note")).to_contain_text("anyone")
    expect(page.get_by_label("Password")).to_be_hidden()
    session.open()
    expect(page.locator("#who")).to_have_text(session.user)



def test_a_token_only_server_shows_its_token_form_unfolded(
    tmp_path: Path, make_session: Callable[..., Session]
) -> None:
    """Its one way in sat folded in a <details> under "Sign in": a triangle and a question."""
    live = LiveServer(tmp_path / "data", "--behind-proxy").start()  # a shared secret, no accounts
    try:
        session = make_session(live, user="erin")
        page = session.page
        page.goto(live.url + "/")
        expect(page.get_by_label("Sign-in token")).to_be_visible()
        expect(page.get_by_label("Sign-in token")).to_be_focused()
        expect(page.get_by_label("Your name")).to_be_hidden()
        page.get_by_label("Sign-in token").fill(issue_token(SECRET, "erin", 600))
        page.get_by_role("button", name="Use the token").click()
        session.wait_connection("live")
        expect(page.locator("#who")).to_have_text("erin")
    finally:
        live.stop()
