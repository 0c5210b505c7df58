"""EDTS-Trans records the TSM calibration it was made with: new models get the calibrated analytic backbone of
issue 20, checkpoints saved before the key existed keep the old one (and so their old outputs)."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_medtrans.core import tsm as T
from napari_medtrans.translators import create_translator, load_translator, save_checkpoint

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models" / "edts-t1-t2.safetensors"


def _image():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 1, 32, 32, generator=g) * 2 - 1).clamp(-1, 1)


def _tsm(model, gain):
    x = _image()
    with torch.no_grad():
        got = model.tsm(x)
    want = T.compute_tsm(x, backbone="analytic", gain=gain).map
    return got, want


def test_new_models_use_the_calibrated_gain():
    m = create_translator("edts-trans", preset="cpu", width=4)
    assert m.config["tsm_gain"] == T.ANALYTIC_GAIN != T.LEGACY_ANALYTIC_GAIN
    got, want = _tsm(m, T.ANALYTIC_GAIN)
    torch.testing.assert_close(got, want)
    assert create_translator("edts-trans", preset="cpu", width=4, tsm_gain=9.0).config["tsm_gain"] == 9.0


def test_a_checkpoint_without_the_key_keeps_the_old_calibration(tmp_path):
    m = create_translator("edts-trans", preset="cpu", width=4)
    del m.config["tsm_gain"]  # what every checkpoint saved before issue 20 holds
    path = save_checkpoint(m, tmp_path / "old.safetensors")
    back = load_translator(path)
    assert back.config["tsm_gain"] == T.LEGACY_ANALYTIC_GAIN
    got, want = _tsm(back, T.LEGACY_ANALYTIC_GAIN)
    torch.testing.assert_close(got, want)
    # saved again, it says so explicitly
    again = load_translator(save_checkpoint(back, tmp_path / "again.safetensors"))
    assert again.config["tsm_gain"] == T.LEGACY_ANALYTIC_GAIN


def test_the_shipped_model_uses_the_calibrated_gain():
    """The shipped file is trained on the benchmark after the calibration (its card): it must run with gain 7, the
    gain it was trained with, not the legacy 12 that files without the key get."""
    model = load_translator(SHIPPED)
    assert model.config["tsm_gain"] == T.ANALYTIC_GAIN
    got, want = _tsm(model, T.ANALYTIC_GAIN)
    torch.testing.assert_close(got, want)
