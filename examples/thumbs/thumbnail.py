"""``thumbs.thumbnail``: decode, shrink and re-encode an image with Pillow, in a worker process."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, UnidentifiedImageError

from jobserver import JobError, ProcessContext, Stage, job_type

from .images import check_image, label

DECODING = Stage("decoding", "Decoding the image")
RESIZING = Stage("resizing", "Resizing it")
ENCODING = Stage("encoding", "Encoding the thumbnail")

MAX_PIXELS = 40_000_000  # a "decompression bomb" over this fails with IMAGE_TOO_LARGE


@job_type(
    "thumbs.thumbnail", display_name="Thumbnail", stages=[DECODING, RESIZING, ENCODING],
    process=True, timeout=30, memory_mb=512, max_attempts=2, concurrency=2,
    payload=check_image, label=label,
)  # fmt: skip
def thumbnail(ctx: ProcessContext) -> dict[str, Any]:
    """Runs in a worker process: a plain ``def`` taking a ``ProcessContext``."""
    data = base64.b64decode(ctx.payload["image"])
    ctx.progress(DECODING, 10, f"Decoding {len(data) / 1024:.0f} KB")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError:
        raise JobError("IMAGE_TOO_LARGE", f"The image has over {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise JobError("NOT_AN_IMAGE", f"Pillow cannot read this file: {exc}") from None
    original = {"width": image.width, "height": image.height, "format": image.format or "?"}
    ctx.progress(DECODING, 30, f"A {image.format} image of {image.width}x{image.height}",
                 original)  # fmt: skip
    if ctx.cancelled:  # a check between steps: the job was cancelled meanwhile
        raise JobError("CANCELLED", "Stopped as asked")
    size = int(ctx.payload["size"])
    ctx.progress(RESIZING, 50, f"Shrinking it to fit {size}x{size}")
    image.thumbnail((size, size))
    ctx.progress(ENCODING, 80, "Encoding it as PNG")
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    ctx.log.info("thumbnail of %s: %dx%d", ctx.label, image.width, image.height)
    return {
        "title": f"{image.width}x{image.height} thumbnail of {ctx.label}",
        "width": image.width, "height": image.height, "original": original,
        "png": base64.b64encode(out.getvalue()).decode(),
    }  # fmt: skip
