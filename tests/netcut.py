"""A TCP proxy on 127.0.0.1 that a test can cut: every connection through it dies at once.

It stands between a client and the real server, as a flaky network would: ``cut()`` aborts
every open connection (both sides see the connection reset, as when a path breaks), and
``block_websockets`` refuses WebSocket upgrades (any request line ``GET /ws``) while it is
set, the way a proxy that does not pass WebSockets would, so a client must long-poll.
``refusing`` drops every new connection at once while it is set, as an unreachable host
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any


class CutProxy:
    """A proxy to ``127.0.0.1:upstream_port``; ``url`` once started.

    Args:
        upstream_port: the real server's port.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.block_websockets = False
        self.refusing = False
        self.cuts = 0
        self.refused_upgrades = 0
        self.dropped = 0  # bytes read from stalled connections and thrown away
        self._stalled: set[asyncio.StreamWriter] = set()
        self.url = ""
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._serving: set[asyncio.Task[Any]] = set()  # each connection's _serve

    async def start(self) -> CutProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Each connection's task ends here, not after the test (its loop's close would
        # destroy it pending: "Task was destroyed but it is pending!").
        serving = list(self._serving)
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)

    def cut(self) -> int:
        """Abort every connection open now; how many there were."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()
        self.cuts += 1
        return len(pairs)

    def stall(self) -> int:
        """Stall every connection open now (both directions); how many there were."""
        for client, upstream in self._pairs:
            self._stalled.update((client, upstream))
        return len(self._pairs)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, inspect=True), self._pipe(up_reader, writer)
            )
        finally:
            self._pairs.discard(pair)
            self._stalled.difference_update(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inspect: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            # Bounded: each read ends when the peer sends, closes, or the test cuts.
            while data := await reader.read(65536):
                if inspect and self.block_websockets and data.startswith(b"GET /ws"):
                    self.refused_upgrades += 1
                    writer.transport.abort()
                    return
                if writer in self._stalled:
                    self.dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


class BackgroundProxy:
    """A ``CutProxy`` on its own event loop and thread; ``call`` runs one of its methods there.

    Args:
        upstream_port: the real server's port.
    """

    def __init__(self, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = self._run(CutProxy(upstream_port).start())
        self.url = self.proxy.url

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def call(self, name: str) -> Any:
        async def run() -> Any:
            return getattr(self.proxy, name)()

        return self._run(run())

    def close(self) -> None:
        self._run(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
