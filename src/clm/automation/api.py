"""Automation API under /api/v1/automation: workflows (CRUD, activate, pause), per-step
counts, enrollments per workflow (only contacts the user may see), retry and stop.

Every endpoint checks the model permission (403, nothing changed); triggers and steps are
validated by the services (422 naming the field, e.g. `steps[1].template_id`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from clm.automation import services
from clm.automation.models import Enrollment, Workflow
from clm.automation.queries import enrollment_counts, enrollments_of, step_stats, workflows_all
from clm.core.errors import NotFound, PermissionDenied, ValidationFailed
from clm.customers.queries import contacts_visible
from clm.customers.schemas import InSchema  # unknown fields and NUL text refused

router = Router(tags=["automation"])
ROUTES = [("/v1/automation", router)]

Rule = Literal["once", "every_time", "after_days"]
MAX_LIST = 500


class WorkflowIn(InSchema):
    name: str = Field(max_length=150)
    description: str = Field("", max_length=500)
    trigger: dict[str, Any]
    steps: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    enrollment_rule: Rule = "once"
    reenroll_days: int | None = None
    goal: dict[str, Any] = Field(default_factory=dict)


class WorkflowPatch(InSchema):
    name: str | None = Field(None, max_length=150)
    description: str | None = Field(None, max_length=500)
    trigger: dict[str, Any] | None = None
    steps: list[dict[str, Any]] | None = Field(None, max_length=50)
    enrollment_rule: Rule | None = None
    reenroll_days: int | None = None
    goal: dict[str, Any] | None = None


class WorkflowOut(Schema):
    id: int
    name: str
    description: str
    active: bool
    trigger: dict
    steps: list[dict]
    enrollment_rule: str
    reenroll_days: int | None
    goal: dict
    playbook: str | None
    created_at: datetime
    updated_at: datetime
    enrollments: dict[str, int] = Field(default_factory=dict,
                                        description="Enrollments by status.")


class StepStatsOut(Schema):
    number: int
    type: str
    label: str
    entered: int
    completed: int
    waiting: int
    running: int
    failed: int


class EnrollmentOut(Schema):
    id: int
    workflow_id: int
    contact_id: int
    contact_name: str
    status: str
    step: int = Field(description="1-based number of the current step.")
    wake_at: datetime | None
    waiting_for: str
    enrolled_at: datetime
    finished_at: datetime | None
    exit_reason: str
    last_error: str

    @staticmethod
    def resolve_contact_name(obj: Enrollment) -> str:
        return str(obj.contact)

    @staticmethod
    def resolve_step(obj: Enrollment) -> int:
        return obj.step_index + 1


class EnrollmentPage(Schema):
    items: list[EnrollmentOut]
    next_before: int | None


class SecretOut(Schema):
    webhook_secret: str


def require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(p) for p in perms):
        raise PermissionDenied()


def _workflow(pk: int) -> Workflow:
    workflow = Workflow.objects.filter(pk=pk).first()
    if workflow is None:
        raise NotFound()
    return workflow


def _out(workflow: Workflow, counts: dict[int, dict[str, int]] | None = None) -> dict:
    counts = counts if counts is not None else enrollment_counts([workflow.pk])
    return {**{f: getattr(workflow, f) for f in WorkflowOut.model_fields if f != "enrollments"},
            "enrollments": counts.get(workflow.pk, {})}


def _visible_enrollment(request: HttpRequest, pk: int) -> Enrollment:
    enrollment = Enrollment.objects.filter(
        pk=pk, contact__in=contacts_visible(request.user).values("pk")).first()
    if enrollment is None:
        raise NotFound()
    return enrollment


@router.get("/workflows", response=list[WorkflowOut], summary="List workflows")
def workflow_list(request: HttpRequest):
    require(request, "automation.view_workflow")
    workflows = list(workflows_all()[:MAX_LIST])
    counts = enrollment_counts([w.pk for w in workflows])
    return [_out(w, counts) for w in workflows]


@router.post("/workflows", response={201: WorkflowOut}, summary="Create a workflow (inactive)")
def workflow_create(request: HttpRequest, payload: WorkflowIn):
    require(request, "automation.add_workflow")
    workflow = services.workflow_create(data=payload.model_dump(), actor=request.user)
    return Status(201, _out(workflow))


@router.get("/workflows/{int:workflow_id}", response=WorkflowOut, summary="Get a workflow")
def workflow_get(request: HttpRequest, workflow_id: int):
    require(request, "automation.view_workflow")
    return _out(_workflow(workflow_id))


@router.patch("/workflows/{int:workflow_id}", response=WorkflowOut, summary="Change a workflow")
def workflow_update(request: HttpRequest, workflow_id: int, payload: WorkflowPatch):
    require(request, "automation.change_workflow")
    workflow = _workflow(workflow_id)
    data = {k: v for k, v in payload.model_dump(exclude_unset=True).items()
            if v is not None or k == "reenroll_days"}
    return _out(services.workflow_update(workflow=workflow, data=data, actor=request.user))


@router.delete("/workflows/{int:workflow_id}", response={204: None},
               summary="Delete a paused workflow")
def workflow_delete(request: HttpRequest, workflow_id: int):
    require(request, "automation.delete_workflow")
    services.workflow_delete(workflow=_workflow(workflow_id), actor=request.user)
    return Status(204, None)


@router.post("/workflows/{int:workflow_id}/activate", response=WorkflowOut,
             summary="Switch a workflow on")
def workflow_activate(request: HttpRequest, workflow_id: int):
    require(request, "automation.change_workflow")
    return _out(services.workflow_activate(workflow=_workflow(workflow_id), actor=request.user))


@router.post("/workflows/{int:workflow_id}/pause", response=WorkflowOut,
             summary="Switch a workflow off")
def workflow_pause(request: HttpRequest, workflow_id: int):
    require(request, "automation.change_workflow")
    return _out(services.workflow_pause(workflow=_workflow(workflow_id), actor=request.user))


@router.get("/workflows/{int:workflow_id}/secret", response=SecretOut,
            summary="The workflow's webhook signing secret")
def workflow_secret(request: HttpRequest, workflow_id: int):
    require(request, "automation.change_workflow")
    return {"webhook_secret": _workflow(workflow_id).webhook_secret}


@router.get("/workflows/{int:workflow_id}/stats", response=list[StepStatsOut],
            summary="Per-step counts: entered, completed, waiting, running, failed")
def workflow_stats(request: HttpRequest, workflow_id: int):
    require(request, "automation.view_workflow")
    return step_stats(_workflow(workflow_id))


@router.get("/workflows/{int:workflow_id}/enrollments", response=EnrollmentPage,
            summary="The workflow's enrollments of contacts you may see, newest first")
def workflow_enrollments(request: HttpRequest, workflow_id: int, status: str | None = None,
                         before: int | None = None, limit: int = Query(50, ge=1, le=200)):
    require(request, "automation.view_enrollment", "customers.view_contact")
    qs = enrollments_of(_workflow(workflow_id), contacts_visible(request.user))
    if status:
        if status not in Enrollment.Status.values:
            raise ValidationFailed(
                f"status is one of {', '.join(Enrollment.Status.values)}.", field="status")
        qs = qs.filter(status=status)
    if before:
        qs = qs.filter(pk__lt=before)
    items = list(qs[:limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_before": items[-1].pk if more else None}


@router.post("/enrollments/{int:enrollment_id}/retry", response=EnrollmentOut,
             summary="Run a failed enrollment's step again")
def enrollment_retry(request: HttpRequest, enrollment_id: int):
    require(request, "automation.change_enrollment")
    enrollment = _visible_enrollment(request, enrollment_id)
    return services.enrollment_retry(enrollment=enrollment, actor=request.user)


@router.post("/enrollments/{int:enrollment_id}/stop", response=EnrollmentOut,
             summary="End an open enrollment")
def enrollment_stop(request: HttpRequest, enrollment_id: int):
    require(request, "automation.change_enrollment")
    enrollment = _visible_enrollment(request, enrollment_id)
    return services.enrollment_stop(enrollment=enrollment, actor=request.user)
