"""A stand-in captioning service, to try ``thumbs.caption`` without an account anywhere.

    python -m examples.thumbs.fakeapi [--port 8765]

``POST /v1/describe`` with ``{"image": <base64>}`` answers ``{"caption", "tags"}`` made from
the image's average colour and shape. ``make_app(fail_first=n)`` answers 503 to the first n
calls, as a service having a bad moment would (the job retries).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
from typing import Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200),
           "yellow": (220, 200, 50), "white": (240, 240, 240), "black": (20, 20, 20),
           "grey": (128, 128, 128)}  # fmt: skip
CALLS = web.AppKey("calls", list)


def describe(data: bytes) -> dict[str, Any]:
    image = Image.open(io.BytesIO(data))
    r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    colour = min(COLOURS, key=lambda n: sum((x - y) ** 2 for x, y in
                                            zip(COLOURS[n], (r, g, b), strict=True)))  # fmt: skip
    shape = ("wide" if image.width > image.height * 1.2 else
             "tall" if image.height > image.width * 1.2 else "square")  # fmt: skip
    return {"caption": f"A {shape}, mostly {colour} picture of {image.width}x{image.height}",
            "tags": [colour, shape, (image.format or "image").lower()]}  # fmt: skip


def make_app(fail_first: int = 0) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[CALLS] = []

    async def post(request: web.Request) -> web.Response:
        request.app[CALLS].append(request.path)
        if len(request.app[CALLS]) <= fail_first:
            return web.json_response({"error": "warming up, try again"}, status=503)
        try:
            body = await request.json()
            answer = describe(base64.b64decode(body["image"], validate=True))
        except (ValueError, KeyError, TypeError, binascii.Error, UnidentifiedImageError):
            return web.json_response({"error": "send {\"image\": <base64 image>}"}, status=400)
        return web.json_response(answer)

    app.router.add_post("/v1/describe", post)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="a stand-in captioning service")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
