"""Fixtures of tests/core: study databases on both backends.

``db_url`` is a fresh, empty database: a SQLite file, or a private schema on the test PostgreSQL server named by
``MEDTRANS_TEST_PG_URL`` (run-tests.sh starts one); without a reachable server the PostgreSQL case is skipped with
the reason.
"""

from __future__ import annotations

import os
import secrets

import pytest

PG_URL = os.environ.get("MEDTRANS_TEST_PG_URL")


def _pg_reason() -> str | None:
    import sqlalchemy as sa

    from napari_medtrans.study.store import database_url

    if not PG_URL:
        return "MEDTRANS_TEST_PG_URL is not set (e.g. postgresql://medtrans:medtrans@127.0.0.1/medtrans_test)"
    try:
        engine = sa.create_engine(database_url(PG_URL))
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: skip with the reason
        return f"PostgreSQL at MEDTRANS_TEST_PG_URL is not reachable: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a private schema on the test PostgreSQL server."""
    import sqlalchemy as sa

    from napari_medtrans.study.store import database_url

    if request.param == "sqlite":
        yield str(tmp_path / "study.db")
        return
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(database_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()
