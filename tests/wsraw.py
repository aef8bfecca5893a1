"""A bare WebSocket client over a raw socket, for tests that need to misbehave precisely.

It can stop reading with a tiny receive buffer, never answer pings, or cut the connection at
any byte. Frames from the server are parsed by hand (RFC 6455: unmasked, unfragmented).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from typing import Any

import orjson

from jobserver import demo
from jobserver.handlers import Registry

from .conftest import ApiClient, MakeApi

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def demo_only(make_api: MakeApi) -> MakeApi:
    """``make_api`` with the demo job types only: no PDF parser processes to start and stop."""

    async def make(user: str = "alice", **overrides: Any) -> ApiClient:
        registry = Registry([demo.sleep, demo.fail])
        return await make_api(user, registry=registry, **overrides)

    return make


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """A masked, final frame as a client must send it."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class RawWs:
    """One raw WebSocket connection to the test server.

    Args:
        reader: the stream the server's frames arrive on.
        writer: the stream client frames are written to.
        status: the HTTP status of the handshake answer (101 on success).
        headers: the handshake answer's headers, lower-cased names.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls,
        port: int,
        headers: dict[str, str] | None = None,
        *,
        path: str = "/ws",
        rcvbuf: int | None = None,
    ) -> RawWs:
        """Open and upgrade; with ``rcvbuf`` both the socket and the reader buffer stay small."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        limit = 2**16 if rcvbuf is None else rcvbuf  # the reader stops at twice this
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        answer = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                answer[name.strip().lower()] = value.strip()
        return cls(reader, writer, int(status_line.split()[1]), answer)

    def send_json(self, message: Any) -> None:
        self.writer.write(client_frame(orjson.dumps(message)))

    def send_raw(self, payload: bytes, opcode: int = TEXT) -> None:
        self.writer.write(client_frame(payload, opcode))

    async def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload; pings are answered, not returned."""
        while True:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(size)
            opcode = first & 0x0F
            if opcode == PING:
                self.writer.write(client_frame(payload, PONG))
                continue
            if opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
            return opcode, payload

    async def json(self) -> Any:
        opcode, payload = await self.frame()
        if opcode != TEXT:
            raise ConnectionError(f"got opcode {opcode} (close code {self.close_code})")
        return orjson.loads(payload)

    def abort(self) -> None:
        """Cut the connection now (an RST), whatever is in flight."""
        self.writer.transport.abort()

    async def close(self) -> None:
        """Drop the connection without a closing handshake."""
        self.writer.transport.abort()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
