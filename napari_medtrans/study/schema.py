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

meta = sa.Table(
    "medtrans_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

studies = sa.Table(
    "studies", metadata,
    sa.Column("study_id", sa.String(32), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("blinded", sa.Boolean, nullable=False),
    sa.Column("open_enrolment", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("config", sa.Text, nullable=True),
)

criteria = sa.Table(
    "criteria", metadata,
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("min_value", sa.Integer, nullable=False),
    sa.Column("max_value", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
)

cases = sa.Table(
    "cases", metadata,
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("case_id", sa.Text, nullable=True),
    sa.Column("position", sa.Integer, nullable=False),
)

images = sa.Table(
    "images", metadata,
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("case_code", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("modality", sa.String(32), nullable=True),
    sa.Column("method", sa.Text, nullable=True),
    sa.Column("is_real", sa.Boolean, nullable=True),
    sa.Column("path", sa.Text, nullable=True),
    sa.Column("position", sa.Integer, nullable=False),
)

readers = sa.Table(
    "readers", metadata,
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("reader_key", sa.String(100), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

assignments = sa.Table(
    "assignments", metadata,
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), primary_key=True),
    sa.Column("reader_key", sa.String(100), primary_key=True),
    sa.Column("case_code", sa.String(16), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("candidate_order", sa.Text, nullable=False),
)

scores = sa.Table(
    "scores", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uid", sa.String(32), nullable=False, unique=True),
    sa.Column("study_id", sa.String(32), sa.ForeignKey("studies.study_id"), nullable=False),
    sa.Column("reader_key", sa.String(100), nullable=False),
    sa.Column("case_code", sa.String(16), nullable=False),
    sa.Column("image_code", sa.String(16), nullable=True),
    sa.Column("criterion", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("confidence", sa.Integer, nullable=True),
    sa.Column("opened_at", sa.Float, nullable=True),
    sa.Column("saved_at", sa.Float, nullable=False),
    sa.Column("seconds", sa.Float, nullable=True),
    sa.Column("client", sa.Text, nullable=True),
    sa.Index("ix_scores_reader", "study_id", "reader_key"),
)

TABLES = (meta, studies, criteria, cases, images, readers, assignments, scores)


def _v1_to_v2(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE scores ADD COLUMN client TEXT"))


#: ``MIGRATIONS[n]`` turns a version-``n`` database into version ``n + 1`` (inside one transaction).
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2}
