"""Building a study, packing reader bundles, and merging the results that come back.

A *reader bundle* is a folder (optionally zipped) with everything a reader needs on another workstation::

    bundle.json          format, study id and title, readers, and where scores go ("database")
    study.db             a blinded copy of the study: criteria, case and image codes, reader orders, no key
    images/<code>.nii.gz every source and candidate image, named by its random code

Nothing in it names a method, a subject or an original file, or tells acquired from generated images: the
images are rewritten with a fresh NIfTI header (no description, no extensions), linearly rescaled to whole
numbers 0-4095 (so an acquired image's integer voxels cannot give it away), and written in random order. For a
multi-site study the blinded copy can live in a shared PostgreSQL database instead of ``study.db``; the key
stays with the organiser either way. :func:`import_results` merges a bundle's scores into the organiser's
database; rows are identified by uid, so importing the same results twice adds nothing.

A returned bundle is the reader's file, and is not trusted. :func:`import_results` reads the bundle's own
``study.db`` (a copy of it: the bundle is never written to), whatever ``bundle.json`` says; it refuses a bundle
holding a symbolic link, a zip member outside it, or a score row the study could not have produced (unknown
criterion, case, image or reader, a value or confidence outside its range, a time in the future), and it
refuses the whole bundle, listing every problem, so that nothing of it is merged. ``bundle.json`` carries a
``bundle_id`` that the organiser's database records at export with the readers the bundle was made for: when
the study's enrolment is closed (``open_enrolment: false`` in the configuration), only those readers' scores
are merged. Image codes are checked against :data:`CODE_PATTERN` before they become file names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from ..core.errors import MedtransError, StudyError
from . import schema as S
from .model import ImageSpec, StudySpec, load_config, reader_key
from .store import StudyStore

__all__ = ["BUNDLE_FORMAT", "CODE_PATTERN", "CLOCK_SKEW_S", "create_study", "export_bundle", "import_results",
           "open_bundle", "valid_code", "write_blinded_image", "ImportSummary", "Bundle"]

BUNDLE_FORMAT = "medtrans-reader-bundle"
_BUNDLE_VERSION = 1
_LEVELS = 4095

#: What a case or image code may look like before it is used in a file name (the codes this package makes are
#: six capitals and digits).
CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: How far (seconds) a reader's clock may run ahead of the organiser's before a saved time counts as future.
CLOCK_SKEW_S = 3600.0
#: The largest ``study.db`` a zip may unpack to (bytes); a study of 10 000 answers takes a few MB.
_MAX_DB_BYTES = 2 << 30


def valid_code(code: object) -> bool:
    """Whether ``code`` may name a file: it matches :data:`CODE_PATTERN` (never empty, ``.``, ``..`` or a path)."""
    return isinstance(code, str) and CODE_PATTERN.fullmatch(code) is not None and code not in (".", "..")


def _code_rule() -> str:
    return "a code is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


# -- creating ----------------------------------------------------------------------------------------------
def _translate_cases(spec: StudySpec, out_dir: Path, device: str, log: Callable[[str], None]) -> None:
    from ..core import io
    from ..core.engine import translate_volume
    from ..training.evaluate import output_path
    from ..translators.lookup import resolve_model
    from ..translators.checkpoint import load_translator

    for method, model in spec.models.items():
        path = resolve_model(model)
        translator = load_translator(path, device="cpu")
        inputs = tuple(translator.spec.inputs)
        for case in spec.cases:
            sources = {s.modality: s for s in case.sources}
            missing = [m for m in inputs if m not in sources]
            if missing:
                raise StudyError(f"case {case.case_id!r}: model {method!r} needs {', '.join(inputs)} but the case "
                                 f"has no {', '.join(missing)} source")
            vols = {m: io.load(sources[m].path, modality=m) for m in inputs}
            log(f"translating {case.case_id} with {method}")
            result = translate_volume(vols if len(vols) > 1 else vols[inputs[0]], translator, device=device,
                                      seed=spec.seed)
            target = spec.target or result.volume.modality or "target"
            out = output_path(out_dir / "volumes" / method, case.case_id, str(target))
            out.parent.mkdir(parents=True, exist_ok=True)
            io.save(result.volume, out)
            case.candidates.append(ImageSpec(str(out), "candidate", modality=spec.target, method=method))


def _check_images(spec: StudySpec) -> None:
    from ..core import io

    for case in spec.cases:
        grid = None
        for img in list(case.sources) + list(case.candidates):
            try:
                vol = io.load(img.path)
            except MedtransError as exc:
                raise StudyError(f"case {case.case_id!r}: {exc}", img.path) from None
            if grid is None:
                grid = (vol, img.path)
            elif not grid[0].same_grid(vol, atol=1e-2):
                raise StudyError(f"case {case.case_id!r}: shape {vol.shape} / affine differ from {grid[1]} "
                                 f"(shape {grid[0].shape}); every image of a case must share one grid to be shown "
                                 "linked", img.path)


def create_study(config: str | os.PathLike | StudySpec, db: str | os.PathLike, *, device: str = "auto",
                 out_dir: str | os.PathLike | None = None, check_images: bool = True,
                 log: Callable[[str], None] = print) -> StudyStore:
    """Create a study from a configuration file (or spec) in a new database.

    Parameters
    ----------
    config : path-like or StudySpec
        See :func:`~napari_medtrans.study.model.load_config`.
    db : path-like or str
        SQLite file (must not exist yet) or database URL.
    device : str
        Where models listed under ``models`` run.
    out_dir : path-like, optional
        Where translated candidates are written (default: the database's folder, or the current folder).
    check_images : bool
        Load every image and check that the images of a case share one grid.

    Returns
    -------
    StudyStore
        The organiser's store, holding the key.
    """
    spec = load_config(config) if not isinstance(config, StudySpec) else config
    is_url = "://" in os.fspath(db)
    if not is_url and Path(db).exists():
        raise StudyError("a study database already exists here; choose a new file", db)
    if spec.models:
        base = Path(out_dir) if out_dir is not None else (Path(db).resolve().parent if not is_url else Path.cwd())
        _translate_cases(spec, base, device, log)
    spec.validate()
    if check_images:
        _check_images(spec)
    store = StudyStore(db, create=True)
    store.add_study(spec)
    return store


# -- bundles -----------------------------------------------------------------------------------------------
def write_blinded_image(volume, path: str | os.PathLike) -> Path:
    """Write ``volume`` as an anonymous NIfTI: fresh header, voxels rescaled linearly to whole numbers 0-4095."""
    import nibabel as nib

    data = np.asarray(volume.data, dtype=np.float64)
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    scaled = np.zeros(data.shape, np.int16) if hi <= lo else np.rint((data - lo) / (hi - lo) * _LEVELS)
    img = nib.Nifti1Image(np.asarray(scaled, dtype=np.int16), np.asarray(volume.affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b""
    img.header.set_slope_inter(1.0, 0.0)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    out = Path(path)
    nib.save(img, str(out))
    return out


@dataclasses.dataclass(frozen=True)
class Bundle:
    """An opened reader bundle: its folder, its store, and where its images are."""

    folder: Path
    store: StudyStore
    images: Path
    manifest: dict

    def image_path(self, code: str) -> Path:
        """The file of the image with ``code`` (it is named by the code).

        Raises
        ------
        StudyError
            ``code`` is not a valid code (:data:`CODE_PATTERN`): it is never used as a path.
        """
        if not valid_code(code):
            raise StudyError(f"{code!r} is not a valid image code ({_code_rule()})", self.folder)
        return self.images / f"{code}.nii.gz"


def _blinded_copy(master: StudyStore, dest: StudyStore, readers: Sequence[str], images_rel: str) -> None:
    sid = master.study_id
    have = dest.study_ids()
    if sid not in have:
        study = master.table_rows(S.studies)[0]
        dest.insert_rows(S.studies, [dict(study, blinded=True, config=None)])
        dest.study_id = sid
        dest.insert_rows(S.criteria, master.table_rows(S.criteria))
        dest.insert_rows(S.cases, sorted(({**r, "case_id": None} for r in master.table_rows(S.cases)),
                                         key=lambda r: r["code"]))
        dest.insert_rows(S.images, sorted(({**r, "method": None, "is_real": None,
                                            "path": f"{images_rel}/{r['code']}.nii.gz"}
                                           for r in master.table_rows(S.images)), key=lambda r: r["code"]))
    dest.study_id = sid
    known = {r.key for r in dest.readers()}
    new = [k for k in readers if k not in known]
    dest.insert_rows(S.readers, [r for r in master.table_rows(S.readers) if r["reader_key"] in new])
    dest.insert_rows(S.assignments, [r for r in master.table_rows(S.assignments) if r["reader_key"] in new])
    rows = [r for r in master.table_rows(S.scores) if r["reader_key"] in readers]
    dest.merge_scores(rows)


def export_bundle(master: StudyStore, out: str | os.PathLike, *, readers: Sequence[str] | None = None,
                  database: str | None = None, zip_bundle: bool = False,
                  log: Callable[[str], None] = print) -> Path:
    """Pack a reader bundle (see the module notes) from the organiser's database.

    Parameters
    ----------
    master : StudyStore
        The organiser's (unblinded) store.
    out : path-like
        A new or empty folder.
    readers : sequence of str, optional
        Reader names to register in the bundle (signed in on the master first, so their orders are fixed);
        default: every reader the master knows. Others may still sign in when enrolment is open.
    database : str, optional
        A shared database URL (PostgreSQL) for the blinded copy instead of ``study.db`` in the folder. Results
        are then imported from that URL (:func:`import_results` never follows a bundle to another database).
    zip_bundle : bool
        Also write ``<out>.zip`` and return its path.

    Returns
    -------
    Path
        The bundle folder (or zip file).
    """
    from ..core import io

    if master.blinded:
        raise StudyError("this is already a blinded copy; export bundles from the organiser's database",
                         master.where)
    folder = Path(out)
    if database is not None and "://" not in str(database):
        raise StudyError(f"the shared database must be a database URL (postgresql://...), got {database!r}")
    if folder.exists() and any(folder.iterdir()):
        raise StudyError("the bundle folder must be new or empty", folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    keys = [master.sign_in(n, allow_new=True).key for n in readers] if readers else \
        [r.key for r in master.readers()]
    if database:
        dest = StudyStore(database, create=True)
    else:
        dest = StudyStore(folder / "study.db", create=True)
    try:
        _blinded_copy(master, dest, keys, "images")
    finally:
        dest.close()
    key = master.key()
    order = list(key.values())
    random.SystemRandom().shuffle(order)  # file times must not group images by method
    for i, k in enumerate(order):
        vol = io.load(k.path)
        write_blinded_image(vol, folder / "images" / f"{k.code}.nii.gz")
        if (i + 1) % 20 == 0:
            log(f"wrote {i + 1} of {len(order)} images")
    names = {r.key: r.name for r in master.readers()}
    bundle_id = secrets.token_hex(16)
    master.record_bundle(bundle_id, keys)
    manifest = {"format": BUNDLE_FORMAT, "version": _BUNDLE_VERSION, "study_id": master.study_id,
                "bundle_id": bundle_id, "title": master.info()["title"], "readers": [names[k] for k in keys],
                "database": database, "created_at": time.time()}
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if zip_bundle:
        archive = shutil.make_archive(str(folder), "zip", root_dir=folder)
        return Path(archive)
    return folder


def _symlinks(folder: Path) -> list[str]:
    """Every symbolic link in ``folder`` (none is followed), as "<relative path> is a symbolic link"."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p.is_symlink():
                found.append(f"{p.relative_to(folder).as_posix()} is a symbolic link")
    return sorted(found)


@contextmanager
def _readable(shown: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Turn a database error while reading into a :class:`StudyError` naming ``shown``."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, sqlite3.DatabaseError) as exc:
        detail = getattr(exc, "orig", None) or exc
        raise StudyError(f"{what}cannot be read: it is damaged or is not a study database ({detail})",
                         shown) from None


def _bad_codes(store: StudyStore) -> list[str]:
    codes = [r["code"] for r in store.table_rows(S.images, raw=True)] + \
        [r["code"] for r in store.table_rows(S.cases, raw=True)]
    return sorted({repr(c) for c in codes if not valid_code(c)})


def open_bundle(folder: str | os.PathLike) -> Bundle:
    """Open a reader bundle folder (its ``bundle.json``), with its blinded store.

    The bundle may hold no symbolic link, its database must pass SQLite's integrity check, and every case and
    image code in it must be a valid code (:data:`CODE_PATTERN`) before any is used as a file name. The
    database is the folder's ``study.db``, or the shared database whose URL ``bundle.json`` names.

    Raises
    ------
    StudyError
        Not a bundle, a symbolic link in it, a damaged database, an invalid code, or its database is not a
        blinded copy.
    """
    folder = Path(folder)
    manifest_path = folder / "bundle.json"
    links = _symlinks(folder) if folder.is_dir() else []
    if links:
        raise StudyError(f"refused: {'; '.join(links)} (a bundle holds plain files only)", folder)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError("not a reader bundle (no bundle.json in this folder)", folder) from None
    except (OSError, ValueError) as exc:
        raise StudyError(f"bundle.json cannot be read: {exc}", manifest_path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise StudyError(f"bundle.json is not a {BUNDLE_FORMAT} manifest", manifest_path)
    version = manifest.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise StudyError(f"bundle.json's version {version!r} is not a whole number", manifest_path)
    if version > _BUNDLE_VERSION:
        raise StudyError(f"bundle version {version!r} is newer than this napari-medtrans reads "
                         f"({_BUNDLE_VERSION}); update it", manifest_path)
    database = manifest.get("database")
    if database:
        if not isinstance(database, str) or "://" not in database:
            raise StudyError("bundle.json's 'database' must be the URL of a shared database; a bundle's own "
                             "database is its study.db", manifest_path)
        target: str | Path = database
    else:
        target = folder / "study.db"
    study_id = manifest.get("study_id")
    store = StudyStore(target, study_id=study_id if isinstance(study_id, str) else None)
    try:
        with _readable(store.where):
            check = store.integrity_check()
            if check != "ok":
                raise StudyError(f"the database is damaged (SQLite's integrity check: {check[:300]})",
                                 store.where)
            bad = _bad_codes(store)
            blinded = store.blinded
    except BaseException:
        store.close()
        raise
    if bad:
        store.close()
        raise StudyError(f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not a valid image code "
                         f"({_code_rule()}); refusing to use {'it' if len(bad) == 1 else 'them'} as a file name",
                         folder)
    if not blinded:
        store.close()
        raise StudyError("the bundle's database is not blinded (it holds the key); refusing to open it for "
                         "reading", folder)
    return Bundle(folder, store, folder / "images", manifest)


# -- results -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_results` did: score rows added and skipped (already present), readers added."""

    added: int
    skipped: int
    readers_added: int
    source: str


@dataclasses.dataclass
class _Source:
    """Where the results of one import are read from: ``db`` is a private copy of the bundle's database (or a
    URL the organiser named), None when it must not be read; errors name ``shown`` ("<what>cannot be read")."""

    db: Path | str | None
    shown: str
    manifest: dict | None
    problems: list[str]
    what: str = ""


def _refusal(source: str | os.PathLike, problems: Sequence[str]) -> StudyError:
    n = len(problems)
    return StudyError(f"refused, nothing merged: {n} problem{'s' if n != 1 else ''}: {'; '.join(problems)}",
                      source, problems=list(problems))


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
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= _BUNDLE_VERSION:
        problems.append(f"bundle.json has version {version!r}; this napari-medtrans reads 1 to {_BUNDLE_VERSION}")
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


def _from_folder(folder: Path, study_id: str, tmp: Path, source: str | os.PathLike) -> _Source:
    problems = _symlinks(folder)
    manifest = None
    manifest_path = folder / "bundle.json"
    if manifest_path.is_file() and not manifest_path.is_symlink():
        manifest = _check_manifest(manifest_path.read_bytes(), study_id, source, problems)
    db = folder / "study.db"
    if db.is_symlink():  # listed among the problems; never followed
        return _Source(None, str(db), manifest, problems)
    if not db.exists():
        if manifest is not None and manifest.get("database"):
            raise _shared_database_hint(source)
        raise StudyError("no study database here (a returned bundle folder holds its study.db)", source)
    if not db.is_file():
        return _Source(None, str(db), manifest, problems + ["study.db is not a file"])
    return _Source(_copy_db(db, tmp), str(db), manifest, problems)


def _unsafe_member(name: str) -> bool:
    """A zip member name that would land outside the folder it is unpacked in (on any system)."""
    parts = name.replace("\\", "/")
    return parts.startswith("/") or re.match(r"[A-Za-z]:", parts) is not None or ".." in parts.split("/")


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path) -> None:
    with zf.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _from_zip(path: Path, study_id: str, tmp: Path, source: str | os.PathLike) -> _Source:
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
                return _Source(None, shown, manifest, problems, what)
            if info.file_size > _MAX_DB_BYTES:
                problems.append(f"study.db unpacks to {info.file_size} bytes, more than a study database holds")
                return _Source(None, shown, manifest, problems, what)
            out = tmp / "study.db"
            _unpack(zf, info, out)
            wal = members.get("study.db-wal")
            if wal is not None and not _is_link(wal) and wal.file_size <= _MAX_DB_BYTES:
                _unpack(zf, wal, tmp / "study.db-wal")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise StudyError(f"not a readable zip file ({exc})", path) from None
    return _Source(out, shown, manifest, problems, what)


def _locate(source: str | os.PathLike, study_id: str, tmp: Path) -> _Source:
    text = os.fspath(source)
    if "://" in text:  # a database URL the organiser named (a shared database)
        return _Source(text, text, None, [])
    p = Path(text)
    if p.is_dir() and not p.is_symlink():
        return _from_folder(p, study_id, tmp, source)
    if p.is_dir():
        return _Source(None, text, None, [f"{p.name} is a symbolic link"])
    if p.suffix.lower() == ".zip" and p.is_file():
        return _from_zip(p, study_id, tmp, source)
    if p.name == "study.db" and (p.parent / "bundle.json").exists():  # a bundle's database: check the bundle
        return _from_folder(p.parent, study_id, tmp, source)
    if p.is_symlink():
        return _Source(None, text, None, [f"{p.name} is a symbolic link"])
    if not p.exists():
        raise StudyError("no study database here (give a bundle folder, a .zip, a study.db or a database URL)", p)
    return _Source(_copy_db(p, tmp), text, None, [])


def _open_source(src: _Source, study_id: str, source: str | os.PathLike) -> StudyStore:
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


def _check_rows(master: StudyStore, readers: Sequence[Mapping], scores: Sequence[Mapping],
                manifest: dict | None) -> tuple[list[str], list[dict], list[dict]]:
    """Every problem with the readers and score rows of a source (as read, unconverted), the new readers and
    the score rows to merge (converted)."""
    info = master.info()
    now, created, open_enrolment = time.time(), info["created_at"], info["open_enrolment"]
    criteria = {c.name: c for c in master.criteria()}
    candidates = {case: master.candidate_codes(case) for case in master.case_codes()}
    known = {r.key: r.name for r in master.readers()}
    problems: list[str] = []

    # Readers: the source's own, then the binding of the bundle to its readers.
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
        at = at if at is not None and created - CLOCK_SKEW_S <= at <= now + CLOCK_SKEW_S else now
        listed[key] = {"reader_key": key, "name": " ".join(name.split()), "created_at": at}
    bound: set[str] | None = None
    if manifest is not None and not open_enrolment:
        bundle_id = manifest.get("bundle_id")
        if bundle_id is not None:
            keys = master.bundle_readers(bundle_id)
            if keys is None:
                problems.append("bundle.json's bundle_id was not exported from this study database (was "
                                "bundle.json edited, or the bundle made from another copy of the study?), and the "
                                "study takes no new readers, so whose bundle it is cannot be told")
            else:
                bound = set(keys)
        elif isinstance(manifest.get("readers"), list):  # a bundle from before bundle ids
            bound = set()
            for name in manifest["readers"]:
                try:
                    bound.add(reader_key(name))
                except StudyError:
                    pass
    rows_of: dict[str, list[object]] = {}
    for row in scores:
        if isinstance(row.get("reader_key"), str):
            rows_of.setdefault(row["reader_key"], []).append(row.get("id"))
    for key in sorted(set(rows_of) | {k for k in listed if k not in known}):
        span = f" ({_row_span(rows_of[key])})" if key in rows_of else ""
        if key not in listed and key not in known:
            problems.append(f"reader {key!r}{span} is not registered in the bundle or the study")
        elif key not in known and not open_enrolment:
            problems.append(f"reader {key!r}{span} is not a reader of this study, and it takes no new readers "
                            "(open_enrolment is false)")
        elif bound is not None and key not in bound:
            made_for = ", ".join(known.get(k, k) for k in sorted(bound)) or "nobody"
            problems.append(f"reader {key!r}{span} answered in a bundle that is not theirs: the bundle was made "
                            f"for {made_for}, and the study takes no new readers (open_enrolment is false)")

    # Score rows, one by one.
    clean: list[dict] = []
    for row in sorted(scores, key=lambda r: r.get("id") if isinstance(r.get("id"), int) else -1):
        said: list[str] = []
        uid = row.get("uid")
        if not isinstance(uid, str) or not 1 <= len(uid) <= 32:
            said.append(f"uid {uid!r} is not a row id")
        if not isinstance(row.get("reader_key"), str):
            said.append("names no reader")
        name = row.get("criterion")
        crit = criteria.get(name) if isinstance(name, str) else None
        if crit is None:
            said.append(f"unknown criterion {name!r} (this study asks {', '.join(criteria)})")
        case, image = row.get("case_code"), row.get("image_code")
        if not valid_code(case):
            said.append(f"case code {case!r} is not a valid code")
            case = None
        elif case not in candidates:
            said.append(f"no case {case!r} in this study")
            case = None
        if image is None:
            said.append("names no image")
        elif not valid_code(image):
            said.append(f"image code {image!r} is not a valid code")
        elif case is not None and image not in candidates[case]:
            said.append(f"image {image!r} is not a candidate of case {case!r}")
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
            elif case is not None and (not whole or not 1 <= value <= len(candidates[case])):
                said.append(f"rank {_fmt(value)} outside 1-{len(candidates[case])} for criterion {crit.name!r}")
        confidence = row.get("confidence")
        if confidence is not None:
            c = _number(confidence)
            if c is None or not math.isfinite(c) or c != int(c) or not 1 <= c <= 5:
                said.append(f"confidence {_fmt(c) if c is not None else repr(confidence)} outside 1-5")
        times = {}
        for field, verb, required in (("saved_at", "saved", True), ("opened_at", "opened", False)):
            raw = row.get(field)
            t = _number(raw)
            times[field] = t
            if raw is None and not required:
                continue
            if t is None or not math.isfinite(t):
                said.append(f"{field} {raw!r} is not a time")
            elif t > now + CLOCK_SKEW_S:
                said.append(f"{verb} in the future ({_when(t)})")
            elif t < created - CLOCK_SKEW_S:
                said.append(f"{verb} before the study was created ({_when(t)})")
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
            problems += [f"score row {row.get('id')}: {text}" for text in said]
            continue
        clean.append({"uid": uid, "reader_key": row["reader_key"], "case_code": case, "image_code": image,
                      "criterion": name, "value": value,
                      "confidence": None if confidence is None else int(confidence),
                      "opened_at": times["opened_at"], "saved_at": times["saved_at"], "seconds": s,
                      "client": client})
    new_readers = [r for k, r in listed.items() if k not in known]
    return problems, new_readers, clean


def import_results(master: StudyStore, source: str | os.PathLike) -> ImportSummary:
    """Merge the readers and scores of a bundle (folder, zip, ``study.db`` or database URL) into ``master``.

    Rows already in the master (same uid) are skipped, so importing twice changes nothing. The bundle is read,
    never written: from a folder or zip, the database read is always the bundle's own ``study.db`` (whatever
    ``bundle.json`` says). Every file and row is checked first, and a bundle with anything wrong is refused
    whole: nothing of it is merged, and the error lists every problem (``err.data["problems"]``). New readers
    get their seeded order from ``master``, never from the bundle.

    Raises
    ------
    StudyError
        The source belongs to another study; its database is damaged or unreadable; or the bundle is refused:
        a symbolic link in it, a zip member outside it, a row naming an unknown case, image, criterion or
        reader, a value or confidence out of range, a time in the future, or (when the study's enrolment is
        closed) a reader the bundle was not made for.
    """
    if master.blinded:
        raise StudyError("results are merged into the organiser's database, not into a blinded copy",
                         master.where)
    study_id = master.study_id
    with tempfile.TemporaryDirectory() as tmp:
        src = _locate(source, study_id, Path(tmp))
        problems = list(src.problems)
        new_readers: list[dict] = []
        scores: list[dict] = []
        if src.db is not None:
            store = _open_source(src, study_id, source)
            try:
                with _readable(src.shown, src.what):
                    readers = store.table_rows(S.readers, raw=True)
                    rows = store.table_rows(S.scores, raw=True)
            finally:
                store.close()
            found, new_readers, scores = _check_rows(master, readers, rows, src.manifest)
            problems += found
        if problems:
            raise _refusal(source, problems)
        added, skipped, readers_added = master.merge_results(new_readers, scores)
    return ImportSummary(added, skipped, readers_added, os.fspath(source))
