"""One reader's session on a blinded study: their cases in order, their answers, saving, resuming.

This is what the app's reader mode drives (and what tests drive without a GUI). It sees codes only: a case
is "case 12 of 40", candidates are letters A, B, C in the reader's seeded order, and images are files named
by code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..core.errors import StudyError
from .blinding import candidate_letters
from .model import Criterion
from .store import AssignedCase, ScoreEntry, ScoreRow, StudyStore

__all__ = ["ReaderSession"]


class ReaderSession:
    """A signed-in reader.

    Parameters
    ----------
    store : StudyStore
        A blinded store (a reader bundle's); an organiser's store is refused.
    name : str
        The reader's name as typed (case and extra spaces do not matter).
    image_path : callable
        ``image_path(code) -> Path`` of an image file.

    Raises
    ------
    StudyError
        The store is not blinded, or the name is unknown and the study takes no new readers.
    """

    def __init__(self, store: StudyStore, name: str, image_path: Callable[[str], Path]):
        if not store.blinded:
            raise StudyError("reader sessions run on blinded copies only (export a reader bundle)", store.where)
        self.store = store
        self.reader = store.sign_in(name)
        self.cases: list[AssignedCase] = store.assignment(self.reader.key)
        self.criteria: list[Criterion] = store.criteria()
        self._image_path = image_path
        self._answers: dict[str, dict[tuple[str | None, str], ScoreRow]] = {}
        for row in store.latest_scores(self.reader.key):
            self._answers.setdefault(row.case_code, {})[(row.image_code, row.criterion)] = row

    # -- navigation -------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.cases)

    def case(self, index: int) -> AssignedCase:
        """The case at 0-based ``index`` of this reader's order."""
        if not 0 <= index < len(self.cases):
            raise StudyError(f"case number {index + 1} is outside 1..{len(self.cases)}")
        return self.cases[index]

    def label(self, index: int) -> str:
        """"case 12 of 40" for 0-based ``index`` 11 of 40."""
        return f"case {index + 1} of {self.total}"

    def letters(self, index: int) -> dict[str, str]:
        """Candidate code -> display letter ("A", "B", ...) for a case, in display order."""
        codes = self.case(index).candidates
        return dict(zip(codes, candidate_letters(len(codes))))

    def image_path(self, code: str) -> Path:
        return self._image_path(code)

    def is_complete(self, index: int) -> bool:
        case = self.case(index)
        return self.store.case_complete(self._answers.get(case.case_code, {}), case)

    def completed(self) -> int:
        return sum(self.is_complete(i) for i in range(self.total))

    def resume_index(self) -> int:
        """0-based index of the first case not yet complete (the last case when all are)."""
        return next((i for i in range(self.total) if not self.is_complete(i)), self.total - 1)

    def answers(self, index: int) -> dict[tuple[str | None, str], ScoreRow]:
        """The latest answers of a case, keyed ``(image_code, criterion)``."""
        return dict(self._answers.get(self.case(index).case_code, {}))

    def answer(self, index: int, code: str, criterion: str) -> ScoreRow | None:
        return self._answers.get(self.case(index).case_code, {}).get((code, criterion))

    # -- saving -----------------------------------------------------------------------------------------
    def _store_rows(self, rows: list[ScoreRow]) -> None:
        for row in rows:
            self._answers.setdefault(row.case_code, {})[(row.image_code, row.criterion)] = row

    def score(self, index: int, code: str, criterion: str, value: float, *, confidence: int | None = None,
              opened_at: float | None = None, seconds: float | None = None) -> ScoreRow:
        """Save one answer for candidate ``code`` of case ``index``; returns the row once committed."""
        case = self.case(index)
        if opened_at is not None and seconds is None:
            seconds = max(0.0, time.time() - opened_at)
        rows = self.store.save_scores(self.reader.key, [ScoreEntry(case.case_code, code, criterion, value,
                                                                   confidence, opened_at, seconds)])
        self._store_rows(rows)
        return rows[0]

    def rank(self, index: int, ranks: Mapping[str, int], criterion: str = "ranking", *,
             opened_at: float | None = None, seconds: float | None = None) -> list[ScoreRow]:
        """Save a ranking of every candidate of case ``index`` (code -> rank, 1 best, ties share a rank)."""
        case = self.case(index)
        if opened_at is not None and seconds is None:
            seconds = max(0.0, time.time() - opened_at)
        entries = [ScoreEntry(case.case_code, code, criterion, int(ranks[code]), None, opened_at, seconds)
                   for code in case.candidates if code in ranks]
        extra = set(ranks) - set(case.candidates)
        if extra:
            raise StudyError(f"{len(extra)} ranked image(s) are not candidates of {self.label(index)}")
        rows = self.store.save_scores(self.reader.key, entries)
        self._store_rows(rows)
        return rows
