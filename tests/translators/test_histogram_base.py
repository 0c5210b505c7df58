"""Issue 19: the unpaired histogram mapping as the base an unpaired generator corrects
(napari_medtrans/translators/histogram_base.py), and CycleGAN with it."""

import numpy as np
import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import load_translator, save_checkpoint
from napari_medtrans.core.preprocess import FOREGROUND_LEVEL
from napari_medtrans.translators.histogram_base import HistogramBase

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "inputs": {"T1": {"lo": 0.0, "hi": 600.0}},
        "outputs": {"T2": {"lo": 0.0, "hi": 500.0}}, "targets": "volume"}


def _pair(seed: int, n: int = 4, size: int = 32):
    """Unpaired-looking T1 and T2 batches of one underlying tissue map: T2 = a decreasing function of T1 inside a
    disc (the brain), -1 outside; each from its own random tissue map, so no pixel is paired."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.5) ** 2).float()[None, None].repeat(n, 1, 1, 1)

    def one():
        tissue = torch.rand(n, 1, size, size, generator=g)
        t1 = torch.where(disc > 0, -0.6 + 1.5 * tissue, torch.full_like(tissue, -1.0))
        t2 = torch.where(disc > 0, 0.8 - 1.5 * tissue ** 2, torch.full_like(tissue, -1.0))
        return t1, t2

    (t1, _), (_, t2) = one(), one()
    return t1, t2, disc


def _fitted(batches: int = 6) -> HistogramBase:
    base = HistogramBase("T1", "T2", -1)
    for k in range(batches):
        t1, t2, disc = _pair(k)
        base.update("T1", t1, disc, t2, disc)
    return base


def test_the_base_maps_by_reversed_rank_onto_the_other_contrast():
    base = _fitted()
    assert base.fitted and int(base.count) == 6
    # the mapping the batches imply: tissue u in [0, 1] has T1 -0.6 + 1.5 u and T2 0.8 - 1.5 u^2
    u = torch.linspace(0.05, 0.95, 19)
    got = base(-0.6 + 1.5 * u, "T1")
    np.testing.assert_allclose(got.numpy(), (0.8 - 1.5 * u ** 2).numpy(), atol=0.06)
    back = base(0.8 - 1.5 * u ** 2, "T2")
    np.testing.assert_allclose(back.numpy(), (-0.6 + 1.5 * u).numpy(), atol=0.06)
    # background stays background, whatever the mapping
    assert float(base(torch.tensor([-1.0, FOREGROUND_LEVEL - 0.01]), "T1").max()) == -1.0
    with pytest.raises(UnknownChoiceError):
        base(u, "FLAIR")


def test_batches_without_brain_pixels_are_skipped():
    base = HistogramBase("T1", "T2", -1)
    t1, t2, disc = _pair(0)
    base.update("T1", t1, torch.zeros_like(disc), t2, disc)
    assert not base.fitted
    with pytest.raises(ValueError, match="sign"):
        HistogramBase("T1", "T2", 0)


def _cyclegan(**kw):
    torch.manual_seed(0)
    return create_translator("cyclegan", preset="cpu", width=4, n_blocks=2, base="histogram", **kw)


def test_cyclegan_with_the_base_starts_at_the_floor_and_its_residual_moves_it(tmp_path):
    model = _cyclegan().eval()
    assert model.config["base_order"] == "reversed"  # T1 <-> T2 reverse the tissue order (core.modality.contrast_sign)
    fitted = _fitted()
    model.base.load_state_dict(fitted.state_dict())
    t1, t2, _ = _pair(9)
    with torch.no_grad():
        out = model.translate(t1).image
        floor = fitted(t1, "T1")
    # at the start the translation is the histogram mapping (its last layer is zero)
    torch.testing.assert_close(out, floor.clamp(-0.999, 0.999), atol=1e-4, rtol=0)
    # the residual acts: a non-zero last layer moves the output
    last = [m for m in model.gen["T1_to_T2"].net if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias.fill_(0.5)
        moved = model.translate(t1).image
    assert float((moved - out).abs().mean()) > 0.1
    # saved and loaded both ways, the base goes with the weights; the other direction reads its own rows
    path = save_checkpoint(model, tmp_path / "cg.safetensors", normalisation=NORM)
    reverse = load_translator(path, direction="T2->T1")
    forward = load_translator(path)
    with torch.no_grad():
        torch.testing.assert_close(forward.translate(t1).image, moved)
        torch.testing.assert_close(reverse.translate(t2).image, fitted(t2, "T2").clamp(-0.999, 0.999),
                                   atol=1e-4, rtol=0)


def test_the_paper_generator_has_no_base_and_bad_options_are_named():
    paper = create_translator("cyclegan", preset="cpu", width=4, n_blocks=2)
    assert paper.base is None and "base" not in paper.config
    assert not any(k.startswith("base.") for k in paper.state_dict())
    with pytest.raises(UnknownChoiceError):
        create_translator("cyclegan", preset="cpu", base="lookup")
    with pytest.raises(ValueError, match="base_order"):
        create_translator("cyclegan", preset="cpu", source="T1", target="FLAIR", base="histogram")
    assert _cyclegan(source="T1", target="FLAIR", base_order="same").config["base_order"] == "same"
    with pytest.raises(UnknownChoiceError):
        _cyclegan(base_order="up")

