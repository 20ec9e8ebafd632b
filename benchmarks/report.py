"""Figures with their targets, and the table printed at the end of a run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MB = 1_000_000  # the targets say MB: read as SI megabytes, the stricter reading


@dataclass
class Figure:
    """One line of the table; `met` is None when there is no target (context)."""

    scenario: str
    name: str
    unit: str  # "ms", "s", "MB", "x" (a ratio), "wf/s", "%"
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    value: float | None = None
    reference: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scaled(stats: dict[str, Any], factor: float) -> dict[str, float | None]:
    """p50/p90/p99 of a summary, multiplied (e.g. 1000 for seconds -> ms)."""
    return {q: (stats[q] * factor if stats.get(q) is not None and stats.get("n") else None)
            for q in ("p50", "p90", "p99")}


def _cell(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    header = ["scenario", "figure", "unit", "p50", "p90", "p99", "value", "reference",
              "ratio", "target", "result"]
    rows = [[f.scenario, f.name, f.unit, _cell(f.p50), _cell(f.p90), _cell(f.p99),
             _cell(f.value), _cell(f.reference), _cell(f.ratio, "x"), f.target,
             {True: "met", False: "MISSED", None: ""}[f.met] + (f" ({f.note})" if f.note
                                                                  else "")]
            for f in figures]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
