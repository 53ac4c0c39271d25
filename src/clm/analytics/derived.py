"""Score values computed on read from ContactScore's stored columns.

A refresh stores per contact only what cannot be derived: the model outputs, the RFM codes,
segment and CLV decile, the purchase summary as of that day and the counts behind the health
parts. Everything else below is one formula over those columns, computed when it is read:

* in SQL, for filters, ordering, aggregates and raw SQL (`sql`, and the `Derived` expression
  the ORM compiles it through, over any relation path such as "score__");
* in Python, for a row already loaded (`value`, behind ContactScore's properties).

Both follow the same formulas, so a value reads the same whichever way it is fetched. Writing
these ten columns for a million contacts cost the refresh more than fitting the models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from django.db import models

DAYS_PER_UNIT = 7.0  # the BG/NBD time unit (weeks), as clm.analytics.scoring.DAYS_PER_UNIT

# Derived value -> (stored columns it reads, output field class).
INPUTS: dict[str, tuple[tuple[str, ...], type[models.Field]]] = {
    "frequency": (("purchases",), models.IntegerField),
    "recency": (("first_purchase_on", "last_purchase_on"), models.FloatField),
    "T": (("first_purchase_on", "as_of"), models.FloatField),
    "days_since_last_purchase": (("last_purchase_on", "as_of"), models.IntegerField),
    "tenure_days": (("first_purchase_on", "as_of"), models.IntegerField),
    "average_spend": (("purchases", "historical_clv"), models.FloatField),
    "churn_risk": (("p_alive",), models.FloatField),
    "value_at_risk": (("predicted_clv", "p_alive"), models.FloatField),
    "engagement": (("events_30d", "events_prev_90d"), models.FloatField),
    "health_score": (("p_alive", "events_30d", "events_prev_90d", "nps", "open_tickets",
                      "failed_payments"), models.FloatField),
}
NAMES = tuple(INPUTS)


def _float(expr: str, vendor: str) -> str:
    return f"CAST({expr} AS {'DOUBLE PRECISION' if vendor == 'postgresql' else 'REAL'})"


def _days(later: str, earlier: str, vendor: str) -> str:
    """Whole days from the date `earlier` to the date `later` (NULL if either is)."""
    if vendor == "postgresql":
        return f"({later} - {earlier})"
    # Dates are 'YYYY-MM-DD' text on SQLite; julianday of a date is a whole day number.
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def _engagement(c: Mapping[str, str], vendor: str) -> str:
    e30, e90 = _float(c["events_30d"], vendor), _float(c["events_prev_90d"], vendor)
    return (f"CASE WHEN {c['events_30d']} + {c['events_prev_90d']} > 0 "
            f"THEN ({e30} / 30.0) / ({e30} / 30.0 + {e90} / 90.0) END")


def health_parts_sql(c: Mapping[str, str], vendor: str) -> dict[str, str]:
    """SQL for each health part (0..1, NULL where absent) from the stored columns `c`."""
    f = _float
    return {"p_alive": c["p_alive"], "engagement": _engagement(c, vendor),
            "nps": f"{f(c['nps'], vendor)} / 10.0",
            "open_tickets": f"1.0 / (1 + {f(c['open_tickets'], vendor)})",
            "failed_payments": f"1.0 / (1 + {f(c['failed_payments'], vendor)})"}


def sql(name: str, column: Callable[[str], str] | Mapping[str, str], vendor: str) -> str:
    """SQL for the derived value `name`; `column` gives the SQL of each stored column."""
    from clm.analytics.rfm import health_sql

    c = {k: (column[k] if isinstance(column, Mapping) else column(k)) for k in INPUTS[name][0]}
    f = _float
    if name == "frequency":
        return f"CASE WHEN {c['purchases']} > 0 THEN {c['purchases']} - 1 END"
    if name == "recency":
        days = _days(c["last_purchase_on"], c["first_purchase_on"], vendor)
        return f"{f(days, vendor)} / {DAYS_PER_UNIT}"
    if name == "T":
        return f"{f(_days(c['as_of'], c['first_purchase_on'], vendor), vendor)} / {DAYS_PER_UNIT}"
    if name == "days_since_last_purchase":
        return _days(c["as_of"], c["last_purchase_on"], vendor)
    if name == "tenure_days":
        return _days(c["as_of"], c["first_purchase_on"], vendor)
    if name == "average_spend":
        return (f"CASE WHEN {c['purchases']} > 0 "
                f"THEN {f(c['historical_clv'], vendor)} / {c['purchases']} END")
    if name == "churn_risk":
        return f"1 - {c['p_alive']}"
    if name == "value_at_risk":
        return f"{c['predicted_clv']} * (1 - {c['p_alive']})"
    if name == "engagement":
        return _engagement(c, vendor)
    if name == "health_score":
        return f(health_sql(health_parts_sql(c, vendor)), vendor)
    raise KeyError(name)


class Derived(models.Expression):
    """A derived value in the ORM: `Derived("health_score", "score__")` reads the stored
    columns through that path (joins as F() would) and renders `sql` over them. As with F(),
    an annotation or aggregate of the same query named like one of those columns would be
    read instead: name results otherwise."""

    def __init__(self, name: str, prefix: str = "") -> None:
        columns, output = INPUTS[name]
        super().__init__(output_field=output())
        self.name, self.prefix = name, prefix
        self.sources = [models.F(prefix + col) for col in columns]

    def get_source_expressions(self) -> list:
        return self.sources

    def set_source_expressions(self, exprs: list) -> None:
        self.sources = list(exprs)

    def as_sql(self, compiler, connection, **extra) -> tuple[str, list]:
        compiled = {}
        for col, expr in zip(INPUTS[self.name][0], self.sources, strict=True):
            text, params = compiler.compile(expr)
            if params:  # a column reference has none; the SQL repeats some columns
                raise ValueError(f"unexpected parameters in {col}")
            compiled[col] = text
        return f"({sql(self.name, compiled, connection.vendor)})", []


def expressions(prefix: str = "") -> dict[str, Derived]:
    """Every derived value as an ORM expression over the stored columns at `prefix`."""
    return {name: Derived(name, prefix) for name in NAMES}


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _days_py(later: Any, earlier: Any) -> int | None:
    later, earlier = _day(later), _day(earlier)
    return None if later is None or earlier is None else (later - earlier).days


def health_parts(get: Callable[[str], Any]) -> dict[str, float]:
    """Each health part present (0..1) from the stored values `get(column)` returns."""
    parts = {"p_alive": get("p_alive"), "engagement": value("engagement", get)}
    nps, tickets, failed = get("nps"), get("open_tickets"), get("failed_payments")
    parts["nps"] = None if nps is None else nps / 10.0
    parts["open_tickets"] = None if tickets is None else 1.0 / (1 + tickets)
    parts["failed_payments"] = None if failed is None else 1.0 / (1 + failed)
    return {k: float(v) for k, v in parts.items() if v is not None}


def value(name: str, get: Callable[[str], Any]) -> Any:
    """The derived value `name` in Python from the stored values `get(column)` returns."""
    if name == "frequency":
        n = get("purchases")
        return n - 1 if n else None
    if name == "recency":
        days = _days_py(get("last_purchase_on"), get("first_purchase_on"))
        return None if days is None else days / DAYS_PER_UNIT
    if name == "T":
        days = _days_py(get("as_of"), get("first_purchase_on"))
        return None if days is None else days / DAYS_PER_UNIT
    if name == "days_since_last_purchase":
        return _days_py(get("as_of"), get("last_purchase_on"))
    if name == "tenure_days":
        return _days_py(get("as_of"), get("first_purchase_on"))
    if name == "average_spend":
        n, total = get("purchases"), get("historical_clv")
        return total / n if n and total is not None else None
    if name == "churn_risk":
        p = get("p_alive")
        return None if p is None else 1 - p
    if name == "value_at_risk":
        clv, p = get("predicted_clv"), get("p_alive")
        return None if clv is None or p is None else clv * (1 - p)
    if name == "engagement":
        e30, e90 = get("events_30d") or 0, get("events_prev_90d") or 0
        return (e30 / 30.0) / (e30 / 30.0 + e90 / 90.0) if e30 + e90 > 0 else None
    if name == "health_score":
        from clm.analytics.rfm import HEALTH_WEIGHTS

        parts = health_parts(get)
        weight = sum(HEALTH_WEIGHTS[k] for k in parts)
        if not weight:
            return None
        return 100.0 * sum(HEALTH_WEIGHTS[k] * v for k, v in parts.items()) / weight
    raise KeyError(name)
