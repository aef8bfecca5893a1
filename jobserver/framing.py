"""Length-prefixed frames over pipes (a 4-byte big-endian length, then the body), in a codec.

The one framing every helper process speaks: the store's writer and the worker processes.
What crosses is chosen by who is at the other end. Between the server and its writer both
ends are this package and neither reads untrusted input, so frames are pickles, the fastest
codec for the tuples that cross (``bench/frames.py``). A worker process runs user code and
parses hostile files: a pickle from it could run code in the server, so its frames are JSON.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

HEADER = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Codec:
    """How a frame's body is made from a value and read back."""

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


# Only between two ends that are both this package and read nothing untrusted.
PICKLE = Codec("pickle", functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL),
               pickle.loads)  # fmt: skip
# From or to a process that runs user code or reads untrusted files.
JSON = Codec("json", orjson.dumps, orjson.loads)


def pack(value: Any, codec: Codec) -> bytes:
    """``value`` as one frame."""
    body = codec.dumps(value)
    return HEADER.pack(len(body)) + body


async def read(stream: asyncio.StreamReader, codec: Codec) -> Any:
    """The next frame from ``stream``; raises ``asyncio.IncompleteReadError`` at its end."""
    (size,) = HEADER.unpack(await stream.readexactly(HEADER.size))
    return codec.loads(await stream.readexactly(size))


def read_blocking(stream: BinaryIO, codec: Codec) -> Any | None:
    """The next frame from a blocking stream; None at its end (or a frame cut short)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return codec.loads(body)
