"""Metrics agree with scikit-image (PSNR, SSIM) and with hand counts (Dice, IoU, volume similarity)."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_medtrans.core import metrics
from napari_medtrans.core.errors import GeometryMismatchError
from napari_medtrans.core.volume import SourceInfo, Volume

SK = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _pair(shape, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "random":
        ref = rng.random(shape) * 800.0
        x = ref + rng.normal(0, 60.0, shape)
    else:  # smooth images: local statistics vary slowly, the regime of real MR
        ref = gaussian_filter(rng.random(shape), 3) * 1000.0
        x = gaussian_filter(ref + rng.normal(0, 40.0, shape), 1.0) * 0.9 + 15.0
    return x, ref


@pytest.mark.parametrize("shape", [(48, 40), (24, 20, 18)])
@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_psnr_and_ssim_match_skimage(shape, kind):
    x, ref = _pair(shape, kind)
    r = float(ref.max() - ref.min())
    assert metrics.psnr(x, ref, data_range=r) == pytest.approx(
        peak_signal_noise_ratio(ref, x, data_range=r), abs=1e-4
    )
    want = structural_similarity(ref, x, data_range=r, **SK)
    got = metrics.ssim(x, ref, data_range=r)
    assert isinstance(got, float)
    assert got == pytest.approx(want, abs=1e-4)
    assert 0.0 < got < 1.0  # not a trivial value: the test would notice a broken formula


@pytest.mark.parametrize("shape", [(30, 33), (14, 16, 13)])
def test_ssim_map_matches_skimage_full_map_including_borders(shape):
    x, ref = _pair(shape, "smooth", seed=3)
    r = 1000.0
    _, full = structural_similarity(ref, x, data_range=r, full=True, **SK)
    got = metrics.ssim_map(x, ref, data_range=r)
    assert isinstance(got, np.ndarray) and got.shape == shape
    np.testing.assert_allclose(got, full, atol=1e-6)


def test_float32_inputs_agree_with_skimage():
    x, ref = _pair((40, 40), "smooth", seed=5)
    x, ref = x.astype(np.float32), ref.astype(np.float32)
    want = structural_similarity(ref, x, data_range=1000.0, **SK)
    assert metrics.ssim(x, ref, data_range=1000.0) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("axis", [0, 2])
def test_ssim_per_slice_is_mean_of_2d_ssim(axis):
    x, ref = _pair((16, 15, 14), "smooth", seed=1)
    r = 1000.0
    want = np.mean(
        [structural_similarity(np.take(ref, k, axis), np.take(x, k, axis), data_range=r, **SK) for k in range(x.shape[axis])]
    )
    assert metrics.ssim(x, ref, data_range=r, spatial_dims=2, axis=axis) == pytest.approx(want, abs=1e-6)
    # and it is not the 3D value: the mode matters
    assert metrics.ssim(x, ref, data_range=r) != pytest.approx(want, abs=1e-4)


def test_masked_ssim_averages_the_map_inside_the_mask_without_cropping():
    x, ref = _pair((32, 32), "smooth", seed=2)
    r = 1000.0
    _, full = structural_similarity(ref, x, data_range=r, full=True, **SK)
    mask = np.zeros((32, 32), bool)
    mask[2:20, 5:30] = True
    assert metrics.ssim(x, ref, data_range=r, mask=mask) == pytest.approx(full[mask].mean(), abs=1e-6)
    everything = np.ones((32, 32), bool)
    assert metrics.ssim(x, ref, data_range=r, mask=everything) == pytest.approx(full.mean(), abs=1e-6)


def test_ssim_borders_match_scipy_reflect_even_when_the_window_exceeds_the_image():
    # A 4x5 image is narrower than the 11-tap window: the extension must repeat the reflection as scipy does.
    rng = np.random.default_rng(7)
    ref, x = rng.random((4, 5)), rng.random((4, 5))
    f = lambda a: gaussian_filter(a, 1.5, mode="reflect", truncate=3.5)  # noqa: E731
    ux, uy = f(x), f(ref)
    vx, vy, vxy = f(x * x) - ux * ux, f(ref * ref) - uy * uy, f(x * ref) - ux * uy
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    want = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    np.testing.assert_allclose(metrics.ssim_map(x, ref, data_range=1.0), want, atol=1e-10)
    # Without a mask, the cropped mean is undefined for such a small image: refused like skimage does.
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        metrics.ssim(x, ref, data_range=1.0)
    assert metrics.ssim(x, ref, data_range=1.0, mask=np.ones((4, 5))) == pytest.approx(want.mean())


def test_identical_images_give_perfect_scores():
    x, _ = _pair((20, 20), "smooth")
    assert metrics.psnr(x, x, data_range=1.0) == math.inf
    assert metrics.ssim(x, x, data_range=1000.0) == pytest.approx(1.0)
    assert metrics.mae(x, x) == 0.0


def test_psnr_and_mae_inside_a_mask_by_hand():
    ref = np.zeros((6, 6))
    x = np.zeros((6, 6))
    x[0, 0] = 10.0  # outside the mask: must not count
    x[3, 3] = 2.0
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True  # 4 voxels, one error of 2 -> MSE 1, MAE 0.5
    assert metrics.psnr(x, ref, data_range=10.0, mask=mask) == pytest.approx(20.0)
    assert metrics.mae(x, ref, mask=mask) == pytest.approx(0.5)
    assert metrics.mae(x, ref, mask=mask, data_range=10.0) == pytest.approx(0.05)
    assert metrics.mae(x, ref) == pytest.approx(12.0 / 36)


def test_torch_inputs_give_floats_and_tensor_maps():
    x, ref = _pair((20, 22), "random")
    xt, rt = torch.from_numpy(x).float(), torch.from_numpy(ref).float()
    v = metrics.ssim(xt, rt, data_range=800.0)
    assert isinstance(v, float)
    assert v == pytest.approx(structural_similarity(ref, x, data_range=800.0, **SK), abs=1e-4)
    assert isinstance(metrics.ssim_map(xt, rt, data_range=800.0), torch.Tensor)
    assert isinstance(metrics.psnr(xt, rt, data_range=800.0), float)


def test_bad_arguments_are_named():
    a = np.zeros((12, 12))
    with pytest.raises(TypeError, match="data_range"):
        metrics.psnr(a, a, data_range=None)
    with pytest.raises(ValueError, match="data_range"):
        metrics.ssim(a, a, data_range=0)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(a, np.zeros((12, 13)), data_range=1.0)
    with pytest.raises(ValueError, match="mask"):
        metrics.psnr(a, a, data_range=1.0, mask=np.ones((3, 3)))
    with pytest.raises(ValueError, match="empty"):
        metrics.psnr(a, a + 1, data_range=1.0, mask=np.zeros((12, 12)))
    with pytest.raises(ValueError, match="2D slices or 3D"):
        metrics.psnr(np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), data_range=1.0)
    with pytest.raises(ValueError, match="win_size"):
        metrics.ssim(a, a, data_range=1.0, win_size=4)
    with pytest.raises(ValueError, match="spatial_dims"):
        metrics.ssim(a, a, data_range=1.0, spatial_dims=3)


# -- overlap ----------------------------------------------------------------------------------------
def _masks():
    a = np.zeros((5, 5, 2), np.uint8)
    b = np.zeros((5, 5, 2), np.uint8)
    a[0, :5, 0] = 1
    a[1, :5, 0] = 1  # |A| = 10
    b[1, :4, 0] = 1  # overlap 4
    b[4, :2, 1] = 1  # |B| = 6
    return a, b


def test_dice_iou_volume_similarity_by_hand():
    a, b = _masks()
    assert metrics.dice(a, b) == pytest.approx(2 * 4 / 16)
    assert metrics.iou(a, b) == pytest.approx(4 / 12)
    assert metrics.volume_similarity(a, b) == pytest.approx(1 - 4 / 16)
    assert metrics.dice(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(0.5)


def test_multi_label_overlap():
    a = np.array([[1, 1, 2, 2, 0, 3]])
    b = np.array([[1, 0, 2, 2, 2, 0]])
    per = metrics.dice(a, b, labels=[1, 2])
    assert per == {1: pytest.approx(2 / 3), 2: pytest.approx(4 / 5)}
    assert metrics.dice(a, b, labels=2) == pytest.approx(4 / 5)
    allv = metrics.iou(a, b, labels="all")
    assert set(allv) == {1, 2, 3}
    assert allv[1] == pytest.approx(1 / 2) and allv[2] == pytest.approx(2 / 3) and allv[3] == 0.0
    assert metrics.volume_similarity(a, b, labels=[2])[2] == pytest.approx(1 - 1 / 5)
    # binary mode merges the labels: any non-zero voxel
    assert metrics.dice(a, b) == pytest.approx(2 * 3 / (5 + 4))


def test_empty_masks():
    z = np.zeros((4, 4))
    one = np.zeros((4, 4))
    one[1, 1] = 1
    for f in (metrics.dice, metrics.iou, metrics.volume_similarity):
        assert f(z, z) == 1.0
        assert f(z, one) == 0.0
    assert metrics.dice(one, one, labels=[5]) == {5: 1.0}  # absent from both: agreement


# -- per slice and per volume -----------------------------------------------------------------------
def test_slice_metrics_match_per_slice_skimage_and_mark_empty_slices():
    x, ref = _pair((14, 16, 5), "smooth", seed=4)
    x[:, :, 3] = ref[:, :, 3]  # one perfect slice
    r = 1000.0
    out = metrics.slice_metrics(x, ref, 2, r)
    assert set(out) >= {"psnr", "ssim", "mae"} and all(v.shape == (5,) for v in out.values())
    for k in range(5):
        if k != 3:
            assert out["psnr"][k] == pytest.approx(peak_signal_noise_ratio(ref[..., k], x[..., k], data_range=r), abs=1e-4)
        assert out["ssim"][k] == pytest.approx(structural_similarity(ref[..., k], x[..., k], data_range=r, **SK), abs=1e-6)
        assert out["mae"][k] == pytest.approx(np.abs(x[..., k] - ref[..., k]).mean() / r)
    assert out["psnr"][3] == np.inf and out["ssim"][3] == pytest.approx(1.0)

    mask = np.ones(x.shape, bool)
    mask[:, :, 1] = False
    masked = metrics.slice_metrics(x, ref, 2, r, mask=mask)
    assert np.isnan(masked["ssim"][1]) and np.isnan(masked["psnr"][1]) and np.isnan(masked["mae"][1])
    full0 = metrics.ssim_map(x[..., 0], ref[..., 0], data_range=r)
    assert masked["ssim"][0] == pytest.approx(full0.mean(), abs=1e-6)


def _vol(data, path, affine=None):
    return Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine, source=SourceInfo(path=path))


def test_evaluate_volumes_defaults_range_to_reference_inside_mask():
    x, ref = _pair((16, 16, 12), "smooth", seed=6)
    mask = np.zeros(ref.shape, bool)
    mask[3:13, 3:13, 2:10] = True
    res = metrics.evaluate_volumes(_vol(x, "/s.nii"), _vol(ref, "/r.nii"), mask=_vol(mask, "/m.nii"))
    r = float(ref[mask].max() - ref[mask].min())
    assert res["data_range"] == pytest.approx(r, rel=1e-6)  # Volume stores float32
    ref32, x32 = ref.astype(np.float32), x.astype(np.float32)
    assert res["psnr"] == pytest.approx(metrics.psnr(x32, ref32, data_range=r, mask=mask), abs=1e-4)
    assert res["ssim"] == pytest.approx(metrics.ssim(x32, ref32, data_range=r, mask=mask), abs=1e-6)
    assert res["mae"] == pytest.approx(np.abs(x32 - ref32)[mask].mean() / r, rel=1e-5)
    # an explicit range is used as given
    assert metrics.evaluate_volumes(x, ref, data_range=2000.0)["data_range"] == 2000.0


def test_evaluate_volumes_refuses_other_grids():
    x, ref = _pair((12, 12, 12), "smooth")
    shifted = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted[0, 3] = 5.0
    with pytest.raises(GeometryMismatchError, match=r"/r\.nii.*/s\.nii"):
        metrics.evaluate_volumes(_vol(x, "/s.nii", shifted), _vol(ref, "/r.nii"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_agrees_with_cpu():
    x, ref = _pair((20, 24, 18), "smooth")
    cpu = metrics.ssim(x, ref, data_range=1000.0)
    gpu = metrics.ssim(torch.from_numpy(x).cuda(), torch.from_numpy(ref).cuda(), data_range=1000.0)
    assert gpu == pytest.approx(cpu, abs=1e-6)
    assert metrics.psnr(x, ref, data_range=1000.0, device="cuda") == pytest.approx(
        metrics.psnr(x, ref, data_range=1000.0), abs=1e-6
    )
    sm = metrics.slice_metrics(x, ref, 2, 1000.0, device="cuda")
    assert np.allclose(sm["ssim"], metrics.slice_metrics(x, ref, 2, 1000.0)["ssim"], atol=1e-6)


def test_hd95_matches_brute_force_on_small_masks_anywhere_in_the_volume():
    """HD95 (BraTS definition: surface voxels, both directions, 95th percentile) against every pairwise distance,
    with anisotropic spacing, for masks far from each other, touching the array's edge, and one inside the other."""
    from scipy import ndimage
    from scipy.spatial.distance import cdist

    from napari_medtrans.core.metrics import hd95

    def brute(a, b, sp):
        def surf(m):
            return m & ~ndimage.binary_erosion(m, ndimage.generate_binary_structure(3, 1), border_value=0)
        pa, pb = np.argwhere(surf(a)) * sp, np.argwhere(surf(b)) * sp
        d = cdist(pa, pb)
        return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))

    rng = np.random.default_rng(0)
    sp = np.array([1.5, 1.0, 2.0])
    shape = (30, 26, 20)
    cases = []
    a = np.zeros(shape, bool); a[3:9, 4:10, 2:6] = True
    b = np.zeros(shape, bool); b[20:28, 15:24, 12:19] = True
    cases.append((a, b))
    e = np.zeros(shape, bool); e[0:5, 0:7, 0:4] = True  # touches three faces of the array
    cases.append((e, a))
    blob = ndimage.binary_dilation(rng.random(shape) > 0.995, iterations=2)
    cases.append((blob, ndimage.binary_dilation(blob)))
    for x, y in cases:
        assert hd95(x, y, spacing=sp) == pytest.approx(brute(x, y, sp), rel=1e-9)
