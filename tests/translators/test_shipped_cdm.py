"""The shipped CDM (resources/models/cdm-t1t2-t1cflair.md) uses its condition: on a phantom subject it never saw,
guiding the C-UNet with a distant slice's sampled target distribution instead of this slice's makes its FLAIR worse
(measured on whole slices: 27 % more squared error with the file trained with ``condition_init=zero``, 24 % with the
one before),
and the MDN's sample serves about as well as the real targets' own ``FE(Y)`` (issue 20: a mechanism counts when
it changes the output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medtrans.core.preprocess import fit_to_model, normalise, robust_range
from napari_medtrans.translators import load_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models" / "cdm-t1t2-t1cflair.safetensors"


def _slices(subject, names, ks, model, ranges=None):
    """Slices ``ks`` of contrasts ``names`` as the model takes them, ``[len(ks), C, H, W]`` in [-1, 1]: sources
    from their own range, targets (``ranges``) from the checkpoint's."""
    x = np.stack([normalise(subject.images[m].data, ranges[m] if ranges else robust_range(subject.images[m].data))
                  [:, :, ks].transpose(2, 0, 1) for m in names], axis=1)
    return fit_to_model(torch.from_numpy(np.ascontiguousarray(x)), model.spec)[0]


def test_the_shipped_cdm_is_guided_by_its_sampled_condition():
    from napari_medtrans.core.preprocess import intensity_spec_from
    from napari_medtrans.phantom import make_subject

    model = load_translator(SHIPPED).eval()
    s = make_subject(93, tumour=True, contrasts=("T1", "T2", "T1c", "FLAIR"))
    lab = np.rint(s.labels.data)
    centre = int(np.argmax(((lab >= 4) & (lab <= 6)).sum(axis=(0, 1))))
    ks = list(range(max(2, centre - 28), min(lab.shape[2] - 2, centre + 28), 7))  # 8 slices 14 mm apart
    norm = intensity_spec_from(model.normalisation).outputs
    x = _slices(s, ["T1", "T2"], ks, model)
    y = _slices(s, ["T1c", "FLAIR"], ks, model, ranges=norm)
    with torch.no_grad():
        y0 = model.sample_distribution(x, steps=30, generator=torch.Generator().manual_seed(0))
        own = model.synthesize(x, y0).clamp(-1, 1)
        # each slice guided by the sample of a slice 4 places (56 mm) away
        other = model.synthesize(x, y0.roll(len(ks) // 2, 0)).clamp(-1, 1)
        oracle = model.synthesize(x, model.represent(y)).clamp(-1, 1)
    flair = 1
    mse = lambda a: float(((a[:, flair] - y[:, flair]) ** 2).mean())  # noqa: E731
    assert float((own - other).abs().mean()) > 0.008  # the condition moves the image
    assert mse(other) > 1.08 * mse(own)  # and the slice's own sample is the better guide
    assert mse(own) < 1.05 * mse(oracle)  # the MDN's sample stands in for the real targets' FE(Y)
