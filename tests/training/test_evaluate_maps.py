"""`medtrans evaluate` scores the image maps a translator returns (EDTS-Trans's regression and diffusion branches)
next to the model and the floors (issue 20, item 1)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from napari_medtrans.cli import main
from napari_medtrans.core import io
from napari_medtrans.core.dataset import load_dataset
from napari_medtrans.core.metrics import evaluate_volumes
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.training.evaluate import (
    MODEL,
    evaluate_dataset,
    format_table,
    image_maps,
    map_method,
    map_path,
)
from napari_medtrans.translators import create_translator, save_checkpoint

SHAPE = (32, 32, 12)
NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "outputs": {"T2": {"lo": 0.0, "hi": 2.0}}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 3, shape=SHAPE)
    return root


@pytest.fixture(scope="module")
def edts(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "edts.safetensors"
    net = create_translator("edts-trans", preset="cpu", width=4, depth=2, default_steps=2)
    save_checkpoint(net, path, normalisation=NORM)
    return path


def test_image_maps_are_the_branches_not_the_tsm():
    assert image_maps(("regression", "diffusion", "tsm")) == ("regression", "diffusion")
    assert image_maps(("masks",)) == ()
    # asked for by name, any map is scored; an unknown name is refused with the choices
    assert image_maps(("regression", "diffusion", "tsm"), ["diffusion"]) == ("diffusion",)
    with pytest.raises(ValueError, match="regression"):
        image_maps(("regression", "diffusion", "tsm"), ["regresion"])


def test_evaluate_prints_and_writes_rows_for_edts_branches(data, edts, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "eval"
    csv_path = tmp_path / "metrics.csv"
    assert main(["evaluate", "--model", str(edts), "--data", str(data), "--out", str(out), "--csv", str(csv_path),
                 "--device", "cpu", "--precision", "fp32"]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.startswith("T1->T2")]
    methods = [ln[16:36].strip() for ln in lines]
    # the model first, then its branches, then the floors
    assert methods[:3] == [MODEL, "map: regression", "map: diffusion"], methods
    assert {"floor: identity", "floor: histogram", "floor: lookup"} <= set(methods)
    assert "tsm" not in text.split("floors:")[-1]

    rows = list(csv.DictReader(csv_path.open()))
    test_ids = {s.id for s in load_dataset(data).split("test")}
    for method in (MODEL, "map: regression", "map: diffusion"):
        sel = [r for r in rows if r["method"] == method]
        assert {r["subject"] for r in sel} == test_ids, method
        assert all(np.isfinite(float(r["psnr"])) for r in sel)

    # a branch row scores the branch's own volume, written next to the synthetic image in the output contrast's
    # intensity range
    ds = load_dataset(data)
    subject = next(s for s in ds.subjects if s.id in test_ids)
    ref = io.load(ds.path(subject.images["T2"]), modality="T2")
    mask = io.load(ds.path(subject.mask)).data > 0
    for name in ("regression", "diffusion"):
        vol = io.load(map_path(out, subject.id, "T2", name), modality="T2")
        assert vol.shape == ref.shape and vol.synthetic
        assert vol.data.min() >= -1e-4 and vol.data.max() <= 2.0 + 1e-4
        row = next(r for r in rows if r["subject"] == subject.id and r["method"] == map_method(name))
        expected = evaluate_volumes(vol.data, ref.data, mask=mask)
        assert float(row["psnr"]) == pytest.approx(expected["psnr"], rel=1e-5)
    # the branches are not the fused image
    fused = io.load(out / subject.id / "T2_synthetic.nii.gz").data
    assert not np.allclose(fused, io.load(map_path(out, subject.id, "T2", "regression")).data)


def test_evaluate_resumes_with_maps_and_can_skip_them(data, edts, tmp_path, one_torch_thread):
    out = tmp_path / "eval"
    logs: list[str] = []
    report = evaluate_dataset(edts, data, out, device="cpu", precision="fp32", floors=False, log=logs.append)
    assert [m for m in report.methods] == [MODEL, "map: regression", "map: diffusion"]
    logs.clear()
    again = evaluate_dataset(edts, data, out, device="cpu", precision="fp32", floors=False, log=logs.append)
    assert all("already translated" in s for s in logs if s.startswith("["))
    assert again.rows == report.rows
    # maps=() scores the model alone; the table still reads as before
    plain = evaluate_dataset(edts, data, out, device="cpu", precision="fp32", floors=False, maps=(),
                             log=logs.append)
    assert plain.methods == [MODEL]
    assert "map:" not in format_table(plain)
