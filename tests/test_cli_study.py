"""`medtrans study`: create (translating with the config's model), export-bundle, import-results, report."""

from __future__ import annotations

import csv

import pytest
import yaml

from napari_medtrans.cli import main
from napari_medtrans.core import io
from napari_medtrans.phantom import make_subject
from napari_medtrans.core.study import ReaderSession, open_bundle
from napari_medtrans.core.study.store import StudyStore
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
    assert float(rows[("tinyunet", "diagnostic")]["mean"]) == 4.0 and rows[("real", "ranking")]["mean"] == "1.0"
    assert "Visual Turing test" in (tmp_path / "rep" / "report.html").read_text()


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
    from napari_medtrans.core.study import create_study, load_config

    create_study(load_config(tmp_path / "s.yaml"), tmp_path / "s.db", check_images=False).close()
    assert main(["study", "simulate", "--db", str(tmp_path / "s.db"), "--readers", "3"]) == 0
    assert main(["study", "report", "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").stat().st_size > 10000
