"""The model path, from a per-buyer purchase summary to every buyer's scores (NumPy only).

Used by the refresh service (summary read from the database) and by the benchmark (summary
built in memory with `summary_from_arrays`). Time unit of the BG/NBD model: weeks
(purchase days / 7), as in the CDNOW literature.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from clm.analytics import clv, rfm

TIME_UNIT = "weeks"
DAYS_PER_UNIT = 7.0


@dataclass
class Summary:
    """Per buyer arrays in one order; days are integers (days since 1970-01-01)."""

    contact_id: np.ndarray
    days: np.ndarray
    first_day: np.ndarray
    last_day: np.ndarray
    total: np.ndarray
    first_day_total: np.ndarray


def summary_from_arrays(contact_id: np.ndarray, day: np.ndarray, amount: np.ndarray,
                        as_of_day: int) -> Summary:
    """The same summary as the SQL one, from in-memory transactions (any order)."""
    keep = day <= as_of_day
    contact_id, day, amount = contact_id[keep], day[keep], amount[keep]
    # One int64 key (contact, day) sorts faster than a two-column lexsort.
    dmin = int(day.min()) if day.size else 0
    span = int(day.max()) - dmin + 1 if day.size else 1
    order = np.argsort(contact_id * span + (day - dmin), kind="stable")
    c, d, a = contact_id[order], day[order], amount[order]
    # One row per (contact, day).
    new_cd = np.ones(c.size, dtype=bool)
    new_cd[1:] = (c[1:] != c[:-1]) | (d[1:] != d[:-1])
    starts = np.flatnonzero(new_cd)
    day_amount = np.add.reduceat(a, starts) if starts.size else np.zeros(0)
    c_day, d_day = c[starts], d[starts]
    new_c = np.ones(c_day.size, dtype=bool)
    new_c[1:] = c_day[1:] != c_day[:-1]
    cstarts = np.flatnonzero(new_c)
    days = np.diff(np.append(cstarts, c_day.size))
    last_idx = np.append(cstarts[1:], c_day.size) - 1
    return Summary(contact_id=c_day[cstarts], days=days, first_day=d_day[cstarts],
                   last_day=d_day[last_idx],
                   total=np.add.reduceat(day_amount, cstarts) if cstarts.size else np.zeros(0),
                   first_day_total=day_amount[cstarts])


@dataclass
class ScoreResult:
    bgnbd: clv.BGNBDFit | None
    gamma_gamma: clv.GammaGammaFit | None
    diagnostics: dict
    # Per buyer, in the summary's order.
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    average_spend: np.ndarray
    days_since_last: np.ndarray
    tenure_days: np.ndarray
    rfm_r: np.ndarray
    rfm_f: np.ndarray
    rfm_m: np.ndarray
    rfm_segment: np.ndarray
    rfm_segment_code: np.ndarray  # index into rfm.SEGMENT_CODES
    historical_clv: np.ndarray
    predicted_clv: np.ndarray
    expected_purchases: np.ndarray
    p_alive: np.ndarray
    churn_risk: np.ndarray
    clv_decile: np.ndarray
    timings: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)


def _timed_gg_fit(x: np.ndarray, zbar: np.ndarray) -> tuple[clv.GammaGammaFit | None, str, float]:
    t = time.perf_counter()
    try:
        return clv.gg_fit(x, zbar), "", time.perf_counter() - t
    except clv.FitError as exc:
        return None, str(exc), time.perf_counter() - t


def score(summary: Summary, as_of_day: int, *, horizon_months: int = 12,
          monthly_discount: float = 0.01, window_days: int = 90) -> ScoreResult:
    """Fit BG/NBD and Gamma-Gamma on the summary and score every buyer.

    A model that cannot be fitted (too little data) leaves its outputs NaN and says why in
    `errors`; RFM and historical CLV are always computed.
    """

    t0 = time.perf_counter()
    x_int = summary.days - 1
    t_x_days = summary.last_day - summary.first_day
    T_days = as_of_day - summary.first_day
    x = x_int.astype(np.float64)
    t_x = t_x_days / DAYS_PER_UNIT
    T = T_days / DAYS_PER_UNIT
    with np.errstate(invalid="ignore", divide="ignore"):
        zbar = np.where(x_int > 0, (summary.total - summary.first_day_total) / np.maximum(x, 1), 0.0)
    average_spend = summary.total / np.maximum(summary.days, 1)
    days_since_last = as_of_day - summary.last_day

    r_score = rfm.quintiles(days_since_last, higher_is_better=False)
    f_score = rfm.quintiles(summary.days)
    m_score = rfm.quintiles(average_spend)
    segment_code = rfm.segment_codes(r_score, f_score, m_score, x_int)
    segment = np.array(rfm.SEGMENT_CODES, dtype=object)[segment_code]
    timings = {"rfm": time.perf_counter() - t0}
    errors: list[str] = []

    n = x.size
    nan = np.full(n, np.nan)
    p_alive, expected, pred_clv = nan, nan, nan
    bg_fit = gg_fit = None
    diagnostics: dict = {}
    # Gamma-Gamma in a second thread while this one fits BG/NBD: both spend their time in
    # NumPy/SciPy array functions, which release the GIL, so on two cores they overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        gg_future = pool.submit(_timed_gg_fit, x, zbar)
        t1 = time.perf_counter()
        comp = clv.compress_days(x_int, t_x_days, T_days, unit_days=DAYS_PER_UNIT)
        try:
            bg_fit = clv.bgnbd_fit(comp.x, comp.t_x, comp.T, comp.weights)
        except clv.FitError as exc:
            errors.append(f"BG/NBD: {exc}")
        timings["bgnbd_fit"] = time.perf_counter() - t1
        gg_fit, gg_error, timings["gamma_gamma_fit"] = gg_future.result()
    if gg_error:
        errors.append(f"Gamma-Gamma: {gg_error}")
    t3 = time.perf_counter()
    if bg_fit is not None:
        bg = (bg_fit.r, bg_fit.alpha, bg_fit.a, bg_fit.b)
        if gg_fit is not None:
            res = clv.predicted_clv(bg, (gg_fit.p, gg_fit.q, gg_fit.gamma), comp, zbar, x,
                                    horizon_months=horizon_months,
                                    monthly_discount=monthly_discount,
                                    window=window_days / DAYS_PER_UNIT)
            p_alive, expected, pred_clv = res.p_alive, res.expected_purchases, res.predicted_clv
        else:
            p_alive = clv.bgnbd_p_alive(bg, comp.x, comp.t_x, comp.T)[comp.inverse]
            expected = clv.bgnbd_expected_purchases(bg, window_days / DAYS_PER_UNIT, comp.x,
                                                    comp.t_x, comp.T)[comp.inverse]
        diagnostics = clv.bgnbd_frequency_diagnostics(bg, comp.x, comp.T, comp.weights)
    timings["predict"] = time.perf_counter() - t3
    decile = rfm.deciles(pred_clv) if not np.all(np.isnan(pred_clv)) else np.zeros(n, np.int8)
    return ScoreResult(
        bgnbd=bg_fit, gamma_gamma=gg_fit, diagnostics=diagnostics,
        frequency=x_int, recency=t_x, T=T, monetary=zbar, average_spend=average_spend,
        days_since_last=days_since_last, tenure_days=T_days, rfm_r=r_score, rfm_f=f_score,
        rfm_m=m_score, rfm_segment=segment, rfm_segment_code=segment_code,
        historical_clv=summary.total,
        predicted_clv=pred_clv, expected_purchases=expected, p_alive=p_alive,
        churn_risk=1.0 - p_alive, clv_decile=decile, timings=timings, errors=errors)
