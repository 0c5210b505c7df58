"""`medtrans demo` (the README's first command, without the app): a held-out phantom subject translated by the
shipped model, with its geometry kept, marked synthetic, and scored against the real T2."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.io import load

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    assert psnr >= 26.0 and ssim >= 0.85, (psnr, ssim)  # the bar for the shipped model
    assert "marked synthetic: True" in text and "affine kept: True" in text
