"""The refresh pipeline: summary → models (NumPy) → every contact's score row (SQL).

Only what the models compute crosses from Python to the database (per buyer: P(alive),
expected purchases, predicted CLV and one packed integer of R, F, M, CLV decile and RFM
segment), into a temporary table. One INSERT … SELECT then joins the purchase summary with
those model outputs and the event counts behind the health parts, and a second adds a blank
row for every contact without purchases. Rows hold only what cannot be derived: frequency,
recency, churn risk, health and the like are computed on read (clm.analytics.derived).
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


def pack_scores(result: scoring.ScoreResult) -> np.ndarray:
    """R | F << 3 | M << 6 | CLV decile << 9 | (segment code + 1) << 13, per buyer, as int64:
    one value to bind instead of five."""
    i8 = np.int64
    return (result.rfm_r.astype(i8) | (result.rfm_f.astype(i8) << 3)
            | (result.rfm_m.astype(i8) << 6) | (result.clv_decile.astype(i8) << 9)
            | ((result.rfm_segment_code.astype(i8) + 1) << 13))


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


def _score_select(source: str) -> tuple[list[str], list[str]]:
    """(ContactScore columns, SELECTs producing them: buyers, then every other contact);
    each takes one parameter, as_of.
    """
    segment = " ".join(f"WHEN {i + 1} THEN '{name.replace(chr(39), chr(39) * 2)}'"
                       for i, name in enumerate(rfm.SEGMENT_CODES))
    columns = [
        ("contact_id", "s.contact_id", "c.id"),
        ("as_of", "%s", "%s"),
        ("purchases", "s.purchase_days", "0"),
        ("first_purchase_on", "s.first_purchase_on", "NULL"),
        ("last_purchase_on", "s.last_purchase_on", "NULL"),
        # Average spend of the repeat purchase days (Gamma-Gamma's z-bar), 0 for one-timers.
        ("monetary", f"CASE WHEN s.purchase_days > 1 THEN "
                     f"{_float('s.total_amount - s.first_day_amount')} / (s.purchase_days - 1) "
                     f"ELSE 0 END", "NULL"),
        ("rfm_r", "NULLIF(st.packed & 7, 0)", "NULL"),
        ("rfm_f", "NULLIF((st.packed >> 3) & 7, 0)", "NULL"),
        ("rfm_m", "NULLIF((st.packed >> 6) & 7, 0)", "NULL"),
        ("rfm_segment", f"CASE (st.packed >> 13) & 15 {segment} ELSE '' END", "''"),
        ("historical_clv", _float("s.total_amount"), "NULL"),
        ("predicted_clv", _model_value("st.clv"), "NULL"),
        ("expected_purchases", _model_value("st.expected"), "NULL"),
        ("p_alive", _model_value("st.p_alive"), "NULL"),
        ("clv_decile", "NULLIF((st.packed >> 9) & 15, 0)", "NULL"),
        ("events_30d", "COALESCE(p.e30, 0)", "COALESCE(p.e30, 0)"),
        ("events_prev_90d", "COALESCE(p.e90, 0)", "COALESCE(p.e90, 0)"),
        ("nps", "p.nps", "p.nps"),
        ("open_tickets", "p.tickets", "p.tickets"),
        ("failed_payments", "p.failed", "p.failed"),
    ]
    contacts = Contact._meta.db_table
    # Buyers, driven by the summary in its own order, one key lookup per other table. No
    # join on contacts: a summary row goes with its contact's transactions (deleted in the
    # same transaction), so it never names a deleted contact, and the join cost a second
    # per million rows.
    buyers = (f"SELECT {', '.join(b for _, b, _ in columns)} FROM {source} s "  # noqa: S608
              f"LEFT JOIN {STAGE_TABLE} st ON st.contact_id = s.contact_id "
              f"LEFT JOIN {PARTS_TABLE} p ON p.contact_id = s.contact_id")
    # Then the contacts without purchases. With buyers a subset of contacts, equal counts
    # mean there are none: both databases test that uncorrelated condition once, before
    # scanning (a scan of every contact that usually finds no one cost half a second).
    others = (f"SELECT {', '.join(o for _, _, o in columns)} FROM {contacts} c "  # noqa: S608
              f"LEFT JOIN {PARTS_TABLE} p ON p.contact_id = c.id "
              f"WHERE (SELECT COUNT(*) FROM {contacts}) > (SELECT COUNT(*) FROM {source}) "
              f"AND NOT EXISTS (SELECT 1 FROM {source} s WHERE s.contact_id = c.id)")
    return [c for c, _, _ in columns], [buyers, others]


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
            if _is_pg():
                # For this transaction: hash joins of a million rows in memory (the default
                # 4 MB splits them into batches on disk), no JIT compilation (it costs more
                # than it saves on one pass), and index builds sorted in memory.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL work_mem = '256MB'")
                    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
                    cursor.execute("SET LOCAL jit = off")
            t = time.perf_counter()
            # Joined whole (hashed) on PostgreSQL: no index on its key there.
            bulk.write_temp_table(
                STAGE_TABLE, [("contact_id", "i8"), ("p_alive", "f8"), ("expected", "f8"),
                              ("clv", "f8"), ("packed", "i8")],
                [s.contact_id, result.p_alive, result.expected_purchases, result.predicted_clv,
                 pack_scores(result)], pg_key=False)
            timings["write_stage"] = time.perf_counter() - t
            t = time.perf_counter()
            _parts_fill(as_of)
            timings["event_parts"] = time.perf_counter() - t
            t = time.perf_counter()
            columns, selects = _score_select(source)
            run.contact_count = bulk.table_rewrite(
                ContactScore._meta.db_table, columns, selects,
                [connection.ops.adapt_datefield_value(as_of)])
            timings["write_scores"] = time.perf_counter() - t
            t = time.perf_counter()
        # Writing the million rewritten rows out (on SQLite also checkpointing the WAL).
        timings["commit"] = time.perf_counter() - t
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
