"""The payload both job types take: an image as base64, and its file name as the label."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from jobserver import InvalidPayload

MAX_IMAGE_BYTES = 512 * 1024  # the whole request must fit the server's max_body_bytes


def check_image(payload: dict[str, Any]) -> dict[str, Any]:
    """``image`` is base64 of at most MAX_IMAGE_BYTES; ``size`` the thumbnail's longest side."""
    image = payload.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidPayload("payload.image must be the image file as base64")
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPayload("payload.image is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidPayload(f"payload.image is over {MAX_IMAGE_BYTES // 1024} KB")
    size = payload.get("size", 128)
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 512:
        raise InvalidPayload("payload.size must be a whole number of pixels from 16 to 512")
    name = payload.get("filename", "image")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise InvalidPayload("payload.filename must be a string of 1 to 200 characters")
    return {"image": image, "size": size, "filename": name}


def label(payload: dict[str, Any]) -> str:
    return str(payload.get("filename") or "image")
