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

This module builds studies, packs and opens bundles and runs an import; the bundle's format and codes are in
:mod:`.bundle_format`, reading a returned bundle safely in :mod:`.bundle_source`, and the checks of its rows in
:mod:`.bundle_checks` (their public names are importable from here too).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import MedtransError, StudyError
from . import schema as S
from .bundle_checks import check_rows
from .bundle_format import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    CLOCK_SKEW_S,
    CODE_PATTERN,
    code_rule,
    readable,
    symlinks,
    valid_code,
)
from .bundle_source import locate, open_source
from .model import ImageSpec, StudySpec, load_config
from .store import StudyStore

__all__ = ["BUNDLE_FORMAT", "CODE_PATTERN", "CLOCK_SKEW_S", "create_study", "export_bundle", "import_results",
           "open_bundle", "valid_code", "write_blinded_image", "ImportSummary", "Bundle"]

_LEVELS = 4095


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
            raise StudyError(f"{code!r} is not a valid image code ({code_rule()})", self.folder)
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
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "study_id": master.study_id,
                "bundle_id": bundle_id, "title": master.info()["title"], "readers": [names[k] for k in keys],
                "database": database, "created_at": time.time()}
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if zip_bundle:
        archive = shutil.make_archive(str(folder), "zip", root_dir=folder)
        return Path(archive)
    return folder


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
    links = symlinks(folder) if folder.is_dir() else []
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
    if version > BUNDLE_VERSION:
        raise StudyError(f"bundle version {version!r} is newer than this napari-medtrans reads "
                         f"({BUNDLE_VERSION}); update it", manifest_path)
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
        with readable(store.where):
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
                         f"({code_rule()}); refusing to use {'it' if len(bad) == 1 else 'them'} as a file name",
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


def _refusal(source: str | os.PathLike, problems: Sequence[str]) -> StudyError:
    n = len(problems)
    return StudyError(f"refused, nothing merged: {n} problem{'s' if n != 1 else ''}: {'; '.join(problems)}",
                      source, problems=list(problems))


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
        src = locate(source, study_id, Path(tmp))
        problems = list(src.problems)
        new_readers: list[dict] = []
        scores: list[dict] = []
        if src.db is not None:
            store = open_source(src, study_id, source)
            try:
                with readable(src.shown, src.what):
                    readers = store.table_rows(S.readers, raw=True)
                    rows = store.table_rows(S.scores, raw=True)
            finally:
                store.close()
            found, new_readers, scores = check_rows(master, readers, rows, src.manifest)
            problems += found
        if problems:
            raise _refusal(source, problems)
        added, skipped, readers_added = master.merge_results(new_readers, scores)
    return ImportSummary(added, skipped, readers_added, os.fspath(source))
