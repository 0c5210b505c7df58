"""The study database: SQLite (WAL) by default, PostgreSQL by URL; scores are only ever appended.

Durability. On SQLite every connection uses WAL journaling with ``synchronous=FULL`` and opens write
transactions with ``BEGIN IMMEDIATE`` (so concurrent writers queue on the busy timeout instead of failing
on a lock upgrade). :meth:`StudyStore.save_scores` returns only after COMMIT: a score it returned survives a
SIGKILL of the process the next instant, and several processes (or threads) may save into one file at once.

Blinding. The store answers readers' questions (:meth:`assignment`, :meth:`latest_scores`) with random codes
only. Methods, whether an image is acquired, file paths and case ids come only from :meth:`key`, which a
*blinded* copy (a reader bundle) cannot answer.

The connection set-up is in :mod:`.store_engine`; the values the store takes and hands out (:class:`ScoreEntry`,
:class:`ScoreRow`, ...) and the check of answers before saving are in :mod:`.store_rows`; the names listed in
``__all__`` stay importable from here.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..core.errors import StudyError
from . import schema as S
from .blinding import new_codes, reader_order
from .model import REAL, Criterion, StudySpec, reader_key
from .store_engine import database_url, is_sqlite, make_engine, sqlite_path
from .store_rows import AssignedCase, ImageKey, ReaderInfo, ScoreEntry, ScoreRow, check_entries, row_to_score

__all__ = [
    "StudyStore",
    "database_url",
    "ScoreEntry",
    "ScoreRow",
    "AssignedCase",
    "ImageKey",
    "ReaderInfo",
]


class StudyStore:
    """One study in a SQLite file or a PostgreSQL database.

    Parameters
    ----------
    target : path-like or str
        A SQLite file path or a database URL (``postgresql://user:pw@host/db``).
    create : bool
        Create the tables when they do not exist (a new SQLite file is created; its folder must exist).
    study_id : str, optional
        Which study of a database holding several (default: the only one).
    busy_timeout_s : float
        How long a SQLite writer waits for another writer before failing.

    Raises
    ------
    StudyError
        No database there (and ``create`` is False), not a study database, a schema newer than this code,
        or an unknown ``study_id``.
    """

    def __init__(self, target: str | os.PathLike, *, create: bool = False, study_id: str | None = None,
                 busy_timeout_s: float = 60.0):
        self.url = database_url(target)
        self.where = os.fspath(target) if is_sqlite(self.url) else self._safe_url()
        if is_sqlite(self.url):
            path = sqlite_path(self.url)
            if not create and not path.exists():
                raise StudyError("no study database here (create one with `medtrans study create`)", path)
            if create and not path.parent.is_dir():
                raise StudyError("the folder for the study database does not exist", path.parent)
        self.engine = make_engine(self.url, busy_timeout_s)
        try:
            self._open_schema(create)
            ids = self.study_ids()
        except sa.exc.DBAPIError as exc:  # OperationalError, DatabaseError ("file is not a database"), ...
            self.engine.dispose()
            raise StudyError(f"cannot open the study database: {exc.orig}", self.where) from None
        except StudyError:
            self.engine.dispose()
            raise
        self.study_id: str | None = None
        self._cache: dict[str, Any] = {}
        if study_id is not None:
            if study_id not in ids:
                self.engine.dispose()
                raise StudyError(f"no study {study_id!r} in this database; it holds: {', '.join(ids) or 'none'}",
                                 self.where)
            self.study_id = study_id
        elif len(ids) == 1:
            self.study_id = ids[0]
        elif len(ids) > 1:
            raise StudyError(f"this database holds {len(ids)} studies; choose one: {', '.join(ids)}", self.where)

    # -- plumbing ---------------------------------------------------------------------------------------
    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        """"sqlite" or "postgresql"."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release every connection (the store cannot be used afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> "StudyStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open_schema(self, create: bool) -> None:
        from .. import __version__

        with self.engine.begin() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table("medtrans_meta"):
                if not create:
                    raise StudyError("not a napari-medtrans study database (no medtrans_meta table)", self.where)
                S.metadata.create_all(conn)
                conn.execute(S.meta.insert(), [
                    {"key": "schema_version", "value": str(S.SCHEMA_VERSION)},
                    {"key": "package_version", "value": str(__version__)},
                ])
                return
            found = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "schema_version")).scalar()
            version = int(found or 0)
            if version > S.SCHEMA_VERSION:
                raise StudyError(
                    f"this study database has schema version {version}, written by a newer napari-medtrans; "
                    f"this version reads up to {S.SCHEMA_VERSION}: update napari-medtrans", self.where)
            if version < 1:
                raise StudyError("the study database has no schema version; it is damaged", self.where)
            while version < S.SCHEMA_VERSION:
                S.MIGRATIONS[version](conn)
                version += 1
                conn.execute(S.meta.update().where(S.meta.c.key == "schema_version").values(value=str(version)))

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == "schema_version")).scalar())

    def study_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(S.studies.c.study_id).order_by(S.studies.c.created_at))]

    def _need_study(self) -> str:
        if self.study_id is None:
            raise StudyError("this database holds no study yet", self.where)
        return self.study_id

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` ("ok" when sound); "ok" on PostgreSQL when a query succeeds."""
        with self.engine.connect() as conn:
            if self.backend == "sqlite":
                return ";".join(str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check"))
            conn.execute(sa.select(sa.func.count()).select_from(S.scores))
            return "ok"

    # -- creating ---------------------------------------------------------------------------------------
    def add_study(self, spec: StudySpec) -> str:
        """Store a new study (random codes for every case and image; readers listed get their orders).

        Returns
        -------
        str
            The new study id (this store now works on it).
        """
        spec.validate()
        study_id = secrets.token_hex(8)
        n_images = sum(len(c.sources) + len(c.candidates) for c in spec.cases)
        codes = iter(new_codes(len(spec.cases) + n_images))
        now = time.time()
        config = {"title": spec.title, "seed": spec.seed, "target": spec.target, "models": spec.models,
                  "methods": spec.methods(),
                  "criteria": [c.to_dict() for c in spec.criteria]}
        case_rows, image_rows = [], []
        for ci, case in enumerate(spec.cases):
            ccode = next(codes)
            case_rows.append({"study_id": study_id, "code": ccode, "case_id": case.case_id, "position": ci})
            candidates = list(case.candidates)
            random.SystemRandom().shuffle(candidates)  # stored order must not reveal the acquired image
            for ii, img in enumerate(list(case.sources) + candidates):
                image_rows.append({
                    "study_id": study_id, "code": next(codes), "case_code": ccode, "role": img.role,
                    "modality": img.modality, "method": img.method, "is_real": img.is_real,
                    "path": str(img.path), "position": ii})
        with self.engine.begin() as conn:
            conn.execute(S.studies.insert().values(
                study_id=study_id, title=spec.title, seed=int(spec.seed), blinded=False,
                open_enrolment=bool(spec.open_enrolment), created_at=now, config=json.dumps(config)))
            conn.execute(S.criteria.insert(), [
                {"study_id": study_id, "name": c.name, "kind": c.kind, "label": c.label, "question": c.question,
                 "min_value": int(c.min_value), "max_value": int(c.max_value), "position": i}
                for i, c in enumerate(spec.criteria)])
            conn.execute(S.cases.insert(), case_rows)
            conn.execute(S.images.insert(), image_rows)
        self.study_id = study_id
        self._cache.clear()
        for name in spec.readers:
            self.sign_in(name, allow_new=True)
        return study_id

    # -- what every copy knows ----------------------------------------------------------------------------
    def info(self) -> dict:
        """Title, seed, blinded, open_enrolment, created_at, number of cases and readers of the current study."""
        sid = self._need_study()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(S.studies).where(S.studies.c.study_id == sid)).one()
            n_cases = conn.execute(sa.select(sa.func.count()).select_from(S.cases)
                                   .where(S.cases.c.study_id == sid)).scalar()
            n_readers = conn.execute(sa.select(sa.func.count()).select_from(S.readers)
                                     .where(S.readers.c.study_id == sid)).scalar()
        return {"study_id": sid, "title": row.title, "seed": int(row.seed), "blinded": bool(row.blinded),
                "open_enrolment": bool(row.open_enrolment), "created_at": float(row.created_at),
                "cases": int(n_cases), "readers": int(n_readers)}

    @property
    def blinded(self) -> bool:
        return self.info()["blinded"]

    def criteria(self) -> list[Criterion]:
        """The study's criteria in order."""
        if "criteria" not in self._cache:
            sid = self._need_study()
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(S.criteria).where(S.criteria.c.study_id == sid)
                                    .order_by(S.criteria.c.position)).all()
            self._cache["criteria"] = [Criterion(r.name, r.kind, r.label, r.question, r.min_value, r.max_value)
                                       for r in rows]
        return list(self._cache["criteria"])

    def _structure(self) -> dict:
        """Case codes in stored order, candidate and source codes per case (cached: never changes)."""
        if "structure" not in self._cache:
            sid = self._need_study()
            with self.engine.connect() as conn:
                cases = [r.code for r in conn.execute(
                    sa.select(S.cases.c.code).where(S.cases.c.study_id == sid).order_by(S.cases.c.position))]
                imgs = conn.execute(sa.select(S.images.c.code, S.images.c.case_code, S.images.c.role,
                                              S.images.c.modality)
                                    .where(S.images.c.study_id == sid)
                                    .order_by(S.images.c.case_code, S.images.c.position)).all()
            cands: dict[str, list[str]] = {c: [] for c in cases}
            sources: dict[str, list[tuple[str, str | None]]] = {c: [] for c in cases}
            for r in imgs:
                if r.role == "candidate":
                    cands[r.case_code].append(r.code)
                else:
                    sources[r.case_code].append((r.code, r.modality))
            self._cache["structure"] = {"cases": cases, "candidates": cands, "sources": sources}
        return self._cache["structure"]

    def case_codes(self) -> list[str]:
        return list(self._structure()["cases"])

    def candidate_codes(self, case_code: str) -> list[str]:
        """Candidate codes of a case in stored order."""
        try:
            return list(self._structure()["candidates"][case_code])
        except KeyError:
            raise StudyError(f"no case {case_code!r} in this study", self.where) from None

    # -- readers ----------------------------------------------------------------------------------------
    def readers(self) -> list[ReaderInfo]:
        sid = self._need_study()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(S.readers).where(S.readers.c.study_id == sid)
                                .order_by(S.readers.c.created_at, S.readers.c.reader_key)).all()
        return [ReaderInfo(r.reader_key, r.name) for r in rows]

    def sign_in(self, name: str, *, allow_new: bool | None = None) -> ReaderInfo:
        """The reader called ``name``, created with their seeded order when new.

        Parameters
        ----------
        allow_new : bool, optional
            Whether an unknown name may become a new reader (default: the study's ``open_enrolment``).

        Raises
        ------
        StudyError
            Unknown reader and enrolment closed.
        """
        sid = self._need_study()
        key = reader_key(name)
        display = " ".join(str(name).split())
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(S.readers).where(S.readers.c.study_id == sid,
                                                          S.readers.c.reader_key == key)).first()
        if row is not None:
            return ReaderInfo(key, row.name)
        info = self.info()
        if allow_new is None:
            allow_new = info["open_enrolment"]
        if not allow_new:
            known = ", ".join(r.name for r in self.readers()) or "none"
            raise StudyError(f"no reader called {display!r} in this study, and it takes no new readers; "
                             f"known readers: {known}", self.where)
        assignments = self._assignment_rows(key, info["seed"])
        try:
            with self.engine.begin() as conn:
                conn.execute(S.readers.insert().values(study_id=sid, reader_key=key, name=display,
                                                       created_at=time.time()))
                conn.execute(S.assignments.insert(), assignments)
        except sa.exc.IntegrityError:  # signed in at the same moment from elsewhere: theirs stands
            return ReaderInfo(key, display)
        return ReaderInfo(key, display, new=True)

    def _assignment_rows(self, key: str, seed: int) -> list[dict]:
        """The seeded order of reader ``key`` as rows of the assignments table."""
        st = self._structure()
        order = reader_order(seed, key, st["cases"], st["candidates"])
        return [{"study_id": self._need_study(), "reader_key": key, "case_code": case, "position": i + 1,
                 "candidate_order": json.dumps(cands)} for i, (case, cands) in enumerate(order)]

    def assignment(self, key: str) -> list[AssignedCase]:
        """A reader's cases in their order (codes only)."""
        sid = self._need_study()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(S.assignments).where(S.assignments.c.study_id == sid,
                                                               S.assignments.c.reader_key == key)
                                .order_by(S.assignments.c.position)).all()
        if not rows:
            raise StudyError(f"no reader {key!r} in this study (sign in first)", self.where)
        sources = self._structure()["sources"]
        return [AssignedCase(int(r.position), r.case_code, tuple(json.loads(r.candidate_order)),
                             tuple(sources.get(r.case_code, ()))) for r in rows]

    # -- scores -----------------------------------------------------------------------------------------
    def _validate(self, entries: Sequence[ScoreEntry]) -> None:
        check_entries(entries, self.criteria(), self._structure()["candidates"])

    def save_scores(self, key: str, entries: Iterable[ScoreEntry]) -> list[ScoreRow]:
        """Append answers of reader ``key`` in one transaction; returns the stored rows after COMMIT.

        Raises
        ------
        StudyError
            Unknown reader, case, image or criterion, or a value out of range (nothing is saved).
        """
        entries = list(entries)
        sid = self._need_study()
        if not entries:
            return []
        self._validate(entries)
        client = socket.gethostname()
        now = time.time()
        rows = [{"uid": secrets.token_hex(16), "study_id": sid, "reader_key": key, "case_code": e.case_code,
                 "image_code": e.image_code, "criterion": e.criterion, "value": float(e.value),
                 "confidence": None if e.confidence is None else int(e.confidence), "opened_at": e.opened_at,
                 "saved_at": now, "seconds": None if e.seconds is None else float(e.seconds), "client": client}
                for e in entries]
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(S.readers.c.reader_key).where(
                S.readers.c.study_id == sid, S.readers.c.reader_key == key)).first()
            if known is None:
                raise StudyError(f"no reader {key!r} in this study (sign in first)", self.where)
            ids = [conn.execute(S.scores.insert().values(**r).returning(S.scores.c.id)).scalar_one()
                   for r in rows]
        return [ScoreRow(i, r["uid"], key, r["case_code"], r["image_code"], r["criterion"], r["value"],
                         r["confidence"], r["opened_at"], r["saved_at"], r["seconds"], client)
                for i, r in zip(ids, rows)]

    def history(self, key: str | None = None, case_code: str | None = None) -> list[ScoreRow]:
        """Every stored row (the audit trail) in save order, optionally of one reader and/or case."""
        sid = self._need_study()
        q = sa.select(S.scores).where(S.scores.c.study_id == sid)
        if key is not None:
            q = q.where(S.scores.c.reader_key == key)
        if case_code is not None:
            q = q.where(S.scores.c.case_code == case_code)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(S.scores.c.saved_at, S.scores.c.id)).all()
        return [row_to_score(r) for r in rows]

    def latest_scores(self, key: str | None = None, case_code: str | None = None) -> list[ScoreRow]:
        """The answer that counts for every (reader, case, image, criterion): the latest saved row."""
        latest: dict[tuple, ScoreRow] = {}
        for row in self.history(key, case_code):
            latest[(row.reader_key, row.case_code, row.image_code, row.criterion)] = row
        return list(latest.values())

    def case_complete(self, answers: Mapping[tuple[str | None, str], Any], case: AssignedCase) -> bool:
        """Whether ``answers`` (keyed ``(image_code, criterion)``) answer every criterion for every candidate."""
        return all((code, c.name) in answers for c in self.criteria() for code in case.candidates)

    def progress(self, key: str) -> tuple[int, int, int]:
        """``(cases complete, cases assigned, position to resume at)`` for a reader (1-based position;
        the first incomplete case in their order, or the last case when all are done)."""
        cases = self.assignment(key)
        answered: dict[str, dict] = {}
        for row in self.latest_scores(key):
            answered.setdefault(row.case_code, {})[(row.image_code, row.criterion)] = row
        done = [self.case_complete(answered.get(c.case_code, {}), c) for c in cases]
        resume = next((c.position for c, d in zip(cases, done) if not d), cases[-1].position)
        return sum(done), len(cases), resume

    # -- the key (organiser only) -----------------------------------------------------------------------
    def key(self) -> dict[str, ImageKey]:
        """Every image code with its case id, method, acquired-or-not and path.

        Raises
        ------
        StudyError
            On a blinded copy (a reader bundle), which holds no key.
        """
        sid = self._need_study()
        if self.blinded:
            raise StudyError("this is a blinded reader copy of the study: it holds no key to methods; "
                             "import its results into the organiser's database", self.where)
        with self.engine.connect() as conn:
            case_ids = dict(conn.execute(sa.select(S.cases.c.code, S.cases.c.case_id)
                                         .where(S.cases.c.study_id == sid)).all())
            rows = conn.execute(sa.select(S.images).where(S.images.c.study_id == sid)
                                .order_by(S.images.c.case_code, S.images.c.position)).all()
        return {r.code: ImageKey(r.code, r.case_code, case_ids[r.case_code], r.role, r.modality, r.method,
                                 None if r.is_real is None else bool(r.is_real), r.path) for r in rows}

    def methods(self) -> list[str]:
        """Candidate methods of the study in the configuration's order, "real" first when present."""
        sid = self._need_study()
        with self.engine.connect() as conn:
            config = conn.execute(sa.select(S.studies.c.config).where(S.studies.c.study_id == sid)).scalar()
        seen: list[str] = list(json.loads(config).get("methods", [])) if config else []
        for k in self.key().values():
            if k.role == "candidate" and k.method not in seen:
                seen.append(k.method)
        return sorted(seen, key=lambda m: (m != REAL, seen.index(m)))

    # -- copying between databases ------------------------------------------------------------------------
    def table_rows(self, table: sa.Table, *, raw: bool = False) -> list[dict]:
        """All rows of one of :data:`schema.TABLES` for the current study, as dicts.

        ``raw=True`` returns the values as the database holds them, without conversion to the column types (a
        SQLite file may hold text in a number column; a converted read would fail on it).
        """
        sid = self._need_study()
        if raw:
            cols = [sa.column(c.name) for c in table.c]
            query = sa.select(*cols).select_from(sa.table(table.name)).where(sa.column("study_id") == sid)
        else:
            query = sa.select(table).where(table.c.study_id == sid)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(r) for r in rows]

    def insert_rows(self, table: sa.Table, rows: Sequence[Mapping]) -> None:
        """Insert rows into a table in one transaction (for building bundles)."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(table.insert(), [dict(r) for r in rows])
        self._cache.clear()

    def merge_scores(self, rows: Iterable[Mapping]) -> tuple[int, int]:
        """Add score rows from another copy of this study, skipping rows already here (same uid).

        Returns
        -------
        (added, skipped)
        """
        sid = self._need_study()
        rows = [dict(r) for r in rows]
        st = self._structure()
        for r in rows:
            if r["case_code"] not in st["candidates"] or (r["image_code"] is not None and
                                                        r["image_code"] not in st["candidates"][r["case_code"]]):
                raise StudyError(f"score {r['uid']} names case {r['case_code']!r} / image {r['image_code']!r}, "
                                 "which this study does not have: the results belong to another study")
        with self.engine.begin() as conn:
            added = _insert_new_scores(conn, sid, rows, lambda r: {k: v for k, v in r.items() if k != "id"})
        return added, len(rows) - added

    def merge_results(self, readers: Sequence[Mapping], scores: Sequence[Mapping]) -> tuple[int, int, int]:
        """Add new readers (with their seeded orders, computed here) and score rows in ONE transaction.

        The caller has checked every row (:func:`~napari_medtrans.study.bundle.import_results` does);
        readers already known and scores already here (same uid) are skipped. Only the columns of the schema
        are written, and ``study_id`` is always the current study.

        Returns
        -------
        (scores added, scores skipped, readers added)
        """
        sid = self._need_study()
        seed = self.info()["seed"]
        orders = {r["reader_key"]: self._assignment_rows(r["reader_key"], seed) for r in readers}
        names = ("uid", "reader_key", "case_code", "image_code", "criterion", "value", "confidence", "opened_at",
                 "saved_at", "seconds", "client")
        with self.engine.begin() as conn:
            known = {k for (k,) in conn.execute(sa.select(S.readers.c.reader_key)
                                                .where(S.readers.c.study_id == sid))}
            new_readers = [{"study_id": sid, "reader_key": r["reader_key"], "name": r["name"],
                            "created_at": float(r["created_at"])} for r in readers if r["reader_key"] not in known]
            if new_readers:
                conn.execute(S.readers.insert(), new_readers)
                conn.execute(S.assignments.insert(), [a for r in new_readers for a in orders[r["reader_key"]]])
            added = _insert_new_scores(conn, sid, scores, lambda r: {k: r.get(k) for k in names})
        self._cache.clear()
        return added, len(scores) - added, len(new_readers)

    # -- bundles this database exported ---------------------------------------------------------------------
    def record_bundle(self, bundle_id: str, reader_keys: Sequence[str]) -> None:
        """Remember that a bundle ``bundle_id`` was made for ``reader_keys`` (the organiser's database only)."""
        value = json.dumps({"study_id": self._need_study(), "readers": list(reader_keys)})
        with self.engine.begin() as conn:
            conn.execute(S.meta.insert().values(key=f"bundle:{bundle_id}", value=value))

    def bundle_readers(self, bundle_id: str) -> list[str] | None:
        """The reader keys bundle ``bundle_id`` of this study was made for, or None if this database did not
        export it."""
        if not isinstance(bundle_id, str) or len(bundle_id) > 56:
            return None
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(S.meta.c.value).where(S.meta.c.key == f"bundle:{bundle_id}")).scalar()
        if value is None:
            return None
        record = json.loads(value)
        return list(record["readers"]) if record.get("study_id") == self.study_id else None

    def backup(self, path: str | os.PathLike) -> Path:
        """Copy a SQLite study database to ``path`` consistently while it may be in use (SQLite only)."""
        import sqlite3

        if self.backend != "sqlite":
            raise StudyError("backup() copies SQLite files; use pg_dump for PostgreSQL", self.where)
        out = Path(path)
        if out.exists():
            raise StudyError("will not overwrite an existing file", out)
        src = sqlite3.connect(str(sqlite_path(self.url)))
        dst = sqlite3.connect(str(out))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return out


def _insert_new_scores(conn, sid: int, rows: Iterable[Mapping], columns) -> int:
    """Insert the score rows whose uid this study does not have yet (nor an earlier row of ``rows``).

    ``columns(row)`` gives the values to write; ``study_id`` is always ``sid``. Returns how many were inserted.
    """
    have = {u for (u,) in conn.execute(sa.select(S.scores.c.uid).where(S.scores.c.study_id == sid))}
    new = []
    for r in rows:
        if r["uid"] in have:
            continue
        have.add(r["uid"])
        new.append({**columns(r), "study_id": sid})
    if new:
        conn.execute(S.scores.insert(), new)
    return len(new)
