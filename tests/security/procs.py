"""Test helpers for the server's processes: find its store writer, kill it again and again."""

from __future__ import annotations

import os
import signal
import threading
import time


def writer_pids(server_pid: int) -> list[int]:
    """The store writer processes the server ``server_pid`` started (its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid != server_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if b"sqlite_writer" in command:
            pids.append(int(entry))
    return pids


def kill_writers(server_pid: int) -> int:
    killed = 0
    for pid in writer_pids(server_pid):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


class WriterKiller:
    """A thread that SIGKILLs every store writer of a server as soon as it appears.

    Args:
        server_pid: the server process.
        max_seconds: the thread stops by itself after this long, whatever happens.
    """

    def __init__(self, server_pid: int, max_seconds: float = 120.0) -> None:
        self.server_pid = server_pid
        self.max_seconds = max_seconds
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.kills += kill_writers(self.server_pid)
            time.sleep(0.002)

    def __enter__(self) -> WriterKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
