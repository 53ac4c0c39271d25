"""The refresh pipeline: summary → models (NumPy) → every contact's score row (SQL).

Only what the models compute crosses from Python to the database (per buyer: P(alive),
expected purchases, predicted CLV and one packed integer of R, F, M, CLV decile, RFM segment
and the first and last purchase days), into a temporary table. One INSERT … SELECT then
joins every contact with its purchase summary, those model outputs and its event counts,
and derives the rest in SQL: the summary's plain arithmetic (frequency, recency, T, spend),
churn risk and the health score with its parts. Writing thirty Python values per contact
would cost several times more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as dtime

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from clm.analytics import bulk, rfm, scoring, summary
from clm.analytics.models import ContactScore, RefreshRun
from clm.customers.models import Contact
from clm.timeline.models import Event

EPOCH = date(1970, 1, 1)
STAGE_TABLE = "clm_tmp_score_stage"
PARTS_TABLE = "clm_tmp_score_parts"


def _is_pg() -> bool:
    return connection.vendor == "postgresql"


def _float(expr: str) -> str:
    return f"CAST({expr} AS {'DOUBLE PRECISION' if _is_pg() else 'REAL'})"


def _model_value(expr: str) -> str:
    # NaN (a model that could not be fitted) is NULL on SQLite already; PostgreSQL keeps NaN.
    return f"NULLIF({expr}, 'NaN')" if _is_pg() else expr


# Day numbers ride in the packed integer as 20-bit fields offset by 2**19 (about ±1,400 years
# around 1970), so SQL derives recency, age and tenure with integer arithmetic instead of
# parsing two date strings per row.
DAY_BITS, DAY_OFFSET = 20, 1 << 19
FIRST_DAY_SHIFT, LAST_DAY_SHIFT = 17, 17 + DAY_BITS


def pack_scores(result: scoring.ScoreResult, s: scoring.Summary) -> np.ndarray:
    """R | F << 3 | M << 6 | CLV decile << 9 | (segment code + 1) << 13 | first purchase day
    << 17 | last purchase day << 37 (days offset by DAY_OFFSET), per buyer, as int64."""
    i8 = np.int64
    return (result.rfm_r.astype(i8) | (result.rfm_f.astype(i8) << 3)
            | (result.rfm_m.astype(i8) << 6) | (result.clv_decile.astype(i8) << 9)
            | ((result.rfm_segment_code.astype(i8) + 1) << 13)
            | ((s.first_day.astype(i8) + DAY_OFFSET) << FIRST_DAY_SHIFT)
            | ((s.last_day.astype(i8) + DAY_OFFSET) << LAST_DAY_SHIFT))


def _packed_day(shift: int) -> str:
    return f"(((st.packed >> {shift}) & {(1 << DAY_BITS) - 1}) - {DAY_OFFSET})"


def _moment(day: date, days_back: int = 0) -> object:
    """Start of `day` + 1 minus `days_back` days, as a bound datetime parameter."""
    end = timezone.make_aware(datetime.combine(day + timedelta(days=1), dtime.min))
    return connection.ops.adapt_datetimefield_value(end - timedelta(days=days_back))


def _parts_fill(as_of: date) -> None:
    """Event counts behind the health parts, per contact with any, into PARTS_TABLE.

    events in the 30 days to as_of and in the 90 days before those (all kinds); average NPS
    answer in the year to as_of; open tickets (opened minus closed, ever; NULL without any
    ticket); payment.failed in the 90 days to as_of (NULL when none).
    """
    table = Event._meta.db_table
    if _is_pg():
        score = ("CASE WHEN jsonb_typeof(properties -> 'score') = 'number' "
                 "THEN (properties ->> 'score')::float8 END")
        greatest = "GREATEST"
    else:
        score = ("CASE WHEN json_type(properties, '$.score') IN ('integer', 'real') "
                 "THEN json_extract(properties, '$.score') END")
        greatest = "MAX"
    end, mid, start = _moment(as_of), _moment(as_of, 30), _moment(as_of, 120)
    year, failed_from = _moment(as_of, 365), _moment(as_of, 90)
    bulk.create_temp_table(PARTS_TABLE, [("contact_id", "i8"), ("e30", "i4"), ("e90", "i4"),
                                         ("nps", "f8"), ("tickets", "i4"), ("failed", "i4")])
    sql = f"""
        INSERT INTO {PARTS_TABLE} (contact_id, e30, e90, nps, tickets, failed)
        SELECT contact_id,
               SUM(CASE WHEN occurred_at >= %s AND occurred_at < %s THEN 1 ELSE 0 END),
               SUM(CASE WHEN occurred_at >= %s AND occurred_at < %s THEN 1 ELSE 0 END),
               AVG(CASE WHEN kind = 'nps.answered' AND occurred_at >= %s THEN {score} END),
               CASE WHEN SUM(CASE WHEN kind IN ('ticket.opened', 'ticket.closed') THEN 1
                                  ELSE 0 END) > 0
                    THEN {greatest}(0, SUM(CASE kind WHEN 'ticket.opened' THEN 1
                                                     WHEN 'ticket.closed' THEN -1 ELSE 0 END))
               END,
               NULLIF(SUM(CASE WHEN kind = 'payment.failed' AND occurred_at >= %s
                               THEN 1 ELSE 0 END), 0)
        FROM (SELECT contact_id, kind, occurred_at, properties FROM {table}
              WHERE occurred_at >= %s AND occurred_at < %s
              UNION ALL
              SELECT contact_id, kind, occurred_at, properties FROM {table}
              WHERE kind IN ('nps.answered', 'ticket.opened', 'ticket.closed')
                AND occurred_at < %s) e
        GROUP BY contact_id
    """  # noqa: S608 - table names from the models, values bound
    with connection.cursor() as cursor:
        cursor.execute(sql, [mid, end, start, mid, year, failed_from, start, end, start])


def _score_select(source: str, as_of_day: int) -> tuple[list[str], list[str]]:
    """(ContactScore columns, SELECTs producing them for every contact: buyers, the others);
    each takes one parameter, as_of.
    """
    dn = summary.day_number
    # From the packed model outputs; from the dates for a buyer whose purchase summary arrived
    # after the models read it (COALESCE evaluates the second only then).
    first = f"COALESCE({_packed_day(FIRST_DAY_SHIFT)}, {dn('s.first_purchase_on')})"
    last = f"COALESCE({_packed_day(LAST_DAY_SHIFT)}, {dn('s.last_purchase_on')})"
    p_alive = _model_value("st.p_alive")
    segment = " ".join(f"WHEN {i + 1} THEN '{name.replace(chr(39), chr(39) * 2)}'"
                       for i, name in enumerate(rfm.SEGMENT_CODES))
    engagement = ("CASE WHEN p.e30 + p.e90 > 0 THEN (p.e30 / 30.0) / (p.e30 / 30.0 + p.e90 / 90.0)"
                  " END")
    parts = {"p_alive": p_alive, "engagement": engagement, "nps": "p.nps / 10.0",
             "open_tickets": "1.0 / (1 + p.tickets)", "failed_payments": "1.0 / (1 + p.failed)"}
    total = _float("s.total_amount")
    columns = [
        ("contact_id", "c.id"),
        ("as_of", "%s"),
        ("purchases", "COALESCE(s.purchase_days, 0)"),
        ("first_purchase_on", "s.first_purchase_on"),
        ("last_purchase_on", "s.last_purchase_on"),
        ("frequency", "s.purchase_days - 1"),
        ("recency", f"{_float(f'{last} - {first}')} / {scoring.DAYS_PER_UNIT}"),
        ("T", f"{_float(f'{as_of_day} - {first}')} / {scoring.DAYS_PER_UNIT}"),
        ("days_since_last_purchase", f"{as_of_day} - {last}"),
        ("tenure_days", f"{as_of_day} - {first}"),
        # Average spend of the repeat purchase days (Gamma-Gamma's z-bar), 0 for one-timers.
        ("monetary", f"CASE WHEN s.purchase_days > 1 THEN "
                     f"{_float('s.total_amount - s.first_day_amount')} / (s.purchase_days - 1) "
                     f"WHEN s.purchase_days = 1 THEN 0 END"),
        ("average_spend", f"{total} / s.purchase_days"),
        ("rfm_r", "NULLIF(st.packed & 7, 0)"),
        ("rfm_f", "NULLIF((st.packed >> 3) & 7, 0)"),
        ("rfm_m", "NULLIF((st.packed >> 6) & 7, 0)"),
        ("rfm_segment", f"CASE (st.packed >> 13) & 15 {segment} ELSE '' END"),
        ("historical_clv", total),
        ("predicted_clv", _model_value("st.clv")),
        ("expected_purchases", _model_value("st.expected")),
        ("p_alive", p_alive),
        ("churn_risk", f"1 - {p_alive}"),
        ("clv_decile", "NULLIF((st.packed >> 9) & 15, 0)"),
        ("value_at_risk", f"{_model_value('st.clv')} * (1 - {p_alive})"),
        ("health_score", rfm.health_sql(parts)),
        ("engagement", engagement),
        ("events_30d", "COALESCE(p.e30, 0)"),
        ("events_prev_90d", "COALESCE(p.e90, 0)"),
        ("nps", "p.nps"),
        ("open_tickets", "p.tickets"),
        ("failed_payments", "p.failed"),
    ]
    head = f"SELECT {', '.join(e for _, e in columns)} "
    # Buyers, driven by the summary (read in its own order, one key lookup per other table),
    # then every other contact; the join on contacts skips one deleted meanwhile.
    buyers = (f"{head} FROM {source} s JOIN {Contact._meta.db_table} c ON c.id = s.contact_id "
              f"LEFT JOIN {STAGE_TABLE} st ON st.contact_id = s.contact_id "
              f"LEFT JOIN {PARTS_TABLE} p ON p.contact_id = s.contact_id")
    others = (f"{head} FROM {Contact._meta.db_table} c "
              f"LEFT JOIN {source} s ON s.contact_id = c.id "
              f"LEFT JOIN {STAGE_TABLE} st ON st.contact_id = c.id "
              f"LEFT JOIN {PARTS_TABLE} p ON p.contact_id = c.id WHERE s.contact_id IS NULL")
    return [c for c, _ in columns], [buyers, others]


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def compute(run: RefreshRun, progress: Callable[[int, str], None]) -> None:
    """Refit the models as of `run.as_of` and rewrite every ContactScore row; fills `run`'s
    results (the caller saves it). The score rows are replaced in one transaction.

    A purchase recorded while this runs may show in the summary columns (purchases, totals)
    and not yet in the model outputs; the next refresh brings them together.
    """
    opts = run.settings
    as_of = run.as_of
    as_of_day = (as_of - EPOCH).days
    timings: dict[str, float] = {}
    try:
        progress(5, "reading purchases")
        t = time.perf_counter()
        source = summary.source_for(as_of)
        s = summary.read(source)
        timings["read_summary"] = time.perf_counter() - t

        progress(30, "fitting models")
        result = scoring.score(s, as_of_day, horizon_months=opts["horizon_months"],
                               monthly_discount=opts["monthly_discount"],
                               window_days=opts["window_days"])
        timings.update(result.timings)

        progress(60, "writing scores")
        with transaction.atomic():
            t = time.perf_counter()
            bulk.write_temp_table(
                STAGE_TABLE, [("contact_id", "i8"), ("p_alive", "f8"), ("expected", "f8"),
                              ("clv", "f8"), ("packed", "i8")],
                [s.contact_id, result.p_alive, result.expected_purchases, result.predicted_clv,
                 pack_scores(result, s)])
            timings["write_stage"] = time.perf_counter() - t
            t = time.perf_counter()
            _parts_fill(as_of)
            timings["event_parts"] = time.perf_counter() - t
            t = time.perf_counter()
            columns, selects = _score_select(source, as_of_day)
            run.contact_count = bulk.table_rewrite(
                ContactScore._meta.db_table, columns, selects,
                [connection.ops.adapt_datefield_value(as_of)])
            timings["write_scores"] = time.perf_counter() - t
    finally:
        summary.drop_as_of_table()
        bulk.drop_temp_table(STAGE_TABLE)
        bulk.drop_temp_table(PARTS_TABLE)

    bg, gg = result.bgnbd, result.gamma_gamma
    run.customer_count = len(s.contact_id)
    run.bgnbd = {} if bg is None else {
        "time_unit": scoring.TIME_UNIT, "r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b,
        "log_likelihood": _finite(bg.log_likelihood), "customers": bg.n_customers,
        "converged": bg.converged, "iterations": bg.iterations}
    run.gamma_gamma = {} if gg is None else {
        "p": gg.p, "q": gg.q, "gamma": gg.gamma, "log_likelihood": _finite(gg.log_likelihood),
        "customers": gg.n_customers, "converged": gg.converged, "iterations": gg.iterations}
    run.diagnostics = {"repeat_purchases": result.diagnostics, "errors": result.errors}
    run.timings = {k: round(v, 3) for k, v in timings.items()}
