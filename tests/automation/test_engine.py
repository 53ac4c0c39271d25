"""The workflow engine end to end: triggers, steps, waits, goals, enrollment rules, crashes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from clm.automation import engine
from clm.automation.models import Enrollment, Notification, StepRun
from clm.automation.queries import step_stats
from clm.engagement.models import OutboundMessage
from clm.engagement.outbox import outbox_send_due
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
Status = Enrollment.Status


def set_nick(value="vip"):
    return {"type": "set_property", "field": "properties.nickname", "value": value}


def only(workflow) -> Enrollment:
    return Enrollment.objects.get(workflow=workflow)


# --- triggers -----------------------------------------------------------------------------

def test_event_trigger_with_conditions_sends_one_email(make_workflow, template, contact, emit):
    wf = make_workflow({"type": "event", "kind": "order.completed",
                        "conditions": [{"field": "amount", "op": "gte", "value": 50}]},
                       [{"type": "send_email", "template_id": template.pk}])
    emit(contact, "order.completed", amount="20.00")
    assert not Enrollment.objects.exists()
    emit(contact, "order.completed", amount="80.00")
    e = only(wf)
    assert e.status == Status.COMPLETED
    msg = OutboundMessage.objects.get()
    assert msg.step == f"wf{wf.pk}:e{e.pk}:s0"
    outbox_send_due()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [contact.email]


def test_first_time_trigger_only_on_first_order(make_workflow, nickname, contact, emit):
    wf = make_workflow({"type": "event", "kind": "order.completed", "first_time": True},
                       [set_nick()], enrollment_rule="every_time")
    emit(contact, "order.completed")
    emit(contact, "order.completed")
    assert Enrollment.objects.filter(workflow=wf).count() == 1


def test_stage_trigger_and_move_stage_step(make_workflow, nickname, contact, admin_user, emit,
                                           django_capture_on_commit_callbacks):
    from clm.lifecycle.services import stage_move

    wf = make_workflow({"type": "stage", "stage": "customer"},
                       [{"type": "move_stage", "stage": "promoter", "reason": "VIP"}])
    with django_capture_on_commit_callbacks(execute=True):
        stage_move(contact=contact, to_stage="lead", reason="t", actor=admin_user)
    assert not Enrollment.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        stage_move(contact=contact, to_stage="customer", reason="t", actor=admin_user)
    contact.refresh_from_db()
    assert contact.stage == "promoter"
    assert only(wf).status == Status.COMPLETED
    from clm.lifecycle.models import StageChange

    last = StageChange.objects.filter(contact=contact).order_by("-seq").first()
    assert last.reason.startswith(f"Workflow #{wf.pk}:")


def test_own_stage_move_does_not_retrigger(make_workflow, contact, admin_user,
                                           django_capture_on_commit_callbacks):
    from clm.lifecycle.services import stage_move

    # customer -> (workflow) lead; a workflow on "lead" that moves to lead is not re-fired.
    wf = make_workflow({"type": "stage", "stage": "lead"},
                       [{"type": "move_stage", "stage": "customer"}],
                       enrollment_rule="every_time")
    wf2 = make_workflow({"type": "stage", "stage": "customer"},
                        [{"type": "move_stage", "stage": "lead"}], enrollment_rule="every_time")
    with django_capture_on_commit_callbacks(execute=True):
        stage_move(contact=contact, to_stage="lead", reason="t", actor=admin_user)
    # lead -> wf moves to customer -> wf2 moves to lead -> wf would fire again: the loop guard
    # stops a workflow re-enrolling, within a day, a contact another workflow moved.
    assert Enrollment.objects.filter(workflow=wf).count() == 1
    assert Enrollment.objects.filter(workflow=wf2).count() == 1
    contact.refresh_from_db()
    assert contact.stage == "lead"


def test_segment_entered_trigger(make_workflow, nickname, contact, emit):
    from clm.segments.services import segment_create

    seg = segment_create(data={"name": "Germans", "kind": "static"})
    wf = make_workflow({"type": "segment", "segment_id": seg.pk}, [set_nick()])
    emit(contact, "segment.entered", segment_id=seg.pk + 1)
    assert not Enrollment.objects.exists()
    emit(contact, "segment.entered", segment_id=seg.pk)
    contact.refresh_from_db()
    assert contact.properties["nickname"] == "vip" and only(wf).status == Status.COMPLETED


def test_date_trigger_fires_30_days_before_renewal(make_workflow, nickname):
    from clm.customers.services import property_definition_create

    property_definition_create(object_type="contact", key="renewal_date", label="Renewal",
                               type="date")
    today = timezone.localdate()
    due = ContactFactory(properties={"renewal_date": (today + timedelta(days=30)).isoformat()})
    later = ContactFactory(properties={"renewal_date": (today + timedelta(days=31)).isoformat()})
    wf = make_workflow({"type": "date", "field": "properties.renewal_date", "offset_days": -30},
                       [set_nick()], enrollment_rule="every_time")
    engine.tick()
    assert list(Enrollment.objects.filter(workflow=wf).values_list("contact_id", flat=True)) \
        == [due.pk]
    engine.tick()  # the day has run: nothing more
    assert Enrollment.objects.filter(workflow=wf).count() == 1
    engine.tick(now=timezone.now() + timedelta(days=1))
    assert set(Enrollment.objects.filter(workflow=wf).values_list("contact_id", flat=True)) \
        == {due.pk, later.pk}


def test_schedule_trigger_enrolls_segment_daily(make_workflow, nickname):
    from clm.customers.models import Contact
    from clm.segments.services import segment_create, static_members_add

    a, b = ContactFactory(), ContactFactory()
    seg = segment_create(data={"name": "List", "kind": "static"})
    static_members_add(segment=seg, contacts=Contact.objects.all(), contact_ids=[a.pk])
    wf = make_workflow({"type": "schedule", "time": "09:00", "segment_id": seg.pk}, [set_nick()],
                       enrollment_rule="every_time")
    local = timezone.localtime()
    before = local.replace(hour=8, minute=59)
    after = local.replace(hour=9, minute=1)
    engine.tick(now=before)
    assert not Enrollment.objects.exists()
    engine.tick(now=after)
    engine.tick(now=after + timedelta(minutes=5))
    assert list(Enrollment.objects.values_list("contact_id", flat=True)) == [a.pk]
    assert b.pk not in Enrollment.objects.values_list("contact_id", flat=True)
    engine.tick(now=after + timedelta(days=1))
    assert Enrollment.objects.filter(workflow=wf, contact=a).count() == 2


def test_events_from_automation_do_not_trigger(make_workflow, nickname, contact, emit):
    make_workflow({"type": "event", "kind": "contact.updated"}, [set_nick("x")],
                  enrollment_rule="every_time")
    emit(contact, "contact.updated", source="automation")
    assert not Enrollment.objects.exists()
    emit(contact, "contact.updated")  # a person's change: enrolls; its own update does not loop
    assert Enrollment.objects.count() == 1


def test_paused_workflow_does_nothing(make_workflow, nickname, contact, emit):
    make_workflow({"type": "event", "kind": "x.happened"}, [set_nick()], active=False)
    emit(contact, "x.happened")
    assert not Enrollment.objects.exists()


# --- steps ---------------------------------------------------------------------------------

def test_branch_on_contact_fields_and_properties(make_workflow, nickname, emit):
    steps = [{"type": "branch", "conditions": [{"field": "country", "op": "eq", "value": "DE"}],
              "then": 2, "else": 3},
             set_nick("german"), set_nick("other")]
    wf = make_workflow({"type": "event", "kind": "x.happened"}, steps)
    de, fr = ContactFactory(country="DE"), ContactFactory(country="FR")
    emit(de, "x.happened")
    emit(fr, "x.happened")
    de.refresh_from_db()
    fr.refresh_from_db()
    # then -> step 2 sets german and goes on to step 3 (sets other); else jumps to step 3.
    assert de.properties["nickname"] == "other"
    runs = dict(StepRun.objects.filter(enrollment__contact=de).values_list("step_index",
                                                                           "outcome"))
    assert runs[0]["branch"] == "then" and set(runs) == {0, 1, 2}
    assert set(StepRun.objects.filter(enrollment__contact=fr)
               .values_list("step_index", flat=True)) == {0, 2}
    assert fr.properties["nickname"] == "other"
    stats = {s.number: s for s in step_stats(wf)}
    assert (stats[2].entered, stats[2].completed, stats[3].entered) == (1, 1, 2)


def test_branch_on_score_and_tags(make_workflow, nickname, emit):
    from clm.analytics.models import ContactScore

    c = ContactFactory()
    ContactScore.objects.create(contact=c, as_of=timezone.localdate(), p_alive=0.8)  # health 80
    make_workflow({"type": "event", "kind": "x.happened"},
                  [{"type": "branch", "conditions": [
                      {"field": "score.health_score", "op": "gte", "value": 70}],
                    "then": "next", "else": "end"}, set_nick("healthy")])
    emit(c, "x.happened")
    c.refresh_from_db()
    assert c.properties["nickname"] == "healthy"


def test_set_contact_field_records_audit(make_workflow, contact, emit):
    make_workflow({"type": "event", "kind": "x.happened"},
                  [{"type": "set_property", "field": "job_title", "value": "Champion"}])
    emit(contact, "x.happened")
    contact.refresh_from_db()
    assert contact.job_title == "Champion"
    from clm.timeline.models import Event

    assert Event.objects.filter(contact=contact, kind="contact.updated",
                                source="automation").exists()


def test_add_to_static_list(make_workflow, contact, emit):
    from clm.segments.models import SegmentMembership
    from clm.segments.services import segment_create

    seg = segment_create(data={"name": "Fans", "kind": "static"})
    make_workflow({"type": "event", "kind": "x.happened"},
                  [{"type": "add_to_list", "segment_id": seg.pk}], enrollment_rule="every_time")
    emit(contact, "x.happened")
    emit(contact, "x.happened")
    assert SegmentMembership.objects.filter(segment=seg, contact=contact).count() == 1


def test_notify_owner_in_app_and_by_email(make_workflow, make_user, emit):
    owner = make_user("sales", username="olga")
    c = ContactFactory(owner=owner, first_name="Ann", last_name="Lee")
    make_workflow({"type": "event", "kind": "x.happened"},
                  [{"type": "notify", "to": "owner", "message": "Call them", "email": True}])
    emit(c, "x.happened")
    note = Notification.objects.get()
    assert note.user == owner and "Call them" in note.message and "Ann Lee" in note.message
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [owner.email]


def test_wait_duration_then_continue(make_workflow, nickname, contact, emit):
    wf = make_workflow({"type": "event", "kind": "x.happened"},
                       [{"type": "wait", "days": 2}, set_nick()])
    emit(contact, "x.happened")
    e = only(wf)
    assert e.status == Status.WAITING and e.step_index == 0
    engine.tick(now=timezone.now() + timedelta(days=1))
    assert only(wf).status == Status.WAITING
    assert {s.number: s.waiting for s in step_stats(wf)}[1] == 1
    engine.tick(now=timezone.now() + timedelta(days=2, minutes=1))
    contact.refresh_from_db()
    assert only(wf).status == Status.COMPLETED and contact.properties["nickname"] == "vip"


@pytest.fixture
def winback(make_workflow, nickname):
    return make_workflow({"type": "event", "kind": "x.happened"}, [
        {"type": "wait_for", "kind": "order.completed", "timeout_days": 14,
         "conditions": [{"field": "amount", "op": "gt", "value": 0}],
         "on_event": 3, "on_timeout": "next"},
        set_nick("no order"), set_nick("bought")])


def test_wait_for_event_takes_event_branch(winback, contact, emit):
    emit(contact, "x.happened")
    emit(contact, "order.completed", amount=0)  # condition fails: still waiting
    assert only(winback).status == Status.WAITING
    emit(contact, "order.completed", amount=5)
    contact.refresh_from_db()
    assert contact.properties["nickname"] == "bought"
    assert only(winback).status == Status.COMPLETED
    run = StepRun.objects.get(enrollment__workflow=winback, step_index=0)
    assert run.outcome["via"] == "event"


def test_wait_for_timeout_takes_timeout_branch(winback, contact, emit):
    emit(contact, "x.happened")
    engine.tick(now=timezone.now() + timedelta(days=15))
    contact.refresh_from_db()
    assert contact.properties["nickname"] == "bought"  # step 2 then falls through to 3
    assert StepRun.objects.get(enrollment__workflow=winback, step_index=0).outcome["via"] \
        == "timeout"
    # A late order no longer changes anything.
    emit(contact, "order.completed", amount=5)
    assert only(winback).status == Status.COMPLETED


def test_goal_ends_enrollment_early(make_workflow, template, contact, emit):
    wf = make_workflow({"type": "event", "kind": "x.happened"},
                       [{"type": "wait", "days": 3},
                        {"type": "send_email", "template_id": template.pk}],
                       goal={"kind": "stage.changed",
                             "conditions": [{"field": "to", "op": "eq", "value": "mql"}]})
    emit(contact, "x.happened")
    emit(contact, "stage.changed", to="sql")
    assert only(wf).status == Status.WAITING
    emit(contact, "stage.changed", to="mql")
    e = only(wf)
    assert e.status == Status.EXITED and "goal" in e.exit_reason
    engine.tick(now=timezone.now() + timedelta(days=4))
    assert not OutboundMessage.objects.exists()


# --- enrollment rules ---------------------------------------------------------------------

def test_enroll_once(make_workflow, nickname, contact, emit):
    wf = make_workflow({"type": "event", "kind": "x.happened"}, [set_nick()])
    emit(contact, "x.happened")
    emit(contact, "x.happened")
    assert Enrollment.objects.filter(workflow=wf).count() == 1


def test_enroll_every_time(make_workflow, nickname, contact, emit):
    wf = make_workflow({"type": "event", "kind": "x.happened"}, [set_nick()],
                       enrollment_rule="every_time")
    emit(contact, "x.happened")
    emit(contact, "x.happened")
    assert Enrollment.objects.filter(workflow=wf, status=Status.COMPLETED).count() == 2


def test_enroll_again_after_n_days(make_workflow, nickname, contact, emit):
    wf = make_workflow({"type": "event", "kind": "x.happened"}, [set_nick()],
                       enrollment_rule="after_days", reenroll_days=30)
    emit(contact, "x.happened")
    emit(contact, "x.happened")
    assert Enrollment.objects.filter(workflow=wf).count() == 1
    Enrollment.objects.update(enrolled_at=timezone.now() - timedelta(days=31))
    emit(contact, "x.happened")
    assert Enrollment.objects.filter(workflow=wf).count() == 2


def test_processing_the_same_events_twice_enrolls_once(make_workflow, nickname, contact, emit):
    wf = make_workflow({"type": "event", "kind": "x.happened"}, [set_nick()],
                       enrollment_rule="every_time")
    event = emit(contact, "x.happened")
    engine.events_process([event.pk])
    assert Enrollment.objects.filter(workflow=wf).count() == 1


# --- crash and resume ---------------------------------------------------------------------

class Killed(BaseException):
    """Stands for the worker being killed: nothing after it runs."""


def test_crash_after_email_enqueued_resumes_without_second_email(
        make_workflow, template, contact, emit, monkeypatch):
    wf = make_workflow({"type": "event", "kind": "x.happened"},
                       [{"type": "send_email", "template_id": template.pk}])
    real_finish = engine.finish_step
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise Killed
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(engine, "finish_step", crash_once)
    emit(contact, "x.happened")  # the task dies with the "worker" (its result: failed)
    e = only(wf)
    run = StepRun.objects.get(enrollment=e)
    assert (e.status, run.status) == (Status.ACTIVE, StepRun.Status.RUNNING)
    assert OutboundMessage.objects.count() == 1  # the email was queued before the "kill"
    # Within the lease nobody takes it over; after it, the tick resumes the step.
    engine.tick()
    assert StepRun.objects.get(pk=run.pk).status == StepRun.Status.RUNNING
    engine.tick(now=timezone.now() + engine.lease() + timedelta(seconds=1))
    run.refresh_from_db()
    assert (only(wf).status, run.status, run.attempts) == (Status.COMPLETED, "done", 2)
    assert run.outcome["created"] is False
    assert OutboundMessage.objects.count() == 1
    outbox_send_due()
    assert len(mail.outbox) == 1


def test_internal_step_crash_rolls_back_and_resumes(make_workflow, nickname, contact, emit,
                                                    monkeypatch):
    wf = make_workflow({"type": "event", "kind": "x.happened"}, [set_nick(), set_nick("b")])
    real_finish = engine.finish_step
    calls = {"n": 0}

    def crash_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(engine, "finish_step", crash_second)
    emit(contact, "x.happened")  # the task dies with the "worker" (its result: failed)
    e = only(wf)
    assert e.step_index == 1 and not StepRun.objects.filter(step_index=1).exists()
    engine.tick(now=timezone.now() + engine.lease() + timedelta(seconds=1))
    contact.refresh_from_db()
    assert only(wf).status == Status.COMPLETED and contact.properties["nickname"] == "b"


def test_failed_step_then_retry(make_workflow, contact, emit, fake_web):
    from clm.automation.services import enrollment_retry

    fake_web.status = 500
    wf = make_workflow({"type": "event", "kind": "x.happened"},
                       [{"type": "webhook", "url": "https://hooks.example.com/in"}])
    emit(contact, "x.happened")
    e = only(wf)
    assert e.status == Status.FAILED and "HTTP 500" in e.last_error
    fake_web.status = 204
    enrollment_retry(enrollment=e)
    engine.tick()
    e.refresh_from_db()
    assert e.status == Status.COMPLETED and e.generation == 1
    assert [r.status for r in StepRun.objects.filter(enrollment=e)] == ["failed", "done"]
    assert len(fake_web.requests) == 2
    assert {s.number: (s.entered, s.completed, s.failed) for s in step_stats(wf)}[1] == (2, 1, 1)
