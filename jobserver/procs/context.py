"""ProcessContext: what a ``process=True`` handler sees in its worker process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..jobtypes import Stage, check_label, stage_id

Send = Callable[[dict[str, Any]], None]
Receive = Callable[[], "dict[str, Any] | None"]


class EndOfInput(Exception):
    """The server closed the process's input: it is stopping, the process ends."""


class ProcessContext:
    """The job as a handler in a worker process sees it; reports go to the server as frames.

    Args:
        call: the request the server sent (the job's payload, id, type, attempt, stages).
        send: writes one frame to the server.
        receive: the next frame the server sent for this call (None at end of input).
        stopping: whether the server asked this call to stop.
    """

    def __init__(
        self, call: Mapping[str, Any], send: Send, receive: Receive, stopping: Callable[[], bool]
    ) -> None:
        self._id = call["id"]
        self.payload: dict[str, Any] = call.get("payload") or {}
        self.job_id: str = call.get("jobId", "")
        self.job_type: str = call.get("jobType", "")
        self.attempt: int = int(call.get("attempt", 1))
        self.max_attempts: int = int(call.get("maxAttempts", 1))
        self.label: str = call.get("label", "")
        stages = call.get("stages")
        self._stages = None if stages is None else {str(s): str(s) for s in stages}
        self._send = send
        self._receive = receive
        self._stopping = stopping
        self._last = 0.0
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def cancelled(self) -> bool:
        """True once the server wants this attempt to stop (cancelled, lease lost, shutdown).

        A handler that checks it between steps may return (or raise) early; one that does
        not is killed a moment later with its process.
        """
        return self._stopping()

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (``jobserver.jobs.<type>``) that tags each line with the job id; it writes
        to the server's log stream in the server's format."""
        if self._log is None:
            logger = logging.getLogger(f"jobserver.jobs.{self.job_type or 'process'}")
            self._log = logging.LoggerAdapter(logger, {"job_id": self.job_id})
        return self._log

    def progress(
        self,
        stage: Stage | str,
        percent: float,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
        *,
        label: str | None = None,
    ) -> None:
        """Report progress, as ``JobContext.progress`` does; it does not wait for the server.

        A stage the job type did not declare raises ``JobError`` ``UNKNOWN_STAGE`` here.
        Metadata must be JSON.
        """
        key = stage.id if isinstance(stage, Stage) else stage
        if self._stages is not None:
            key = stage_id(stage, self._stages, self.job_type)
        if label is not None:
            label = check_label(label)
        self._last = max(self._last, float(percent))
        self.send({"type": "progress", "stage": str(key), "percent": self._last,
                   "message": str(message), "metadata": dict(metadata or {}),
                   "label": label})  # fmt: skip

    def send(self, message: dict[str, Any]) -> None:
        """A frame of the plugin's own to the server, tagged with this call (the PDF parser
        sends the pages it read)."""
        self._send({**message, "id": self._id})

    def receive(self) -> dict[str, Any]:
        """The next frame the server sent for this call (the PDF parser's pages read by
        other processes); ``EndOfInput`` when the server is stopping."""
        while True:
            message = self._receive()
            if message is None:
                raise EndOfInput
            if message.get("id") == self._id:
                return message
