"""The stages of a ``pdf-notes`` job, with the names people see (merged into GET /api/meta)."""

from __future__ import annotations

from ..jobtypes import Stage

DOWNLOADING = Stage("downloading", "Reading file")
EXTRACTING = Stage("extracting", "Extracting text")
GENERATING = Stage("generating", "Generating notes")
SAVING = Stage("saving", "Saving notes")

STAGES = (DOWNLOADING, EXTRACTING, GENERATING, SAVING)
