"""Run the real server as a subprocess (python server.py) for crash and end-to-end tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (http://\S+?)/?$")


class ServerProcess:
    """``python server.py`` on a free port with its own data dir; ``url`` once it listens."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, "JOBSERVER_SECRET": "test-secret-0123456789abcdef0123456789",
                    **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30) -> str:
        cmd = [sys.executable, str(ROOT / "server.py"), "--port", "0",
               "--data-dir", str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = LISTENING.search(line.strip())
            if match:
                self.url = match.group(1)
                self._drain()
                return self.url
        self.kill()
        raise RuntimeError("server did not start:\n" + "".join(lines))

    def _drain(self) -> None:
        """Keep reading the server's output so it never blocks on a full pipe."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout

        def read_all() -> None:
            with stdout:
                for line in stdout:
                    self.output.append(line)

        self._reader = threading.Thread(target=read_all, daemon=True)
        self._reader.start()

    def _reap(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        elif self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            self._reap(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self._reap(timeout)
