"""Reading a returned reader bundle without trusting it: where its database is, and a private copy of it.

An import never reads a bundle in place (reading a SQLite file may write to it) and never follows a bundle to
another database. :func:`locate` finds the database of a bundle folder, a ``.zip``, a ``study.db`` or a database
URL, copies or unpacks it to a private folder, checks ``bundle.json`` and lists what is wrong with the bundle
(symbolic links, zip members outside it or named twice, an oversized database); :func:`open_source` opens the
private copy after SQLite's quick check. The rows in it are checked by :mod:`.bundle_checks`; both are used by
:func:`.bundle.import_results`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sqlite3
import stat
import zipfile
import zlib
from pathlib import Path

from ..core.errors import StudyError
from .bundle_format import BUNDLE_FORMAT, BUNDLE_VERSION, MAX_DB_BYTES, symlinks
from .store import StudyStore

__all__ = ["Source", "locate", "open_source"]


@dataclasses.dataclass
class Source:
    """Where the results of one import are read from: ``db`` is a private copy of the bundle's database (or a
    URL the organiser named), None when it must not be read; errors name ``shown`` ("<what>cannot be read")."""

    db: Path | str | None
    shown: str
    manifest: dict | None
    problems: list[str]
    what: str = ""


def _shared_database_hint(source: str | os.PathLike) -> StudyError:
    return StudyError("this bundle has no study.db; its bundle.json points to a shared database, and an import "
                      "never follows a bundle to another database: import from the shared database itself "
                      "(medtrans study import-results --db STUDY.db URL)", source)


def _check_manifest(raw: bytes, study_id: str, source: str | os.PathLike, problems: list[str]) -> dict | None:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        problems.append(f"bundle.json is not valid JSON ({exc})")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        problems.append(f"bundle.json is not a {BUNDLE_FORMAT} manifest")
        return None
    other = manifest.get("study_id")
    if other is not None and other != study_id:
        raise StudyError(f"these results belong to another study (bundle.json names study {other!r}; this "
                         f"database holds {study_id!r})", source)
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= BUNDLE_VERSION:
        problems.append(f"bundle.json has version {version!r}; this napari-medtrans reads 1 to {BUNDLE_VERSION}")
    readers = manifest.get("readers")
    if readers is not None and (not isinstance(readers, list) or not all(isinstance(r, str) for r in readers)):
        problems.append("bundle.json's 'readers' is not a list of names")
    bundle_id = manifest.get("bundle_id")
    if bundle_id is not None and not (isinstance(bundle_id, str) and re.fullmatch(r"[0-9a-f]{32}", bundle_id)):
        problems.append(f"bundle.json's bundle_id {bundle_id!r} is not a bundle id")
    return manifest


def _copy_db(db: Path, tmp: Path) -> Path:
    """Copy ``db`` (and its WAL journal, which may hold the last answers) to ``tmp``: reading a SQLite file
    may write to it, and an import never writes to a bundle."""
    out = tmp / "study.db"
    shutil.copyfile(db, out)
    wal = Path(f"{db}-wal")
    if wal.is_file() and not wal.is_symlink():
        shutil.copyfile(wal, tmp / "study.db-wal")
    return out


def _from_folder(folder: Path, study_id: str, tmp: Path, source: str | os.PathLike) -> Source:
    problems = symlinks(folder)
    manifest = None
    manifest_path = folder / "bundle.json"
    if manifest_path.is_file() and not manifest_path.is_symlink():
        manifest = _check_manifest(manifest_path.read_bytes(), study_id, source, problems)
    db = folder / "study.db"
    if db.is_symlink():  # listed among the problems; never followed
        return Source(None, str(db), manifest, problems)
    if not db.exists():
        if manifest is not None and manifest.get("database"):
            raise _shared_database_hint(source)
        raise StudyError("no study database here (a returned bundle folder holds its study.db)", source)
    if not db.is_file():
        return Source(None, str(db), manifest, problems + ["study.db is not a file"])
    return Source(_copy_db(db, tmp), str(db), manifest, problems)


def _unsafe_member(name: str) -> bool:
    """A zip member name that would land outside the folder it is unpacked in (on any system)."""
    parts = name.replace("\\", "/")
    return parts.startswith("/") or re.match(r"[A-Za-z]:", parts) is not None or ".." in parts.split("/")


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path) -> None:
    with zf.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _from_zip(path: Path, study_id: str, tmp: Path, source: str | os.PathLike) -> Source:
    problems: list[str] = []
    shown, what = str(path), "its study.db "
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            counts: dict[str, int] = {}
            for info in infos:
                name = info.filename
                counts[name] = counts.get(name, 0) + 1
                if _unsafe_member(name):
                    problems.append(f"member {name!r} points outside the bundle")
                elif _is_link(info):
                    problems.append(f"member {name!r} is a symbolic link")
            problems += [f"member {name!r} appears {n} times" for name, n in counts.items() if n > 1]
            members = {i.filename: i for i in infos}
            manifest = None
            info = members.get("bundle.json")
            if info is not None and not _is_link(info):
                if info.file_size > 1 << 20:
                    problems.append(f"bundle.json is {info.file_size} bytes; a manifest is a few hundred")
                else:
                    manifest = _check_manifest(zf.read(info), study_id, source, problems)
            info = members.get("study.db")
            if info is None:
                if manifest is not None and manifest.get("database"):
                    raise _shared_database_hint(source)
                raise StudyError("the zip holds no study.db (at its top level)", path)
            if _is_link(info):
                return Source(None, shown, manifest, problems, what)
            if info.file_size > MAX_DB_BYTES:
                problems.append(f"study.db unpacks to {info.file_size} bytes, more than a study database holds")
                return Source(None, shown, manifest, problems, what)
            out = tmp / "study.db"
            _unpack(zf, info, out)
            wal = members.get("study.db-wal")
            if wal is not None and not _is_link(wal) and wal.file_size <= MAX_DB_BYTES:
                _unpack(zf, wal, tmp / "study.db-wal")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise StudyError(f"not a readable zip file ({exc})", path) from None
    return Source(out, shown, manifest, problems, what)


def locate(source: str | os.PathLike, study_id: str, tmp: Path) -> Source:
    """Where to read the results of ``source`` from: a private copy in ``tmp`` (or the URL), with its problems."""
    text = os.fspath(source)
    if "://" in text:  # a database URL the organiser named (a shared database)
        return Source(text, text, None, [])
    p = Path(text)
    if p.is_dir() and not p.is_symlink():
        return _from_folder(p, study_id, tmp, source)
    if p.is_dir():
        return Source(None, text, None, [f"{p.name} is a symbolic link"])
    if p.suffix.lower() == ".zip" and p.is_file():
        return _from_zip(p, study_id, tmp, source)
    if p.name == "study.db" and (p.parent / "bundle.json").exists():  # a bundle's database: check the bundle
        return _from_folder(p.parent, study_id, tmp, source)
    if p.is_symlink():
        return Source(None, text, None, [f"{p.name} is a symbolic link"])
    if not p.exists():
        raise StudyError("no study database here (give a bundle folder, a .zip, a study.db or a database URL)", p)
    return Source(_copy_db(p, tmp), text, None, [])


def open_source(src: Source, study_id: str, source: str | os.PathLike) -> StudyStore:
    """Open the database of ``src`` (after SQLite's quick check of a private copy) on study ``study_id``."""
    if isinstance(src.db, Path):
        try:
            con = sqlite3.connect(src.db)
            try:
                check = [str(r[0]) for r in con.execute("PRAGMA quick_check")]
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise StudyError(f"{src.what}cannot be read: it is damaged or is not a study database ({exc})",
                             src.shown) from None
        if check != ["ok"]:
            raise StudyError(f"{src.what}is damaged (SQLite's check: {'; '.join(check[:3])})", src.shown)
    try:
        return StudyStore(src.db, study_id=study_id)
    except StudyError as exc:
        if exc.reason.startswith("no study '"):
            raise StudyError(f"these results belong to another study ({exc.reason})", source) from None
        if isinstance(src.db, Path):  # the error names the private copy: name the file the organiser gave
            raise StudyError(f"{src.what}{exc.reason}", src.shown) from None
        raise

