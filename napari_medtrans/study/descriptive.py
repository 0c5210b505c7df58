"""The descriptive tables of a study analysis, on the same data as the MRMC analysis.

Per criterion: mean and sd per method (:func:`summary`); Friedman and pairwise Wilcoxon signed-rank tests
(Holm-adjusted) over cases, each case's answers averaged over its readers (:func:`tests_over_cases`); how often
each method took each place, ties split over the places they span (:func:`rank_distribution`); the visual Turing
test's plain shares (:func:`turing_descriptive`); and inter-rater agreement, Krippendorff's alpha
(:func:`alpha_agreement`) or Kendall's W for rankings (:func:`kendall_agreement`). :func:`.analysis.analyse_records`
puts them into its :class:`~.analysis.StudyAnalysis`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from .model import REAL
from .records import Crossed, ScoreRecord
from .stats import friedman_test, holm, kendall_w, krippendorff_alpha, wilcoxon_signed_rank

__all__ = ["ZERO_HANDLING", "summary", "tests_over_cases", "rank_distribution", "turing_descriptive",
           "alpha_agreement", "kendall_agreement"]

ZERO_HANDLING = "zero differences dropped (Wilcoxon)"


def summary(recs: Sequence[ScoreRecord], criterion: str, methods: Sequence[str]) -> list[dict]:
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


def tests_over_cases(criterion: str, x: Crossed) -> tuple[dict, list[dict]]:
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


def rank_distribution(x: Crossed, higher_is_better: bool, methods: Sequence[str]) -> dict[str, list[float]]:
    """How often each method took each place over the readings, ties split over the places they span."""
    counts = {m: np.zeros(len(methods)) for m in methods}
    for j in range(len(x.readers)):
        for k in range(len(x.cases)):
            places = _rank_counts(x.values[:, j, k], higher_is_better, len(methods))
            for i, m in enumerate(x.methods):
                counts[m] += places[i]
    return {m: [float(v) for v in counts[m]] for m in methods}


def turing_descriptive(out: list, recs: Sequence[ScoreRecord], methods: Sequence[str]) -> None:
    """Append per method the share judged acquired, the share judged correctly and the mean confidence."""
    for m in methods:
        mine = [r for r in recs if r.method == m]
        if not mine:
            continue
        acquired = np.array([r.value for r in mine]) == 1.0
        conf = [r.confidence for r in mine if r.confidence is not None]
        out.append({"method": m, "n": len(mine), "judged_acquired": float(acquired.mean()),
                    "accuracy": float((acquired == (m == REAL)).mean()),
                    "mean_confidence": float(np.mean(conf)) if conf else float("nan")})


def alpha_agreement(recs, readers, units, level, name) -> dict:
    """Krippendorff's alpha at ``level`` over readers (coders) x images (units), with how many units pair up."""
    ri = {r: i for i, r in enumerate(readers)}
    ui = {u: i for i, u in enumerate(units)}
    x = np.full((len(readers), len(units)), np.nan)
    for r in recs:
        x[ri[r.reader], ui[r.image]] = r.value
    pairable = int((np.isfinite(x).sum(axis=0) >= 2).sum())
    value = krippendorff_alpha(x, level) if len(readers) >= 2 else float("nan")
    return {"criterion": name, "statistic": f"krippendorff_alpha_{level}", "value": value, "chance": 0.0,
            "n": pairable, "detail": f"{pairable} images answered by 2+ of {len(readers)} readers"}


def kendall_agreement(recs, name) -> dict:
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
