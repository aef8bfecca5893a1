"""docs/migrating.md stays true: every part of the seed is mapped, its stage table names the
server's own stages and display names, and every code and client call it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

from jobserver.models import STAGE_DISPLAY_NAMES
from jobserver.pdf.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "migrating.md").read_text()


def test_every_part_of_the_seed_is_mapped_with_a_before_and_after() -> None:
    for part in ("## The emitter", "## Gateway events and rooms", "## `webSocketService`",
                 "## The hook", "## `STAGE_DISPLAY_NAMES`", "## Error codes"):  # fmt: skip
        assert part in DOC, part
        section = DOC.split(part, 1)[1].split("\n## ", 1)[0]
        assert section.count("Before") >= 1 and section.count("After") >= 1, part
        assert section.count("```") >= 4, f"{part}: a before and an after snippet"


def test_the_stage_table_is_the_servers() -> None:
    names = {str(k): v for k, v in STAGE_DISPLAY_NAMES.items()}
    names.update({stage.id: stage.name for stage in STAGES})
    rows = re.findall(r"^\| [^|]+ \| `([a-z]+)` \| ([^|]+) \|$", DOC, re.M)
    assert len(rows) == len(names)
    for stage, shown in rows:
        assert names[stage] == shown.strip(), stage


def test_every_code_and_client_call_it_names_exists() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "jobserver").rglob("*.py"))
    errors = DOC.split("## Error codes", 1)[1]
    codes = set(re.findall(r"`([A-Z][A-Z_]{3,})`", errors)) - {"PDF_PROCESSING_ERROR"}
    assert len(codes) >= 12
    for code in codes:
        assert f'"{code}"' in source, code
    client = "\n".join(p.read_text() for p in (ROOT / "static").rglob("*.js"))
    for call in re.findall(r"client(?:\.api)?\.(\w+)\(", DOC):
        assert re.search(rf"\b{call}\b[:(]", client), call
