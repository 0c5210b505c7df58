"""TSM probability map (EDTS-Trans Eq. 5-8): maths against hand computation, behaviour on images, backbones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_medtrans.core import tsm as T
from napari_medtrans.core.errors import CheckpointError, UnknownChoiceError, WeightsError


# -- hand computation ---------------------------------------------------------------------------------
def _hand_local_stats(f: np.ndarray, window: int) -> np.ndarray:
    """Eq. 6 with a truncated, renormalised Gaussian window, by explicit loops: gamma [h, w]."""
    c, h, w = f.shape
    r = window // 2
    sigma = window / 4.0
    g = {a: math.exp(-0.5 * (a / sigma) ** 2) for a in range(-r, r + 1)}
    gamma = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            ratios = []
            for ch in range(c):
                sw = s1 = s2 = 0.0
                for a in range(-r, r + 1):
                    for b in range(-r, r + 1):
                        if 0 <= i + a < h and 0 <= j + b < w:
                            wt = g[a] * g[b]
                            v = f[ch, i + a, j + b]
                            sw += wt
                            s1 += wt * v
                            s2 += wt * v * v
                mu = s1 / sw
                var = max(s2 / sw - mu * mu, 0.0)
                ratios.append(var / (mu + 1e-12))
            gamma[i, j] = np.mean(ratios)
    return gamma


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _eq8(p0, t):
    return np.where(p0 < t, p0, np.exp(1 - p0) / (1 + np.exp(1 - p0)))


@pytest.fixture
def tiny_features():
    rng = np.random.default_rng(3)
    f0 = rng.random((2, 4, 4)) * np.array([1.0, 3.0])[:, None, None]
    f0[0, :2, :2] = 0.0  # a dead patch: mu = var = 0 there, ratio 0 (eps keeps it finite)
    f1 = rng.random((2, 2, 2)) * 2.0
    return f0, f1


def test_local_window_maths_matches_hand_computation(tiny_features):
    f0, f1 = tiny_features
    t = 0.3  # with two layers p_0 >= 1/4, so a higher t exercises both branches of Eq. 8
    got = T.tsm_from_features([torch.from_numpy(f0)[None], torch.from_numpy(f1)[None]], (4, 4),
                              threshold=t, window=3)[0, 0].numpy()
    ps0 = _sigmoid(_hand_local_stats(f0, 3))
    ps1 = _sigmoid(_hand_local_stats(f1, 3))
    # Bilinear 2 -> 4 (half-pixel centres, edges clamped), written out by hand.
    up = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    p0 = ps0 * (up @ ps1 @ up.T)  # Eq. 7
    want = _eq8(p0, t)
    assert (p0 < t).any() and (p0 >= t).any()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_global_statistics_are_eq6_as_printed(tiny_features):
    f0, f1 = tiny_features
    got = T.tsm_from_features([torch.from_numpy(f0)[None], torch.from_numpy(f1)[None]], (4, 4),
                              threshold=0.05, window=None)[0, 0].numpy()
    gam = [np.mean(f.var(axis=(1, 2)) / (f.mean(axis=(1, 2)) + 1e-12)) for f in (f0, f1)]
    p0 = _sigmoid(gam[0]) * _sigmoid(gam[1])
    np.testing.assert_allclose(got, np.full((4, 4), _eq8(np.array(p0), 0.05)), rtol=1e-10)


def test_eq8_threshold_branches():
    p0 = torch.tensor([0.0, 0.01, 0.0499, 0.05, 0.3, 1.0], dtype=torch.float64)
    got = T.refine_threshold(p0, 0.05).numpy()
    np.testing.assert_allclose(got, _eq8(p0.numpy(), 0.05), rtol=1e-12)
    assert got[2] == pytest.approx(0.0499) and got[3] == pytest.approx(math.exp(0.95) / (1 + math.exp(0.95)))


def test_flat_features_sit_at_the_floor_with_five_layers_not_four():
    """Why the default has 5 layers: flat features give p_0 = 2**-K, below t = 0.05 only for K >= 5."""
    def flat(k):
        return [torch.full((1, 3, 16 >> i, 16 >> i), 2.5) for i in range(k)]

    five = T.tsm_from_features(flat(5), (16, 16))
    np.testing.assert_allclose(five.numpy(), 1 / 32, rtol=1e-6)
    four = T.tsm_from_features(flat(4), (16, 16))
    np.testing.assert_allclose(four.numpy(), _sigmoid(1 - 1 / 16), rtol=1e-6)


def test_output_size_and_range():
    feats = [torch.rand(2, 4, 8, 8) * 5, torch.rand(2, 4, 4, 4) * 5]
    m = T.tsm_from_features(feats, (20, 12))
    assert m.shape == (2, 1, 20, 12)
    assert float(m.min()) >= 0 and float(m.max()) <= 1


def test_bad_features_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        T.tsm_from_features([], (4, 4))
    with pytest.raises(ValueError, match="batch size"):
        T.tsm_from_features([torch.rand(1, 2, 4, 4), torch.rand(2, 2, 2, 2)], (4, 4))
    with pytest.raises(ValueError, match="odd"):
        T.tsm_from_features([torch.rand(1, 2, 4, 4)], (4, 4), window=4)


# -- behaviour on images (analytic backbone) ----------------------------------------------------------
def test_map_is_high_on_structure_and_low_on_flat_regions():
    from scipy import ndimage

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    blobs = torch.zeros(128, 128, dtype=torch.bool)
    for _ in range(40):  # discs of radius 1-6 px in the right third: fine structure at several scales
        cy, cx = torch.randint(0, 128, (2,), generator=g).tolist()
        cx = 84 + cx % 44
        rad = int(torch.randint(1, 7, (1,), generator=g))
        blobs |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2
    # discs 0.7 of the range above their surroundings (in [0, 1]; CSF against tissue on T2 is about as much)
    img = torch.where(blobs, 0.6, -0.8)[None, None]
    res = T.compute_tsm(img, backbone="analytic")
    m = res.map[0, 0].numpy()
    assert res.backbone == "analytic"
    assert m[:, :32].max() < 0.05  # flat and far from the structures: the five-layer floor 1/32
    rims = ndimage.morphological_gradient(blobs.numpy().astype(np.uint8), size=3) > 0
    assert (m[rims] > 0.5).mean() > 0.9
    cand = res.candidate[0, 0].numpy()
    assert cand[rims].mean() > 2 * cand[:, :32].mean()
    # a weak contrast (0.35 of the range) is structure only for the old, saturating gain (issue 20)
    weak = torch.where(blobs, 0.3, -0.4)[None, None]
    assert (T.compute_tsm(weak, backbone="analytic").map[0, 0].numpy()[rims] > 0.5).mean() < 0.5
    old = T.compute_tsm(weak, backbone="analytic", gain=T.LEGACY_ANALYTIC_GAIN).map[0, 0].numpy()
    assert (old[rims] > 0.5).mean() > 0.9


def test_map_marks_phantom_edges_and_not_air():
    from scipy import ndimage

    from napari_medtrans.phantom import make_subject

    s = make_subject(1, shape=(128, 128, 12), snr=30.0, contrasts=("T2",))
    k = 6
    t2 = s.images["T2"].data[:, :, k]
    lab = s.labels.data[:, :, k]
    lo, hi = np.percentile(t2, [0.5, 99.5])
    x = torch.from_numpy(np.clip((t2 - lo) / (hi - lo) * 2 - 1, -1, 1)).float()[None, None]
    m = T.compute_tsm(x, backbone="analytic").map[0, 0].numpy()
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t2 > 0.05 * hi, iterations=3))
    air = ndimage.binary_erosion(~head, iterations=6)
    lab = lab.astype(int)
    edges = (ndimage.morphological_gradient(lab, size=3) > 0) & (lab > 0)
    # the boundaries of CSF, the strongest contrast on T2
    csf = ndimage.maximum_filter(lab == 1, 3) & ndimage.maximum_filter((lab == 2) | (lab == 3), 3) & (lab > 0)
    assert air.sum() > 200 and edges.sum() > 200 and csf.sum() > 200
    assert (m[air] < 0.05).mean() > 0.9
    assert (m[csf] > 0.5).mean() > 0.9
    assert m[csf].mean() > 10 * m[air].mean() and m[edges].mean() > 5 * m[air].mean()


def test_compute_tsm_input_checks():
    with pytest.raises(UnknownChoiceError, match="analytic"):
        T.compute_tsm(torch.zeros(1, 1, 8, 8), backbone="vgg19")
    with pytest.raises(ValueError, match="grey batch"):
        T.compute_tsm(torch.zeros(1, 3, 8, 8), backbone="analytic")
    with pytest.raises(ValueError, match="NaN"):
        T.compute_tsm(torch.full((1, 1, 8, 8), float("nan")), backbone="analytic")
    with pytest.raises(ValueError, match="9"):
        T.compute_tsm(torch.zeros(1, 1, 32, 32), backbone="analytic", layers=(4, 8, 16, 23))
    with pytest.raises(ValueError, match="increasing"):
        T.compute_tsm(torch.zeros(1, 1, 32, 32), backbone="analytic", layers=(9, 4))
    # 2D and 3D inputs are accepted as one image / a batch
    assert T.compute_tsm(torch.zeros(16, 16), backbone="analytic").map.shape == (1, 1, 16, 16)
    assert T.compute_tsm(torch.zeros(2, 16, 16), backbone="analytic").map.shape == (2, 1, 16, 16)


# -- VGG16 backbone (random torchvision weights saved to a file; nothing downloaded) ----------------------
@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    from torchvision.models import vgg16

    torch.manual_seed(0)
    net = vgg16(weights=None)
    state = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}  # torchvision layout
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(state, path)
    return path, net.features.eval()


def test_vgg_backbone_matches_torchvision_slices(vgg_file):
    path, features = vgg_file
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    res = T.compute_tsm(x, backbone="vgg16-imagenet", weights_path=path)
    assert res.backbone == "vgg16-imagenet" and "VGG16" in res.label
    assert res.map.shape == (2, 1, 32, 32)
    # By hand: grey -> 3 channels, ImageNet normalisation, torchvision features[:i] for i in 4, 9, 16, 23, 30.
    z = ((x + 1) / 2).repeat(1, 3, 1, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    z = (z - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        feats = [features[:i](z) for i in T.DEFAULT_LAYERS]
    assert all(float(f.min()) >= 0 for f in feats)
    want = T.tsm_from_features(feats, (32, 32))
    torch.testing.assert_close(res.map, want, rtol=1e-4, atol=1e-5)


def test_vgg_from_the_weights_store(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with pytest.raises(WeightsError, match="medtrans weights import"):
        T.compute_tsm(x, backbone="vgg16-imagenet")
    # A file placed in the store under torchvision's name is found without a path.
    store = tmp_path / "home" / "weights"
    store.mkdir(parents=True)
    (store / "vgg16-397923af.pth").write_bytes(vgg_file[0].read_bytes())
    from_store = T.compute_tsm(x, backbone="vgg16-imagenet").map
    direct = T.compute_tsm(x, backbone="vgg16-imagenet", weights_path=vgg_file[0]).map
    torch.testing.assert_close(from_store, direct)


def test_vgg_wrong_file_is_reported(tmp_path):
    bad = tmp_path / "not-vgg.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, bad)
    with pytest.raises(CheckpointError, match="not-vgg.pth"):
        T.compute_tsm(torch.zeros(1, 1, 32, 32), backbone="vgg16-imagenet", weights_path=bad)
    with pytest.raises(WeightsError, match="no such file"):
        T.compute_tsm(torch.zeros(1, 1, 32, 32), backbone="vgg16-imagenet", weights_path=tmp_path / "absent.pth")


# -- calibration of the analytic backbone on the benchmark (issue 20) ---------------------------------
def _benchmark_slice(seed):
    """The axial slice through the tumour of a benchmark subject: the benchmark's 120 x 144 grid at 1.5 mm
    in-plane and 2 mm slices, only 22 slices (a 44 mm slab through the centre, where the tumours sit)."""
    from scipy import ndimage

    from napari_medtrans.core.preprocess import normalise, robust_range
    from napari_medtrans.phantom import make_subject

    s = make_subject(seed, tumour=True, shape=(120, 144, 22), spacing=(1.5, 1.5, 2.0), contrasts=("T2",))
    lab = s.labels.data.astype(int)
    tumour = np.isin(lab, (4, 5, 6))
    assert tumour.any()
    k = int(np.argmax(tumour.sum(axis=(0, 1))))
    t2 = s.images["T2"].data
    x = normalise(t2, robust_range(t2))[:, :, k]  # as the engine normalises a volume
    lab, brain, tumour = lab[:, :, k], s.brain_mask.data[:, :, k] > 0, tumour[:, :, k]
    flat_wm = ndimage.binary_erosion(lab == 3, iterations=2)
    edges = (ndimage.maximum_filter(lab, 3) != ndimage.minimum_filter(lab, 3)) & brain
    return torch.from_numpy(np.ascontiguousarray(x)).float()[None, None], brain, tumour, flat_wm, edges


@pytest.mark.parametrize("seed", [3, 4])
def test_analytic_tsm_discriminates_on_a_benchmark_slice(seed):
    x, brain, tumour, flat_wm, edges = _benchmark_slice(seed)
    assert tumour.sum() > 50 and flat_wm.sum() > 200 and edges.sum() > 200
    res = T.compute_tsm(x, backbone="analytic")
    m = res.map[0, 0].numpy()
    share = float((m[brain] > 0.5).mean())
    assert 0.2 <= share <= 0.6, share
    assert m[tumour].mean() > 2 * m[flat_wm].mean(), (m[tumour].mean(), m[flat_wm].mean())
    assert m[edges].mean() > 2 * m[flat_wm].mean(), (m[edges].mean(), m[flat_wm].mean())
    assert res.gain == T.ANALYTIC_GAIN
    # the calibration before issue 20 saturates: nearly every brain voxel above 0.5, flat white matter included
    old = T.compute_tsm(x, backbone="analytic", gain=T.LEGACY_ANALYTIC_GAIN).map[0, 0].numpy()
    assert (old[brain] > 0.5).mean() > 0.9 and old[flat_wm].mean() > 0.6


def test_gain_is_for_the_analytic_backbone_only():
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="gain"):
        T.compute_tsm(x, backbone="analytic", gain=0.0)
    with pytest.raises(ValueError, match="gain"):
        T.compute_tsm(x, backbone="vgg16-imagenet", gain=3.0)
