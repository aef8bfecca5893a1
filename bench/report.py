"""Markdown for the results: one table per case, the ratios, and the targets of issues 2-4."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness import spread

Runs = list[dict[str, Any]]


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def metric(runs: Runs, key: str) -> dict[str, float]:
    return spread([r[key] for r in runs if "error" not in r and r.get(key) is not None])


@dataclass
class Row:
    """One system (or configuration) in a table: its repeated runs and how to label it."""

    label: str
    runs: Runs
    note: str = ""

    def errors(self) -> list[str]:
        return [r["error"] for r in self.runs if "error" in r]


def table(
    rows: Sequence[Row],
    key: str,
    unit: str,
    baselines: Sequence[Row],
    *,
    digits: int = 0,
    extra: Sequence[tuple[str, Callable[[Row], str]]] = (),
) -> str:
    """Median, min and max of ``key`` per row, then its ratio to each baseline's median."""
    head = ["system", f"median {unit}", "min", "max", "runs"]
    head += [f"x {b.label}" for b in baselines]
    head += [name for name, _ in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        s = metric(row.runs, key)
        cells = [row.label, fmt(s["median"], digits), fmt(s["min"], digits)]
        cells += [fmt(s["max"], digits), f"{s['n']}/{len(row.runs)}"]
        for b in baselines:
            cells.append(fmt(ratio(s["median"], metric(b.runs, key)["median"]), 2))
        cells += [fn(row) for _, fn in extra]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {row.label}: {row.note}" for row in rows if row.note]
    for row in rows:
        for err in row.errors()[:2]:
            notes.append(f"- {row.label} failed a run: `{err.splitlines()[-1][:200]}`")
    return "\n".join(lines + (["", *notes] if notes else []))


@dataclass
class Target:
    """A speed target from an issue, and whether this run met it."""

    issue: int
    text: str
    measured: str
    met: bool | None  # None: could not be measured in this run

    def cells(self) -> list[str]:
        verdict = {True: "**met**", False: "**not met**", None: "not measured"}[self.met]
        return [str(self.issue), self.text, self.measured, verdict]


def targets_table(targets: Sequence[Target]) -> str:
    lines = ["| issue | target | measured (this run) | verdict |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(t.cells()) + " |" for t in targets]
    return "\n".join(lines)
