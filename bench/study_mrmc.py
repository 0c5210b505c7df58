"""Level and power of the reader-study analysis on simulated studies (issue 25; docs/study-organiser-guide.md).

    python bench/study_mrmc.py                          # 1500 studies per setting, 5 readers x 10 cases
    python bench/study_mrmc.py --studies 50 --readers 8 --cases 30 --mrmc fixed-readers

Each study is drawn with :func:`napari_medtrans.study.simulate.simulate_records` (four candidates per case:
the acquired image and three methods, all at latent quality 3.0 unless an effect is added; answer noise 0.5, case
SD 0.4, reader SD 0.2) and analysed with :func:`analyse_records` on the "structure" criterion (1-5). Settings:
three nulls (no method effect) - no interaction, case x method SD 0.5, reader x method SD 0.3 - and, under each,
an effect of 0.3 and of 1.0 point for one method (m1). Printed per setting, with a 95 % (Wilson) interval:

* ``MRMC``: the share of studies whose Obuchowski-Rockette global test has p < 0.05 (the false-positive rate under
  a null, the power under an effect; goal under the nulls: 0.03-0.07), with the report's default degrees of
  freedom (``two-term``: Satterthwaite over the reader and case terms of Hillis's denominator);
* ``MRMC, Hillis df``: the same with Hillis's published degrees of freedom (``--ddf hillis``);
* ``MRMC, DBM df``: the same with the Dorfman-Berbaum-Metz Satterthwaite df (``--ddf satterthwaite``);
* ``MRMC pair``: any Holm-adjusted MRMC pairwise p < 0.05 (under an effect: m1 vs m2 unadjusted);
* ``Friedman (readings)``: the old analysis (issue 25), readings (reader, case) as independent blocks;
* ``Friedman (cases)``: the descriptive test the report keeps, readers averaged within each case;
* ``m2 CI covers 3``: how often the 95 % CI of method m2's mean score (latent 3.0, no effect) holds 3.

Runs single-threaded (BLAS threads set to 1 before numpy loads).
"""

from __future__ import annotations

import argparse
import math
import os
import time

# numpy loads inside the functions, after this
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n."""
    if n == 0:
        return float("nan"), float("nan")
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def run_setting(n_studies: int, seed0: int, readers: int, cases: int, mrmc: str, effect: float, **sds) -> dict:
    """Counts of p < 0.05 over ``n_studies`` studies for each column of the table (see the module notes)."""
    import numpy as np

    from napari_medtrans.study.analysis import analyse_records, friedman_test
    from napari_medtrans.study.model import DEFAULT_CRITERIA, REAL
    from napari_medtrans.study.simulate import simulate_records

    methods = [REAL, "m1", "m2", "m3"]
    crit = [c for c in DEFAULT_CRITERIA if c.name == "structure"]
    names = [f"r{i}" for i in range(readers)]
    case_ids = [f"c{i:03d}" for i in range(cases)]
    hits = {"mrmc": 0, "hillis": 0, "dbm": 0, "pair": 0, "readings": 0, "cases": 0, "covered": 0}
    for s in range(n_studies):
        recs = simulate_records(names, case_ids, methods, crit, seed=seed0 + s, quality={m: 3.0 for m in methods},
                                effects={"m1": effect} if effect else None, **sds)
        a = analyse_records(recs, crit, methods, mrmc=mrmc)
        hits["mrmc"] += a.mrmc_global[0]["p"] < 0.05
        hits["hillis"] += analyse_records(recs, crit, methods, mrmc=mrmc, ddf="hillis").mrmc_global[0]["p"] < 0.05
        hits["dbm"] += analyse_records(recs, crit, methods, mrmc=mrmc, ddf="satterthwaite").mrmc_global[0]["p"] < 0.05
        m2 = next(r for r in a.mrmc_methods if r["method"] == "m2")  # latent 3.0: the mean answer is 3 by symmetry
        hits["covered"] += m2["ci_low"] <= 3.0 <= m2["ci_high"]
        if effect:
            pair = next(r for r in a.mrmc_pairwise if (r["method_a"], r["method_b"]) == ("m1", "m2"))
            hits["pair"] += pair["p"] < 0.05
        else:
            hits["pair"] += any(r["p_holm"] < 0.05 for r in a.mrmc_pairwise)
        hits["cases"] += a.friedman[0]["p"] < 0.05
        table: dict[tuple[str, str], dict[str, float]] = {}
        for r in recs:
            table.setdefault((r.reader, r.case), {})[r.method] = r.value
        readings = np.array([[v[m] for m in methods] for v in table.values()])
        hits["readings"] += friedman_test(readings)[1] < 0.05
    return hits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=1500,
                   help="simulated studies per setting (default 1500: a rate near 0.05 to +- 0.011; 300 gives +- 0.025)")
    p.add_argument("--readers", type=int, default=5)
    p.add_argument("--cases", type=int, default=10)
    p.add_argument("--mrmc", default="random", choices=("random", "fixed-readers", "fixed-cases"))
    p.add_argument("--effects", default="0.3,1.0", help="effects (points) for the power rows (default 0.3,1.0)")
    p.add_argument("--seed", type=int, default=25_000)
    args = p.parse_args(argv)

    nulls = [("no interaction", {}), ("case x method SD 0.5", {"case_method_sd": 0.5}),
             ("reader x method SD 0.3", {"reader_method_sd": 0.3})]
    effects = [0.0] + [float(e) for e in args.effects.split(",") if e.strip()]
    print(f"{args.studies} simulated studies per setting: {args.readers} readers x {args.cases} cases, 4 candidates, "
          f"'structure' 1-5; MRMC variant: {args.mrmc}; rate of p < 0.05 [95 % Wilson interval]")
    header = (f"{'setting':<24} {'effect':>6} {'MRMC':>20} {'MRMC, Hillis df':>20} {'MRMC, DBM df':>20} {'MRMC pair':>20} "
              f"{'Friedman (readings)':>20} {'Friedman (cases)':>20} {'m2 CI covers 3':>20} {'s':>5}")
    print(header)
    print("-" * len(header))
    for k, (label, sds) in enumerate(nulls):
        for e_i, effect in enumerate(effects):
            t0 = time.perf_counter()
            seed0 = args.seed + 100_000 * k + 10_000 * e_i
            hits = run_setting(args.studies, seed0, args.readers, args.cases, args.mrmc, effect, **sds)
            cells = []
            for name in ("mrmc", "hillis", "dbm", "pair", "readings", "cases", "covered"):
                lo, hi = wilson(hits[name], args.studies)
                cells.append(f"{hits[name] / args.studies:.3f} [{lo:.2f},{hi:.2f}]")
            print(f"{label:<24} {effect:>6.1f} " + " ".join(f"{c:>20}" for c in cells)
                  + f" {time.perf_counter() - t0:>5.0f}", flush=True)
    print("effect 0.0 rows: false-positive rates (goal 0.03-0.07 for MRMC); MRMC pair there: any Holm-adjusted pair."
          "\nother rows: power; MRMC pair there: m1 vs m2, unadjusted.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
