"""Overlap and surface-distance metrics of masks: Dice, IoU, volume similarity and HD95.

Holds the mask comparisons of :mod:`napari_medtrans.core.metrics` (which re-exports them). Dice, IoU and
volume similarity work on binary masks (any non-zero voxel is foreground) or per label (``labels=``); when
both masks are empty they agree perfectly (1.0), when only one is empty they are 0.0. :func:`hd95` is the
95th-percentile symmetric surface distance, in the units of the voxel spacing.
"""

from __future__ import annotations

import numpy as np
import torch

from .metrics_tensors import ArrayLike, pick_device, to_tensor

__all__ = ["dice", "iou", "volume_similarity", "hd95"]


def _label_counts(a, b, label) -> tuple[int, int, int]:
    """Voxel counts |A|, |B|, |A and B| for one label (None: any non-zero voxel)."""
    dev = pick_device((a, b), None)
    at = to_tensor(a, dev, None)
    bt = to_tensor(b, dev, None)
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
    # Every surface voxel lies inside the masks' joint bounding box; the distance transforms need no more than
    # that box (grown by one voxel, so that erosion sees the same neighbourhood): the same distances, computed on
    # the tumour's box instead of the whole head (about 10x faster for a tumour in a brain volume).
    (box,) = ndimage.find_objects((am | bm).astype(np.uint8))
    box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, am.shape))
    am, bm = am[box], bm[box]
    sa, sb = _surface(am), _surface(bm)
    to_b = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    to_a = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    return float(max(np.percentile(to_b, percentile), np.percentile(to_a, percentile)))
