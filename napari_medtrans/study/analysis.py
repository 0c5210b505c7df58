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

Where things are: the statistics on arrays in :mod:`.stats`, the answers and their fully crossed array in
:mod:`.records`, the descriptive tables in :mod:`.descriptive`, the OR model in :mod:`.mrmc`; this module runs the
analysis and fills the MRMC tables. Every public name it had is importable from it still.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from ..core.errors import StudyError, UnknownChoiceError
from . import stats as _stats
from .descriptive import (
    ZERO_HANDLING,  # noqa: F401  (re-exported: importable from here as before the split)
    alpha_agreement,
    kendall_agreement,
    rank_distribution,
    summary,
    tests_over_cases,
    turing_descriptive,
)
from .model import REAL
from .mrmc import DDF, VARIANTS, jackknife_covariance, mann_whitney_kernel, obuchowski_rockette
from .records import Crossed, ScoreRecord, crossed, mid_ranks
from .stats import (
    EXACT_MAX,  # noqa: F401  (re-exported)
    LEVELS,  # noqa: F401  (re-exported)
    friedman_test,  # noqa: F401  (re-exported)
    holm,
    kendall_w,  # noqa: F401  (re-exported)
    krippendorff_alpha,  # noqa: F401  (re-exported)
    rank_with_ties,  # noqa: F401  (re-exported)
    wilcoxon_signed_rank,  # noqa: F401  (re-exported)
    wilcoxon_test,  # noqa: F401  (re-exported)
)

#: Re-exports every statistic of :mod:`.stats` (its constants ``LEVELS`` and ``EXACT_MAX`` are importable from here
#: too, but not starred), then this module's own names.
__all__ = [name for name in _stats.__all__ if name not in ("LEVELS", "EXACT_MAX")] + [
    "ScoreRecord",
    "StudyAnalysis",
    "collect_records",
    "analyse",
    "analyse_records",
]


#: The report warns below these numbers of readers and cases.
SMALL_READERS = 4
SMALL_CASES = 10
#: The MRMC figure of merit of a scale and of a ranking criterion.
METRIC = {"scale": "mean score", "ranking": "mean rank"}


# -- the study ---------------------------------------------------------------------------------------------
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


def _turing(t: _Tables, crit: str, x: Crossed, methods: Sequence[str]) -> None:
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


def analyse_records(records: Sequence[ScoreRecord], criteria: Sequence, methods: Sequence[str],
                    title: str = "", *, mrmc: str = "random", ddf: str = "two-term") -> StudyAnalysis:
    """The analysis of already unblinded records (see :func:`analyse`)."""
    if mrmc not in VARIANTS:
        raise UnknownChoiceError("MRMC variant", mrmc, VARIANTS)
    if ddf not in DDF:
        raise UnknownChoiceError("MRMC degrees of freedom", ddf, DDF)
    methods = list(methods)
    readers = sorted({r.reader for r in records})
    ranked = mid_ranks(records, {c.name for c in criteria if c.kind == "ranking"})
    a = StudyAnalysis(methods, list(criteria), readers, sorted({r.case for r in records}), [], [], [], [], [], {},
                      list(records), title, mrmc, ddf)
    tables = _Tables(mrmc, ddf)
    synth = [m for m in methods if m != REAL]
    turing_metrics = ("Turing AUC", "sensitivity", "balanced accuracy")
    for crit in criteria:
        recs = [r for r in ranked if r.criterion == crit.name]
        a.summary += summary(recs, crit.name, methods)
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
        x = crossed(recs, methods, crit.name)
        a.dropped += x.dropped
        r, c = len(x.readers), len(x.cases)
        if turing:
            if REAL in methods:
                turing_descriptive(a.realism, recs, methods)
                if REAL in x.methods and r and c:
                    _turing(tables, crit.name, x, methods)
                else:
                    why = ("no answers for the acquired images" if REAL not in x.methods
                           else "no reader answered every method of any case")
                    for name in turing_metrics:
                        tables.nothing(crit.name, name, synth, why, r, c)
            a.agreement.append(alpha_agreement(recs, readers, sorted({r.image for r in recs}), "nominal", crit.name))
            continue
        if r and c:
            tables.add(crit.name, METRIC[crit.kind], methods, x.methods,
                       lambda keep, vals=x.values: vals[:, :, keep].mean(axis=2), x.readers, c,
                       {m: "no answers" for m in methods if m not in x.methods})
        else:
            tables.nothing(crit.name, METRIC[crit.kind], methods, "no reader answered every method of any case", r,
                           c)
        friedman, pairwise = tests_over_cases(crit.name, x)
        a.friedman.append(friedman)
        a.pairwise += pairwise
        a.rank_distribution[crit.name] = rank_distribution(x, crit.kind == "scale", methods)
        a.agreement.append(alpha_agreement(recs, readers, sorted({r.image for r in recs}), "ordinal", crit.name)
                           if crit.kind == "scale" else kendall_agreement(recs, crit.name))
    a.mrmc_global, a.mrmc_methods = tables.glob, tables.methods
    a.mrmc_pairwise, a.mrmc_readers = tables.pairwise, tables.readers
    a.warnings = sorted({row["warning"] for row in tables.glob if row.get("warning")})
    return a
