"""Lifecycle stages and rules (data an admin edits), the stage history and the engine's state.

The engine's inputs are timeline events and manual moves (kept as their own rows so a replay
reproduces them); its outputs are StageChange rows, Contact.stage/Company.stage and one
`stage.changed` timeline event per move. ContactState is the engine's per-contact fold
state, so a new in-order event continues from it instead of replaying everything.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class StageGroup(models.TextChoices):
    PROSPECT = "prospect", "Prospect"
    CUSTOMER = "customer", "Customer"
    LOST = "lost", "Lost"


class ActorType(models.TextChoices):
    USER = "user", "User"
    RULE = "rule", "Rule"
    API = "api", "API"
    SYSTEM = "system", "System"


class Stage(models.Model):
    """One lifecycle stage. `key` is stable (stored on contacts and history rows)."""

    key = models.SlugField(max_length=32, unique=True)
    label = models.CharField(max_length=64)
    order = models.PositiveSmallIntegerField(help_text="Position along the life; higher is later.")
    group = models.CharField(max_length=10, choices=StageGroup.choices)

    class Meta:
        ordering = ["order", "key"]
        permissions = [("move_stage", "Can move contacts between lifecycle stages by hand")]

    def __str__(self) -> str:
        return self.label


class Rule(models.Model):
    """When an event of `event_kind` matches the conditions, move the contact to `target_stage`.

    conditions / contact_conditions: lists of {field, op, value} (see clm.lifecycle.rules).
    Rules are tried by ascending `priority`; the first one that may move the contact wins.
    Forward-only rules never move to a stage of lower order; loop rules may.
    """

    name = models.CharField(max_length=120)
    event_kind = models.CharField(max_length=64, db_index=True)
    conditions = models.JSONField(default=list, blank=True,
                                  help_text="Conditions on the event's properties.")
    contact_conditions = models.JSONField(default=list, blank=True,
                                          help_text="Conditions on the contact's fields.")
    target_stage = models.ForeignKey(Stage, to_field="key", db_column="target_stage",
                                     on_delete=models.PROTECT, related_name="rules")
    priority = models.IntegerField(default=100, help_text="Lower runs first.")
    forward_only = models.BooleanField(default=True)
    is_loop = models.BooleanField(default=False,
                                  help_text="Loop rules may move backwards (churn, win-back).")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return self.name


class ManualMove(models.Model):
    """A move made by a person (UI) or a client (API): an input of the replay, like an event."""

    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="manual_stage_moves")
    to_stage = models.CharField(max_length=32)
    at = models.DateTimeField()
    reason = models.CharField(max_length=500)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices,
                                  default=ActorType.USER)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["contact", "at"], name="manualmove_contact_at")]

    def __str__(self) -> str:
        return f"{self.contact_id} → {self.to_stage}"


class StageChange(models.Model):
    """One move in a contact's history: entered `to_stage` at `at`, left it at `exited_at`."""

    # No index of its own: the unique (contact, seq) constraint's index serves contact lookups.
    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="stage_changes", db_index=False)
    seq = models.PositiveIntegerField(help_text="1, 2, … per contact in time order.")
    from_stage = models.CharField(max_length=32, blank=True)
    to_stage = models.CharField(max_length=32)
    at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    cause_event = models.ForeignKey("timeline.Event", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+",
                                    db_constraint=False)
    manual_move = models.ForeignKey(ManualMove, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+",
                                    db_constraint=False)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+", db_constraint=False)
    reason = models.CharField(max_length=500, blank=True)
    life = models.PositiveSmallIntegerField(default=1)
    # Derived by the writers of the history (clm.lifecycle.marks) for the funnel report.
    advance_s = models.IntegerField(
        null=True, blank=True,
        help_text="Seconds (rounded up) until this contact, in this life, next entered a "
                  "later funnel stage; empty if it has not (or this is not a funnel stage).")

    class Meta:
        ordering = ["contact", "seq"]
        constraints = [models.UniqueConstraint(fields=["contact", "seq"],
                                               name="stagechange_contact_seq")]
        indexes = [
            # Covering for the funnel (entries per stage and period, converted or not), the
            # velocity and stage counts; contact_id for the visibility and source filters.
            models.Index(fields=["to_stage", "at", "advance_s", "contact_id", "exited_at"],
                         name="stagechange_funnel"),
            # Covering for the flows: (from, to) groups in index order, counted per period.
            models.Index(fields=["from_stage", "to_stage", "at"], name="stagechange_flow"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.from_stage or '∅'} → {self.to_stage}"

    @property
    def duration(self):
        """Time spent in `to_stage` on this visit (None while still in it)."""
        return self.exited_at - self.at if self.exited_at else None


class ContactState(models.Model):
    """The engine's fold state for one contact (where the last applied input left it)."""

    contact = models.OneToOneField("customers.Contact", on_delete=models.CASCADE,
                                   primary_key=True, related_name="lifecycle_state")
    stage = models.CharField(max_length=32, blank=True)
    life = models.PositiveSmallIntegerField(default=1)
    entered_at = models.DateTimeField(null=True, blank=True)
    seq = models.PositiveIntegerField(default=0, help_text="Number of history rows.")
    # Start of the inactivity clock (last purchase, or entry into the customer group).
    anchor_at = models.DateTimeField(null=True, blank=True)
    # When inactivity churn falls due if nothing happens (indexed for the scheduled job).
    churn_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # High-water mark: sort key (time, kind rank, id) of the last input applied.
    hwm_at = models.DateTimeField(null=True, blank=True)
    hwm_rank = models.PositiveSmallIntegerField(default=0)
    hwm_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.stage}"


class ReportState(models.Model):
    """What a derived report structure was last computed with, and when.

    name "advance": the funnel ranking (stage keys, comma-separated) StageChange.advance_s was
    last recomputed with for the whole history; name "funnel_by_source": the ranking and time
    of the FunnelSourceRollup's last refresh.
    """

    name = models.CharField(max_length=40, primary_key=True)
    ranking = models.TextField(blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.refreshed_at}"


class FunnelSourceRollup(models.Model):
    """Funnel entries per contact source, stage, UTC day of entry and days until converted.

    `advance_days` = StageChange.advance_s in days rounded up (null: never, or later than the
    longest window), so an entry converted within W days ⇔ advance_days <= W. Rebuilt by a
    scheduled job (clm.lifecycle.rollup); the report says how old it is.
    """

    source = models.CharField(max_length=50, blank=True)
    stage = models.CharField(max_length=32)
    day = models.DateField()
    advance_days = models.IntegerField(null=True, blank=True)
    entries = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["day", "stage", "source", "advance_days", "entries"],
                                name="funnelrollup_day")]

    def __str__(self) -> str:
        return f"{self.source}/{self.stage}/{self.day}: {self.entries}"
