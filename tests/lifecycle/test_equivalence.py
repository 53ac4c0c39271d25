"""The incremental engine and `lifecycle_rebuild` produce exactly the same history.

Random event streams (random kinds, properties, times with ties), delivered in random batches
and random order (so late arrivals happen), with manual moves mixed in; then the history,
states, contact stages and stage.changed events are compared before and after a rebuild.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clm.core.errors import ValidationFailed
from clm.customers.models import Contact
from clm.lifecycle import engine, marks
from clm.lifecycle.models import ContactState, StageChange
from clm.lifecycle.services import stage_move
from clm.timeline.models import Event
from clm.timeline.services import events_record_bulk
from tests.factories import ContactFactory
from tests.lifecycle.conftest import T0

pytestmark = pytest.mark.django_db

STAGES = ["subscriber", "lead", "mql", "sql", "opportunity", "customer", "promoter", "churned",
          "disqualified"]

event_st = st.one_of(
    st.tuples(st.just("form.submitted"),
              st.fixed_dictionaries({"form_type": st.sampled_from(["subscribe", "demo"])})),
    st.tuples(st.just("lead.scored"), st.fixed_dictionaries({"lead_score": st.integers(0, 100)})),
    st.tuples(st.just("nps.answered"), st.fixed_dictionaries({"score": st.integers(0, 10)})),
    st.tuples(st.sampled_from(["lead.accepted", "deal.created", "order.completed", "invoice.paid",
                               "subscription.canceled", "referral.converted", "page.viewed"]),
              st.just({})),
    st.tuples(st.just("contact.created"),
              st.fixed_dictionaries({"source": st.sampled_from(["api", "ui"])})),
)
# (contact index, hour offset, ("event", kind, props) | ("move", stage))
input_st = st.tuples(
    st.integers(0, 2), st.integers(0, 24 * 36),
    st.one_of(event_st.map(lambda e: ("event", *e)),
              st.sampled_from(STAGES).map(lambda s: ("move", s, None))))


def snapshot(contact_ids: list[int]) -> dict:
    return {
        "history": list(StageChange.objects.filter(contact_id__in=contact_ids)
                        .order_by("contact_id", "seq")
                        .values_list("contact_id", "seq", "from_stage", "to_stage", "at",
                                     "exited_at", "cause_event_id", "manual_move_id",
                                     "actor_type", "actor_id", "rule_id", "reason", "life",
                                     "advance_s")),
        "states": list(ContactState.objects.filter(contact_id__in=contact_ids)
                       .exclude(stage="").order_by("contact_id")
                       .values_list("contact_id", "stage", "life", "entered_at", "seq",
                                    "anchor_at", "churn_due_at")),
        "stages": list(Contact.objects.filter(pk__in=contact_ids).order_by("pk")
                       .values_list("pk", "stage")),
        "events": sorted(Event.objects.filter(contact_id__in=contact_ids, kind="stage.changed")
                         .values_list("idempotency_key", "occurred_at", "properties"),
                         key=lambda e: e[0]),
    }


@override_settings(CLM_CHURN_AFTER_DAYS=20)
@settings(deadline=None, max_examples=50,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(inputs=st.lists(input_st, min_size=1, max_size=25), data=st.data())
def test_incremental_equals_rebuild(inputs, data, admin_user, django_capture_on_commit_callbacks):
    contacts = [ContactFactory() for _ in range(3)]
    order = data.draw(st.permutations(range(len(inputs))), label="delivery order")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(inputs) - 1)), max_size=6),
                            label="batch cuts"))
    delivered = [inputs[i] for i in order]
    batches, start = [], 0
    for cut in [*cuts, len(delivered)]:
        if cut > start:
            batches.append(delivered[start:cut])
            start = cut
    for batch in batches:
        with django_capture_on_commit_callbacks(execute=True):
            events = [Event(contact=contacts[c], kind=item[1],
                            occurred_at=T0 + timedelta(hours=h), source="test",
                            properties=item[2]) for c, h, item in batch if item[0] == "event"]
            if events:
                events_record_bulk(events)
        for c, h, item in batch:
            if item[0] == "move":
                try:
                    with django_capture_on_commit_callbacks(execute=True):
                        stage_move(contact=contacts[c], to_stage=item[1], reason="test",
                                   actor=admin_user, at=T0 + timedelta(hours=h))
                except ValidationFailed:
                    pass  # already in that stage: refused, nothing written
    ids = [c.pk for c in contacts]
    incremental = snapshot(ids)
    # The engine's advance_s (kept up as moves are appended) is the definition's.
    assert marks.recompute(contact_ids=ids) == 0
    call_command("lifecycle_rebuild", "--quiet")
    rebuilt = snapshot(ids)
    assert rebuilt == incremental
    # From nothing, in ranges of two contact ids: the insert-everything path agrees too.
    StageChange.objects.all().delete()
    ContactState.objects.all().delete()
    Event.objects.filter(kind="stage.changed").delete()
    Contact.objects.update(stage="")
    engine.rebuild_all(chunk_contacts=2)
    assert snapshot(ids) == incremental
