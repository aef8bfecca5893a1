"""The React hook and the Vue composable in Chromium against the real server: the examples in
examples/react and examples/vue, bundled by esbuild, start jobs and follow them to the end.
Each app is served by a second local HTTP server (another origin, listed in the server's
allowed_origins), as a single-page app usually is: it reaches the API with CORS and a token."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.liveserver import ROOT, LiveServer
from tests.security.conftest import EvilSite

ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
DEFINES = [
    "--define:process.env.NODE_ENV='production'".replace("'", '"'),
    "--define:__VUE_OPTIONS_API__=true", "--define:__VUE_PROD_DEVTOOLS__=false",
    "--define:__VUE_PROD_HYDRATION_MISMATCH_DETAILS__=false",
]  # fmt: skip
ENTRIES = {"react": "examples/react/App.jsx", "vue": "examples/vue/App.js"}
PAGE = """<!doctype html><meta charset="utf-8"><title>{name}</title><div id="root"></div>
<script>window.jobserverConfig = {config};</script><script src="/{name}.js"></script>"""


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each example bundled as one script (the page itself keeps no build step)."""
    assert ESBUILD.exists(), "npm ci first (scripts/test does)"
    out = tmp_path_factory.mktemp("bundles")
    built = {}
    for name, entry in ENTRIES.items():
        target = out / f"{name}.js"
        subprocess.run([str(ESBUILD), entry, "--bundle", "--jsx=automatic", *DEFINES,
                        f"--outfile={target}", "--log-level=warning"],
                       cwd=ROOT, check=True, timeout=60)  # fmt: skip
        built[name] = Path(target).read_text()
    return built


@pytest.fixture(scope="module")
def site() -> Iterator[EvilSite]:
    site = EvilSite()
    yield site
    site.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory, site: EvilSite) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("hooks") / "data", "--demo-jobs",
        env={"JOBSERVER_ALLOWED_ORIGINS": site.url},
    ).start()  # fmt: skip
    yield live
    live.stop()


def open_example(
    browser: Browser, server: LiveServer, site: EvilSite, bundle: str, name: str
) -> Page:
    """The example app on its own origin, given the server's address and a user's token."""
    token = server.token(f"{name}-{uuid.uuid4().hex[:6]}")
    config = json.dumps({"baseUrl": server.url, "token": token})
    site.pages[f"/{name}"] = PAGE.format(name=name, config=config)
    site.pages[f"/{name}.js"] = ("text/javascript", bundle.encode())
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site.url}/{name}")
    page.errors = errors  # type: ignore[attr-defined]
    return page


@pytest.mark.parametrize("name", ["react", "vue"])
def test_the_hook_follows_jobs_to_completion_and_failure(
    browser: Browser, demo_server: LiveServer, site: EvilSite, bundles: dict[str, str], name: str
) -> None:
    page = open_example(browser, demo_server, site, bundles[name], name)
    try:
        expect(page.locator("main")).to_have_attribute("data-connection", "live")
        expect(page.locator("main")).to_have_attribute("data-polling", "false")
        page.get_by_role("button", name="Sleep").click()
        row = page.locator("li.job").first
        expect(row).to_have_attribute("data-status", "active")  # seen while it runs
        job_id = row.get_attribute("data-job-id")
        expect(row).to_have_attribute("data-status", "completed", timeout=30_000)
        expect(row.locator("progress")).to_have_attribute("value", "100")
        meta = demo_server.get("/api/meta", demo_server.token("meta-reader"))
        expect(row.locator(".stage")).to_have_text(meta["stageNames"]["completed"])
        expect(page.locator(".finished")).to_have_text(f"{job_id}:ok")
        expect(page.locator(".latest")).to_have_text(f"{job_id} 100")

        page.get_by_role("button", name="Fail").click()
        failed = page.locator("li.job[data-status='failed']")
        expect(failed.locator(".message")).to_have_text("It broke", timeout=30_000)
        failed_id = failed.get_attribute("data-job-id")
        expect(page.locator(".finished")).to_have_text(f"{job_id}:ok {failed_id}:It broke")

        row.get_by_role("button", name="Stop following").click()
        expect(page.locator("li.job")).to_have_count(1)
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
