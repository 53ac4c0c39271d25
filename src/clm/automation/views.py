"""Staff UI of automation: workflow list, editor (trigger + steps), detail with per-step
counts, activate/pause, playbook installation, and the user's notifications.

The editor is a server-rendered form: the trigger has its own fields; each step has a type
and a JSON object of its settings (validated by the services, errors shown at the step).
Add / remove / move buttons re-render the form without saving.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from clm.automation import services
from clm.automation.models import EnrollmentRule, Workflow
from clm.automation.playbooks import PLAYBOOKS, playbooks_install
from clm.automation.queries import (
    enrollment_counts,
    enrollments_of,
    notifications_for,
    step_stats,
    workflows_all,
)
from clm.automation.steps import STEP_TYPES, TRIGGER_TYPES
from clm.core.errors import DomainError
from clm.customers.queries import contacts_visible

STEP_EXAMPLES: dict[str, dict] = {
    "send_email": {"template_id": 1, "subscription_type": None},
    "wait": {"days": 1},
    "wait_for": {"kind": "order.completed", "conditions": [], "timeout_days": 14,
                 "on_event": "end", "on_timeout": "next"},
    "branch": {"conditions": [{"field": "country", "op": "eq", "value": "DE"}],
               "then": "next", "else": "end"},
    "set_property": {"field": "properties.key", "value": "x"},
    "move_stage": {"stage": "mql", "reason": ""},
    "add_to_list": {"segment_id": 1},
    "webhook": {"url": "https://example.com/hook", "timeout": 5},
    "notify": {"to": "owner", "message": "Follow up", "email": False},
}
TRIGGER_KEYS = {"event": ("kind", "conditions", "first_time"), "stage": ("stage",),
                "segment": ("segment_id",), "date": ("field", "offset_days"),
                "schedule": ("time", "segment_id")}


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


def _workflow(pk: int) -> Workflow:
    workflow = Workflow.objects.filter(pk=pk).first()
    if workflow is None:
        raise Http404
    return workflow


def trigger_summary(trigger: dict) -> str:
    kind = trigger.get("type")
    if kind == "event":
        extra = " (first time)" if trigger.get("first_time") else ""
        n = len(trigger.get("conditions") or [])
        return f"event {trigger.get('kind')}{extra}" + (f", {n} condition(s)" if n else "")
    if kind == "stage":
        return f"stage entered: {trigger.get('stage')}"
    if kind == "segment":
        return f"segment entered: #{trigger.get('segment_id')}"
    if kind == "date":
        return f"date: {trigger.get('field')} {int(trigger.get('offset_days', 0)):+d} days"
    if kind == "schedule":
        return f"daily at {trigger.get('time')} for segment #{trigger.get('segment_id')}"
    return "—"


@login_required
def workflow_list(request: HttpRequest) -> HttpResponse:
    _require(request, "automation.view_workflow")
    workflows = list(workflows_all())
    counts = enrollment_counts([w.pk for w in workflows])
    rows = [{"w": w, "trigger": trigger_summary(w.trigger), "counts": counts.get(w.pk, {})}
            for w in workflows]
    installed = set(Workflow.objects.exclude(playbook=None).values_list("playbook", flat=True))
    return render(request, "automation/workflow_list.html", {
        "rows": rows, "can_add": request.user.has_perm("automation.add_workflow"),
        "can_change": request.user.has_perm("automation.change_workflow"),
        "missing_playbooks": [p for p in PLAYBOOKS if p.key not in installed]})


# --- the editor ---------------------------------------------------------------------------

def _json_field(raw: str, default: Any) -> tuple[Any, str | None]:
    raw = (raw or "").strip()
    if not raw:
        return default, None
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return default, f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."


def _int_or_text(raw: str) -> Any:
    """A whole number as int; anything else (or a number too long for any field) as text,
    which the services refuse with a message naming the field."""
    raw = (raw or "").strip()
    return int(raw) if re.fullmatch(r"-?[0-9]{1,18}", raw) else (raw or None)


def _small_index(raw: str | None) -> int | None:
    """A form's step count or step index (ASCII digits, bounded), else None."""
    raw = (raw or "").strip()
    return int(raw) if re.fullmatch(r"[0-9]{1,4}", raw) else None


def _state_from_workflow(workflow: Workflow | None) -> dict:
    trigger = workflow.trigger if workflow else {"type": "event"}
    goal = workflow.goal if workflow else {}
    return {
        "name": workflow.name if workflow else "",
        "description": workflow.description if workflow else "",
        "enrollment_rule": workflow.enrollment_rule if workflow else EnrollmentRule.ONCE,
        "reenroll_days": workflow.reenroll_days if workflow and workflow.reenroll_days else "",
        "trigger_type": trigger.get("type", "event"),
        "t": {k: ("" if v is None else v) for k, v in trigger.items() if k != "conditions"},
        "trigger_conditions": json.dumps(trigger.get("conditions") or []),
        "goal_kind": goal.get("kind", ""),
        "goal_conditions": json.dumps(goal.get("conditions") or []),
        "steps": [{"type": s["type"],
                   "config": json.dumps({k: v for k, v in s.items() if k != "type"}, indent=1)}
                  for s in (workflow.steps if workflow else [])],
    }


def _state_from_post(post) -> dict:
    count = _small_index(post.get("step_count")) or 0
    steps = [{"type": post.get(f"step-{i}-type", ""), "config": post.get(f"step-{i}-config", "")}
             for i in range(min(count, 60))]
    return {
        "name": post.get("name", ""), "description": post.get("description", ""),
        "enrollment_rule": post.get("enrollment_rule", "once"),
        "reenroll_days": post.get("reenroll_days", ""),
        "trigger_type": post.get("trigger_type", "event"),
        "t": {k.removeprefix("t_"): v for k, v in post.items() if k.startswith("t_")},
        "trigger_conditions": post.get("trigger_conditions", ""),
        "goal_kind": post.get("goal_kind", ""), "goal_conditions": post.get("goal_conditions", ""),
        "steps": steps,
    }


def _apply_op(state: dict, op: str, add_type: str) -> None:
    steps = state["steps"]
    if op == "add" and add_type in STEP_TYPES:
        steps.append({"type": add_type, "config": json.dumps(STEP_EXAMPLES[add_type], indent=1)})
        return
    name, _, index = op.partition("-")
    i = _small_index(index)
    if i is None or i >= len(steps):
        return
    if name == "remove":
        steps.pop(i)
    elif name == "up" and i > 0:
        steps[i - 1], steps[i] = steps[i], steps[i - 1]
    elif name == "down" and i < len(steps) - 1:
        steps[i + 1], steps[i] = steps[i], steps[i + 1]


def _data_from_state(state: dict, errors: dict) -> dict:
    """The service's input from the form, or field errors for JSON that does not parse."""
    kind = state["trigger_type"]
    trigger: dict[str, Any] = {"type": kind}
    for key in TRIGGER_KEYS.get(kind, ()):
        if key == "conditions":
            trigger[key], err = _json_field(state["trigger_conditions"], [])
            if err:
                errors["trigger"] = err
        elif key == "first_time":
            trigger[key] = state["t"].get("first_time") in ("on", "true", True)
        elif key in ("segment_id", "offset_days"):
            trigger[key] = _int_or_text(str(state["t"].get(key, "")))
        else:
            trigger[key] = str(state["t"].get(key, "")).strip()
    steps = []
    for i, step in enumerate(state["steps"]):
        config, err = _json_field(step["config"], {})
        if err or not isinstance(config, dict):
            errors[f"step-{i}"] = err or "Settings are a JSON object: {\"key\": value, …}."
            config = {}
        steps.append({**config, "type": step["type"]})
    goal_conditions, err = _json_field(state["goal_conditions"], [])
    if err:
        errors["goal"] = err
    reenroll = _int_or_text(str(state["reenroll_days"]))
    return {"name": state["name"], "description": state["description"], "trigger": trigger,
            "steps": steps, "enrollment_rule": state["enrollment_rule"],
            "reenroll_days": reenroll if state["enrollment_rule"] == "after_days" else None,
            "goal": {"kind": state["goal_kind"].strip(), "conditions": goal_conditions}
            if state["goal_kind"].strip() else {}}


def _error_slot(field: str | None) -> str:
    """Where a service error is shown: a step, the trigger, the goal or a top field."""
    field = field or ""
    if m := re.match(r"steps\[(\d+)\]", field):
        return f"step-{m.group(1)}"
    head = re.split(r"[.\[]", field)[0]
    return head if head in ("trigger", "goal", "name", "description", "enrollment_rule",
                            "reenroll_days", "steps") else "form"


def _choices() -> dict:
    from clm.lifecycle.models import Stage
    from clm.segments.models import Segment

    return {"stages": list(Stage.objects.order_by("order").values_list("key", "label")),
            "segments": list(Segment.objects.order_by("name").values_list("pk", "name", "kind")),
            "trigger_types": TRIGGER_TYPES, "rules": EnrollmentRule.choices,
            "step_types": [(k, t.label) for k, t in STEP_TYPES.items()],
            "examples": {k: json.dumps(v) for k, v in STEP_EXAMPLES.items()}}


@login_required
def workflow_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    workflow = None
    if pk is not None:
        _require(request, "automation.change_workflow")
        workflow = _workflow(pk)
    else:
        _require(request, "automation.add_workflow")
    errors: dict[str, str] = {}
    if request.method == "POST":
        state = _state_from_post(request.POST)
        op = request.POST.get("op", "save")
        if op != "save":
            _apply_op(state, op, request.POST.get("add_type", ""))
        else:
            data = _data_from_state(state, errors)
            if not errors:
                try:
                    if workflow is None:
                        workflow = services.workflow_create(data=data, actor=request.user)
                    else:
                        services.workflow_update(workflow=workflow, data=data, actor=request.user)
                    messages.success(request, f"Workflow “{workflow.name}” saved.")
                    return redirect("automation:workflow_detail", pk=workflow.pk)
                except DomainError as exc:
                    where = _error_slot(exc.field)
                    errors[where] = f"{exc.message}" + (f" ({exc.field})" if exc.field else "")
    else:
        state = _state_from_workflow(workflow)
    for i, step in enumerate(state["steps"]):
        step["index"], step["number"], step["error"] = i, i + 1, errors.get(f"step-{i}")
    return render(request, "automation/workflow_edit.html", {
        "workflow": workflow, "s": state, "errors": errors, **_choices()},
        status=422 if errors else 200)


# --- detail, switching on and off -----------------------------------------------------------

@login_required
def workflow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request, "automation.view_workflow")
    workflow = _workflow(pk)
    enrollments = []
    if request.user.has_perm("automation.view_enrollment"):
        enrollments = list(enrollments_of(workflow, contacts_visible(request.user))[:50])
    return render(request, "automation/workflow_detail.html", {
        "workflow": workflow, "trigger": trigger_summary(workflow.trigger),
        "stats": step_stats(workflow), "enrollments": enrollments,
        "counts": enrollment_counts([workflow.pk]).get(workflow.pk, {}),
        "can_change": request.user.has_perm("automation.change_workflow"),
        "can_delete": request.user.has_perm("automation.delete_workflow")})


@require_POST
@login_required
def workflow_toggle(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    _require(request, "automation.change_workflow")
    workflow = _workflow(pk)
    try:
        if action == "activate":
            services.workflow_activate(workflow=workflow, actor=request.user)
            messages.success(request, f"“{workflow.name}” is on.")
        else:
            services.workflow_pause(workflow=workflow, actor=request.user)
            messages.success(request, f"“{workflow.name}” is paused.")
    except DomainError as exc:
        messages.error(request, f"Cannot switch it on: {exc.message}"
                       + (f" ({exc.field})" if exc.field else ""))
    return redirect("automation:workflow_detail", pk=workflow.pk)


@require_POST
@login_required
def workflow_delete(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request, "automation.delete_workflow")
    workflow = _workflow(pk)
    try:
        services.workflow_delete(workflow=workflow, actor=request.user)
        messages.success(request, f"Workflow “{workflow.name}” deleted.")
        return redirect("automation:workflow_list")
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("automation:workflow_detail", pk=workflow.pk)


@require_POST
@login_required
def playbooks_install_view(request: HttpRequest) -> HttpResponse:
    _require(request, "automation.add_workflow")
    try:
        created = playbooks_install(actor=request.user)
        messages.success(request, f"Installed {len(created)} playbook(s), switched off.")
    except DomainError as exc:
        messages.error(request, f"Could not install the playbooks: {exc.message}")
    return redirect("automation:workflow_list")


# --- notifications ---------------------------------------------------------------------------

@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        services.notifications_mark_read(user=request.user)
        return redirect("automation:notifications")
    return render(request, "automation/notifications.html",
                  {"notifications": list(notifications_for(request.user)[:200])})
