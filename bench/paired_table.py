"""A markdown table of `medtrans evaluate` CSVs side by side: mean +- SD per direction, paired Wilcoxon p against the
first CSV (the full method), on the subjects they share. Used for the ablation tables in docs/results/.

    python bench/paired_table.py "full=data/bench/evaluation/disdiff-b2/metrics_T1_to_T2+T2_to_T1.csv" \\
        "w/o diffusion=data/bench/evaluation/disdiff-nodiff/metrics_T1_to_T2+T2_to_T1.csv"
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict


def read(path: str) -> dict:
    """(direction, subject) -> {metric: value} for the rows of the model itself (method == "model")."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("method", "model") == "model":
                out[(row["direction"], row["subject"])] = {k: float(row[k]) for k in ("psnr", "ssim", "mae")}
    return out


def main(argv=None) -> int:
    import numpy as np
    from scipy.stats import wilcoxon

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+", help="LABEL=CSV; the first is the reference of the paired tests")
    args = p.parse_args(argv)
    runs = [(t.split("=", 1)[0], read(t.split("=", 1)[1])) for t in args.tables]
    ref_label, ref = runs[0]
    directions = sorted({d for d, _s in ref})
    print("| direction | variant | n | PSNR (dB) | SSIM | MAE | p (PSNR, SSIM) vs " + ref_label + " |")
    print("|---|---|---|---|---|---|---|")
    for d in directions:
        for label, data in runs:
            subjects = sorted(s for dd, s in data if dd == d and (dd, s) in ref)
            cells = []
            for m in ("psnr", "ssim", "mae"):
                v = np.array([data[(d, s)][m] for s in subjects])
                cells.append(f"{v.mean():.2f} +- {v.std(ddof=1):.2f}" if m == "psnr" else
                             f"{v.mean():.4f} +- {v.std(ddof=1):.4f}")
            if label == ref_label:
                ptxt = "-"
            else:
                ps = []
                for m in ("psnr", "ssim"):
                    a = np.array([data[(d, s)][m] for s in subjects])
                    b = np.array([ref[(d, s)][m] for s in subjects])
                    ps.append(f"{wilcoxon(a, b, method='exact').pvalue:.3g}" if np.any(a != b) else "1")
                ptxt = ", ".join(ps)
            print(f"| {d.replace('->', ' -> ')} | {label} | {len(subjects)} | " + " | ".join(cells) + f" | {ptxt} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
