"""Zero-parameter floors: what a translation scores without learning anything about anatomy.

Every figure a model card or results table reports stands next to these, on the same subjects
(../shared/ARCHITECTURE.md, "Baselines and floors"). None of them sees the test subject's target image; all
three are fitted on the *training* subjects only, from the same inputs a model gets.

``identity``
    The input itself, linearly rescaled: the input normalised as a model's input is (per-volume 0.5-99.5
    percentile range of the foreground to [-1, 1], :func:`~napari_medtrans.core.preprocess.robust_range`),
    then mapped onto the median intensity range of the training targets. With several inputs, the one whose
    brain voxels correlate best (Spearman, signed) with the target on the training subjects.
``histogram``
    Unpaired histogram mapping by rank: the test subject's brain voxels, ordered by the input, receive the
    quantiles of the pooled brain-voxel histogram of the training targets, in reversed order when input and
    target are anti-correlated on the training subjects (T1 -> T2). With several inputs, the one with the largest
    absolute correlation. It uses no pairing of voxels, only the direction of the correlation.
``lookup``
    A per-voxel lookup table: the mean training target in each bin of the normalised input (256 bins for one
    input, 64 x 64 joint bins for two, 16 per input beyond), fitted on the brain voxels of the training subjects.
    Empty bins take the value of the nearest filled bin. It is the best any model can do that looks at one voxel
    and nothing around it (up to the bin width).

Choices where nothing prescribes them: every floor predicts inside the brain mask (the region every metric is
computed on) and writes 0 outside it; the correlations and the pooled histogram use at most 200 000 brain voxels
per training subject, drawn with a fixed seed, so a fit is deterministic and takes a few seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..core.preprocess import normalise, robust_range

__all__ = ["FLOORS", "FloorModel", "fit_floors", "predict_floor", "normalised_input"]

FLOORS = ("identity", "histogram", "lookup")

_MAX_VOXELS = 200_000
_N_QUANTILES = 4096


def _bins_per_input(n_inputs: int) -> int:
    return {1: 256, 2: 64}.get(n_inputs, 16)


def normalised_input(data: np.ndarray) -> np.ndarray:
    """The input as a model sees it: the foreground's 0.5-99.5 percentile range mapped to [-1, 1]."""
    data = np.asarray(data, dtype=np.float32)
    return normalise(data, robust_range(data))


@dataclasses.dataclass
class FloorModel:
    """The three floors for one direction (``inputs`` -> ``output``), fitted on training subjects.

    Attributes
    ----------
    inputs, output : modality names.
    correlation : Spearman correlation of each input with the target over training brain voxels.
    target_range : (lo, hi), the median robust range of the training targets (identity's output scale).
    quantiles : pooled training-target quantiles inside the brain (histogram floor).
    table : lookup table, one axis of ``bins`` per input (mean target per bin).
    n_subjects : how many training subjects were used.
    """

    inputs: tuple[str, ...]
    output: str
    correlation: tuple[float, ...]
    target_range: tuple[float, float]
    quantiles: np.ndarray
    table: np.ndarray
    n_subjects: int

    @property
    def bins(self) -> int:
        return int(self.table.shape[0])

    def identity_input(self) -> int:
        return int(np.argmax(self.correlation))

    def histogram_input(self) -> int:
        return int(np.argmax(np.abs(self.correlation)))


def _bin_index(x: np.ndarray, bins: int) -> np.ndarray:
    return np.clip(((x + 1.0) * 0.5 * bins).astype(np.int64), 0, bins - 1)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def fit_floors(
    subjects: Iterable[tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray]],
    inputs: Sequence[str],
    output: str,
    *,
    seed: int = 0,
) -> FloorModel:
    """Fit the three floors on training subjects.

    Parameters
    ----------
    subjects : iterable of (inputs, target, mask)
        ``inputs`` maps each modality of ``inputs`` to its raw volume; ``target`` is the raw target volume and
        ``mask`` the brain mask (non-zero inside), all on one grid.
    inputs, output : modality names of the direction.
    seed : int
        Seed of the voxel subsample.

    Raises
    ------
    ValueError
        No subject, or no brain voxel in any of them.
    """
    inputs = tuple(inputs)
    bins = _bins_per_input(len(inputs))
    sums = np.zeros((bins,) * len(inputs), dtype=np.float64)
    counts = np.zeros_like(sums)
    rng = np.random.default_rng(seed)
    samples_x: list[np.ndarray] = []
    samples_y: list[np.ndarray] = []
    ranges: list[tuple[float, float]] = []
    n = 0
    for images, target, mask in subjects:
        inside = np.asarray(mask) > 0
        if not inside.any():
            continue
        n += 1
        target = np.asarray(target, dtype=np.float32)
        tr = robust_range(target)
        ranges.append((tr.lo, tr.hi))
        xs = np.stack([normalised_input(images[m])[inside] for m in inputs])
        y = target[inside].astype(np.float64)
        idx = np.ravel_multi_index(tuple(_bin_index(x, bins) for x in xs), sums.shape)
        sums.ravel()[:] += np.bincount(idx, weights=y, minlength=sums.size)
        counts.ravel()[:] += np.bincount(idx, minlength=sums.size)
        take = rng.permutation(y.size)[:_MAX_VOXELS]
        samples_x.append(xs[:, take])
        samples_y.append(y[take])
    if n == 0:
        raise ValueError("no training subject with brain voxels to fit the floors on")
    x_all = np.concatenate(samples_x, axis=1)
    y_all = np.concatenate(samples_y)
    corr = tuple(_spearman(x_all[i], y_all) for i in range(len(inputs)))
    quantiles = np.quantile(y_all, np.linspace(0.0, 1.0, _N_QUANTILES)).astype(np.float32)
    table = _fill_empty(sums, counts).astype(np.float32)
    lo, hi = np.median(np.asarray(ranges), axis=0)
    return FloorModel(inputs=inputs, output=output, correlation=corr, target_range=(float(lo), float(hi)),
                      quantiles=quantiles, table=table, n_subjects=n)


def _fill_empty(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean per bin; an empty bin takes the mean of the nearest filled bin (Euclidean in bin units)."""
    filled = counts > 0
    mean = np.where(filled, sums / np.maximum(counts, 1), 0.0)
    if filled.all() or not filled.any():
        return mean
    from scipy import ndimage

    nearest = ndimage.distance_transform_edt(~filled, return_distances=False, return_indices=True)
    return mean[tuple(nearest)]


def predict_floor(model: FloorModel, kind: str, images: Mapping[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """The floor ``kind`` (one of :data:`FLOORS`) for one subject: a float32 volume, 0 outside ``mask``."""
    if kind not in FLOORS:
        from ..core.errors import UnknownChoiceError

        raise UnknownChoiceError("floor", kind, FLOORS)
    inside = np.asarray(mask) > 0
    first = np.asarray(images[model.inputs[0]])
    out = np.zeros(first.shape, dtype=np.float32)
    if not inside.any():
        return out
    if kind == "identity":
        x = normalised_input(images[model.inputs[model.identity_input()]])[inside]
        lo, hi = model.target_range
        out[inside] = lo + (x + 1.0) * 0.5 * (hi - lo)
    elif kind == "histogram":
        i = model.histogram_input()
        x = np.asarray(images[model.inputs[i]], dtype=np.float32)[inside]
        order = np.argsort(x, kind="stable")
        if model.correlation[i] < 0:
            order = order[::-1]
        q = np.interp(np.linspace(0.0, 1.0, x.size), np.linspace(0.0, 1.0, model.quantiles.size),
                      model.quantiles)
        vals = np.empty(x.size, dtype=np.float32)
        vals[order] = q
        out[inside] = vals
    else:
        idx = tuple(_bin_index(normalised_input(images[m])[inside], model.bins) for m in model.inputs)
        out[inside] = model.table[idx]
    return out
