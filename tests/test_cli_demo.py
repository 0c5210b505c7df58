"""`medtrans demo` (the README's first command, without the app): a held-out phantom subject translated by the
shipped model, with its geometry kept, marked synthetic, and scored against the real T2."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.io import load

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# What the shipped demo model scores on the demo subject (resources/models/demo-t1-t2.md), less a margin for the
# precision the engine picks on the machine that runs the test.
DEMO_PSNR, DEMO_SSIM = 23.0, 0.80


def test_demo_translates_a_held_out_subject_with_the_shipped_model(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--app", "no"]) == 0
    text = capsys.readouterr().out
    t1, synth, real = load(out / "T1.nii.gz"), load(out / "T2_synthetic.nii.gz"), load(out / "T2.nii.gz")
    np.testing.assert_allclose(synth.affine, t1.affine, atol=1e-5)
    assert synth.shape == t1.shape and synth.synthetic and not real.synthetic
    found = re.search(r"PSNR ([\d.]+) dB, SSIM ([\d.]+)", text)
    assert found, text
    psnr, ssim = float(found.group(1)), float(found.group(2))
    assert psnr >= DEMO_PSNR and ssim >= DEMO_SSIM, (psnr, ssim)
    assert "marked synthetic: True" in text and "affine kept: True" in text
    # the demo subject has a tumour, and the synthetic T2 draws it brighter than the white matter, as the real T2 does
    labels = load(out / "labels.nii.gz").data
    tumour, wm = np.isin(labels, (4, 5, 6)), labels == 3
    assert tumour.sum() > 100 and "with a tumour" in text
    assert real.data[tumour].mean() > 1.3 * real.data[wm].mean()
    assert synth.data[tumour].mean() > 1.2 * synth.data[wm].mean()
