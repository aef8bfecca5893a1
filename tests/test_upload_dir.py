"""``upload_dir``: uploads in a folder every node mounts (issue 17's option for a shared file
system): what one server received, another reads, and the data dir keeps none of it."""

from __future__ import annotations

from pathlib import Path

from jobserver.pdf.files import stored_name
from tests import pdfs
from tests.conftest import MakeApi
from tests.test_pdf_api import finished, upload


async def test_a_file_received_by_one_server_is_parsed_by_another(
    make_api: MakeApi, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    a = await make_api(data_dir=tmp_path / "a", upload_dir=str(shared))
    b = await make_api(data_dir=tmp_path / "b", upload_dir=str(shared))
    status, job = await upload(a, pdfs.text_pdf(pages=2, title="Shared Folder"))
    assert status == 202, job
    assert (await finished(a, job["jobId"]))["status"] == "completed"
    sha = job["payload"]["sha256"]
    assert sorted(p.name for p in shared.iterdir()) == [stored_name(sha, ".owners"),
                                                       stored_name(sha)]  # fmt: skip
    assert not (tmp_path / "a" / "uploads").exists()
    by_hash = {"type": "pdf-notes", "payload": {"sha256": sha}}
    status, named = await b.post("/api/jobs", json=by_hash)
    assert status == 202, named  # the owner record is in the shared folder too
    done = await finished(b, named["jobId"])
    assert done["status"] == "completed" and done["result"]["pageCount"] == 2, done
    other = await b.as_user("mallory")
    status, refused = await other.post("/api/jobs", json=by_hash)
    assert status == 404 and refused["error"]["code"] == "UPLOAD_MISSING"
