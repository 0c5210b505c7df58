"""The benchmark's properties, measured on generated subjects (docs/benchmark.md defines each one).

Each function takes phantom subjects (anything with ``images``, ``labels`` and ``brain_mask`` Volumes) and
returns a number the benchmark states a goal for:

- :func:`lookup_transfer`: a per-voxel lookup fitted on one subject's brain, scored on another's. When it scores
  high, a model needs no context; the benchmark wants it low.
- :func:`texture_correlation`: how much fine texture inside white matter one contrast shares with another
  (correlation of the high-pass images after a 3-voxel median). Shared texture is predictable voxel by voxel.
- :func:`rim_edema_auc`: how well the T2 value alone tells the enhancing rim from the oedema (rank AUC, folded
  to >= 0.5). Near 1, a per-voxel mapping recovers the tumour's post-contrast appearance.
- :func:`wm_snr`: white-matter SNR of each contrast, measured from the image (mean over pure white matter,
  noise sigma from the air: ``sqrt(mean(M^2) / 2)`` for Rician magnitude at zero signal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["lookup_transfer", "texture_correlation", "rim_edema_auc", "wm_snr", "measure"]

WM, EDEMA, RIM = 3, 4, 5


def lookup_transfer(fit_on, apply_to, source: str = "T1", target: str = "T2") -> dict[str, float]:
    """PSNR / SSIM of a 256-bin ``source`` -> ``target`` lookup fitted on ``fit_on``'s brain, on ``apply_to``."""
    from ..core.metrics import evaluate_volumes
    from ..training.floors import fit_floors, predict_floor

    model = fit_floors([({source: fit_on.images[source].data}, fit_on.images[target].data,
                         fit_on.brain_mask.data)], (source,), target)
    mask = apply_to.brain_mask.data > 0
    pred = predict_floor(model, "lookup", {source: apply_to.images[source].data}, mask)
    scores = evaluate_volumes(pred, apply_to.images[target].data, mask=mask)
    return {"psnr": scores["psnr"], "ssim": scores["ssim"]}


def _pure_wm(subject, erode: int = 2) -> np.ndarray:
    from scipy import ndimage

    wm = subject.labels.data == WM
    return ndimage.binary_erosion(wm, iterations=erode) if erode else wm


def _high_pass(img: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """3-voxel median minus its local mean (Gaussian, sigma 2 voxels), over ``region`` only when given.

    With a region the mean is a normalised convolution over it, so tissue outside (grey matter next to the
    white matter) does not leak into the measure as a contrast-dependent edge."""
    from scipy import ndimage

    m = ndimage.median_filter(np.asarray(img, dtype=np.float32), size=3)
    if region is None:
        return m - ndimage.gaussian_filter(m, 2.0)
    w = region.astype(np.float32)
    local = ndimage.gaussian_filter(m * w, 2.0) / np.maximum(ndimage.gaussian_filter(w, 2.0), 1e-6)
    return m - local


def texture_correlation(subject, a: str = "T1", b: str = "T2", *, local_mean: str = "image") -> float:
    """Pearson r of the high-pass ``a`` and ``b`` images over pure white matter (eroded by 2 voxels).

    High-pass: the 3-voxel median of the image minus its local mean (Gaussian, sigma 2 voxels). The erosion keeps
    tissue boundaries (partial volume) out of the voxels compared. ``local_mean="image"`` (the benchmark's
    figure, as issue 17 measured it) blurs the whole image, so grey matter within a few voxels of the white
    matter adds an edge term that every contrast shares with its own sign; ``"wm"`` takes the mean over the
    white-matter label only, which leaves texture and noise alone.
    """
    if local_mean not in ("image", "wm"):
        from ..core.errors import UnknownChoiceError

        raise UnknownChoiceError("local mean", local_mean, ("image", "wm"))
    sel = _pure_wm(subject)
    if sel.sum() < 100:
        raise ValueError("fewer than 100 pure white-matter voxels: the grid is too coarse to measure texture")
    region = subject.labels.data == WM if local_mean == "wm" else None
    x = _high_pass(subject.images[a].data, region)[sel].astype(np.float64)
    y = _high_pass(subject.images[b].data, region)[sel].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def rank_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of ``pos`` over ``neg`` (ties count one half)."""
    from scipy import stats

    pos = np.asarray(pos, dtype=np.float64).ravel()
    neg = np.asarray(neg, dtype=np.float64).ravel()
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def rim_edema_auc(subject, contrast: str = "T2") -> float:
    """How well ``contrast`` alone separates enhancing rim (label 5) from oedema (label 4): AUC folded to >= 0.5."""
    lab = subject.labels.data
    img = subject.images[contrast].data
    rim, edema = img[lab == RIM], img[lab == EDEMA]
    if rim.size == 0 or edema.size == 0:
        raise ValueError("the subject has no tumour (no enhancing rim or no oedema voxels)")
    auc = rank_auc(rim, edema)
    return max(auc, 1.0 - auc)


def _air(subject, margin_mm: float = 25.0) -> np.ndarray:
    """Voxels farther than ``margin_mm`` from the brain and above the brain's centre slice: outside the head.

    Above the centre, so that the neck (which the procedural head has) never counts as air."""
    from scipy import ndimage

    brain = subject.brain_mask.data > 0
    dist = ndimage.distance_transform_edt(~brain, sampling=subject.brain_mask.spacing)
    air = dist > margin_mm
    k = np.nonzero(brain.any(axis=(0, 1)))[0]
    if k.size:
        air[:, :, : (k.min() + k.max()) // 2] = False
    return air


def wm_snr(subject, contrasts: Sequence[str] | None = None) -> dict[str, float]:
    """White-matter SNR per contrast: mean over pure WM / the noise sigma measured in the air."""
    sel = _pure_wm(subject, erode=1)
    air = _air(subject)
    if air.sum() < 1000:
        raise ValueError("fewer than 1000 air voxels around the head: cannot measure the noise")
    out = {}
    for c in contrasts or list(subject.images):
        img = subject.images[c].data
        sigma = float(np.sqrt(np.mean(np.square(img[air], dtype=np.float64)) / 2.0))
        out[c] = float(img[sel].mean()) / sigma if sigma > 0 else float("inf")
    return out


def measure(subjects: Sequence) -> dict:
    """The benchmark table for a list of subjects (the lookup needs at least two: fit on k, apply to k + 1).

    Returns a dict of property -> value, each averaged over the subjects it applies to.
    """
    if len(subjects) < 2:
        raise ValueError("at least two subjects are needed (the lookup is fitted on one and applied to another)")
    transfer = [lookup_transfer(a, b) for a, b in zip(subjects, subjects[1:] + subjects[:1])]
    out = {
        "lookup_psnr": float(np.mean([t["psnr"] for t in transfer])),
        "lookup_ssim": float(np.mean([t["ssim"] for t in transfer])),
        "texture_r_T1_T2": float(np.mean([texture_correlation(s) for s in subjects])),
        "texture_r_T1_T2_wm_mean": float(np.mean([texture_correlation(s, local_mean="wm") for s in subjects])),
    }
    tumour = [s for s in subjects if (s.labels.data == RIM).any() and (s.labels.data == EDEMA).any()]
    if tumour:
        out["rim_edema_auc_T2"] = float(np.mean([rim_edema_auc(s) for s in tumour]))
    snrs = [wm_snr(s) for s in subjects]
    for c in snrs[0]:
        out[f"wm_snr_{c}"] = float(np.mean([x[c] for x in snrs]))
    return out
