"""Reads of the analytics app: the per-contact purchase summary (one SQL GROUP BY),
engagement counts, the current model and scores.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
from django.db import connection
from django.db.models import Count, FloatField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from clm.analytics.models import ContactScore, RefreshRun, Transaction
from clm.analytics.scoring import Summary
from clm.customers.models import Contact
from clm.timeline.models import Event

EPOCH = date(1970, 1, 1)


def _day_number_sql(expr: str) -> str:
    if connection.vendor == "postgresql":
        return f"({expr} - DATE '1970-01-01')"
    return f"CAST(julianday({expr}) - 2440587.5 AS INTEGER)"


def purchase_summary(as_of: date) -> Summary:
    """Summarise every contact's purchases on or before `as_of`, grouped in the database.

    Purchases on the same day count as one purchase of their summed amount (as in the
    BG/NBD literature). Reads one row per buyer.
    """
    table = Transaction._meta.db_table
    # Inner: one row per (contact, day); the window marks each contact's first day so the
    # outer GROUP BY can keep its amount apart (Gamma-Gamma uses repeat purchases only).
    sql = f"""
        SELECT contact_id, COUNT(*), {_day_number_sql("MIN(day)")}, {_day_number_sql("MAX(day)")},
               CAST(SUM(day_amount) AS DOUBLE PRECISION),
               CAST(SUM(CASE WHEN rn = 1 THEN day_amount ELSE 0 END) AS DOUBLE PRECISION)
        FROM (
            SELECT contact_id, occurred_on AS day, SUM(amount) AS day_amount,
                   ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY occurred_on) AS rn
            FROM {table}
            WHERE occurred_on <= %s
            GROUP BY contact_id, occurred_on
        ) per_day
        GROUP BY contact_id
        ORDER BY contact_id
    """  # noqa: S608 - table name from the model, values bound
    with connection.cursor() as cursor:
        cursor.execute(sql, [as_of])
        rows = cursor.fetchall()
    if not rows:
        empty_i = np.zeros(0, dtype=np.int64)
        return Summary(empty_i, empty_i, empty_i, empty_i, np.zeros(0), np.zeros(0))
    ints = np.array([r[:4] for r in rows], dtype=np.int64)
    money = np.array([r[4:] for r in rows], dtype=np.float64)
    return Summary(ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3],
                           money[:, 0], money[:, 1])


def all_contact_ids() -> np.ndarray:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Contact._meta.db_table} ORDER BY id")  # noqa: S608
        return np.array([r[0] for r in cursor.fetchall()], dtype=np.int64)


def _end_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def engagement_counts(as_of: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(contact ids, events in the 30 days to as_of, events in the 90 days before those)."""
    end = _end_of_day(as_of)
    mid = end - timedelta(days=30)
    start = mid - timedelta(days=90)
    rows = list(Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
                .values("contact_id")
                .annotate(recent=Count("id", filter=Q(occurred_at__gte=mid)),
                          before=Count("id", filter=Q(occurred_at__lt=mid)))
                .values_list("contact_id", "recent", "before").order_by())
    if not rows:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def nps_scores(as_of: date) -> dict[int, float]:
    """Average `nps.answered` score (0-10) per contact over the year to as_of."""
    end = _end_of_day(as_of)
    rows = (Event.objects.filter(kind="nps.answered", occurred_at__lt=end,
                                 occurred_at__gte=end - timedelta(days=365))
            .annotate(score=Cast(KeyTextTransform("score", "properties"), FloatField()))
            .values_list("contact_id", "score"))
    totals: dict[int, list[float]] = {}
    for contact_id, score in rows:
        if score is not None:
            totals.setdefault(contact_id, []).append(float(score))
    return {cid: sum(v) / len(v) for cid, v in totals.items()}


def open_ticket_counts(as_of: date) -> dict[int, int]:
    """ticket.opened minus ticket.closed per contact, up to as_of (at least 0)."""
    end = _end_of_day(as_of)
    rows = (Event.objects.filter(kind__in=["ticket.opened", "ticket.closed"], occurred_at__lt=end)
            .values("contact_id")
            .annotate(opened=Count("id", filter=Q(kind="ticket.opened")),
                      closed=Count("id", filter=Q(kind="ticket.closed")))
            .values_list("contact_id", "opened", "closed").order_by())
    return {cid: max(0, o - c) for cid, o, c in rows}


def failed_payment_counts(as_of: date, days: int = 90) -> dict[int, int]:
    """payment.failed events per contact in the `days` to as_of."""
    end = _end_of_day(as_of)
    rows = (Event.objects.filter(kind="payment.failed", occurred_at__lt=end,
                                 occurred_at__gte=end - timedelta(days=days))
            .values("contact_id").annotate(n=Count("id")).values_list("contact_id", "n")
            .order_by())
    return dict(rows)


def current_run() -> RefreshRun | None:
    """The latest finished refresh (the models in force), or None."""
    return (RefreshRun.objects.filter(status=RefreshRun.Status.DONE)
            .order_by("-finished_at", "-pk").first())


def latest_run() -> RefreshRun | None:
    return RefreshRun.objects.order_by("-created_at", "-pk").first()


def active_run() -> RefreshRun | None:
    return (RefreshRun.objects.filter(status__in=[RefreshRun.Status.PENDING,
                                                  RefreshRun.Status.RUNNING])
            .order_by("-created_at", "-pk").first())


def scores_visible(user) -> QuerySet[ContactScore]:
    """Scores of the contacts `user` may see."""
    from clm.customers.queries import contacts_visible

    return ContactScore.objects.filter(contact__in=contacts_visible(user))
