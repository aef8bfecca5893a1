"""The documentation a person running the server reads: complete, current, and linked right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_settings_table_lists_every_setting_and_is_current() -> None:
    """Fails when a setting has no description, no flag, or docs/settings.md is stale."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings-doc"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_troubleshooting_covers_the_seed_topics_and_the_debug_switch() -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    for heading in ("## Events do not reach the page", "## Duplicate subscriptions",
                    "## A handler whose events do not appear"):
        assert heading in text
    assert "--debug" in text and "JOBSERVER_DEBUG" in text
