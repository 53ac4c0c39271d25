"""Segments: saved audience definitions, their stored membership and behaviour counters.

A dynamic segment's members are whatever its definition matches now (compiled to SQL by
clm.segments.compiler); its SegmentMembership rows are the membership as of the last
periodic evaluation, kept only to detect who entered and who left. A static segment (a list)
has no definition to evaluate: its SegmentMembership rows are its members.

BehaviourCounter holds, per (event kind, window in days), how many such events each contact
had in the window ending at the counter's refresh time. The evaluation job refreshes the
pairs that active segments use, so counts need not scan the event table per contact. Each
counter row also carries a copy, taken at the same refresh, of the contact's country and
scores (P(alive), CLV decile, health): an AND group that reads counters filters on those
copies inside the counter index instead of looking up a contact and its score per counter
row (see clm.segments.compiler).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Segment(models.Model):
    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic"
        STATIC = "static", "Static list"

    name = models.CharField(max_length=120, unique=True)
    description = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DYNAMIC)
    # {"op": "and"|"or", "conditions": [...]} (clm.segments.compiler); {} for static lists.
    definition = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True,
                                 help_text="Evaluated periodically (segment.entered/left events).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    member_count = models.PositiveIntegerField(
        default=0, help_text="Members at the last evaluation (dynamic) or now (static).")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_dynamic(self) -> bool:
        return self.kind == self.Kind.DYNAMIC


class SegmentMembership(models.Model):
    """A contact in a static list, or in a dynamic segment as of its last evaluation."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="segment_memberships")
    added_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "contact"],
                                               name="segment_member_unique")]
        indexes = [models.Index(fields=["contact", "segment"], name="segment_member_contact")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} in segment {self.segment_id}"


class BehaviourCounter(models.Model):
    """Events of `kind` a contact had in the `days` days up to the window's refresh.

    Only contacts with at least one such event have a row. `country` and the score columns
    are copies made by the same refresh (scores from analytics' ContactScore; NULL when the
    contact has none), so they are as old as the count.
    """

    window = models.ForeignKey("BehaviourWindow", on_delete=models.CASCADE,
                               related_name="counters")
    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="+")
    count = models.PositiveIntegerField()
    country = models.CharField(max_length=2, blank=True, default="")
    p_alive = models.FloatField(null=True, blank=True)
    clv_decile = models.PositiveSmallIntegerField(null=True, blank=True)
    health_score = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["window", "contact"],
                                               name="behaviour_counter_unique")]
        # Covering: "at least N, in these countries, P(alive) ≥ x" reads contact ids from the
        # index alone, testing the copied columns in each index entry (no row lookups).
        indexes = [models.Index(fields=["window", "count", "country", "p_alive", "clv_decile",
                                        "health_score", "contact"],
                                name="behaviour_counter_snapshot")]

    def __str__(self) -> str:
        return f"contact {self.contact_id}: {self.count}"


class BehaviourWindow(models.Model):
    """One (event kind, days) pair whose per-contact counters are kept in BehaviourCounter."""

    kind = models.CharField(max_length=64)
    days = models.PositiveIntegerField()
    refreshed_at = models.DateTimeField(null=True, blank=True)
    contacts = models.PositiveIntegerField(default=0)
    # The analytics RefreshRun whose scores the counters copied (the latest finished one when
    # the copy started; NULL if none had finished). A later finished run makes the copies
    # stale: score conditions then read ContactScore itself.
    scores_refresh_id = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "days"],
                                               name="behaviour_window_unique")]

    def __str__(self) -> str:
        return f"{self.kind} in {self.days} days"
