"""Preprocessing: intensity ranges, slicing along the acquisition axis, fitting slices to a model, and inverses."""

import numpy as np
import pytest
import torch

from napari_medtrans.core.errors import UnknownChoiceError
from napari_medtrans.core.preprocess import (
    FitInfo,
    IntensityRange,
    IntensitySpec,
    acquisition_axis,
    denormalise,
    fit_to_model,
    from_slices,
    intensity_spec_from,
    normalise,
    robust_range,
    to_slices,
    unfit,
)
from napari_medtrans.core.volume import SourceInfo, Volume
from napari_medtrans.translators.base import TranslatorSpec


# -- intensity --------------------------------------------------------------------------------------
def test_normalise_round_trip_inside_the_range_and_background_at_minus_one():
    rng = np.random.default_rng(0)
    data = np.zeros((20, 20, 8), np.float32)
    data[4:16, 4:16] = rng.uniform(100, 900, (12, 12, 8))
    r = robust_range(data)
    assert r.lo == 0.0 and 850 < r.hi <= 900
    n = normalise(data, r)
    assert n.min() == -1.0 and n.max() == 1.0
    assert np.all(n[data == 0] == -1.0)
    inside = data <= r.hi
    np.testing.assert_allclose(denormalise(n, r)[inside], data[inside], rtol=1e-5, atol=1e-3)


def test_intensity_spec_from_reads_a_checkpoint_record():
    spec = intensity_spec_from(
        {"scheme": "percentile", "lower_pct": 1, "upper_pct": 99, "outputs": {"t2w": {"lo": 0, "hi": 812.5}}}
    )
    assert (spec.lower_pct, spec.upper_pct) == (1.0, 99.0)
    fallback = IntensityRange(0.0, 10.0)
    assert spec.output_range("T2", fallback) == IntensityRange(0.0, 812.5, 1.0, 99.0)  # "t2w" is T2
    assert spec.output_range("FLAIR", fallback) is fallback
    assert intensity_spec_from(spec.to_dict()) == spec
    default = intensity_spec_from(None)
    assert default == IntensitySpec() and default.outputs == {}
    data = np.arange(1, 101, dtype=np.float32).reshape(10, 10, 1)
    assert spec.input_range(data).hi == pytest.approx(np.percentile(data, 99))


@pytest.mark.parametrize(
    "record, error, match",
    [
        ({"scheme": "zscore"}, UnknownChoiceError, "percentile"),
        ({"lower_pct": 50, "upper_pct": 10}, ValueError, "lower_pct"),
        ({"outputs": {"T2": {"lo": 5, "hi": 5}}}, ValueError, "T2"),
        ({"outputs": {"T2": {"low": 0}}}, ValueError, "T2"),
        ("percentile", TypeError, "normalisation"),
    ],
)
def test_intensity_spec_from_rejects_bad_records(record, error, match):
    with pytest.raises(error, match=match):
        intensity_spec_from(record)


# -- acquisition axis and slicing -------------------------------------------------------------------
def _vol(spacing, kind="nifti", rotate=False):
    a = np.diag(list(spacing) + [1.0])
    if rotate:  # an oblique affine: voxel sizes come out of a norm, with rounding in the last digits
        c, s = np.cos(0.3), np.sin(0.3)
        a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ a[:3, :3]
    return Volume(np.zeros((4, 4, 4)), a, source=SourceInfo(kind=kind, path="/x"))


@pytest.mark.parametrize(
    "spacing, axis",
    [((1, 1, 3), 2), ((3, 1, 1), 0), ((1, 4, 1), 1), ((1, 2, 2), 2), ((2, 2, 1), 1), ((1, 1, 1), 2)],
)
def test_acquisition_axis_is_the_coarsest_axis_with_ties_to_k(spacing, axis):
    assert acquisition_axis(_vol(spacing)) == axis
    assert acquisition_axis(_vol(spacing, rotate=True)) == axis


def test_acquisition_axis_of_dicom_is_k():
    # A DICOM series is stacked along k whatever the spacings say (e.g. thin slices, coarse in-plane).
    assert acquisition_axis(_vol((3, 1, 0.5), kind="dicom")) == 2


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_to_slices_and_back_is_exact_and_a_view(axis, kind):
    data = np.random.default_rng(1).random((5, 6, 7)).astype(np.float32)
    arr = torch.from_numpy(data) if kind == "torch" else data
    s = to_slices(arr, axis)
    n = data.shape[axis]
    assert tuple(s.shape) == (n,) + tuple(d for i, d in enumerate(data.shape) if i != axis % 3)
    np.testing.assert_array_equal(np.asarray(s[2]), np.take(data, 2, axis=axis))
    back = from_slices(s, axis)
    np.testing.assert_array_equal(np.asarray(back), data)
    s[0] += 1.0  # a view: writing a slice writes the volume
    assert np.take(np.asarray(arr), 0, axis=axis).min() >= 1.0


def test_slicing_rejects_bad_input():
    with pytest.raises(ValueError, match="3D"):
        to_slices(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="axis"):
        to_slices(np.zeros((4, 4, 4)), 3)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        from_slices(np.zeros((4, 4)), 0)


# -- fitting to a model -----------------------------------------------------------------------------
_SIZES = [(int(h), int(w)) for h, w in np.random.default_rng(42).integers(1, 90, size=(25, 2))] + [(37, 29), (32, 32)]


@pytest.mark.parametrize("mult", [1, 8, 16])
def test_pad_to_multiple_then_unfit_is_identity(mult):
    spec = TranslatorSpec("t", size_multiple=mult)
    rng = np.random.default_rng(mult)
    for h, w in _SIZES:
        x = torch.from_numpy(rng.uniform(-1, 1, (2, 3, h, w)).astype(np.float32))
        y, info = fit_to_model(x, spec)
        fh, fw = y.shape[-2:]
        assert fh % mult == 0 and fw % mult == 0 and 0 <= fh - h < mult and 0 <= fw - w < mult
        top, bottom, left, right = info.padding
        assert abs(top - bottom) <= 1 and abs(left - right) <= 1  # centred
        assert torch.equal(y[..., top : top + h, left : left + w], x)
        if fh > h:
            assert torch.all(y[..., :top, :] == -1) and torch.all(y[..., fh - bottom :, :] == -1)
        assert not info.was_resized
        assert torch.equal(unfit(y, info), x)


def test_pad_to_fixed_size_and_back_numpy():
    spec = TranslatorSpec("t", image_size=(64, 48), size_multiple=16)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 1, 37, 29)).astype(np.float32)
    y, info = fit_to_model(x, spec)
    assert isinstance(y, np.ndarray) and y.shape == (4, 1, 64, 48)
    assert info == FitInfo(original=(37, 29), resized=(37, 29), padding=(13, 14, 9, 10), fitted=(64, 48))
    np.testing.assert_array_equal(unfit(y, info), x)


def test_already_fitting_batch_is_passed_through():
    x = torch.zeros(1, 1, 32, 48)
    y, info = fit_to_model(x, TranslatorSpec("t", size_multiple=16))
    assert y is x and info.padding == (0, 0, 0, 0)


def test_larger_slices_are_shrunk_keeping_aspect_and_restored_in_shape():
    spec = TranslatorSpec("t", image_size=(32, 32))
    yy, xx = np.mgrid[0:80, 0:60].astype(np.float32)
    smooth = np.sin(yy / 12.0) * np.cos(xx / 15.0)
    x = torch.from_numpy(np.stack([smooth, np.full_like(smooth, 0.25)])[:, None])
    y, info = fit_to_model(x, spec)
    assert tuple(y.shape) == (2, 1, 32, 32)
    assert info.was_resized and info.resized == (32, 24)  # 80x60 scaled by 0.4
    assert info.padding == (0, 0, 4, 4)
    back = unfit(y, info)
    assert tuple(back.shape) == (2, 1, 80, 60)
    assert torch.allclose(back[1], torch.tensor(0.25))  # a constant survives shrink + enlarge exactly
    assert float((back[0] - x[0]).abs().mean()) < 0.03  # a smooth image comes back close


def test_unfit_nearest_keeps_labels():
    spec = TranslatorSpec("t", image_size=(16, 16))
    labels = torch.zeros(1, 1, 40, 40, dtype=torch.int64)
    labels[..., 10:30, 5:20] = 3
    y, info = fit_to_model(labels.float(), spec)
    back = unfit(y.round().long(), info, mode="nearest")
    assert back.dtype == torch.int64 and set(back.unique().tolist()) <= {0, 3}
    assert tuple(back.shape) == (1, 1, 40, 40)


def test_unfit_rejects_other_sizes_and_modes():
    y, info = fit_to_model(torch.zeros(1, 1, 10, 10), TranslatorSpec("t", size_multiple=8))
    with pytest.raises(ValueError, match="16"):
        unfit(torch.zeros(1, 1, 8, 8), info)
    with pytest.raises(UnknownChoiceError, match="bicubic"):
        unfit(y, info, mode="bicubic")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        fit_to_model(torch.zeros(10, 10), TranslatorSpec("t"))
