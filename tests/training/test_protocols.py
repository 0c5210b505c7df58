"""The papers' evaluation protocols (issue 24, item 4): each one against a computation by hand (numpy, and
scikit-image's SSIM with the Wang et al. settings), and `medtrans evaluate / floors --protocol` end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from napari_medtrans.cli import main
from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.training.protocols import PROTOCOLS, axial_axis, get_protocol
from napari_medtrans.translators import create_translator, save_checkpoint

#: Voxel axis 1 runs head-foot (world z): the axial slices are [:, k, :].
AFFINE = np.array([[1.2, 0, 0, 0], [0, 0, 1.0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1.0]])


def _volumes(n_axial=130, brain=(10, 120)):
    g = np.random.default_rng(0)
    ref = np.zeros((30, n_axial, 26), np.float32)
    ref[4:26, brain[0]:brain[1], 3:23] = 200 + 300 * g.random((22, brain[1] - brain[0], 20))
    synth = ref + g.normal(0, 40, ref.shape).astype(np.float32)
    synth[ref == 0] = g.normal(0, 5, (ref == 0).sum())
    return synth, ref, ref > 0


def _bilinear(a, size=256):
    """Resample [H, W] to size x size, as bilinear interpolation with half-pixel centres does (by hand)."""
    def weights(n_in):
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    ylo, yhi, fy = weights(a.shape[0])
    xlo, xhi, fx = weights(a.shape[1])
    rows = a[ylo] * (1 - fy)[:, None] + a[yhi] * fy[:, None]
    return rows[:, xlo] * (1 - fx)[None] + rows[:, xhi] * fx[None]


def _pad(a, size=256):
    out = np.zeros((size, size))
    oy, ox = (size - a.shape[0]) // 2, (size - a.shape[1]) // 2
    out[oy:oy + a.shape[0], ox:ox + a.shape[1]] = a
    return out


def _by_hand(synth, ref, slices, size):
    lo, hi = ref.min(), ref.max()
    out = []
    for k in slices:
        r = (ref[:, k, :] - lo) / (hi - lo)
        s = np.clip((synth[:, k, :] - lo) / (hi - lo), 0, 1)
        r, s = (_pad(r), _pad(s)) if size == "pad" else (_bilinear(r), _bilinear(s))
        mse = np.mean((s - r) ** 2)
        ssim = structural_similarity(s, r, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
        out.append((10 * np.log10(1.0 / mse), ssim, np.mean(np.abs(s - r))))
    return np.array(out)


@pytest.mark.parametrize("name, slices, size", [
    ("hifisyn", range(15, 115), "resize"),  # the 100 central of the 110 slices with brain
    ("disdiff", range(15, 115), "resize"),
    ("edts", range(10, 120), "pad"),  # every slice with brain
    ("cdm", range(0, 130), "resize"),  # every slice
    ("mrnet", range(10, 120), "resize"),
])
def test_each_paper_protocol_matches_a_computation_by_hand(name, slices, size):
    synth, ref, mask = _volumes()
    rows = get_protocol(name).score(synth, ref, mask, AFFINE)
    assert [r["slice"] for r in rows] == list(slices)
    got = np.array([[r["psnr"], r["ssim"], r["mae"]] for r in rows])
    want = _by_hand(synth, ref, list(slices), size)
    finite = np.isfinite(want[:, 0])  # slices without brain and a perfect match give inf on both sides
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-4, atol=2e-5)
    assert np.array_equal(np.isfinite(got[:, 0]), finite)


def test_the_project_protocol_is_the_volume_score_inside_the_mask():
    from napari_medtrans.core.metrics import evaluate_volumes

    synth, ref, mask = _volumes()
    (row,) = get_protocol("project").score(synth, ref, mask, AFFINE)
    assert row == evaluate_volumes(synth, ref, mask=mask)
    assert "slice" not in row


def test_axial_axis_and_unknown_names():
    assert axial_axis(AFFINE) == 1 and axial_axis(np.eye(4)) == 2
    assert set(PROTOCOLS) == {"project", "hifisyn", "disdiff", "edts", "cdm", "mrnet"}
    with pytest.raises(UnknownChoiceError, match="hifisyn"):
        get_protocol("hifi")


def test_evaluate_and_floors_take_a_protocol(tmp_path, capsys, one_torch_thread):
    data = tmp_path / "data"
    write_phantom_dataset(data, 3, shape=(32, 32, 12), split=(0.34, 0.0, 0.66))
    torch.manual_seed(0)
    model = tmp_path / "unet.safetensors"
    save_checkpoint(create_translator("unet", width=4, depth=2), model,
                    normalisation={"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                                   "outputs": {"T2": {"lo": 0.0, "hi": 2.0}}})
    csv_path = tmp_path / "m.csv"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--protocol", "edts",
                 "--out", str(tmp_path / "ev"), "--csv", str(csv_path), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "EDTS-Trans protocol: axial slices with brain, zero-padded to 256 x 256" in out
    assert "floor: histogram" in out
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["slice"] != "" and {r["method"] for r in rows} >= {"model", "floor: lookup"}
    n_model = sum(r["method"] == "model" for r in rows)
    assert n_model > 2 and n_model == sum(r["method"] == "floor: lookup" for r in rows)  # slices, both alike
    assert main(["floors", "--data", str(data), "--direction", "T1:T2", "--protocol", "cdm"]) == 0
    assert "CDM protocol: every axial slice, resized to 256 x 256" in capsys.readouterr().out
