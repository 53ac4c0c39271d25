"""Purchases, their per-contact summary, model refresh runs and the per-contact scores.

PurchaseSummary is one row per buyer, kept current by every write of Transaction, so that a
refresh as of today reads a million narrow rows instead of grouping ten million purchases.
ContactScore is one row per contact, rewritten in bulk by each refresh: what cannot be
derived is stored in plain columns (RFM segment, CLV decile, P(alive), health parts, …) so a
segment builder can filter it in SQL; the rest is computed on read (clm.analytics.derived).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Transaction(models.Model):
    """One purchase by a contact."""

    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="transactions")
    occurred_at = models.DateTimeField()
    # The purchase day in the business's time zone (settings.TIME_ZONE), derived from
    # occurred_at on write: the models count purchase days, and a plain date column lets
    # one covering index serve the per-contact summary on SQLite and PostgreSQL alike.
    occurred_on = models.DateField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    order_reference = models.CharField(max_length=100, null=True, blank=True, unique=True)
    source = models.CharField(max_length=30, help_text="event, import, billing, …")
    # The order.completed event this came from, when it came from one (idempotency).
    event = models.OneToOneField("timeline.Event", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["contact", "occurred_on", "amount"], name="txn_contact_day_amount"),
            models.Index(fields=["occurred_on"], name="txn_day"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="txn_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} @ {self.occurred_on}"


class PurchaseSummary(models.Model):
    """Totals of all of a contact's purchases (every Transaction row, whatever its date).

    Maintained by `services.purchase_summaries_update(contact_ids)`, which every writer of
    Transaction calls in the same transaction (set-based: one statement per batch). Purchases
    on the same day are one purchase day (as the CLV models count them). A contact without
    purchases has no row. Amounts add up whatever their currency, as the models do.
    """

    # Derived tables (this one, PurchaseMonth, ActivityMonth, ContactScore) have no database
    # foreign key: PostgreSQL checks a key row by row, which made rebuilding them several times
    # slower. Django still deletes them with their contact (on_delete=CASCADE).
    contact = models.OneToOneField("customers.Contact", on_delete=models.CASCADE,
                                   primary_key=True, related_name="purchase_summary",
                                   db_constraint=False)
    first_purchase_on = models.DateField()
    last_purchase_on = models.DateField()
    purchase_days = models.PositiveIntegerField()
    transactions = models.PositiveIntegerField()
    total_amount = models.DecimalField(max_digits=16, decimal_places=2)
    first_day_amount = models.DecimalField(max_digits=16, decimal_places=2,
                                           help_text="Spent on the first purchase day.")

    class Meta:
        verbose_name_plural = "purchase summaries"

    def __str__(self) -> str:
        return f"purchases of contact {self.contact_id}"


class PurchaseMonth(models.Model):
    """A contact's purchases in one calendar month, maintained with PurchaseSummary.

    `month` is year * 12 + month - 1 of the local purchase day (2024-03 is 24290), so
    that "the month after" is + 1 in any database.
    """

    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE, related_name="+",
                                db_constraint=False)
    month = models.IntegerField()
    revenue = models.DecimalField(max_digits=16, decimal_places=2)
    purchase_days = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "month"],
                                               name="purchase_month_once")]
        indexes = [models.Index(fields=["month", "contact"], name="purchase_month_by_month")]

    def __str__(self) -> str:
        return f"purchases of contact {self.contact_id} in month {self.month}"


class ActivityMonth(models.Model):
    """A month (as PurchaseMonth.month, in UTC) in which a contact had any timeline event.

    Added by the analytics consumer for every committed batch of events; rebuilt from the
    events by `summary.activity_months_rebuild()`.
    """

    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE, related_name="+",
                                db_constraint=False)
    month = models.IntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "month"],
                                               name="activity_month_once")]
        indexes = [models.Index(fields=["month", "contact"], name="activity_month_by_month")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} active in month {self.month}"


class RefreshRun(models.Model):
    """One refresh of the models and scores as of a date, with its progress and results."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    as_of = models.DateField(help_text="Only purchases on or before this day count.")
    progress = models.PositiveSmallIntegerField(default=0, help_text="0-100")
    step = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure = models.TextField(blank=True)
    customer_count = models.PositiveIntegerField(default=0, help_text="Contacts with a purchase.")
    contact_count = models.PositiveIntegerField(default=0, help_text="Score rows written.")
    # {"time_unit", "r", "alpha", "a", "b", "log_likelihood", "converged", …}
    bgnbd = models.JSONField(default=dict, blank=True)
    # {"p", "q", "gamma", "log_likelihood", "customers", "converged", …}
    gamma_gamma = models.JSONField(default=dict, blank=True)
    diagnostics = models.JSONField(default=dict, blank=True)
    settings = models.JSONField(default=dict, blank=True,
                                help_text="Horizon, discount rate and window used.")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per step.")

    class Meta:
        indexes = [models.Index(fields=["status", "-finished_at"], name="refresh_status_done")]

    def __str__(self) -> str:
        return f"refresh as of {self.as_of} ({self.status})"

    def is_active(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RUNNING)


class RowidOneToOneField(models.OneToOneField):
    """A one-to-one primary key that, on SQLite, is declared INTEGER: the table's rowid
    itself. Declared BIGINT (Django's default) it is a second B-tree beside the table, which
    every inserted row updates; the refresh writes a million of them."""

    def db_type(self, connection) -> str | None:
        if connection.vendor == "sqlite":
            return "integer"
        return super().db_type(connection)


class ScoreManager(models.Manager):
    """ContactScore.objects: the derived values (clm.analytics.derived) are aliases, so
    querysets filter, order and aggregate on them in SQL as on stored columns; a loaded row
    computes them in Python (ContactScore's properties), from the same stored values."""

    def get_queryset(self) -> models.QuerySet:
        from clm.analytics.derived import expressions

        return super().get_queryset().alias(**expressions())


def _derived(name: str, doc: str) -> property:
    def get(self: ContactScore):
        from clm.analytics.derived import value

        return value(name, lambda column: getattr(self, column))

    return property(get, doc=doc)


class ContactScore(models.Model):
    """A contact's RFM, CLV, P(alive), churn risk and health as of the last refresh.

    Only what cannot be derived is stored: the model outputs, the RFM codes, segment and CLV
    decile, the purchase summary as of `as_of` and the counts behind the health parts. The
    rest (frequency, recency, T, days since the last purchase, tenure, average spend, churn
    risk, value at risk, engagement, health score) is computed on read, in SQL through the
    manager's aliases or in Python through the properties below (clm.analytics.derived).
    Model fields are NULL for contacts without purchases; the BG/NBD time unit is weeks.
    """

    # No database foreign key (Django still deletes the score with its contact): every row
    # is written by the refresh from the contact table itself, and without the key SQLite can
    # empty the table at once and PostgreSQL need not check a million rows one by one.
    contact = RowidOneToOneField("customers.Contact", on_delete=models.CASCADE,
                                 primary_key=True, related_name="score", db_constraint=False)
    as_of = models.DateField()
    purchases = models.PositiveIntegerField(default=0, help_text="Purchase days up to as_of.")
    first_purchase_on = models.DateField(null=True, blank=True)
    last_purchase_on = models.DateField(null=True, blank=True)
    monetary = models.FloatField(null=True, blank=True,
                                 help_text="Average spend of repeat purchase days (Gamma-Gamma).")
    rfm_r = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_f = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_m = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_segment = models.CharField(max_length=20, blank=True)
    historical_clv = models.FloatField(null=True, blank=True, help_text="Revenue to as_of.")
    predicted_clv = models.FloatField(null=True, blank=True)
    expected_purchases = models.FloatField(null=True, blank=True,
                                           help_text="Expected purchases in the next window.")
    p_alive = models.FloatField(null=True, blank=True)
    clv_decile = models.PositiveSmallIntegerField(null=True, blank=True,
                                                  help_text="10 = the top tenth by predicted CLV.")
    # The counts behind the health score's parts (see rfm.HEALTH_WEIGHTS); NULL = absent.
    events_30d = models.PositiveIntegerField(default=0)
    events_prev_90d = models.PositiveIntegerField(default=0, help_text="The 90 days before those.")
    nps = models.FloatField(null=True, blank=True, help_text="Average NPS answer (0-10), last year.")
    open_tickets = models.PositiveIntegerField(null=True, blank=True)
    failed_payments = models.PositiveIntegerField(null=True, blank=True,
                                                  help_text="In the 90 days to as_of.")

    objects = ScoreManager()

    # No secondary indexes: each RFM segment and CLV decile holds a tenth or so of the
    # buyers, so a filter on one reads as much through an index as by scanning, while the
    # refresh rebuilt both indexes over every row (1.7 s of 9 on PostgreSQL at 1M contacts).

    frequency = _derived("frequency", "Repeat purchase days (x).")
    recency = _derived("recency", "Weeks from first to last purchase (t_x).")
    T = _derived("T", "Weeks from first purchase to as_of (customer age).")
    days_since_last_purchase = _derived("days_since_last_purchase", "Days to as_of.")
    tenure_days = _derived("tenure_days", "Days from the first purchase to as_of.")
    average_spend = _derived("average_spend", "Average spend per purchase day.")
    churn_risk = _derived("churn_risk", "1 - P(alive).")
    value_at_risk = _derived("value_at_risk", "predicted_clv * churn_risk: worth saving now.")
    engagement = _derived("engagement", "Share of the event rate in the last 30 days, 0-1.")
    health_score = _derived("health_score", "0-100: the weighted mean of the parts present.")

    def __str__(self) -> str:
        return f"score of contact {self.contact_id}"

    @property
    def health_parts(self) -> dict:
        """Each part of the health score present for this contact (0-1) and the event counts."""
        from clm.analytics.derived import health_parts

        parts = health_parts(lambda column: getattr(self, column))
        out: dict = {k: round(v, 4) for k, v in parts.items()}
        if self.events_30d:
            out["events_30d"] = self.events_30d
        if self.events_prev_90d:
            out["events_prev_90d"] = self.events_prev_90d
        return out
