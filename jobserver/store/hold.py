"""When a writer holds a batch back for a moment, so that a request's op shares its commit.

Ops an HTTP request waits on are foreground. Soon after one, a batch of other ops (a claim, a
completion, progress: nobody waits on their reply) is held up to as long as the last batch
took, until the next such op comes to share its commit: a client that enqueues one job at a
time then waits for one commit per job instead of two or three (its job's claim or
completion committing alone while its next request waits behind it). Both writers
(``sqlite_writer``, ``postgres``) follow these numbers.
"""

from __future__ import annotations

FOREGROUND = frozenset({"enqueue", "enqueue_many", "cancel", "retry", "remove", "remove_finished"})
HOLD_SECONDS = 0.005  # the longest hold
HOLD_RECENT_SECONDS = 0.05  # holds happen this soon after a foreground op only
HOLD_MAX_OPS = 64  # and only while fewer ops than this wait: a backlog commits at once


class Hold:
    """One writer's hold decision: when its last foreground op came, how long its last batch
    took (times on one monotonic clock of the writer's choosing)."""

    __slots__ = ("last_foreground", "took")

    def __init__(self) -> None:
        self.last_foreground = -HOLD_RECENT_SECONDS
        self.took = HOLD_SECONDS  # how long the last batch took to run and commit

    def seconds(self, now: float, foreground: bool, waiting: int) -> float:
        """How long to hold a batch starting at ``now`` (0: commit it at once): one with a
        foreground op goes at once, and so does a backlog of ``HOLD_MAX_OPS``."""
        if foreground:
            self.last_foreground = now
            return 0.0
        if now - self.last_foreground < HOLD_RECENT_SECONDS and waiting < HOLD_MAX_OPS:
            return min(HOLD_SECONDS, self.took)
        return 0.0
