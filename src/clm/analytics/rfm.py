"""RFM quintile scores, named segments, CLV deciles (NumPy) and the health score (SQL).

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


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their ranks (scipy's rankdata "average").

    Integers in a modest range are counted rather than sorted, floats sorted once without
    the stable sort rankdata uses: a million values rank in a few hundredths of a second
    instead of a quarter of one.
    """
    values = np.asarray(values)
    n = values.size
    if n == 0:
        return np.zeros(0)
    if values.dtype.kind in "iu":
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * n:
            counts = np.bincount(values - lo)
            below = np.cumsum(counts) - counts
            return (below + (counts + 1) / 2.0)[values - lo]
    values = values.astype(np.float64, copy=False)
    order = np.argsort(values)
    ordered = values[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    ranks = np.empty(n)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(new) - 1]
    return ranks


def quintiles(values: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1..5 by mid-rank (ties share a score); empty in, empty out."""
    values = np.asarray(values)
    n = values.size
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    ranks = average_ranks(values if higher_is_better else -values)
    return np.clip(np.ceil(5.0 * ranks / n), 1, 5).astype(np.int8)


def deciles(values: np.ndarray) -> np.ndarray:
    """Scores 1..10 (10 = highest) by mid-rank."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    ranks = average_ranks(values)
    return np.clip(np.ceil(10.0 * ranks / n), 1, 10).astype(np.int8)


# Codes of `segment_codes` (index into this list); the order is the rule order.
SEGMENT_CODES = ["new", "champions", "potential loyalists", "loyal", "can't lose", "at risk",
                 "hibernating", "lost"]


def segment_codes(r: np.ndarray, f: np.ndarray, m: np.ndarray, repeat: np.ndarray) -> np.ndarray:
    """Segment per customer as an index into SEGMENT_CODES (rules of the table above)."""
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
    return np.select(conditions, list(range(len(conditions))), default=len(conditions)
                     ).astype(np.int8)


def segments(r: np.ndarray, f: np.ndarray, m: np.ndarray, repeat: np.ndarray) -> np.ndarray:
    """Segment name per customer from R, F, M scores and repeat-purchase counts."""
    return np.array(SEGMENT_CODES, dtype=object)[segment_codes(r, f, m, repeat)]


def health_sql(parts: dict[str, str]) -> str:
    """SQL for the health score, 0..100: the weighted mean (HEALTH_WEIGHTS) of the parts
    present. `parts` maps part names to SQL expressions in 0..1, NULL where absent; NULL
    when no part is present.
    """
    num = " + ".join(f"{HEALTH_WEIGHTS[k]} * COALESCE({e}, 0)" for k, e in parts.items())
    den = " + ".join(f"CASE WHEN {e} IS NULL THEN 0 ELSE {HEALTH_WEIGHTS[k]} END"
                     for k, e in parts.items())
    return f"100.0 * ({num}) / NULLIF({den}, 0)"
