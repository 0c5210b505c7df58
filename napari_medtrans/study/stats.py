"""Statistics on plain arrays for reader studies, each checkable against a published example.

Holm's step-down adjustment (:func:`holm`), Krippendorff's alpha at four levels of measurement
(:func:`krippendorff_alpha`, Krippendorff 2011), Kendall's W with the tie correction (:func:`kendall_w`), ranks
with ties (:func:`rank_with_ties`), Friedman's test (:func:`friedman_test`) and the Wilcoxon signed-rank test,
exact up to :data:`EXACT_MAX` non-zero differences (:func:`wilcoxon_signed_rank`, :func:`wilcoxon_test`).
:mod:`.analysis` applies them to a study and re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..core.errors import StudyError, UnknownChoiceError

__all__ = [
    "LEVELS",
    "EXACT_MAX",
    "holm",
    "krippendorff_alpha",
    "kendall_w",
    "rank_with_ties",
    "friedman_test",
    "wilcoxon_signed_rank",
    "wilcoxon_test",
]

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (monotone, capped at 1); NaN entries stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def krippendorff_alpha(data, level: str = "ordinal") -> float:
    """Krippendorff's alpha for a coders x units matrix with NaN for missing values.

    Parameters
    ----------
    data : array-like, shape (coders, units)
        Numeric values (ordinal categories as numbers; their order is what counts for "ordinal").
    level : {"nominal", "ordinal", "interval", "ratio"}
        The metric of differences (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").

    Returns
    -------
    float
        1 for perfect agreement, 0 for agreement at chance, NaN when there is no pairable unit or every
        value is the same (expected disagreement 0).
    """
    if level not in LEVELS:
        raise UnknownChoiceError("alpha level", level, LEVELS)
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise StudyError(f"krippendorff_alpha expects a 2D coders x units matrix, got shape {x.shape}")
    values = np.unique(x[np.isfinite(x)])
    if len(values) == 0:
        return float("nan")
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = np.zeros((k, k))
    for u in range(x.shape[1]):
        col = x[:, u]
        col = col[np.isfinite(col)]
        m_u = len(col)
        if m_u < 2:
            continue
        counts = np.zeros(k)
        for v in col:
            counts[index[v]] += 1
        pairs = np.outer(counts, counts) - np.diag(counts)
        o += pairs / (m_u - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n <= 1:
        return float("nan")
    if level == "nominal":
        d2 = 1.0 - np.eye(k)
    elif level == "interval":
        d2 = (values[:, None] - values[None, :]) ** 2
    elif level == "ratio":
        s = values[:, None] + values[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            d2 = np.where(s != 0, ((values[:, None] - values[None, :]) / s) ** 2, 0.0)
    else:
        cum = np.cumsum(n_c)
        d2 = np.zeros((k, k))
        for a in range(k):
            for b in range(k):
                lo, hi = min(a, b), max(a, b)
                between = cum[hi] - (cum[lo - 1] if lo > 0 else 0.0)
                d2[a, b] = (between - (n_c[a] + n_c[b]) / 2.0) ** 2
    observed = float((o * d2).sum())
    expected = float((np.outer(n_c, n_c) * d2).sum()) / (n - 1)
    if expected == 0:
        return float("nan")
    return 1.0 - observed / expected


def rank_with_ties(values, *, higher_is_better: bool = True, method: str = "min") -> np.ndarray:
    """Ranks 1..n of ``values`` (1 = best). ``method``: "min" (ties share the best rank, as readers tie)
    or "average" (ties share the mean rank, for statistics)."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    return rankdata(-v if higher_is_better else v, method=method)


def kendall_w(ranks) -> float:
    """Kendall's coefficient of concordance W for an m raters x n objects matrix of ranks (ties allowed).

    Each rater's row is re-ranked with average ranks, and the tie correction
    ``W = 12 S / (m^2 (n^3 - n) - m sum T)`` with ``T = sum (t^3 - t)`` over tie groups is used. NaN when
    undefined (fewer than 2 raters or objects, or every rater tied everything).
    """
    from scipy.stats import rankdata

    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 2:
        raise StudyError(f"kendall_w expects a 2D raters x objects matrix, got shape {r.shape}")
    m, n = r.shape
    if m < 2 or n < 2:
        return float("nan")
    rr = np.vstack([rankdata(row) for row in r])
    totals = rr.sum(axis=0)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = 0.0
    for row in r:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts ** 3 - counts).sum())
    denom = m * m * (n ** 3 - n) - m * ties
    if denom <= 0:
        return float("nan")
    return 12.0 * s / denom


def friedman_test(matrix) -> tuple[float, float]:
    """Friedman chi-square and p-value for a blocks x treatments matrix (NaN, NaN when it cannot be run:
    fewer than 3 treatments or 2 blocks, or no variation at all)."""
    from scipy.stats import friedmanchisquare

    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 3 or x.shape[0] < 2:
        return float("nan"), float("nan")
    if np.all(x == x[:, :1]):
        return 0.0, 1.0
    with np.errstate(all="ignore"):
        stat, p = friedmanchisquare(*x.T)
    return float(stat), float(p)


#: Wilcoxon's exact distribution is used up to this many non-zero differences, the normal one above.
EXACT_MAX = 25


def wilcoxon_signed_rank(a, b, *, exact_max: int = EXACT_MAX) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired samples.

    Zero differences are dropped (Wilcoxon 1945; the ``"wilcox"`` rule), tied absolute differences share
    mid-ranks. With at most ``exact_max`` non-zero differences the p-value is exact: the distribution of W+ over
    the 2^n equally likely sign flips of the mid-ranks, counted on doubled ranks (whole numbers, so ties are
    exact too). Above that, the normal approximation with the tie-corrected variance ``sum(rank^2) / 4`` and no
    continuity correction.

    Returns
    -------
    dict
        n (pairs), n_nonzero, statistic (W+, the rank sum of the positive differences), p, method ("exact" or
        "normal approximation"), rank_biserial ((W+ - W-) / (W+ + W-), an effect size from -1 to 1). p is NaN
        with fewer than 2 pairs.
    """
    from scipy.stats import norm, rankdata

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise StudyError(f"wilcoxon_signed_rank expects two 1D samples of one length, got {x.shape} and {y.shape}")
    out = {"n": int(len(x)), "n_nonzero": 0, "statistic": float("nan"), "p": float("nan"), "method": "",
           "rank_biserial": float("nan")}
    if len(x) < 2:
        return out
    d = x - y
    nz = d[d != 0]
    out["n_nonzero"] = int(len(nz))
    if len(nz) == 0:
        out.update(statistic=0.0, p=1.0, method="exact", rank_biserial=0.0)
        return out
    ranks = rankdata(np.abs(nz))
    w_plus, total = float(ranks[nz > 0].sum()), float(ranks.sum())
    out.update(statistic=w_plus, rank_biserial=(2 * w_plus - total) / total)
    if len(nz) <= exact_max:
        doubled = np.rint(2 * ranks).astype(np.int64)
        counts = np.zeros(int(doubled.sum()) + 1)
        counts[0] = 1.0
        for r in doubled:
            shifted = np.zeros_like(counts)
            shifted[r:] = counts[:-r]
            counts = counts + shifted
        sums = np.arange(len(counts))
        centre = doubled.sum() / 2.0
        extreme = np.abs(sums - centre) >= abs(round(2 * w_plus) - centre)
        out.update(p=float(min(1.0, counts[extreme].sum() / counts.sum())), method="exact")
    else:
        z = (w_plus - total / 2.0) / math.sqrt(float((ranks ** 2).sum()) / 4.0)
        out.update(p=float(2 * norm.sf(abs(z))), method="normal approximation")
    return out


def wilcoxon_test(a, b) -> tuple[float, float]:
    """(W+, two-sided p) of :func:`wilcoxon_signed_rank`; p = 1 when all pairs are equal, NaN below 2 pairs."""
    res = wilcoxon_signed_rank(a, b)
    return res["statistic"], res["p"]
