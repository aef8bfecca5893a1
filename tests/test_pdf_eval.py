"""The notes evaluation over real PDFs (tests/corpus.py), and pypdf's test files over the API.

The evaluation's checks are in tests/evaluation.py; ``python -m tests.evaluation`` prints the
table this test asserts is all zeros.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from jobserver.pdf import language, ocr
from jobserver.pdf.offline import build_notes
from tests import corpus, evaluation
from tests.conftest import MakeApi
from tests.test_pdf_api import finished

# What a file of pypdf's resources/ may end as: notes, or one of these codes.
CODED = {"ENCRYPTED_PDF", "CORRUPT_PDF", "NO_TEXT", "TOO_MANY_PAGES", "TEXT_TOO_LARGE",
         "PARSE_MEMORY", "PARSE_TIMEOUT"}  # fmt: skip


@pytest.fixture(scope="module")
def paths() -> dict[str, Path]:
    return corpus.fetch()


@pytest.fixture(scope="module")
def results(paths: dict[str, Path]) -> list[evaluation.Result]:
    return evaluation.evaluate(corpus.DOCS, paths, build_notes)


def test_the_evaluation_set_has_every_kind_it_needs() -> None:
    docs = corpus.DOCS
    assert len(docs) >= 25 and len({d.name for d in docs}) == len(docs)
    kinds = Counter(d.kind for d in docs)
    assert {"guideline", "manual", "essay", "slides", "scanned"} <= set(kinds)
    assert sum(d.references and d.running_headers for d in docs) >= 3
    assert sum(d.lang in ("de", "fr") for d in docs) >= 2


def test_every_document_gets_notes_with_no_defect(results: list[evaluation.Result]) -> None:
    assert ocr.available(), "tesseract is not installed: run scripts/system-deps"
    failed = {r.name: r.error for r in results if r.notes is None}
    assert failed == {}
    found = {r.name: r.defects for r in results if r.defects}
    assert found == {}, evaluation.table(results)


def test_notes_of_scans_come_from_ocr(results: list[evaluation.Result]) -> None:
    scans = [r for r in results if r.kind == "scanned"]
    assert scans and all(r.notes is not None and r.notes.summary for r in scans)
    french = next(r for r in results if r.name == "francais")
    assert french.notes is not None and "whisky" in french.notes.summary


def test_german_and_french_documents_are_read_in_their_language(
    paths: dict[str, Path],
) -> None:
    for doc in corpus.DOCS:
        if doc.lang == "en" or doc.kind == "scanned":
            continue
        text = evaluation.read(str(paths[doc.name]))
        assert language.detect(" ".join(text.pages)) == doc.lang, doc.name
        notes = build_notes(text)
        stop = language.stopwords(doc.lang)
        # The key phrases were chosen with that language's stop words: none starts or ends
        # with one, and none of them is English-only filler.
        for keyword in notes.keywords:
            words = keyword.lower().split()
            assert words[0] not in stop and words[-1] not in stop, (doc.name, keyword)


def test_no_summary_or_key_point_comes_from_a_bibliography(
    results: list[evaluation.Result], paths: dict[str, Path]
) -> None:
    with_references = [r for r in results if corpus.DOCS[_index(r.name)].references]
    assert len(with_references) >= 3
    for result in with_references:
        doc = evaluation.read(str(paths[result.name]))
        assert evaluation._bibliography(doc), f"{result.name}: no references section found"
        assert result.count("bibliography") == 0


def _index(name: str) -> int:
    return next(i for i, d in enumerate(corpus.DOCS) if d.name == name)


async def test_every_file_of_pypdfs_resources_ends_with_notes_or_a_code(
    make_api: MakeApi,
) -> None:
    files = corpus.pypdf_resources()
    assert len(files) >= 60
    api = await make_api(pdf_workers=2, pdf_timeout_seconds=6)  # OCR stops at 4 s
    outcomes: dict[str, str] = {}
    for path in files:
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(path.read_bytes()), filename=path.name,
                       content_type="application/pdf")  # fmt: skip
        status, job = await api.post("/api/jobs", data=form)
        if status != 202:
            outcomes[path.name] = job["error"]["code"]
            assert status == 415 and outcomes[path.name] == "NOT_A_PDF", (path.name, job)
            continue
        done = await finished(api, job["jobId"], timeout=120)
        if done["status"] == "completed":
            outcomes[path.name] = "notes"
        else:
            assert done["status"] == "failed", (path.name, done)
            assert done["error"]["code"] in CODED, (path.name, done["error"])
            assert done["error"]["message"], path.name
            outcomes[path.name] = done["error"]["code"]
    # pypdf's encryption cases: RC4 and AES, revisions 2 to 6; a file whose user password
    # is empty opens (owner password or none), one that needs a password is ENCRYPTED_PDF.
    encryption = [p.name for p in files if p.parent.name == "encryption"]
    assert len(encryption) >= 15
    for name in encryption:
        needs = "user-password" in name or name in ("r6-both-passwords.pdf",
                                                     "r6-cleartext-metadata.pdf")  # fmt: skip
        assert outcomes[name] == ("ENCRYPTED_PDF" if needs else "notes"), (name, outcomes[name])
    for name in ("encrypted-file.pdf", "crazyones-encrypted-256.pdf",
                 "libreoffice-writer-password.pdf"):  # fmt: skip
        assert outcomes[name] == "ENCRYPTED_PDF", name
    assert Counter(outcomes.values())["notes"] >= 40, outcomes
    await asyncio.sleep(0)  # the server is still serving: a last plain request
    status, _ = await api.get("/api/jobs")
    assert status == 200


async def test_a_scanned_pdf_gets_notes_from_ocr_in_the_parser_process(
    make_api: MakeApi, paths: dict[str, Path]
) -> None:
    api = await make_api(pdf_workers=1)
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(paths["francais"].read_bytes()), filename="scan.pdf",
                   content_type="application/pdf")  # fmt: skip
    status, job = await api.post("/api/jobs", data=form)
    assert status == 202, job
    done = await finished(api, job["jobId"], timeout=120)
    assert done["status"] == "completed", done["error"]
    _, note = await api.get(f"/api/notes/{done['result']['noteId']}")
    assert "whisky" in note["summary"] and note["title"] != "Adobe Photoshop PDF"
    assert note["keywords"] and note["pageCount"] == 1


async def test_a_500_page_pdf_gets_its_notes_inside_the_default_limits(
    make_api: MakeApi,
) -> None:
    from tests import pdfs

    api = await make_api()
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(pdfs.many_pages_pdf(500)), filename="long.pdf",
                   content_type="application/pdf")  # fmt: skip
    status, job = await api.post("/api/jobs", data=form)
    assert status == 202, job
    done = await finished(api, job["jobId"], timeout=120)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["pageCount"] == 500
