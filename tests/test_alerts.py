"""The alert rules in ops/: valid, firing on the series they should, naming real metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import MakeApi

OPS = Path(__file__).resolve().parent.parent / "ops"
RULES = OPS / "alerts.yml"
SUFFIXES = ("_total", "_sum", "_count", "_bucket", "_created")


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run scripts/system-deps (Debian package prometheus)"
    done = subprocess.run([tool, *args], cwd=OPS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_alert_rules_are_valid() -> None:
    assert "SUCCESS: 4 rules found" in promtool("check", "rules", RULES.name)


def test_alert_rules_fire_on_bad_series_and_stay_quiet_on_good_ones() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


async def test_alert_rules_name_only_metrics_the_server_exports(make_api: MakeApi) -> None:
    api = await make_api()
    async with api.client.get("/metrics") as resp:
        exported = set(re.findall(r"^# TYPE (\S+) ", await resp.text(), re.MULTILINE))
    exprs = "\n".join(re.findall(r"expr: \|?\n?((?:.|\n)*?)\n\s+for:", RULES.read_text()))
    used = set(re.findall(r"\b([a-z][a-z0-9_]*)(?=\{|\[| >)", exprs))
    used -= {"rate", "increase", "sum", "without", "by", "and"}
    assert used, exprs
    for name in used:
        base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
        assert name in exported or base in exported, f"{name} is not exported by /metrics"
