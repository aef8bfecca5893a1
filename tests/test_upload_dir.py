"""``upload_dir``: uploads in a folder every node mounts (issue 17's option for a shared file
system): what one server received, another reads, and the data dir keeps none of it; a
refused upload's file goes only while no other server kept the same bytes since."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from jobserver.pdf.files import stored_name
from jobserver.pdf.upload_store import LOCK_NAME, UPLOADS, FolderUploads
from jobserver.store import NewJob
from jobserver.web.keys import STORE
from tests import pdfs
from tests.conftest import ApiClient, MakeApi
from tests.test_pdf_api import finished, refused_later, upload


async def two_servers(make_api: MakeApi, tmp_path: Path) -> tuple[ApiClient, ApiClient, Path]:
    """Two servers with data dirs of their own and one ``upload_dir``."""
    shared = tmp_path / "shared"
    a = await make_api(data_dir=tmp_path / "a", upload_dir=str(shared))
    b = await make_api(data_dir=tmp_path / "b", upload_dir=str(shared))
    return a, b, shared


async def test_a_file_received_by_one_server_is_parsed_by_another(
    make_api: MakeApi, tmp_path: Path
) -> None:
    a, b, shared = await two_servers(make_api, tmp_path)
    status, job = await upload(a, pdfs.text_pdf(pages=2, title="Shared Folder"))
    assert status == 202, job
    assert (await finished(a, job["jobId"]))["status"] == "completed"
    sha = job["payload"]["sha256"]
    assert sorted(p.name for p in shared.iterdir()) == [
        LOCK_NAME, stored_name(sha, ".kept"), stored_name(sha, ".owners"), stored_name(sha)]
    assert not (tmp_path / "a" / "uploads").exists()
    by_hash = {"type": "pdf-notes", "payload": {"sha256": sha}}
    status, named = await b.post("/api/jobs", json=by_hash)
    assert status == 202, named  # the owner record is in the shared folder too
    done = await finished(b, named["jobId"])
    assert done["status"] == "completed" and done["result"]["pageCount"] == 2, done
    other = await b.as_user("mallory")
    status, refused = await other.post("/api/jobs", json=by_hash)
    assert status == 404 and refused["error"]["code"] == "UPLOAD_MISSING"


def arriving(uploads: FolderUploads, data: bytes) -> Path:
    temp = uploads.folder / f".incoming-{hashlib.sha256(data).hexdigest()[:8]}-{id(uploads)}"
    temp.write_bytes(data)
    return temp


async def test_a_refused_keep_removes_the_file_only_if_no_keep_came_since_and_no_job_names_it(
    make_api: MakeApi, tmp_path: Path
) -> None:
    a, b, _ = await two_servers(make_api, tmp_path)
    ua, ub = a.app[UPLOADS], b.app[UPLOADS]
    assert isinstance(ua, FolderUploads) and isinstance(ub, FolderUploads) and ua is not ub
    store = a.app[STORE]
    data = pdfs.text_pdf(pages=1, title="Kept Twice")
    sha = hashlib.sha256(data).hexdigest()
    first = await ua.keep(arriving(ua, data), sha)
    second = await ub.keep(arriving(ub, data), sha)  # the same bytes, on the other server
    assert first.created and not second.created and first.stamp != second.stamp
    assert not await ua.remove(store, sha, first.stamp)  # kept since: the second needs it
    assert ua.path(sha).read_bytes() == data
    assert await ub.remove(store, sha, second.stamp)  # nobody kept it since, no job names it
    assert not ua.path(sha).exists() and not ua.stamp_path(sha).exists()
    third = await ua.keep(arriving(ua, data), sha)
    assert third.created
    await store.enqueue(NewJob(type="pdf-notes", user_id="alice", payload={"sha256": sha},
                               delay_seconds=3600))  # fmt: skip
    assert not await ua.remove(store, sha, third.stamp)  # a job names it
    assert ua.path(sha).exists()


async def test_a_refused_upload_leaves_the_file_another_server_kept_meanwhile(
    make_api: MakeApi, tmp_path: Path
) -> None:
    a, b, shared = await two_servers(make_api, tmp_path)
    data = pdfs.large_pdf("Refused On A")
    path = shared / stored_name(hashlib.sha256(data).hexdigest())
    release = asyncio.Event()
    body, content_type = refused_later(data, release)
    held = asyncio.create_task(a.post("/api/jobs", data=body,
                                      headers={"Content-Type": content_type}))  # fmt: skip
    async with asyncio.timeout(10):
        while not path.exists():  # A kept the file; the rest of its form waits
            await asyncio.sleep(0.01)
    status, job = await upload(b, data)
    assert status == 202, job
    release.set()
    status, refused = await held
    assert status == 400 and refused["error"]["code"] == "INVALID_PAYLOAD", refused
    assert path.exists()
    assert (await finished(b, job["jobId"]))["status"] == "completed"
