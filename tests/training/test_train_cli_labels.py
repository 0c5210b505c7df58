"""`medtrans train --method hifi-syn` trains on unpaired slices with tissue labels, so its SGD term is non-zero;
methods whose recipe asks for neither keep paired slices without labels."""

import json

import pytest

from napari_medtrans.cli import main
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.training.recipes import get_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 4, seed=0, shape=(32, 32, 12), contrasts=("T1", "T2"), split=(0.5, 0.25, 0.25))
    return root


def _rows(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_hifisyn_trains_with_labels_and_a_nonzero_sgd_term(phantom, tmp_path, capsys):
    out = tmp_path / "hs"
    assert main(["train", "--method", "hifi-syn", "--data", str(phantom), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--size", "32", "32", "--log-every", "1", "--val-every", "0",
                 "--val-max-slices", "2", "--checkpoint-every", "0", "--threads", "1",
                 "--config", "preset=cpu", "width=8", "disc_width=8", "attr_dim=4"]) == 0
    text = capsys.readouterr().out
    assert "training hifi-syn T1 -> T2" in text and "unpaired training slices with tissue labels" in text
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["g_sgd"] > 0 for r in rows)


def test_other_methods_keep_paired_slices_without_labels(phantom, tmp_path, capsys):
    for name in ("unet", "pix2pix"):
        recipe = get_recipe(name)
        assert not getattr(recipe, "needs_labels", False) and not getattr(recipe, "unpaired", False)
    assert main(["train", "--method", "unet", "--data", str(phantom), "--out", str(tmp_path / "u"), "--width", "8",
                 "--depth", "3", "--steps", "1", "--batch-size", "2", "--val-every", "0", "--val-max-slices", "2",
                 "--checkpoint-every", "0"]) == 0
    text = capsys.readouterr().out
    assert "training slices from 2 subjects" in text and "unpaired training" not in text
    assert "with tissue labels" not in text


def test_one_to_one_methods_need_one_input_and_one_output(phantom, tmp_path, capsys):
    code = main(["train", "--method", "hifi-syn", "--data", str(phantom), "--out", str(tmp_path / "x"),
                 "--inputs", "T1", "FLAIR", "--steps", "1"])
    assert code != 0
    assert "hifi-syn translates one modality into another" in capsys.readouterr().err


def test_disdiff_trains_on_unpaired_slices_without_labels(phantom, tmp_path, capsys):
    out = tmp_path / "dd"
    assert main(["train", "--method", "disdiff", "--data", str(phantom), "--out", str(out), "--steps", "1",
                 "--batch-size", "2", "--size", "32", "32", "--log-every", "1", "--val-every", "0",
                 "--val-max-slices", "2", "--checkpoint-every", "0", "--threads", "1",
                 "--config", "preset=cpu"]) == 0
    text = capsys.readouterr().out
    assert "training disdiff T1 -> T2" in text and "unpaired training slices" in text
    assert "with tissue labels" not in text
    assert (out / "model.safetensors").exists()
