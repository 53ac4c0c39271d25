"""RFM quintile scores, named segments, CLV deciles and the health score (pure NumPy).

Quintiles (1-5, 5 = best) rank buyers: R by days since the last purchase (fewer is better),
F by purchase days, M by average spend per purchase day. Ties share the score of their
mid-rank, so equal values always get equal scores. FM = round((F + M) / 2).

Named segments, first matching rule wins:

| segment             | rule                                   |
| ------------------- | -------------------------------------- |
| new                 | R >= 4 and only one purchase day       |
| champions           | R >= 4 and FM >= 4                     |
| potential loyalists | R >= 4 (FM <= 3)                       |
| loyal               | R = 3 and FM >= 3                      |
| can't lose          | R <= 2 and FM = 5                      |
| at risk             | R <= 2 and FM >= 3                     |
| hibernating         | R in (2, 3) and FM <= 2                |
| lost                | R = 1 and FM <= 2                      |
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

SEGMENTS = ["champions", "loyal", "potential loyalists", "new", "at risk", "can't lose",
            "hibernating", "lost"]

SEGMENT_RULES = [
    ("new", "R >= 4 and only one purchase day"),
    ("champions", "R >= 4 and FM >= 4"),
    ("potential loyalists", "R >= 4 and FM <= 3"),
    ("loyal", "R = 3 and FM >= 3"),
    ("can't lose", "R <= 2 and FM = 5"),
    ("at risk", "R <= 2 and FM >= 3"),
    ("hibernating", "R in (2, 3) and FM <= 2"),
    ("lost", "R = 1 and FM <= 2"),
]

# Weights of the health score's parts; a part that does not exist for a contact is left out
# and the others are re-weighted.
HEALTH_WEIGHTS = {"p_alive": 0.5, "engagement": 0.3, "nps": 0.2, "open_tickets": 0.1,
                  "failed_payments": 0.1}


def quintiles(values: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1..5 by mid-rank (ties share a score); empty in, empty out."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    ranks = rankdata(values if higher_is_better else -values, method="average")
    return np.clip(np.ceil(5.0 * ranks / n), 1, 5).astype(np.int8)


def deciles(values: np.ndarray) -> np.ndarray:
    """Scores 1..10 (10 = highest) by mid-rank."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    ranks = rankdata(values, method="average")
    return np.clip(np.ceil(10.0 * ranks / n), 1, 10).astype(np.int8)


def segments(r: np.ndarray, f: np.ndarray, m: np.ndarray, repeat: np.ndarray) -> np.ndarray:
    """Segment name per customer from R, F, M scores and repeat-purchase counts (table above)."""
    r = np.asarray(r)
    fm = np.floor((np.asarray(f, dtype=np.float64) + np.asarray(m)) / 2.0 + 0.5)
    single = np.asarray(repeat) == 0
    conditions = [
        (r >= 4) & single,
        (r >= 4) & (fm >= 4),
        r >= 4,
        (r == 3) & (fm >= 3),
        (r <= 2) & (fm >= 5),
        (r <= 2) & (fm >= 3),
        r >= 2,
    ]
    choices = ["new", "champions", "potential loyalists", "loyal", "can't lose", "at risk",
               "hibernating"]
    return np.select(conditions, choices, default="lost")


def engagement_trend(recent_30: np.ndarray, previous_90: np.ndarray) -> np.ndarray:
    """0..1: the share of the daily event rate that falls in the last 30 days.

    0.5 = as active as in the 90 days before; 1 = only recently active; 0 = gone quiet.
    NaN where the contact had no events in either window.
    """
    recent = np.asarray(recent_30, dtype=np.float64) / 30.0
    before = np.asarray(previous_90, dtype=np.float64) / 90.0
    total = recent + before
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, recent / total, np.nan)


def health(parts: dict[str, np.ndarray]) -> np.ndarray:
    """0..100: the weighted mean of the parts present (each in 0..1, NaN = absent)."""
    num = None
    den = None
    for name, values in parts.items():
        weight = HEALTH_WEIGHTS[name]
        v = np.asarray(values, dtype=np.float64)
        present = ~np.isnan(v)
        contribution = np.where(present, v * weight, 0.0)
        w = np.where(present, weight, 0.0)
        num = contribution if num is None else num + contribution
        den = w if den is None else den + w
    if num is None:
        return np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 100.0 * num / den, np.nan)
