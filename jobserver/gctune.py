"""Garbage-collector settings for the long-running server process.

Every job event allocates short-lived containers (a Job copy, a dict, tuples). With
CPython's default thresholds (700, 10, 10) that runs a young collection every few hundred
events and, now and then, a full collection that walks every object in the process while
the event loop waits: pauses of several ms, the largest single source of loop lag in the
throughput bench. So once start-up is done the server collects what it can, freezes the
rest (start-up objects are never walked again) and collects young objects less often.
Reference counting still frees almost everything at once; only cycles wait longer.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 20, 100)


def tune() -> None:
    """Freeze what exists now and raise the collection thresholds; once, after start-up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
