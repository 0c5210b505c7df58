"""Multi-reader multi-case (MRMC) analysis: the Obuchowski-Rockette model with Hillis's degrees of freedom.

Every reader reads every case under every test (here: every candidate method). A *figure of merit* is computed
per test and reader, ``theta[i, j]`` (a mean score, a mean rank, an AUC, a sensitivity, ...). The
Obuchowski-Rockette (OR) model (Obuchowski & Rockette 1995, Commun Stat Simul Comput 24:285) writes

    theta_ij = mu + tau_i + R_j + (tau R)_ij + e_ij

with random readers ``R_j``, random test-by-reader interactions ``(tau R)_ij``, and errors ``e_ij`` that carry
the case-to-case variation. The errors are correlated because the same cases are read under every test and by
every reader; their covariance matrix is estimated from the cases and summarised by four numbers:

* ``var_error``: Var(e_ij);
* ``cov1``: Cov(e_ij, e_i'j), same reader, different tests;
* ``cov2``: Cov(e_ij, e_ij'), different readers, same test;
* ``cov3``: Cov(e_ij, e_i'j'), different readers, different tests.

Tests (Hillis 2007, Stat Med 26:596; Hillis, Berbaum & Metz 2008, Acad Radiol 15:647), with the mean squares
MS(T), MS(R), MS(T*R) of the t x r table of figures of merit:

* readers and cases random: ``F = MS(T) / (MS(T*R) + r max(cov2 - cov3, 0))`` on ``t - 1`` and Hillis's
  ``ddf_H = (MS(T*R) + r max(cov2 - cov3, 0))^2 / (MS(T*R)^2 / ((t - 1)(r - 1)))`` degrees of freedom;
  a difference of two tests has ``SE^2 = 2 / r (MS(T*R) + r max(cov2 - cov3, 0))`` on ``ddf_H``; one test alone
  ``SE^2 = (MS(R)_i + r max(cov2_i, 0)) / r`` on ``(MS(R)_i + r max(cov2_i, 0))^2 / (MS(R)_i^2 / (r - 1))``,
  with ``MS(R)_i`` and ``cov2_i`` from test i only;
* readers fixed, cases random: ``chi2 = (t - 1) MS(T) / (var_error - cov1 + (r - 1) max(cov2 - cov3, 0))`` on
  ``t - 1`` degrees of freedom; differences and single tests are normal, with the variance of the reader average
  written out from the four covariances;
* readers random, cases fixed: the two-way ANOVA ``F = MS(T) / MS(T*R)`` on ``t - 1`` and ``(t - 1)(r - 1)``;
  differences ``SE^2 = 2 MS(T*R) / r``, single tests ``SE^2 = MS(R)_i / r`` on ``r - 1``.

Covariances of the figures of merit over cases come from :func:`delong_covariance` (empirical AUC, DeLong,
DeLong & Clarke-Pearson 1988, Biometrics 44:837) or :func:`jackknife_covariance` (any figure of merit).

Choices where the literature leaves options:

* the jackknife covariance is scaled by ``(c - 1) / c`` (the usual jackknife; Hillis 2007 uses it), DeLong's by
  ``1 / (m - 1)`` and ``1 / (n - 1)`` (the 1988 paper); both are checked on the Van Dyke data;
* the covariances are averaged over every pair of tests, so every pairwise comparison uses the same error
  structure (the OR model assumes one structure; with two tests there is nothing to choose);
* ``max(., 0)`` as Hillis 2007 for the random-reader analyses; the fixed-reader variance of an average is the
  variance of the average (a sum of covariances, never negative), so no truncation there;
* when a quantity cannot be estimated (one reader for a random-reader analysis, one case for anything needing
  covariances, one test for a comparison, or no variation at all) the result is NaN with a ``note`` saying why,
  never a p-value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from ..core.errors import StudyError, UnknownChoiceError

__all__ = [
    "VARIANTS",
    "DDF",
    "ORResult",
    "mann_whitney_kernel",
    "empirical_auc",
    "delong_covariance",
    "jackknife_covariance",
    "or_covariances",
    "obuchowski_rockette",
    "auc_analysis",
]

#: Which factors are random: both, readers fixed (cases random), cases fixed (readers random).
VARIANTS = ("random", "fixed-readers", "fixed-cases")

#: Denominator degrees of freedom. "hillis": Hillis 2007 (module notes), as published and as MRMC software gives
#: them; they treat the case covariances as known, which suits studies of many cases. "satterthwaite": the same
#: statistic, with Satterthwaite's df over every mean square in its denominator, the case terms included. With
#: jackknife covariances the OR quantities are the Dorfman-Berbaum-Metz mean squares over c (Hillis et al. 2005):
#: MS(T*C) / c = var_error - cov1 + (r - 1)(cov2 - cov3) on (t - 1)(c - 1) df and MS(T*R*C) / c = var_error - cov1
#: - cov2 + cov3 on (t - 1)(r - 1)(c - 1) df, so the random-reader denominator MS(T*R) + r (cov2 - cov3) is
#: MS(T*R) + MS(T*C) / c - MS(T*R*C) / c, whose Satterthwaite df is the original DBM df (Dorfman, Berbaum & Metz
#: 1992); with Hillis's max(cov2 - cov3, 0) at 0 it is Hillis's df. Fixed readers get F on the case df instead of
#: chi2; single tests the same treatment (c - 1 and (r - 1)(c - 1) df). Both tend to Hillis's df as cases grow.
#: "two-term" (the study report's default; a choice of this project): Satterthwaite over the two terms of the
#: random-reader denominator as it is used, MS(T*R) on (t - 1)(r - 1) df and r max(cov2 - cov3, 0) on (t - 1)(c - 1)
#: df (the case df of the fixed-reader analysis), i.e. Hillis's df when the case term is truncated to 0 and fewer df
#: as the case term grows. DBM's df also charge the subtracted MS(T*R*C) / c, whose noise the truncation already
#: absorbs, and are conservative when there is no interaction; Hillis's ignore the case term's noise and are
#: liberal when case x method interaction dominates a small study. Measured by bench/study_mrmc.py (``--studies 1500
#: --seed 777000 --effects ""``: 1500 simulated 5-reader, 10-case, 4-method studies per null; SE about 0.005), the
#: false-positive rate at 0.05 for hillis / satterthwaite / two-term: no interaction 0.041 / 0.031 / 0.040, case x
#: method SD 0.5 0.077 / 0.047 / 0.061, reader x method SD 0.3 0.044 / 0.040 / 0.044. Fixed readers: as "satterthwaite"; single tests:
#: MS(R)_i on r - 1 and r max(cov2_i, 0) on c - 1 df.
DDF = ("hillis", "satterthwaite", "two-term")

NAN = float("nan")


# -- covariance estimators ---------------------------------------------------------------------------------
def mann_whitney_kernel(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """The Mann-Whitney kernel of every positive-negative pair: 1 if pos > neg, 1/2 if equal, 0 otherwise.

    ``pos`` (..., m) and ``neg`` (..., n) broadcast over their leading axes; the result is (..., m, n).
    """
    p, n = pos[..., :, None], neg[..., None, :]
    return (p > n) + 0.5 * (p == n)


def empirical_auc(positive, negative) -> float:
    """The empirical (trapezoidal) area under the ROC curve: P(positive > negative) + P(tie) / 2.

    NaN when either group is empty.
    """
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return NAN
    return float(mann_whitney_kernel(pos.ravel(), neg.ravel()).mean())


def delong_covariance(ratings, truth) -> tuple[np.ndarray, np.ndarray]:
    """Empirical AUC per test and reader and DeLong's covariance of every pair of them.

    Parameters
    ----------
    ratings : array-like, shape (tests, readers, cases)
        Higher means "more likely positive".
    truth : array-like of bool, shape (cases,)
        True for positive (diseased) cases. Each case is one image: a case that gives a positive and a negative
        image (a cluster) needs :func:`jackknife_covariance` instead.

    Returns
    -------
    theta : ndarray, shape (tests, readers)
    cov : ndarray, shape (tests, readers, tests, readers)
        ``S10 / m + S01 / n`` (DeLong et al. 1988, eq. 5), S10 and S01 the sample covariances (ddof 1) of the
        structural components over the m positive and the n negative cases.
    """
    y = np.asarray(ratings, dtype=np.float64)
    d = np.asarray(truth, dtype=bool)
    if y.ndim != 3 or d.shape != (y.shape[2],):
        raise StudyError(f"delong_covariance expects ratings (tests, readers, cases) and truth (cases,), got "
                         f"{y.shape} and {d.shape}")
    t, r, _ = y.shape
    m, n = int(d.sum()), int((~d).sum())
    if m < 2 or n < 2:
        raise StudyError(f"DeLong's covariance needs 2 or more positive and negative cases, got {m} and {n}")
    kernel = mann_whitney_kernel(y[:, :, d], y[:, :, ~d])  # (t, r, m, n)
    v10 = kernel.mean(axis=3).reshape(t * r, m)
    v01 = kernel.mean(axis=2).reshape(t * r, n)
    theta = v10.mean(axis=1).reshape(t, r)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return theta, cov.reshape(t, r, t, r)


def jackknife_covariance(statistic: Callable[[np.ndarray], np.ndarray], n_cases: int, *,
                         leave_one_out: Callable[[], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Figures of merit on all cases and their jackknife covariance over cases.

    Parameters
    ----------
    statistic : callable
        ``statistic(keep)`` returns the (tests, readers) figures of merit computed on the cases ``keep`` (an
        integer index array); every image of a case goes with its case.
    n_cases : int
        Number of cases (at least 2).
    leave_one_out : callable, optional
        Returns every leave-one-case-out figure at once, shape (cases, tests, readers), when that is quicker than
        calling ``statistic`` once per case.

    Returns
    -------
    theta : ndarray, shape (tests, readers)
    cov : ndarray, shape (tests, readers, tests, readers)
        ``(c - 1) / c * sum_k (theta_(k) - mean)(theta_(k) - mean)^T`` over the leave-one-case-out figures.
    """
    c = int(n_cases)
    if c < 2:
        raise StudyError(f"the jackknife needs 2 or more cases, got {c}")
    everything = np.arange(c)
    theta = np.asarray(statistic(everything), dtype=np.float64)
    if leave_one_out is not None:
        pseudo = np.asarray(leave_one_out(), dtype=np.float64).reshape(c, -1)
    else:
        pseudo = np.stack([np.asarray(statistic(np.delete(everything, k)), dtype=np.float64).ravel()
                           for k in range(c)])
    dev = pseudo - pseudo.mean(axis=0)
    cov = (c - 1) / c * (dev.T @ dev)
    return theta, cov.reshape(theta.shape + theta.shape)


def or_covariances(cov) -> dict[str, float | np.ndarray]:
    """The OR summaries of a (tests, readers, tests, readers) covariance: var_error, cov1, cov2, cov3 (averaged
    over every test and reader pair that defines them; NaN where none does), and per test var_i, cov2_i."""
    s = np.asarray(cov, dtype=np.float64)
    t, r = s.shape[:2]
    same_test = np.eye(t, dtype=bool)[:, None, :, None]
    same_reader = np.eye(r, dtype=bool)[None, :, None, :]

    def mean_where(mask) -> float:
        mask = np.broadcast_to(mask, s.shape)
        return float(s[mask].mean()) if mask.any() else NAN

    diag = np.array([[s[i, j, i, j] for j in range(r)] for i in range(t)])
    cov2_i = np.array([np.mean([s[i, j, i, k] for j in range(r) for k in range(r) if j != k]) if r > 1 else NAN
                       for i in range(t)])
    return {"var_error": float(diag.mean()),
            "cov1": mean_where(~same_test & same_reader),
            "cov2": mean_where(same_test & ~same_reader),
            "cov3": mean_where(~same_test & ~same_reader),
            "var_i": diag.mean(axis=1), "cov2_i": cov2_i}


# -- the analysis ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ORResult:
    """What :func:`obuchowski_rockette` finds (tables are lists of dicts, NaN where not estimable).

    Attributes
    ----------
    tests : list of str
    variant : {"random", "fixed-readers", "fixed-cases"}
    covariance : str
        "DeLong", "jackknife" or "none" (fixed cases need no covariance).
    n_readers, n_cases : int
    theta : ndarray, shape (tests, readers)
    estimates : ndarray, shape (tests,)
        Reader-averaged figures of merit.
    var_error, cov1, cov2, cov3 : float
        The OR error covariances (NaN without covariance).
    ms_t, ms_r, ms_tr : float
        Mean squares of the tests x readers table.
    var_reader, var_test_reader : float
        Reader and test x reader variance components (moment estimates, may be negative).
    global_test : dict
        statistic ("F" or "chi2"), value, df1, df2 (inf for chi2), p, note.
    pairwise : list of dict
        method_a, method_b, difference (a - b), se, df, ci_low, ci_high, p, note.
    per_test : list of dict
        method, estimate, se, df, ci_low, ci_high, note.
    note : str
        Why nothing could be tested (empty when the analysis ran).
    ddf : str
        Which denominator degrees of freedom (:data:`DDF`).
    """

    tests: list
    variant: str
    covariance: str
    n_readers: int
    n_cases: int
    theta: np.ndarray
    estimates: np.ndarray
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_r: float
    ms_tr: float
    var_reader: float
    var_test_reader: float
    global_test: dict
    pairwise: list
    per_test: list
    note: str = ""
    ddf: str = "hillis"


def _t_interval(estimate: float, se: float, df: float, alpha: float) -> tuple[float, float]:
    from scipy import stats

    q = stats.norm.ppf(1 - alpha / 2) if math.isinf(df) else stats.t.ppf(1 - alpha / 2, df)
    return estimate - q * se, estimate + q * se


def _t_p(statistic: float, df: float) -> float:
    from scipy import stats

    return float(2 * (stats.norm.sf(abs(statistic)) if math.isinf(df) else stats.t.sf(abs(statistic), df)))


def _hillis_df(denominator: float, ms: float, df_ms: int) -> float:
    """Satterthwaite-type df of ``denominator`` when only ``ms`` (on ``df_ms`` df) varies (Hillis 2007)."""
    if ms <= 0:
        return math.inf
    return denominator ** 2 / (ms ** 2 / df_ms)


def _satterthwaite(terms: Sequence[tuple[float, float]]) -> float:
    """Satterthwaite's df of a sum of mean squares ``sum w M`` given as (w M, df) pairs (inf when all are 0)."""
    total = sum(v for v, _ in terms)
    spread = sum(v * v / df for v, df in terms if v != 0)
    return total * total / spread if spread > 0 else math.inf


def _why_not(variant: str, r: int, c: int, has_cov: bool, theta: np.ndarray) -> str:
    if variant in ("random", "fixed-cases") and r < 2:
        return (f"1 reader: reader-to-reader variation cannot be estimated (needs 2 or more readers"
                f"{'; the fixed-readers analysis generalises to new cases only' if variant == 'random' else ''})")
    if variant in ("random", "fixed-readers") and c < 2:
        return ("1 case: case-to-case variation cannot be estimated (needs 2 or more cases"
                f"{'; the fixed-cases analysis generalises to new readers only' if variant == 'random' else ''})")
    if variant != "fixed-cases" and not has_cov:
        return "no covariance over cases was given"
    if not np.isfinite(theta).all():
        return "a reader's figure of merit is undefined"
    return ""


def _error_covariances(cov, t: int, r: int) -> dict[str, float | np.ndarray]:
    """The OR error covariances of ``cov`` (:func:`or_covariances`), all NaN when ``cov`` is None."""
    if cov is None:
        return {"var_error": NAN, "cov1": NAN, "cov2": NAN, "cov3": NAN, "var_i": np.full(t, NAN),
                "cov2_i": np.full(t, NAN)}
    s = np.asarray(cov, dtype=np.float64)
    if s.shape != (t, r, t, r):
        raise StudyError(f'argument "cov" should have shape {(t, r, t, r)}, got {s.shape}')
    return or_covariances(s)


def _mean_squares(th: np.ndarray) -> tuple[np.ndarray, float, float, float, np.ndarray]:
    """Reader-averaged estimates and the mean squares of the t x r table of figures of merit: MS(T), MS(R),
    MS(T*R) (the two-way ANOVA without replication, Obuchowski & Rockette 1995; Hillis 2007), and MS(R)_i, the
    reader mean square of test i alone (the single-test analyses of the module notes)."""
    t, r = th.shape
    est = th.mean(axis=1)
    grand = th.mean()
    ms_t = r * float(((est - grand) ** 2).sum()) / (t - 1) if t > 1 else NAN
    ms_r = t * float(((th.mean(axis=0) - grand) ** 2).sum()) / (r - 1) if r > 1 else NAN
    resid = th - est[:, None] - th.mean(axis=0)[None, :] + grand
    ms_tr = float((resid ** 2).sum()) / ((t - 1) * (r - 1)) if t > 1 and r > 1 else NAN
    ms_r_i = th.var(axis=1, ddof=1) if r > 1 else np.full(t, NAN)
    return est, ms_t, ms_r, ms_tr, ms_r_i


def _denominator(variant: str, ddf: str, t: int, r: int, c: int, ms_tr: float,
                 oc: dict[str, float | np.ndarray]) -> tuple[float, float]:
    """The denominator of the global test (the variance of a difference of two tests, times r / 2) and its df."""
    v, c1, c2, c3 = oc["var_error"], oc["cov1"], oc["cov2"], oc["cov3"]
    if variant == "random":
        # Hillis 2007: MS(T*R) + r max(cov2 - cov3, 0) on ddf_H = den^2 / (MS(T*R)^2 / ((t - 1)(r - 1)))
        den = ms_tr + r * max(c2 - c3, 0.0) if t > 1 else NAN
        df2 = _hillis_df(den, ms_tr, (t - 1) * (r - 1)) if t > 1 else NAN
        if ddf == "satterthwaite" and t > 1 and c2 > c3:
            # DBM (Hillis et al. 2005): MS(T*R) + MS(T*C) / c - MS(T*R*C) / c, each on its own df
            df2 = _satterthwaite([(ms_tr, (t - 1) * (r - 1)), (v - c1 + (r - 1) * (c2 - c3), (t - 1) * (c - 1)),
                                  (-(v - c1 - c2 + c3), (t - 1) * (r - 1) * (c - 1))])
        elif ddf == "two-term" and t > 1 and c2 > c3:
            # MS(T*R) on (t - 1)(r - 1) df and r (cov2 - cov3) on (t - 1)(c - 1) df (see DDF)
            df2 = _satterthwaite([(ms_tr, (t - 1) * (r - 1)), (r * (c2 - c3), (t - 1) * (c - 1))])
    elif variant == "fixed-readers":
        # chi2 = (t - 1) MS(T) / (var_error - cov1 + (r - 1) max(cov2 - cov3, 0)) on t - 1 df (Hillis 2007)
        den = v - c1 + (r - 1) * max(c2 - c3, 0.0) if r > 1 else v - c1
        df2 = math.inf
        if ddf in ("satterthwaite", "two-term") and t > 1:
            if c2 > c3 or r == 1:
                df2 = float((t - 1) * (c - 1))
            else:  # v - c1 = (MS(T*C) + (r - 1) MS(T*R*C)) / (r c)
                df2 = _satterthwaite([((v - c1 + (r - 1) * (c2 - c3)) / r, (t - 1) * (c - 1)),
                                      ((r - 1) * (v - c1 - c2 + c3) / r, (t - 1) * (r - 1) * (c - 1))])
    else:  # cases fixed: the two-way ANOVA, F = MS(T) / MS(T*R) on t - 1 and (t - 1)(r - 1) df
        den, df2 = ms_tr, float((t - 1) * (r - 1))
    return den, df2


def _single_test(variant: str, ddf: str, r: int, c: int, ms_r_i: float, v_i: float,
                 c2_i: float) -> tuple[float, float]:
    """The variance of one test's reader-averaged figure of merit and its df (module notes, "one test alone")."""
    if variant == "random":
        # SE^2 = (MS(R)_i + r max(cov2_i, 0)) / r on (MS(R)_i + r max(cov2_i, 0))^2 / (MS(R)_i^2 / (r - 1))
        d_i = ms_r_i + r * max(c2_i, 0.0)
        var_i, df_i = d_i / r, _hillis_df(d_i, ms_r_i, r - 1)
        if ddf == "satterthwaite" and c2_i > 0:
            df_i = _satterthwaite([(ms_r_i, r - 1), (v_i + (r - 1) * c2_i, c - 1),
                                   (-(v_i - c2_i), (r - 1) * (c - 1))])
        elif ddf == "two-term" and c2_i > 0:
            df_i = _satterthwaite([(ms_r_i, r - 1), (r * c2_i, c - 1)])
    elif variant == "fixed-readers":
        # the variance of the average of r readers' figures: var_i / r + (r - 1) / r cov2_i
        var_i = v_i / r + ((r - 1) / r * c2_i if r > 1 else 0.0)
        df_i = float(c - 1) if ddf in ("satterthwaite", "two-term") else math.inf
    else:  # cases fixed: SE^2 = MS(R)_i / r on r - 1 df
        var_i, df_i = ms_r_i / r, float(r - 1)
    return var_i, df_i


def _per_test(result: ORResult, ms_r_i: np.ndarray, oc: dict[str, float | np.ndarray], ddf: str,
              alpha: float) -> list[dict]:
    """Each test's estimate with its SE, df and confidence interval."""
    rows = []
    r, c, why = result.n_readers, result.n_cases, result.note
    for i, name in enumerate(result.tests):
        est = float(result.estimates[i])
        row = {"method": name, "estimate": est, "se": NAN, "df": NAN, "ci_low": NAN, "ci_high": NAN, "note": why}
        if not why:
            var_i, df_i = _single_test(result.variant, ddf, r, c, ms_r_i[i], oc["var_i"][i], oc["cov2_i"][i])
            if var_i > 0 and math.isfinite(var_i):
                se = math.sqrt(var_i)
                lo, hi = _t_interval(est, se, df_i, alpha)
                row.update(se=se, df=df_i, ci_low=lo, ci_high=hi)
            else:
                row["note"] = "no variation between readers or cases: no interval"
        rows.append(row)
    return rows


def _global_test(result: ORResult, den: float, df2: float, ddf: str) -> dict:
    """F = MS(T) / den on t - 1 and df2 df, or (readers fixed, Hillis's df) chi2 = (t - 1) MS(T) / den."""
    from scipy import stats

    t, why = len(result.tests), result.note
    stat_name = "chi2" if result.variant == "fixed-readers" and ddf == "hillis" else "F"
    g = {"statistic": stat_name, "value": NAN, "df1": t - 1, "df2": NAN, "p": NAN, "note": why}
    if t < 2:
        g["note"] = "1 method: nothing to compare"
    elif not why and not (den > 0 and math.isfinite(den)):
        g["note"] = "no variation between readers or cases: the test is undefined"
    elif not why:
        f = result.ms_t / den
        if stat_name == "chi2":
            value, p = f * (t - 1), float(stats.chi2.sf(f * (t - 1), t - 1))
        else:
            value, p = f, float(stats.f.sf(f, t - 1, df2))
        g.update(value=value, df2=df2, p=p)
    return g


def _pairs(result: ORResult, den: float, df2: float, alpha: float) -> list[dict]:
    """Every difference of two tests: SE^2 = 2 / r den on df2 df (Hillis 2007), none when the global test is n/a."""
    names, est, r, note = result.tests, result.estimates, result.n_readers, result.global_test["note"]
    rows = []
    for i in range(len(names)):
        for k in range(i + 1, len(names)):
            diff = float(est[i] - est[k])
            row = {"method_a": names[i], "method_b": names[k], "difference": diff, "se": NAN, "df": NAN,
                   "ci_low": NAN, "ci_high": NAN, "p": NAN, "note": note}
            if not note:
                se = math.sqrt(2.0 / r * den)
                lo, hi = _t_interval(diff, se, df2, alpha)
                row.update(se=se, df=df2, ci_low=lo, ci_high=hi, p=_t_p(diff / se, df2))
            rows.append(row)
    return rows


def obuchowski_rockette(theta, cov, tests: Sequence[str] | None = None, *, variant: str = "random",
                        covariance: str = "jackknife", n_cases: int, alpha: float = 0.05,
                        ddf: str = "hillis") -> ORResult:
    """The OR analysis of a tests x readers table of figures of merit (see the module notes).

    Parameters
    ----------
    theta : array-like, shape (tests, readers)
    cov : array-like, shape (tests, readers, tests, readers), or None
        Covariance of the figures of merit over cases; None when it could not be estimated (one case) or is not
        needed (``variant="fixed-cases"``).
    tests : sequence of str, optional
        Test (method) names; "1", "2", ... by default.
    variant : {"random", "fixed-readers", "fixed-cases"}
    covariance : str
        How ``cov`` was estimated, recorded in the result.
    n_cases : int
    alpha : float
        1 - the confidence level of the intervals.
    ddf : {"hillis", "satterthwaite", "two-term"}
        ``"hillis"``: the published degrees of freedom (module notes), which take the case covariances as known;
        ``"satterthwaite"``: also count the case terms' own degrees of freedom (DBM's); ``"two-term"``: the
        denominator's two terms as used (see :data:`DDF`).
    """
    if variant not in VARIANTS:
        raise UnknownChoiceError("MRMC variant", variant, VARIANTS)
    if ddf not in DDF:
        raise UnknownChoiceError("MRMC degrees of freedom", ddf, DDF)
    th = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    t, r = th.shape
    names = [str(x) for x in (tests if tests is not None else range(1, t + 1))]
    if len(names) != t:
        raise StudyError(f'argument "tests" names {len(names)} tests but theta has {t} rows')
    c = int(n_cases)
    oc = _error_covariances(cov, t, r)
    est, ms_t, ms_r, ms_tr, ms_r_i = _mean_squares(th)
    v, c1, c2, c3 = oc["var_error"], oc["cov1"], oc["cov2"], oc["cov3"]
    # moment estimates of the test x reader and reader variance components (Hillis 2007; may be negative)
    var_tr = ms_tr - v + c1 + c2 - c3 if t > 1 else NAN
    var_r = ((ms_r - ms_tr) / t - c1 + c3) if t > 1 else ms_r - v + (c2 if r > 1 else 0.0)
    result = ORResult(names, variant, covariance if variant != "fixed-cases" else "none", r, c, th, est, v, c1, c2,
                      c3, ms_t, ms_r, ms_tr, var_r, var_tr, {}, [], [], "", ddf)
    why = _why_not(variant, r, c, cov is not None, th)
    if variant == "fixed-cases":
        result.var_error = result.cov1 = result.cov2 = result.cov3 = NAN
        result.var_reader = result.var_test_reader = NAN
    result.note = why
    den, df2 = (NAN, NAN) if why else _denominator(variant, ddf, t, r, c, ms_tr, oc)
    result.per_test = _per_test(result, ms_r_i, oc, ddf, alpha)
    result.global_test = _global_test(result, den, df2, ddf)
    result.pairwise = _pairs(result, den, df2, alpha)
    return result


def auc_analysis(ratings, truth, tests: Sequence[str] | None = None, *, covariance: str = "delong",
                 variant: str = "random", alpha: float = 0.05, ddf: str = "hillis") -> ORResult:
    """OR analysis of the empirical AUC of a fully crossed ROC study (one image per case).

    Parameters
    ----------
    ratings : array-like, shape (tests, readers, cases)
    truth : array-like of bool, shape (cases,)
    covariance : {"delong", "jackknife"}
    """
    y = np.asarray(ratings, dtype=np.float64)
    d = np.asarray(truth, dtype=bool)
    kinds = ("delong", "jackknife")
    if covariance not in kinds:
        raise UnknownChoiceError("AUC covariance", covariance, kinds)
    if covariance == "delong":
        theta, cov = delong_covariance(y, d)
        label = "DeLong"
    else:
        def auc(keep):
            dk = d[keep]
            return mann_whitney_kernel(y[:, :, keep][:, :, dk], y[:, :, keep][:, :, ~dk]).mean(axis=(2, 3))

        theta, cov = jackknife_covariance(auc, y.shape[2])
        label = "jackknife"
    return obuchowski_rockette(theta, cov, tests, variant=variant, covariance=label, n_cases=y.shape[2],
                               alpha=alpha, ddf=ddf)
