"""Reader-study statistics against published values, and the analysis + report of a simulated study."""

from __future__ import annotations

import base64
import csv
import re

import numpy as np
import pytest
from scipy.stats import friedmanchisquare

from napari_medtrans.core.errors import StudyError, UnknownChoiceError
from napari_medtrans.core.study import analyse, write_report
from napari_medtrans.core.study.analysis import (
    friedman_test,
    holm,
    kendall_w,
    krippendorff_alpha,
    rank_with_ties,
    wilcoxon_test,
)
from napari_medtrans.core.study.model import REAL, parse_config
from napari_medtrans.core.study.simulate import default_qualities, simulate_readers
from napari_medtrans.core.study.store import StudyStore

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
    assert fr["structure"]["blocks"] == 48 and fr["structure"]["p"] < 1e-6
    pw = {(r["criterion"], r["method_a"], r["method_b"]): r for r in a.pairwise}
    far = pw[("structure", "hifi", "munit")]  # 2 points apart
    assert far["p_holm"] < 1e-3 and far["p_holm"] >= far["p"] and far["mean_difference"] > 1.5
    assert len([k for k in pw if k[0] == "structure"]) == 6
    ag = {r["criterion"]: r for r in a.agreement}
    assert ag["structure"]["statistic"] == "krippendorff_alpha_ordinal" and ag["structure"]["value"] > 0.5
    assert ag["ranking"]["statistic"] == "kendall_w_mean" and ag["ranking"]["value"] > 0.6
    assert ag["realism"]["statistic"] == "krippendorff_alpha_nominal"
    real = {r["method"]: r for r in a.realism}
    assert real[REAL]["judged_acquired"] > real["munit"]["judged_acquired"]
    assert real[REAL]["accuracy"] > 0.7 and real["munit"]["accuracy"] > 0.7
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
    assert sum(int(r["rank_1"]) + int(r["rank_2"]) + int(r["rank_3"]) + int(r["rank_4"])
               for r in ranks if r["criterion"] == "ranking" and r["method"] == "hifi") == 24
    store.close()


def test_default_qualities_and_analysis_needs_the_key(tmp_path):
    q = default_qualities([REAL, "a", "b", "c"])
    assert q == {REAL: 4.5, "a": 4.0, "b": 3.0, "c": 2.0}
    store = make_store(tmp_path, n_cases=2)
    from napari_medtrans.core.study import schema as S

    with store.engine.begin() as conn:
        conn.execute(S.studies.update().values(blinded=True))
    with pytest.raises(StudyError, match="blinded"):
        analyse(store)
    store.close()
