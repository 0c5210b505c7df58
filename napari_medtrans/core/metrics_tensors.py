"""Shared input handling of the metrics: numpy or torch in, tensors on one device, checked shapes and range.

Holds the helpers every metric of :mod:`napari_medtrans.core.metrics` starts with: choosing the device and
the float type (float64 wherever it exists, so results agree with scikit-image), turning inputs into tensors,
checking that images and mask match, checking ``data_range``, averaging inside a mask, and giving a map back
as the same kind of array as the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["ArrayLike", "pick_device", "float_dtype", "to_tensor", "prepare", "check_range", "like", "masked_mean"]

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray accepts


def pick_device(arrays: Iterable[Any], device: Any) -> torch.device:
    """``device`` when given, else the device of the first torch tensor among ``arrays``, else the CPU."""
    if device is not None:
        return torch.device(device)
    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def float_dtype(device: torch.device) -> torch.dtype:
    """The float type metrics compute in on ``device``."""
    # float64 wherever it exists, so results agree with scikit-image (which works in float64) to rounding.
    return torch.float32 if device.type == "mps" else torch.float64


def to_tensor(a: ArrayLike, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """``a`` as a detached tensor on ``device`` (of ``dtype`` when given)."""
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if arr.dtype == np.float16 or not arr.dtype.isnative:
            arr = arr.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device=device)


def prepare(x, ref, mask, device):
    """``(x, ref, mask)`` as float tensors and a boolean mask (or None) on one device, shapes checked."""
    dev = pick_device((x, ref, mask), device)
    dt = float_dtype(dev)
    xt = to_tensor(x, dev, dt)
    rt = to_tensor(ref, dev, dt)
    if tuple(xt.shape) != tuple(rt.shape):
        raise ValueError(f'Arguments "x" and "ref" must have the same shape, got {tuple(xt.shape)} and {tuple(rt.shape)}.')
    if xt.ndim not in (2, 3):
        raise ValueError(f'Arguments "x" and "ref" must be 2D slices or 3D volumes, got {xt.ndim}D of shape {tuple(xt.shape)}.')
    mt = None
    if mask is not None:
        mt = to_tensor(mask, dev, None)
        if tuple(mt.shape) != tuple(xt.shape):
            raise ValueError(f'Argument "mask" must have the image shape {tuple(xt.shape)}, got {tuple(mt.shape)}.')
        mt = mt != 0
    return xt, rt, mt


def check_range(data_range) -> float:
    """``data_range`` as a positive finite float; TypeError when missing, ValueError when not usable."""
    if data_range is None:
        raise TypeError('Argument "data_range" is required (the span of possible intensities, e.g. ref.max() - ref.min()).')
    r = float(data_range)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f'Argument "data_range" must be a positive finite number, got {data_range!r}.')
    return r


def like(result: torch.Tensor, template: Any):
    """Return ``result`` as the same kind of array as ``template`` (numpy in, numpy out)."""
    if isinstance(template, torch.Tensor):
        return result
    return result.cpu().numpy()


def masked_mean(t: torch.Tensor, mask: torch.Tensor | None, what: str) -> float:
    """Mean of ``t`` (inside ``mask`` when given); ValueError naming ``what`` for an empty mask."""
    if mask is None:
        return float(t.mean())
    n = int(mask.sum())
    if n == 0:
        raise ValueError(f'Argument "mask" is empty: cannot average {what} over no voxels.')
    return float(t[mask].mean())
