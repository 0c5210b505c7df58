"""Writing a study's analysis: CSV tables and one self-contained HTML page with its figures embedded.

The page leads with the multi-reader multi-case (MRMC) analysis (Obuchowski-Rockette, Hillis degrees of freedom):
readers and cases counted, a warning when either is small, per-method 95 % CIs, the global tests, the pairwise
differences, the visual Turing test when the study has acquired images, and what was left out and why. The
descriptive tables follow (mean +- sd, rank distributions, Friedman and Wilcoxon over cases, agreement).

Figures are drawn with matplotlib's Agg canvas (no GUI toolkit) and embedded as PNG data URIs, so the page
can be mailed as one file. The rank-distribution figure follows HiFi-Syn Fig. 6: one horizontal bar per
method, split by how often it was ranked 1st, 2nd, ... (ties share the better rank).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import time
from pathlib import Path

import numpy as np

from .analysis import StudyAnalysis
from .model import REAL

__all__ = ["write_report", "write_csv_tables", "rank_distribution_png", "means_png"]


def _label(method: str) -> str:
    return "acquired (real)" if method == REAL else method


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if 0 < abs(v) < 10 ** -digits:
            return f"{v:.1e}"
        return f"{v:.{digits}f}"
    return str(v)


def _write(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return path


MRMC_GLOBAL = ["criterion", "metric", "methods", "n_readers", "n_cases", "statistic", "value", "df1", "df2", "p",
               "var_error", "cov1", "cov2", "cov3", "var_reader", "var_test_reader", "covariance", "ddf", "note",
               "warning"]
MRMC_METHODS = ["criterion", "metric", "method", "n_readers", "n_cases", "estimate", "se", "df", "ci_low", "ci_high",
                "note"]
MRMC_PAIRWISE = ["criterion", "metric", "method_a", "method_b", "n_readers", "n_cases", "difference", "se", "df",
                 "ci_low", "ci_high", "p", "p_holm", "note"]


def write_csv_tables(analysis: StudyAnalysis, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the MRMC tables (mrmc_global, mrmc_methods, mrmc_pairwise, mrmc_readers), what was left out
    (dropped), and scores, summary, friedman, pairwise, agreement, realism and rank distributions as CSV files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = [{"reader": r.reader, "case": r.case, "image": r.image, "method": r.method,
                "criterion": r.criterion, "value": r.value, "confidence": r.confidence, "seconds": r.seconds}
               for r in analysis.records]
    ranks = [{"criterion": c, "method": m, **{f"rank_{i + 1}": n for i, n in enumerate(counts)}}
             for c, per in analysis.rank_distribution.items() for m, counts in per.items()]
    k = len(analysis.methods)
    return {
        "mrmc_global": _write(out / "mrmc_global.csv", analysis.mrmc_global, MRMC_GLOBAL),
        "mrmc_methods": _write(out / "mrmc_methods.csv", analysis.mrmc_methods, MRMC_METHODS),
        "mrmc_pairwise": _write(out / "mrmc_pairwise.csv", analysis.mrmc_pairwise, MRMC_PAIRWISE),
        "mrmc_readers": _write(out / "mrmc_readers.csv", analysis.mrmc_readers,
                               ["criterion", "metric", "method", "reader", "value"]),
        "dropped": _write(out / "dropped.csv", analysis.dropped, ["criterion", "what", "reason"]),
        "scores": _write(out / "scores.csv", records,
                         ["reader", "case", "image", "method", "criterion", "value", "confidence", "seconds"]),
        "summary": _write(out / "summary.csv", analysis.summary,
                          ["method", "criterion", "n", "readers", "cases", "mean", "sd"]),
        "friedman": _write(out / "friedman.csv", analysis.friedman,
                           ["criterion", "methods", "blocks", "readers", "chi2", "p"]),
        "pairwise": _write(out / "pairwise.csv", analysis.pairwise,
                           ["criterion", "method_a", "method_b", "n", "n_nonzero", "mean_difference", "statistic",
                            "p", "p_holm", "method", "zero_handling", "rank_biserial"]),
        "agreement": _write(out / "agreement.csv", analysis.agreement,
                            ["criterion", "statistic", "value", "chance", "n", "detail"]),
        "realism": _write(out / "realism.csv", analysis.realism,
                          ["method", "n", "judged_acquired", "accuracy", "mean_confidence"]),
        "rank_distribution": _write(out / "rank_distribution.csv", ranks,
                                    ["criterion", "method"] + [f"rank_{i + 1}" for i in range(k)]),
    }


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def rank_distribution_png(analysis: StudyAnalysis) -> bytes | None:
    """PNG of the rank distributions (one panel per ranked criterion), or None when nothing was ranked."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    crits = [c for c in analysis.criteria if c.name in analysis.rank_distribution]
    if not crits:
        return None
    labels = {c.name: c.label for c in analysis.criteria}
    k = len(analysis.methods)
    fig = Figure(figsize=(5.2 * len(crits), 0.45 * k + 1.6), layout="constrained")
    cmap = colormaps["viridis"]
    colours = [cmap(i / max(k - 1, 1)) for i in range(k)]
    for p, crit in enumerate(crits):
        ax = fig.add_subplot(1, len(crits), p + 1)
        per = analysis.rank_distribution[crit.name]
        methods = list(analysis.methods)[::-1]
        left = np.zeros(len(methods))
        for r in range(k):
            counts = np.array([per[m][r] for m in methods], dtype=float)
            totals = np.array([max(sum(per[m]), 1) for m in methods], dtype=float)
            share = 100.0 * counts / totals
            ax.barh([_label(m) for m in methods], share, left=left, color=colours[r],
                    label=f"rank {r + 1}", edgecolor="white", linewidth=0.5)
            left += share
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of readings")
        ax.set_title(f"({chr(97 + p)}) {labels[crit.name]}", fontsize=10)
    fig.axes[-1].legend(loc="lower right", bbox_to_anchor=(1.0, 1.08), ncol=min(k, 6), fontsize=7,
                        frameon=False)
    return _png(fig)


def means_png(analysis: StudyAnalysis) -> bytes | None:
    """PNG of the reader-averaged mean score per method with its MRMC 95 % CI for every scale criterion (no bar
    where the CI is n/a), or None when there is no scale criterion."""
    from matplotlib.figure import Figure

    crits = [c for c in analysis.criteria if c.kind == "scale"]
    if not crits:
        return None
    fig = Figure(figsize=(4.2 * len(crits), 3.2), layout="constrained")
    for p, crit in enumerate(crits):
        ax = fig.add_subplot(1, len(crits), p + 1)
        rows = {r["method"]: r for r in analysis.mrmc_methods
                if r["criterion"] == crit.name and r["metric"] == "mean score"}
        est = np.array([rows.get(m, {}).get("estimate", analysis.mean(m, crit.name)) for m in analysis.methods],
                       dtype=float)
        lo = np.array([rows.get(m, {}).get("ci_low", math.nan) for m in analysis.methods], dtype=float)
        hi = np.array([rows.get(m, {}).get("ci_high", math.nan) for m in analysis.methods], dtype=float)
        err = np.nan_to_num(np.vstack([est - lo, hi - est]))
        x = np.arange(len(analysis.methods))
        ax.bar(x, np.nan_to_num(est), yerr=err, capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, [_label(m) for m in analysis.methods], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(crit.min_value - 0.5, crit.max_value + 0.5)
        ax.set_title(f"{crit.label} (95 % CI)", fontsize=10)
    return _png(fig)


def _table(rows: list[dict], columns: list[tuple[str, str]], bold=None) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            v = row.get(key)
            text = html.escape(_label(v) if key in ("method", "method_a", "method_b") and isinstance(v, str)
                               else _fmt(v))
            if bold is not None and bold(key, row):
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.2em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,td:nth-child(2){text-align:left}img{max-width:100%}.note{color:#555;font-size:90%}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px}
"""


_VARIANT_TEXT = {
    "random": "readers and cases both random: the conclusions are for readers and cases like these, not only for "
              "the ones in the study",
    "fixed-readers": "readers fixed, cases random: the conclusions are for these readers only (on new cases)",
    "fixed-cases": "readers random, cases fixed: the conclusions are for these cases only (read by new readers)",
}
_DIGITS = {"mean score": 2, "mean rank": 2}


def _ci_cell(row: dict) -> str:
    d = _DIGITS.get(row["metric"], 3)
    if not math.isfinite(row["estimate"]):
        return f"n/a ({row['note']})" if row.get("note") else "n/a"
    if not math.isfinite(row["ci_low"]):
        return f"{_fmt(row['estimate'], d)} [CI n/a]"
    return f"{_fmt(row['estimate'], d)} [{_fmt(row['ci_low'], d)}, {_fmt(row['ci_high'], d)}]"


def _mrmc_section(a: StudyAnalysis, crit_label: dict) -> list[str]:
    df_text = {
        "two-term": "Hillis's denominator (Hillis 2007, 2008) on Satterthwaite's degrees of freedom over its two terms, "
                    "the reader term and the case term (the case covariances are estimated too, which matters with "
                    "few cases; with many cases, or no case term, this is Hillis's df)",
        "satterthwaite": "Hillis's denominator (Hillis 2007, 2008) on the Dorfman-Berbaum-Metz Satterthwaite degrees "
                         "of freedom over every mean square behind it (conservative when there is no interaction)",
        "hillis": "Hillis's denominator degrees of freedom (Hillis 2007, 2008), which take the case covariances as "
                  "known (suited to many cases)",
    }[a.mrmc_ddf]
    intro = (f"<h2>Multi-reader multi-case analysis</h2><p class='note'>Obuchowski-Rockette analysis (Obuchowski "
             f"&amp; Rockette 1995) with {df_text}; {_VARIANT_TEXT[a.mrmc_variant]}. Each figure of merit (a mean "
             "score, a mean rank, ...) is computed per reader and method; its variation between readers and its "
             "covariance over cases (jackknife: the study re-analysed leaving out one case at a time) give the "
             "95 % confidence intervals and the tests. Readers of one case are not counted as independent "
             "observations. A reader or case that lacks an answer is left out of that criterion (listed below); "
             "n/a says why a figure cannot be given.</p>")
    parts = [intro]
    if a.warnings:
        parts.append("<p class='warn'>" + "<br>".join(
            f"Caution: {html.escape(w)}: intervals are wide and the tests' level less certain; a study for "
            "publication should have more." for w in a.warnings) + "</p>")
    crits = [c for c in a.criteria if c.kind != "realism"]
    if crits:
        parts.append("<h3>Per method (reader average, 95 % CI)</h3>")
        rows = []
        for c in crits:
            mine = [r for r in a.mrmc_methods if r["criterion"] == c.name]
            if not mine:
                continue
            row = {"criterion": crit_label[c.name], "metric": mine[0]["metric"] + (" (1 best)" if c.kind ==
                                                                                   "ranking" else "")}
            row["readers x cases"] = f"{mine[0]['n_readers']} x {mine[0]['n_cases']}"
            row.update({m["method"]: _ci_cell(m) for m in mine})
            rows.append(row)
        parts.append(_table(rows, [("criterion", "criterion"), ("metric", "figure"),
                                   ("readers x cases", "readers x cases")]
                            + [(m, _label(m)) for m in a.methods]))
    turing = [r for r in a.mrmc_methods if r["metric"] in ("Turing AUC", "sensitivity", "balanced accuracy",
                                                           "specificity")]
    if turing:
        synth = [m for m in a.methods if m != REAL]
        parts.append("<h3>Visual Turing test (reader average, 95 % CI)</h3><p class='note'>Can readers tell each "
                     "method's images from acquired ones? Turing AUC: the area under the ROC curve of telling a "
                     "generated image from an acquired one, with the answer and its confidence as a 10-point "
                     "rating (0.5: they cannot; 1: always); sensitivity: the method's images called generated; "
                     "specificity: acquired images called acquired; balanced accuracy: their mean (0.5 is "
                     "chance: a reader who calls everything generated scores 0.5). Lower is better for the "
                     "method.</p>")
        rows = []
        for metric in ("Turing AUC", "sensitivity", "balanced accuracy"):
            mine = {r["method"]: r for r in turing if r["metric"] == metric}
            if mine:
                rows.append({"metric": metric, **{m: _ci_cell(mine[m]) for m in synth if m in mine}})
        parts.append(_table(rows, [("metric", "figure")] + [(m, _label(m)) for m in synth]))
        spec = next((r for r in turing if r["metric"] == "specificity"), None)
        if spec:
            parts.append(f"<p>Specificity (acquired images called acquired): {html.escape(_ci_cell(spec))}, "
                         f"{spec['n_readers']} readers x {spec['n_cases']} cases.</p>")
    if a.mrmc_global:
        parts.append("<h3>Global tests</h3><p class='note'>Do the methods differ at all on this figure? F on "
                     "Hillis's degrees of freedom (chi² when readers are fixed).</p>")
        parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"]),
                                  stat=f"{r['statistic']} = {_fmt(r['value'])}" if r["statistic"] else "n/a")
                             for r in a.mrmc_global],
                            [("criterion", "criterion"), ("metric", "figure"), ("methods", "methods compared"),
                             ("n_readers", "readers"), ("n_cases", "cases"), ("stat", "statistic"),
                             ("df1", "df1"), ("df2", "df2"), ("p", "p"), ("note", "n/a because")],
                            bold=lambda k, r: k == "p" and r.get("p", 1.0) < 0.05))
    if a.mrmc_pairwise:
        parts.append("<h3>Differences between methods</h3><p class='note'>A minus B, reader-averaged, with its 95 % "
                     "CI and two-sided p; p (Holm) adjusts for the comparisons of one figure (bold below "
                     "0.05).</p>")
        rows = []
        for r in a.mrmc_pairwise:
            d = _DIGITS.get(r["metric"], 3)
            ci = (f"[{_fmt(r['ci_low'], d)}, {_fmt(r['ci_high'], d)}]" if math.isfinite(r["ci_low"]) else "n/a")
            rows.append(dict(r, criterion=crit_label.get(r["criterion"], r["criterion"]),
                             diff=_fmt(r["difference"], d), ci=ci))
        parts.append(_table(rows, [("criterion", "criterion"), ("metric", "figure"), ("method_a", "A"),
                                   ("method_b", "B"), ("diff", "A - B"), ("ci", "95 % CI"), ("p", "p"),
                                   ("p_holm", "p (Holm)"), ("note", "n/a because")],
                            bold=lambda k, r: k == "p_holm" and r.get("p_holm", 1.0) < 0.05))
    if a.dropped:
        parts.append("<h3>Left out of the analysis</h3>")
        parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.dropped],
                            [("criterion", "criterion"), ("what", "what"), ("reason", "why")]))
    return parts


def write_report(analysis: StudyAnalysis, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.html`` and the CSV tables into ``out_dir``; returns every path written by name.

    The HTML leads with the MRMC analysis (see the module notes), then the descriptive tables: mean +- sd per
    method and criterion, rank distributions, Friedman and pairwise Wilcoxon tests over cases with Holm-adjusted
    p-values, agreement between readers with its chance level, the visual Turing test's plain shares, figures.
    """
    out = Path(out_dir)
    paths = write_csv_tables(analysis, out)
    a = analysis
    crit_label = {c.name: c.label for c in a.criteria}
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(a.title)} - reader study "
              f"report</title><style>{_CSS}</style></head><body>"),
             f"<h1>{html.escape(a.title)}</h1>",
             (f"<p>{len(a.readers)} readers, {len(a.cases)} cases, {len(a.methods)} candidates per case "
              f"({html.escape(', '.join(_label(m) for m in a.methods))}), {len(a.records)} answers counted "
              f"(each reader's latest answer). Written {time.strftime('%Y-%m-%d %H:%M')}.</p>")]
    parts += _mrmc_section(a, crit_label)
    parts.append("<h2>Descriptive tables</h2><p class='note'>What the readers answered, on the same data; the "
                 "tests here treat the readers as fixed and are no substitute for the analysis above.</p>")
    parts.append("<h3>Scores (mean &plusmn; sd)</h3><p class='note'>Over every answer (n answers from the readers "
                 "and cases named); rankings as mid-ranks: tied candidates share the mean of the places they "
                 "span. The figure shows the reader-averaged means with their 95 % CIs from the analysis "
                 "above.</p>")
    rows = []
    for m in a.methods:
        row = {"method": m}
        for c in a.criteria:
            if c.kind == "realism":
                continue
            s = next((r for r in a.summary if r["method"] == m and r["criterion"] == c.name), None)
            row[c.name] = (f"{_fmt(s['mean'], 2)} ± {_fmt(s['sd'], 2)} (n={s['n']}: {s['readers']} readers, "
                           f"{s['cases']} cases)" if s and s["n"] else "-")
        rows.append(row)
    cols = [("method", "method")] + [(c.name, c.label + (" (rank, 1 best)" if c.kind == "ranking" else ""))
                                     for c in a.criteria if c.kind != "realism"]
    parts.append(_table(rows, cols))
    parts.append(_img(means_png(a), "mean per method with 95% CI"))
    parts.append("<h3>Rank distributions</h3><p class='note'>Within every reading (reader, case) the candidates are "
                 "ranked by the reader's scores or taken from the reader's ranking; bars show how often each "
                 "method got each place (as in HiFi-Syn Fig. 6). Ties are split: a tie over places 1 and 2 counts "
                 "one half at each.</p>")
    parts.append(_img(rank_distribution_png(a), "rank distributions"))
    parts.append("<h3>Friedman and Wilcoxon tests over cases</h3><p class='note'>Each case's answers averaged over "
                 "its readers (blocks are cases, not readings). Friedman test across methods; pairwise two-sided "
                 "Wilcoxon signed-rank tests, exact up to 25 non-zero differences (normal approximation above), "
                 "zero differences dropped (Wilcoxon's rule), ties given mid-ranks; p adjusted with Holm's method "
                 "per criterion (bold: adjusted p &lt; 0.05); r: the matched-pairs rank-biserial effect size "
                 "(-1 to 1).</p>")
    parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.friedman],
                        [("criterion", "criterion"), ("methods", "methods"), ("blocks", "cases"),
                         ("readers", "readers"), ("chi2", "chi²"), ("p", "p")]))
    parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.pairwise],
                        [("criterion", "criterion"), ("method_a", "A"), ("method_b", "B"), ("n", "cases"),
                         ("n_nonzero", "non-zero"), ("mean_difference", "mean A-B"), ("statistic", "W+"),
                         ("rank_biserial", "r"), ("p", "p"), ("method", "p by"), ("p_holm", "p (Holm)")],
                        bold=lambda k, r: k == "p_holm" and r.get("p_holm", 1.0) < 0.05))
    parts.append("<h3>Agreement between readers</h3><p class='note'>Krippendorff's alpha (ordinal for scales, "
                 "nominal for acquired-or-generated): 1 perfect, 0 chance level. Kendall's W for rankings, per "
                 "case: 1 complete concordance; its chance level is not 0 but about 1 / readers (what readers "
                 "ranking at random would reach).</p>")
    parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.agreement],
                        [("criterion", "criterion"), ("statistic", "statistic"), ("value", "value"),
                         ("chance", "chance level"), ("detail", "based on")]))
    if a.realism:
        parts.append("<h3>Visual Turing test: plain shares</h3><p class='note'>How often readers judged each "
                     "method's images acquired on a scanner, and how often they were right (the sensitivity for a "
                     "generated method, the specificity for acquired images). A share alone measures the readers' "
                     "habit as much as the images: see the Turing AUC and balanced accuracy above.</p>")
        parts.append(_table(a.realism, [("method", "method"), ("n", "n"), ("judged_acquired", "judged acquired"),
                                        ("accuracy", "judged correctly"), ("mean_confidence", "mean confidence")]))
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li>{html.escape(p.name)}</li>" for p in paths.values())
                 + "</ul></body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8")
    return {"html": report, **paths}
