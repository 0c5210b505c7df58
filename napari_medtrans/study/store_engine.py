"""Connecting to a study database: the URL of a target, and an engine set up for durable concurrent writes.

SQLite connections use WAL journaling with ``synchronous=FULL``, foreign keys on, and open write transactions
with ``BEGIN IMMEDIATE`` (so concurrent writers queue on the busy timeout instead of failing on a lock upgrade);
PostgreSQL connections (``postgresql://`` URLs, through psycopg 3) are pinged before use. Used by
:class:`.store.StudyStore`, which re-exports :func:`database_url`.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["database_url", "is_sqlite", "sqlite_path", "make_engine"]


def database_url(target: str | os.PathLike) -> str:
    """A SQLAlchemy URL for ``target``: a URL as given (``postgresql://`` uses psycopg 3), or a SQLite path."""
    text = os.fspath(target)
    if "://" in text:
        if text.startswith("postgresql://") or text.startswith("postgres://"):
            text = "postgresql+psycopg://" + text.split("://", 1)[1]
        return text
    return "sqlite:///" + str(Path(text).expanduser().resolve())


def is_sqlite(url: str) -> bool:
    """Whether ``url`` (from :func:`database_url`) is a SQLite database."""
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path:
    """The file of a SQLite ``url`` made by :func:`database_url`."""
    return Path(url.split(":///", 1)[1])


def make_engine(url: str, busy_timeout_s: float) -> sa.Engine:
    """An engine for ``url``; on SQLite every connection is set up as the module notes say."""
    if not is_sqlite(url):
        if "+psycopg" in url:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                from ..core.errors import MissingDependencyError

                raise MissingDependencyError("a PostgreSQL study database", "psycopg[binary]", "study") from None
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": float(busy_timeout_s)})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # one-line reason: sqlite3 must not emit its own BEGIN
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
