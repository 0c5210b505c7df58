"""The values a :class:`.store.StudyStore` takes and hands out, and the check of answers before they are saved.

:class:`ScoreEntry` is one answer to save, :class:`ScoreRow` a stored one, :class:`ReaderInfo` a reader,
:class:`AssignedCase` one case in a reader's order and :class:`ImageKey` the organiser's key to one image code.
:func:`check_entries` refuses answers the study could not have asked for (unknown criterion, case or image, a
value out of range, a ranking that leaves an image out). :mod:`.store` re-exports the classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import StudyError
from .model import Criterion

__all__ = ["ReaderInfo", "AssignedCase", "ScoreEntry", "ScoreRow", "ImageKey", "row_to_score", "check_entries"]


@dataclasses.dataclass(frozen=True)
class ReaderInfo:
    """A reader: ``key`` (folded name, stored with every score), ``name`` as typed, whether just created."""

    key: str
    name: str
    new: bool = False


@dataclasses.dataclass(frozen=True)
class AssignedCase:
    """One case in a reader's order: 1-based ``position``, the case code, source and candidate codes.

    ``candidates`` is in this reader's display order; ``sources`` maps each source code to its modality.
    """

    position: int
    case_code: str
    candidates: tuple[str, ...]
    sources: tuple[tuple[str, str | None], ...]


@dataclasses.dataclass(frozen=True)
class ScoreEntry:
    """One answer to save.

    ``image_code`` is the candidate's code (every criterion here is given per candidate; a ranking is one
    entry per candidate of the case, all saved together). ``value``: the scale value, 1/0 for
    acquired/generated, or the rank. ``confidence``: 1-5 for realism. ``opened_at``: epoch seconds when the
    item was shown; ``seconds``: time spent on it.
    """

    case_code: str
    image_code: str
    criterion: str
    value: float
    confidence: int | None = None
    opened_at: float | None = None
    seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class ScoreRow:
    """A stored score row (see :class:`ScoreEntry`) with its uid, reader, save time and computer."""

    id: int
    uid: str
    reader_key: str
    case_code: str
    image_code: str | None
    criterion: str
    value: float
    confidence: int | None
    opened_at: float | None
    saved_at: float
    seconds: float | None
    client: str | None


@dataclasses.dataclass(frozen=True)
class ImageKey:
    """The organiser's key to one image code: case id, role, modality, method, acquired or not, path."""

    code: str
    case_code: str
    case_id: str
    role: str
    modality: str | None
    method: str | None
    is_real: bool | None
    path: str | None


def row_to_score(r: Any) -> ScoreRow:
    """A row of the scores table as a :class:`ScoreRow`."""
    return ScoreRow(int(r.id), r.uid, r.reader_key, r.case_code, r.image_code, r.criterion, float(r.value),
                    None if r.confidence is None else int(r.confidence), r.opened_at, float(r.saved_at),
                    r.seconds, r.client)


def check_entries(entries: Sequence[ScoreEntry], criteria: Sequence[Criterion],
                  candidates: Mapping[str, Sequence[str]]) -> None:
    """Refuse answers to a study with these ``criteria`` and ``candidates`` (case code -> candidate image codes).

    Raises
    ------
    StudyError
        Unknown criterion, case or image, a value out of range, or a ranking that does not rank every candidate
        of its case at once.
    """
    crit = {c.name: c for c in criteria}
    rankings: dict[tuple[str, str], dict[str, float]] = {}
    for e in entries:
        c = crit.get(e.criterion)
        if c is None:
            raise StudyError(f"unknown criterion {e.criterion!r}; this study asks: {', '.join(crit)}")
        cands = candidates.get(e.case_code)
        if cands is None:
            raise StudyError(f"no case {e.case_code!r} in this study")
        if e.image_code not in cands:
            raise StudyError(f"image {e.image_code!r} is not a candidate of case {e.case_code!r}")
        v = float(e.value)
        if c.kind == "scale":
            if v != int(v) or not c.min_value <= v <= c.max_value:
                raise StudyError(f"{c.label}: {e.value!r} is not a whole number from {c.min_value} to "
                                 f"{c.max_value}")
        elif c.kind == "realism":
            if v not in (0.0, 1.0):
                raise StudyError(f"{c.label}: the answer must be 1 (acquired) or 0 (generated), got {e.value!r}")
            if e.confidence is None or not 1 <= int(e.confidence) <= 5:
                raise StudyError(f"{c.label}: give a confidence from 1 to 5, got {e.confidence!r}")
        else:
            if v != int(v) or not 1 <= v <= len(cands):
                raise StudyError(f"{c.label}: rank {e.value!r} must be a whole number from 1 to {len(cands)}")
            rankings.setdefault((e.case_code, e.criterion), {})[e.image_code] = v
    for (case, name), ranks in rankings.items():
        missing = set(candidates[case]) - set(ranks)
        if missing:
            raise StudyError(f"{crit[name].label}: a ranking must rank every image of the case at once; "
                             f"{len(missing)} of {len(candidates[case])} have no rank")
