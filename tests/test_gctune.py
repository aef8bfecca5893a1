"""The server's garbage-collector settings (in a child process: they are process-wide)."""

from __future__ import annotations

import subprocess
import sys

from jobserver import gctune


def test_tune_freezes_start_up_objects_and_raises_thresholds() -> None:
    code = (
        "import gc\n"
        "from jobserver import gctune\n"
        "before = gc.get_freeze_count()\n"
        "gctune.tune()\n"
        "print(before, gc.get_freeze_count(), *gc.get_threshold())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    before, after, *thresholds = map(int, out)
    assert before == 0 and after > 1000  # the imported modules' objects, at least
    assert tuple(thresholds) == gctune.THRESHOLDS
