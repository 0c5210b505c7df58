"""`medtrans translate`, `translate-dataset` and `evaluate` end to end on tiny phantom data and a random model."""

import csv

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core import io
from napari_medtrans.core.dataset import load_dataset
from napari_medtrans.phantom import write_phantom_dataset
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


def test_evaluate_keeps_fp32_and_bf16_outputs_apart(data, model, capsys):
    # the default output folder names the precision: a bf16 run never reuses fp32 volumes, and the table says
    # which precision made the figures
    tables = {}
    for precision in ("fp32", "bf16"):
        assert main(["evaluate", "--model", str(model), "--data", str(data), "--device", "cpu",
                     "--precision", precision]) == 0
        tables[precision] = capsys.readouterr().out
        assert f"inference precision {precision}" in tables[precision]
        assert "already translated" not in tables[precision]
    folders = sorted(p.name for p in (data / "evaluation").iterdir())
    assert len(folders) == 2 and folders[0].endswith("-bf16") and folders[1].endswith("-fp32")


def test_translate_dataset_shards_by_rank(data, model, tmp_path, monkeypatch):
    out = tmp_path / "sharded"
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(["translate-dataset", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
        if rank == 0:
            assert len(list(out.glob("*/T2_synthetic.nii.gz"))) == 2  # subjects 0 and 2
    assert len(list(out.glob("*/T2_synthetic.nii.gz"))) == 3


# -- two-modality checkpoints: both directions from one file ---------------------------------------------
T1_RANGE = {"lo": 1000.0, "hi": 1010.0}  # far from the phantom's intensities: shows which range was used
T2_RANGE = {"lo": 0.0, "hi": 2.0}


@pytest.fixture(scope="module")
def data_t1_t2(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom-t1-t2")
    write_phantom_dataset(root, 4, seed=0, shape=SHAPE, contrasts=("T1", "T2"), split=(0.5, 0.25, 0.25))
    return root


@pytest.fixture(scope="module")
def two_way_model(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("two-way") / "hifisyn.safetensors"
    net = create_translator("hifi-syn", preset="cpu", width=4, disc_width=4, attr_dim=4, n_res=1)
    save_checkpoint(net, path, normalisation={"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                                              "inputs": {"T1": T1_RANGE}, "outputs": {"T2": T2_RANGE}})
    return path


def test_translate_reverse_maps_into_the_t1_range(data_t1_t2, two_way_model, tmp_path, capsys, one_torch_thread):
    t2 = data_t1_t2 / "sub-000" / "T2.nii.gz"
    for flag in (["--direction", "T2->T1"], ["--reverse"], ["--direction", "t2:t1"]):
        out = tmp_path / "t1.nii.gz"
        assert main(["translate", str(t2), "--model", str(two_way_model), "--out", str(out), "--device", "cpu",
                     *flag]) == 0
        syn = io.load(out)
        assert syn.modality == "T1"
        assert syn.data.min() >= T1_RANGE["lo"] - 1e-2 and syn.data.max() <= T1_RANGE["hi"] + 1e-2
        assert "T2 -> T1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["translate", str(t2), "--model", str(two_way_model), "--out", str(out), "--direction", "T2"])
    assert '"direction"' in capsys.readouterr().err


def test_evaluate_both_directions_from_one_checkpoint(data_t1_t2, two_way_model, tmp_path, capsys,
                                                       one_torch_thread):
    out = tmp_path / "eval"
    common = ["evaluate", "--model", str(two_way_model), "--data", str(data_t1_t2), "--out", str(out),
              "--device", "cpu"]
    assert main([*common, "--direction", "T2->T1"]) == 0
    text = capsys.readouterr().out
    assert "T2->T1" in text and "T1->T2" not in text.split("PSNR")[1]
    test_ids = {s.id for s in load_dataset(data_t1_t2).split("test")}
    reverse_files = sorted(out.glob("*/T1_from_T2_synthetic.nii.gz"))
    assert {f.parent.name for f in reverse_files} == test_ids
    assert not list(out.glob("*/T2_synthetic.nii.gz")) and not list(out.glob("*/T1_synthetic.nii.gz"))
    rows = list(csv.DictReader((out / "metrics_T2_to_T1.csv").open()))
    assert {r["direction"] for r in rows} == {"T2->T1"} and {r["subject"] for r in rows} == test_ids
    assert not (out / "metrics.csv").exists()
    for f in reverse_files:  # mapped into the stored T1 range, not T2's
        v = io.load(f).data
        assert v.min() >= T1_RANGE["lo"] - 1e-2 and v.max() <= T1_RANGE["hi"] + 1e-2

    # the saved direction into the same folder neither skips nor overwrites the reverse outputs
    mtimes = [f.stat().st_mtime_ns for f in reverse_files]
    assert main(common) == 0
    text = capsys.readouterr().out
    assert "already translated" not in text and "T1->T2" in text
    assert {f.parent.name for f in out.glob("*/T2_synthetic.nii.gz")} == test_ids
    assert [f.stat().st_mtime_ns for f in reverse_files] == mtimes
    assert {r["direction"] for r in csv.DictReader((out / "metrics.csv").open())} == {"T1->T2"}

    # both rows in one table, from the files already written
    assert main([*common, "--direction", "T1:T2", "--direction", "T2:T1"]) == 0
    text = capsys.readouterr().out
    assert text.count("already translated") == 2 * len(test_ids)
    table = text.split("PSNR")[1]
    assert "T1->T2" in table and "T2->T1" in table
    rows = list(csv.DictReader((out / "metrics_T1_to_T2+T2_to_T1.csv").open()))
    model_rows = [r for r in rows if r["method"] == "model"]
    assert sorted(r["direction"] for r in model_rows) == sorted(["T1->T2", "T2->T1"] * len(test_ids))
    # and each direction's three floors on the same subjects
    floor_rows = [r for r in rows if r["method"].startswith("floor: ")]
    assert sorted(r["direction"] for r in floor_rows) == sorted(["T1->T2", "T2->T1"] * 3 * len(test_ids))
    assert all(np.isfinite(float(r["psnr"])) for r in rows)


def test_translate_dataset_reverse_resumes(data_t1_t2, two_way_model, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "synth"
    args = ["translate-dataset", "--model", str(two_way_model), "--data", str(data_t1_t2), "--out", str(out),
            "--split", "test", "--device", "cpu", "--reverse"]
    assert main(args) == 0
    files = sorted(out.glob("*/T1_from_T2_synthetic.nii.gz"))
    assert len(files) == len(load_dataset(data_t1_t2).split("test"))
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("already translated") == len(files)


def test_direction_a_one_direction_model_lacks_names_the_model(data, model, tmp_path, capsys):
    for cmd in (["translate-dataset", "--out", str(tmp_path / "o")], ["evaluate", "--out", str(tmp_path / "e")]):
        assert main([*cmd, "--model", str(model), "--data", str(data), "--device", "cpu", "--reverse"]) == 2
        err = capsys.readouterr().err
        assert "unet.safetensors" in err and "T1->T2" in err and "not T2->T1" in err
    assert not list(tmp_path.glob("*/*/*.nii.gz"))
    t2 = data / "sub-000" / "T2.nii.gz"
    assert main(["translate", str(t2), "--model", str(model), "--out", str(tmp_path / "x.nii.gz"),
                 "--direction", "T2->T1"]) == 2
    assert "unet.safetensors" in capsys.readouterr().err
