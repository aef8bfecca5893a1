"""Encrypted PDFs (issue 13, finding 11): every file of pypdf's ``resources/encryption/``
gives notes when it opens with an empty user password and ENCRYPTED_PDF when it needs one,
through the server's public behaviour (upload, job, notes), whichever engine reads it."""

from __future__ import annotations

import asyncio

from tests.conftest import MakeApi
from tests.security.pypdf_files import USER_PASSWORDS, encryption_files
from tests.test_pdf_api import finished, upload


async def test_encrypted_pdfs_open_with_an_empty_user_password_else_encrypted_pdf(
    make_api: MakeApi,
) -> None:
    files = encryption_files()
    assert len(files) >= 15 and set(USER_PASSWORDS) <= {f.name for f in files}
    api = await make_api()
    jobs = {}
    for path in files:
        status, job = await upload(api, path.read_bytes(), filename=path.name)
        assert status == 202, job
        jobs[path.name] = job["jobId"]
    done = dict(zip(jobs, await asyncio.gather(*(finished(api, j) for j in jobs.values())),
                    strict=True))  # fmt: skip
    for name, job in done.items():
        if name in USER_PASSWORDS:
            assert job["status"] == "failed", (name, job)
            assert job["error"]["code"] == "ENCRYPTED_PDF", (name, job["error"])
            assert not job["error"]["recoverable"]
        else:
            assert job["status"] == "completed", (name, job.get("error"))
            status, note = await api.get(f"/api/notes/{job['result']['noteId']}")
            assert status == 200 and "encryption test" in str(note).lower(), (name, note)
