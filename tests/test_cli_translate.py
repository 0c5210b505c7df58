"""`medtrans translate`, `translate-dataset` and `evaluate` end to end on tiny phantom data and a random model."""

import csv

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core import io
from napari_medtrans.core.dataset import load_dataset
from napari_medtrans.core.phantom import write_phantom_dataset
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import save_checkpoint

SHAPE = (32, 32, 12)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 3, seed=5, shape=SHAPE)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "unet.safetensors"
    net = create_translator("unet", inputs=("T1",), outputs=("T2",), width=4, depth=2)
    save_checkpoint(net, path, normalisation={"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                                              "outputs": {"T2": {"lo": 0.0, "hi": 2.0}}})
    return path


def test_translate_keeps_affine_and_marks_synthetic(data, model, tmp_path, capsys):
    t1 = data / "sub-000" / "T1.nii.gz"
    out = tmp_path / "t2.nii.gz"
    assert main(["translate", str(t1), "--model", str(model), "--out", str(out), "--device", "cpu"]) == 0
    src, syn = io.load(t1), io.load(out)
    assert syn.shape == src.shape
    assert np.allclose(syn.affine, src.affine, atol=1e-5)
    import nibabel as nib

    assert nib.load(str(out)).header["descrip"].tobytes().startswith(b"SYNTHETIC T2")
    # output lands in the target range stored in the checkpoint
    assert syn.data.min() >= -1e-4 and syn.data.max() <= 2.0 + 1e-4
    assert "wrote" in capsys.readouterr().out


def test_translate_rejects_wrong_inputs(data, model, tmp_path, capsys):
    t1 = str(data / "sub-000" / "T1.nii.gz")
    assert main(["translate", t1, t1, "--model", str(model), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "unexpected extra input" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "missing.nii.gz"), "--model", str(model),
                 "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "missing.nii.gz" in capsys.readouterr().err
    assert main(["translate", t1, "--model", str(tmp_path / "nope.safetensors"),
                 "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err


def test_translate_dataset_resumes_and_evaluate_prints_table(data, model, tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["translate-dataset", "--model", str(model), "--data", str(data), "--out", str(out),
                 "--device", "cpu"]) == 0
    files = sorted(out.glob("*/T2_synthetic.nii.gz"))
    assert len(files) == 3
    mtimes = [f.stat().st_mtime_ns for f in files]
    capsys.readouterr()
    assert main(["translate-dataset", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("already translated") == 3
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    csv_path = tmp_path / "m.csv"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--csv",
                 str(csv_path)]) == 0
    text = capsys.readouterr().out
    assert "T1->T2" in text and "PSNR" in text and "+-" in text
    rows = list(csv.DictReader(csv_path.open()))
    test_ids = {s.id for s in load_dataset(data).split("test")}
    assert {r["subject"] for r in rows} == test_ids
    assert all(np.isfinite(float(r["psnr"])) for r in rows)


def test_translate_dataset_shards_by_rank(data, model, tmp_path, monkeypatch):
    out = tmp_path / "sharded"
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(["translate-dataset", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
        if rank == 0:
            assert len(list(out.glob("*/T2_synthetic.nii.gz"))) == 2  # subjects 0 and 2
    assert len(list(out.glob("*/T2_synthetic.nii.gz"))) == 3
