"""Checking the readers and score rows of a returned bundle against the organiser's study before anything merges.

A returned bundle is the reader's file and is not trusted: :func:`check_rows` takes its reader and score rows
as read (unconverted: a SQLite file may hold text in a number column) and lists every problem with them: a
reader whose key is not their folded name, a reader the study or the bundle does not allow, a score row naming
an unknown criterion, case, image or reader, a value or confidence out of range, a time in the future or before
the study. It also returns the new readers and the converted score rows that may be merged when there is no
problem. :func:`.bundle.import_results` refuses the whole bundle when the list is not empty.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

from ..core.errors import StudyError
from .bundle_format import CLOCK_SKEW_S, valid_code
from .model import Criterion, reader_key
from .store import StudyStore

__all__ = ["check_rows"]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)


def _when(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return _fmt(t)


def _row_span(ids: Sequence[object]) -> str:
    """"score row 4", "score rows 4-15", "score rows 4, 7, 9-12"."""
    nums = sorted(i for i in ids if isinstance(i, int))
    runs: list[list[int]] = []
    for i in nums:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"score row{'s' if len(nums) != 1 else ''} {text}"


@dataclasses.dataclass(frozen=True)
class _Study:
    """What the rows are checked against, read once from the organiser's database."""

    now: float
    created: float
    open_enrolment: bool
    criteria: dict[str, Criterion]
    candidates: dict[str, list[str]]  # case code -> candidate image codes
    known: dict[str, str]  # reader key -> name

    @classmethod
    def of(cls, master: StudyStore) -> "_Study":
        info = master.info()
        return cls(time.time(), info["created_at"], info["open_enrolment"],
                   {c.name: c for c in master.criteria()},
                   {case: master.candidate_codes(case) for case in master.case_codes()},
                   {r.key: r.name for r in master.readers()})


def check_rows(master: StudyStore, readers: Sequence[Mapping], scores: Sequence[Mapping],
               manifest: dict | None) -> tuple[list[str], list[dict], list[dict]]:
    """Every problem with the readers and score rows of a source (as read, unconverted), the new readers and
    the score rows to merge (converted)."""
    study = _Study.of(master)
    problems: list[str] = []
    # Readers: the source's own, then the binding of the bundle to its readers.
    listed = _listed_readers(readers, study, problems)
    bound = _bound_readers(master, manifest, study, problems)
    _check_reader_keys(scores, listed, bound, study, problems)
    # Score rows, one by one.
    clean: list[dict] = []
    for row in sorted(scores, key=lambda r: r.get("id") if isinstance(r.get("id"), int) else -1):
        said, converted = _check_score(row, study)
        if said:
            problems += [f"score row {row.get('id')}: {text}" for text in said]
            continue
        clean.append(converted)
    new_readers = [r for k, r in listed.items() if k not in study.known]
    return problems, new_readers, clean


# -- readers -----------------------------------------------------------------------------------------------
def _listed_readers(readers: Sequence[Mapping], study: _Study, problems: list[str]) -> dict[str, dict]:
    """The source's reader rows whose key is their folded name, converted (an implausible time becomes now)."""
    listed: dict[str, dict] = {}
    for r in readers:
        key, name = r.get("reader_key"), r.get("name")
        if not isinstance(key, str) or not isinstance(name, str):
            problems.append(f"a reader row has no usable key and name ({key!r}, {name!r})")
            continue
        try:
            folded = reader_key(name)
        except StudyError:
            folded = None
        if folded != key:
            problems.append(f"reader {key!r} is named {name!r}, which is reader {folded!r}")
            continue
        at = _number(r.get("created_at"))
        at = at if at is not None and study.created - CLOCK_SKEW_S <= at <= study.now + CLOCK_SKEW_S else study.now
        listed[key] = {"reader_key": key, "name": " ".join(name.split()), "created_at": at}
    return listed


def _bound_readers(master: StudyStore, manifest: dict | None, study: _Study, problems: list[str]) -> set[str] | None:
    """The reader keys the bundle was made for when the study's enrolment is closed (None: anyone may answer)."""
    if manifest is None or study.open_enrolment:
        return None
    bundle_id = manifest.get("bundle_id")
    if bundle_id is not None:
        keys = master.bundle_readers(bundle_id)
        if keys is None:
            problems.append("bundle.json's bundle_id was not exported from this study database (was "
                            "bundle.json edited, or the bundle made from another copy of the study?), and the "
                            "study takes no new readers, so whose bundle it is cannot be told")
            return None
        return set(keys)
    if isinstance(manifest.get("readers"), list):  # a bundle from before bundle ids
        bound: set[str] = set()
        for name in manifest["readers"]:
            try:
                bound.add(reader_key(name))
            except StudyError:
                pass
        return bound
    return None


def _check_reader_keys(scores: Sequence[Mapping], listed: Mapping[str, dict], bound: set[str] | None,
                       study: _Study, problems: list[str]) -> None:
    """Every reader who answered or is new must be registered, allowed in the study and (if bound) in the bundle."""
    known = study.known
    rows_of: dict[str, list[object]] = {}
    for row in scores:
        if isinstance(row.get("reader_key"), str):
            rows_of.setdefault(row["reader_key"], []).append(row.get("id"))
    for key in sorted(set(rows_of) | {k for k in listed if k not in known}):
        span = f" ({_row_span(rows_of[key])})" if key in rows_of else ""
        if key not in listed and key not in known:
            problems.append(f"reader {key!r}{span} is not registered in the bundle or the study")
        elif key not in known and not study.open_enrolment:
            problems.append(f"reader {key!r}{span} is not a reader of this study, and it takes no new readers "
                            "(open_enrolment is false)")
        elif bound is not None and key not in bound:
            made_for = ", ".join(known.get(k, k) for k in sorted(bound)) or "nobody"
            problems.append(f"reader {key!r}{span} answered in a bundle that is not theirs: the bundle was made "
                            f"for {made_for}, and the study takes no new readers (open_enrolment is false)")


# -- score rows --------------------------------------------------------------------------------------------
def _check_score(row: Mapping, study: _Study) -> tuple[list[str], dict]:
    """What is wrong with one score row (empty when nothing), and the row converted for merging."""
    said: list[str] = []
    uid = row.get("uid")
    if not isinstance(uid, str) or not 1 <= len(uid) <= 32:
        said.append(f"uid {uid!r} is not a row id")
    if not isinstance(row.get("reader_key"), str):
        said.append("names no reader")
    name = row.get("criterion")
    crit = study.criteria.get(name) if isinstance(name, str) else None
    if crit is None:
        said.append(f"unknown criterion {name!r} (this study asks {', '.join(study.criteria)})")
    case, image = _check_codes(row, study, said)
    value = _check_value(row, crit, case, study, said)
    confidence = row.get("confidence")
    if confidence is not None:
        c = _number(confidence)
        if c is None or not math.isfinite(c) or c != int(c) or not 1 <= c <= 5:
            said.append(f"confidence {_fmt(c) if c is not None else repr(confidence)} outside 1-5")
    times = _check_times(row, study, said)
    seconds = row.get("seconds")
    s = _number(seconds)
    if seconds is not None and (s is None or not math.isfinite(s)):
        said.append(f"seconds {seconds!r} is not a number")
    elif s is not None and s < 0:
        said.append(f"seconds {_fmt(s)} is negative")
    client = row.get("client")
    if client is not None and not isinstance(client, str):
        said.append(f"client {client!r} is not a computer name")
    if said:
        return said, {}
    return said, {"uid": uid, "reader_key": row["reader_key"], "case_code": case, "image_code": image,
                  "criterion": name, "value": value, "confidence": None if confidence is None else int(confidence),
                  "opened_at": times["opened_at"], "saved_at": times["saved_at"], "seconds": s, "client": client}


def _check_codes(row: Mapping, study: _Study, said: list[str]) -> tuple[str | None, object]:
    """The row's case code (None when it is not a case of the study) and image code, checked."""
    case, image = row.get("case_code"), row.get("image_code")
    if not valid_code(case):
        said.append(f"case code {case!r} is not a valid code")
        case = None
    elif case not in study.candidates:
        said.append(f"no case {case!r} in this study")
        case = None
    if image is None:
        said.append("names no image")
    elif not valid_code(image):
        said.append(f"image code {image!r} is not a valid code")
    elif case is not None and image not in study.candidates[case]:
        said.append(f"image {image!r} is not a candidate of case {case!r}")
    return case, image


def _check_value(row: Mapping, crit: Criterion | None, case: str | None, study: _Study,
                 said: list[str]) -> float | None:
    """The row's value as a number, checked against its criterion: a scale's range, 1/0 with a confidence for
    realism, a rank among the case's candidates."""
    value = _number(row.get("value"))
    if value is None:
        said.append(f"value {row.get('value')!r} is not a number")
    elif not math.isfinite(value):
        said.append(f"value {_fmt(value)} is not a finite number")
    elif crit is not None:
        whole = value == int(value)
        if crit.kind == "scale":
            if not crit.min_value <= value <= crit.max_value:
                said.append(f"value {_fmt(value)} outside {crit.min_value}-{crit.max_value} for criterion "
                            f"{crit.name!r}")
            elif not whole:
                said.append(f"value {_fmt(value)} is not a whole number ({crit.min_value}-{crit.max_value}) "
                            f"for criterion {crit.name!r}")
        elif crit.kind == "realism":
            if value not in (0.0, 1.0):
                said.append(f"value {_fmt(value)} for criterion {crit.name!r} must be 1 (acquired) or 0 "
                            "(generated)")
            if row.get("confidence") is None:
                said.append(f"criterion {crit.name!r} needs a confidence from 1 to 5")
        elif case is not None and (not whole or not 1 <= value <= len(study.candidates[case])):
            said.append(f"rank {_fmt(value)} outside 1-{len(study.candidates[case])} for criterion {crit.name!r}")
    return value


def _check_times(row: Mapping, study: _Study, said: list[str]) -> dict[str, float | None]:
    """``saved_at`` (required) and ``opened_at``: times, neither in the future nor before the study."""
    times = {}
    for field, verb, required in (("saved_at", "saved", True), ("opened_at", "opened", False)):
        raw = row.get(field)
        t = _number(raw)
        times[field] = t
        if raw is None and not required:
            continue
        if t is None or not math.isfinite(t):
            said.append(f"{field} {raw!r} is not a time")
        elif t > study.now + CLOCK_SKEW_S:
            said.append(f"{verb} in the future ({_when(t)})")
        elif t < study.created - CLOCK_SKEW_S:
            said.append(f"{verb} before the study was created ({_when(t)})")
    return times
