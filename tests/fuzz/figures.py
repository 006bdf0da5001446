"""Figures of a fuzz session, printed at its end by ``conftest.pytest_terminal_summary``.

Each test records, per socket (or decoder) it attacked: inputs tried, crashes seen (a changed pid,
a process that stopped answering or heartbeating, an exception other than the documented one),
and whether the target's own counters matched what was sent, kind by kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    inputs: int = 0
    crashes: int = 0
    counters_checked: int = 0  # kinds whose counter was compared with what was sent
    counters_matched: int = 0
    dropped_by_transport: int = 0  # e.g. frames over MAXMSGSIZE: the connection is cut, nothing counted
    notes: list[str] = field(default_factory=list)


ROWS: dict[str, Row] = {}
OVERLOAD: list[str] = []


def record(target: str, inputs: int, *, crashes: int = 0, expected: Counter[str] | dict[str, int] | None = None,
           observed: dict[str, int] | None = None, dropped_by_transport: int = 0, note: str = "") -> None:
    row = ROWS.setdefault(target, Row())
    row.inputs += inputs
    row.crashes += crashes
    row.dropped_by_transport += dropped_by_transport
    if expected is not None and observed is not None:
        for kind, n in expected.items():
            row.counters_checked += 1
            row.counters_matched += int(observed.get(kind, 0) == n)
    if note:
        row.notes.append(note)


def overload(line: str) -> None:
    OVERLOAD.append(line)


def export() -> dict[str, object]:
    """Plain data, for an xdist worker to hand its figures to the controller."""
    return {"rows": {target: asdict(row) for target, row in ROWS.items()}, "overload": list(OVERLOAD)}


def absorb(other: dict[str, object]) -> None:
    """Add another worker's figures to these."""
    for target, data in other.get("rows", {}).items():  # type: ignore[union-attr]
        row = ROWS.setdefault(target, Row())
        for key in ("inputs", "crashes", "counters_checked", "counters_matched", "dropped_by_transport"):
            setattr(row, key, getattr(row, key) + data[key])
        row.notes.extend(data["notes"])
    OVERLOAD.extend(other.get("overload", []))  # type: ignore[arg-type]


def lines() -> list[str]:
    if not ROWS and not OVERLOAD:
        return []
    out = []
    if ROWS:
        width = max(len(t) for t in ROWS)
        out.append(f"{'target':<{width}}  {'inputs':>9}  {'crashes':>7}  {'counters matched':>16}  {'cut by transport':>16}")
        for target, row in sorted(ROWS.items()):
            counters = f"{row.counters_matched}/{row.counters_checked}" if row.counters_checked else "-"
            out.append(f"{target:<{width}}  {row.inputs:>9,}  {row.crashes:>7}  {counters:>16}  "
                       f"{row.dropped_by_transport:>16}")
        total = sum(r.inputs for r in ROWS.values())
        crashes = sum(r.crashes for r in ROWS.values())
        checked = sum(r.counters_checked for r in ROWS.values())
        matched = sum(r.counters_matched for r in ROWS.values())
        out.append(f"{'TOTAL':<{width}}  {total:>9,}  {crashes:>7}  {f'{matched}/{checked}':>16}")
        for target, row in sorted(ROWS.items()):
            for note in row.notes:
                out.append(f"  {target}: {note}")
    if OVERLOAD:
        out.append("overload:")
        out += [f"  {line}" for line in OVERLOAD]
    return out
