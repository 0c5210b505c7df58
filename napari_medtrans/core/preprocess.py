"""Intensity normalisation, slicing, padding, and their exact inverse.

Intensity scheme ("percentile")
-------------------------------
Each input volume is mapped to [-1, 1] from its own robust range: ``lo``/``hi`` are the ``lower_pct``/``upper_pct``
percentiles (default 0.5 / 99.5) of its foreground voxels (voxels > 0, or inside a mask when one is given), and
values outside are clipped. A network's output in [-1, 1] is mapped back into the *target contrast's* range, taken
from the statistics stored in the checkpoint (``normalisation["outputs"][modality] = {"lo": ..., "hi": ...}``,
the median of the training targets' robust ranges). Without such statistics the input's own range is used.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["IntensityRange", "robust_range", "normalise", "denormalise", "DEFAULT_PERCENTILES"]

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
