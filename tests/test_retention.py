"""Retention: pruning old jobs, then the files they named (the store's own pruning, WAL
checkpoints and health writes are in the store contract and tests/test_sqlite_store.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from aiohttp import web

from jobserver.bus import EventBus
from jobserver.config import Settings
from jobserver.plugins import Server, load
from jobserver.retention import Retention, file_pruner
from jobserver.store import NewJob, Store


async def test_file_pruner_removes_old_files_no_job_needs(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    old = time.time() - 3600
    names = ["needed.pdf", "orphan.pdf", "fresh.pdf", ".incoming-123"]
    for name in names:
        (folder / name).write_bytes(b"%PDF-1.4")
    for name in ("needed.pdf", "orphan.pdf", ".incoming-123"):
        os.utime(folder / name, (old, old))
    await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "needed"}))
    prune = file_pruner(store, folder, "sha256")
    assert await prune(time.time() - 60) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["fresh.pdf", "needed.pdf"]
    assert await file_pruner(store, tmp_path / "absent", "sha256")(time.time()) == 0


async def test_retention_prunes_jobs_then_the_uploads_they_named(store: Store, tmp_path: Path
                                                                  ) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    job, _ = await store.enqueue(NewJob(type="t", user_id="u1", payload={"sha256": "f1"}))
    [(claimed, _)] = await store.claim(1, 30)
    assert claimed.lease_token
    await store.complete(job.id, claimed.lease_token, {})
    (folder / "f1.pdf").write_bytes(b"%PDF-1.4")
    old = time.time() - 3600
    os.utime(folder / "f1.pdf", (old, old))
    retention = Retention(store, max_age_seconds=60, prune_interval=1, checkpoint_interval=1,
                          steps=[("files", file_pruner(store, folder, "sha256"))])
    assert await retention.prune() == 0  # finished a moment ago: kept, and so is its file
    assert (folder / "f1.pdf").exists()
    assert await retention.prune(now=time.time() + 120) == 1
    assert not (folder / "f1.pdf").exists()
    assert (retention.pruned_jobs, retention.pruned["files"]) == (1, 1)


async def test_the_pdf_file_step_before_the_upload_store_is_open_prunes_nothing(
    store: Store, settings: Settings
) -> None:
    # Retention prunes at once when it starts, before plugins' contexts open the upload
    # store: that first round logged "pruning failed" with a KeyError traceback.
    plugins = load(settings)
    step = dict(plugins.retention_steps)["files"]
    server = Server(web.Application(), settings, store, EventBus())
    assert await step(server, time.time()) == 0
