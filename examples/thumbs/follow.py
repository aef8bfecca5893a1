"""Submit images to the example's job types and follow them live with the Python client.

    python -m examples.thumbs.follow cat.jpg dog.png --server http://127.0.0.1:8080 --user alice

Each image gets a ``thumbs.thumbnail`` and a ``thumbs.caption`` job. Every event is printed as
it comes (the stage by its display name from ``GET /api/meta``); thumbnails are saved in
``--out`` (the current folder unless given). Exits 0 when every job completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from pathlib import Path

from jobserver.client import Client, JobEvent, Resync

TYPES = ("thumbs.thumbnail", "thumbs.caption")


async def follow(images: list[Path], server: str, user: str, out: Path, timeout: float) -> int:
    async with await Client.sign_in(server, user) as client:
        meta = await client.meta()  # stage names, and the head of the log to follow from
        jobs: dict[str, tuple[str, Path]] = {}
        for path in images:
            payload = {"image": base64.b64encode(path.read_bytes()).decode(),
                       "filename": path.name}  # fmt: skip
            for kind in TYPES:
                jobs[(await client.submit(kind, payload)).jobId] = (kind, path)
        failed = 0
        async with asyncio.timeout(timeout), client.follow(since=meta.seq) as events:
            async for item in events:
                if isinstance(item, Resync):  # the log moved on without us: ask for each job
                    for job_id in list(jobs):
                        if (job := await client.get(job_id)).finished:
                            failed += job.status != "completed"
                            del jobs[job_id]
                elif isinstance(item, JobEvent) and item.jobId in jobs:
                    failed += show(item, meta.stageNames, jobs, out)
                if not jobs:
                    break
        return 1 if failed else 0


def show(event: JobEvent, names: dict[str, str], jobs: dict[str, tuple[str, Path]],
         out: Path) -> bool:  # fmt: skip
    """Print one event; a finished job leaves ``jobs``. True when it failed."""
    kind, path = jobs[event.jobId]
    stage = names.get(event.stage, event.stage)
    print(f"{path.name:<16} {kind:<17} {stage:<30} {event.progress:>4.0f}%  {event.message}",
          flush=True)  # fmt: skip
    if not event.terminal:
        return False
    del jobs[event.jobId]
    if event.type == "job.completed" and event.result is not None:
        if kind == "thumbs.thumbnail":
            saved = out / f"{path.stem}.thumb.png"
            saved.write_bytes(base64.b64decode(event.result["png"]))
            print(f"{path.name:<16} saved {saved}", flush=True)
        else:
            print(f"{path.name:<16} caption: {event.result['caption']}", flush=True)
        return False
    error = event.error
    print(f"{path.name:<16} {event.type}: {error.code if error else ''} "
          f"{error.message if error else ''}", flush=True)  # fmt: skip
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--user", default="thumbs-example")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    args = parser.parse_args()
    return asyncio.run(follow(args.images, args.server, args.user, args.out, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
