"""Triggers, goals and steps: their JSON shapes, validation and execution.

Trigger (Workflow.trigger), one of:
    {"type": "event", "kind": "order.completed", "conditions": [...], "first_time": false}
    {"type": "stage", "stage": "lead"}                 # stage.changed with to = lead
    {"type": "segment", "segment_id": 3}               # segment.entered of that segment
    {"type": "date", "field": "properties.renewal_date", "offset_days": -30}
        # daily: contacts whose date + offset_days is today (renewal date minus 30 days)
    {"type": "schedule", "time": "09:00", "segment_id": 3}   # daily at HH:MM (TIME_ZONE)
Goal (Workflow.goal): {"kind": "stage.changed", "conditions": [{"field": "to", ...}]} or {}.

Steps (Workflow.steps), a list of:
    {"type": "send_email", "template_id": 1, "subscription_type": "email_marketing"|null}
    {"type": "wait", "days": 2, "hours": 0, "minutes": 0}
    {"type": "wait_for", "kind": "order.completed", "conditions": [...], "timeout_days": 14,
     "on_event": "next"|"end"|<step number>, "on_timeout": "next"|"end"|<step number>}
    {"type": "branch", "conditions": [contact conditions], "then": <target>, "else": <target>}
    {"type": "set_property", "field": "properties.nps_invited"|"job_title", "value": ...}
    {"type": "move_stage", "stage": "mql", "reason": "..."}
    {"type": "add_to_list", "segment_id": 4}          # a static segment
    {"type": "webhook", "url": "https://…", "timeout": 5}
    {"type": "notify", "to": "owner"|<user id>, "message": "...", "email": false}
Targets are step numbers as shown in the editor (1 = first step), and only forward: a
workflow always ends, whatever its branches.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction

from clm.automation import conditions as cond
from clm.automation import webhook
from clm.automation.models import Enrollment, Notification, StepRun, Workflow
from clm.core.errors import ValidationFailed

log = logging.getLogger(__name__)
AUTOMATION_SOURCE = "automation"
MAX_STEPS = 50
MAX_WAIT = timedelta(days=366)
TRIGGER_TYPES = ("event", "stage", "segment", "date", "schedule")
# Contact fields a set_property step may write (others belong to their own services).
SETTABLE_FIELDS = ("first_name", "last_name", "job_title", "country", "region", "city",
                   "timezone", "source", "age_band", "income_band", "phone")
# Tests inject a fake resolver / transport here: only loopback servers exist on CI.
WEBHOOK_IO: dict[str, Any] = {"resolver": None, "transport": None}


# ---------------------------------------------------------------------------------------
# Small validators
# ---------------------------------------------------------------------------------------

def _int(value: Any, field: str, *, lo: int | None = None, hi: int | None = None,
         required: bool = True) -> int | None:
    if value in (None, "") and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or \
            not re.fullmatch(r"-?\d+", str(value).strip()):
        raise ValidationFailed("Must be a whole number.", field=field)
    text = str(value).strip()
    # More digits than any id or count is out of range (and int() refuses 4300+ digits).
    number = int(text) if len(text.lstrip("-")) <= 19 else None
    if number is not None and (lo is None or number >= lo) and (hi is None or number <= hi):
        return number
    if lo is not None and hi is not None:
        message = f"Must be between {lo} and {hi}."
    elif lo is not None:
        message = f"Must be {lo} or more." if number is not None else "Out of range."
    else:
        message = f"Must be {hi} or less." if hi is not None and number is not None \
            else "Out of range."
    raise ValidationFailed(message, field=field)


def _text(value: Any, field: str, *, max_len: int, required: bool = True) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        raise ValidationFailed("Must be text.", field=field)
    if required and not text:
        raise ValidationFailed("Required.", field=field, code="required")
    if len(text) > max_len:
        raise ValidationFailed(f"At most {max_len} characters.", field=field)
    return text


def _kind(value: Any, field: str) -> str:
    kind = _text(value, field, max_len=64)
    if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", kind):
        raise ValidationFailed("An event kind looks like 'order.completed'.", field=field)
    return kind


def _target(value: Any, field: str, *, number: int, count: int, default: str) -> str | int:
    """'next', 'end' or a later step number (1-based)."""
    if value in (None, ""):
        return default
    if value in ("next", "end"):
        return value
    target = _int(value, field, lo=1, hi=count)
    if target <= number:
        raise ValidationFailed(f"Go forward only: a step after step {number}.", field=field)
    return target


def _stage(value: Any, field: str) -> str:
    from clm.lifecycle.models import Stage

    key = _text(value, field, max_len=32)
    if not Stage.objects.filter(key=key).exists():
        raise ValidationFailed(f"Unknown stage '{key}'.", field=field, code="unknown_stage")
    return key


def _segment(value: Any, field: str, *, static: bool = False) -> int:
    from clm.segments.models import Segment

    pk = _int(value, field, lo=1)
    segment = Segment.objects.filter(pk=pk).first()
    if segment is None:
        raise ValidationFailed("Unknown segment.", field=field, code="not_found")
    if static and segment.is_dynamic:
        raise ValidationFailed("Only a static list takes contacts from a workflow.",
                               field=field, code="not_static")
    return pk


def _duration(step: dict, prefix: str, field: str) -> dict[str, int]:
    parts = {unit: _int(step.get(f"{prefix}{unit}"), f"{field}.{prefix}{unit}", lo=0,
                        hi=100000, required=False) or 0
             for unit in ("days", "hours", "minutes")}
    total = timedelta(**parts)
    if total <= timedelta(0):
        raise ValidationFailed("Give a duration (days, hours or minutes).",
                               field=f"{field}.{prefix}days")
    if total > MAX_WAIT:
        raise ValidationFailed("At most 366 days.", field=f"{field}.{prefix}days")
    return {f"{prefix}{k}": v for k, v in parts.items() if v}


def duration_of(step: dict, prefix: str = "") -> timedelta:
    return timedelta(**{unit: int(step.get(f"{prefix}{unit}") or 0)
                        for unit in ("days", "hours", "minutes")})


# ---------------------------------------------------------------------------------------
# Triggers and goals
# ---------------------------------------------------------------------------------------

def validate_trigger(trigger: Any) -> tuple[dict, str]:
    """The trigger normalised, and the event kind that fires it ('' if time-based)."""
    if not isinstance(trigger, dict):
        raise ValidationFailed("A trigger is an object with a type.", field="trigger")
    kind = trigger.get("type")
    if kind not in TRIGGER_TYPES:
        raise ValidationFailed(f"Trigger type is one of {', '.join(TRIGGER_TYPES)}.",
                               field="trigger.type")
    if kind == "event":
        return ({"type": "event", "kind": _kind(trigger.get("kind"), "trigger.kind"),
                 "conditions": cond.validate_event_conditions(trigger.get("conditions"),
                                                              field="trigger.conditions"),
                 "first_time": bool(trigger.get("first_time"))},
                _kind(trigger.get("kind"), "trigger.kind"))
    if kind == "stage":
        return {"type": "stage", "stage": _stage(trigger.get("stage"), "trigger.stage")}, \
            "stage.changed"
    if kind == "segment":
        return {"type": "segment",
                "segment_id": _segment(trigger.get("segment_id"), "trigger.segment_id")}, \
            "segment.entered"
    if kind == "date":
        name = _text(trigger.get("field"), "trigger.field", max_len=80)
        if name != "date_of_birth":
            key = name.removeprefix("properties.")
            _date_property(key, "trigger.field")
            name = f"properties.{key}"
        return {"type": "date", "field": name,
                "offset_days": _int(trigger.get("offset_days", 0), "trigger.offset_days",
                                    lo=-3650, hi=3650)}, ""
    at = _text(trigger.get("time"), "trigger.time", max_len=5)
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        raise ValidationFailed("A time is HH:MM (24 hours).", field="trigger.time")
    return {"type": "schedule", "time": at,
            "segment_id": _segment(trigger.get("segment_id"), "trigger.segment_id")}, ""


def _date_property(key: str, field: str) -> None:
    from clm.customers.models import ObjectType, PropertyDefinition, PropertyType

    definition = PropertyDefinition.objects.filter(object_type=ObjectType.CONTACT, key=key).first()
    if definition is None or definition.type != PropertyType.DATE:
        raise ValidationFailed(f"'{key}' is not a date property of contacts.", field=field)


def validate_goal(goal: Any) -> dict:
    if goal in (None, "", {}):
        return {}
    if not isinstance(goal, dict):
        raise ValidationFailed("A goal is {kind, conditions}.", field="goal")
    if not goal.get("kind"):
        return {}
    return {"kind": _kind(goal.get("kind"), "goal.kind"),
            "conditions": cond.validate_event_conditions(goal.get("conditions"),
                                                         field="goal.conditions")}


# ---------------------------------------------------------------------------------------
# Steps: validation
# ---------------------------------------------------------------------------------------

def _v_send_email(step: dict, f: str, n: int, count: int) -> dict:
    from clm.engagement.models import EmailTemplate, SubscriptionType

    pk = _int(step.get("template_id"), f"{f}.template_id", lo=1)
    if not EmailTemplate.objects.filter(pk=pk).exists():
        raise ValidationFailed("Unknown email template.", field=f"{f}.template_id",
                               code="not_found")
    sub = step.get("subscription_type") or None
    if sub is not None and not SubscriptionType.objects.filter(key=str(sub)).exists():
        raise ValidationFailed("Unknown subscription type.", field=f"{f}.subscription_type",
                               code="not_found")
    return {"template_id": pk, "subscription_type": sub}


def _v_wait(step: dict, f: str, n: int, count: int) -> dict:
    return _duration(step, "", f)


def _v_wait_for(step: dict, f: str, n: int, count: int) -> dict:
    return {"kind": _kind(step.get("kind"), f"{f}.kind"),
            "conditions": cond.validate_event_conditions(step.get("conditions"),
                                                         field=f"{f}.conditions"),
            **_duration(step, "timeout_", f),
            "on_event": _target(step.get("on_event"), f"{f}.on_event", number=n, count=count,
                                default="next"),
            "on_timeout": _target(step.get("on_timeout"), f"{f}.on_timeout", number=n,
                                  count=count, default="next")}


def _v_branch(step: dict, f: str, n: int, count: int) -> dict:
    conditions = cond.validate_contact_conditions(step.get("conditions"), field=f"{f}.conditions")
    if not conditions:
        raise ValidationFailed("A branch needs at least one condition.",
                               field=f"{f}.conditions", code="required")
    return {"conditions": conditions,
            "then": _target(step.get("then"), f"{f}.then", number=n, count=count,
                            default="next"),
            "else": _target(step.get("else"), f"{f}.else", number=n, count=count,
                            default="end")}


def _v_set_property(step: dict, f: str, n: int, count: int) -> dict:
    from clm.customers.models import ObjectType
    from clm.customers.properties import validate_properties

    name = _text(step.get("field"), f"{f}.field", max_len=80)
    value = step.get("value")
    if name.startswith("properties."):
        key = name.removeprefix("properties.")
        try:
            validate_properties(ObjectType.CONTACT, {key: value}, partial=True)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, field=f"{f}.value"
                                   if exc.code != "unknown_property" else f"{f}.field") from None
    elif name not in SETTABLE_FIELDS:
        raise ValidationFailed(f"Set properties.<key> or one of {', '.join(SETTABLE_FIELDS)}.",
                               field=f"{f}.field")
    elif value is not None and not isinstance(value, str):
        raise ValidationFailed("A contact field takes text.", field=f"{f}.value")
    return {"field": name, "value": value}


def _v_move_stage(step: dict, f: str, n: int, count: int) -> dict:
    return {"stage": _stage(step.get("stage"), f"{f}.stage"),
            "reason": _text(step.get("reason"), f"{f}.reason", max_len=200, required=False)}


def _v_add_to_list(step: dict, f: str, n: int, count: int) -> dict:
    return {"segment_id": _segment(step.get("segment_id"), f"{f}.segment_id", static=True)}


def _v_webhook(step: dict, f: str, n: int, count: int) -> dict:
    url = _text(step.get("url"), f"{f}.url", max_len=500)
    try:
        webhook.check_url(url)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field=f"{f}.url", code=exc.code) from None
    return {"url": url, "timeout": _int(step.get("timeout", 5), f"{f}.timeout", lo=1, hi=10)}


def _v_notify(step: dict, f: str, n: int, count: int) -> dict:
    to = step.get("to", "owner")
    if to != "owner":
        to = _int(to, f"{f}.to", lo=1)
        if not get_user_model().objects.filter(pk=to, is_active=True).exists():
            raise ValidationFailed("Unknown user.", field=f"{f}.to", code="not_found")
    return {"to": to, "message": _text(step.get("message"), f"{f}.message", max_len=300),
            "email": bool(step.get("email"))}


# ---------------------------------------------------------------------------------------
# Steps: execution
# ---------------------------------------------------------------------------------------

@dataclass
class StepContext:
    workflow: Workflow
    enrollment: Enrollment
    contact: Any
    index: int
    step: dict
    run: StepRun
    now: datetime
    resumed: bool = False
    # Set by steps whose effect needs a follow-up after commit (the outbox sender).
    after: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        """The step's idempotency key: the same for every attempt of this step."""
        return f"wf{self.workflow.pk}:e{self.enrollment.pk}:s{self.index}"

    @property
    def count(self) -> int:
        return len(self.workflow.steps)

    def goto(self, target: str | int) -> int:
        if target == "next":
            return self.index + 1
        if target == "end":
            return self.count
        return int(target) - 1


@dataclass
class Result:
    action: str  # "next" | "wait" | "fail"
    next_index: int | None = None
    wake_at: datetime | None = None
    waiting_for: str = ""
    outcome: dict = field(default_factory=dict)
    error: str = ""


def _next(ctx: StepContext, target: str | int = "next", **outcome: Any) -> Result:
    index = ctx.goto(target)
    return Result("next", next_index=index, outcome={"next": index, **outcome})


def _x_send_email(ctx: StepContext) -> Result:
    from clm.engagement.models import EmailTemplate, SubscriptionType
    from clm.engagement.outbox import message_enqueue

    template = EmailTemplate.objects.filter(pk=ctx.step.get("template_id")).first()
    if template is None:
        return Result("fail", error="The email template no longer exists.")
    if not ctx.contact.email:
        return _next(ctx, skipped="no email address")
    sub_key = ctx.step.get("subscription_type")
    sub = SubscriptionType.objects.filter(key=sub_key).first() if sub_key else None
    # The outbox key (purpose, contact, step) is the same for every attempt of this step:
    # a resumed step finds the message it queued before instead of queueing another.
    message, created = message_enqueue(purpose=f"workflow:{ctx.workflow.pk}", contact=ctx.contact,
                                       template=template, step=ctx.key, subscription_type=sub)
    ctx.after.add("outbox")
    return _next(ctx, message_id=message.pk, created=created)


def _x_wait(ctx: StepContext) -> Result:
    return Result("wait", wake_at=ctx.now + duration_of(ctx.step),
                  outcome={"until": (ctx.now + duration_of(ctx.step)).isoformat()})


def _x_wait_for(ctx: StepContext) -> Result:
    wake = ctx.now + duration_of(ctx.step, "timeout_")
    return Result("wait", wake_at=wake, waiting_for=ctx.step["kind"],
                  outcome={"until": wake.isoformat(), "kind": ctx.step["kind"]})


def _x_branch(ctx: StepContext) -> Result:
    taken = cond.contact_holds(ctx.step.get("conditions") or [], ctx.contact)
    return _next(ctx, ctx.step.get("then", "next") if taken else ctx.step.get("else", "end"),
                 branch="then" if taken else "else")


def _x_set_property(ctx: StepContext) -> Result:
    from clm.customers.services import contact_update

    name, value = ctx.step["field"], ctx.step.get("value")
    if name.startswith("properties."):
        _contact, changes = contact_update(contact=ctx.contact,
                                           properties={name.removeprefix("properties."): value},
                                           via=AUTOMATION_SOURCE)
    else:
        _contact, changes = contact_update(contact=ctx.contact, data={name: value},
                                           via=AUTOMATION_SOURCE)
    return _next(ctx, changed=bool(changes))


def automation_actor():
    """The service account workflows move stages as (stage_move needs a permitted user).

    Active so permission checks pass; an unusable password, so nobody can sign in as it.
    """
    from django.contrib.auth.models import Permission

    user_model = get_user_model()
    user = user_model.objects.filter(username="clm-automation").first()
    if user is None:
        user = user_model(username="clm-automation", first_name="Automation", is_active=True)
        user.set_unusable_password()
        user.save()
        perm = Permission.objects.get(content_type__app_label="lifecycle", codename="move_stage")
        user.user_permissions.add(perm)
    return user


def move_reason(workflow: Workflow, index: int, reason: str = "") -> str:
    return f"Workflow #{workflow.pk}: {reason or workflow.name} (step {index + 1})"[:500]


def _x_move_stage(ctx: StepContext) -> Result:
    from clm.lifecycle.services import stage_move

    ctx.contact.refresh_from_db(fields=["stage"])
    if ctx.contact.stage == ctx.step["stage"]:
        return _next(ctx, moved=False)
    stage_move(contact=ctx.contact, to_stage=ctx.step["stage"], actor=automation_actor(),
               reason=move_reason(ctx.workflow, ctx.index, ctx.step.get("reason", "")),
               via=AUTOMATION_SOURCE)
    return _next(ctx, moved=True)


def _x_add_to_list(ctx: StepContext) -> Result:
    from clm.customers.models import Contact
    from clm.segments.models import Segment
    from clm.segments.services import static_members_add

    segment = Segment.objects.filter(pk=ctx.step.get("segment_id")).first()
    if segment is None:
        return Result("fail", error="The list no longer exists.")
    added = static_members_add(segment=segment, contacts=Contact.objects.filter(pk=ctx.contact.pk),
                               contact_ids=[ctx.contact.pk])
    return _next(ctx, added=added)


def webhook_body(ctx: StepContext, timestamp: int) -> bytes:
    c = ctx.contact
    payload = {"workflow": {"id": ctx.workflow.pk, "name": ctx.workflow.name},
               "enrollment_id": ctx.enrollment.pk, "step": ctx.index + 1,
               "delivery": ctx.key, "sent_at": timestamp,
               "contact": {"id": c.pk, "email": c.email, "first_name": c.first_name,
                           "last_name": c.last_name, "stage": c.stage}}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _x_webhook(ctx: StepContext) -> Result:
    timestamp = int(time.time())
    try:
        response = webhook.deliver(
            url=ctx.step["url"], secret=ctx.workflow.webhook_secret,
            body=webhook_body(ctx, timestamp), delivery_id=ctx.key, timestamp=timestamp,
            timeout=float(ctx.step.get("timeout", 5)), resolver=WEBHOOK_IO["resolver"],
            transport=WEBHOOK_IO["transport"])
    except webhook.WebhookRefused as exc:
        return Result("fail", error=str(exc))
    except Exception as exc:  # network and protocol errors of any kind
        return Result("fail", error=f"Webhook failed: {type(exc).__name__}: {exc}"[:500])
    if not 200 <= response.status < 300:
        return Result("fail", error=f"Webhook answered HTTP {response.status}.")
    return _next(ctx, status=response.status)


def _x_notify(ctx: StepContext) -> Result:
    from django.utils import timezone

    to = ctx.step.get("to", "owner")
    user_id = ctx.contact.owner_id if to == "owner" else to
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first() \
        if user_id else None
    if user is None:
        return _next(ctx, skipped="no user to notify")
    note, created = Notification.objects.get_or_create(
        key=ctx.key, defaults={"user": user, "workflow": ctx.workflow, "contact": ctx.contact,
                               "created_at": ctx.now,
                               "message": f"{ctx.step['message']} — {ctx.contact}"[:500]})
    if ctx.step.get("email") and user.email and note.emailed_at is None:
        # At most once: mark first (committed), then send.
        with transaction.atomic():
            marked = Notification.objects.filter(pk=note.pk, emailed_at__isnull=True) \
                .update(emailed_at=timezone.now())
        if marked:
            send_mail(f"[CLM] {ctx.workflow.name}", f"{note.message}\n\n{settings.CLM_BASE_URL}/",
                      None, [user.email], fail_silently=True)
    return _next(ctx, notification_id=note.pk, created=created)


@dataclass(frozen=True)
class StepType:
    label: str
    validate: Callable[[dict, str, int, int], dict]
    execute: Callable[[StepContext], Result]
    # External steps commit their StepRun claim before the side effect, which is not
    # rolled back by the database (email hand-off, HTTP call, staff email).
    external: bool


STEP_TYPES: dict[str, StepType] = {
    "send_email": StepType("Send email", _v_send_email, _x_send_email, True),
    "wait": StepType("Wait", _v_wait, _x_wait, False),
    "wait_for": StepType("Wait for an event (with timeout)", _v_wait_for, _x_wait_for, False),
    "branch": StepType("Branch on a condition", _v_branch, _x_branch, False),
    "set_property": StepType("Set a property", _v_set_property, _x_set_property, False),
    "move_stage": StepType("Move stage", _v_move_stage, _x_move_stage, False),
    "add_to_list": StepType("Add to a list", _v_add_to_list, _x_add_to_list, False),
    "webhook": StepType("Call a webhook", _v_webhook, _x_webhook, True),
    "notify": StepType("Notify a user", _v_notify, _x_notify, True),
}


def validate_steps(steps: Any) -> list[dict]:
    """The step list normalised; ValidationFailed names `steps[i].<field>`."""
    if steps in (None, ""):
        return []
    if not isinstance(steps, list):
        raise ValidationFailed("Steps are a list.", field="steps")
    if len(steps) > MAX_STEPS:
        raise ValidationFailed(f"At most {MAX_STEPS} steps.", field="steps")
    cleaned = []
    for i, step in enumerate(steps):
        f = f"steps[{i}]"
        if not isinstance(step, dict):
            raise ValidationFailed("Each step is an object with a type.", field=f)
        kind = step.get("type")
        if kind not in STEP_TYPES:
            raise ValidationFailed(f"Step type is one of {', '.join(STEP_TYPES)}.",
                                   field=f"{f}.type")
        body = STEP_TYPES[kind].validate(step, f, i + 1, len(steps))
        cleaned.append({"type": kind, **body})
    return cleaned
