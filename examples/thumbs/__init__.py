"""Thumbnails and captions for images: two job types to load with ``--jobs examples.thumbs``.

``thumbs.thumbnail`` shrinks an image with Pillow in a worker process (CPU-bound work, so
``process=True``: killed at its timeout, capped in memory); ``thumbs.caption`` asks an HTTP
captioning service about it (waiting on the network, so an ``async def`` on the event loop).
Both take ``{"image": <base64 PNG/JPEG/...>, "filename": "cat.jpg"}``. See docs/job-types.md,
"A worked example".
"""

from __future__ import annotations

from .caption import caption
from .thumbnail import thumbnail

__all__ = ["caption", "thumbnail"]
