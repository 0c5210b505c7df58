"""Obuchowski-Rockette MRMC analysis: the published Van Dyke results, covariance estimators, variants, edge cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from napari_medtrans.study.mrmc import (
    VARIANTS,
    auc_analysis,
    delong_covariance,
    empirical_auc,
    jackknife_covariance,
    obuchowski_rockette,
)

#: The study's ratings, kept with the tests (tests/data/mrmc/README.md says where they come from).
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "mrmc" / "VanDyke.csv"


def sig4(x: float) -> float:
    return float(f"{x:.4g}")


@pytest.fixture(scope="module")
def van_dyke():
    """Ratings (treatment, reader, case) and truth (case) of the Van Dyke et al. (1993) study."""
    with open(REFERENCE, newline="") as f:
        rows = list(csv.DictReader(f))
    tests = sorted({int(r["treatment"]) for r in rows})
    readers = sorted({int(r["reader"]) for r in rows})
    cases = sorted({int(r["case"]) for r in rows})
    y = np.full((len(tests), len(readers), len(cases)), np.nan)
    truth = np.zeros(len(cases), dtype=bool)
    for r in rows:
        c = cases.index(int(r["case"]))
        y[tests.index(int(r["treatment"])), readers.index(int(r["reader"])), c] = float(r["rating"])
        truth[c] = r["truth"] == "1"
    assert np.isfinite(y).all() and y.shape == (2, 5, 114) and truth.sum() == 45
    return y, truth


# Smith & Hillis, MRMCaov: OR analysis of Van Dyke, empirical AUC, DeLong covariances, random readers and cases
# (the table in ../shared/reference/mrmc/README.md).
PUBLISHED = {
    "auc_1": 0.8970370, "auc_2": 0.9408374,
    "var_error": 0.0007921325, "cov1": 0.0003420090, "cov2": 0.0003395265, "cov3": 0.0002358497,
    "var_reader": 0.0015364254, "var_test_reader": 0.0002045840,
    "F": 4.484854, "df1": 1, "df2": 15.06611, "p": 0.05123303,
    "diff": -0.04380032, "diff_se": 0.0206825, "diff_lo": -0.0878671960, "diff_hi": 0.0002665519,
    "se_1": 0.03307642, "df_1": 12.59597, "lo_1": 0.8253461, "hi_1": 0.9687280,
    "se_2": 0.02150464, "df_2": 12.56530, "lo_2": 0.8942155, "hi_2": 0.9874592,
}


def test_van_dyke_published_table_is_reproduced_to_4_significant_digits(van_dyke):
    y, truth = van_dyke
    res = auc_analysis(y, truth, ["1", "2"], covariance="delong")
    g = res.global_test
    d = res.pairwise[0]
    t1, t2 = res.per_test
    got = {
        "auc_1": res.estimates[0], "auc_2": res.estimates[1],
        "var_error": res.var_error, "cov1": res.cov1, "cov2": res.cov2, "cov3": res.cov3,
        "var_reader": res.var_reader, "var_test_reader": res.var_test_reader,
        "F": g["value"], "df1": g["df1"], "df2": g["df2"], "p": g["p"],
        "diff": d["difference"], "diff_se": d["se"], "diff_lo": d["ci_low"], "diff_hi": d["ci_high"],
        "se_1": t1["se"], "df_1": t1["df"], "lo_1": t1["ci_low"], "hi_1": t1["ci_high"],
        "se_2": t2["se"], "df_2": t2["df"], "lo_2": t2["ci_low"], "hi_2": t2["ci_high"],
    }
    for name, published in PUBLISHED.items():
        assert sig4(got[name]) == sig4(published), f"{name}: {got[name]} vs published {published}"
        assert got[name] == pytest.approx(published, rel=1e-6, abs=1e-12), name  # in fact to 7 digits
    assert g["statistic"] == "F" and (d["method_a"], d["method_b"]) == ("1", "2")
    assert d["p"] == pytest.approx(g["p"], rel=1e-9)  # two tests: t^2 = F
    assert res.n_readers == 5 and res.n_cases == 114 and res.covariance == "DeLong" and res.note == ""


def test_delong_agrees_with_the_jackknife_on_van_dyke(van_dyke):
    y, truth = van_dyke
    d = auc_analysis(y, truth, ["1", "2"], covariance="delong")
    j = auc_analysis(y, truth, ["1", "2"], covariance="jackknife")
    np.testing.assert_allclose(d.theta, j.theta)
    for name in ("var_error", "cov1", "cov2", "cov3"):
        assert getattr(j, name) == pytest.approx(getattr(d, name), rel=0.05), name
    assert j.global_test["p"] == pytest.approx(d.global_test["p"], abs=0.01)
    assert j.covariance == "jackknife"


def test_empirical_auc_and_delong_on_a_small_example():
    assert empirical_auc([3, 4, 5], [1, 2]) == 1.0
    assert empirical_auc([1, 1], [1, 1, 1]) == 0.5
    assert empirical_auc([2, 1], [2, 3]) == pytest.approx((0.5 + 0 + 0 + 0) / 4)
    ratings = np.array([[[5, 4, 2, 1, 3]]], dtype=float)
    truth = np.array([1, 1, 0, 0, 1], dtype=bool)
    theta, cov = delong_covariance(ratings, truth)
    assert theta.shape == (1, 1) and theta[0, 0] == pytest.approx(1.0)
    assert cov.shape == (1, 1, 1, 1) and cov[0, 0, 0, 0] == pytest.approx(0.0)


def test_jackknife_of_a_mean_is_the_sample_covariance_over_n():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 12))
    theta, cov = jackknife_covariance(lambda keep: x[:, :, keep].mean(-1), 12)
    np.testing.assert_allclose(theta, x.mean(-1))
    flat = x.reshape(6, 12)
    np.testing.assert_allclose(cov.reshape(6, 6), np.cov(flat) / 12)


def test_fixed_case_variant_is_the_paired_t_test_over_readers():
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(2, 6)) + np.array([[0.3], [0.0]])
    res = obuchowski_rockette(theta, None, ["a", "b"], variant="fixed-cases", n_cases=20)
    t, p = stats.ttest_rel(theta[0], theta[1])
    assert res.global_test["value"] == pytest.approx(t ** 2) and res.global_test["p"] == pytest.approx(p)
    assert res.global_test["df2"] == 5 and res.pairwise[0]["p"] == pytest.approx(p)
    lo, hi = stats.t.interval(0.95, 5, theta[0].mean(), stats.sem(theta[0]))
    assert (res.per_test[0]["ci_low"], res.per_test[0]["ci_high"]) == pytest.approx((lo, hi))


def test_fixed_reader_variant_with_one_reader_is_a_z_test_over_cases():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 1, 30)) + np.array([0.5, 0.0])[:, None, None]
    theta, cov = jackknife_covariance(lambda keep: x[:, :, keep].mean(-1), 30)
    res = obuchowski_rockette(theta, cov, ["a", "b"], variant="fixed-readers", n_cases=30)
    diff = x[0, 0] - x[1, 0]
    z = diff.mean() / (diff.std(ddof=1) / math.sqrt(30))
    assert res.global_test["statistic"] == "chi2" and res.global_test["df2"] == math.inf
    assert res.global_test["value"] == pytest.approx(z ** 2)
    assert res.pairwise[0]["p"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    # the random-reader analysis of the same data cannot be done: a stated reason, no p
    rnd = obuchowski_rockette(theta, cov, ["a", "b"], variant="random", n_cases=30)
    assert math.isnan(rnd.global_test["p"]) and "1 reader" in rnd.global_test["note"]
    assert all(math.isnan(r["p"]) and "1 reader" in r["note"] for r in rnd.pairwise)
    assert all(math.isnan(r["ci_low"]) for r in rnd.per_test)


def test_edge_cases_give_a_reason_never_a_p():
    theta = np.array([[3.0, 3.2], [2.5, 2.9]])
    one_case = obuchowski_rockette(theta, None, ["a", "b"], variant="random", n_cases=1)
    assert math.isnan(one_case.global_test["p"]) and "1 case" in one_case.global_test["note"]
    single = obuchowski_rockette(theta[:1], np.zeros((1, 2, 1, 2)), ["a"], n_cases=5)
    assert single.pairwise == [] and "1 method" in single.global_test["note"]
    assert math.isnan(single.global_test["p"])
    flat = obuchowski_rockette(np.full((2, 3), 0.5), np.zeros((2, 3, 2, 3)), ["a", "b"], n_cases=9)
    assert math.isnan(flat.global_test["p"]) and "no variation" in flat.global_test["note"]
    assert flat.estimates.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="variant"):
        obuchowski_rockette(theta, None, ["a", "b"], variant="mixed", n_cases=3)
    assert VARIANTS == ("random", "fixed-readers", "fixed-cases")


def three_way_mean_squares(y):
    """MS(T), MS(T*R), MS(T*C), MS(T*R*C) of a tests x readers x cases table, one value per cell."""
    t, r, c = y.shape
    g = y.mean()
    mi, mj, mk = y.mean((1, 2)), y.mean((0, 2)), y.mean((0, 1))
    mij, mik, mjk = y.mean(2), y.mean(1), y.mean(0)
    ms_t = r * c * ((mi - g) ** 2).sum() / (t - 1)
    ms_tr = c * ((mij - mi[:, None] - mj[None, :] + g) ** 2).sum() / ((t - 1) * (r - 1))
    ms_tc = r * ((mik - mi[:, None] - mk[None, :] + g) ** 2).sum() / ((t - 1) * (c - 1))
    res = (y - mij[:, :, None] - mik[:, None, :] - mjk[None, :, :] + mi[:, None, None] + mj[None, :, None]
           + mk[None, None, :] - g)
    ms_trc = (res ** 2).sum() / ((t - 1) * (r - 1) * (c - 1))
    return ms_t, ms_tr, ms_tc, ms_trc


def test_satterthwaite_df_is_the_dbm_df_of_the_three_way_anova():
    """For mean scores the jackknife OR analysis is the Dorfman-Berbaum-Metz ANOVA of the raw scores: the same F
    (with Hillis's max), and with ddf="satterthwaite" the DBM Satterthwaite df over MS(T*R), MS(T*C), MS(T*R*C)."""
    rng = np.random.default_rng(11)
    t, r, c = 3, 5, 10
    y = (rng.normal(size=(t, 1, c)) * 0.6 + rng.normal(size=(1, r, c)) + rng.normal(size=(t, r, c))).round()
    theta, cov = jackknife_covariance(lambda keep: y[:, :, keep].mean(-1), c)
    ms_t, ms_tr, ms_tc, ms_trc = three_way_mean_squares(y)
    assert ms_tc > ms_trc
    den = ms_tr + ms_tc - ms_trc
    dbm_df = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1)) + ms_tc ** 2 / ((t - 1) * (c - 1))
                         + ms_trc ** 2 / ((t - 1) * (r - 1) * (c - 1)))
    hillis_df = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1)))
    s = obuchowski_rockette(theta, cov, ["a", "b", "c"], n_cases=c, ddf="satterthwaite")
    h = obuchowski_rockette(theta, cov, ["a", "b", "c"], n_cases=c, ddf="hillis")
    assert s.global_test["value"] == pytest.approx(ms_t / den) == h.global_test["value"]
    assert s.global_test["df2"] == pytest.approx(dbm_df) and h.global_test["df2"] == pytest.approx(hillis_df)
    assert s.global_test["p"] > h.global_test["p"] and s.ddf == "satterthwaite"
    # fixed readers: F on the case df (the two-way test x case ANOVA of reader-averaged scores), not chi2
    f = obuchowski_rockette(theta, cov, ["a", "b", "c"], n_cases=c, ddf="satterthwaite", variant="fixed-readers")
    assert f.global_test["statistic"] == "F" and f.global_test["df2"] == (t - 1) * (c - 1)
    assert f.global_test["value"] == pytest.approx(ms_t / ms_tc)
    with pytest.raises(ValueError, match="degrees of freedom"):
        obuchowski_rockette(theta, cov, ["a", "b", "c"], n_cases=c, ddf="kenward-roger")
    # two-term (the report's default): Satterthwaite over MS(T*R) and the case term (MS(T*C) - MS(T*R*C)) / c on
    # the case df; between DBM's and Hillis's df, the same F
    two = obuchowski_rockette(theta, cov, ["a", "b", "c"], n_cases=c, ddf="two-term")
    case_term = ms_tc - ms_trc
    two_df = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1)) + case_term ** 2 / ((t - 1) * (c - 1)))
    assert two.global_test["value"] == pytest.approx(ms_t / den) and two.global_test["df2"] == pytest.approx(two_df)
    assert dbm_df < two_df < hillis_df and s.global_test["p"] > two.global_test["p"] > h.global_test["p"]


def test_two_term_df_is_hillis_df_without_a_case_term():
    """With cov2 <= cov3 (Hillis's max at 0) the case term vanishes and the two-term df are Hillis's."""
    rng = np.random.default_rng(3)
    t, r, c = 3, 4, 12
    y = rng.normal(size=(1, r, c)) + rng.normal(size=(t, r, c))  # no test x case interaction
    theta, cov = jackknife_covariance(lambda keep: y[:, :, keep].mean(-1), c)
    h = obuchowski_rockette(theta, cov, n_cases=c, ddf="hillis")
    two = obuchowski_rockette(theta, cov, n_cases=c, ddf="two-term")
    if h.cov2 <= h.cov3:
        assert two.global_test["df2"] == pytest.approx(h.global_test["df2"]) == (t - 1) * (r - 1)
    else:
        assert two.global_test["df2"] < h.global_test["df2"]


def test_satterthwaite_df_approach_hillis_on_van_dyke(van_dyke):
    y, truth = van_dyke
    h = auc_analysis(y, truth, ["1", "2"], covariance="delong", ddf="hillis")
    s = auc_analysis(y, truth, ["1", "2"], covariance="delong", ddf="satterthwaite")
    assert s.global_test["value"] == h.global_test["value"]
    assert 0.85 < s.global_test["df2"] / h.global_test["df2"] < 1.0  # 13.8 vs 15.1 with 114 cases
    assert s.global_test["p"] == pytest.approx(h.global_test["p"], abs=0.003)


def test_jackknife_takes_every_leave_one_out_figure_at_once():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 9))
    slow = jackknife_covariance(lambda keep: x[:, :, keep].mean(-1), 9)
    loo = np.stack([np.delete(x, k, axis=2).mean(-1) for k in range(9)])
    fast = jackknife_covariance(lambda keep: x[:, :, keep].mean(-1), 9, leave_one_out=lambda: loo)
    np.testing.assert_allclose(fast[1], slow[1])
