"""Writing a study's analysis: CSV tables and one self-contained HTML page with its figures embedded.

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


def write_csv_tables(analysis: StudyAnalysis, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write scores, summary, friedman, pairwise, agreement, realism and rank distributions as CSV files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = [{"reader": r.reader, "case": r.case, "image": r.image, "method": r.method,
                "criterion": r.criterion, "value": r.value, "confidence": r.confidence, "seconds": r.seconds}
               for r in analysis.records]
    ranks = [{"criterion": c, "method": m, **{f"rank_{i + 1}": n for i, n in enumerate(counts)}}
             for c, per in analysis.rank_distribution.items() for m, counts in per.items()]
    k = len(analysis.methods)
    return {
        "scores": _write(out / "scores.csv", records,
                         ["reader", "case", "image", "method", "criterion", "value", "confidence", "seconds"]),
        "summary": _write(out / "summary.csv", analysis.summary, ["method", "criterion", "n", "mean", "sd"]),
        "friedman": _write(out / "friedman.csv", analysis.friedman, ["criterion", "blocks", "chi2", "p"]),
        "pairwise": _write(out / "pairwise.csv", analysis.pairwise,
                           ["criterion", "method_a", "method_b", "n", "mean_difference", "statistic", "p",
                            "p_holm"]),
        "agreement": _write(out / "agreement.csv", analysis.agreement,
                            ["criterion", "statistic", "value", "n", "detail"]),
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
    """PNG of mean +- sd per method for every scale criterion, or None when there is none."""
    from matplotlib.figure import Figure

    crits = [c for c in analysis.criteria if c.kind == "scale"]
    if not crits:
        return None
    fig = Figure(figsize=(4.2 * len(crits), 3.2), layout="constrained")
    for p, crit in enumerate(crits):
        ax = fig.add_subplot(1, len(crits), p + 1)
        means = [analysis.mean(m, crit.name) for m in analysis.methods]
        sds = [next((r["sd"] for r in analysis.summary if r["method"] == m and r["criterion"] == crit.name),
                    float("nan")) for m in analysis.methods]
        x = np.arange(len(analysis.methods))
        ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(sds), capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, [_label(m) for m in analysis.methods], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(crit.min_value - 0.5, crit.max_value + 0.5)
        ax.set_title(crit.label, fontsize=10)
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
"""


def write_report(analysis: StudyAnalysis, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.html`` and the CSV tables into ``out_dir``; returns every path written by name.

    The HTML holds: the study overview, mean +- sd per method and criterion, the Friedman test and the pairwise
    Wilcoxon signed-rank tests with Holm-adjusted p-values (bold below 0.05), inter-rater agreement, realism
    accuracy per method, and the figures.
    """
    out = Path(out_dir)
    paths = write_csv_tables(analysis, out)
    a = analysis
    crit_label = {c.name: c.label for c in a.criteria}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(a.title)} - reader study "
             f"report</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(a.title)}</h1>",
             f"<p>{len(a.readers)} readers, {len(a.cases)} cases, {len(a.methods)} candidates per case "
             f"({html.escape(', '.join(_label(m) for m in a.methods))}), {len(a.records)} answers counted "
             f"(each reader's latest answer). Written {time.strftime('%Y-%m-%d %H:%M')}.</p>"]
    parts.append("<h2>Scores (mean &plusmn; sd)</h2>")
    rows = []
    for m in a.methods:
        row = {"method": m}
        for c in a.criteria:
            if c.kind == "realism":
                continue
            s = next((r for r in a.summary if r["method"] == m and r["criterion"] == c.name), None)
            row[c.name] = (f"{_fmt(s['mean'], 2)} ± {_fmt(s['sd'], 2)} (n={s['n']})" if s and s["n"] else "-")
        rows.append(row)
    cols = [("method", "method")] + [(c.name, c.label + (" (rank, 1 best)" if c.kind == "ranking" else ""))
                                     for c in a.criteria if c.kind != "realism"]
    parts.append(_table(rows, cols))
    parts.append(_img(means_png(a), "mean and sd per method"))
    parts.append("<h2>Rank distributions</h2><p class='note'>Within every (reader, case) the candidates are "
                 "ranked by the reader's scores (ties share the better rank) or taken from the reader's ranking; "
                 "bars show how often each method got each rank (as in HiFi-Syn Fig. 6).</p>")
    parts.append(_img(rank_distribution_png(a), "rank distributions"))
    parts.append("<h2>Differences between methods</h2><p class='note'>Friedman test over (reader, case) blocks "
                 "with an answer for every method; pairwise two-sided Wilcoxon signed-rank tests on the same "
                 "blocks, p adjusted with Holm's method per criterion (bold: adjusted p &lt; 0.05).</p>")
    parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.friedman],
                        [("criterion", "criterion"), ("blocks", "blocks"), ("chi2", "chi²"), ("p", "p")]))
    parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.pairwise],
                        [("criterion", "criterion"), ("method_a", "A"), ("method_b", "B"), ("n", "n"),
                         ("mean_difference", "mean A-B"), ("statistic", "W"), ("p", "p"), ("p_holm", "p (Holm)")],
                        bold=lambda k, r: k == "p_holm" and r.get("p_holm", 1.0) < 0.05))
    parts.append("<h2>Agreement between readers</h2><p class='note'>Krippendorff's alpha (ordinal for scales, "
                 "nominal for acquired-or-generated): 1 perfect, 0 chance. Kendall's W for rankings: 0 no "
                 "concordance, 1 complete.</p>")
    parts.append(_table([dict(r, criterion=crit_label.get(r["criterion"], r["criterion"])) for r in a.agreement],
                        [("criterion", "criterion"), ("statistic", "statistic"), ("value", "value"),
                         ("detail", "based on")]))
    if a.realism:
        parts.append("<h2>Visual Turing test</h2><p class='note'>How often readers judged each method's images "
                     "acquired on a scanner, and how often they were right (acquired images judged acquired, "
                     "generated ones judged generated).</p>")
        parts.append(_table(a.realism, [("method", "method"), ("n", "n"), ("judged_acquired", "judged acquired"),
                                        ("accuracy", "accuracy"), ("mean_confidence", "mean confidence")]))
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li>{html.escape(p.name)}</li>" for p in paths.values())
                 + "</ul></body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8")
    return {"html": report, **paths}
