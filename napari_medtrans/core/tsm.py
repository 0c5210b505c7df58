"""Texture and Structure Measurement (TSM) of EDTS-Trans (Xiao et al., Eq. 5-8): a per-pixel probability map.

The map says where an image holds texture and structure (edges, folds, fine detail) as opposed to flat regions.
EDTS-Trans computes it on the regression network's output, conditions its diffusion refiner on it and fuses the
two outputs with it (Eq. 2-4); the workstation also shows it as a trust map.

Pipeline (equation numbers of the paper)
----------------------------------------
Eq. 5   Multi-scale non-negative feature maps ``F_k``, k = 0 (shallow) ... K-1 (deep), of the grey image
        replicated to three channels (VGG16 with ImageNet normalisation, or the analytic backbone below).
Eq. 6   Per channel ``c``: mean ``mu`` and variance ``sigma`` of ``F_k``; dispersion index
        ``gamma_k = mean_c sigma / (mu + eps)`` with ``eps = 1e-12``.
Eq. 7   ``ps_k = sigmoid(gamma_k)``; coarse to fine: ``p_{K-1} = ps_{K-1}``, ``p_k = ps_k * bilinear(p_{k+1})``.
Eq. 8   ``p = p_0`` where ``p_0 < t``, else ``e^(1-p_0) / (1 + e^(1-p_0))``, with ``t = 0.05``; then resized
        (bilinearly) to the input size.

Choices where the paper is open (documented here; each is a parameter)
--------------------------------------------------------------------
* **Localised statistics (Eq. 6).** As printed, Eq. 6 averages over the whole feature map and gives one number
  per layer, while Fig. 3 shows maps. Following the paper's references (DISTS / A-DISTS, which compute such
  statistics locally), ``mu`` and ``sigma`` are taken over a sliding **Gaussian window** of ``window`` taps
  (standard deviation ``window / 4``; default 3 taps) at each layer's own resolution, so the window covers a
  larger part of the image in deeper layers (at layer 30, 1/16 resolution, 3 taps reach 16 pixels either side).
  Larger windows let the coarse layers mark everything near the head as structure. The window is truncated at
  the borders and renormalised (no padding values enter the statistics), so it works on feature maps smaller
  than the window. The local variance is computed in two passes, ``sum_w (F - mu)^2``, not as
  ``E[F^2] - mu^2``: with ``eps = 1e-12`` the rounding error of the one-pass formula would turn constant (or
  dead, all-zero) feature regions into huge ratios. ``window=None`` gives Eq. 6 exactly as printed (global
  statistics, one value per layer and image).
* **Layer numbering (Eq. 5).** Layer ``i`` is the output of ``torchvision.models.vgg16().features[:i]``, the
  slicing LPIPS and DISTS use; 4, 9, 16, 23, 30 are the ends of VGG16's five stages (relu1_2 ... relu5_3).
  Eq. 5 prints 8 where Fig. 3 says 9: ``features[:8]`` ends on conv2_2 *before* its ReLU, whose negative
  responses make a dispersion index (a ratio for non-negative data) meaningless, so layers that do not end on
  a ReLU or max-pool are refused with an explanation.
* **Five layers by default.** Features after a ReLU are non-negative, so ``gamma_k >= 0`` and ``ps_k >= 1/2``:
  a flat region (``gamma = 0`` at every layer) gets ``p_0 = 2**-K``. With the four layers of Eq. 5,
  ``p_0 >= 1/16 > t = 0.05`` everywhere, the first branch of Eq. 8 never applies, and the second branch
  ``sigmoid(1 - p_0)`` is *largest on flat regions*. The paper's implementation details set the number of layers
  to 5; then flat regions sit at ``p_0 = 1/32 < t`` and stay there, while textured regions (``p_0 >= t``) jump to
  ``sigmoid(1 - p_0)`` in ``(0.5, 0.73]``: Eq. 8 becomes the discriminating step the text describes. The default
  is therefore ``layers = (4, 9, 16, 23, 30)`` (DEFAULT_LAYERS); ``PAPER_EQ5_LAYERS = (4, 9, 16, 23)`` is Eq. 5
  with Fig. 3's 9.
* **Analytic backbone** (``backbone="analytic"``, no weights, works offline). For each requested VGG layer it
  produces features at the resolution VGG16 has at that layer (the image, mapped to [0, 1], average-pooled by
  2 per max-pool before the layer): the responses of four oriented first-derivative filters (0, 45, 90 and 135
  degrees, 3x3 Sobel-type), half-wave rectified into positive and negative parts (8 non-negative channels,
  like ReLU features), times a ``gain``. Flat and linearly varying regions give ``gamma = 0``; edges and
  texture give ``gamma > 0``. var/mean scales with the feature amplitude, so ``gamma`` is proportional to the
  gain: the gain sets how strong a contrast must be to count as structure, i.e. which pixels cross ``t`` in
  Eq. 8. It is the backbone's one free parameter, and it is calibrated (below).
* **Calibration of the analytic gain (issue 20): ``ANALYTIC_GAIN = 7``.** Goal: on the benchmark
  (docs/benchmark.md; T2, 120 x 144 slices at 1.5 mm, each volume normalised to [-1, 1] from its 0.5-99.5
  percentile range as the engine does) the share of brain voxels above 0.5 lies between 20 % and 60 %, and the
  map is higher at tissue edges and on the tumour than on flat white matter. Because Eq. 8 is a soft
  binarisation (below), that share is the share of brain pixels whose ``p_0`` reaches ``t``, and it rises
  steeply with the gain. Measured on whole volumes of the benchmark's 12 test subjects (all axial slices; "flat
  white matter": the white-matter label eroded by 2 pixels in the slice; "edges": brain pixels with another
  label in their 3 x 3 neighbourhood):

  ======  ==========================  =================  =======  =====  ======
  gain    share of brain > 0.5        mean in the brain  flat WM  edges  tumour
  ======  ==========================  =================  =======  =====  ======
  12      95.4 % (90.9-98.2 %)        0.686              0.617    0.699  0.714
  7.5     53.7 % (46.1-58.1 %)        0.407              0.150    0.489  0.476
  7       45.9 % (39.3-49.5 %)        0.355              0.110    0.442  0.389
  6.5     38.3 % (32.9-41.3 %)        0.303              0.081    0.393  0.295
  ======  ==========================  =================  =======  =====  ======

  (mean over the 12 volumes; in brackets the lowest and highest volume.)

  The gain was then checked on what EDTS-Trans feeds the TSM, its regression output ``T2_bar``, which is less
  noisy than the real T2: on 15 slices of 4 test subjects (through the tumour and 3 levels of the brain), the
  real T2 smoothed with a Gaussian of 0.8 pixels gave 28 % (20-36 % per slice) at gain 7 and 15 % at gain 6;
  the regression output of the shipped EDTS model (trained on the older phantom) gave 48 % (37-64 %). 7 keeps
  all three inside the band, near its middle; 12, the value calibrated before on the older phantom, saturates
  (mean 0.68, 95 % above 0.4 and above 0.5, maximum 0.72: Eq. 4 became a near-constant 0.7 / 0.3 blend), so
  the map singled out nothing. The gain is tied to the pixel scale: on the same phantom at 3 mm pixels (60 x 72
  slices, two tumour slices) gain 7 marks 82-88 % of the brain. ``LEGACY_ANALYTIC_GAIN = 12`` is the old value; EDTS-Trans
  checkpoints saved before the calibration keep it (``tsm_gain`` in their config, see
  :mod:`napari_medtrans.translators.edts`). The calibration is asserted on benchmark-like slices in
  ``tests/core/test_tsm.py``.
* **What the dispersion index favours.** var/mean is large where responses are sparse and strong (an edge or a
  small structure in flat surroundings) and small where they are dense and even (a uniform fine texture), and
  Eq. 7 multiplies the scales, so structure must show at every scale to reach ``t``: a fine texture that
  averages out at the coarse layers stays near ``ps_0 / 16``. This holds for any backbone whose features are
  locally even over such a texture.
* **What Eq. 8 does to the map.** Since ``p_0 >= 2**-K`` and ``t`` is only 1.6 times the five-layer floor, Eq. 8
  acts as a soft binarisation: flat regions keep ``p_0`` (about 0.03 to 0.05) and structured regions become
  ``sigmoid(1 - p_0)``, between 0.5 (strongest texture) and 0.73 (just above ``t``). The map is implemented as
  printed; :attr:`TSMResult.candidate` keeps ``p_0`` (Eq. 7, before Eq. 8, resized), which grows monotonically
  with texture and is the better picture of *how much* structure there is.

The map is computed without gradients (it is a prior, not a learned quantity), in float32 with autocast off.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CheckpointError, UnknownChoiceError, WeightsError

__all__ = [
    "TSMResult",
    "BACKBONES",
    "DEFAULT_LAYERS",
    "PAPER_EQ5_LAYERS",
    "DEFAULT_WINDOW",
    "DEFAULT_THRESHOLD",
    "EPS",
    "ANALYTIC_GAIN",
    "LEGACY_ANALYTIC_GAIN",
    "VGG_WEIGHTS_NAME",
    "compute_tsm",
    "tsm_from_features",
    "local_dispersion",
    "refine_threshold",
    "vgg16_layer_info",
    "check_layers",
    "vgg16_features",
    "analytic_features",
    "backbone_label",
]

BACKBONES = ("vgg16-imagenet", "analytic")
DEFAULT_LAYERS: tuple[int, ...] = (4, 9, 16, 23, 30)
PAPER_EQ5_LAYERS: tuple[int, ...] = (4, 9, 16, 23)
DEFAULT_WINDOW = 3
DEFAULT_THRESHOLD = 0.05
EPS = 1e-12
#: Gain of the analytic backbone, calibrated on the benchmark (module notes, issue 20).
ANALYTIC_GAIN = 7.0
#: The gain before that calibration (set on the older phantom); it saturates the map on the benchmark.
LEGACY_ANALYTIC_GAIN = 12.0
#: Name of torchvision's ImageNet VGG16 in the weights store (:mod:`napari_medtrans.core.weights`).
VGG_WEIGHTS_NAME = "vgg16"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's VGG16 "D" configuration: channel counts and "M" for max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@dataclasses.dataclass(frozen=True)
class TSMResult:
    """A TSM probability map and how it was made.

    Attributes
    ----------
    map : torch.Tensor
        ``[B, 1, H, W]`` in [0, 1], the size of the input.
    backbone : str
        ``"vgg16-imagenet"`` or ``"analytic"``: which features made the map (the UI names it).
    layers : tuple of int
        VGG16 layer ends used (``features[:i]``).
    window : int or None
        Gaussian window taps of the local statistics (None: global, Eq. 6 as printed).
    threshold : float
        ``t`` of Eq. 8.
    candidate : torch.Tensor or None
        ``p_0`` of Eq. 7 (before the threshold refinement of Eq. 8), ``[B, 1, H, W]``: grows with texture.
    gain : float or None
        The analytic backbone's gain (None for VGG16).
    """

    map: torch.Tensor
    backbone: str
    layers: tuple[int, ...] = DEFAULT_LAYERS
    window: int | None = DEFAULT_WINDOW
    threshold: float = DEFAULT_THRESHOLD
    candidate: torch.Tensor | None = None
    gain: float | None = None

    @property
    def label(self) -> str:
        """One line for people, e.g. "TSM map from VGG16 (ImageNet) layers 4, 9, 16, 23, 30"."""
        return backbone_label(self.backbone, self.layers)


def backbone_label(backbone: str, layers: Sequence[int] = DEFAULT_LAYERS) -> str:
    """Words naming the features a TSM map came from (for legends and tooltips)."""
    which = {"vgg16-imagenet": "VGG16 (ImageNet)", "analytic": "analytic oriented gradients (no weights)"}
    return f"TSM map from {which.get(backbone, backbone)} at VGG16 layers {', '.join(str(i) for i in layers)}"


# -- the maths (Eq. 6-8) -------------------------------------------------------------------------------
def _gaussian_taps(window: int, dtype, device) -> torch.Tensor:
    r = window // 2
    xs = torch.arange(-r, r + 1, dtype=dtype, device=device)
    sigma = window / 4.0
    w = torch.exp(-0.5 * (xs / sigma) ** 2)
    return w / w.sum()


def _local_stats(f: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mean and variance under a truncated, renormalised Gaussian window (two passes, no cancellation)."""
    _, _, h, w = f.shape
    r = window // 2
    taps = _gaussian_taps(window, f.dtype, f.device).tolist()
    fp = F.pad(f, (r, r, r, r))
    inside = F.pad(torch.ones(1, 1, h, w, dtype=f.dtype, device=f.device), (r, r, r, r))
    offsets = [(a, b, taps[a] * taps[b]) for a in range(window) for b in range(window)]
    den = sum(wt * inside[..., a:a + h, b:b + w] for a, b, wt in offsets)
    mu = sum(wt * fp[..., a:a + h, b:b + w] for a, b, wt in offsets) / den
    var = torch.zeros_like(mu)
    for a, b, wt in offsets:
        d = fp[..., a:a + h, b:b + w] - mu
        var.addcmul_(d * inside[..., a:a + h, b:b + w], d, value=wt)
    return mu, var / den


def local_dispersion(feature: torch.Tensor, window: int | None = DEFAULT_WINDOW, eps: float = EPS) -> torch.Tensor:
    """Dispersion index of Eq. 6, ``gamma = mean_c sigma_c / (mu_c + eps)``, localised by a sliding window.

    Parameters
    ----------
    feature : torch.Tensor
        ``[B, C, h, w]`` non-negative features.
    window : int or None
        Odd number of taps of the Gaussian window (standard deviation ``window / 4``), truncated and renormalised
        at the borders. None: the statistics of the whole map (Eq. 6 as printed), broadcast to ``[B, 1, h, w]``.
    eps : float
        The paper's stabiliser (1e-12).

    Returns
    -------
    torch.Tensor
        ``[B, 1, h, w]``.
    """
    if feature.ndim != 4:
        raise ValueError(f'Argument "feature" must be [B, C, h, w], got shape {list(feature.shape)}.')
    f = feature if feature.dtype == torch.float64 else feature.float()
    if window is None:
        mu = f.mean(dim=(2, 3), keepdim=True)
        var = ((f - mu) ** 2).mean(dim=(2, 3), keepdim=True)
        gamma = (var / (mu + eps)).mean(dim=1, keepdim=True)
        return gamma.expand(f.shape[0], 1, f.shape[2], f.shape[3])
    if not isinstance(window, int) or isinstance(window, bool) or window < 1 or window % 2 != 1:
        raise ValueError(f'Argument "window" must be a positive odd integer or None, got {window!r}.')
    mu, var = _local_stats(f, window)
    return (var / (mu + eps)).mean(dim=1, keepdim=True)


def refine_threshold(p0: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Eq. 8: keep ``p0`` below ``t``; elsewhere ``e^(1-p0) / (1 + e^(1-p0))`` (= ``sigmoid(1 - p0)``)."""
    return torch.where(p0 < threshold, p0, torch.sigmoid(1.0 - p0))


def tsm_from_features(
    features: Sequence[torch.Tensor],
    out_size: Sequence[int],
    threshold: float = DEFAULT_THRESHOLD,
    window: int | None = DEFAULT_WINDOW,
    *,
    eps: float = EPS,
) -> torch.Tensor:
    """The TSM probability map from multi-scale features (Eq. 6-8), apart from any backbone.

    Parameters
    ----------
    features : sequence of torch.Tensor
        ``F_0 ... F_{K-1}``, each ``[B, C_k, h_k, w_k]`` and non-negative, ordered shallow (fine) to deep (coarse).
    out_size : (int, int)
        ``(H, W)`` of the returned map (the input image's size).
    threshold : float
        ``t`` of Eq. 8 (0.05 in the paper).
    window : int or None
        Local statistics window (see :func:`local_dispersion`).
    eps : float
        Stabiliser of Eq. 6.

    Returns
    -------
    torch.Tensor
        ``[B, 1, H, W]`` in [0, 1].
    """
    return _tsm(features, out_size, threshold, window, eps)[0]


def _tsm(features, out_size, threshold, window, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6-8: (refined map, candidate ``p_0``), both resized to ``out_size``."""
    feats = list(features)
    if not feats:
        raise ValueError('Argument "features" must hold at least one feature map.')
    batch = None
    for k, f in enumerate(feats):
        if not isinstance(f, torch.Tensor) or f.ndim != 4:
            raise ValueError(f"feature map {k} must be a [B, C, h, w] tensor, got "
                             f"{list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__}.")
        if batch is not None and f.shape[0] != batch:
            raise ValueError(f"feature map {k} has batch size {f.shape[0]}, map 0 has {batch}.")
        batch = f.shape[0]
    size = tuple(int(s) for s in out_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f'Argument "out_size" must be (H, W) with positive integers, got {out_size!r}.')
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f'Argument "threshold" must be in [0, 1], got {threshold!r}.')
    p = None
    for f in reversed(feats):  # Eq. 7, from the deepest map to the shallowest
        ps = torch.sigmoid(local_dispersion(f, window, eps))  # Eq. 6 and ps_k = sigmoid(gamma_k)
        if p is None:
            p = ps
        else:
            p_hat = F.interpolate(p, size=ps.shape[-2:], mode="bilinear", align_corners=False)
            p = ps * p_hat
    p0 = p
    p = refine_threshold(p0, float(threshold))  # Eq. 8 on p_0
    if tuple(p.shape[-2:]) != size:
        p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        p0 = F.interpolate(p0, size=size, mode="bilinear", align_corners=False)
    return p.clamp(0.0, 1.0), p0.clamp(0.0, 1.0)


# -- backbones (Eq. 5) ---------------------------------------------------------------------------------
def vgg16_layer_info() -> list[tuple[str, int]]:
    """``(kind, pools_before)`` for every module of ``vgg16().features``: kind is "conv", "relu" or "pool"."""
    out: list[tuple[str, int]] = []
    pools = 0
    for v in _VGG16_CFG:
        if v == "M":
            out.append(("pool", pools))
            pools += 1
        else:
            out.append(("conv", pools))
            out.append(("relu", pools))
    return out


def _valid_layers() -> list[int]:
    info = vgg16_layer_info()
    return [i + 1 for i, (kind, _) in enumerate(info) if kind in ("relu", "pool")]


def check_layers(layers: Sequence[int]) -> tuple[int, ...]:
    """Validate VGG16 layer ends for the TSM: integers, strictly increasing, each on a ReLU or max-pool.

    Raises
    ------
    ValueError
        A layer before its ReLU (e.g. Eq. 5's 8: conv2_2), a layer that does not exist, or a bad order; the
        message lists the valid layers.
    """
    try:
        out = tuple(int(i) for i in layers)
    except (TypeError, ValueError):
        raise TypeError(f'Argument "layers" must be a sequence of integers, got {layers!r}.') from None
    if not out:
        raise ValueError('Argument "layers" must name at least one VGG16 layer.')
    info = vgg16_layer_info()
    valid = _valid_layers()
    for i in out:
        if i not in valid:
            if 1 <= i <= len(info):
                kind = info[i - 1][0]
                raise ValueError(
                    f"VGG16 layer {i} (the output of features[:{i}]) ends on a {kind} before its ReLU; its "
                    f"responses can be negative, which makes the dispersion index of Eq. 6 meaningless. Use a "
                    f"layer ending on a ReLU or max-pool, e.g. {i + 1} (the paper's Fig. 3 uses 4, 9, 16, 23). "
                    f"Valid: {valid}"
                )
            raise ValueError(f"VGG16 layer {i} does not exist; valid layers: {valid}")
    if list(out) != sorted(set(out)):
        raise ValueError(f'Argument "layers" must be strictly increasing (shallow to deep), got {list(out)}.')
    return out


def _build_vgg16_features(n_modules: int):
    from torchvision.models import vgg16

    return vgg16(weights=None).features[:n_modules]


_VGG_CACHE: dict[tuple, torch.nn.Module] = {}
_VGG_LOCK = threading.Lock()


def _resolve_vgg_path(weights_path: str | os.PathLike | None) -> Path:
    if weights_path is not None:
        p = Path(weights_path)
        if not p.is_file():
            raise WeightsError(
                "VGG16 weights for TSM: " + ("no such file" if not p.exists() else "not a file"), p)
        return p
    from .weights import weights_path as store_path

    try:
        return store_path(VGG_WEIGHTS_NAME)
    except WeightsError as exc:
        raise WeightsError(
            "TSM with backbone 'vgg16-imagenet' needs torchvision's ImageNet VGG16 (vgg16-397923af.pth), which is "
            "not in the weights store. Download https://download.pytorch.org/models/vgg16-397923af.pth on a machine "
            f"with internet access and run 'medtrans weights import PATH --name {VGG_WEIGHTS_NAME}' (or "
            f"'medtrans weights fetch {VGG_WEIGHTS_NAME}' where the internet is reachable), or use "
            "backbone='analytic', which needs no weights",
            exc.path,
            name=VGG_WEIGHTS_NAME,
        ) from None


def _load_vgg(path: Path, n_modules: int, device: torch.device) -> torch.nn.Module:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, n_modules, str(device))
    with _VGG_LOCK:
        net = _VGG_CACHE.get(key)
        if net is not None:
            return net
        from .weights import load_state_dict

        state = load_state_dict(path)
        net = _build_vgg16_features(n_modules)
        wanted = net.state_dict().keys()
        # torchvision layout ("features.0.weight") or a features-only dict ("0.weight").
        sub = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")} or dict(state)
        missing = [k for k in wanted if k not in sub]
        if missing:
            raise CheckpointError(
                f"is not a torchvision VGG16 state dict: missing {missing[:4]}"
                + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
                + " (expected keys like 'features.0.weight')",
                path,
            )
        try:
            net.load_state_dict({k: sub[k] for k in wanted})
        except RuntimeError as exc:
            raise CheckpointError(f"does not fit torchvision's VGG16: {str(exc).splitlines()[0]}", path) from None
        net = net.to(device=device, dtype=torch.float32).eval()
        for prm in net.parameters():
            prm.requires_grad_(False)
        _VGG_CACHE.clear()  # one backbone at a time (about 60 MB per copy)
        _VGG_CACHE[key] = net
        return net


def _grey01(image: torch.Tensor) -> torch.Tensor:
    return ((image.float().clamp(-1.0, 1.0) + 1.0) * 0.5)


@torch.no_grad()
def vgg16_features(
    image: torch.Tensor,
    layers: Sequence[int] = DEFAULT_LAYERS,
    weights_path: str | os.PathLike | None = None,
) -> list[torch.Tensor]:
    """VGG16 features ``features[:i]`` for each ``i`` in ``layers`` (Eq. 5).

    The grey batch ``[B, 1, H, W]`` in [-1, 1] is mapped to [0, 1], replicated to three channels and normalised
    with the ImageNet mean and standard deviation, as torchvision's weights expect.

    Parameters
    ----------
    image : torch.Tensor
        ``[B, 1, H, W]`` in [-1, 1].
    layers : sequence of int
        Layer ends, strictly increasing, each on a ReLU or max-pool.
    weights_path : path-like, optional
        A torchvision VGG16 state dict (``.pth`` or ``.safetensors``); default: ``vgg16`` from the weights store.

    Raises
    ------
    WeightsError
        No weights: the message says how to import them.
    """
    layers = check_layers(layers)
    path = _resolve_vgg_path(weights_path)
    net = _load_vgg(path, max(layers), image.device)
    x = _grey01(image).expand(-1, 3, -1, -1)
    mean = torch.tensor(_IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    out = []
    start = 0
    for end in layers:
        x = net[start:end](x)
        out.append(x)
        start = end
    return out


def _oriented_kernels(device) -> torch.Tensor:
    s = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=device) / 8.0
    d = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]], device=device) / 8.0
    return torch.stack([s, s.t(), d, d.flip(1)]).unsqueeze(1)  # 0, 90, 45, 135 degrees


@torch.no_grad()
def analytic_features(
    image: torch.Tensor, layers: Sequence[int] = DEFAULT_LAYERS, gain: float = ANALYTIC_GAIN
) -> list[torch.Tensor]:
    """Weight-free multi-scale features: rectified oriented derivatives at each VGG16 layer's resolution.

    For layer ``i`` the image (mapped to [0, 1]) is average-pooled by 2 once per max-pool VGG16 has before
    ``features[:i]``, filtered with four 3x3 oriented derivative kernels (0, 45, 90, 135 degrees) with replicated
    borders, and split into positive and negative parts: ``[B, 8, H / 2**s, W / 2**s]``, times ``gain``.

    Parameters
    ----------
    image : torch.Tensor
        ``[B, 1, H, W]`` in [-1, 1].
    layers : sequence of int
        VGG16 layer ends (they fix the resolutions).
    gain : float
        Scale of the responses (the dispersion index scales with it).
    """
    layers = check_layers(layers)
    info = vgg16_layer_info()
    x = _grey01(image)
    kernels = _oriented_kernels(x.device)
    out = []
    for i in layers:
        pools = info[i - 1][1] + (1 if info[i - 1][0] == "pool" else 0)
        y = x
        for _ in range(pools):
            if min(y.shape[-2:]) >= 2:
                y = F.avg_pool2d(y, 2, ceil_mode=True)
        r = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), kernels)
        out.append(torch.cat([r.clamp_min(0), (-r).clamp_min(0)], dim=1) * float(gain))
    return out


# -- the public entry point ----------------------------------------------------------------------------
def compute_tsm(
    image: torch.Tensor,
    backbone: str = "vgg16-imagenet",
    layers: Sequence[int] = DEFAULT_LAYERS,
    threshold: float = DEFAULT_THRESHOLD,
    window: int | None = DEFAULT_WINDOW,
    weights_path: str | os.PathLike | None = None,
    gain: float | None = None,
) -> TSMResult:
    """The TSM probability map of a batch of grey images (EDTS-Trans Eq. 5-8).

    Parameters
    ----------
    image : torch.Tensor
        ``[B, 1, H, W]`` (or ``[H, W]`` / ``[B, H, W]``) in [-1, 1]; values outside are clipped.
    backbone : {"vgg16-imagenet", "analytic"}
        The paper's VGG16 (torchvision ImageNet weights from the weights store, or ``weights_path``), or the
        weight-free analytic features that work offline.
    layers : sequence of int
        VGG16 layer ends ``features[:i]``, shallow to deep (default 4, 9, 16, 23, 30; see the module notes).
    threshold : float
        ``t`` of Eq. 8.
    window : int or None
        Gaussian window of the local statistics (None: global statistics as printed in Eq. 6).
    weights_path : path-like, optional
        VGG16 state dict to use instead of the store's (ignored by the analytic backbone).
    gain : float, optional
        The analytic backbone's gain (default :data:`ANALYTIC_GAIN`, calibrated on the benchmark; module notes).
        Refused for VGG16, whose features have their own scale.

    Returns
    -------
    TSMResult
        ``map`` ``[B, 1, H, W]`` in [0, 1] on the input's device, and the backbone that made it.

    Raises
    ------
    WeightsError
        ``backbone="vgg16-imagenet"`` and the weights are not in the store (the message says how to import them).
    UnknownChoiceError
        Unknown backbone.
    """
    if backbone not in BACKBONES:
        raise UnknownChoiceError("TSM backbone", str(backbone), BACKBONES)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f'Argument "image" must be a torch.Tensor, got {type(image).__name__}.')
    x = image
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f'Argument "image" must be a grey batch [B, 1, H, W], got shape {list(image.shape)}.')
    if not torch.isfinite(x).all():
        raise ValueError('Argument "image" holds NaN or infinite values.')
    layers = check_layers(layers)
    if gain is not None:
        if backbone != "analytic":
            raise ValueError(f'Argument "gain" is for the analytic backbone only, not {backbone!r}.')
        if isinstance(gain, bool) or not float(gain) > 0 or not float(gain) < float("inf"):
            raise ValueError(f'Argument "gain" must be a positive finite number, got {gain!r}.')
    used = (ANALYTIC_GAIN if gain is None else float(gain)) if backbone == "analytic" else None
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        if backbone == "analytic":
            feats = analytic_features(x, layers, gain=used)
        else:
            feats = vgg16_features(x, layers, weights_path)
        m, p0 = _tsm(feats, x.shape[-2:], threshold, window, EPS)
    return TSMResult(map=m, backbone=backbone, layers=layers, window=window, threshold=float(threshold),
                     candidate=p0, gain=used)

