"""Reads of the lifecycle: stages, rules, a contact's history and time in each stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from clm.lifecycle.models import ContactState, Rule, Stage, StageChange


def stages_ordered() -> QuerySet[Stage]:
    return Stage.objects.order_by("order", "key")


def rules_ordered() -> QuerySet[Rule]:
    return Rule.objects.select_related("target_stage").order_by("priority", "id")


def contact_history(contact) -> QuerySet[StageChange]:
    """A contact's moves, oldest first, with the user and rule (no N+1)."""
    return (StageChange.objects.filter(contact=contact)
            .select_related("actor", "rule").order_by("seq"))


def contact_life(contact) -> int:
    state = ContactState.objects.filter(contact=contact).values_list("life", flat=True).first()
    return state or 1


@dataclass
class StageSummary:
    """What the history tells about one stage of one contact."""

    stage: str
    visits: int
    first_entered: datetime
    last_exited: datetime | None
    latest_time_in: timedelta
    cumulative_time_in: timedelta
    current: bool


def contact_stage_summary(contact, *, now: datetime | None = None) -> list[StageSummary]:
    """Per stage the contact has been in: first entered, last exited, latest and total time.

    A visit still open counts up to `now`.
    """
    now = now or timezone.now()
    summaries: dict[str, StageSummary] = {}
    for row in StageChange.objects.filter(contact=contact).order_by("seq") \
            .values("to_stage", "at", "exited_at"):
        end = row["exited_at"] or now
        spent = max(end - row["at"], timedelta(0))
        summary = summaries.get(row["to_stage"])
        if summary is None:
            summary = summaries[row["to_stage"]] = StageSummary(
                stage=row["to_stage"], visits=0, first_entered=row["at"], last_exited=None,
                latest_time_in=timedelta(0), cumulative_time_in=timedelta(0), current=False)
        summary.visits += 1
        summary.latest_time_in = spent
        summary.cumulative_time_in += spent
        summary.current = row["exited_at"] is None
        if row["exited_at"] is not None:
            summary.last_exited = row["exited_at"]
    return list(summaries.values())
