"""Reader-study statistics against published values, and the analysis + report of a simulated study."""

from __future__ import annotations

import base64
import csv
import math
import re

import numpy as np
import pytest
from scipy.stats import friedmanchisquare

from napari_medtrans.core.errors import StudyError, UnknownChoiceError
from napari_medtrans.study import analyse, write_report
from napari_medtrans.study.analysis import (
    ScoreRecord,
    analyse_records,
    friedman_test,
    holm,
    kendall_w,
    krippendorff_alpha,
    rank_with_ties,
    wilcoxon_test,
)
from napari_medtrans.study.model import DEFAULT_CRITERIA, REAL, parse_config
from napari_medtrans.study.simulate import default_qualities, simulate_readers, simulate_records
from napari_medtrans.study.store import StudyStore

nan = np.nan
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the worked example with missing data.
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
])


@pytest.mark.parametrize("level,expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                            ("ratio", 0.797)])
def test_krippendorff_alpha_matches_the_published_example(level, expected):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_alpha_edge_cases():
    assert krippendorff_alpha([[1, 2, 3, 4], [1, 2, 3, 4]], "ordinal") == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha([[3, 3, 3], [3, 3, 3]]))  # no variation: undefined
    assert np.isnan(krippendorff_alpha([[1, nan], [nan, 2]]))  # no unit has two values
    rng = np.random.default_rng(0)
    assert abs(krippendorff_alpha(rng.integers(1, 6, (5, 400)), "ordinal")) < 0.05  # chance level
    with pytest.raises(UnknownChoiceError):
        krippendorff_alpha([[1, 2]], "cardinal")


def test_kendall_w_agrees_with_friedman_and_bounds():
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 5, (6, 5)).astype(float)  # with ties
    chi2, _ = friedmanchisquare(*ranks.T)
    assert kendall_w(ranks) == pytest.approx(chi2 / (6 * (5 - 1)))
    same = np.tile(np.arange(1, 6), (4, 1))
    assert kendall_w(same) == pytest.approx(1.0)
    opposite = np.vstack([np.arange(1, 6), np.arange(5, 0, -1)])
    assert kendall_w(opposite) == pytest.approx(0.0)
    assert np.isnan(kendall_w([[1, 2, 3]]))


def test_holm_step_down():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    out = holm([0.02, nan, 0.01])
    assert np.isnan(out[1]) and out[2] == pytest.approx(0.02) and out[0] == pytest.approx(0.02)


def test_tests_and_ranks_helpers():
    np.testing.assert_array_equal(rank_with_ties([5, 3, 5, 1]), [1, 3, 1, 4])
    assert friedman_test(np.ones((5, 3))) == (0.0, 1.0)
    assert all(np.isnan(friedman_test(np.ones((5, 2)))))
    assert wilcoxon_test([1, 2, 3], [1, 2, 3]) == (0.0, 1.0)
    _, p = wilcoxon_test(np.arange(20) + 2.0, np.arange(20) + np.r_[np.zeros(10), np.ones(10)] * 0)
    assert p < 0.001


# -- a simulated study ------------------------------------------------------------------------------------
def make_store(tmp_path, n_cases=8, methods=("hifi", "cyclegan", "munit")):
    spec = parse_config({"title": "Simulated T1->T2", "seed": 4, "target": "T2",
                         "cases": [{"id": f"sub-{i}", "sources": {"T1": "t1"}, "real": "t2",
                                    "candidates": {m: m for m in methods}} for i in range(n_cases)]})
    store = StudyStore(tmp_path / "study.db", create=True)
    store.add_study(spec)
    return store


def test_analysis_recovers_the_simulated_truth(tmp_path):
    store = make_store(tmp_path)
    simulate_readers(store, 6, seed=3, noise=0.4)
    a = analyse(store)
    assert a.methods == [REAL, "hifi", "cyclegan", "munit"]
    assert len(a.readers) == 6 and len(a.cases) == 8
    for crit in ("structure", "diagnostic"):
        means = [a.mean(m, crit) for m in a.methods]
        assert means == sorted(means, reverse=True), f"{crit}: {means}"
        row = next(r for r in a.summary if r["method"] == "hifi" and r["criterion"] == crit)
        assert row["n"] == 48 and 0 < row["sd"] < 1.5
    ranking = [a.mean(m, "ranking") for m in a.methods]
    assert ranking == sorted(ranking)  # rank 1 is best
    fr = {r["criterion"]: r for r in a.friedman}
    # blocks are cases (each averaged over its readers), not the 48 readings: readings of one case are not
    # independent (issue 25); with 8 blocks the smallest possible Friedman p is 2.5e-5, the exact Wilcoxon 1/128
    assert fr["structure"]["blocks"] == 8 and fr["structure"]["p"] < 1e-3
    pw = {(r["criterion"], r["method_a"], r["method_b"]): r for r in a.pairwise}
    far = pw[("structure", "hifi", "munit")]  # 2 points apart
    assert far["p_holm"] < 0.05 and far["p_holm"] >= far["p"] and far["mean_difference"] > 1.5
    assert far["method"] == "exact"
    g = next(r for r in a.mrmc_global if r["criterion"] == "structure")
    assert g["n_readers"] == 6 and g["n_cases"] == 8 and g["p"] < 1e-3
    mrmc_far = next(r for r in a.mrmc_pairwise if (r["criterion"], r["method_a"], r["method_b"])
                    == ("structure", "hifi", "munit"))
    assert mrmc_far["ci_low"] > 1.0 and mrmc_far["p_holm"] < 0.01
    assert len([k for k in pw if k[0] == "structure"]) == 6
    ag = {r["criterion"]: r for r in a.agreement}
    assert ag["structure"]["statistic"] == "krippendorff_alpha_ordinal" and ag["structure"]["value"] > 0.5
    assert ag["ranking"]["statistic"] == "kendall_w_mean" and ag["ranking"]["value"] > 0.6
    assert ag["realism"]["statistic"] == "krippendorff_alpha_nominal"
    real = {r["method"]: r for r in a.realism}
    assert real[REAL]["judged_acquired"] > real["munit"]["judged_acquired"]
    # (0.6: the simulator's draws moved when it stopped counting source images as a method)
    assert real[REAL]["accuracy"] > 0.6 and real["munit"]["accuracy"] > 0.7
    dist = a.rank_distribution["structure"]
    assert sum(dist["hifi"]) == 48 and dist[REAL][0] > dist["munit"][0]
    store.close()


def test_noisier_readers_agree_less(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    calm, noisy = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    simulate_readers(calm, 4, seed=1, noise=0.2, case_sd=0.8)
    simulate_readers(noisy, 4, seed=1, noise=2.5, case_sd=0.8)
    alpha = [next(r["value"] for r in analyse(s).agreement if r["criterion"] == "structure") for s in (calm, noisy)]
    w = [next(r["value"] for r in analyse(s).agreement if r["criterion"] == "ranking") for s in (calm, noisy)]
    assert alpha[0] > alpha[1] + 0.2 and w[0] > w[1]


def test_report_html_and_csv(tmp_path):
    store = make_store(tmp_path)
    simulate_readers(store, 3, seed=2)
    paths = write_report(analyse(store), tmp_path / "report")
    html = paths["html"].read_text()
    assert "Simulated T1-&gt;T2" in html
    for name in ("hifi", "cyclegan", "munit", "acquired (real)", "Friedman", "Holm", "Krippendorff", "Kendall",
                 "Visual Turing test", "Rank distributions"):
        assert name in html
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(pngs) == 2 and all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    with open(paths["summary"]) as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {REAL, "hifi", "cyclegan", "munit"} and len(rows) == 16
    with open(paths["scores"]) as f:
        scores = list(csv.DictReader(f))
    assert len(scores) == 3 * 8 * 4 * 4 and {"reader", "case", "method", "value"} <= set(scores[0])
    with open(paths["rank_distribution"]) as f:
        ranks = list(csv.DictReader(f))
    # ties are split over the places they span (mid-ranks, one convention everywhere), so counts may be halves
    assert sum(float(r["rank_1"]) + float(r["rank_2"]) + float(r["rank_3"]) + float(r["rank_4"])
               for r in ranks if r["criterion"] == "ranking" and r["method"] == "hifi") == 24
    store.close()


def test_default_qualities_and_analysis_needs_the_key(tmp_path):
    q = default_qualities([REAL, "a", "b", "c"])
    assert q == {REAL: 4.5, "a": 4.0, "b": 3.0, "c": 2.0}
    store = make_store(tmp_path, n_cases=2)
    from napari_medtrans.study import schema as S

    with store.engine.begin() as conn:
        conn.execute(S.studies.update().values(blinded=True))
    with pytest.raises(StudyError, match="blinded"):
        analyse(store)
    store.close()


# -- multi-reader multi-case analysis (issue 25) ---------------------------------------------------------

CRIT = {c.name: c for c in DEFAULT_CRITERIA}
METHODS = [REAL, "m1", "m2", "m3"]


def sim(n_readers=5, n_cases=10, seed=0, criteria=("structure",), methods=METHODS, **kw):
    readers = [f"r{i}" for i in range(n_readers)]
    cases = [f"c{i:02d}" for i in range(n_cases)]
    crits = [CRIT[c] for c in criteria]
    return simulate_records(readers, cases, methods, crits, seed=seed, **kw), crits


def rows(table, **match):
    return [r for r in table if all(r.get(k) == v for k, v in match.items())]


def one(table, **match):
    found = rows(table, **match)
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.mark.parametrize("name,kw", [("no interaction", {}), ("case x method", {"case_method_sd": 0.5}),
                                     ("reader x method", {"reader_method_sd": 0.3})])
def test_mrmc_holds_its_level_under_each_null(name, kw):
    """Equal methods, 5 readers x 10 cases: the old readings-as-blocks Friedman rejected 0.38-0.41 of such
    studies; the OR global test must stay near 0.05 (bound 0.15 over 40 studies)."""
    rejected = 0
    for s in range(40):
        recs, crits = sim(seed=1000 + s, quality={m: 3.0 for m in METHODS}, **kw)
        g = one(analyse_records(recs, crits, METHODS).mrmc_global, criterion="structure")
        assert g["n_readers"] == 5 and g["n_cases"] == 10 and math.isfinite(g["p"])
        rejected += g["p"] < 0.05
    assert rejected <= 6, f"{name}: {rejected} of 40 rejected"


def test_mrmc_finds_a_one_point_effect():
    found = 0
    for s in range(10):
        recs, crits = sim(seed=2000 + s, quality={m: 3.0 for m in METHODS}, effects={"m1": 1.0},
                          case_method_sd=0.5)
        a = analyse_records(recs, crits, METHODS)
        found += one(a.mrmc_global, criterion="structure")["p"] < 0.05
        d = one(a.mrmc_pairwise, criterion="structure", method_a="m1", method_b="m2")
        assert d["ci_low"] < d["difference"] < d["ci_high"] and 0.4 < d["difference"] < 1.6
    assert found >= 8


def test_a_reader_who_always_answers_generated_has_auc_and_balanced_accuracy_one_half():
    recs, crits = sim(criteria=("realism",), seed=5)
    recs = [r for r in recs if r.reader != "r0"]
    recs += [ScoreRecord("always-G", c, f"{c}:{m}", m, "realism", 0.0, 3) for c in {r.case for r in recs}
             for m in METHODS]
    a = analyse_records(recs, crits, METHODS)
    for m in ("m1", "m2", "m3"):
        assert one(a.mrmc_readers, metric="Turing AUC", method=m, reader="always-G")["value"] == 0.5
        assert one(a.mrmc_readers, metric="balanced accuracy", method=m, reader="always-G")["value"] == 0.5
        assert one(a.mrmc_readers, metric="sensitivity", method=m, reader="always-G")["value"] == 1.0
    assert one(a.mrmc_readers, metric="specificity", method=REAL, reader="always-G")["value"] == 0.0
    # the old "accuracy" of every synthetic method was 1.000 for such a reader; a study of such readers only:
    only = [ScoreRecord(f"G{i}", f"c{k}", f"c{k}:{m}", m, "realism", 0.0, 3) for i in range(4) for k in range(8)
            for m in METHODS]
    b = analyse_records(only, crits, METHODS)
    for m in ("m1", "m2", "m3"):
        assert one(b.mrmc_methods, metric="Turing AUC", method=m)["estimate"] == 0.5
        assert one(b.mrmc_methods, metric="balanced accuracy", method=m)["estimate"] == 0.5
    g = one(b.mrmc_global, metric="Turing AUC")
    assert math.isnan(g["p"]) and "no variation" in g["note"]


def test_turing_auc_uses_the_confidence_as_a_rating_scale():
    # one reader: right every time but only confident on the acquired images -> AUC 1 from the answer alone
    recs = []
    for k in range(6):
        recs.append(ScoreRecord("a", f"c{k}", f"c{k}:real", REAL, "realism", 1.0, 5))
        recs.append(ScoreRecord("a", f"c{k}", f"c{k}:m1", "m1", "realism", 1.0 if k < 3 else 0.0, 1))
    a = analyse_records(recs, [CRIT["realism"]], [REAL, "m1"])
    # generated images called acquired with confidence 1 still rank above acquired ones called acquired with 5
    assert one(a.mrmc_readers, metric="Turing AUC", method="m1")["value"] == 1.0
    assert one(a.mrmc_readers, metric="sensitivity", method="m1")["value"] == 0.5
    assert one(a.mrmc_readers, metric="balanced accuracy", method="m1")["value"] == 0.75


def test_mrmc_tables_cover_every_metric_with_confidence_intervals():
    recs, crits = sim(criteria=("structure", "diagnostic", "realism", "ranking"), seed=7)
    a = analyse_records(recs, crits, METHODS)
    assert a.mrmc_variant == "random"
    metrics = {(r["criterion"], r["metric"]) for r in a.mrmc_global}
    assert metrics == {("structure", "mean score"), ("diagnostic", "mean score"), ("ranking", "mean rank"),
                       ("realism", "Turing AUC"), ("realism", "balanced accuracy"), ("realism", "sensitivity")}
    spec = rows(a.mrmc_methods, metric="specificity")
    assert [r["method"] for r in spec] == [REAL] and spec[0]["ci_low"] <= spec[0]["estimate"] <= spec[0]["ci_high"]
    for r in a.mrmc_methods:
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"], r
    assert {r["method"] for r in rows(a.mrmc_methods, metric="Turing AUC")} == {"m1", "m2", "m3"}
    assert len(rows(a.mrmc_pairwise, criterion="structure")) == 6
    for r in a.mrmc_pairwise:
        assert r["p_holm"] >= r["p"] and r["ci_low"] <= r["difference"] <= r["ci_high"]
    # the default df count the case term too; Hillis's published df on request give a smaller p
    assert a.mrmc_ddf == "two-term" and one(a.mrmc_global, metric="mean score", criterion="structure")["ddf"] \
        == "two-term"
    h = analyse_records(recs, crits, METHODS, ddf="hillis")
    for g, gh in zip(a.mrmc_global, h.mrmc_global):
        assert gh["value"] == pytest.approx(g["value"]) and gh["df2"] >= g["df2"] - 1e-9
    with pytest.raises(UnknownChoiceError):
        analyse_records(recs, crits, METHODS, ddf="exact")
    # fixed-reader and fixed-case variants
    for variant in ("fixed-readers", "fixed-cases"):
        b = analyse_records(recs, crits, METHODS, mrmc=variant)
        assert b.mrmc_variant == variant and math.isfinite(one(b.mrmc_global, criterion="structure")["p"])


def test_edge_cases_state_why_there_is_no_p():
    # one reader
    recs, crits = sim(n_readers=1, criteria=("structure",))
    g = one(analyse_records(recs, crits, METHODS).mrmc_global, criterion="structure")
    assert math.isnan(g["p"]) and "1 reader" in g["note"]
    fixed = one(analyse_records(recs, crits, METHODS, mrmc="fixed-readers").mrmc_global, criterion="structure")
    assert math.isfinite(fixed["p"])
    # one case
    recs, crits = sim(n_cases=1, n_readers=3, criteria=("structure", "ranking"))
    a = analyse_records(recs, crits, METHODS)
    for r in a.mrmc_global + a.mrmc_pairwise:
        assert math.isnan(r["p"]) and "1 case" in r["note"], r
    assert all(math.isnan(r["p"]) for r in a.friedman)  # the old analysis said p = 0.032 here
    # a criterion nobody answered
    recs, _ = sim(criteria=("structure",))
    a = analyse_records(recs, [CRIT["structure"], CRIT["diagnostic"]], METHODS)
    g = one(a.mrmc_global, criterion="diagnostic")
    assert math.isnan(g["p"]) and "no answers" in g["note"]
    assert any(d["criterion"] == "diagnostic" and "no answers" in d["reason"] for d in a.dropped)
    # a method nobody scored on a criterion
    recs, crits = sim(criteria=("structure",))
    a = analyse_records([r for r in recs if r.method != "m3"], crits, METHODS)
    assert "no answers" in one(a.mrmc_methods, method="m3")["note"]
    assert math.isnan(one(a.mrmc_methods, method="m3")["estimate"])
    for r in rows(a.mrmc_pairwise, method_b="m3"):
        assert math.isnan(r["p"]) and "m3" in r["note"]
    assert math.isfinite(one(a.mrmc_global, criterion="structure")["p"])  # the other three methods
    assert any(d["what"] == "method m3" for d in a.dropped)
    # a reader who skipped a method: the reader is left out of that criterion, and the report says so
    a = analyse_records([r for r in recs if not (r.reader == "r2" and r.method == "m1")], crits, METHODS)
    assert one(a.mrmc_global, criterion="structure")["n_readers"] == 4
    d = one(a.dropped, what="reader r2")
    assert "m1" in d["reason"]


def test_descriptive_tests_use_cases_as_blocks_with_one_tie_convention():
    recs, crits = sim(criteria=("structure", "ranking"), seed=3, quality={REAL: 4.5, "m1": 4, "m2": 3, "m3": 2})
    a = analyse_records(recs, crits, METHODS)
    fr = one(a.friedman, criterion="structure")
    assert fr["blocks"] == 10  # cases, not readings
    for r in rows(a.pairwise, criterion="structure"):
        assert r["n"] == 10 and r["method"] in ("exact", "normal approximation")
        assert "zero" in r["zero_handling"]
    dist = a.rank_distribution["ranking"]
    for m in METHODS:
        assert sum(dist[m]) == pytest.approx(50)  # every reading once, ties split over the places they span
    # readers tie with the better rank ("1, 1" for a tie at the top); the analysis uses mid-ranks everywhere
    tie = [ScoreRecord(f"r{i}", "c", f"c:{m}", m, "ranking", 1.0) for i in range(2) for m in (REAL, "m1")]
    b = analyse_records(tie, [CRIT["ranking"]], [REAL, "m1"])
    assert b.mean(REAL, "ranking") == 1.5 and b.rank_distribution["ranking"][REAL] == [1.0, 1.0]
    w = one(b.agreement, criterion="ranking")
    assert "every reader tied" in w["detail"] and "chance" in w["detail"]


def test_wilcoxon_exact_for_small_n_with_zeros_dropped():
    from scipy.stats import wilcoxon

    a = np.array([3.1, 2.0, 4.5, 3.3, 2.2, 5.0, 1.7, 2.9, 3.8, 4.1])
    b = a - np.array([0.3, -0.2, 0.9, 0.4, 1.1, -0.5, 0.7, 0.8, 0.05, 1.3])
    res = wilcoxon_test(a, b)
    assert res[1] == pytest.approx(wilcoxon(a, b, method="exact").pvalue)
    # ties and zeros: exact over the 2^n sign flips of the mid-ranks of the non-zero differences
    d = np.array([1, 1, 2, 0, -1, 2, 2, 3, 0, 1], dtype=float)
    stat, p = wilcoxon_test(d, np.zeros_like(d))
    nz = d[d != 0]
    ranks = __import__("scipy.stats", fromlist=["rankdata"]).rankdata(np.abs(nz))
    signs = np.array(np.meshgrid(*[[0, 1]] * len(nz))).reshape(len(nz), -1).T
    w_plus = signs @ ranks
    observed = ranks[nz > 0].sum()
    centre = ranks.sum() / 2
    assert stat == pytest.approx(observed)
    assert p == pytest.approx(np.mean(np.abs(w_plus - centre) >= abs(observed - centre) - 1e-9))


def test_simulator_takes_effects_and_interactions():
    base = {m: 3.0 for m in METHODS}
    recs, _ = sim(seed=1, quality=base, effects={"m1": 1.0}, noise=0.0, case_sd=0.0, reader_sd=0.0)
    vals = {m: {r.value for r in recs if r.method == m} for m in METHODS}
    assert vals["m1"] == {4.0}
    assert vals[REAL] == vals["m2"] == vals["m3"] == {3.0}
    # reader x method interaction: readers disagree about the methods, consistently over cases
    recs, _ = sim(n_readers=6, n_cases=30, seed=2, quality=base, noise=0.0, case_sd=0.0, reader_sd=0.0,
                  reader_method_sd=1.0)
    per = {(r.reader, r.method): set() for r in recs}
    for r in recs:
        per[(r.reader, r.method)].add(r.value)
    assert all(len(v) == 1 for v in per.values()) and len({v.pop() for v in per.values()}) > 1
    with pytest.raises(StudyError, match="nope"):
        sim(effects={"nope": 1.0})
    with pytest.raises(StudyError, match="case_method_sd"):
        sim(case_method_sd=-1.0)
    # case x method: the same for every reader of a case
    recs, _ = sim(n_readers=4, seed=3, quality=base, noise=0.0, case_sd=0.0, reader_sd=0.0, case_method_sd=1.0)
    per = {}
    for r in recs:
        per.setdefault((r.case, r.method), set()).add(r.value)
    assert all(len(v) == 1 for v in per.values()) and len({min(v) for v in per.values()}) > 1


def test_report_leads_with_mrmc_and_warns_when_small(tmp_path):
    recs, crits = sim(n_readers=3, n_cases=6, criteria=("structure", "realism", "ranking"), seed=2)
    a = analyse_records(recs, crits, METHODS, title="small")
    html = write_report(a, tmp_path / "r")["html"].read_text()
    mrmc = html.index("Obuchowski-Rockette")
    assert mrmc < html.index("Scores (mean") and mrmc < html.index("Friedman")
    assert "Hillis" in html and "3 readers" in html and "6 cases" in html
    assert "few readers" in html and "few cases" in html
    assert "Turing AUC" in html and "Visual Turing test" in html and "chance level" in html
    for name in ("mrmc_global", "mrmc_methods", "mrmc_pairwise", "mrmc_readers", "dropped"):
        assert (tmp_path / "r" / f"{name}.csv").exists()
    # no acquired image: no Turing table, and the report says why
    synth = [r for r in recs if r.method != REAL]
    b = analyse_records(synth, crits, METHODS[1:], title="no acquired")
    html = write_report(b, tmp_path / "s")["html"].read_text()
    assert "Visual Turing test" not in html and "Turing AUC" not in html and not b.realism
    assert "no acquired images" in html
    # what was dropped is listed
    c = analyse_records([r for r in recs if not (r.reader == "r1" and r.method == "m2")], crits, METHODS)
    html = write_report(c, tmp_path / "t")["html"].read_text()
    assert "Left out" in html and "reader r1" in html


def test_turing_auc_jackknife_shortcut_matches_the_direct_jackknife():
    from napari_medtrans.study.mrmc import jackknife_covariance, mann_whitney_kernel

    recs, crits = sim(criteria=("realism",), seed=9, n_cases=7)
    a = analyse_records(recs, crits, METHODS, mrmc="fixed-readers")
    # the same figure computed directly: rating 10 = surely generated ... 1 = surely acquired
    readers, cases = sorted({r.reader for r in recs}), sorted({r.case for r in recs})
    rating = np.zeros((4, 5, 7))
    for r in recs:
        rating[METHODS.index(r.method), readers.index(r.reader), cases.index(r.case)] = (
            5 + r.confidence if r.value == 0 else 6 - r.confidence)
    theta, cov = jackknife_covariance(
        lambda keep: mann_whitney_kernel(rating[1:][:, :, keep], rating[0][None, :, keep]).mean(axis=(2, 3)), 7)
    for i, m in enumerate(("m1", "m2", "m3")):
        row = one(a.mrmc_methods, metric="Turing AUC", method=m)
        assert row["estimate"] == pytest.approx(theta[i].mean())
        assert row["se"] ** 2 == pytest.approx(cov[i, :, i, :].sum() / 25)  # fixed readers: Var of the average
