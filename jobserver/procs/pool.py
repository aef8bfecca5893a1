"""ProcessPool: the server's worker processes, shared by process=True job types and the PDF parser.

A fixed number of long-lived processes (``procs/child.py``), started warm. Work borrows one
(``acquire``, in the order asked, at most ``limit`` per kind of work at once) or takes those
that are idle (``take_idle``, the PDF parser's page sharing) and gives it back (``release``).
Work that may not wait behind other kinds (``extra``: a user whose PDF would wait for another
user's) gets a process started for it when it holds none and none is idle: at most ``size``
such extras live at once, and each stops when given back.
A process that broke a limit, crashed, or was stopped mid-call is killed and a fresh one takes
its place, so a failure costs only the processes it used. The event loop only reads frames
from the pipes: it never waits on the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .. import framing
from ..errors import JobError, JobServerError

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 2.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
ANSWERS = frozenset({"result", "error"})

Message = dict[str, Any]
OnMessage = Callable[[Message], None]


def default_size() -> int:
    """One process per CPU core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def exit_text(status: int) -> str:
    """A process's exit status in words: ``exit status 3`` or ``killed by SIGSEGV``."""
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


class Failures:
    """What a call's failures are, as coded ``JobError``s (a parse's codes differ from a
    handler's: subclass it)."""

    def memory(self) -> JobError:
        """The call ran out of memory under its cap (the process ends)."""
        return JobError("JOB_MEMORY", "The work needed more memory than it may use")

    def ended(self, status: int) -> JobError:
        """The process ended in the middle of the call."""
        return JobError("PROCESS_CRASHED",
                        f"The worker process ended unexpectedly ({exit_text(status)})",
                        recoverable=True)  # fmt: skip

    def exception(self, name: str, message: str) -> JobError:
        """The call raised something other than a ``JobError`` (``name`` is its class)."""
        return JobError("HANDLER_ERROR", message, recoverable=True)


@dataclass(slots=True)
class _Call:
    id: int
    on_message: OnMessage
    failures: Failures
    future: asyncio.Future[Message]


class Child:
    """One worker process and the task that reads its frames."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call: _Call | None = None
        self.healthy = True
        self.kind: str | None = None  # the kind of work holding it
        self.extra = False  # started beyond the pool's size (see ProcessPool.acquire)
        self.reader = asyncio.create_task(self._read(), name=f"worker-process-{proc.pid}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def is_ready(self) -> bool:
        ready = self.ready
        return ready.done() and not ready.cancelled() and ready.exception() is None

    async def _frame(self) -> Message | None:
        assert self.proc.stdout is not None
        try:
            message = await framing.read(self.proc.stdout, framing.JSON)
        except (asyncio.IncompleteReadError, ConnectionError, orjson.JSONDecodeError):
            return None
        return message if isinstance(message, dict) else None

    async def _read(self) -> None:
        while (message := await self._frame()) is not None:
            kind = message.get("type")
            if kind == "ready":
                if not self.ready.done():
                    self.ready.set_result(None)
                continue
            call = self.call
            if call is None or message.get("id") != call.id or call.future.done():
                continue
            if kind in ANSWERS:
                call.future.set_result(message)
            else:
                call.on_message(message)
        self.healthy = False
        status = await self.proc.wait()
        if not self.ready.done():
            self.ready.set_exception(Failures().ended(status))
            self.ready.exception()  # marks it seen: a process may die before anyone waits
        if self.call is not None and not self.call.future.done():
            self.call.future.set_exception(self.call.failures.ended(status))

    async def until_ready(self) -> None:
        """Wait for the process to have started and warmed up (not counted as work time)."""
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await asyncio.shield(self.ready)

    def send(self, message: Message) -> None:
        """Write a frame without waiting (pages forwarded to a parse in progress)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(framing.pack(message, framing.JSON))

    def start(
        self, message: Message, on_message: OnMessage, failures: Failures
    ) -> asyncio.Future[Message]:
        """Send a call (the process must be ready); its answer frame is the future's result,
        or it fails with the process's end. Frames it sends meanwhile go to ``on_message``."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.call = _Call(int(message["id"]), on_message, failures, future)
        try:
            self.send({**message, "op": "call"})
        except ConnectionError:
            self.healthy = False  # the reader reports how it ended
        return future

    def answer(self, message: Message) -> Any:
        """A call's answer frame as its value, or the JobError it stands for."""
        call = self.call
        assert call is not None
        if message.get("type") == "result":
            return message.get("value")
        kind = message.get("kind")
        if kind == "memory":
            self.healthy = False  # it exits after a MemoryError
            raise call.failures.memory()
        if kind == "exception":
            name, text = str(message.get("exception")), str(message.get("message"))
            raise call.failures.exception(name, text)
        raise JobError(str(message.get("code")), str(message.get("message")),
                       recoverable=bool(message.get("recoverable")))  # fmt: skip

    async def request(self, message: Message, on_message: OnMessage, failures: Failures) -> Any:
        """Send one call and wait for its value; JobError (the call's, or its process's end)."""
        await self.until_ready()
        future = self.start(message, on_message, failures)
        try:
            return self.answer(await future)
        except BaseException:
            if not future.done():
                self.healthy = False  # cancelled mid-call: its state is unknown
            raise
        finally:
            self.call = None

    def ask_to_stop(self) -> None:
        """Tell the call running in it to stop (``ProcessContext.cancelled`` turns true)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGUSR1)

    async def kill(self) -> None:
        self.healthy = False
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await asyncio.gather(self.reader, return_exceptions=True)
        if not self.ready.done():
            self.ready.cancel()

    async def close(self) -> None:
        """Ask the process to exit (end of input); kill it if it does not."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.shield(self.reader)
        except TimeoutError:
            await self.kill()
        if not self.ready.done():
            self.ready.cancel()


@dataclass(slots=True)
class _Waiter:
    kind: str
    limit: int | None
    future: asyncio.Future[Child]


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """How each worker process starts.

    Args:
        memory_mb: its address-space cap between calls and for calls that name none.
        limit_mb: the most any call may be given (the process's hard limit).
        imports: modules it imports at start (those of process=True job types).
        warm_ups: ``module:function``s it calls at start, so a first call is not slower.
        log_format: the server's log format (``json``/``text``); empty leaves logging alone.
        log_level: the least severe level it logs.
    """

    memory_mb: int = 1024
    limit_mb: int = 1024
    imports: Sequence[str] = ()
    warm_ups: Sequence[str] = ()
    log_format: str = ""
    log_level: str = "INFO"

    def argument(self) -> str:
        return orjson.dumps({
            "memoryMb": self.memory_mb, "limitMb": max(self.limit_mb, self.memory_mb),
            "path": [p for p in sys.path if p], "imports": list(self.imports),
            "warmUp": list(self.warm_ups), "logFormat": self.log_format,
            "logLevel": self.log_level,
        }).decode()  # fmt: skip


class ProcessPool:
    """A fixed number of worker processes.

    Args:
        size: processes to keep (0: one per core).
        config: how each starts.
    """

    def __init__(self, size: int, config: ChildConfig | None = None) -> None:
        self.size = size or default_size()
        self.config = config or ChildConfig()
        self.replaced = 0
        self.started = False
        self.extras = 0  # extra processes started so far
        self._extra = 0  # extra processes alive now
        self._idle: deque[Child] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._held: dict[str, int] = {}
        self._all: set[Child] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._closed = False

    def next_id(self) -> int:
        """A call id no other call of this pool has."""
        return next(self._ids)

    async def start(self) -> None:
        """Start the processes; they warm up in parallel while the server starts serving."""
        self.started = True
        for _ in range(self.size):
            self._idle.append(await self._spawn())

    def closing(self) -> None:
        """From now on a process given back is not replaced (the server is stopping)."""
        self._closed = True

    async def stop(self) -> None:
        self._closed = True
        await asyncio.gather(*self._stopping, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in list(self._all)), return_exceptions=True)
        self._all.clear()
        self._idle.clear()
        for waiter in self._waiters:
            waiter.future.cancel()

    @property
    def pids(self) -> list[int]:
        return sorted(p.pid for p in self._all)

    @property
    def idle(self) -> int:
        """Processes waiting for work."""
        return len(self._idle)

    @property
    def ready(self) -> int:
        """Processes that have started and warmed up."""
        return sum(1 for p in self._all if p.is_ready)

    def held(self, kind: str) -> int:
        """Processes ``kind`` holds right now."""
        return self._held.get(kind, 0)

    async def _spawn(self) -> Child:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobserver.procs.child", self.config.argument(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        child = Child(proc)
        self._all.add(child)
        return child

    def _take(self, child: Child, kind: str) -> Child:
        child.kind = kind
        self._held[kind] = self._held.get(kind, 0) + 1
        return child

    async def acquire(self, kind: str, limit: int | None = None, *, extra: bool = False) -> Child:
        """A process for ``kind`` of work, once one is free and ``kind`` holds fewer than
        ``limit``; callers are served in the order they asked (one at its limit waits
        without holding up the others). It may still be warming up: see ``until_ready``.

        With ``extra``, a ``kind`` that holds no process while none is idle does not wait:
        a process is started for it beyond ``size`` (at most ``size`` of them at once).
        """
        if not self.started:
            raise JobServerError("the worker processes have not been started")
        if extra and not self._idle and self.held(kind) == 0 and self._extra < self.size:
            self._extra += 1
            self.extras += 1
            try:
                child = await self._spawn()
            except BaseException:
                self._extra -= 1
                raise
            child.extra = True
            return self._take(child, kind)
        waiter = _Waiter(kind, limit, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._hand_out()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                await asyncio.shield(self.release(waiter.future.result()))  # came too late
            raise

    def take_idle(self, kind: str, most: int, limit: int | None = None) -> list[Child]:
        """Up to ``most`` idle processes that are ready now, none waited for (for work that
        can share itself out); those waited for by others are handed out first."""
        self._hand_out()
        taken: list[Child] = []
        for child in list(self._idle):
            if len(taken) >= most or (limit is not None and self.held(kind) >= limit):
                break
            if child.is_ready:
                self._idle.remove(child)
                taken.append(self._take(child, kind))
        return taken

    def _hand_out(self) -> None:
        for waiter in list(self._waiters):
            if not self._idle:
                return
            if waiter.future.done():
                self._waiters.remove(waiter)
            elif waiter.limit is None or self.held(waiter.kind) < waiter.limit:
                self._waiters.remove(waiter)
                waiter.future.set_result(self._take(self._idle.popleft(), waiter.kind))

    async def release(self, child: Child) -> None:
        """Give a process back; one that may be broken is killed and replaced."""
        if child.kind is not None:
            self._held[child.kind] -= 1
            child.kind = None
        child.call = None
        if child.healthy and not self._closed:
            self._idle.append(child)
            self._hand_out()
            if child.extra and child in self._idle:  # nobody waited for it: it stops
                self._idle.remove(child)
                self._all.discard(child)
                self._extra -= 1
                await child.close()
            return
        await child.kill()
        self._all.discard(child)
        if child.extra:
            self._extra -= 1
        elif not self._closed:
            self.replaced += 1
            log.info("worker process %d replaced", child.pid)
            self._idle.append(await self._spawn())
            self._hand_out()

    def stop_soon(self, child: Child, future: asyncio.Future[Message], grace: float) -> None:
        """The work that holds ``child`` was stopped: ask its call to stop, give it ``grace``
        seconds to end, then kill it; either way it is given back (in the background)."""

        async def stop() -> None:
            if grace > 0 and not future.done():
                child.ask_to_stop()
                with contextlib.suppress(TimeoutError, Exception):
                    async with asyncio.timeout(grace):
                        await asyncio.shield(future)
            if not future.done():
                child.healthy = False
                future.cancel()
            elif not future.cancelled():
                future.exception()  # read: nobody else will
            await self.release(child)

        task = asyncio.create_task(stop(), name=f"stop-worker-process-{child.pid}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
