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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import GeometryMismatchError

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

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray accepts


# -- helpers ----------------------------------------------------------------------------------------
def _pick_device(arrays: Iterable[Any], device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def _float_dtype(device: torch.device) -> torch.dtype:
    # float64 wherever it exists, so results agree with scikit-image (which works in float64) to rounding.
    return torch.float32 if device.type == "mps" else torch.float64


def _to_tensor(a: ArrayLike, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if arr.dtype == np.float16 or not arr.dtype.isnative:
            arr = arr.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device=device)


def _prepare(x, ref, mask, device):
    dev = _pick_device((x, ref, mask), device)
    dt = _float_dtype(dev)
    xt = _to_tensor(x, dev, dt)
    rt = _to_tensor(ref, dev, dt)
    if tuple(xt.shape) != tuple(rt.shape):
        raise ValueError(f'Arguments "x" and "ref" must have the same shape, got {tuple(xt.shape)} and {tuple(rt.shape)}.')
    if xt.ndim not in (2, 3):
        raise ValueError(f'Arguments "x" and "ref" must be 2D slices or 3D volumes, got {xt.ndim}D of shape {tuple(xt.shape)}.')
    mt = None
    if mask is not None:
        mt = _to_tensor(mask, dev, None)
        if tuple(mt.shape) != tuple(xt.shape):
            raise ValueError(f'Argument "mask" must have the image shape {tuple(xt.shape)}, got {tuple(mt.shape)}.')
        mt = mt != 0
    return xt, rt, mt


def _check_range(data_range) -> float:
    if data_range is None:
        raise TypeError('Argument "data_range" is required (the span of possible intensities, e.g. ref.max() - ref.min()).')
    r = float(data_range)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f'Argument "data_range" must be a positive finite number, got {data_range!r}.')
    return r


def _like(result: torch.Tensor, template: Any):
    """Return ``result`` as the same kind of array as ``template`` (numpy in, numpy out)."""
    if isinstance(template, torch.Tensor):
        return result
    return result.cpu().numpy()


def _masked_mean(t: torch.Tensor, mask: torch.Tensor | None, what: str) -> float:
    if mask is None:
        return float(t.mean())
    n = int(mask.sum())
    if n == 0:
        raise ValueError(f'Argument "mask" is empty: cannot average {what} over no voxels.')
    return float(t[mask].mean())


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
def _gaussian_kernel(win_size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = (win_size - 1) // 2
    xs = torch.arange(-r, r + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (xs / sigma) ** 2)
    return w / w.sum()


def _reflect_index(n: int, r: int, device) -> torch.Tensor:
    """Indices of a half-sample symmetric extension by ``r`` on both sides (scipy "reflect", any ``r``)."""
    i = torch.arange(-r, n + r, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _filter_axis(t: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate ``t`` with the 1D ``kernel`` along ``dim`` (reflect borders).

    A sum of shifted views: on the CPU this is several times faster than ``conv1d`` with one channel and far
    lighter on memory (no transposed copies).
    """
    n = t.shape[dim]
    taps = [float(w) for w in kernel.tolist()]
    r = (len(taps) - 1) // 2
    padded = t.index_select(dim, _reflect_index(n, r, t.device))
    out = padded.narrow(dim, 0, n) * taps[0]
    for i in range(1, len(taps)):
        out.add_(padded.narrow(dim, i, n), alpha=taps[i])
    return out


def _spatial_layout(ndim: int, spatial_dims: int | None, axis: int) -> tuple[int, list[int]]:
    """Resolve ``spatial_dims`` and return it with the list of axes to filter."""
    sd = ndim if spatial_dims is None else int(spatial_dims)
    if sd not in (2, 3):
        raise ValueError(f'Argument "spatial_dims" must be 2, 3 or None, got {spatial_dims!r}.')
    if sd > ndim:
        raise ValueError(f'Argument "spatial_dims"={sd} needs a {sd}D image, got a {ndim}D one.')
    if sd == ndim:
        return sd, list(range(ndim))
    if not -ndim <= axis < ndim:
        raise ValueError(f'Argument "axis" must be in [-{ndim}, {ndim - 1}], got {axis}.')
    axis %= ndim
    return sd, [d for d in range(ndim) if d != axis]


def _ssim_full(xt, rt, data_range, win_size, win_sigma, k1, k2, dims) -> torch.Tensor:
    if win_size < 1 or win_size % 2 != 1:
        raise ValueError(f'Argument "win_size" must be a positive odd integer, got {win_size!r}.')
    if not win_sigma > 0:
        raise ValueError(f'Argument "win_sigma" must be positive, got {win_sigma!r}.')
    if k1 < 0 or k2 < 0:
        raise ValueError(f'Arguments "k1" and "k2" must be non-negative, got {k1!r}, {k2!r}.')
    kernel = _gaussian_kernel(win_size, win_sigma, xt.device, xt.dtype)

    def filt(t):
        for d in dims:
            t = _filter_axis(t, kernel, d)
        return t

    # In-place arithmetic keeps the peak at about seven image-sized buffers for a whole volume.
    ux, uy = filt(xt), filt(rt)
    vx = filt(xt * xt).sub_(ux * ux)
    vy = filt(rt * rt).sub_(uy * uy)
    vxy = filt(xt * rt).sub_(ux * uy)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    den = vx.add_(vy).add_(c2)  # vx + vy + C2
    del vy
    num = vxy.mul_(2).add_(c2)  # 2 vxy + C2
    uxuy = ux * uy
    ux.mul_(ux).add_(uy.mul_(uy)).add_(c1)  # ux^2 + uy^2 + C1
    den.mul_(ux)
    del ux, uy
    num.mul_(uxuy.mul_(2).add_(c1))
    return num.div_(den)


def _crop(t: torch.Tensor, dims: Sequence[int], pad: int) -> torch.Tensor:
    for d in dims:
        t = t.narrow(d, pad, t.shape[d] - 2 * pad)
    return t


def _check_window_fits(shape, dims, win_size):
    small = [shape[d] for d in dims if shape[d] < win_size]
    if small:
        raise ValueError(
            f"image of shape {tuple(shape)} is smaller than the SSIM window ({win_size}) along a filtered axis; "
            "pass a smaller odd win_size (and a matching win_sigma), or a mask (no border is cropped then)."
        )


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
    r = _check_range(data_range)
    xt, rt, _ = _prepare(x, ref, None, device)
    _, dims = _spatial_layout(xt.ndim, spatial_dims, axis)
    return _like(_ssim_full(xt, rt, r, int(win_size), float(win_sigma), k1, k2, dims), x)


def ssim(
    x: ArrayLike,
    ref: ArrayLike,
    *,
    data_range: float,
    mask: ArrayLike | None = None,
    win_sigma: float = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
    spatial_dims: int | None = None,
    axis: int = -1,
    device=None,
) -> float:
    """Mean structural similarity of ``x`` against ``ref`` (Wang et al. 2004, Gaussian window).

    Without a mask, a border of ``(win_size - 1) // 2`` voxels is left out of the mean on every filtered axis
    (scikit-image's convention, which this matches); images must then be at least ``win_size`` wide along those
    axes. With a mask, the SSIM map is averaged over the voxels inside the mask.

    Parameters
    ----------
    x, ref : array or tensor
        Images of the same shape (2D or 3D).
    data_range : float
        Intensity span used in the stabilising constants. Required.
    mask : array or tensor, optional
        Average the SSIM map over the non-zero voxels of the mask.
    win_sigma, win_size, k1, k2, spatial_dims, axis, device
        As in :func:`ssim_map`.

    Returns
    -------
    float
    """
    r = _check_range(data_range)
    xt, rt, mt = _prepare(x, ref, mask, device)
    _, dims = _spatial_layout(xt.ndim, spatial_dims, axis)
    if mt is None:
        _check_window_fits(xt.shape, dims, int(win_size))
    smap = _ssim_full(xt, rt, r, int(win_size), float(win_sigma), k1, k2, dims)
    if mt is None:
        return float(_crop(smap, dims, (int(win_size) - 1) // 2).mean())
    return _masked_mean(smap, mt, "SSIM")


# -- overlap ----------------------------------------------------------------------------------------
def _label_counts(a, b, label) -> tuple[int, int, int]:
    """Voxel counts |A|, |B|, |A and B| for one label (None: any non-zero voxel)."""
    dev = _pick_device((a, b), None)
    at = _to_tensor(a, dev, None)
    bt = _to_tensor(b, dev, None)
    if tuple(at.shape) != tuple(bt.shape):
        raise ValueError(f'Arguments "a" and "b" must have the same shape, got {tuple(at.shape)} and {tuple(bt.shape)}.')
    if label is None:
        am, bm = at != 0, bt != 0
    else:
        am, bm = at == label, bt == label
    return int(am.sum()), int(bm.sum()), int((am & bm).sum())


def _resolve_labels(a, b, labels):
    if labels is None or isinstance(labels, (int, np.integer)):
        return None
    if isinstance(labels, str):
        if labels != "all":
            raise ValueError(f'Argument "labels" must be None, an int, a sequence of ints or "all", got {labels!r}.')
        found = set()
        for arr in (a, b):
            t = arr.detach().cpu() if isinstance(arr, torch.Tensor) else torch.from_numpy(np.asarray(arr))
            found.update(int(v) for v in torch.unique(t).tolist() if v != 0)
        return sorted(found)
    return [int(v) for v in labels]


def _overlap(a, b, labels, formula) -> float | dict[int, float]:
    many = _resolve_labels(a, b, labels)
    if many is None:
        return formula(*_label_counts(a, b, None if labels is None else int(labels)))
    return {lab: formula(*_label_counts(a, b, lab)) for lab in many}


def _dice(na, nb, nab):
    return 1.0 if na + nb == 0 else 2.0 * nab / (na + nb)


def _iou(na, nb, nab):
    union = na + nb - nab
    return 1.0 if union == 0 else nab / union


def _vs(na, nb, _nab):
    return 1.0 if na + nb == 0 else 1.0 - abs(na - nb) / (na + nb)


_LABELS_DOC = """
    Parameters
    ----------
    a, b : array or tensor
        Label or binary images of the same shape.
    labels : None, int, sequence of int, or "all"
        None: any non-zero voxel is foreground, one float. An int: that label only, one float. A sequence, or
        "all" (every non-zero label present in either image): a dict ``{label: value}``.

    Returns
    -------
    float or dict of int to float
        1.0 when both are empty (perfect agreement on "nothing there"), 0.0 when only one is.
"""


def dice(a: ArrayLike, b: ArrayLike, *, labels=None) -> float | dict[int, float]:
    return _overlap(a, b, labels, _dice)


def iou(a: ArrayLike, b: ArrayLike, *, labels=None) -> float | dict[int, float]:
    return _overlap(a, b, labels, _iou)


def volume_similarity(a: ArrayLike, b: ArrayLike, *, labels=None) -> float | dict[int, float]:
    return _overlap(a, b, labels, _vs)


dice.__doc__ = "Dice coefficient ``2|A and B| / (|A| + |B|)``.\n" + _LABELS_DOC
iou.__doc__ = "Intersection over union (Jaccard index) ``|A and B| / |A or B|``.\n" + _LABELS_DOC
volume_similarity.__doc__ = "Volume similarity ``1 - abs(|A| - |B|) / (|A| + |B|)``.\n" + _LABELS_DOC


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hd95(a: ArrayLike, b: ArrayLike, *, spacing=None, percentile: float = 95.0) -> float:
    """95th-percentile Hausdorff distance between two binary masks, in the units of ``spacing`` (mm).

    The larger of the two directed distances' percentiles: from each surface voxel of ``a`` to the nearest
    surface voxel of ``b`` and back (MONAI's and the BraTS challenge's definition). Surface voxels are mask voxels
    with a face neighbour outside the mask. 0.0 when both masks are empty, NaN when only one is (no distance is
    defined; a caller reports it as n/a).

    Parameters
    ----------
    a, b : array
        Binary masks (non-zero = inside) of the same shape, 2-D or 3-D.
    spacing : sequence of float, optional
        Voxel size along each axis (default 1).
    percentile : float
        100 gives the Hausdorff distance.
    """
    from scipy import ndimage

    am = np.asarray(a) != 0
    bm = np.asarray(b) != 0
    if am.shape != bm.shape:
        raise ValueError(f'Arguments "a" and "b" must have the same shape, got {am.shape} and {bm.shape}.')
    if not am.any() and not bm.any():
        return 0.0
    if not am.any() or not bm.any():
        return float("nan")
    sp = np.ones(am.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if sp.shape != (am.ndim,) or not np.all(sp > 0):
        raise ValueError(f'Argument "spacing" must give {am.ndim} positive sizes, got {spacing!r}.')
    sa, sb = _surface(am), _surface(bm)
    to_b = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    to_a = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    return float(max(np.percentile(to_b, percentile), np.percentile(to_a, percentile)))


# -- per slice and per volume -----------------------------------------------------------------------
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
    diff = xs - rs
    if ms is None:
        pad = (int(win_size) - 1) // 2
        ssim_s = _crop(smap, (1, 2), pad).mean(dim=(1, 2))
        mse_s = (diff * diff).mean(dim=(1, 2))
        mae_s = diff.abs().mean(dim=(1, 2))
    else:
        w = ms.to(smap.dtype)
        n = w.sum(dim=(1, 2))
        nan = torch.full_like(n, float("nan"))
        safe = n.clamp(min=1)
        ssim_s = torch.where(n > 0, (smap * w).sum(dim=(1, 2)) / safe, nan)
        mse_s = torch.where(n > 0, (diff * diff * w).sum(dim=(1, 2)) / safe, nan)
        mae_s = torch.where(n > 0, (diff.abs() * w).sum(dim=(1, 2)) / safe, nan)
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
    for other, opath, what in ((synth, s_path, "synthetic volume"), (mask, m_path, "mask")):
        if other is None or not hasattr(other, "same_grid") or not hasattr(ref, "same_grid"):
            continue
        if not ref.same_grid(other):
            raise GeometryMismatchError(
                f"{what} {opath or '(array)'} (shape {other.shape}) is not on the reference's grid "
                f"(shape {ref.shape}); resample one onto the other first",
                r_path,
            )
    if data_range is None:
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
    kw: Mapping[str, Any] = {"data_range": data_range, "mask": m_arr, "device": device}
    return {
        "psnr": psnr(s_arr, r_arr, **kw),
        "ssim": ssim(s_arr, r_arr, spatial_dims=spatial_dims, axis=axis, **kw),
        "mae": mae(s_arr, r_arr, **kw),
        "data_range": float(data_range),
    }
