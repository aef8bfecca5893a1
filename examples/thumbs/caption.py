"""``thumbs.caption``: ask an HTTP captioning service about an image, on the event loop.

The service is the operator's choice, not the submitter's (a URL in the payload would let
anyone make the server fetch anything): ``THUMBS_API_URL`` (default
``http://127.0.0.1:8765/v1``) names it, and ``POST {THUMBS_API_URL}/describe`` with
``{"image": <base64>}`` answers ``{"caption": "...", "tags": [...]}``. ``fakeapi.py`` is such
a service, to try the example with.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from jobserver import JobContext, JobError, Stage, job_type

from .images import check_image, label

ASKING = Stage("asking", "Asking the captioning service")
READING = Stage("reading", "Reading its answer")

DEFAULT_API = "http://127.0.0.1:8765/v1"


def api_url() -> str:
    return os.environ.get("THUMBS_API_URL", DEFAULT_API).rstrip("/")


@job_type(
    "thumbs.caption", display_name="Caption", stages=[ASKING, READING], timeout=30,
    max_attempts=3, backoff=0.5, payload=check_image, label=label,
)  # fmt: skip
async def caption(ctx: JobContext) -> dict[str, Any]:
    """Runs on the server's event loop: an ``async def`` taking a ``JobContext``."""
    url = f"{api_url()}/describe"
    await ctx.progress(ASKING, 20, f"Sending {ctx.payload.get('filename')} to {url}")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session,
            session.post(url, json={"image": ctx.payload["image"]}) as resp,
        ):
            if resp.status >= 500:  # the service is down: worth another attempt
                raise JobError("CAPTION_API_DOWN", f"The captioning service answered "
                               f"{resp.status}", recoverable=True)  # fmt: skip
            if resp.status >= 400:  # it refused this image: trying again will not help
                raise JobError("CAPTION_REFUSED", f"The captioning service refused the "
                               f"image ({resp.status}): {(await resp.text())[:200]}")  # fmt: skip
            await ctx.progress(READING, 70, "Reading the caption")
            answer = await resp.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise JobError("CAPTION_API_DOWN", f"Cannot reach the captioning service at {url}: "
                       f"{type(exc).__name__}", recoverable=True) from None  # fmt: skip
    text, tags = answer.get("caption"), answer.get("tags", [])
    if not isinstance(text, str) or not isinstance(tags, list):
        raise JobError("CAPTION_API_BAD_ANSWER", "The captioning service's answer has no "
                       "caption", recoverable=True)  # fmt: skip
    ctx.log.info("caption of %s: %s", ctx.job.label, text)
    return {"title": text, "caption": text, "tags": [str(t) for t in tags][:20]}
