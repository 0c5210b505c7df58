"""Intensity normalisation, slicing, padding, and their exact inverse.

Intensity scheme ("percentile")
-------------------------------
Each input volume is mapped to [-1, 1] from its own robust range: ``lo``/``hi`` are the ``lower_pct``/``upper_pct``
percentiles (default 0.5 / 99.5) of its foreground voxels (voxels > 0, or inside a mask when one is given), and
values outside are clipped. A network's output in [-1, 1] is mapped back into the *target contrast's* range, taken
from the statistics stored in the checkpoint (``normalisation["outputs"][modality] = {"lo": ..., "hi": ...}``,
the median of the training targets' robust ranges). Without such statistics the input's own range is used.
:func:`intensity_spec_from` reads that ``normalisation`` dictionary (as stored in a checkpoint) into an
:class:`IntensitySpec`.

Slicing
-------
Translators work on 2D slices. :func:`acquisition_axis` picks the axis slices are taken along (the acquired
plane, where in-plane resolution is best); :func:`to_slices` moves it first (``[N, H, W]``) and
:func:`from_slices` is its exact inverse. A slice of a volume indexed ``(i, j, k)`` taken along ``k`` has rows
along ``i`` and columns along ``j``.

Fitting slices to a model
-------------------------
:func:`fit_to_model` pads a batch ``[B, C, H, W]`` (constant -1, the background of the [-1, 1] scheme, centred)
to the spec's fixed ``image_size``, or to the next multiple of its ``size_multiple``. Only when a slice is larger
than a fixed ``image_size`` is it resized: shrunk with area averaging (anti-aliased) by one factor for both axes
so the aspect ratio is kept, then padded. :func:`unfit` undoes it: it removes the padding and, if the slice was
shrunk, resizes bilinearly (or nearest-neighbour for label maps) back to the original ``H x W``. Padding alone is
undone exactly, voxel for voxel; a resize is undone exactly in shape, approximately in value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UnknownChoiceError

__all__ = [
    "IntensityRange",
    "robust_range",
    "normalise",
    "denormalise",
    "DEFAULT_PERCENTILES",
    "IntensitySpec",
    "intensity_spec_from",
    "acquisition_axis",
    "to_slices",
    "from_slices",
    "FitInfo",
    "fit_to_model",
    "unfit",
    "PAD_VALUE",
    "FOREGROUND_LEVEL",
]

#: Value used to pad slices: the background of the [-1, 1] intensity scheme.
PAD_VALUE = -1.0

#: A normalised pixel above this value in [-1, 1] (2.5 % of the range) is foreground: the slice datasets' test and
#: the histogram base's background (``translators.histogram_base``).
FOREGROUND_LEVEL = -0.95

DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclasses.dataclass(frozen=True)
class IntensityRange:
    """A robust intensity range and the percentiles it was taken at."""

    lo: float
    hi: float
    lower_pct: float = DEFAULT_PERCENTILES[0]
    upper_pct: float = DEFAULT_PERCENTILES[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def robust_range(
    data: np.ndarray,
    *,
    lower_pct: float = DEFAULT_PERCENTILES[0],
    upper_pct: float = DEFAULT_PERCENTILES[1],
    mask: np.ndarray | None = None,
) -> IntensityRange:
    """Percentile range of the foreground (``mask``, else voxels > 0, else all voxels).

    The lower bound is never above 0 for non-negative MR magnitude data, so background stays at -1.
    """
    if not 0 <= lower_pct < upper_pct <= 100:
        raise ValueError(f'Arguments "lower_pct"/"upper_pct" must satisfy 0 <= lower < upper <= 100, got {lower_pct}, {upper_pct}.')
    data = np.asarray(data)
    if mask is not None:
        vals = data[np.asarray(mask) > 0]
    else:
        vals = data[data > 0]
    if vals.size == 0:
        vals = data.reshape(-1)
    # Subsample huge volumes: percentiles of 2M voxels are accurate to far below display precision.
    if vals.size > 2_000_000:
        vals = vals[:: vals.size // 2_000_000 + 1]
    lo, hi = np.percentile(vals, [lower_pct, upper_pct])
    lo = float(min(lo, 0.0)) if float(data.min()) >= 0 else float(lo)
    hi = float(hi)
    if hi <= lo:
        hi = lo + 1.0
    return IntensityRange(lo=lo, hi=hi, lower_pct=lower_pct, upper_pct=upper_pct)


def normalise(data: np.ndarray, rng: IntensityRange) -> np.ndarray:
    """Map ``[rng.lo, rng.hi]`` to [-1, 1] (clipped), float32."""
    out = (np.asarray(data, dtype=np.float32) - np.float32(rng.lo)) * np.float32(2.0 / (rng.hi - rng.lo)) - 1.0
    return np.clip(out, -1.0, 1.0, out=out)


def denormalise(x: np.ndarray, rng: IntensityRange) -> np.ndarray:
    """Inverse of :func:`normalise` for values in [-1, 1]: map back to ``[rng.lo, rng.hi]``, float32."""
    x = np.asarray(x, dtype=np.float32)
    return (x + 1.0) * np.float32((rng.hi - rng.lo) / 2.0) + np.float32(rng.lo)


# -- normalisation statistics of a checkpoint --------------------------------------------------------
SCHEMES = ("percentile",)


@dataclasses.dataclass(frozen=True)
class IntensitySpec:
    """How a translator wants its inputs normalised and its outputs mapped back.

    Attributes
    ----------
    scheme : str
        Only "percentile" (see the module notes).
    lower_pct, upper_pct : float
        Percentiles of each input volume's foreground mapped to -1 and 1.
    outputs : dict of str to IntensityRange
        Per output modality, the intensity range [-1, 1] is mapped back into. Missing modalities fall back to
        the input's own range.
    """

    scheme: str = "percentile"
    lower_pct: float = DEFAULT_PERCENTILES[0]
    upper_pct: float = DEFAULT_PERCENTILES[1]
    outputs: Mapping[str, IntensityRange] = dataclasses.field(default_factory=dict)

    def input_range(self, data: np.ndarray, mask: np.ndarray | None = None) -> IntensityRange:
        """The robust range of one input volume under this spec."""
        return robust_range(data, lower_pct=self.lower_pct, upper_pct=self.upper_pct, mask=mask)

    def output_range(self, modality: str | None, fallback: IntensityRange) -> IntensityRange:
        """The range to map an output of ``modality`` into: the stored statistics, else ``fallback``."""
        from .volume import normalise_modality

        key = normalise_modality(modality)
        for name, rng in self.outputs.items():
            if normalise_modality(name) == key:
                return rng
        return fallback

    def to_dict(self) -> dict:
        """The checkpoint form read back by :func:`intensity_spec_from`."""
        return {
            "scheme": self.scheme,
            "lower_pct": self.lower_pct,
            "upper_pct": self.upper_pct,
            "outputs": {k: {"lo": v.lo, "hi": v.hi} for k, v in self.outputs.items()},
        }


def intensity_spec_from(normalisation: Mapping[str, Any] | None) -> IntensitySpec:
    """Read a checkpoint's ``normalisation`` dictionary.

    Parameters
    ----------
    normalisation : dict or None
        ``{"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
        "outputs": {"T2": {"lo": 0.0, "hi": 812.0}}}``; every key is optional. None gives the defaults with no
        output statistics.

    Returns
    -------
    IntensitySpec

    Raises
    ------
    UnknownChoiceError
        For a scheme other than "percentile".
    ValueError
        For percentiles outside 0..100 or an output range with ``hi <= lo`` or non-numbers.
    """
    if normalisation is None:
        return IntensitySpec()
    if not isinstance(normalisation, Mapping):
        raise TypeError(f'Argument "normalisation" must be a dict or None, got {type(normalisation).__name__}.')
    scheme = str(normalisation.get("scheme", "percentile"))
    if scheme not in SCHEMES:
        raise UnknownChoiceError("normalisation scheme", scheme, SCHEMES)
    lower = float(normalisation.get("lower_pct", DEFAULT_PERCENTILES[0]))
    upper = float(normalisation.get("upper_pct", DEFAULT_PERCENTILES[1]))
    if not 0 <= lower < upper <= 100:
        raise ValueError(f'normalisation "lower_pct"/"upper_pct" must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}.')
    outputs = {}
    for name, stats in dict(normalisation.get("outputs") or {}).items():
        try:
            lo, hi = float(stats["lo"]), float(stats["hi"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f'normalisation "outputs"[{name!r}] must be {{"lo": number, "hi": number}}, got {stats!r}'
            ) from exc
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f'normalisation "outputs"[{name!r}] needs finite lo < hi, got lo={lo}, hi={hi}.')
        outputs[str(name)] = IntensityRange(lo=lo, hi=hi, lower_pct=lower, upper_pct=upper)
    return IntensitySpec(scheme=scheme, lower_pct=lower, upper_pct=upper, outputs=outputs)


# -- slicing ---------------------------------------------------------------------------------------
def acquisition_axis(volume: Any) -> int:
    """The axis (0, 1 or 2) along which a volume's slices were acquired.

    For a DICOM-sourced :class:`~napari_medtrans.core.volume.Volume` it is ``k`` (2): the reader stacks the
    acquired images along ``k``. Otherwise it is the axis with the largest voxel spacing (the through-plane
    axis of a 2D acquisition); ties go to ``k``, then ``j``.

    Parameters
    ----------
    volume : Volume
        Anything with ``spacing`` (and optionally ``source.kind``).

    Returns
    -------
    int
    """
    source = getattr(volume, "source", None)
    if source is not None and getattr(source, "kind", None) == "dicom":
        return 2
    spacing = getattr(volume, "spacing", None)
    if spacing is None:
        raise TypeError(f'Argument "volume" must be a Volume (with a spacing), got {type(volume).__name__}.')
    sp = [float(s) for s in spacing]
    top = max(sp)
    # Voxel sizes from a float affine differ in the last digits; treat them as ties.
    return max(i for i, s in enumerate(sp) if s >= top * (1 - 1e-4))


def _check_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f'Argument "axis" must be an integer in [-{ndim}, {ndim - 1}], got {axis!r}.')
    return int(axis) % ndim


def to_slices(data, axis: int):
    """Slices of a 3D array along ``axis`` as ``[N, H, W]`` (a view: no copy).

    Parameters
    ----------
    data : ndarray or tensor
        3D array.
    axis : int
        The slice axis.

    Returns
    -------
    ndarray or tensor
        ``data`` with ``axis`` moved first; :func:`from_slices` undoes it exactly.
    """
    if data.ndim != 3:
        raise ValueError(f'Argument "data" must be 3D, got shape {tuple(data.shape)}.')
    axis = _check_axis(axis, 3)
    if isinstance(data, torch.Tensor):
        return data.movedim(axis, 0)
    return np.moveaxis(np.asarray(data), axis, 0)


def from_slices(slices, axis: int):
    """Exact inverse of :func:`to_slices`: move the first axis of ``[N, H, W]`` back to ``axis`` (a view)."""
    if slices.ndim != 3:
        raise ValueError(f'Argument "slices" must be [N, H, W], got shape {tuple(slices.shape)}.')
    axis = _check_axis(axis, 3)
    if isinstance(slices, torch.Tensor):
        return slices.movedim(0, axis)
    return np.moveaxis(np.asarray(slices), 0, axis)


# -- fitting slices to a model ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FitInfo:
    """What :func:`fit_to_model` did, so that :func:`unfit` can undo it.

    Attributes
    ----------
    original : (int, int)
        H, W of the slices before fitting.
    resized : (int, int)
        H, W after the (optional) shrink; equal to ``original`` when nothing was resized.
    padding : (int, int, int, int)
        Rows added at the top and bottom, columns at the left and right.
    fitted : (int, int)
        H, W handed to the model.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    padding: tuple[int, int, int, int]
    fitted: tuple[int, int]

    @property
    def was_resized(self) -> bool:
        return self.resized != self.original


def _as_batch_tensor(batch, name: str) -> tuple[torch.Tensor, bool]:
    is_numpy = not isinstance(batch, torch.Tensor)
    t = torch.from_numpy(np.asarray(batch)) if is_numpy else batch
    if t.ndim != 4:
        raise ValueError(f'Argument "{name}" must be a batch [B, C, H, W], got shape {tuple(t.shape)}.')
    return t, is_numpy


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def fit_to_model(batch, spec: Any, *, pad_value: float = PAD_VALUE):
    """Pad (and if need be shrink) a batch of slices to the size a translator accepts.

    Parameters
    ----------
    batch : tensor or ndarray
        ``[B, C, H, W]`` in [-1, 1].
    spec : TranslatorSpec
        Uses ``image_size`` (fixed H, W or None) and ``size_multiple``.
    pad_value : float
        Constant for the padding (default -1, background).

    Returns
    -------
    (tensor or ndarray, FitInfo)
        The fitted batch (same kind as the input) and what was done to it. A slice already of the right size is
        returned as is (no copy).
    """
    t, is_numpy = _as_batch_tensor(batch, "batch")
    h, w = int(t.shape[-2]), int(t.shape[-1])
    mult = int(getattr(spec, "size_multiple", 1) or 1)
    image_size = getattr(spec, "image_size", None)
    if image_size is not None:
        th, tw = (int(s) for s in image_size)
        if h > th or w > tw:
            scale = min(th / h, tw / w)
            rh, rw = max(1, min(th, round(h * scale))), max(1, min(tw, round(w * scale)))
            t = F.interpolate(t if t.is_floating_point() else t.float(), size=(rh, rw), mode="area")
        else:
            rh, rw = h, w
    else:
        rh, rw = h, w
        th, tw = _round_up(h, mult), _round_up(w, mult)
    top, left = (th - rh) // 2, (tw - rw) // 2
    padding = (top, th - rh - top, left, tw - rw - left)
    if any(padding):
        t = F.pad(t, (padding[2], padding[3], padding[0], padding[1]), mode="constant", value=pad_value)
    info = FitInfo(original=(h, w), resized=(rh, rw), padding=padding, fitted=(th, tw))
    return (t.numpy() if is_numpy else t), info


def unfit(batch, info: FitInfo, *, mode: str = "bilinear"):
    """Exact inverse of :func:`fit_to_model`: crop the padding and undo any shrink.

    Parameters
    ----------
    batch : tensor or ndarray
        ``[B, C, H, W]`` at ``info.fitted`` size (any number of channels: images and maps alike).
    info : FitInfo
        As returned by :func:`fit_to_model`.
    mode : {"bilinear", "nearest"}
        How a shrunk slice is enlarged back: "bilinear" for images and continuous maps, "nearest" for labels.
        Unused when nothing was resized.

    Returns
    -------
    tensor or ndarray
        ``[B, C, *info.original]``, a view when only padding was removed.
    """
    if mode not in ("bilinear", "nearest"):
        raise UnknownChoiceError("resize mode", mode, ("bilinear", "nearest"))
    t, is_numpy = _as_batch_tensor(batch, "batch")
    if tuple(int(s) for s in t.shape[-2:]) != tuple(info.fitted):
        raise ValueError(
            f'Argument "batch" has slices of {tuple(t.shape[-2:])}, but the fit produced {tuple(info.fitted)}.'
        )
    top, _, left, _ = info.padding
    rh, rw = info.resized
    t = t[..., top : top + rh, left : left + rw]
    if info.was_resized:
        dtype = t.dtype
        src = t if t.is_floating_point() else t.float()
        kw = {"align_corners": False} if mode == "bilinear" else {}
        t = F.interpolate(src, size=info.original, mode=mode, **kw)
        if not dtype.is_floating_point:
            t = t.round().to(dtype)
    return t.numpy() if is_numpy else t
