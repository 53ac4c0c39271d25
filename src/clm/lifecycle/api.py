"""Lifecycle API under /api/v1/lifecycle: stages, rules, a contact's history, manual moves.

Every endpoint checks the model permission (403, nothing changed) and, for a contact, its
visibility to the user (404, nothing changed), then calls a service or a query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import ConfigDict, Field

from clm.core.errors import NotFound, PermissionDenied
from clm.core.types import Id, SmallInt
from clm.customers.queries import contacts_visible
from clm.lifecycle import services
from clm.lifecycle.models import Rule, Stage
from clm.lifecycle.queries import (
    contact_history,
    contact_life,
    contact_stage_summary,
    rules_ordered,
    stages_ordered,
)

router = Router(tags=["lifecycle"])
ROUTES = [("/v1/lifecycle", router)]

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"]


class InSchema(Schema):
    model_config = ConfigDict(extra="forbid")


class StageOut(Schema):
    key: str
    label: str
    order: int
    group: str


class StageIn(InSchema):
    key: str = Field(max_length=32)
    label: str = Field(max_length=64)
    order: int
    group: Literal["prospect", "customer", "lost"]


class StagePatch(InSchema):
    label: str | None = Field(None, max_length=64)
    order: int | None = None
    group: Literal["prospect", "customer", "lost"] | None = None


class Condition(InSchema):
    field: str = Field(max_length=200)
    op: Op = "eq"
    value: Any = None


class RuleOut(Schema):
    id: int
    name: str
    event_kind: str
    conditions: list[dict]
    contact_conditions: list[dict]
    target_stage: str
    priority: int
    forward_only: bool
    is_loop: bool
    active: bool

    @staticmethod
    def resolve_target_stage(obj: Rule) -> str:
        return obj.target_stage_id


class RuleIn(InSchema):
    name: str = Field(max_length=120)
    event_kind: str = Field(max_length=64)
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    contact_conditions: list[Condition] = Field(default_factory=list, max_length=20)
    target_stage: str = Field(max_length=32)
    priority: SmallInt = 100
    forward_only: bool = True
    is_loop: bool = False
    active: bool = True


class RulePatch(InSchema):
    name: str | None = Field(None, max_length=120)
    event_kind: str | None = Field(None, max_length=64)
    conditions: list[Condition] | None = Field(None, max_length=20)
    contact_conditions: list[Condition] | None = Field(None, max_length=20)
    target_stage: str | None = Field(None, max_length=32)
    priority: SmallInt | None = None
    forward_only: bool | None = None
    is_loop: bool | None = None
    active: bool | None = None


class StageChangeOut(Schema):
    seq: int
    from_stage: str
    to_stage: str
    at: datetime
    exited_at: datetime | None
    seconds_in_stage: float | None
    life: int
    actor_type: str
    actor: str | None
    rule_id: int | None
    cause_event_id: int | None
    reason: str

    @staticmethod
    def resolve_seconds_in_stage(obj) -> float | None:
        return obj.duration.total_seconds() if obj.exited_at else None

    @staticmethod
    def resolve_actor(obj) -> str | None:
        return obj.actor.get_username() if obj.actor_id else None


class StageSummaryOut(Schema):
    stage: str
    visits: int
    first_entered: datetime
    last_exited: datetime | None
    latest_seconds_in: float
    cumulative_seconds_in: float
    current: bool


class HistoryOut(Schema):
    contact_id: int
    stage: str
    life: int
    items: list[StageChangeOut]
    stages: list[StageSummaryOut]


class MoveIn(InSchema):
    to_stage: str = Field(max_length=32)
    reason: str = Field(max_length=500)


class BulkMoveIn(MoveIn):
    contact_ids: list[Id] = Field(min_length=1, max_length=500)


class BulkMoveOut(Schema):
    moved: int


def require(request: HttpRequest, *perms: str) -> None:
    if not all(request.user.has_perm(p) for p in perms):
        raise PermissionDenied()


def _stage(key: str) -> Stage:
    stage = Stage.objects.filter(key=key).first()
    if stage is None:
        raise NotFound()
    return stage


def _rule(rule_id: int) -> Rule:
    rule = Rule.objects.filter(pk=rule_id).first()
    if rule is None:
        raise NotFound()
    return rule


def _visible_contact(request: HttpRequest, contact_id: int):
    require(request, "customers.view_contact")
    contact = contacts_visible(request.user).filter(pk=contact_id).first()
    if contact is None:
        raise NotFound()
    return contact


def _dump(schema: Schema) -> dict[str, Any]:
    data = schema.model_dump(exclude_unset=True)
    for name in ("conditions", "contact_conditions"):
        if name in data and data[name] is not None:
            data[name] = [dict(c) for c in data[name]]
    return {k: v for k, v in data.items() if v is not None or k in ("conditions",
                                                                   "contact_conditions")}


@router.get("/stages", response=list[StageOut], summary="List stage definitions")
def stages_list(request: HttpRequest):
    require(request, "lifecycle.view_stage")
    return list(stages_ordered())


@router.post("/stages", response={201: StageOut}, summary="Add a stage")
def stages_create(request: HttpRequest, payload: StageIn):
    require(request, "lifecycle.add_stage")
    return Status(201, services.stage_create(data=payload.model_dump()))


@router.patch("/stages/{key}", response=StageOut, summary="Change a stage's label, order or group")
def stages_update(request: HttpRequest, key: str, payload: StagePatch):
    require(request, "lifecycle.change_stage")
    return services.stage_update(stage=_stage(key), data=_dump(payload))


@router.get("/rules", response=list[RuleOut], summary="List rules")
def rules_list(request: HttpRequest):
    require(request, "lifecycle.view_rule")
    return list(rules_ordered())


@router.post("/rules", response={201: RuleOut}, summary="Add a rule")
def rules_create(request: HttpRequest, payload: RuleIn):
    require(request, "lifecycle.add_rule")
    return Status(201, services.rule_create(data=_dump(payload)))


@router.get("/rules/{int:rule_id}", response=RuleOut, summary="Get a rule")
def rules_get(request: HttpRequest, rule_id: int):
    require(request, "lifecycle.view_rule")
    return _rule(rule_id)


@router.patch("/rules/{int:rule_id}", response=RuleOut, summary="Change a rule")
def rules_update(request: HttpRequest, rule_id: int, payload: RulePatch):
    require(request, "lifecycle.change_rule")
    return services.rule_update(rule=_rule(rule_id), data=_dump(payload))


def _history(contact) -> dict[str, Any]:
    return {
        "contact_id": contact.pk, "stage": contact.stage, "life": contact_life(contact),
        "items": list(contact_history(contact)),
        "stages": [{"stage": s.stage, "visits": s.visits, "first_entered": s.first_entered,
                    "last_exited": s.last_exited,
                    "latest_seconds_in": s.latest_time_in / timedelta(seconds=1),
                    "cumulative_seconds_in": s.cumulative_time_in / timedelta(seconds=1),
                    "current": s.current}
                   for s in contact_stage_summary(contact)],
    }


@router.get("/contacts/{int:contact_id}/history", response=HistoryOut,
            summary="A contact's stage history and time in each stage")
def contact_history_get(request: HttpRequest, contact_id: int):
    return _history(_visible_contact(request, contact_id))


@router.post("/contacts/{int:contact_id}/move", response=HistoryOut,
             summary="Move a contact to a stage by hand (reason required)")
def contact_move(request: HttpRequest, contact_id: int, payload: MoveIn):
    contact = _visible_contact(request, contact_id)
    require(request, services.MOVE_PERMISSION)
    services.stage_move(contact=contact, to_stage=payload.to_stage, reason=payload.reason,
                        actor=request.user, via="api")
    return _history(contact)


@router.post("/contacts/move", response=BulkMoveOut,
             summary="Move many contacts to a stage (at most 500; reason required)")
def contacts_move_bulk(request: HttpRequest, payload: BulkMoveIn):
    require(request, "customers.view_contact", services.MOVE_PERMISSION)
    ids = set(payload.contact_ids)
    contacts = list(contacts_visible(request.user).filter(pk__in=ids))
    if len(contacts) != len(ids):
        raise NotFound("Some contacts were not found.")
    moved = services.stages_move_bulk(contacts=contacts, to_stage=payload.to_stage,
                                      reason=payload.reason, actor=request.user, via="api")
    return {"moved": moved}
