"""Report pages of the lifecycle (funnel, flows, velocity, stages over time) and the journey.

Every page needs `lifecycle.view_stagechange` and counts only the contacts the user may see;
`?format=csv` downloads the page's table with the same filters. The journey fragment also
needs the contact to be visible (404 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from clm.core.csvsafe import csv_response
from clm.core.errors import ValidationFailed
from clm.customers.queries import contacts_visible
from clm.lifecycle import reports
from clm.lifecycle.models import StageChange, StageGroup
from clm.timeline.models import Event

PERMISSION = "lifecycle.view_stagechange"
GROUP_COLOURS = {StageGroup.PROSPECT: "#3b82f6", StageGroup.CUSTOMER: "#16a34a",
                 StageGroup.LOST: "#9ca3af"}
# Shades per group, light to dark along the stage order (the journey ribbon, the charts).
GROUP_SHADES = {StageGroup.PROSPECT: ["#bfdbfe", "#93c5fd", "#60a5fa", "#3b82f6", "#2563eb",
                                      "#1d4ed8", "#1e40af"],
                StageGroup.CUSTOMER: ["#4ade80", "#16a34a", "#166534", "#14532d"],
                StageGroup.LOST: ["#f87171", "#9ca3af", "#6b7280", "#4b5563"]}
STAGE_PALETTE = ["#93c5fd", "#60a5fa", "#3b82f6", "#2563eb", "#1d4ed8", "#22c55e", "#15803d",
                 "#f87171", "#9ca3af", "#a78bfa", "#f59e0b", "#14b8a6"]
JOURNEY_EVENTS = 500  # the newest touchpoints shown on the ribbon


def _require(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


class ReportFilters(forms.Form):
    """The query string of the report pages (the same names as the API's)."""

    window_days = forms.IntegerField(min_value=1, max_value=reports.MAX_WINDOW_DAYS,
                                     required=False, label="Window (days)")
    by = forms.ChoiceField(choices=[("cohort", "Cohort month"), ("source", "Source")],
                           required=False, label="Group by")
    source = forms.CharField(max_length=50, required=False, label="Source")
    months = forms.IntegerField(min_value=1, max_value=reports.MAX_MONTHS, required=False,
                                label="Months")

    def clean(self):
        data = super().clean()
        if "from" in data and "to" in data:
            try:
                data["from"], data["to"] = reports.clean_period(data["from"], data["to"])
            except ValidationFailed as exc:
                self.add_error("from", exc.message)
        data["window_days"] = data.get("window_days") or reports.DEFAULT_WINDOW_DAYS
        data["by"] = data.get("by") or "cohort"
        data["months"] = data.get("months") or 12
        data["source"] = data.get("source") or None
        return data


# "from" is a Python keyword: declared here so the query string matches the API.
ReportFilters.base_fields = {
    "from": forms.DateField(required=False, label="From",
                            widget=forms.DateInput(attrs={"type": "date"})),
    "to": forms.DateField(required=False, label="To",
                          widget=forms.DateInput(attrs={"type": "date"})),
    **ReportFilters.base_fields,
}


def _filters(request: HttpRequest) -> tuple[ReportFilters, dict | None]:
    form = ReportFilters(request.GET)
    return form, (form.cleaned_data if form.is_valid() else None)


def _page(request: HttpRequest, template: str, form: ReportFilters, context: dict,
          ) -> HttpResponse:
    status = 200 if not form.errors else 422
    return render(request, template, {"form": form, **context}, status=status)


def _wants_csv(request: HttpRequest) -> bool:
    return request.GET.get("format") == "csv"


def _csv_query(request: HttpRequest) -> str:
    query = request.GET.copy()
    query["format"] = "csv"
    return query.urlencode()


# ---------------------------------------------------------------------------- funnel

@login_required
def report_funnel(request: HttpRequest) -> HttpResponse:
    _require(request)
    form, data = _filters(request)
    if data is None:
        return _page(request, "lifecycle/report_funnel.html", form, {"report": None})
    report = reports.funnel(start=data["from"], end=data["to"], window_days=data["window_days"],
                            by=data["by"], source=data["source"], user=request.user)
    labels = {s.key: s.label for s in report.stages}
    if _wants_csv(request):
        rows = [("all", s.from_stage, s.to_stage, s.entered, s.converted,
                 _rate(s.rate)) for s in report.steps]
        rows += [(g.key, s.from_stage, s.to_stage, s.entered, s.converted, _rate(s.rate))
                 for g in report.groups for s in g.steps]
        return csv_response("lifecycle-funnel.csv",
                            [report.by, "from_stage", "to_stage", "entered", "converted", "rate"],
                            rows)
    chart = {"labels": [f"{labels[s.from_stage]} → {labels[s.to_stage]}" for s in report.steps],
             "entered": [s.entered for s in report.steps],
             "converted": [s.converted for s in report.steps],
             "rate": [None if s.rate is None else round(100 * s.rate, 1) for s in report.steps]}
    return _page(request, "lifecycle/report_funnel.html", form, {
        "report": report, "labels": labels, "chart": chart, "csv_query": _csv_query(request)})


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.4f}"


# ---------------------------------------------------------------------------- flows

@dataclass
class SankeyNode:
    key: str
    label: str
    x: float
    y: float
    height: float
    value: int
    colour: str
    label_x: float = 0.0
    label_y: float = 0.0
    anchor: str = "middle"


@dataclass
class SankeyLink:
    path: str
    width: float
    count: int
    title: str
    colour: str
    loop: bool


def stage_colours(stages: list[reports.StageInfo]) -> dict[str, str]:
    """A colour per stage: its group's hue, darker further along the life."""
    colours, seen = {}, {}
    for stage in stages:
        shades = GROUP_SHADES.get(stage.group, ["#6b7280"])
        i = seen.get(stage.group, 0)
        seen[stage.group] = i + 1
        colours[stage.key] = shades[min(i, len(shades) - 1)]
    return colours


def sankey(report: reports.FlowReport, *, width: int = 960, height: int = 420
           ) -> tuple[list[SankeyNode], list[SankeyLink]]:
    """Lay out a Sankey-style SVG: funnel stages left to right on top, lost stages below.

    Node height ∝ the larger of its inflow and outflow; each link is a bezier whose stroke
    width ∝ its count, stacked along the node edges. Loops (win-back, backward moves) are
    drawn dashed, so cycles stay readable; the page also lists them.
    """
    if not report.flows:
        return [], []
    stages = {s.key: s for s in report.stages}
    inflow: dict[str, int] = {}
    outflow: dict[str, int] = {}
    for f in report.flows:
        outflow[f.from_stage] = outflow.get(f.from_stage, 0) + f.count
        inflow[f.to_stage] = inflow.get(f.to_stage, 0) + f.count
    used = set(inflow) | set(outflow)
    top = [""] if "" in used else []
    top += [s.key for s in report.stages if s.group != StageGroup.LOST and s.key in used]
    bottom = [s.key for s in report.stages if s.group == StageGroup.LOST and s.key in used]
    top += sorted(k for k in used if k and k not in stages)  # stages since deleted
    node_w, margin = 14, 20
    value = {k: max(inflow.get(k, 0), outflow.get(k, 0)) for k in used}
    scale = (height * 0.38) / max(value.values())
    step = (width - 2 * margin - node_w) / max(1, len(top) - 1)
    xs = {k: margin + i * step for i, k in enumerate(top)}
    for k in bottom:  # under the stages that feed it, weighted by flow
        feeds = [(xs[f.from_stage], f.count) for f in report.flows
                 if f.to_stage == k and f.from_stage in xs]
        total = sum(c for _, c in feeds)
        xs[k] = (sum(x * c for x, c in feeds) / total) if total else width / 2
    ys = {k: 44.0 for k in top} | {k: height * 0.66 for k in bottom}
    nodes = []
    for i, k in enumerate(top + bottom):
        stage = stages.get(k)
        node = SankeyNode(
            key=k, label=stage.label if stage else (k or "New"), x=round(xs[k], 1), y=ys[k],
            height=max(2.0, round(value[k] * scale, 1)), value=value[k],
            colour=GROUP_COLOURS.get(stage.group, "#6b7280") if stage else "#6b7280")
        # Labels alternate between two lines above the top row (long labels would collide);
        # the first and last are anchored at the edges so they stay inside the picture.
        node.label_x = round(xs[k] + node_w / 2, 1)
        if k in bottom:
            node.label_y = round(ys[k] + node.height + 14, 1)
        else:
            node.label_y = 30.0 if i % 2 == 0 else 14.0
            if i == 0:
                node.anchor, node.label_x = "start", round(xs[k], 1)
            elif i == len(top) - 1:
                node.anchor, node.label_x = "end", round(xs[k] + node_w, 1)
        nodes.append(node)
    out_off = dict.fromkeys(used, 0.0)
    in_off = dict.fromkeys(used, 0.0)
    links = []
    ordered = sorted(report.flows, key=lambda f: (f.is_loop, ys[f.to_stage], xs[f.to_stage]))
    for f in ordered:
        w = max(1.0, f.count * scale)
        x0, y0 = xs[f.from_stage] + node_w, ys[f.from_stage] + out_off[f.from_stage] + w / 2
        x1, y1 = xs[f.to_stage], ys[f.to_stage] + in_off[f.to_stage] + w / 2
        out_off[f.from_stage] += w
        in_off[f.to_stage] += w
        bend = max(60.0, abs(x1 - x0) / 2)
        path = (f"M{x0:.1f},{y0:.1f} C{x0 + bend:.1f},{y0:.1f} {x1 - bend:.1f},{y1:.1f} "
                f"{x1:.1f},{y1:.1f}")
        frm = stages[f.from_stage].label if f.from_stage in stages else (f.from_stage or "New")
        to = stages[f.to_stage].label if f.to_stage in stages else f.to_stage
        colour = {"win-back": "#16a34a", "backward": "#f59e0b", "loss": "#ef4444"}.get(
            f.kind, "#60a5fa")
        links.append(SankeyLink(path=path, width=round(w, 1), count=f.count,
                                title=f"{frm} → {to}: {f.count} ({f.kind})", colour=colour,
                                loop=f.is_loop))
    return nodes, links


@login_required
def report_flows(request: HttpRequest) -> HttpResponse:
    _require(request)
    form, data = _filters(request)
    if data is None:
        return _page(request, "lifecycle/report_flows.html", form, {"report": None})
    report = reports.flows(start=data["from"], end=data["to"], source=data["source"],
                           user=request.user)
    if _wants_csv(request):
        return csv_response("lifecycle-flows.csv", ["from_stage", "to_stage", "kind", "count"],
                            [(f.from_stage, f.to_stage, f.kind, f.count) for f in report.flows])
    nodes, links = sankey(report)
    labels = {s.key: s.label for s in report.stages}
    return _page(request, "lifecycle/report_flows.html", form, {
        "report": report, "nodes": nodes, "links": links, "labels": labels,
        "csv_query": _csv_query(request)})


# ---------------------------------------------------------------------------- velocity

def _days(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 86400, 1)


@login_required
def report_velocity(request: HttpRequest) -> HttpResponse:
    _require(request)
    form, data = _filters(request)
    if data is None:
        return _page(request, "lifecycle/report_velocity.html", form, {"report": None})
    report = reports.velocity(start=data["from"], end=data["to"], source=data["source"],
                              user=request.user)
    rows = [{"stage": s, "median": _days(s.median_s), "p90": _days(s.p90_s),
             "km_median": _days(s.km_median_s), "km_p90": _days(s.km_p90_s),
             "mean": _days(s.mean_s)} for s in report.stages]
    if _wants_csv(request):
        return csv_response(
            "lifecycle-velocity.csv",
            ["stage", "visits", "completed", "open", "median_days", "p90_days",
             "km_median_days", "km_p90_days", "mean_days"],
            [(r["stage"].stage, r["stage"].visits, r["stage"].completed, r["stage"].open,
              r["median"], r["p90"], r["km_median"], r["km_p90"], r["mean"]) for r in rows])
    chart = {"labels": [s.label for s in report.stages],
             "median": [r["median"] for r in rows], "p90": [r["p90"] for r in rows]}
    return _page(request, "lifecycle/report_velocity.html", form, {
        "report": report, "rows": rows, "chart": chart, "csv_query": _csv_query(request)})


# ---------------------------------------------------------------------------- stage counts

@login_required
def report_stages(request: HttpRequest) -> HttpResponse:
    _require(request)
    form, data = _filters(request)
    if data is None:
        return _page(request, "lifecycle/report_stages.html", form, {"report": None})
    report = reports.stage_counts(months=data["months"], source=data["source"],
                                  user=request.user)
    labels = {s.key: s.label for s in report.stages}
    if _wants_csv(request):
        return csv_response("lifecycle-stage-counts.csv", ["month", *report.counts],
                            [(m, *(v[i] for v in report.counts.values()))
                             for i, m in enumerate(report.months)])
    colours = stage_colours(report.stages)
    series = [{"label": labels.get(k, k), "data": v,
               "colour": colours.get(k, STAGE_PALETTE[i % len(STAGE_PALETTE)])}
              for i, (k, v) in enumerate(report.counts.items())]
    table = [(m, [v[i] for v in report.counts.values()]) for i, m in enumerate(report.months)]
    return _page(request, "lifecycle/report_stages.html", form, {
        "report": report, "chart": {"labels": report.months, "series": series},
        "headers": [labels.get(k, k) for k in report.counts], "table": table,
        "csv_query": _csv_query(request)})


# ---------------------------------------------------------------------------- journey

@dataclass
class JourneySegment:
    stage: str
    label: str
    group: str
    colour: str
    start: datetime
    end: datetime | None  # None: still in it
    life: int
    seconds: float
    touchpoints: list[Event]
    kinds: list[tuple[str, int]]
    percent: float = 0.0  # share of the ribbon's width


def journey(contact, *, now: datetime | None = None,
            limit: int = JOURNEY_EVENTS) -> tuple[list[JourneySegment], list[Event], int]:
    """The contact's stage visits in time order with the touchpoints that fell in each.

    Returns (segments, touchpoints before the first stage, touchpoints left out beyond
    `limit`). Three queries (stages, history, the newest `limit` + 1 events), and a count
    when there are more.
    """
    now = now or timezone.now()
    infos = reports.stage_infos()
    stages = {s.key: s for s in infos}
    colours = stage_colours(infos)
    rows = list(StageChange.objects.filter(contact=contact).order_by("seq")
                .values_list("to_stage", "at", "exited_at", "life"))
    touchpoints = Event.objects.filter(contact=contact).exclude(kind="stage.changed")
    events = list(touchpoints.order_by("-occurred_at", "-pk")
                  .only("pk", "kind", "occurred_at")[:limit + 1])
    more = touchpoints.count() - limit if len(events) > limit else 0
    events = sorted(events[:limit], key=lambda e: (e.occurred_at, e.pk))
    segments = []
    for key, at, exited, life in rows:
        stage = stages.get(key)
        group = stage.group if stage else StageGroup.PROSPECT
        segments.append(JourneySegment(
            stage=key, label=stage.label if stage else key, group=group,
            colour=colours.get(key, "#6b7280"), start=at, end=exited, life=life,
            seconds=max(0.0, ((exited or now) - at).total_seconds()), touchpoints=[],
            kinds=[]))
    before: list[Event] = []
    i = 0
    for event in events:  # both sorted by time: one merge pass
        while i < len(segments) - 1 and segments[i + 1].start <= event.occurred_at:
            i += 1
        if not segments or event.occurred_at < segments[0].start:
            before.append(event)
        else:
            segments[i].touchpoints.append(event)
    for seg in segments:
        counts: dict[str, int] = {}
        for e in seg.touchpoints:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        seg.kinds = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return segments, before, more


@login_required
def contact_journey(request: HttpRequest, contact_id: int) -> HttpResponse:
    """The journey fragment (`lifecycle/_journey.html`) for the contact page to load with htmx."""
    if not request.user.has_perm("customers.view_contact"):
        raise PermissionDenied
    _require(request)
    contact = contacts_visible(request.user).filter(pk=contact_id).first()
    if contact is None:
        raise Http404
    now = timezone.now()
    segments, before, more = journey(contact, now=now)
    total = sum(s.seconds for s in segments) or 1.0
    for seg in segments:
        seg.percent = round(100 * seg.seconds / total, 3)
    return render(request, "lifecycle/_journey.html", {
        "jr_contact": contact, "jr_segments": segments, "jr_before": before, "jr_more": more,
        "jr_now": now.astimezone(UTC),
        "jr_legend": list(dict.fromkeys((seg.label, seg.colour) for seg in segments))})
