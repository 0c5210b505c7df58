"""What the inspect panel computes, without Qt: error maps, metrics per volume and per slice, trust vs error.

:func:`inspect_volumes` is a plain function (it runs in a worker); :class:`Inspection` holds its results and
answers the panel's questions (metrics of one slice) without computing anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core.errors import GeometryMismatchError, InvalidVolumeError
from ..core.volume import Volume

__all__ = ["Inspection", "TrustCurve", "inspect_volumes", "trust_curve", "METRICS"]

#: Per-slice metrics the plot can show, with their axis labels.
METRICS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE (fraction of range)"}


@dataclasses.dataclass(frozen=True)
class TrustCurve:
    """Mean absolute error in bins of a trust map's value (TSM probability, or spread across samples).

    ``edges`` has one more entry than ``mean_error`` and ``count``; empty bins hold NaN.
    """

    map_name: str
    edges: np.ndarray
    mean_error: np.ndarray
    count: np.ndarray
    correlation: float

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])


@dataclasses.dataclass
class Inspection:
    """Everything one inspection found.

    Attributes
    ----------
    metrics : dict
        Volume PSNR (dB), SSIM, MAE (fraction of the data range) and the data range (see ``evaluate_volumes``).
    per_slice : dict of str to numpy.ndarray
        The same metrics for every slice along ``axis``.
    axis : int
        The slice axis (the synthetic volume's acquisition axis).
    abs_error, signed_error : Volume
        ``|synthetic - reference|`` and ``synthetic - reference`` on the synthetic volume's grid.
    error_limit : float
        99th percentile of the absolute error (inside the mask): a display range for both error maps.
    trust : TrustCurve or None
        Error against the trust map, when one was given.
    warnings : list of str
        What the user must know to read the numbers (a contrast unknown, an override used; see
        :func:`~napari_medtrans.core.compare.check_comparable`).
    """

    metrics: dict
    per_slice: dict
    axis: int
    abs_error: Volume
    signed_error: Volume
    error_limit: float
    trust: TrustCurve | None = None
    warnings: list = dataclasses.field(default_factory=list)

    def slice_metrics(self, index: int) -> dict[str, float] | None:
        """PSNR/SSIM/MAE of slice ``index`` (None outside the volume)."""
        n = len(next(iter(self.per_slice.values())))
        if not 0 <= index < n:
            return None
        return {k: float(v[index]) for k, v in self.per_slice.items()}


def trust_curve(trust: np.ndarray, error: np.ndarray, mask: np.ndarray | None, name: str, bins: int = 10) -> TrustCurve:
    """Bin ``trust`` into ``bins`` equal-width bins over its range and average ``error`` in each."""
    t = np.asarray(trust, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    if mask is not None:
        t, e = t[mask], e[mask]
    t, e = t.ravel(), e.ravel()
    if t.size == 0:
        raise InvalidVolumeError("the mask is empty: no voxel to relate the trust map to the error")
    lo, hi = float(t.min()), float(t.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, int(bins) + 1)
    which = np.clip(np.digitize(t, edges[1:-1]), 0, int(bins) - 1)
    count = np.bincount(which, minlength=int(bins)).astype(np.int64)
    total = np.bincount(which, weights=e, minlength=int(bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    corr = float(np.corrcoef(t, e)[0, 1]) if t.std() > 0 and e.std() > 0 else float("nan")
    return TrustCurve(name, edges, mean, count, corr)


def inspect_volumes(
    synthetic: Volume,
    reference: Volume,
    mask: Volume | None = None,
    trust: Volume | None = None,
    trust_name: str = "tsm",
    job: Any = None,
    allow_mismatch: bool = False,
) -> Inspection:
    """Compare a synthetic volume with a reference on one grid.

    Parameters
    ----------
    synthetic, reference : Volume
        Same shape and affine, and the same contrast (see :func:`~napari_medtrans.core.compare.check_comparable`).
    mask : Volume, optional
        Non-zero voxels count (e.g. a labels layer: every labelled tissue).
    trust : Volume, optional
        A TSM or spread map on the same grid, related to the absolute error in :class:`TrustCurve`.
    job : Job, optional
        When run as a worker job: progress is reported in four steps.
    allow_mismatch : bool
        Compare different contrasts anyway (the user ticked the override); the result then carries a warning.

    Raises
    ------
    ModalityMismatchError
        The reference is another contrast than the synthetic image (and ``allow_mismatch`` is False).
    GeometryMismatchError
        The volumes are not on one grid (names both).
    """
    from ..core.compare import check_comparable
    from ..core.metrics import evaluate_volumes, slice_metrics
    from ..core.preprocess import acquisition_axis

    def step(i: int) -> None:
        if job is not None:
            job.report_progress(i, 4)

    warnings = check_comparable(synthetic, reference, allow_mismatch=allow_mismatch)
    for other, what in ((reference, "reference"), (mask, "mask"), (trust, "trust map")):
        if other is not None and not synthetic.same_grid(other):
            raise GeometryMismatchError(
                f"the {what} {other.path or ''} (shape {other.shape}) is not on the synthetic volume's grid "
                f"(shape {synthetic.shape}); resample one onto the other first", synthetic.path)
    m = None if mask is None else np.asarray(mask.data) != 0
    metrics = evaluate_volumes(synthetic, reference, None if m is None else m)
    step(1)
    axis = acquisition_axis(synthetic)
    per_slice = slice_metrics(synthetic.data, reference.data, axis, metrics["data_range"], m)
    step(2)
    signed = synthetic.data - reference.data
    absolute = np.abs(signed)
    inside = absolute[m] if m is not None else absolute
    limit = float(np.percentile(inside, 99)) if inside.size else 1.0
    prov = {"of": synthetic.provenance.get("method"), "reference": reference.path}
    abs_vol = synthetic.derive(absolute, modality="abs error", provenance={**prov, "map": "abs error"})
    signed_vol = synthetic.derive(signed, modality="signed error", provenance={**prov, "map": "signed error"})
    step(3)
    curve = None if trust is None else trust_curve(trust.data, absolute, m, trust_name)
    step(4)
    return Inspection(metrics, per_slice, axis, abs_vol, signed_vol, max(limit, 1e-6), curve, warnings)
