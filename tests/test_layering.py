"""The core knows no plugin: nothing PDF-specific in the generic job machinery (issue 12)."""

from __future__ import annotations

import subprocess

from .liveserver import ROOT

CORE = ["jobserver/store", "jobserver/worker.py", "jobserver/handlers.py", "jobserver/queue.py",
        "jobserver/web/jobs.py", "jobserver/retention.py", "jobserver/jobtypes.py",
        "jobserver/models.py"]  # fmt: skip
PDF_WORDS = r"notes|upload|sha256|cachehit|downloading|extracting|generating|saving|\bpdf"


def test_the_generic_core_names_nothing_of_the_pdf_plugin() -> None:
    found = subprocess.run(
        ["git", "grep", "-n", "-i", "-E", PDF_WORDS, "--", *CORE],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert found.returncode == 1 and not found.stdout, found.stdout


def test_the_core_never_imports_a_plugin() -> None:
    found = subprocess.run(
        ["git", "grep", "-n", "-E", r"(from|import) (jobserver)?\.*(pdf|demo)\b", "--",
         "jobserver", ":!jobserver/pdf", ":!jobserver/demo.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert not found.stdout, found.stdout


def test_the_python_client_s_copy_of_the_statuses_matches_the_server() -> None:
    """The light client cannot import the server; what it copies is checked here."""
    from jobserver.client import models as client
    from jobserver.models import STATUS_EVENT_TYPES, TERMINAL, EventType

    assert {s.value for s in TERMINAL} == client.TERMINAL_STATUSES
    # job.removed follows one of the others (only a finished job is removed).
    finishing = {EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED, EventType.REMOVED}
    assert {t.value for t in finishing} == client.TERMINAL_EVENT_TYPES
    assert finishing <= STATUS_EVENT_TYPES
