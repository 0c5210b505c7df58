"""Analysis of a reader study: a multi-reader multi-case (MRMC) analysis first, then descriptive tables.

Readers of the same case are not independent observations: a case that suits one method suits it for every
reader, and a reader who prefers a method prefers it on every case. The inference therefore treats readers
and cases as random (:mod:`.mrmc`: Obuchowski-Rockette with Hillis's degrees of freedom, covariances by the
jackknife over cases), per criterion:

* ``mean score`` per method for a scale criterion, ``mean rank`` for a ranking (1 best);
* for the visual Turing test (needs the acquired image among the candidates), per synthetic method: the AUC of
  telling its images from acquired ones, with the answer and its confidence as a 10-point rating (generated
  with confidence 5 = 10 ... acquired with confidence 5 = 1; an answer without a confidence counts as
  confidence 1), the sensitivity (its images called generated), the balanced accuracy (sensitivity and the
  specificity averaged) and, once, the specificity (acquired images called acquired). 0.5 is chance: a reader
  who answers "generated" to everything has AUC 0.5 and balanced accuracy 0.5.

Each gives a global test, every pairwise difference with its 95 % CI and p (and Holm's adjustment), and a 95 % CI
per method. The denominator degrees of freedom default to Satterthwaite's over the two terms of Hillis's
denominator, the reader term and the case term (``ddf="two-term"``, :data:`.mrmc.DDF`): Hillis's df
(``ddf="hillis"``, as published) treat the case covariances as known and rejected 7.7 % of simulated null studies
of ten cases with a case x method interaction; DBM's (``ddf="satterthwaite"``) 3.1 % without any interaction;
the two-term df 4.0-6.1 % under the three nulls (bench/study_mrmc.py, 1500 studies each); all agree as cases grow.

The analysis needs every kept reader to have answered every kept method on every kept case: readers or cases that
would leave holes are left out (the one with the fewest complete readings first) and listed in ``dropped`` with
the reason, as is a method nobody answered.

Descriptive tables follow, on the same data:

* mean +- sd per method and criterion (every reader's latest answer);
* Friedman and pairwise Wilcoxon signed-rank tests (Holm-adjusted) over *cases*, each case's answers averaged
  over its readers: readers fixed, so they speak for these readers only; Wilcoxon is exact up to 25 non-zero
  differences, zero differences dropped (Wilcoxon's own rule);
* inter-rater agreement: Krippendorff's alpha (ordinal for scales, nominal for acquired-or-generated; units
  are the candidate images, coders the readers) and Kendall's W for rankings per case, with its chance level;
* rank distributions as in HiFi-Syn Fig. 6;
* the visual Turing test's plain shares (judged acquired, judged correctly).

One tie convention everywhere: tied candidates share the mean of the places they span (mid-ranks). A reader's
"1, 1, 3" (a tie for first) becomes 1.5, 1.5, 3; scale scores become ranks the same way; in the rank
distributions a tie over places 1-2 counts one half at each.

The statistics are plain functions on arrays (:func:`krippendorff_alpha`, :func:`kendall_w`, :func:`holm`,
:func:`wilcoxon_signed_rank`) so that they can be checked against published examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from ..core.errors import StudyError, UnknownChoiceError
from .model import REAL
from .mrmc import DDF, VARIANTS, jackknife_covariance, mann_whitney_kernel, obuchowski_rockette

__all__ = [
    "holm",
    "krippendorff_alpha",
    "kendall_w",
    "rank_with_ties",
    "friedman_test",
    "wilcoxon_signed_rank",
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


#: Wilcoxon's exact distribution is used up to this many non-zero differences, the normal one above.
EXACT_MAX = 25
#: The report warns below these numbers of readers and cases.
SMALL_READERS = 4
SMALL_CASES = 10
ZERO_HANDLING = "zero differences dropped (Wilcoxon)"
#: The MRMC figure of merit of a scale and of a ranking criterion.
METRIC = {"scale": "mean score", "ranking": "mean rank"}


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
    """Everything :func:`analyse` computes (tables are lists of dicts, ready for CSV and HTML; NaN = n/a, with
    the reason in the row's ``note``).

    Attributes
    ----------
    methods : list of str
        Candidate methods ("real" first when present).
    criteria : list of Criterion
    readers, cases : list of str
    summary : list of dict
        method, criterion, n (answers), readers, cases, mean, sd.
    friedman : list of dict
        criterion, methods, blocks (cases), readers, chi2, p.
    pairwise : list of dict
        criterion, method_a, method_b, n (cases), n_nonzero, mean_difference, statistic (W+), p, p_holm,
        method ("exact" / "normal approximation"), zero_handling, rank_biserial.
    agreement : list of dict
        criterion, statistic ("krippendorff_alpha_ordinal", "krippendorff_alpha_nominal", "kendall_w_mean"),
        value, chance, n (units or cases), detail.
    realism : list of dict
        method, n, judged_acquired, accuracy (share judged correctly: the sensitivity of a generated method, the
        specificity of the acquired images), mean_confidence. Empty without acquired images.
    rank_distribution : dict
        criterion -> method -> counts of places 1..len(methods) (ties split over the places they span).
    records : list of ScoreRecord
    mrmc_variant : {"random", "fixed-readers", "fixed-cases"}
    mrmc_ddf : {"two-term", "satterthwaite", "hillis"}
        The denominator degrees of freedom (:data:`.mrmc.DDF`).
    mrmc_global : list of dict
        criterion, metric, methods, n_readers, n_cases, statistic ("F" or "chi2"), value, df1, df2, p,
        var_error, cov1, cov2, cov3, var_reader, var_test_reader, covariance, ddf, note, warning.
    mrmc_methods : list of dict
        criterion, metric, method, n_readers, n_cases, estimate, se, df, ci_low, ci_high, note.
    mrmc_pairwise : list of dict
        criterion, metric, method_a, method_b, n_readers, n_cases, difference (a - b), se, df, ci_low,
        ci_high, p, p_holm, note.
    mrmc_readers : list of dict
        criterion, metric, method, reader, value: every reader's figure of merit.
    dropped : list of dict
        criterion, what, reason: what the analysis left out.
    warnings : list of str
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
    mrmc_variant: str = "random"
    mrmc_ddf: str = "two-term"
    mrmc_global: list = dataclasses.field(default_factory=list)
    mrmc_methods: list = dataclasses.field(default_factory=list)
    mrmc_pairwise: list = dataclasses.field(default_factory=list)
    mrmc_readers: list = dataclasses.field(default_factory=list)
    dropped: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

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


def analyse(store, *, mrmc: str = "random", ddf: str = "two-term") -> StudyAnalysis:
    """Analyse the study in ``store`` (see the module notes); raises StudyError on a blinded copy.

    ``mrmc``: "random" (readers and cases random, the default), "fixed-readers" (conclusions for these readers
    only) or "fixed-cases" (for these cases only). ``ddf``: "two-term" (the default: the case term's own
    uncertainty counted, which a study of few cases needs), "satterthwaite" (DBM's) or "hillis" (as published; see
    :data:`.mrmc.DDF`).
    """
    return analyse_records(collect_records(store), store.criteria(), store.methods(), title=store.info()["title"],
                           mrmc=mrmc, ddf=ddf)


def _mid_ranks(records: Sequence[ScoreRecord], ranking: set[str]) -> list[ScoreRecord]:
    """Rankings as mid-ranks within each reading (tied candidates share the mean of the places they span)."""
    from scipy.stats import rankdata

    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, r in enumerate(records):
        if r.criterion in ranking:
            groups.setdefault((r.reader, r.case, r.criterion), []).append(i)
    out = list(records)
    for idx in groups.values():
        for i, v in zip(idx, rankdata([records[i].value for i in idx])):
            out[i] = dataclasses.replace(records[i], value=float(v))
    return out


@dataclasses.dataclass
class _Crossed:
    """One criterion's fully crossed data: every kept reader answered every kept method on every kept case."""

    methods: list
    readers: list
    cases: list
    values: np.ndarray  # (methods, readers, cases)
    confidence: np.ndarray  # (methods, readers, cases), NaN where not given
    dropped: list


def _crossed(recs: Sequence[ScoreRecord], methods: Sequence[str], criterion: str) -> _Crossed:
    """Keep readers and cases with every method answered; drop the line with the fewest complete readings first
    (cases before readers on a tie), so that as few answers as possible are lost."""
    present = [m for m in methods if any(r.method == m for r in recs)]
    dropped = [{"criterion": criterion, "what": f"method {m}", "reason": "no answers"}
               for m in methods if m not in present]
    cell: dict[tuple[str, str], dict[str, ScoreRecord]] = {}
    for r in recs:
        cell.setdefault((r.reader, r.case), {})[r.method] = r
    readers = sorted({r.reader for r in recs})
    cases = sorted({r.case for r in recs})
    complete = {k for k, v in cell.items() if all(m in v for m in present)}
    answered = {rd: {r.method for r in recs if r.reader == rd} for rd in readers}
    kept_r, kept_c = list(readers), list(cases)
    while True:
        done_r = {rd: sum((rd, cs) in complete for cs in kept_c) for rd in kept_r}
        done_c = {cs: sum((rd, cs) in complete for rd in kept_r) for cs in kept_c}
        options = ([(n, 0, cs) for cs, n in done_c.items() if n < len(kept_r)]
                   + [(n, 1, rd) for rd, n in done_r.items() if n < len(kept_c)])
        if not options:
            break
        n, is_reader, name = min(options)
        if is_reader:
            missing = [m for m in present if m not in answered[name]]
            why = f"answered every method on {n} of {len(kept_c)} cases"
            if missing:
                why += f" (no answer at all for {', '.join(missing)})"
            dropped.append({"criterion": criterion, "what": f"reader {name}", "reason": why})
            kept_r.remove(name)
        else:
            dropped.append({"criterion": criterion, "what": f"case {name}",
                            "reason": f"answered for every method by {n} of {len(kept_r)} readers"})
            kept_c.remove(name)
    shape = (len(present), len(kept_r), len(kept_c))
    values, conf = np.full(shape, np.nan), np.full(shape, np.nan)
    for j, rd in enumerate(kept_r):
        for k, cs in enumerate(kept_c):
            for i, m in enumerate(present):
                rec = cell[(rd, cs)][m]
                values[i, j, k] = rec.value
                if rec.confidence is not None:
                    conf[i, j, k] = rec.confidence
    return _Crossed(present, kept_r, kept_c, values, conf, dropped)


def _small(n_readers: int, n_cases: int) -> str:
    parts = []
    if 0 < n_readers < SMALL_READERS:
        parts.append(f"few readers ({n_readers}, fewer than {SMALL_READERS})")
    if 0 < n_cases < SMALL_CASES:
        parts.append(f"few cases ({n_cases}, fewer than {SMALL_CASES})")
    return "; ".join(parts)


class _Tables:
    """The MRMC tables being filled, and the one function that fills them for a figure of merit."""

    def __init__(self, variant: str, ddf: str):
        self.variant = variant
        self.ddf = ddf
        self.glob: list[dict] = []
        self.methods: list[dict] = []
        self.pairwise: list[dict] = []
        self.readers: list[dict] = []

    def nothing(self, criterion: str, metric: str, methods: Sequence[str], reason: str, r: int = 0,
                c: int = 0) -> None:
        """Rows saying n/a, with the reason, for a figure of merit that cannot be analysed at all."""
        nan = float("nan")
        base = {"criterion": criterion, "metric": metric, "n_readers": r, "n_cases": c}
        self.glob.append({**base, "methods": ", ".join(methods), "statistic": "", "value": nan, "df1": nan,
                          "df2": nan, "p": nan, "note": reason, "warning": ""})
        for m in methods:
            self.methods.append({**base, "method": m, "estimate": nan, "se": nan, "df": nan, "ci_low": nan,
                                 "ci_high": nan, "note": reason})
        for a, b in itertools.combinations(methods, 2):
            self.pairwise.append({**base, "method_a": a, "method_b": b, "difference": nan, "se": nan, "df": nan,
                                  "ci_low": nan, "ci_high": nan, "p": nan, "p_holm": nan, "note": reason})

    def add(self, criterion: str, metric: str, row_methods: Sequence[str], tests: Sequence[str],
            statistic: Callable[[np.ndarray], np.ndarray], readers: Sequence[str], n_cases: int,
            absent: dict[str, str], *, compare: bool = True,
            leave_one_out: Callable[[], np.ndarray] | None = None) -> None:
        """Analyse one figure of merit (``statistic(keep)`` -> tests x readers) and append its rows.

        ``row_methods`` are the methods the tables list; those not in ``tests`` get n/a with ``absent[m]``.
        ``compare=False`` adds the per-method rows only (a figure of one test: its CI is the result).
        """
        nan = float("nan")
        r, c = len(readers), n_cases
        if self.variant != "fixed-cases" and c >= 2:
            theta, cov = jackknife_covariance(statistic, c, leave_one_out=leave_one_out)
        else:
            theta, cov = np.asarray(statistic(np.arange(c)), dtype=np.float64), None
        res = obuchowski_rockette(theta, cov, tests, variant=self.variant, covariance="jackknife", n_cases=c,
                                  ddf=self.ddf)
        base = {"criterion": criterion, "metric": metric, "n_readers": r, "n_cases": c}
        g = res.global_test
        if compare:
            self.glob.append({**base, "methods": ", ".join(tests), "statistic": g["statistic"], "value": g["value"],
                              "df1": g["df1"], "df2": g["df2"], "p": g["p"], "var_error": res.var_error,
                              "cov1": res.cov1, "cov2": res.cov2, "cov3": res.cov3, "var_reader": res.var_reader,
                              "var_test_reader": res.var_test_reader, "covariance": res.covariance,
                              "ddf": self.ddf,
                              "note": g["note"], "warning": _small(r, c)})
        per = {row["method"]: row for row in res.per_test}
        for m in row_methods:
            self.methods.append({**base, **per[m]} if m in per else
                                {**base, "method": m, "estimate": nan, "se": nan, "df": nan, "ci_low": nan,
                                 "ci_high": nan, "note": absent.get(m, "not analysed")})
        pairs = {(p["method_a"], p["method_b"]): p for p in res.pairwise}
        rows = []
        for a, b in itertools.combinations(row_methods, 2):
            if (a, b) in pairs:
                rows.append({**base, **pairs[(a, b)]})
            else:
                gone = a if a not in tests else b
                rows.append({**base, "method_a": a, "method_b": b, "difference": nan, "se": nan, "df": nan,
                             "ci_low": nan, "ci_high": nan, "p": nan,
                             "note": f"{gone}: {absent.get(gone, 'not analysed')}"})
        for row, adj in zip(rows, holm([row["p"] for row in rows])):
            row["p_holm"] = float(adj)
        self.pairwise += rows
        for i, m in enumerate(tests):
            for j, rd in enumerate(readers):
                self.readers.append({"criterion": criterion, "metric": metric, "method": m, "reader": rd,
                                     "value": float(theta[i, j])})


def _turing(t: _Tables, crit: str, x: _Crossed, methods: Sequence[str]) -> None:
    """Turing AUC, sensitivity and balanced accuracy per synthetic method; specificity once (see module notes)."""
    synth_rows = [m for m in methods if m != REAL]
    synth = [m for m in x.methods if m != REAL]
    absent = {m: "no answers" for m in synth_rows if m not in synth}
    real = x.methods.index(REAL)
    idx = [x.methods.index(m) for m in synth]
    generated = x.values == 0.0
    conf = np.nan_to_num(x.confidence, nan=1.0)
    rating = np.where(generated, 5.0 + conf, 6.0 - conf)  # 10 = surely generated ... 1 = surely acquired
    pos, neg = rating[idx], rating[real]
    sens_all = generated[idx].astype(np.float64)
    spec_all = (~generated[real]).astype(np.float64)

    def auc(keep):
        return mann_whitney_kernel(pos[:, :, keep], neg[None, :, keep]).mean(axis=(2, 3))

    def auc_leave_one_out():
        # leaving case k out removes its generated image (row k) and its acquired one (column k) of the kernel
        c = pos.shape[2]
        out = np.empty((c, len(idx), pos.shape[1]))
        for i in range(len(idx)):
            kern = mann_whitney_kernel(pos[i], neg)  # (readers, c, c)
            total = kern.sum(axis=(1, 2))
            rows, cols = kern.sum(axis=2), kern.sum(axis=1)
            diag = np.diagonal(kern, axis1=1, axis2=2)
            out[:, i, :] = ((total[:, None] - rows - cols + diag) / (c - 1) ** 2).T
        return out

    def sensitivity(keep):
        return sens_all[:, :, keep].mean(axis=2)

    def specificity(keep):
        return spec_all[None, :, keep].mean(axis=2)

    def balanced(keep):
        return (sensitivity(keep) + specificity(keep)) / 2.0

    c = len(x.cases)
    for metric, fn in (("Turing AUC", auc), ("sensitivity", sensitivity), ("balanced accuracy", balanced)):
        if synth:
            t.add(crit, metric, synth_rows, synth, fn, x.readers, c, absent, compare=len(synth_rows) > 1,
                  leave_one_out=auc_leave_one_out if fn is auc else None)
        else:
            t.nothing(crit, metric, synth_rows, "no synthetic method was answered", len(x.readers), c)
    t.add(crit, "specificity", [REAL], [REAL], specificity, x.readers, c, {}, compare=False)


def _rank_counts(values: np.ndarray, higher_is_better: bool, k: int) -> np.ndarray:
    """Places 1..k of each candidate of one reading, ties split equally over the places they span."""
    from scipy.stats import rankdata

    mid = rankdata(-values if higher_is_better else values)
    out = np.zeros((len(values), k))
    for i, m in enumerate(mid):
        g = int(np.sum(mid == m))
        first = round(m - (g - 1) / 2.0)
        out[i, first - 1:first - 1 + g] = 1.0 / g
    return out


def analyse_records(records: Sequence[ScoreRecord], criteria: Sequence, methods: Sequence[str],
                    title: str = "", *, mrmc: str = "random", ddf: str = "two-term") -> StudyAnalysis:
    """The analysis of already unblinded records (see :func:`analyse`)."""
    if mrmc not in VARIANTS:
        raise UnknownChoiceError("MRMC variant", mrmc, VARIANTS)
    if ddf not in DDF:
        raise UnknownChoiceError("MRMC degrees of freedom", ddf, DDF)
    methods = list(methods)
    readers = sorted({r.reader for r in records})
    ranked = _mid_ranks(records, {c.name for c in criteria if c.kind == "ranking"})
    a = StudyAnalysis(methods, list(criteria), readers, sorted({r.case for r in records}), [], [], [], [], [], {},
                      list(records), title, mrmc, ddf)
    tables = _Tables(mrmc, ddf)
    synth = [m for m in methods if m != REAL]
    turing_metrics = ("Turing AUC", "sensitivity", "balanced accuracy")
    for crit in criteria:
        recs = [r for r in ranked if r.criterion == crit.name]
        a.summary += _summary(recs, crit.name, methods)
        turing = crit.kind == "realism"
        if turing and REAL not in methods:
            a.dropped.append({"criterion": crit.name, "what": "visual Turing test",
                              "reason": "no acquired images in the study: nothing to tell generated images from"})
        if not recs:
            a.dropped.append({"criterion": crit.name, "what": f"criterion {crit.name}", "reason": "no answers"})
            why = "no answers for this criterion"
            if not turing:
                tables.nothing(crit.name, METRIC[crit.kind], methods, why)
                a.friedman.append({"criterion": crit.name, "methods": ", ".join(methods), "blocks": 0,
                                   "readers": 0, "chi2": float("nan"), "p": float("nan")})
                a.rank_distribution[crit.name] = {m: [0.0] * len(methods) for m in methods}
            elif REAL in methods:
                for name in turing_metrics:
                    tables.nothing(crit.name, name, synth, why)
            continue
        x = _crossed(recs, methods, crit.name)
        a.dropped += x.dropped
        r, c = len(x.readers), len(x.cases)
        if turing:
            if REAL in methods:
                _turing_descriptive(a.realism, recs, methods)
                if REAL in x.methods and r and c:
                    _turing(tables, crit.name, x, methods)
                else:
                    why = ("no answers for the acquired images" if REAL not in x.methods
                           else "no reader answered every method of any case")
                    for name in turing_metrics:
                        tables.nothing(crit.name, name, synth, why, r, c)
            a.agreement.append(_alpha(recs, readers, sorted({r.image for r in recs}), "nominal", crit.name))
            continue
        if r and c:
            tables.add(crit.name, METRIC[crit.kind], methods, x.methods,
                       lambda keep, vals=x.values: vals[:, :, keep].mean(axis=2), x.readers, c,
                       {m: "no answers" for m in methods if m not in x.methods})
        else:
            tables.nothing(crit.name, METRIC[crit.kind], methods, "no reader answered every method of any case", r,
                           c)
        friedman, pairwise = _tests_over_cases(crit.name, x)
        a.friedman.append(friedman)
        a.pairwise += pairwise
        a.rank_distribution[crit.name] = _rank_distribution(x, crit.kind == "scale", methods)
        a.agreement.append(_alpha(recs, readers, sorted({r.image for r in recs}), "ordinal", crit.name)
                           if crit.kind == "scale" else _kendall(recs, crit.name))
    a.mrmc_global, a.mrmc_methods = tables.glob, tables.methods
    a.mrmc_pairwise, a.mrmc_readers = tables.pairwise, tables.readers
    a.warnings = sorted({row["warning"] for row in tables.glob if row.get("warning")})
    return a


def _summary(recs: Sequence[ScoreRecord], criterion: str, methods: Sequence[str]) -> list[dict]:
    """Mean and sd per method over every answer, with how many answers, readers and cases they come from."""
    out = []
    for m in methods:
        mine = [r for r in recs if r.method == m]
        v = np.array([r.value for r in mine], dtype=np.float64)
        out.append({"method": m, "criterion": criterion, "n": int(len(v)),
                    "readers": len({r.reader for r in mine}), "cases": len({r.case for r in mine}),
                    "mean": float(v.mean()) if len(v) else float("nan"),
                    "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan")})
    return out


def _tests_over_cases(criterion: str, x: _Crossed) -> tuple[dict, list[dict]]:
    """Friedman across methods and pairwise Wilcoxon (Holm) over cases, each case averaged over its readers."""
    r, c = len(x.readers), len(x.cases)
    blocks = x.values.mean(axis=1).T if r else np.zeros((0, len(x.methods)))  # cases x methods
    stat, p = friedman_test(blocks)
    friedman = {"criterion": criterion, "methods": ", ".join(x.methods), "blocks": c, "readers": r, "chi2": stat,
                "p": p}
    rows = []
    for i, j in itertools.combinations(range(len(x.methods)) if c else (), 2):
        w = wilcoxon_signed_rank(blocks[:, i], blocks[:, j])
        rows.append({"criterion": criterion, "method_a": x.methods[i], "method_b": x.methods[j], "n": c,
                     "n_nonzero": w["n_nonzero"], "mean_difference": float((blocks[:, i] - blocks[:, j]).mean()),
                     "statistic": w["statistic"], "p": w["p"], "method": w["method"],
                     "zero_handling": ZERO_HANDLING, "rank_biserial": w["rank_biserial"]})
    for row, adj in zip(rows, holm([row["p"] for row in rows])):
        row["p_holm"] = float(adj)
    return friedman, rows


def _rank_distribution(x: _Crossed, higher_is_better: bool, methods: Sequence[str]) -> dict[str, list[float]]:
    """How often each method took each place over the readings, ties split over the places they span."""
    counts = {m: np.zeros(len(methods)) for m in methods}
    for j in range(len(x.readers)):
        for k in range(len(x.cases)):
            places = _rank_counts(x.values[:, j, k], higher_is_better, len(methods))
            for i, m in enumerate(x.methods):
                counts[m] += places[i]
    return {m: [float(v) for v in counts[m]] for m in methods}


def _turing_descriptive(out: list, recs: Sequence[ScoreRecord], methods: Sequence[str]) -> None:
    for m in methods:
        mine = [r for r in recs if r.method == m]
        if not mine:
            continue
        acquired = np.array([r.value for r in mine]) == 1.0
        conf = [r.confidence for r in mine if r.confidence is not None]
        out.append({"method": m, "n": len(mine), "judged_acquired": float(acquired.mean()),
                    "accuracy": float((acquired == (m == REAL)).mean()),
                    "mean_confidence": float(np.mean(conf)) if conf else float("nan")})


def _alpha(recs, readers, units, level, name) -> dict:
    ri = {r: i for i, r in enumerate(readers)}
    ui = {u: i for i, u in enumerate(units)}
    x = np.full((len(readers), len(units)), np.nan)
    for r in recs:
        x[ri[r.reader], ui[r.image]] = r.value
    pairable = int((np.isfinite(x).sum(axis=0) >= 2).sum())
    value = krippendorff_alpha(x, level) if len(readers) >= 2 else float("nan")
    return {"criterion": name, "statistic": f"krippendorff_alpha_{level}", "value": value, "chance": 0.0,
            "n": pairable, "detail": f"{pairable} images answered by 2+ of {len(readers)} readers"}


def _kendall(recs, name) -> dict:
    """Kendall's W per case over the readers who ranked all its images; its chance level is about 1/m for m
    readers (E[W] = 1/m for independent random rankings without ties)."""
    by_case: dict[str, dict[str, dict[str, float]]] = {}
    for r in recs:
        by_case.setdefault(r.case, {}).setdefault(r.reader, {})[r.image] = r.value
    ws, chance, all_tied = [], [], 0
    for per_reader in by_case.values():
        images = sorted({i for v in per_reader.values() for i in v})
        rows = [[v[i] for i in images] for v in per_reader.values() if all(i in v for i in images)]
        if len(rows) < 2:
            continue
        w = kendall_w(np.array(rows))
        if math.isfinite(w):
            ws.append(w)
            chance.append(1.0 / len(rows))
        else:
            all_tied += 1
    value = float(np.mean(ws)) if ws else float("nan")
    level = float(np.mean(chance)) if chance else float("nan")
    parts = []
    if ws:
        parts.append(f"mean over {len(ws)} cases ranked by 2+ readers (median {np.median(ws):.3f}); chance level "
                     f"about {level:.2f} (1 / readers)")
    if all_tied:
        parts.append(f"{all_tied} case(s) where every reader tied every image (W undefined) left out")
        if not ws:
            m = len({r.reader for r in recs})
            level = 1.0 / m if m else float("nan")
            parts.append(f"chance level about {level:.2f} (1 / readers)")
    if not parts:
        parts.append("no case ranked by 2+ readers")
    return {"criterion": name, "statistic": "kendall_w_mean", "value": value, "chance": level, "n": len(ws),
            "detail": "; ".join(parts)}
