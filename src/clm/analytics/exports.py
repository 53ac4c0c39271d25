"""Each dashboard chart as a table for CSV download: (file name, header, rows)."""

from __future__ import annotations

from collections.abc import Callable

from clm.analytics import reports
from clm.analytics.api_reports import at_risk_rows

Table = tuple[str, list[str], list[list]]


def _cohorts(kind: str) -> Callable[[object], Table]:
    def table(user) -> Table:
        t = reports.COHORT_REPORTS[kind](months=12)
        header = ["cohort", "size"] + [f"month_{k}" for k in t.offsets] + [
            f"month_{k}_percent" for k in t.offsets]
        rows = [[c, size, *values, *percent]
                for c, size, values, percent in zip(t.cohorts, t.sizes, t.values, t.percent,
                                                    strict=True)]
        return f"cohorts-{kind}.csv", header, rows
    return table


def _series(name: str, fn: Callable) -> Callable[[object], Table]:
    def table(user) -> Table:
        s = fn()
        cols = list(s.columns)
        return (f"{name}.csv", ["month", *cols],
                [[m, *(s.columns[c][i] for c in cols)] for i, m in enumerate(s.months)])
    return table


def _stages(user) -> Table:
    return ("stages.csv", ["stage", "label", "contacts"],
            [[s["stage"], s["label"], s["contacts"]] for s in reports.stage_counts()])


def _clv(user) -> Table:
    h = reports.clv_distribution()
    return ("clv-distribution.csv", ["bin", "lower", "customers"],
            [[label, lower, n] for label, lower, n in zip(h.labels, h.lower, h.counts, strict=True)])


def _rfm(user) -> Table:
    g = reports.rfm_grid()
    return ("rfm-grid.csv", ["r", *[f"f_{f}" for f in g["f"]]],
            [[r, *row] for r, row in zip(g["r"], g["counts"], strict=True)])


def _at_risk(user) -> Table:
    rows = at_risk_rows(user, 100)
    header = ["contact_id", "name", "predicted_clv", "p_alive", "churn_risk", "value_at_risk",
              "rfm_segment", "last_purchase_on"]
    return "at-risk.csv", header, [[r[h] for h in header] for r in rows]


CHARTS: dict[str, Callable[[object], Table]] = {
    "stages": _stages,
    "revenue": _series("revenue", lambda: reports.revenue_by_month(months=24)),
    "churn": _series("churn", lambda: reports.churn_by_month(months=12)),
    "clv-distribution": _clv,
    "rfm-grid": _rfm,
    "at-risk": _at_risk,
    "cohorts-purchase": _cohorts("purchase"),
    "cohorts-activity": _cohorts("activity"),
    "cohorts-revenue": _cohorts("revenue"),
}
