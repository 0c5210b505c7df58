"""What a reader bundle is on disk, and the checks both opening and importing a bundle make.

Holds the manifest's format name and version, the rule for case and image codes (:data:`CODE_PATTERN`,
:func:`valid_code`) before a code becomes a file name, the limits an import applies to a returned bundle
(:data:`CLOCK_SKEW_S`, :data:`MAX_DB_BYTES`), the search for symbolic links in a bundle folder, and the
context manager that turns a database error into a :class:`~napari_medtrans.core.errors.StudyError`.

:mod:`.bundle` (packing and opening bundles, merging results) and the import checks in
:mod:`.bundle_source` and :mod:`.bundle_checks` build on this module; it imports none of them.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from ..core.errors import StudyError

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "CODE_PATTERN", "CLOCK_SKEW_S", "MAX_DB_BYTES", "valid_code",
           "code_rule", "symlinks", "readable"]

BUNDLE_FORMAT = "medtrans-reader-bundle"
#: The newest ``bundle.json`` version this package writes and reads.
BUNDLE_VERSION = 1

#: What a case or image code may look like before it is used in a file name (the codes this package makes are
#: six capitals and digits).
CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: How far (seconds) a reader's clock may run ahead of the organiser's before a saved time counts as future.
CLOCK_SKEW_S = 3600.0
#: The largest ``study.db`` a zip may unpack to (bytes); a study of 10 000 answers takes a few MB.
MAX_DB_BYTES = 2 << 30


def valid_code(code: object) -> bool:
    """Whether ``code`` may name a file: it matches :data:`CODE_PATTERN` (never empty, ``.``, ``..`` or a path)."""
    return isinstance(code, str) and CODE_PATTERN.fullmatch(code) is not None and code not in (".", "..")


def code_rule() -> str:
    """The rule of :data:`CODE_PATTERN` in words, for error messages."""
    return "a code is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def symlinks(folder: Path) -> list[str]:
    """Every symbolic link in ``folder`` (none is followed), as "<relative path> is a symbolic link"."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p.is_symlink():
                found.append(f"{p.relative_to(folder).as_posix()} is a symbolic link")
    return sorted(found)


@contextmanager
def readable(shown: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Turn a database error while reading into a :class:`StudyError` naming ``shown``."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, sqlite3.DatabaseError) as exc:
        detail = getattr(exc, "orig", None) or exc
        raise StudyError(f"{what}cannot be read: it is damaged or is not a study database ({detail})",
                         shown) from None
