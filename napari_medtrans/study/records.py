"""The answers a study analysis works on, and one criterion's answers as a fully crossed array.

:class:`ScoreRecord` is one unblinded answer that counts. :func:`mid_ranks` turns rankings into mid-ranks
within each reading (tied candidates share the mean of the places they span). :func:`crossed` keeps the readers
and cases that answered every method and returns a :class:`Crossed` array (methods x readers x cases), listing
what it left out. Used by :mod:`.analysis` (which re-exports :class:`ScoreRecord`) and :mod:`.descriptive`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["ScoreRecord", "Crossed", "mid_ranks", "crossed"]


@dataclasses.dataclass(frozen=True)
class ScoreRecord:
    """One answer that counts, unblinded: reader, case id, image code, method, criterion, value, confidence,
    seconds spent."""

    reader: str
    case: str
    image: str
    method: str
    criterion: str
    value: float
    confidence: int | None = None
    seconds: float | None = None


def mid_ranks(records: Sequence[ScoreRecord], ranking: set[str]) -> list[ScoreRecord]:
    """Rankings as mid-ranks within each reading (tied candidates share the mean of the places they span)."""
    from scipy.stats import rankdata

    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, r in enumerate(records):
        if r.criterion in ranking:
            groups.setdefault((r.reader, r.case, r.criterion), []).append(i)
    out = list(records)
    for idx in groups.values():
        for i, v in zip(idx, rankdata([records[i].value for i in idx])):
            out[i] = dataclasses.replace(records[i], value=float(v))
    return out


@dataclasses.dataclass
class Crossed:
    """One criterion's fully crossed data: every kept reader answered every kept method on every kept case."""

    methods: list
    readers: list
    cases: list
    values: np.ndarray  # (methods, readers, cases)
    confidence: np.ndarray  # (methods, readers, cases), NaN where not given
    dropped: list


def crossed(recs: Sequence[ScoreRecord], methods: Sequence[str], criterion: str) -> Crossed:
    """Keep readers and cases with every method answered; drop the line with the fewest complete readings first
    (cases before readers on a tie), so that as few answers as possible are lost."""
    present = [m for m in methods if any(r.method == m for r in recs)]
    dropped = [{"criterion": criterion, "what": f"method {m}", "reason": "no answers"}
               for m in methods if m not in present]
    cell: dict[tuple[str, str], dict[str, ScoreRecord]] = {}
    for r in recs:
        cell.setdefault((r.reader, r.case), {})[r.method] = r
    readers = sorted({r.reader for r in recs})
    cases = sorted({r.case for r in recs})
    complete = {k for k, v in cell.items() if all(m in v for m in present)}
    answered = {rd: {r.method for r in recs if r.reader == rd} for rd in readers}
    kept_r, kept_c = list(readers), list(cases)
    while True:
        done_r = {rd: sum((rd, cs) in complete for cs in kept_c) for rd in kept_r}
        done_c = {cs: sum((rd, cs) in complete for rd in kept_r) for cs in kept_c}
        options = ([(n, 0, cs) for cs, n in done_c.items() if n < len(kept_r)]
                   + [(n, 1, rd) for rd, n in done_r.items() if n < len(kept_c)])
        if not options:
            break
        n, is_reader, name = min(options)
        if is_reader:
            missing = [m for m in present if m not in answered[name]]
            why = f"answered every method on {n} of {len(kept_c)} cases"
            if missing:
                why += f" (no answer at all for {', '.join(missing)})"
            dropped.append({"criterion": criterion, "what": f"reader {name}", "reason": why})
            kept_r.remove(name)
        else:
            dropped.append({"criterion": criterion, "what": f"case {name}",
                            "reason": f"answered for every method by {n} of {len(kept_r)} readers"})
            kept_c.remove(name)
    shape = (len(present), len(kept_r), len(kept_c))
    values, conf = np.full(shape, np.nan), np.full(shape, np.nan)
    for j, rd in enumerate(kept_r):
        for k, cs in enumerate(kept_c):
            for i, m in enumerate(present):
                rec = cell[(rd, cs)][m]
                values[i, j, k] = rec.value
                if rec.confidence is not None:
                    conf[i, j, k] = rec.confidence
    return Crossed(present, kept_r, kept_c, values, conf, dropped)
