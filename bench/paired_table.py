"""A markdown table of `medtrans evaluate` CSVs side by side: mean +- SD per direction, paired Wilcoxon p against the
first CSV (the full method), on the subjects they share, and whether each difference holds. The rows are the ones
`medtrans ablation` writes (napari_medtrans.training.ablation.comparison_table); this script compares any CSVs,
e.g. runs that no table defines.

    python bench/paired_table.py "full=data/bench/evaluation/disdiff-b2/metrics_T1_to_T2+T2_to_T1.csv" \\
        "w/o diffusion=data/bench/evaluation/disdiff-nodiff/metrics_T1_to_T2+T2_to_T1.csv"
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    from napari_medtrans.training.ablation import comparison_table, read_metrics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+", help="LABEL=CSV; the first is the reference of the paired tests")
    args = p.parse_args(argv)
    per = {}
    for item in args.tables:
        label, _, path = item.partition("=")
        per[label] = read_metrics(path)
    lines, verdicts = comparison_table(per, next(iter(per)))
    print("\n".join(lines + [""] + verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
