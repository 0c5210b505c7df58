"""Analysis of a reader study: scores per method, tests between methods, agreement between readers.

* mean +- sd per method and criterion (every reader's latest answer for every case);
* Friedman test per criterion over blocks (reader, case) that have an answer for every method, then pairwise
  Wilcoxon signed-rank tests on the same blocks with Holm's step-down correction;
* inter-rater agreement: Krippendorff's alpha (ordinal for scales, nominal for acquired-or-generated; units
  are the candidate images, coders the readers) and Kendall's W for rankings (per case, with the tie
  correction), summarised over cases;
* rank distributions as in HiFi-Syn Fig. 6: within each block the methods are ranked (ties share the best
  rank) by a scale criterion, or taken as the reader ranked them, and the ranks are counted per method;
* realism (a visual Turing test): per method, how often readers judged the image acquired, and how often they
  were right.

The statistics are plain functions on arrays (:func:`krippendorff_alpha`, :func:`kendall_w`, :func:`holm`)
so that they can be checked against published examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np

from ..errors import StudyError, UnknownChoiceError
from .model import REAL

__all__ = [
    "holm",
    "krippendorff_alpha",
    "kendall_w",
    "rank_with_ties",
    "friedman_test",
    "wilcoxon_test",
    "ScoreRecord",
    "StudyAnalysis",
    "collect_records",
    "analyse",
    "analyse_records",
]

LEVELS = ("nominal", "ordinal", "interval", "ratio")


# -- statistics on arrays ---------------------------------------------------------------------------------
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


def wilcoxon_test(a, b) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test on paired samples (statistic, p); p = 1 when all pairs are equal."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 1:
        return float("nan"), float("nan")
    if np.all(a == b):
        return 0.0, 1.0
    with np.errstate(all="ignore"):
        res = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


# -- the study ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ScoreRecord:
    """One answer that counts, unblinded: reader, case id, image code, method, criterion, value, confidence,
    seconds spent."""

    reader: str
    case: str
    image: str
    method: str
    criterion: str
    value: float
    confidence: int | None = None
    seconds: float | None = None


@dataclasses.dataclass
class StudyAnalysis:
    """Everything :func:`analyse` computes (tables are lists of dicts, ready for CSV and HTML).

    Attributes
    ----------
    methods : list of str
        Candidate methods ("real" first when present).
    criteria : list of Criterion
    readers, cases : list of str
    summary : list of dict
        method, criterion, n, mean, sd.
    friedman : list of dict
        criterion, blocks, chi2, p.
    pairwise : list of dict
        criterion, method_a, method_b, n, mean_difference, statistic, p, p_holm.
    agreement : list of dict
        criterion, statistic ("krippendorff_alpha_ordinal", "krippendorff_alpha_nominal", "kendall_w_mean"),
        value, n (units or cases), detail.
    realism : list of dict
        method, n, judged_acquired, accuracy, mean_confidence.
    rank_distribution : dict
        criterion -> method -> counts of rank 1..len(methods).
    records : list of ScoreRecord
    """

    methods: list
    criteria: list
    readers: list
    cases: list
    summary: list
    friedman: list
    pairwise: list
    agreement: list
    realism: list
    rank_distribution: dict
    records: list
    title: str = ""

    def mean(self, method: str, criterion: str) -> float:
        """The mean of one method on one criterion (NaN when unanswered)."""
        for row in self.summary:
            if row["method"] == method and row["criterion"] == criterion:
                return row["mean"]
        return float("nan")


def collect_records(store) -> list[ScoreRecord]:
    """Every reader's latest answers, unblinded with the store's key (organiser's database only)."""
    key = store.key()
    out = []
    for row in store.latest_scores():
        k = key.get(row.image_code)
        if k is None:
            raise StudyError(f"score {row.uid} names image {row.image_code!r}, which the key does not know",
                             store.where)
        out.append(ScoreRecord(row.reader_key, k.case_id, row.image_code, k.method, row.criterion, row.value,
                               row.confidence, row.seconds))
    return out


def analyse(store) -> StudyAnalysis:
    """Analyse the study in ``store`` (see the module notes); raises StudyError on a blinded copy."""
    return analyse_records(collect_records(store), store.criteria(), store.methods(), title=store.info()["title"])


def _blocks(records: Sequence[ScoreRecord], criterion: str, methods: Sequence[str]) -> tuple[list, np.ndarray]:
    """(reader, case) blocks answering ``criterion`` for every method, and their blocks x methods values."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        if r.criterion == criterion:
            table.setdefault((r.reader, r.case), {})[r.method] = r.value
    keys = sorted(k for k, v in table.items() if all(m in v for m in methods))
    matrix = np.array([[table[k][m] for m in methods] for k in keys], dtype=np.float64).reshape(len(keys),
                                                                                               len(methods))
    return keys, matrix


def analyse_records(records: Sequence[ScoreRecord], criteria: Sequence, methods: Sequence[str],
                    title: str = "") -> StudyAnalysis:
    """The analysis of already unblinded records (see :func:`analyse`)."""
    methods = list(methods)
    readers = sorted({r.reader for r in records})
    cases = sorted({r.case for r in records})
    summary, friedman, pairwise, agreement, realism = [], [], [], [], []
    rank_distribution: dict[str, dict[str, list[int]]] = {}
    for crit in criteria:
        recs = [r for r in records if r.criterion == crit.name]
        for m in methods:
            v = np.array([r.value for r in recs if r.method == m], dtype=np.float64)
            summary.append({"method": m, "criterion": crit.name, "n": int(len(v)),
                            "mean": float(v.mean()) if len(v) else float("nan"),
                            "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan")})
        if crit.kind == "realism":
            for m in methods:
                mine = [r for r in recs if r.method == m]
                if not mine:
                    continue
                acquired = np.array([r.value for r in mine]) == 1.0
                truth = m == REAL
                conf = [r.confidence for r in mine if r.confidence is not None]
                realism.append({"method": m, "n": len(mine), "judged_acquired": float(acquired.mean()),
                                "accuracy": float((acquired == truth).mean()),
                                "mean_confidence": float(np.mean(conf)) if conf else float("nan")})
            units = sorted({r.image for r in recs})
            agreement.append(_alpha(recs, readers, units, "nominal", crit.name))
            continue
        keys, matrix = _blocks(recs, crit.name, methods)
        higher = crit.kind == "scale"
        stat, p = friedman_test(matrix if higher else -matrix)
        friedman.append({"criterion": crit.name, "blocks": len(keys), "chi2": stat, "p": p})
        rows = []
        for i, j in itertools.combinations(range(len(methods)), 2):
            if len(keys) == 0:
                continue
            s, pv = wilcoxon_test(matrix[:, i], matrix[:, j])
            rows.append({"criterion": crit.name, "method_a": methods[i], "method_b": methods[j], "n": len(keys),
                         "mean_difference": float((matrix[:, i] - matrix[:, j]).mean()), "statistic": s, "p": pv})
        for row, adj in zip(rows, holm([r["p"] for r in rows])):
            row["p_holm"] = float(adj)
        pairwise += rows
        counts = {m: [0] * len(methods) for m in methods}
        for block in matrix:
            ranks = rank_with_ties(block, higher_is_better=higher) if higher else block
            for m, rank in zip(methods, ranks):
                if 1 <= int(rank) <= len(methods):
                    counts[m][int(rank) - 1] += 1
        rank_distribution[crit.name] = counts
        if crit.kind == "scale":
            units = sorted({r.image for r in recs})
            agreement.append(_alpha(recs, readers, units, "ordinal", crit.name))
        else:
            agreement.append(_kendall(recs, crit.name))
    return StudyAnalysis(methods, list(criteria), readers, cases, summary, friedman, pairwise, agreement,
                         realism, rank_distribution, list(records), title)


def _alpha(recs, readers, units, level, name) -> dict:
    ri = {r: i for i, r in enumerate(readers)}
    ui = {u: i for i, u in enumerate(units)}
    x = np.full((len(readers), len(units)), np.nan)
    for r in recs:
        x[ri[r.reader], ui[r.image]] = r.value
    pairable = int((np.isfinite(x).sum(axis=0) >= 2).sum())
    value = krippendorff_alpha(x, level) if len(readers) >= 2 else float("nan")
    return {"criterion": name, "statistic": f"krippendorff_alpha_{level}", "value": value, "n": pairable,
            "detail": f"{pairable} images answered by 2+ of {len(readers)} readers"}


def _kendall(recs, name) -> dict:
    by_case: dict[str, dict[str, dict[str, float]]] = {}
    for r in recs:
        by_case.setdefault(r.case, {}).setdefault(r.reader, {})[r.image] = r.value
    ws = []
    for case, per_reader in by_case.items():
        images = sorted({i for v in per_reader.values() for i in v})
        rows = [[v[i] for i in images] for v in per_reader.values() if all(i in v for i in images)]
        w = kendall_w(np.array(rows)) if len(rows) >= 2 else float("nan")
        if math.isfinite(w):
            ws.append(w)
    value = float(np.mean(ws)) if ws else float("nan")
    detail = (f"mean over {len(ws)} cases ranked by 2+ readers (median {np.median(ws):.3f})" if ws
              else "no case ranked by 2+ readers")
    return {"criterion": name, "statistic": "kendall_w_mean", "value": value, "n": len(ws), "detail": detail}
