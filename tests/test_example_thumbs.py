"""The worked example end to end: ``--jobs examples.thumbs`` in the real server, a captioning
service on 127.0.0.1, and the example's own client script following the jobs."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from examples.thumbs.fakeapi import CALLS, make_app
from jobserver.client import BadRequest, Client
from tests.liveserver import ROOT, LiveServer


def sky(path: Path, width: int = 640, height: int = 360) -> Path:
    """A wide blue picture with a gradient (so PNG has something to compress)."""
    image = Image.new("RGB", (width, height))
    image.putdata([(30, 60 + y * 100 // height, 190 + x * 60 // width)
                   for y in range(height) for x in range(width)])  # fmt: skip
    image.save(path, "PNG")
    return path


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, web.Application]]:
    """The stand-in captioning service, answering 503 to its first call."""
    app = make_app(fail_first=1)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1", app
    await runner.cleanup()


async def test_the_example_runs_end_to_end_and_is_followed_with_the_client(
    api: tuple[str, web.Application], tmp_path: Path
) -> None:
    url, app = api
    server = LiveServer(tmp_path / "data", "--jobs", "examples.thumbs",
                        env={"THUMBS_API_URL": url})  # fmt: skip
    await asyncio.to_thread(server.start)
    try:
        image = sky(tmp_path / "sky.png")
        # The example's own script: submits both jobs and prints every event as it comes.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "examples.thumbs.follow", str(image), "--server", server.url,
            "--user", "walker", "--out", str(tmp_path), "--timeout", "90",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        text = out.decode()
        assert proc.returncode == 0, text + err.decode()
        for stage in ("Decoding the image", "Encoding the thumbnail",
                      "Asking the captioning service"):  # fmt: skip
            assert stage in text, text
        assert "caption: A wide, mostly blue picture of 640x360" in text, text
        with Image.open(tmp_path / "sky.thumb.png") as thumb:
            assert thumb.size == (128, 72)
        assert len(app[CALLS]) == 2  # the service's 503 was retried

        async with await Client.sign_in(server.url, "walker") as client:
            meta = await client.meta()
            assert meta.stageNames["resizing"] == "Resizing it"
            types = meta.raw["types"]
            assert types["thumbs.thumbnail"]["displayName"] == "Thumbnail"
            assert types["thumbs.thumbnail"]["stages"] == ["decoding", "resizing", "encoding"]
            assert types["thumbs.caption"]["stages"] == ["asking", "reading"]
            page = await client.list()
            by_type = {job.type: job for job in page.jobs}
            assert by_type["thumbs.caption"].attempts == 2
            thumb_job = by_type["thumbs.thumbnail"]
            assert thumb_job.raw["label"] == "sky.png" and thumb_job.result is not None
            assert thumb_job.result["original"] == {"width": 640, "height": 360, "format": "PNG"}

            # What a user can get wrong comes back with a code.
            with pytest.raises(BadRequest) as refused:
                await client.submit("thumbs.thumbnail", {"image": "not base64!"})
            assert refused.value.code == "INVALID_PAYLOAD"
            junk = base64.b64encode(b"GIF89a but not really").decode()
            failed = await client.wait((await client.submit(
                "thumbs.thumbnail", {"image": junk, "filename": "junk.gif"})).jobId, timeout=60)
            assert failed.status == "failed" and failed.error is not None
            assert failed.error.code == "NOT_AN_IMAGE" and failed.attempts == 1
            buffer = io.BytesIO()
            Image.new("RGB", (20, 300), (200, 40, 40)).save(buffer, "JPEG")
            tall = base64.b64encode(buffer.getvalue()).decode()
            done = await client.wait((await client.submit(
                "thumbs.caption", {"image": tall, "filename": "tall.jpg"})).jobId, timeout=60)
            assert done.status == "completed" and done.result is not None
            assert done.result["tags"] == ["red", "tall", "jpeg"]
    finally:
        await asyncio.to_thread(server.stop)
