"""Customer-lifetime-value models in pure NumPy/SciPy (no Django here).

* BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") for the number
  of repeat purchases and the probability that a customer is still alive.
* Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV") for the average spend per purchase.

Both are fitted by maximum likelihood with analytic gradients (L-BFGS-B on the logarithms of
the parameters, so they stay positive). Customers with the same (x, t_x, T) contribute the
same likelihood term, so the BG/NBD data are compressed to unique rows with weights before
fitting and predicting: a million customers usually collapse to a few hundred thousand rows.

Notation (as in the papers): x = number of repeat purchases (purchase days after the first),
t_x = time of the last purchase since the first, T = time since the first purchase (the
customer's age). The time unit is whatever the caller uses; CLM uses weeks (days / 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1, logsumexp, psi

# Bounds of the log-parameters: keeps the optimiser away from overflow without constraining
# any real data set (parameters between 1e-8 and 1e8).
_LOG_BOUND = (np.log(1e-8), np.log(1e8))

WEEKS_PER_MONTH = 365.25 / 12 / 7  # 4.348 weeks: one average calendar month


def _dot(u, v) -> float:
    """Sum of u * v without BLAS: multithreaded BLAS on short vectors is 10x slower here."""
    return float(np.multiply(u, v).sum())


class FitError(RuntimeError):
    """The data cannot support a fit (too few customers or repeat buyers)."""


# --------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------

@dataclass
class Compressed:
    """Unique (x, t_x, T) rows, their weights, and the index mapping customers back."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    weights: np.ndarray
    inverse: np.ndarray  # customer i has the values of unique row inverse[i]


def compress(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Compressed:
    """Collapse customers with identical (x, t_x, T) into one weighted row."""
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if x.size == 0:
        empty = np.zeros(0)
        return Compressed(empty, empty, empty, empty, np.zeros(0, dtype=np.int64))
    stacked = np.stack([x, t_x, T], axis=1)
    uniq, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return Compressed(uniq[:, 0].copy(), uniq[:, 1].copy(), uniq[:, 2].copy(),
                      counts.astype(np.float64), inverse.reshape(-1))


def compress_days(x: np.ndarray, t_x_days: np.ndarray, T_days: np.ndarray,
                  unit_days: float = 7.0) -> Compressed:
    """Like `compress`, for integer day counts (much faster: one int64 key per customer).

    Returns times divided by `unit_days` (weeks by default).
    """
    x = np.asarray(x, dtype=np.int64)
    t_x_days = np.asarray(t_x_days, dtype=np.int64)
    T_days = np.asarray(T_days, dtype=np.int64)
    if x.size == 0:
        return compress(x, t_x_days, T_days)
    if min(x.min(), t_x_days.min(), T_days.min()) < 0 or max(
            x.max(), t_x_days.max(), T_days.max()) >= 1 << 21:
        c = compress(x, t_x_days, T_days)
        c.t_x /= unit_days
        c.T /= unit_days
        return c
    key = (x << 42) | (t_x_days << 21) | T_days
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    mask = (1 << 21) - 1
    return Compressed((uniq >> 42).astype(np.float64),
                      ((uniq >> 21) & mask).astype(np.float64) / unit_days,
                      (uniq & mask).astype(np.float64) / unit_days,
                      counts.astype(np.float64), inverse.reshape(-1))


# --------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------

BGNBD_PARAMS = ("r", "alpha", "a", "b")


@dataclass
class BGNBDFit:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    converged: bool
    iterations: int
    message: str = ""

    @property
    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def _bgnbd_terms(r, alpha, a, b, x, t_x, T):
    """ln A1 + ln A2, ln A3, ln A4 of the BG/NBD likelihood (ln A4 = -inf where x = 0)."""
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    has = x > 0
    ln_a1a2 = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
               + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x))
    ln_a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_a4 = np.where(has, np.log(a) - np.log(np.where(has, b + x - 1, 1.0))
                         - (r + x) * np.log(alpha + t_x), -np.inf)
    return ln_a1a2, ln_a3, ln_a4


class _Factorised:
    """Rows as indices into their unique x, t_x and T values.

    The costly special functions (gammaln, psi) depend on x alone and the logarithms on t_x
    or T alone, so they are evaluated once per unique value and gathered per row.
    """

    def __init__(self, x, t_x, T, weights=None):
        self.x = np.asarray(x, dtype=np.float64)
        self.w = np.ones_like(self.x) if weights is None else np.asarray(weights, np.float64)
        self.ux, self.ix = np.unique(self.x, return_inverse=True)
        self.ut, self.it = np.unique(np.asarray(t_x, dtype=np.float64), return_inverse=True)
        self.uT, self.iT = np.unique(np.asarray(T, dtype=np.float64), return_inverse=True)
        self.has = self.x > 0
        self.n = float(self.w.sum())


def _bgnbd_loglik_f(params, f: _Factorised, grad: bool):
    r, alpha, a, b = (float(p) for p in params)
    ux = f.ux
    has_u = ux > 0
    bx1_u = np.where(has_u, b + ux - 1, 1.0)
    base_u = (gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
              + gammaln(a + b) + gammaln(b + ux) - gammaln(b) - gammaln(a + b + ux))
    c4_u = np.where(has_u, np.log(a) - np.log(bx1_u), -np.inf)
    rx = r + f.x
    ln_at = np.log(alpha + f.uT)[f.iT]
    ln_atx = np.log(alpha + f.ut)[f.it]
    ln_a3 = -rx * ln_at
    ln_a4 = c4_u[f.ix] - rx * ln_atx
    lse = np.logaddexp(ln_a3, ln_a4)
    ll = float(_dot(f.w, base_u[f.ix] + lse))
    if not grad:
        return ll
    w4 = np.exp(ln_a4 - lse)
    w3 = 1.0 - w4
    # Per-unique-x sums of weights and weighted w4, so the psi terms are computed once each.
    wx = np.bincount(f.ix, weights=f.w, minlength=ux.size)
    w4x = np.bincount(f.ix, weights=f.w * w4, minlength=ux.size)
    d_r = (_dot(wx, psi(r + ux) - psi(r) + np.log(alpha))
           - _dot(f.w, w3 * ln_at + w4 * ln_atx))
    d_alpha = f.n * r / alpha - _dot(f.w * rx, w3 / (alpha + f.uT)[f.iT]
                                       + w4 / (alpha + f.ut)[f.it])
    d_a = _dot(wx, psi(a + b) - psi(a + b + ux)) + w4x.sum() / a
    d_b = _dot(wx, psi(a + b) + psi(b + ux) - psi(b) - psi(a + b + ux)) - _dot(w4x, 1.0 / bx1_u)
    return ll, np.array([d_r, d_alpha, d_a, d_b])


def bgnbd_loglik(params, x, t_x, T, weights=None, *, grad: bool = False):
    """Total log-likelihood (and its gradient in (r, alpha, a, b) when `grad`)."""
    return _bgnbd_loglik_f(params, _Factorised(x, t_x, T, weights), grad)


def bgnbd_fit(x, t_x, T, weights=None, *, init: tuple[float, ...] | None = None) -> BGNBDFit:
    """Maximum-likelihood fit of the BG/NBD model to (optionally weighted) customers."""
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    n = float(w.sum())
    if n < 2 or not np.any(x > 0):
        raise FitError("The BG/NBD model needs customers with repeat purchases.")
    if np.any(t_x > T) or np.any(x < 0):
        raise FitError("Each customer needs 0 <= t_x <= T and x >= 0.")

    data = _Factorised(x, t_x, T, w)

    def objective(theta):
        params = np.exp(theta)
        ll, g = _bgnbd_loglik_f(params, data, True)
        # Scaled by n so the optimiser's tolerances do not depend on the data size.
        return -ll / n, -(g * params) / n

    theta0 = np.log(np.asarray(init, dtype=np.float64)) if init else np.zeros(4)
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   bounds=[_LOG_BOUND] * 4,
                   options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9})
    r, alpha, a, b = np.exp(res.x)
    return BGNBDFit(r=float(r), alpha=float(alpha), a=float(a), b=float(b),
                    log_likelihood=float(-res.fun * n), n_customers=round(n),
                    converged=bool(res.success), iterations=int(res.nit),
                    message=str(res.message))


def bgnbd_p_alive(params, x, t_x, T) -> np.ndarray:
    """P(the customer is still alive at T | x, t_x, T); exactly 1 where x = 0."""
    r, alpha, a, b = params
    x = np.asarray(x, dtype=np.float64)
    _, ln_a3, ln_a4 = _bgnbd_terms(r, alpha, a, b, x, t_x, T)
    # 1 / (1 + A4/A3) without overflow; A4 = 0 (ln = -inf) gives exactly 1.
    return expit(ln_a3 - ln_a4)


def bgnbd_expected_purchases(params, t, x, t_x, T, *, _numerator_only: bool = False) -> np.ndarray:
    """E[number of purchases in (T, T + t] | x, t_x, T] (eq. 10 of the 2005 paper)."""
    r, alpha, a, b = params
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if np.all(t == 0):
        return np.zeros(np.broadcast(x, t).shape)
    z = t / (alpha + T + t)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        ln_ratio = (r + x) * np.log((alpha + T) / (alpha + T + t))
        head = 1.0 - np.exp(ln_ratio + np.log(hyp))
        # Where the series overflows (very heavy buyers far ahead), fall back to the
        # Euler transformation 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a, c-b; c; z).
        bad = ~np.isfinite(head)
        if np.any(bad):
            c = (a + b + x - 1) * np.ones_like(head)
            aa = (r + x) * np.ones_like(head)
            bb = (b + x) * np.ones_like(head)
            zz = z * np.ones_like(head)
            lr = ln_ratio * np.ones_like(head)
            h2 = hyp2f1(c[bad] - aa[bad], c[bad] - bb[bad], c[bad], zz[bad])
            head[bad] = 1.0 - np.exp(lr[bad] + (c[bad] - aa[bad] - bb[bad]) * np.log1p(-zz[bad])
                                     + np.log(np.abs(h2))) * np.sign(h2)
    out = (a + b + x - 1) / (a - 1) * head
    if not _numerator_only:
        # The denominator 1 + A4/A3 is 1 / P(alive).
        out = out * bgnbd_p_alive(params, x, t_x, T)
    return np.where(t > 0, out, 0.0)


def bgnbd_pmf_new(params, x: int, t) -> np.ndarray:
    """P(X(t) = x) for a customer observed over (0, t] (eq. 8 of the 2005 paper)."""
    r, alpha, a, b = params
    t = np.asarray(t, dtype=np.float64)
    ln_p = np.log(alpha / (alpha + t))
    ln_q = np.log(t / (alpha + t)) if x > 0 else 0.0
    first = np.exp(betaln(a, b + x) - betaln(a, b) + gammaln(r + x) - gammaln(r)
                   - gammaln(x + 1) + r * ln_p + x * ln_q)
    if x == 0:
        return first
    j = np.arange(x)
    with np.errstate(divide="ignore"):
        ln_terms = (gammaln(r + j) - gammaln(r) - gammaln(j + 1))[:, None] + \
            j[:, None] * np.log(t / (alpha + t))[None, :]
    partial = np.exp(r * ln_p + logsumexp(ln_terms, axis=0))
    second = np.exp(betaln(a + 1, b + x - 1) - betaln(a, b)) * (1.0 - partial)
    return first + second


def bgnbd_frequency_diagnostics(params, x, T, weights=None, max_x: int = 7) -> dict:
    """Actual vs expected number of customers with 0, 1, …, max_x+ repeat purchases.

    Expected counts sum P(X(T_i) = k) over the customers, each with its own age T_i.
    """
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    uT, inv = np.unique(T, return_inverse=True)
    wT = np.bincount(inv.reshape(-1), weights=w, minlength=uT.size)
    n = float(w.sum())
    expected, actual = [], []
    for k in range(max_x):
        expected.append(float(_dot(wT, bgnbd_pmf_new(params, k, uT))))
        actual.append(float(w[x == k].sum()))
    expected.append(n - sum(expected))
    actual.append(float(w[x >= max_x].sum()))
    labels = [str(k) for k in range(max_x)] + [f"{max_x}+"]
    return {"frequency": labels, "actual": actual, "expected": expected}


# --------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------

@dataclass
class GammaGammaFit:
    p: float
    q: float
    gamma: float
    log_likelihood: float
    n_customers: int
    converged: bool
    iterations: int
    message: str = ""

    @property
    def params(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


class _GGData:
    def __init__(self, x, zbar, weights=None):
        self.x = np.asarray(x, dtype=np.float64)
        self.zbar = np.asarray(zbar, dtype=np.float64)
        self.w = np.ones_like(self.x) if weights is None else np.asarray(weights, np.float64)
        self.ux, self.ix = np.unique(self.x, return_inverse=True)
        self.wx = np.bincount(self.ix, weights=self.w, minlength=self.ux.size)
        self.ln_z = np.log(self.zbar)
        self.xz = self.x * self.zbar
        # Sums that do not depend on the parameters.
        self.s_x_lnz_lnx = float(_dot(self.w * self.x, self.ln_z + np.log(self.x)))
        self.s_lnz = float(_dot(self.w, self.ln_z))
        self.n = float(self.w.sum())


def _gg_loglik_f(params, d: _GGData, grad: bool):
    p, q, g = (float(v) for v in params)
    pux = p * d.ux
    ln_xz_g = np.log(d.xz + g)
    wpxq = d.w * (p * d.x + q)
    ll = (_dot(d.wx, gammaln(pux + q) - gammaln(pux)) + d.n * (q * np.log(g) - gammaln(q))
          + p * d.s_x_lnz_lnx - d.s_lnz - float(_dot(wpxq, ln_xz_g)))
    if not grad:
        return float(ll)
    psi_u = psi(pux + q)
    s_ln = float(_dot(d.w, ln_xz_g))
    s_x_ln = float(_dot(d.w * d.x, ln_xz_g))
    d_p = _dot(d.wx * d.ux, psi_u - psi(pux)) + d.s_x_lnz_lnx - s_x_ln
    d_q = _dot(d.wx, psi_u) - d.n * psi(q) + d.n * np.log(g) - s_ln
    d_g = d.n * q / g - float(np.sum(wpxq / (d.xz + g)))
    return float(ll), np.array([d_p, d_q, d_g])


def gg_loglik(params, x, zbar, weights=None, *, grad: bool = False):
    """Log-likelihood of average spends `zbar` over `x` > 0 repeat purchases."""
    return _gg_loglik_f(params, _GGData(x, zbar, weights), grad)


def gg_fit(x, zbar, weights=None, *, init: tuple[float, ...] | None = None) -> GammaGammaFit:
    """Maximum-likelihood fit of the Gamma-Gamma spend model to repeat buyers (x > 0, zbar > 0)."""
    x = np.asarray(x, dtype=np.float64)
    zbar = np.asarray(zbar, dtype=np.float64)
    keep = (x > 0) & (zbar > 0)
    x, zbar = x[keep], zbar[keep]
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)[keep]
    n = float(w.sum())
    if n < 2:
        raise FitError("The Gamma-Gamma model needs at least two repeat buyers with spend.")
    if init is None:
        # Start at the method-of-moments scale of the spend so the optimiser does not wander.
        init = (1.0, 2.0, float(np.average(zbar, weights=w)))

    data = _GGData(x, zbar, w)

    def objective(theta):
        params = np.exp(theta)
        ll, g = _gg_loglik_f(params, data, True)
        return -ll / n, -(g * params) / n

    res = minimize(objective, np.log(np.asarray(init, dtype=np.float64)), jac=True,
                   method="L-BFGS-B", bounds=[_LOG_BOUND] * 3,
                   options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9})
    p, q, g = np.exp(res.x)
    return GammaGammaFit(p=float(p), q=float(q), gamma=float(g),
                         log_likelihood=float(-res.fun * n), n_customers=round(n),
                         converged=bool(res.success), iterations=int(res.nit),
                         message=str(res.message))


def gg_expected_spend(params, x, zbar) -> np.ndarray:
    """E[average spend per purchase | x, zbar]; the population mean p*gamma/(q-1) where x = 0."""
    p, q, g = params
    x = np.asarray(x, dtype=np.float64)
    zbar = np.where(x > 0, np.asarray(zbar, dtype=np.float64), 0.0)
    return p * (g + x * zbar) / (p * x + q - 1)


# --------------------------------------------------------------------------------------
# CLV
# --------------------------------------------------------------------------------------

@dataclass
class CLVResult:
    """Per-customer predictions (arrays in the order of the input customers)."""

    p_alive: np.ndarray
    expected_purchases: np.ndarray
    expected_spend: np.ndarray
    predicted_clv: np.ndarray
    extras: dict = field(default_factory=dict)


def predicted_clv(bg_params, gg_params, comp: Compressed, zbar_x, x_full, *,
                  horizon_months: int = 12, monthly_discount: float = 0.01,
                  window: float = 90 / 7, periods_per_month: float = WEEKS_PER_MONTH) -> CLVResult:
    """P(alive), expected purchases in the next `window`, expected spend and discounted CLV.

    CLV follows the discounted-expected-transactions sum that `lifetimes` uses: for each
    month m = 1..H, expected purchases in month m (difference of the cumulative BG/NBD
    expectation) times the expected spend, discounted by (1 + d)^m. The cumulative
    expectations are computed once per unique (x, t_x, T) row, H evaluations in all.
    """
    p_alive_u = bgnbd_p_alive(bg_params, comp.x, comp.t_x, comp.T)
    # The hypergeometric part depends on (x, T) only and the P(alive)-like denominator on
    # (x, t_x, T) only: evaluate 2F1 once per unique (x, T) pair and each month.
    uT, iT = np.unique(comp.T, return_inverse=True)
    key = comp.x.astype(np.int64) * uT.size + iT.reshape(-1)
    ukey, ikey = np.unique(key, return_inverse=True)
    xu = (ukey // uT.size).astype(np.float64)
    Tu = uT[ukey % uT.size]
    ikey = ikey.reshape(-1)
    ones = np.zeros_like(xu)

    def expected(t: float) -> np.ndarray:
        # With t_x = T and x = 0 the per-pair value is the numerator alone (denominator 1).
        numer = bgnbd_expected_purchases(bg_params, t, xu, ones, Tu, _numerator_only=True)
        return numer[ikey] * p_alive_u

    expected_u = expected(window)
    disc_tx_u = np.zeros_like(comp.x)
    previous = np.zeros_like(comp.x)
    for m in range(1, horizon_months + 1):
        cumulative = expected(m * periods_per_month)
        disc_tx_u += (cumulative - previous) / (1.0 + monthly_discount) ** m
        previous = cumulative
    spend = gg_expected_spend(gg_params, x_full, zbar_x)
    inv = comp.inverse
    return CLVResult(p_alive=p_alive_u[inv], expected_purchases=expected_u[inv],
                     expected_spend=spend, predicted_clv=disc_tx_u[inv] * spend)
