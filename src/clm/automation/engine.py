"""The workflow engine: enroll contacts, run their steps, resume waits, end at goals.

Who runs an enrollment: whoever claims it. An active enrollment is claimable when its
`wake_at` has passed; the claim is a conditional UPDATE that pushes `wake_at` one lease
ahead (CLM_AUTOMATION_LEASE_SECONDS), so two workers never drive the same enrollment and a
worker that dies is replaced after the lease by the every-minute tick.

How a step runs (`_run_step`): a StepRun row unique on (enrollment, step index,
generation) is inserted first. Internal steps (wait, branch, set property, move stage, add
to list) then do their effect and finish in the same transaction: all or nothing. External
steps (send email, webhook, notify) commit the claim first, do their effect, then finish in
a second transaction; a worker killed in between leaves a "running" StepRun that the next
claimant runs again, and each effect is idempotent on the step key
`wf<workflow>:e<enrollment>:s<index>` (the outbox's dedupe key for email, the
notification's key, the webhook's X-CLM-Delivery header).

Events (`events_process`) are matched set-based: the active workflows are loaded once, the
events are filtered by the kinds any trigger, goal or wait-for step listens to, and the open
enrollments of the contacts concerned are read in one query.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from clm.automation import conditions as cond
from clm.automation.models import Enrollment, EnrollmentRule, StepRun, Workflow
from clm.automation.steps import AUTOMATION_SOURCE, STEP_TYPES, Result, StepContext
from clm.core.errors import DomainError
from clm.customers.models import Contact
from clm.timeline.models import Event

log = logging.getLogger(__name__)
Status = Enrollment.Status
OPEN = [Status.ACTIVE, Status.WAITING]
TICK_BATCH = 2000
DATE_CATCH_UP_DAYS = 7
LOOP_GUARD = timedelta(hours=24)


def lease() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "CLM_AUTOMATION_LEASE_SECONDS", 300)))


@dataclass
class Stats:
    enrolled: int = 0
    steps: int = 0
    resumed: int = 0
    exited: int = 0
    failed: int = 0
    after: set[str] = field(default_factory=set)

    def add(self, other: Stats) -> None:
        self.enrolled += other.enrolled
        self.steps += other.steps
        self.resumed += other.resumed
        self.exited += other.exited
        self.failed += other.failed
        self.after |= other.after

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


# ---------------------------------------------------------------------------------------
# Enrolling
# ---------------------------------------------------------------------------------------

def enroll(workflow: Workflow, candidates: list[tuple[int, str, int | None]],
           now: datetime) -> list[int]:
    """Enroll (contact id, entry key, trigger event id) candidates under the workflow's
    enrollment rule; returns the ids of the enrollments created now, ready to run.

    Idempotent: an entry key already used for the contact enrolls nobody (the unique
    constraint decides between concurrent workers).
    """
    rule = workflow.enrollment_rule
    wanted: dict[int, tuple[str, int | None]] = {}
    for contact_id, key, event_id in candidates:
        if rule == EnrollmentRule.ONCE:
            key = "once"
        wanted.setdefault(contact_id, (key, event_id))  # first trigger per contact per batch
    if not wanted:
        return []
    if rule == EnrollmentRule.AFTER_DAYS:
        since = now - timedelta(days=workflow.reenroll_days or 0)
        recent = set(Enrollment.objects.filter(workflow=workflow, contact_id__in=list(wanted),
                                               enrolled_at__gt=since)
                     .values_list("contact_id", flat=True))
        wanted = {c: v for c, v in wanted.items() if c not in recent}
    existing = set(Enrollment.objects.filter(
        workflow=workflow, contact_id__in=list(wanted),
        entry_key__in={k for k, _ in wanted.values()}).values_list("contact_id", "entry_key"))
    rows = [Enrollment(workflow=workflow, contact_id=c, entry_key=key, trigger_event_id=ev,
                       status=Status.ACTIVE, wake_at=now, enrolled_at=now)
            for c, (key, ev) in wanted.items() if (c, key) not in existing]
    if not rows:
        return []
    with transaction.atomic():
        Enrollment.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    keys = {(r.contact_id, r.entry_key) for r in rows}
    return [pk for pk, c, k in Enrollment.objects.filter(
        workflow=workflow, contact_id__in=[r.contact_id for r in rows], enrolled_at=now,
        entry_key__in={r.entry_key for r in rows}).values_list("pk", "contact_id", "entry_key")
        if (c, k) in keys]


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------

def enrollment_claim(pk: int, now: datetime) -> bool:
    """Take the right to drive an active, due enrollment for one lease."""
    return Enrollment.objects.filter(
        Q(wake_at__isnull=True) | Q(wake_at__lte=now), pk=pk, status=Status.ACTIVE,
        workflow__active=True,
    ).update(wake_at=now + lease()) == 1


def enrollments_run(ids: list[int], *, now: datetime | None = None) -> Stats:
    """Claim and drive each enrollment (those someone else holds are skipped)."""
    stats = Stats()
    for pk in ids:
        at = now or timezone.now()
        if enrollment_claim(pk, at):
            stats.add(drive(pk))
    return stats


def drive(pk: int) -> Stats:
    """Run the claimed enrollment's steps until it waits, ends, fails or loses its claim.

    The row is read once; every later change goes through conditional UPDATEs on
    (status, step index, generation), so a goal reached meanwhile stops the loop.
    """
    stats = Stats()
    enrollment = Enrollment.objects.select_related("workflow", "contact").filter(pk=pk).first()
    for _ in range(200):  # gotos only go forward, so this never binds; a backstop
        if enrollment is None or enrollment.status != Status.ACTIVE:
            break
        workflow = enrollment.workflow
        if not Workflow.objects.filter(pk=workflow.pk, active=True).exists():
            # Paused: hand the enrollment back at once, so it goes on when switched on again.
            Enrollment.objects.filter(pk=pk, status=Status.ACTIVE).update(wake_at=timezone.now())
            break
        if enrollment.step_index >= len(workflow.steps):
            _complete(enrollment, timezone.now())
            break
        result = _run_step(enrollment, stats)
        if result is None or result.action != "next" or result.next_index is None:
            break
        enrollment.step_index = result.next_index
    _after_commit(stats.after)
    return stats


def _complete(enrollment: Enrollment, now: datetime) -> None:
    Enrollment.objects.filter(pk=enrollment.pk, status=Status.ACTIVE).update(
        status=Status.COMPLETED, finished_at=now, wake_at=None)


def _claim_step(enrollment: Enrollment, index: int, step_type: str,
                now: datetime) -> tuple[StepRun | None, bool]:
    """The step's StepRun, inserted now, or the one a dead worker left running (resumed)."""
    try:
        with transaction.atomic():
            return StepRun.objects.create(
                enrollment=enrollment, workflow_id=enrollment.workflow_id, step_index=index,
                generation=enrollment.generation, step_type=step_type, started_at=now), False
    except IntegrityError:
        run = StepRun.objects.get(enrollment=enrollment, step_index=index,
                                  generation=enrollment.generation)
        if run.status != StepRun.Status.RUNNING:
            return run, False
        StepRun.objects.filter(pk=run.pk).update(attempts=run.attempts + 1)
        return run, True


def _run_step(enrollment: Enrollment, stats: Stats) -> Result | None:
    workflow, index = enrollment.workflow, enrollment.step_index
    step = workflow.steps[index]
    kind = STEP_TYPES.get(step.get("type"))
    now = timezone.now()
    if kind is None:
        _fail(enrollment, None, f"Unknown step type {step.get('type')!r}.", now)
        stats.failed += 1
        return None
    if kind.external:
        run, resumed = _claim_step(enrollment, index, step["type"], now)
        result = _settled(run, resumed)
        if result is None:
            result = _execute(enrollment, run, step, now, resumed, stats)
        return finish_step(enrollment, run, result, stats)
    with transaction.atomic():
        run, resumed = _claim_step(enrollment, index, step["type"], now)
        result = _settled(run, resumed)
        if result is None:
            result = _execute(enrollment, run, step, now, resumed, stats)
        return finish_step(enrollment, run, result, stats)


def _settled(run: StepRun, resumed: bool) -> Result | None:
    """The result of a step whose StepRun already finished (an advance that was lost)."""
    if resumed or run.status == StepRun.Status.RUNNING:
        return None
    if run.status == StepRun.Status.DONE and "next" in run.outcome:
        return Result("next", next_index=int(run.outcome["next"]), outcome=run.outcome)
    if run.status == StepRun.Status.FAILED:
        return Result("fail", error=run.error or "failed")
    return None


def _execute(enrollment: Enrollment, run: StepRun, step: dict, now: datetime, resumed: bool,
             stats: Stats) -> Result:
    ctx = StepContext(workflow=enrollment.workflow, enrollment=enrollment,
                      contact=enrollment.contact, index=enrollment.step_index, step=step,
                      run=run, now=now, resumed=resumed)
    try:
        with transaction.atomic():
            result = STEP_TYPES[step["type"]].execute(ctx)
    except DomainError as exc:
        result = Result("fail", error=f"{exc.message}" + (f" ({exc.field})" if exc.field else ""))
    except Exception as exc:
        log.exception("Workflow %s step %s failed", enrollment.workflow_id, run.step_index)
        result = Result("fail", error=f"{type(exc).__name__}: {exc}"[:1000])
    stats.after |= ctx.after
    stats.steps += 1
    return result


def finish_step(enrollment: Enrollment, run: StepRun, result: Result,
                stats: Stats) -> Result | None:
    """Record the step's result and move the enrollment on, atomically; None when the
    enrollment changed under us (a goal ended it), so the caller stops."""
    now = timezone.now()
    with transaction.atomic():
        mine = Enrollment.objects.filter(pk=enrollment.pk, status=Status.ACTIVE,
                                         step_index=run.step_index,
                                         generation=run.generation)
        if result.action == "fail":
            StepRun.objects.filter(pk=run.pk).update(status=StepRun.Status.FAILED,
                                                     finished_at=now, error=result.error)
            mine.update(status=Status.FAILED, finished_at=now, wake_at=None,
                        last_error=result.error)
            stats.failed += 1
            return None
        if result.action == "wait":
            StepRun.objects.filter(pk=run.pk).update(status=StepRun.Status.WAITING,
                                                     outcome=result.outcome)
            mine.update(status=Status.WAITING, wake_at=result.wake_at,
                        waiting_for=result.waiting_for, waiting_since=now)
            return result
        StepRun.objects.filter(pk=run.pk).update(status=StepRun.Status.DONE, finished_at=now,
                                                 outcome=result.outcome)
        steps = len(enrollment.workflow.steps)
        if result.next_index is not None and result.next_index >= steps:
            moved = mine.update(step_index=steps, status=Status.COMPLETED, finished_at=now,
                                wake_at=None)
            return None if not moved else Result("done")
        moved = mine.update(step_index=result.next_index, wake_at=now + lease())
        return result if moved else None


def _fail(enrollment: Enrollment, run: StepRun | None, error: str, now: datetime) -> None:
    Enrollment.objects.filter(pk=enrollment.pk, status=Status.ACTIVE).update(
        status=Status.FAILED, finished_at=now, wake_at=None, last_error=error)


def _after_commit(after: set[str]) -> None:
    if "outbox" in after:
        transaction.on_commit(_kick_outbox)


def _kick_outbox() -> None:
    from clm.engagement.tasks import outbox_send_due

    outbox_send_due.enqueue()


# ---------------------------------------------------------------------------------------
# Waits
# ---------------------------------------------------------------------------------------

def wait_resume(pk: int, *, via: str, now: datetime, event_id: int | None = None) -> Stats:
    """End the wait of a waiting enrollment (via "timeout" or "event") and drive it on.

    Only one of a timer and an event wins: both update WHERE status = waiting.
    """
    enrollment = Enrollment.objects.select_related("workflow").filter(
        pk=pk, status=Status.WAITING).first()
    if enrollment is None or not enrollment.workflow.active:
        return Stats()
    steps = enrollment.workflow.steps
    index = enrollment.step_index
    step = steps[index] if index < len(steps) else {}
    if via == "timeout":
        target = step.get("on_timeout", "next") if step.get("type") == "wait_for" else "next"
    else:
        target = step.get("on_event", "next")
    next_index = index + 1 if target == "next" else len(steps) if target == "end" \
        else int(target) - 1
    with transaction.atomic():
        mine = Enrollment.objects.filter(pk=pk, status=Status.WAITING, step_index=index,
                                         generation=enrollment.generation)
        if via == "timeout":
            mine = mine.filter(wake_at__lte=now)
        done = next_index >= len(steps)
        moved = mine.update(
            status=Status.COMPLETED if done else Status.ACTIVE,
            step_index=min(next_index, len(steps)), waiting_for="", waiting_since=None,
            wake_at=None if done else now + lease(), finished_at=now if done else None)
        if not moved:
            return Stats()
        outcome = {"via": via, "next": next_index}
        if event_id is not None:
            outcome["event_id"] = event_id
        StepRun.objects.filter(enrollment_id=pk, step_index=index,
                               generation=enrollment.generation).update(
            status=StepRun.Status.DONE, finished_at=now, outcome=outcome)
    stats = Stats(resumed=1)
    if not done:
        stats.add(drive(pk))
    return stats


# ---------------------------------------------------------------------------------------
# Events: triggers, goals, waits
# ---------------------------------------------------------------------------------------

@dataclass
class _Compiled:
    workflow: Workflow
    trigger: dict
    trigger_conditions: list
    goal_kind: str
    goal_conditions: list
    # wait_for steps: step index -> (kind, compiled conditions)
    waits: dict[int, tuple[str, list]]


def _compile(workflows: list[Workflow]) -> list[_Compiled]:
    out = []
    for wf in workflows:
        goal = wf.goal or {}
        waits = {i: (s["kind"], cond.compile_conditions(s.get("conditions")))
                 for i, s in enumerate(wf.steps or []) if s.get("type") == "wait_for"}
        out.append(_Compiled(wf, wf.trigger or {},
                             cond.compile_conditions((wf.trigger or {}).get("conditions")),
                             goal.get("kind", ""), cond.compile_conditions(goal.get("conditions")),
                             waits))
    return out


def _caused_by(workflow: Workflow, kind: str, props: dict, source: str) -> bool:
    """Whether the event is this workflow's own doing (it must not re-trigger it)."""
    if kind == "stage.changed":
        return str(props.get("reason") or "").startswith(f"Workflow #{workflow.pk}:")
    return source == AUTOMATION_SOURCE


def _automated(kind: str, props: dict) -> bool:
    """Whether a stage move was made by some workflow (it may trigger another one)."""
    return kind == "stage.changed" and str(props.get("reason") or "").startswith("Workflow #")


def _loop_guard(workflow: Workflow, hits: list[tuple], now: datetime) -> list[tuple]:
    """Drop hits caused by another workflow for contacts this workflow enrolled in the last
    LOOP_GUARD: two workflows moving a contact back and forth stop after one round."""
    automated = {h[1] for h in hits if h[3]}
    if not automated:
        return hits
    recent = set(Enrollment.objects.filter(workflow=workflow, contact_id__in=automated,
                                           enrolled_at__gt=now - LOOP_GUARD)
                 .values_list("contact_id", flat=True))
    return [h for h in hits if not (h[3] and h[1] in recent)]


def _trigger_matches(c: _Compiled, kind: str, props: dict, source: str) -> bool:
    t = c.trigger
    if kind != c.workflow.trigger_kind or _caused_by(c.workflow, kind, props, source):
        return False
    if t.get("type") == "event":
        return cond.holds(c.trigger_conditions, props)
    if t.get("type") == "stage":
        return props.get("to") == t.get("stage")
    if t.get("type") == "segment":
        return str(props.get("segment_id")) == str(t.get("segment_id"))
    return False


def _first_times(kind: str, hits: list[tuple]) -> set[int]:
    """Event ids among hits (id, contact_id, occurred_at) that are the contact's first
    event of the kind (earliest occurred_at, then lowest id)."""
    earliest: dict[int, int] = {}
    for cid, pk in (Event.objects.filter(contact_id__in={h[1] for h in hits}, kind=kind)
                    .order_by("contact_id", "occurred_at", "id")
                    .values_list("contact_id", "id")):
        earliest.setdefault(cid, pk)
    return {h[0] for h in hits if earliest.get(h[1]) == h[0]}


def events_process(event_ids: list[int]) -> Stats:
    """Match committed events against active workflows: goals end enrollments, wait-for
    steps resume, triggers enroll. Safe to run twice (entry keys and conditional updates)."""
    stats = Stats()
    workflows = _compile(list(Workflow.objects.filter(active=True)))
    if not workflows or not event_ids:
        return stats
    kinds: set[str] = set()
    for c in workflows:
        kinds |= {c.workflow.trigger_kind, c.goal_kind, *(k for k, _ in c.waits.values())}
    kinds.discard("")
    if not kinds:
        return stats
    for start in range(0, len(event_ids), 1000):
        chunk = event_ids[start:start + 1000]
        events = list(Event.objects.filter(pk__in=chunk, kind__in=kinds)
                      .order_by("occurred_at", "id")
                      .values_list("id", "contact_id", "kind", "properties", "source",
                                   "occurred_at", "recorded_at"))
        if events:
            stats.add(_process_events(workflows, events))
    return stats


def _process_events(workflows: list[_Compiled], events: list[tuple]) -> Stats:
    stats = Stats()
    now = timezone.now()
    by_id = {c.workflow.pk: c for c in workflows}
    listening = {c.workflow.pk for c in workflows
                 if c.goal_kind or c.waits}
    open_by_contact: dict[int, list[dict]] = defaultdict(list)
    if listening:
        for row in Enrollment.objects.filter(
                workflow_id__in=listening, status__in=OPEN,
                contact_id__in={e[1] for e in events}).values(
                "id", "workflow_id", "contact_id", "status", "step_index", "waiting_for",
                "waiting_since", "enrolled_at"):
            open_by_contact[row["contact_id"]].append(row)
    # Goals and waits first: an event that reaches a goal ends the enrollment before any
    # step it would resume runs.
    for pk, contact_id, kind, props, _source, _at, recorded_at in events:
        props = props if isinstance(props, dict) else {}
        for row in open_by_contact.get(contact_id, []):
            c = by_id[row["workflow_id"]]
            if row.get("closed") or recorded_at < row["enrolled_at"]:
                continue
            if c.goal_kind == kind and cond.holds(c.goal_conditions, props):
                if Enrollment.objects.filter(pk=row["id"], status__in=OPEN).update(
                        status=Status.EXITED, finished_at=now, wake_at=None,
                        exit_reason=f"goal reached: {kind} (event {pk})"):
                    stats.exited += 1
                row["closed"] = True
                continue
            wait = c.waits.get(row["step_index"])
            if row["status"] == Status.WAITING and wait and wait[0] == kind \
                    and row["waiting_for"] == kind and recorded_at >= row["waiting_since"] \
                    and cond.holds(wait[1], props):
                row["closed"] = True
                stats.add(wait_resume(row["id"], via="event", now=now, event_id=pk))
    # Triggers.
    hits: dict[int, list[tuple]] = defaultdict(list)
    for pk, contact_id, kind, props, source, at, _recorded in events:
        props = props if isinstance(props, dict) else {}
        for c in workflows:
            if _trigger_matches(c, kind, props, source):
                hits[c.workflow.pk].append((pk, contact_id, at, _automated(kind, props)))
    for wf_id, wf_hits in hits.items():
        c = by_id[wf_id]
        if c.trigger.get("first_time"):
            firsts = _first_times(c.workflow.trigger_kind, wf_hits)
            wf_hits = [h for h in wf_hits if h[0] in firsts]
        wf_hits = _loop_guard(c.workflow, wf_hits, now)
        ids = enroll(c.workflow, [(cid, f"e{pk}", pk) for pk, cid, _at, _auto in wf_hits], now)
        stats.enrolled += len(ids)
        stats.add(enrollments_run(ids))
    return stats


# ---------------------------------------------------------------------------------------
# The every-minute tick: due waits, stalled enrollments, date and schedule triggers
# ---------------------------------------------------------------------------------------

def _local_today(now: datetime) -> date:
    return timezone.localtime(now).date()


def _claim_day(workflow: Workflow, today: date) -> date | None:
    """Mark today as run for a date/schedule trigger; returns the previous run date (or
    today minus one if never), None if another scheduler already ran it today."""
    previous = workflow.trigger_ran_on
    if previous is not None and previous >= today:
        return None
    match = Q(trigger_ran_on__isnull=True) if previous is None else Q(trigger_ran_on=previous)
    if not Workflow.objects.filter(match, pk=workflow.pk).update(trigger_ran_on=today):
        return None
    return previous or today - timedelta(days=1)


def date_trigger_run(workflow: Workflow, now: datetime) -> Stats:
    """Enroll the contacts whose date field + offset_days fell on a day since the last run
    (catching up at most DATE_CATCH_UP_DAYS days); the entry key is the date's value."""
    today = _local_today(now)
    previous = _claim_day(workflow, today)
    if previous is None:
        return Stats()
    start = max(previous + timedelta(days=1), today - timedelta(days=DATE_CATCH_UP_DAYS - 1))
    offset = int(workflow.trigger.get("offset_days", 0))
    # Fires on day D for the contacts whose date is D - offset (offset -30: 30 days before).
    targets = [start + timedelta(days=i) - timedelta(days=offset)
               for i in range((today - start).days + 1)]
    name = workflow.trigger["field"]
    if name.startswith("properties."):
        q = Q(**{f"{name.replace('.', '__', 1)}__in": [d.isoformat() for d in targets]})
        rows = Contact.objects.filter(q).values_list("pk", name.replace(".", "__", 1))
    else:
        rows = Contact.objects.filter(**{f"{name}__in": targets}).values_list("pk", name)
    candidates = [(pk, f"d{value}"[:100], None) for pk, value in rows.iterator()]
    ids = enroll(workflow, candidates, now)
    stats = Stats(enrolled=len(ids))
    stats.add(enrollments_run(ids[:TICK_BATCH]))  # the rest are due: later ticks run them
    return stats


def schedule_trigger_run(workflow: Workflow, now: datetime) -> Stats:
    """At the trigger's local time each day, enroll the segment's members once."""
    from clm.segments.models import Segment
    from clm.segments.queries import segment_contact_ids

    local = timezone.localtime(now)
    hour, minute = (int(x) for x in workflow.trigger["time"].split(":"))
    if local.time() < time(hour, minute):
        return Stats()
    today = local.date()
    if _claim_day(workflow, today) is None:
        return Stats()
    segment = Segment.objects.filter(pk=workflow.trigger.get("segment_id")).first()
    if segment is None:
        return Stats()
    key = f"s{today.isoformat()}"
    ids = enroll(workflow, [(pk, key, None) for pk in
                            segment_contact_ids(segment, now=now).iterator()], now)
    stats = Stats(enrolled=len(ids))
    stats.add(enrollments_run(ids[:TICK_BATCH]))
    return stats


def tick(*, now: datetime | None = None) -> Stats:
    """The scheduled job: resume due waits, retake stalled enrollments, run time triggers."""
    now = now or timezone.now()
    stats = Stats()
    for workflow in Workflow.objects.filter(active=True, trigger__type__in=["date", "schedule"]):
        runner = date_trigger_run if workflow.trigger_type == "date" else schedule_trigger_run
        stats.add(runner(workflow, now))
    for pk in list(Enrollment.objects.filter(status=Status.WAITING, wake_at__lte=now,
                                             workflow__active=True)
                   .order_by("wake_at").values_list("pk", flat=True)[:TICK_BATCH]):
        stats.add(wait_resume(pk, via="timeout", now=now))
    due = list(Enrollment.objects.filter(status=Status.ACTIVE, wake_at__lte=now,
                                         workflow__active=True)
               .order_by("wake_at").values_list("pk", flat=True)[:TICK_BATCH])
    stats.add(enrollments_run(due, now=now))
    return stats

