"""Retention: on a schedule, prune old finished jobs and their events, run the plugins' own
retention steps (files beside the jobs, caches), and trim the WAL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from .store import Store

log = logging.getLogger(__name__)

PRUNE_BATCH = 500
DAY = 86400.0

# Called after jobs are pruned, with the cutoff; returns how many things it removed.
Step = Callable[[float], Awaitable[int]]
# ``duty(name, every)``: whether this node should do cluster-wide work now (PostgresStore).
Duty = Callable[[str, float], AbstractAsyncContextManager[bool]]


class Retention:
    """Keeps the store from growing without bound.

    Jobs that finished more than ``max_age_seconds`` ago go, with all their events, in small
    batches so the writer is never held for long; then each of ``steps`` runs with the same
    cutoff (plugins register them: files nothing needs any more, old cache entries). The WAL
    is checkpointed and truncated every ``checkpoint_interval``.

    Args:
        store: the store to prune.
        max_age_seconds: age past which a finished job is deleted; 0 keeps everything.
        prune_interval: seconds between two prunes (the first runs at start).
        checkpoint_interval: seconds between two WAL checkpoints.
        steps: ``(name, step)`` pairs run after the jobs went; ``pruned[name]`` counts them.
        duty: with several nodes on one database, who prunes: one node at a time, once per
            ``prune_interval`` across them all (the others skip their turn).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_age_seconds: float,
        prune_interval: float,
        checkpoint_interval: float,
        steps: Sequence[tuple[str, Step]] = (),
        duty: Duty | None = None,
    ) -> None:
        self.store = store
        self.max_age_seconds = max_age_seconds
        self.prune_interval = prune_interval
        self.checkpoint_interval = checkpoint_interval
        self.steps = list(steps)
        self.duty = duty
        self.skipped = 0  # turns another node took (or had just taken)
        self.pruned_jobs = 0
        self.pruned_events = 0
        self.pruned: dict[str, int] = {name: 0 for name, _ in self.steps}
        self.checkpoints = 0
        self.wal_bytes = 0

    async def prune(self, now: float | None = None) -> int:
        """Delete what is older than the retention age; returns how many jobs went."""
        if self.max_age_seconds <= 0:
            return 0
        if self.duty is None:
            return await self._prune(now)
        async with self.duty("retention", self.prune_interval) as mine:
            if mine:
                return await self._prune(now)
        self.skipped += 1
        return 0

    async def _prune(self, now: float | None) -> int:
        cutoff = (time.time() if now is None else now) - self.max_age_seconds
        jobs = events = 0
        while True:
            pruned = await self.store.prune(cutoff, limit=PRUNE_BATCH)
            jobs += pruned.jobs
            events += pruned.events
            if pruned.jobs < PRUNE_BATCH:
                break
            await asyncio.sleep(0)  # let other writes into the next batch
        self.pruned_jobs += jobs
        self.pruned_events += events
        removed = {}
        for name, step in self.steps:
            removed[name] = await step(cutoff)
            self.pruned[name] += removed[name]
        if jobs or any(removed.values()):
            others = "".join(f", {n} {name}" for name, n in removed.items())
            log.info("pruned %d finished job(s), %d event(s)%s, older than %.1f day(s)",
                     jobs, events, others, self.max_age_seconds / DAY)  # fmt: skip
        return jobs

    async def checkpoint(self) -> int:
        """Checkpoint the WAL now; returns its size in bytes afterwards."""
        self.wal_bytes = await self.store.checkpoint()
        self.checkpoints += 1
        return self.wal_bytes

    async def run(self) -> None:
        """Forever: prune (first at once) and checkpoint, each on its own interval."""
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        next_checkpoint = loop.time() + self.checkpoint_interval
        while True:
            if loop.time() >= next_prune:
                await self._guarded("pruning", self.prune)
                next_prune = loop.time() + self.prune_interval
            if loop.time() >= next_checkpoint:
                await self._guarded("checkpointing the WAL", self.checkpoint)
                next_checkpoint = loop.time() + self.checkpoint_interval
            await asyncio.sleep(max(0.0, min(next_prune, next_checkpoint) - loop.time()))

    async def _guarded(self, what: str, step: Callable[[], Awaitable[int]]) -> None:
        # Upkeep must never stop for good: log, and try again on the next round.
        try:
            await step()
        except Exception:
            log.exception("%s failed; trying again on schedule", what)


def _sweep(folder: Path, keep: Collection[str], cutoff: float,
           spare: Collection[str] = ()) -> list[Path]:  # fmt: skip
    """Files in ``folder`` last written before ``cutoff`` whose stem no job names (and whose
    name is not in ``spare``)."""
    stale: list[Path] = []
    if not folder.is_dir():
        return stale
    for path in folder.iterdir():
        if path.stem.lstrip(".") in keep or path.name in spare or not path.is_file():
            continue
        try:
            if path.stat().st_mtime < cutoff:
                stale.append(path)
        except FileNotFoundError:
            continue
    return stale


def _remove(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def file_pruner(store: Store, folder: Path, key: str, spare: Collection[str] = ()) -> Step:
    """Removes files in ``folder`` (named ``<id>.<ext>``) that no kept job's ``payload[key]``
    names and that were written before the cutoff; half-written leftovers go the same way;
    the files named in ``spare`` (a lock file) never do.

    The age check protects a file stored a moment ago whose job is not enqueued yet; the
    names are read again just before deleting, for a job enqueued during the sweep.
    """

    async def prune(cutoff: float) -> int:
        needed = await store.payload_values(key)
        stale = await asyncio.to_thread(_sweep, folder, needed, cutoff, spare)
        if not stale:
            return 0
        needed = await store.payload_values(key)
        return await asyncio.to_thread(_remove, [p for p in stale if p.stem not in needed])

    return prune
