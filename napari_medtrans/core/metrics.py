"""Image and overlap metrics, in torch so that they run on a GPU as well as on the CPU.

Every function accepts numpy arrays or torch tensors, 2D slices or 3D volumes, and (where it makes sense) an
optional mask. Scalar results are Python floats; maps come back as the same kind of array as the first input.

Conventions
-----------
PSNR
    ``10 log10(data_range**2 / MSE)``. ``data_range`` is always explicit: there is no good default for MR
    intensities (see :func:`evaluate_volumes` for the one place a default is chosen, and how). Identical images
    give ``inf``. Identical to ``skimage.metrics.peak_signal_noise_ratio(ref, x, data_range=...)``.
SSIM
    Wang et al. (2004): an 11-tap Gaussian window with sigma 1.5, population (co)variances, constants
    ``C1 = (k1 R)^2`` and ``C2 = (k2 R)^2``. The filtered statistics use half-sample symmetric extension at the
    borders (scipy's ``mode="reflect"``). Without a mask the mean of the SSIM map leaves out a border of
    ``(win_size - 1) // 2`` voxels on every filtered axis, exactly as
    ``skimage.metrics.structural_similarity(ref, x, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R)`` does, so the two agree (to rounding) for the default window.
    With a mask the SSIM map is averaged over the voxels inside the mask and no border is dropped (the mask
    decides which voxels count). ``spatial_dims=3`` filters a volume in 3D (skimage's behaviour for a 3D
    array); ``spatial_dims=2`` filters each slice along ``axis`` on its own, and the mean over a volume is then
    the mean over slices of the per-slice (cropped) means, which all have the same size.
MAE
    Mean absolute difference, in the images' units; divided by ``data_range`` when one is given (the
    "[0, 1]-scaled" MAE that papers report).
Dice, IoU, volume similarity
    On binary masks (any non-zero voxel is foreground) or per label (``labels=``). When both masks are empty
    they agree perfectly: Dice, IoU and volume similarity are 1.0. When only one is empty they are 0.0.
    Volume similarity is ``1 - |A - B| / (A + B)`` with A and B the foreground voxel counts.

The code is split over modules next to this one, and everything is re-exported here:
:mod:`~napari_medtrans.core.metrics_tensors` (input handling shared by all metrics),
:mod:`~napari_medtrans.core.metrics_ssim` (SSIM filtering internals) and
:mod:`~napari_medtrans.core.metrics_overlap` (Dice, IoU, volume similarity, HD95).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .errors import GeometryMismatchError
from .metrics_overlap import dice, hd95, iou, volume_similarity
from .metrics_ssim import check_window_fits as _check_window_fits
from .metrics_ssim import crop as _crop
from .metrics_ssim import spatial_layout as _spatial_layout
from .metrics_ssim import ssim_full as _ssim_full
from .metrics_tensors import ArrayLike
from .metrics_tensors import check_range as _check_range
from .metrics_tensors import like as _like
from .metrics_tensors import masked_mean as _masked_mean
from .metrics_tensors import prepare as _prepare

__all__ = [
    "psnr",
    "ssim",
    "ssim_map",
    "mae",
    "dice",
    "iou",
    "volume_similarity",
    "hd95",
    "slice_metrics",
    "evaluate_volumes",
]


# -- PSNR, MAE --------------------------------------------------------------------------------------
def psnr(x: ArrayLike, ref: ArrayLike, *, data_range: float, mask: ArrayLike | None = None, device=None) -> float:
    """Peak signal-to-noise ratio of ``x`` against the reference ``ref``, in dB.

    Parameters
    ----------
    x, ref : array or tensor
        Images of the same shape (2D or 3D).
    data_range : float
        The peak-to-peak span of intensities, e.g. ``ref.max() - ref.min()``. Required.
    mask : array or tensor, optional
        Only voxels where the mask is non-zero count.
    device : str or torch.device, optional
        Where to compute; default: the device of the first torch input, else the CPU.

    Returns
    -------
    float
        ``10 log10(data_range**2 / MSE)``; ``inf`` when the images are identical.
    """
    r = _check_range(data_range)
    xt, rt, mt = _prepare(x, ref, mask, device)
    mse = _masked_mean((xt - rt) ** 2, mt, "the squared error")
    if mse == 0:
        return math.inf
    return float(10.0 * math.log10(r * r / mse))


def mae(
    x: ArrayLike, ref: ArrayLike, *, mask: ArrayLike | None = None, data_range: float | None = None, device=None
) -> float:
    """Mean absolute error of ``x`` against ``ref``.

    Parameters
    ----------
    x, ref : array or tensor
        Images of the same shape (2D or 3D).
    mask : array or tensor, optional
        Only voxels where the mask is non-zero count.
    data_range : float, optional
        When given the MAE is divided by it (the [0, 1]-scaled MAE papers report); otherwise it is in the
        images' units.
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    float
    """
    r = _check_range(data_range) if data_range is not None else 1.0
    xt, rt, mt = _prepare(x, ref, mask, device)
    return _masked_mean((xt - rt).abs(), mt, "the absolute error") / r


# -- SSIM -------------------------------------------------------------------------------------------
def ssim_map(
    x: ArrayLike,
    ref: ArrayLike,
    *,
    data_range: float,
    win_sigma: float = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
    spatial_dims: int | None = None,
    axis: int = -1,
    device=None,
):
    """The local SSIM of ``x`` against ``ref`` at every voxel (no border cropped).

    Parameters
    ----------
    x, ref : array or tensor
        Images of the same shape (2D or 3D).
    data_range : float
        Intensity span used in the stabilising constants. Required.
    win_sigma, win_size : float, int
        Gaussian window: ``win_size`` taps with standard deviation ``win_sigma`` (11 and 1.5 in Wang et al.).
    k1, k2 : float
        Stabilising constants of Wang et al.
    spatial_dims : {None, 2, 3}
        3 filters a volume in 3D; 2 filters each slice along ``axis`` separately. None: the input's dimension.
    axis : int
        The slice axis when ``spatial_dims=2`` and the input is 3D.
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    ndarray or tensor
        Same shape as the input; numpy when ``x`` is numpy, a tensor when it is a tensor.
    """
    smap, _, _ = _ssim_of(x, ref, None, data_range, win_sigma, win_size, k1, k2, spatial_dims, axis, device)
    return _like(smap, x)


def ssim(
    x: ArrayLike, ref: ArrayLike, *, data_range: float, mask: ArrayLike | None = None,
    win_sigma: float = 1.5, win_size: int = 11, k1: float = 0.01, k2: float = 0.03,
    spatial_dims: int | None = None, axis: int = -1, device=None,
) -> float:
    """Mean structural similarity of ``x`` against ``ref`` (Wang et al. 2004, Gaussian window).

    Without a mask, a border of ``(win_size - 1) // 2`` voxels is left out of the mean on every filtered axis
    (scikit-image's convention, which this matches); images must then be at least ``win_size`` wide along those
    axes. With a mask, the SSIM map is averaged over the voxels inside the mask.

    Parameters
    ----------
    x, ref, data_range
        As in :func:`ssim_map`: the images (arrays or tensors of the same shape, 2D or 3D) and the intensity
        span (required).
    mask : array or tensor, optional
        Average the SSIM map over the non-zero voxels of the mask.
    win_sigma, win_size, k1, k2, spatial_dims, axis, device
        As in :func:`ssim_map`.

    Returns
    -------
    float
    """
    smap, mt, dims = _ssim_of(x, ref, mask, data_range, win_sigma, win_size, k1, k2, spatial_dims, axis, device,
                              crop=True)
    if mt is None:
        return float(_crop(smap, dims, (int(win_size) - 1) // 2).mean())
    return _masked_mean(smap, mt, "SSIM")


def _ssim_of(x, ref, mask, data_range, win_sigma, win_size, k1, k2, spatial_dims, axis, device, *, crop=False):
    """The SSIM map of ``x`` against ``ref`` (a tensor), the prepared mask and the filtered dims, for
    :func:`ssim_map` and :func:`ssim`. With ``crop`` (a mean that leaves the border out) and no mask, the images
    must be at least ``win_size`` wide along the filtered axes."""
    r = _check_range(data_range)
    xt, rt, mt = _prepare(x, ref, mask, device)
    _, dims = _spatial_layout(xt.ndim, spatial_dims, axis)
    if crop and mt is None:
        _check_window_fits(xt.shape, dims, int(win_size))
    return _ssim_full(xt, rt, r, int(win_size), float(win_sigma), k1, k2, dims), mt, dims


# -- per slice and per volume -----------------------------------------------------------------------
def _slice_means(
    smap: torch.Tensor, diff: torch.Tensor, ms: torch.Tensor | None, win_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-slice means of the SSIM map, the squared and the absolute error (slices along dim 0).

    Without a mask the SSIM map loses its border first; with one, only voxels inside count and slices with an
    empty mask get NaN.
    """
    if ms is None:
        pad = (win_size - 1) // 2
        ssim_s = _crop(smap, (1, 2), pad).mean(dim=(1, 2))
        mse_s = (diff * diff).mean(dim=(1, 2))
        mae_s = diff.abs().mean(dim=(1, 2))
        return ssim_s, mse_s, mae_s
    w = ms.to(smap.dtype)
    n = w.sum(dim=(1, 2))
    nan = torch.full_like(n, float("nan"))
    safe = n.clamp(min=1)
    ssim_s = torch.where(n > 0, (smap * w).sum(dim=(1, 2)) / safe, nan)
    mse_s = torch.where(n > 0, (diff * diff * w).sum(dim=(1, 2)) / safe, nan)
    mae_s = torch.where(n > 0, (diff.abs() * w).sum(dim=(1, 2)) / safe, nan)
    return ssim_s, mse_s, mae_s


def slice_metrics(
    x: ArrayLike,
    ref: ArrayLike,
    axis: int,
    data_range: float,
    mask: ArrayLike | None = None,
    *,
    win_sigma: float = 1.5,
    win_size: int = 11,
    device=None,
) -> dict[str, np.ndarray]:
    """PSNR, SSIM (2D, per slice) and MAE of every slice along ``axis`` of a volume.

    Parameters
    ----------
    x, ref : array or tensor
        3D volumes of the same shape.
    axis : int
        The slice axis (for a :class:`~napari_medtrans.core.volume.Volume`, usually its acquisition axis).
    data_range : float
        Intensity span, used for PSNR, SSIM and to scale MAE (see the module notes).
    mask : array or tensor, optional
        Per slice, only voxels inside the mask count; slices with an empty mask get NaN.
    win_sigma, win_size : float, int
        SSIM window (see :func:`ssim`).
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    dict
        ``{"psnr", "ssim", "mae"}``, each a float64 array with one value per slice (index = slice number).
        PSNR is ``inf`` on slices that match exactly.
    """
    r = _check_range(data_range)
    xt, rt, mt = _prepare(x, ref, mask, device)
    if xt.ndim != 3:
        raise ValueError(f'Arguments "x" and "ref" must be 3D volumes for slice_metrics, got shape {tuple(xt.shape)}.')
    if not -3 <= axis < 3:
        raise ValueError(f'Argument "axis" must be in [-3, 2], got {axis}.')
    axis %= 3
    xs, rs = xt.movedim(axis, 0), rt.movedim(axis, 0)
    ms = mt.movedim(axis, 0) if mt is not None else None
    if ms is None:
        _check_window_fits(xs.shape, (1, 2), int(win_size))
    smap = _ssim_full(xs, rs, r, int(win_size), float(win_sigma), 0.01, 0.03, [1, 2])
    ssim_s, mse_s, mae_s = _slice_means(smap, xs - rs, ms, int(win_size))
    mse_np = mse_s.cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        psnr_s = np.where(mse_np == 0, np.inf, 10.0 * np.log10(r * r / mse_np))
    return {
        "psnr": psnr_s.astype(np.float64),
        "ssim": ssim_s.cpu().numpy().astype(np.float64),
        "mae": (mae_s.cpu().numpy() / r).astype(np.float64),
    }


def _volume_data(v, name):
    """(array, path) for a Volume or an array."""
    data = getattr(v, "data", None)
    if data is not None and hasattr(v, "affine"):
        return data, getattr(v, "path", None)
    if v is None:
        return None, None
    return v, None


def _check_grids(ref: Any, r_path: Any, others: Any) -> None:
    """GeometryMismatchError when a Volume among ``others`` ((volume, path, what), ...) is off ``ref``'s grid."""
    for other, opath, what in others:
        if other is None or not hasattr(other, "same_grid") or not hasattr(ref, "same_grid"):
            continue
        if not ref.same_grid(other):
            raise GeometryMismatchError(
                f"{what} {opath or '(array)'} (shape {other.shape}) is not on the reference's grid "
                f"(shape {ref.shape}); resample one onto the other first",
                r_path,
            )


def _reference_range(r_arr: Any, m_arr: Any) -> float:
    """``max - min`` of the reference inside the mask (everywhere without one); ValueError when empty or 0."""
    rt = np.asarray(r_arr) if not isinstance(r_arr, torch.Tensor) else r_arr.detach().cpu().numpy()
    vals = rt[np.asarray(m_arr if not isinstance(m_arr, torch.Tensor) else m_arr.cpu()) != 0] if m_arr is not None else rt
    if vals.size == 0:
        raise ValueError('Argument "mask" is empty: nothing to evaluate.')
    data_range = float(vals.max() - vals.min())
    if data_range <= 0:
        raise ValueError(
            "the reference is constant inside the evaluated region, so its intensity range is 0; "
            'pass "data_range" explicitly.'
        )
    return data_range


def evaluate_volumes(
    synth: Any,
    ref: Any,
    mask: Any = None,
    data_range: float | None = None,
    *,
    spatial_dims: int = 3,
    axis: int = -1,
    device=None,
) -> dict[str, float]:
    """PSNR, SSIM and MAE of a synthetic volume against a reference volume.

    Parameters
    ----------
    synth, ref : Volume or array
        The synthetic and the acquired volume. Volumes must share a grid (shape and affine).
    mask : Volume or array, optional
        Region to evaluate (e.g. the brain mask); non-zero voxels count.
    data_range : float, optional
        Intensity span for PSNR/SSIM and for scaling MAE. Default: ``max - min`` of the *reference* inside the
        mask (over the whole reference without a mask). The synthetic image never sets the range, so a method
        cannot improve its score by producing outliers. Pass it explicitly to compare across subjects on one
        fixed scale.
    spatial_dims : {3, 2}
        SSIM in 3D (default, as scikit-image does on a volume) or per slice along ``axis``.
    axis : int
        Slice axis for ``spatial_dims=2``.
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    dict
        ``{"psnr": dB, "ssim": float, "mae": float (divided by data_range), "data_range": float}``.

    Raises
    ------
    GeometryMismatchError
        When Volumes do not share a grid.
    """
    s_arr, s_path = _volume_data(synth, "synth")
    r_arr, r_path = _volume_data(ref, "ref")
    m_arr, m_path = _volume_data(mask, "mask")
    _check_grids(ref, r_path, ((synth, s_path, "synthetic volume"), (mask, m_path, "mask")))
    if data_range is None:
        data_range = _reference_range(r_arr, m_arr)
    kw: Mapping[str, Any] = {"data_range": data_range, "mask": m_arr, "device": device}
    return {
        "psnr": psnr(s_arr, r_arr, **kw),
        "ssim": ssim(s_arr, r_arr, spatial_dims=spatial_dims, axis=axis, **kw),
        "mae": mae(s_arr, r_arr, **kw),
        "data_range": float(data_range),
    }
