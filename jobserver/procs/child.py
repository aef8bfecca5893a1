"""The worker process: runs calls the server sends (handlers, PDF parses), one at a time.

Started by ``ProcessPool`` as ``python -m jobserver.procs.child CONFIG`` (CONFIG is JSON: the
server's ``sys.path``, the address-space caps, modules to import and functions to warm up
with, the log format). It dies with the server, caps its own address space (RLIMIT_AS: the
hard limit once, the soft one per call), lowers its priority so the server stays responsive,
then reads JSON frames on stdin and answers on stdout (``framing.py``). A call names its
function as ``module:qualified.name`` and gets a ``ProcessContext``; it is answered with a
``result`` or an ``error`` frame. A MemoryError ends the process after reporting it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging
import os
import resource
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

from .. import framing
from ..errors import JobError
from ..jobtypes import JobType
from .context import EndOfInput, ProcessContext

NICENESS = 5
EXIT_MEMORY = 3
PR_SET_PDEATHSIG = 1
MB = 1024 * 1024

Target = Callable[[ProcessContext], Any]


def _die_with_parent() -> None:
    """Linux: be killed when the server dies, so a killed server leaves no work running."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the end of stdin still ends the process between calls
    if os.getppid() == 1:  # the server died before the line above ran
        os._exit(1)


def cap_memory(megabytes: int, *, hard: bool = False) -> None:
    """Cap this process's address space (the hard limit is never raised again)."""
    _, limit = resource.getrlimit(resource.RLIMIT_AS)
    wanted = megabytes * MB
    if limit != resource.RLIM_INFINITY:
        wanted = min(wanted, limit)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, wanted if hard else limit))


def lookup(name: str) -> Any:
    """What ``module:qualified.name`` names (the module is imported)."""
    module, _, qualname = name.partition(":")
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def resolve(name: str) -> Target:
    """A call's function; a ``JobType`` (what ``@job_type`` made of it) gives its handler."""
    value = lookup(name)
    target: Target = value.handler if isinstance(value, JobType) else value
    return target


class _Channel:
    """Frames out to the server on the process's own copy of stdout."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(framing.pack(message, framing.JSON))
        self.out.flush()


class Child:
    """The call loop.

    Args:
        requests: stdin, where the server's frames arrive.
        channel: where answers go.
        memory_mb: the soft address-space cap between calls and for calls that name none.
    """

    def __init__(self, requests: BinaryIO, channel: _Channel, memory_mb: int) -> None:
        self.requests = requests
        self.channel = channel
        self.memory_mb = memory_mb
        self.targets: dict[str, Target] = {}
        self.stop_asked = False

    def receive(self) -> dict[str, Any] | None:
        message: dict[str, Any] | None = framing.read_blocking(self.requests, framing.JSON)
        return message

    def on_stop_signal(self, signum: int, frame: Any) -> None:
        self.stop_asked = True

    def serve(self) -> int:
        self.channel.send({"type": "ready", "pid": os.getpid()})
        while True:
            request = self.receive()
            if request is None:
                return 0
            if request.get("op") != "call":
                continue  # a frame for a call that has ended (a page forwarded late)
            code = self.call(request)
            if code is not None:
                return code

    def call(self, request: dict[str, Any]) -> int | None:
        """Run one call and answer it; an exit status when the process must end."""
        call_id = request.get("id")
        self.stop_asked = False
        try:
            cap_memory(int(request.get("memoryMb") or self.memory_mb))
            target = self.targets.get(request["target"])
            if target is None:
                target = self.targets[request["target"]] = resolve(request["target"])
            ctx = ProcessContext(request, self.channel.send, self.receive,
                                 lambda: self.stop_asked)  # fmt: skip
            value = target(ctx)
            answer = framing.pack({"id": call_id, "type": "result", "value": value}, framing.JSON)
        except JobError as exc:
            self.channel.send({"id": call_id, "type": "error", "code": exc.code,
                               "message": exc.message, "recoverable": exc.recoverable})  # fmt: skip
            return None
        except EndOfInput:
            return 0
        except MemoryError:
            self.channel.send({"id": call_id, "type": "error", "kind": "memory"})
            return EXIT_MEMORY
        except Exception as exc:
            if isinstance(exc, orjson.JSONEncodeError):
                text = f"the result is not JSON: {exc}"
            else:
                text = f"{type(exc).__name__}: {exc}"
                logging.getLogger("jobserver.procs").exception("call %s failed", call_id)
            self.channel.send({"id": call_id, "type": "error", "kind": "exception",
                               "exception": type(exc).__name__, "message": text[:1000]})
            return None
        finally:
            cap_memory(self.memory_mb)
        self.channel.out.write(answer)
        self.channel.out.flush()
        return None


def main(argv: list[str]) -> int:
    config = orjson.loads(argv[1])
    child = Child(sys.stdin.buffer, _Channel(sys.stdout.buffer), int(config["memoryMb"]))
    signal.signal(signal.SIGUSR1, child.on_stop_signal)  # before anything else: it would kill
    _die_with_parent()
    cap_memory(int(config["limitMb"]), hard=True)
    cap_memory(int(config["memoryMb"]))
    os.nice(NICENESS)
    sys.path[:] = [p for p in config.get("path", []) if isinstance(p, str)] or sys.path
    # stdout carries frames only: anything printed by a handler or a library goes to stderr.
    child.channel = _Channel(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)
    warnings.simplefilter("ignore")
    if config.get("logFormat"):
        from ..logs import configure

        configure(str(config["logFormat"]), str(config.get("logLevel") or "INFO"))
    for module in config.get("imports", []):
        importlib.import_module(module)
    for name in config.get("warmUp", []):
        lookup(name)()
    return child.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
