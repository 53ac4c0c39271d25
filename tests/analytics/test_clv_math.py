"""The model mathematics: analytic gradients, P(alive) edge cases, predictions vs lifetimes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from clm.analytics import clv, rfm, scoring
from tests.analytics.conftest import lifetimes_dataset

RNG = np.random.default_rng(7)
X = np.array([0, 0, 1, 2, 5, 9, 1, 3], dtype=float)
TX = np.array([0, 0, 3.0, 10.5, 20.0, 30.1, 0.5, 38.0])
T = np.array([39.0, 12.0, 30.0, 38.9, 38.9, 31.0, 2.0, 38.0])
BG = (0.243, 4.414, 0.793, 2.426)
GG = (6.25, 3.74, 15.44)


def test_bgnbd_gradient_matches_finite_differences():
    params = np.array([0.3, 4.0, 0.8, 2.5])
    _, grad = clv.bgnbd_loglik(params, X, TX, T, grad=True)
    numeric = approx_fprime(params, lambda p: clv.bgnbd_loglik(p, X, TX, T), 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_gamma_gamma_gradient_matches_finite_differences():
    x = np.array([1, 2, 3, 7, 1], dtype=float)
    z = np.array([10.0, 25.5, 13.2, 40.0, 7.5])
    params = np.array([5.0, 3.0, 12.0])
    _, grad = clv.gg_loglik(params, x, z, grad=True)
    numeric = approx_fprime(params, lambda p: clv.gg_loglik(p, x, z), 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_p_alive_is_one_without_repeat_purchases_and_falls_with_silence():
    assert np.all(clv.bgnbd_p_alive(BG, [0, 0], [0, 0], [1.0, 50.0]) == 1.0)
    # Same history, longer silence since the last purchase: less likely alive.
    p = clv.bgnbd_p_alive(BG, [3, 3, 3], [10.0, 10.0, 10.0], [10.0, 20.0, 40.0])
    assert p[0] > p[1] > p[2] > 0
    # A purchase at T exactly: as alive as a repeat buyer can be.
    assert clv.bgnbd_p_alive(BG, [3], [10.0], [10.0])[0] == pytest.approx(
        1 / (1 + BG[2] / (BG[3] + 2)))


def test_weighted_fit_equals_unweighted_fit():
    data = np.genfromtxt(lifetimes_dataset("cdnow_customers_summary.csv"), delimiter=",",
                         skip_header=1)
    x, t_x, T = data[:, 1], data[:, 2], data[:, 3]
    c = clv.compress(x, t_x, T)
    assert c.x.size < x.size / 2
    full = clv.bgnbd_fit(x, t_x, T)
    weighted = clv.bgnbd_fit(c.x, c.t_x, c.T, c.weights)
    assert weighted.log_likelihood == pytest.approx(full.log_likelihood, rel=1e-9)
    np.testing.assert_allclose(list(weighted.params.values()), list(full.params.values()),
                               rtol=1e-4)


def test_compress_days_matches_generic_compress():
    x = np.array([0, 1, 1, 0, 2])
    tx = np.array([0, 7, 7, 0, 14])
    T = np.array([21, 28, 28, 21, 35])
    c = clv.compress_days(x, tx, T)
    assert c.weights.tolist() == [2.0, 2.0, 1.0]
    assert c.T[c.inverse].tolist() == (T / 7).tolist()


def test_predictions_match_lifetimes():
    lifetimes = pytest.importorskip("lifetimes")
    bg = lifetimes.BetaGeoFitter()
    bg.params_ = __import__("pandas").Series(dict(zip(["r", "alpha", "a", "b"], BG, strict=True)))
    ours = clv.bgnbd_expected_purchases(BG, 13.0, X, TX, T)
    theirs = bg.conditional_expected_number_of_purchases_up_to_time(13.0, X, TX, T)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    np.testing.assert_allclose(clv.bgnbd_p_alive(BG, X, TX, T),
                               bg.conditional_probability_alive(X, TX, T), rtol=1e-8)


def test_expected_purchases_zero_horizon_and_growth():
    assert np.all(clv.bgnbd_expected_purchases(BG, 0.0, X, TX, T) == 0)
    e1 = clv.bgnbd_expected_purchases(BG, 4.0, X, TX, T)
    e2 = clv.bgnbd_expected_purchases(BG, 52.0, X, TX, T)
    assert np.all(e2 > e1) and np.all(e1 > 0)


def test_gamma_gamma_expected_spend_shrinks_to_population_mean():
    mean = GG[0] * GG[2] / (GG[1] - 1)
    spend = clv.gg_expected_spend(GG, [0, 1, 50], [0, 100.0, 100.0])
    assert spend[0] == pytest.approx(mean)
    assert mean < spend[1] < spend[2] < 100.0


def test_pmf_sums_to_one():
    total = sum(clv.bgnbd_pmf_new(BG, k, np.array([39.0]))[0] for k in range(400))
    assert total == pytest.approx(1.0, abs=1e-6)


def test_summary_from_arrays_groups_days():
    contact = np.array([2, 1, 1, 1, 2])
    day = np.array([10, 5, 5, 12, 10])
    amount = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    s = scoring.summary_from_arrays(contact, day, amount, as_of_day=11)
    assert s.contact_id.tolist() == [1, 2]
    assert s.days.tolist() == [1, 1]  # day 12 is after as_of; two rows on day 5 are one day
    assert s.total.tolist() == [5.0, 6.0]


def test_rfm_segments_follow_the_rule_table():
    r = np.array([5, 5, 4, 3, 1, 2, 3, 1])
    f = np.array([5, 1, 2, 4, 5, 3, 1, 1])
    m = np.array([5, 1, 3, 3, 5, 3, 2, 1])
    repeat = np.array([9, 0, 1, 4, 8, 2, 1, 1])
    assert rfm.segments(r, f, m, repeat).tolist() == [
        "champions", "new", "potential loyalists", "loyal", "can't lose", "at risk",
        "hibernating", "lost"]
    assert set(rfm.SEGMENTS) == {name for name, _ in rfm.SEGMENT_RULES}


def test_quintiles_give_ties_the_same_score():
    q = rfm.quintiles(np.array([1, 1, 1, 1, 2, 3, 4, 5, 6, 7]))
    assert len(set(q[:4].tolist())) == 1
    assert q.min() >= 1 and q.max() == 5
