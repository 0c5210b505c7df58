"""The study database schema (SQLAlchemy Core), its version, and the migrations between versions.

Tables
------
``medtrans_meta``  key/value: ``schema_version``, ``package_version`` of the writer.
``studies``        one row per study: title, seed, whether this copy is *blinded* (a reader bundle: no key).
``criteria``       the questions of a study, in order.
``cases``          case code (random), the organiser's case id (NULL in a blinded copy), position.
``images``         sources and candidates of every case by random code; method, is_real and path are NULL in a
                   blinded copy (a bundle names image files by code).
``readers``        readers by key (their folded name) and name as typed.
``assignments``    every reader's seeded order of cases and of candidates within each case.
``scores``         append-only: one row per answer (reader, case, image, criterion, value, confidence, when the
                   item was opened, when it was saved, seconds spent, the saving computer). A correction is a
                   new row; the latest row (by ``saved_at``, then ``id``) wins and the older ones are the audit
                   trail. ``uid`` is globally unique, so results merged from bundles never duplicate a row.

Version history
---------------
1. First release.
2. ``scores.client``: which computer saved the row (to trace merged results).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

__all__ = ["SCHEMA_VERSION", "metadata", "TABLES", "MIGRATIONS", "meta", "studies", "criteria", "cases",
           "images", "readers", "assignments", "scores"]

#: The version this code writes and reads; older databases are migrated on open.
SCHEMA_VERSION = 2

metadata = sa.MetaData()


def _study_key() -> sa.Column:
    """The ``study_id`` column that opens every per-study table: part of the key, pointing at ``studies``."""
    return sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), primary_key=True)


def _key(name: str, type_: sa.types.TypeEngine) -> sa.Column:
    return sa.Column(name, type_, primary_key=True)


def _required(**types: sa.types.TypeEngine) -> list[sa.Column]:
    """``NOT NULL`` columns, by name and type, in the order given."""
    return [sa.Column(name, type_, nullable=False) for name, type_ in types.items()]


def _optional(**types: sa.types.TypeEngine) -> list[sa.Column]:
    """Nullable columns, by name and type, in the order given."""
    return [sa.Column(name, type_, nullable=True) for name, type_ in types.items()]


#: Column types used by several tables.
_CODE = sa.String(16)
_READER_KEY = sa.String(100)

meta = sa.Table("medtrans_meta", metadata, _key("key", sa.String(64)), *_required(value=sa.Text))

studies = sa.Table(
    "studies", metadata,
    _key("study_id", sa.String(32)),
    *_required(title=sa.Text, seed=sa.BigInteger, blinded=sa.Boolean, open_enrolment=sa.Boolean,
               created_at=sa.Float),
    *_optional(config=sa.Text),
)

criteria = sa.Table(
    "criteria", metadata,
    _study_key(), _key("name", sa.String(64)),
    *_required(kind=sa.String(16), label=sa.Text, question=sa.Text, min_value=sa.Integer, max_value=sa.Integer,
               position=sa.Integer),
)

cases = sa.Table(
    "cases", metadata,
    _study_key(), _key("code", _CODE),
    *_optional(case_id=sa.Text),
    *_required(position=sa.Integer),
)

images = sa.Table(
    "images", metadata,
    _study_key(), _key("code", _CODE),
    *_required(case_code=_CODE, role=sa.String(16)),
    *_optional(modality=sa.String(32), method=sa.Text, is_real=sa.Boolean, path=sa.Text),
    *_required(position=sa.Integer),
)

readers = sa.Table(
    "readers", metadata,
    _study_key(), _key("reader_key", _READER_KEY),
    *_required(name=sa.Text, created_at=sa.Float),
)

assignments = sa.Table(
    "assignments", metadata,
    _study_key(), _key("reader_key", _READER_KEY), _key("case_code", _CODE),
    *_required(position=sa.Integer, candidate_order=sa.Text),
)

scores = sa.Table(
    "scores", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uid", sa.String(32), nullable=False, unique=True),
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), nullable=False),
    *_required(reader_key=_READER_KEY, case_code=_CODE),
    *_optional(image_code=_CODE),
    *_required(criterion=sa.String(64), value=sa.Float),
    *_optional(confidence=sa.Integer, opened_at=sa.Float),
    *_required(saved_at=sa.Float),
    *_optional(seconds=sa.Float, client=sa.Text),
    sa.Index("ix_scores_reader", "study_id", "reader_key"),
)

TABLES = (meta, studies, criteria, cases, images, readers, assignments, scores)


def _v1_to_v2(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE scores ADD COLUMN client TEXT"))


#: ``MIGRATIONS[n]`` turns a version-``n`` database into version ``n + 1`` (inside one transaction).
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2}
