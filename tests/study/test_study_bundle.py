"""Reader bundles: building a study from images, packing a blinded bundle, a reader's session on it, and
merging the results back without duplicates."""

from __future__ import annotations

import json
import zipfile

import nibabel as nib
import numpy as np
import pytest

from napari_medtrans.core import io
from napari_medtrans.core.errors import StudyError
from napari_medtrans.phantom import make_subject
from napari_medtrans.study import (
    ReaderSession,
    analyse,
    create_study,
    export_bundle,
    import_results,
    open_bundle,
)
from napari_medtrans.study.model import REAL, parse_config
from napari_medtrans.study.store import StudyStore

METHODS = ("zebramethod", "quokkanet")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two phantom subjects: T1, T2 and two 'synthetic' T2s (the T2 with noise) each, as NIfTI."""
    root = tmp_path_factory.mktemp("imgs")
    cases = []
    for i in range(2):
        s = make_subject(i, shape=(24, 24, 8))
        d = root / f"subject-alpha{i}"
        d.mkdir()
        io.save(s.images["T1"], d / "T1_acquired.nii.gz")
        io.save(s.images["T2"], d / "T2_acquired.nii.gz")
        rng = np.random.default_rng(i)
        cands = {}
        for j, m in enumerate(METHODS):
            t2 = s.images["T2"]
            synth = t2.derive(t2.data * (1 + 0.1 * (j + 1) * rng.standard_normal(t2.shape)), synthetic=True,
                              provenance={"method": m})
            cands[m] = str(d / f"{m}_T2_output.nii.gz")
            io.save(synth, cands[m])
        cases.append({"id": f"subject-alpha{i}", "sources": {"T1": str(d / "T1_acquired.nii.gz")},
                      "real": str(d / "T2_acquired.nii.gz"), "candidates": cands})
    return root, {"title": "bundle test", "seed": 9, "target": "T2", "readers": ["Alice"], "cases": cases,
                  "open_enrolment": True}


@pytest.fixture
def master(images, tmp_path):
    store = create_study(parse_config(images[1]), tmp_path / "study.db", log=lambda s: None)
    yield store
    store.close()


def walk_case(session: ReaderSession, index: int, value: int = 4) -> None:
    """Answer every criterion of case ``index`` the way the app does."""
    case = session.case(index)
    for code in case.candidates:
        session.score(index, code, "structure", value, seconds=2.0)
        session.score(index, code, "diagnostic", value - 1, seconds=1.0)
        session.score(index, code, "realism", 1, confidence=3, seconds=1.0)
    session.rank(index, {code: i + 1 for i, code in enumerate(case.candidates)}, seconds=5.0)


def test_create_checks_that_images_share_a_grid(images, tmp_path):
    cfg = json.loads(json.dumps(images[1]))
    other = make_subject(5, shape=(20, 24, 8)).images["T2"]
    io.save(other, tmp_path / "small.nii.gz")
    cfg["cases"][0]["candidates"]["zebramethod"] = str(tmp_path / "small.nii.gz")
    with pytest.raises(StudyError, match="small.nii.gz.*share one grid"):
        create_study(parse_config(cfg), tmp_path / "s.db", log=lambda s: None)
    cfg["cases"][0]["candidates"]["zebramethod"] = str(tmp_path / "absent.nii.gz")
    with pytest.raises(StudyError, match="absent.nii.gz"):
        create_study(parse_config(cfg), tmp_path / "s2.db", log=lambda s: None)
    assert not (tmp_path / "s.db").exists() or StudyStore(tmp_path / "s.db").study_id is None


def test_bundle_reveals_no_method_subject_or_file_name(master, images, tmp_path):
    bundle = export_bundle(master, tmp_path / "bundle", readers=["Alice", "Bob"], log=lambda s: None)
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"bundle.json", "study.db"} <= names and len(files) == 2 + 2 * 4
    forbidden = list(METHODS) + ["subject-alpha", "T1_acquired", "T2_acquired", "_output", "SYNTHETIC",
                                 "synthetic", str(images[0])]
    for p in files:
        data = p.read_bytes()
        if p.suffix == ".gz":
            data += __import__("gzip").decompress(data)
        for word in forbidden:
            assert word.encode() not in data, f"{word!r} leaks in {p.relative_to(bundle)}"
    # Every image is named by its code, carries a bare header and whole numbers 0..4095 (acquired or not).
    key = master.key()
    for p in (bundle / "images").iterdir():
        code = p.name.split(".")[0]
        assert code in key
        img = nib.load(p)
        assert img.get_data_dtype() == np.int16 and img.header["descrip"].tobytes().strip(b"\0") == b""
        assert not img.header.extensions
        data = np.asarray(img.dataobj)
        assert data.min() == 0 and data.max() == 4095
        np.testing.assert_allclose(img.affine, io.load(key[code].path).affine, atol=1e-4)
    opened = open_bundle(bundle)
    assert opened.store.blinded and opened.manifest["readers"] == ["Alice", "Bob"]
    with pytest.raises(StudyError, match="blinded reader copy"):
        opened.store.key()
    opened.store.close()


def test_bundle_images_keep_the_picture(master, tmp_path):
    bundle = export_bundle(master, tmp_path / "b", log=lambda s: None)
    key = master.key()
    code = next(c for c, k in key.items() if k.method == REAL)
    original = io.load(key[code].path).data
    blinded = np.asarray(nib.load(bundle / "images" / f"{code}.nii.gz").dataobj, dtype=np.float64)
    assert np.corrcoef(original.ravel(), blinded.ravel())[0, 1] > 0.9999


def test_reader_session_scores_resume_and_import(master, tmp_path):
    bundle = export_bundle(master, tmp_path / "bundle", readers=["Alice"], log=lambda s: None)
    opened = open_bundle(bundle)
    session = ReaderSession(opened.store, "alice", opened.image_path)
    assert session.total == 2 and session.label(0) == "case 1 of 2" and session.resume_index() == 0
    assert list(session.letters(0).values()) == ["A", "B", "C"]
    assert session.image_path(session.case(0).candidates[0]).exists()
    walk_case(session, 0)
    session.score(1, session.case(1).candidates[0], "structure", 2)
    assert session.completed() == 1 and session.resume_index() == 1
    opened.store.close()
    # Stop and resume on a fresh open: exactly where the reader left off, answers kept.
    opened = open_bundle(bundle)
    again = ReaderSession(opened.store, "Alice ", opened.image_path)
    assert again.resume_index() == 1 and again.answer(1, again.case(1).candidates[0], "structure").value == 2
    # A correction appends; the latest wins.
    again.score(0, again.case(0).candidates[0], "structure", 1)
    walk_case(again, 1, value=5)
    assert again.completed() == 2
    opened.store.close()

    first = import_results(master, bundle)
    assert first.added == 3 * 4 * 2 + 1 + 1 and first.skipped == 0 and first.readers_added == 0
    second = import_results(master, bundle / "study.db")
    assert second.added == 0 and second.skipped == first.added
    a = analyse(master)
    assert len(a.readers) == 1 and sum(r["n"] for r in a.summary if r["criterion"] == "structure") == 6
    corrected = [r for r in a.records if r.criterion == "structure" and r.value == 1]
    assert len(corrected) == 1


def test_new_reader_in_a_zip_bundle_merges(master, tmp_path):
    archive = export_bundle(master, tmp_path / "bz", zip_bundle=True, log=lambda s: None)
    assert archive.suffix == ".zip" and "study.db" in zipfile.ZipFile(archive).namelist()
    opened = open_bundle(tmp_path / "bz")
    session = ReaderSession(opened.store, "Carol", opened.image_path)  # not registered: open enrolment
    walk_case(session, 0)
    opened.store.close()
    # The reader sends back only the folder's results; here, a zip of it.
    import shutil

    shutil.make_archive(str(tmp_path / "back"), "zip", root_dir=tmp_path / "bz")
    summary = import_results(master, tmp_path / "back.zip")
    assert summary.readers_added == 1 and summary.added == 3 * 4
    carol = master.assignment("carol")
    assert [c.case_code for c in carol] == [c.case_code for c in session.cases]


def test_results_of_another_study_are_refused(master, images, tmp_path):
    other = create_study(parse_config(images[1]), tmp_path / "other.db", log=lambda s: None)
    bundle = export_bundle(other, tmp_path / "ob", log=lambda s: None)
    with pytest.raises(StudyError, match="another study"):
        import_results(master, bundle)
    other.close()


def test_reader_sessions_refuse_the_organisers_database(master):
    with pytest.raises(StudyError, match="blinded copies only"):
        ReaderSession(master, "Alice", lambda c: c)


def test_shared_database_bundles_keep_the_key_at_home(master, tmp_path):
    """A multi-site study: the blinded copy lives in a shared database (any SQLAlchemy URL; PostgreSQL in
    practice), bundles carry only images and its URL, and results are imported from that URL."""
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    site1 = export_bundle(master, tmp_path / "site1", readers=["Alice"], database=shared, log=lambda s: None)
    site2 = export_bundle(master, tmp_path / "site2", readers=["Bob"], database=shared, log=lambda s: None)
    assert not (site1 / "study.db").exists() and json.loads((site1 / "bundle.json").read_text())["database"] == shared
    for folder, name in ((site1, "Alice"), (site2, "Bob")):
        opened = open_bundle(folder)
        session = ReaderSession(opened.store, name, opened.image_path)
        walk_case(session, 0)
        opened.store.close()
    with StudyStore(shared) as store:
        assert store.blinded and {r.key for r in store.readers()} == {"alice", "bob"}
        with pytest.raises(StudyError, match="blinded"):
            store.key()
    summary = import_results(master, shared)
    assert summary.added == 2 * (3 * 3 + 3) and import_results(master, shared).added == 0
    # A bundle folder never sends an import elsewhere: the organiser imports from the shared database itself.
    with pytest.raises(StudyError, match="site1: this bundle has no study.db.*import from the shared database"):
        import_results(master, site1)
