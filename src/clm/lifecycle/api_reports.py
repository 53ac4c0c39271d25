"""Lifecycle reports API under /api/v1/lifecycle/reports: funnel, flows, velocity, stage counts.

Every endpoint needs `lifecycle.view_stagechange` (403) and counts only the contacts the caller
may see. Bad parameters → 422 naming the field (`from`, `to`, `window_days`, `by`, `months`).
Definitions of each figure: clm.lifecycle.reports.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import ConfigDict, Field

from clm.core.errors import PermissionDenied
from clm.lifecycle import reports

router = Router(tags=["lifecycle reports"])
ROUTES = [("/v1/lifecycle/reports", router)]

PERMISSION = "lifecycle.view_stagechange"


def _require(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied()


class PeriodFilter(Schema):
    model_config = ConfigDict(populate_by_name=True)

    start: date | None = Field(None, alias="from",
                               description="First day (UTC), default: 364 days before `to`.")
    end: date | None = Field(None, alias="to", description="Last day (UTC), default: today.")
    source: str | None = Field(None, max_length=50,
                               description="Only contacts with this Contact.source.")


class FunnelFilter(PeriodFilter):
    window_days: int = Field(reports.DEFAULT_WINDOW_DAYS, ge=1, le=reports.MAX_WINDOW_DAYS)
    by: Literal["cohort", "source"] = "cohort"


class MonthsFilter(Schema):
    months: int = Field(12, ge=1, le=reports.MAX_MONTHS)
    source: str | None = Field(None, max_length=50)


class StepOut(Schema):
    from_stage: str
    to_stage: str
    entered: int
    converted: int
    rate: float | None


class FunnelGroupOut(Schema):
    key: str
    maturing: bool
    steps: list[StepOut]


class FunnelOut(Schema):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    window_days: int
    by: str
    stages: list[str]
    steps: list[StepOut]
    groups: list[FunnelGroupOut]
    as_of: datetime | None = Field(
        None, description="Set when the figures come from the by-source rollup: the time it "
                          "was refreshed (every 15 minutes). Null: live.")


class FlowOut(Schema):
    from_stage: str
    to_stage: str
    count: int
    kind: str
    is_loop: bool


class FlowsOut(Schema):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    total: int
    flows: list[FlowOut]


class StageVelocityOut(Schema):
    stage: str
    visits: int
    completed: int
    open: int
    median_seconds: float | None
    p90_seconds: float | None
    km_median_seconds: float | None
    km_p90_seconds: float | None
    mean_seconds: float | None


class VelocityOut(Schema):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    censoring: str
    stages: list[StageVelocityOut]


class StageSeriesOut(Schema):
    stage: str
    counts: list[int]


class StageCountsOut(Schema):
    months: list[str]
    series: list[StageSeriesOut]


def _period(filters: PeriodFilter) -> tuple[date, date]:
    return reports.clean_period(filters.start, filters.end)


@router.get("/funnel", response=FunnelOut, by_alias=True,
            summary="Conversion from each stage to the next within a window, by cohort or source")
def funnel(request: HttpRequest, filters: Query[FunnelFilter]):
    _require(request)
    start, end = _period(filters)
    report = reports.funnel(start=start, end=end, window_days=filters.window_days,
                            by=filters.by, source=filters.source, user=request.user)
    return {"start": report.start, "end": report.end, "window_days": report.window_days,
            "by": report.by, "stages": [s.key for s in report.stages],
            "steps": report.steps,
            "groups": [{"key": g.key, "maturing": g.maturing, "steps": g.steps}
                       for g in report.groups], "as_of": report.as_of}


@router.get("/flows", response=FlowsOut, by_alias=True,
            summary="Moves between stages in a period, loops (win-back, backward) included")
def flows(request: HttpRequest, filters: Query[PeriodFilter]):
    _require(request)
    start, end = _period(filters)
    report = reports.flows(start=start, end=end, source=filters.source, user=request.user)
    return {"start": report.start, "end": report.end, "total": report.total,
            "flows": report.flows}


@router.get("/velocity", response=VelocityOut, by_alias=True,
            summary="Median and p90 time in each stage (visits entered in the period)")
def velocity(request: HttpRequest, filters: Query[PeriodFilter]):
    _require(request)
    start, end = _period(filters)
    report = reports.velocity(start=start, end=end, source=filters.source, user=request.user)
    return {"start": report.start, "end": report.end, "censoring": reports.CENSORING_NOTE,
            "stages": [{"stage": s.stage, "visits": s.visits, "completed": s.completed,
                        "open": s.open, "median_seconds": s.median_s, "p90_seconds": s.p90_s,
                        "km_median_seconds": s.km_median_s, "km_p90_seconds": s.km_p90_s,
                        "mean_seconds": s.mean_s} for s in report.stages]}


@router.get("/stage-counts", response=StageCountsOut,
            summary="Contacts in each stage at each month end (the current month: now)")
def stage_counts(request: HttpRequest, filters: Query[MonthsFilter]):
    _require(request)
    report = reports.stage_counts(months=filters.months, source=filters.source,
                                  user=request.user)
    return {"months": report.months,
            "series": [{"stage": k, "counts": v} for k, v in report.counts.items()]}
