"""`medtrans study`: create (translating with the config's model), export-bundle, import-results, report."""

from __future__ import annotations

import csv

import pytest
import yaml

from napari_medtrans.cli import main
from napari_medtrans.core import io
from napari_medtrans.phantom import make_subject
from napari_medtrans.study import ReaderSession, open_bundle
from napari_medtrans.study.store import StudyStore
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import save_checkpoint


@pytest.fixture
def study_yaml(tmp_path):
    for i in range(2):
        s = make_subject(10 + i, shape=(24, 24, 8))
        (tmp_path / f"sub-{i}").mkdir()
        io.save(s.images["T1"], tmp_path / f"sub-{i}" / "T1.nii.gz")
        io.save(s.images["T2"], tmp_path / f"sub-{i}" / "T2.nii.gz")
    save_checkpoint(create_translator("unet", width=4, depth=2), tmp_path / "tiny.safetensors")
    cfg = {"title": "CLI study", "seed": 2, "target": "T2", "readers": ["Alice"],
           "models": {"tinyunet": "tiny.safetensors"},
           "cases": [{"id": f"sub-{i}", "sources": {"T1": f"sub-{i}/T1.nii.gz"}, "real": f"sub-{i}/T2.nii.gz"}
                     for i in range(2)]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_study_commands_end_to_end(study_yaml, tmp_path, capsys):
    assert main(["study", "create", "--config", str(study_yaml), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 cases, 2 candidates per case, 1 readers" in out
    db = tmp_path / "study.db"
    assert (tmp_path / "volumes" / "tinyunet" / "sub-0" / "T2_synthetic.nii.gz").exists()
    with StudyStore(db) as store:
        assert store.methods() == ["real", "tinyunet"]
        key = store.key()
        synth = next(k for k in key.values() if k.method == "tinyunet")
        assert io.load(synth.path).synthetic

    assert main(["study", "export-bundle", "--db", str(db), "--out", str(tmp_path / "b"), "--reader", "Alice"]) == 0
    bundle = open_bundle(tmp_path / "b")
    session = ReaderSession(bundle.store, "Alice", bundle.image_path)
    for i in range(session.total):
        case = session.case(i)
        for code in case.candidates:
            session.score(i, code, "structure", 3)
            session.score(i, code, "diagnostic", 4)
            session.score(i, code, "realism", 0, confidence=2)
        session.rank(i, {c: 1 for c in case.candidates})  # a full tie
    bundle.store.close()

    assert main(["study", "import-results", "--db", str(db), str(tmp_path / "b"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "16 scores added, 0 already present" in out and "0 scores added, 16 already present" in out
    assert main(["study", "report", "--db", str(db), "--out", str(tmp_path / "rep")]) == 0
    with open(tmp_path / "rep" / "summary.csv") as f:
        rows = {(r["method"], r["criterion"]): r for r in csv.DictReader(f)}
    # a full tie of two candidates: both share places 1 and 2, mid-rank 1.5 (one tie convention everywhere)
    assert float(rows[("tinyunet", "diagnostic")]["mean"]) == 4.0 and rows[("real", "ranking")]["mean"] == "1.5"
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Visual Turing test" in html
    # one reader: the MRMC analysis (readers random) says why it has no p
    with open(tmp_path / "rep" / "mrmc_global.csv") as f:
        glob = list(csv.DictReader(f))
    assert glob and all(r["p"] == "" and "1 reader" in r["note"] for r in glob)


def test_study_errors_are_one_line(tmp_path, capsys):
    assert main(["study", "report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "none.db: no study database here" in err
    (tmp_path / "s.yaml").write_text("cases: [{id: a, real: x.nii.gz, candidates: {m: y.nii.gz}}]\n")
    assert main(["study", "create", "--config", str(tmp_path / "s.yaml")]) == 2
    assert "x.nii.gz" in capsys.readouterr().err


def test_simulate_then_report(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "seed": 1, "cases": [{"id": f"c{i}", "real": "r", "candidates": {"m1": "a", "m2": "b"}} for i in range(3)]}))
    from napari_medtrans.study import create_study, load_config

    create_study(load_config(tmp_path / "s.yaml"), tmp_path / "s.db", check_images=False).close()
    assert main(["study", "simulate", "--db", str(tmp_path / "s.db"), "--readers", "3"]) == 0
    assert main(["study", "report", "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").stat().st_size > 10000


@pytest.fixture
def small_study(tmp_path):
    """A study of two cases of tiny images (no model to run) and Alice's bundle with one case answered."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(1)
    cases = []
    for i in range(2):
        for name in ("T2", "m1", "m2"):
            nib.save(nib.Nifti1Image(rng.random((8, 8, 4)).astype(np.float32), np.eye(4)),
                     str(tmp_path / f"c{i}-{name}.nii.gz"))
        cases.append({"id": f"c{i}", "real": f"c{i}-T2.nii.gz",
                      "candidates": {"m1": f"c{i}-m1.nii.gz", "m2": f"c{i}-m2.nii.gz"}})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"seed": 3, "readers": ["Alice"], "cases": cases}))
    db = tmp_path / "s.db"
    assert main(["study", "create", "--config", str(tmp_path / "s.yaml"), "--db", str(db)]) == 0
    assert main(["study", "export-bundle", "--db", str(db), "--out", str(tmp_path / "b"), "--reader", "Alice"]) == 0
    bundle = open_bundle(tmp_path / "b")
    session = ReaderSession(bundle.store, "Alice", bundle.image_path)
    case = session.case(0)
    for code in case.candidates:
        session.score(0, code, "structure", 3)
    bundle.store.close()
    return db, tmp_path / "b"


def test_import_refuses_a_tampered_bundle_in_one_line(small_study, capsys):
    import sqlite3

    db, bundle = small_study
    capsys.readouterr()
    con = sqlite3.connect(bundle / "study.db")
    with con:
        con.execute("UPDATE scores SET value = 999 WHERE id = 1")
        con.execute("UPDATE scores SET reader_key = 'ghost' WHERE id = 2")
    con.close()
    assert main(["study", "import-results", "--db", str(db), str(bundle)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err and "scores added" not in captured.out
    assert err.startswith(f"medtrans study: error: {bundle}: refused, nothing merged: 2 problems: ")
    assert "score row 1: value 999 outside 1-5 for criterion 'structure'" in err
    assert "reader 'ghost' (score row 2) is not registered" in err
    with StudyStore(db) as store:
        assert store.history() == []


def test_import_of_a_damaged_database_is_one_line(small_study, capsys):
    db, bundle = small_study
    capsys.readouterr()
    (bundle / "study.db").write_bytes(b"this is no database" * 500)
    assert main(["study", "import-results", "--db", str(db), str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{bundle / 'study.db'}: cannot be read" in err and "not a database" in err
    # Any command on a file that is no database says so in one line.
    assert main(["study", "report", "--db", str(bundle / "study.db"), "--out", str(bundle.parent / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{bundle / 'study.db'}: cannot open the study database: file is not a database" in err


def test_simulate_effects_and_mrmc_variants(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "seed": 1, "cases": [{"id": f"c{i}", "real": "r", "candidates": {"m1": "a", "m2": "b"}} for i in range(6)]}))
    from napari_medtrans.study import create_study, load_config

    create_study(load_config(tmp_path / "s.yaml"), tmp_path / "s.db", check_images=False).close()
    db = str(tmp_path / "s.db")
    assert main(["study", "simulate", "--db", db, "--readers", "5", "--equal", "--effect", "m1=1.0",
                 "--case-method-sd", "0.5", "--reader-method-sd", "0.3", "--seed", "4"]) == 0
    assert "every method at 3.0, m1 +1.0" in capsys.readouterr().out
    for variant in ("random", "fixed-readers", "fixed-cases"):
        out = tmp_path / variant
        assert main(["study", "report", "--db", db, "--out", str(out), "--mrmc", variant]) == 0
        with open(out / "mrmc_pairwise.csv") as f:
            pairs = {(r["criterion"], r["method_a"], r["method_b"]): r for r in csv.DictReader(f)}
        d = pairs[("structure", "m1", "m2")]
        assert 0.3 < float(d["difference"]) < 1.7 and float(d["ci_low"]) < float(d["difference"])
    assert "readers fixed" in (tmp_path / "fixed-readers" / "report.html").read_text()
    assert main(["study", "report", "--db", db, "--out", str(tmp_path / "h"), "--ddf", "hillis"]) == 0
    assert "take the case covariances as known" in (tmp_path / "h" / "report.html").read_text()
    assert main(["study", "simulate", "--db", db, "--effect", "nope=1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["study", "simulate", "--db", db, "--effect", "m1"]) == 2
    assert "METHOD=POINTS" in capsys.readouterr().err
