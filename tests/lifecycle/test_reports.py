"""Lifecycle reports on small hand-checked histories, and their API (permissions, 422s, queries).

The story used throughout (all 2025, UTC; `now` = 2025-07-01 00:00):
  A (web, owned by sally): lead 01-10 → mql 01-20 → sql 03-01 (still sql)
  B (ads, owned by sally): subscriber 01-05 → lead 02-15 → disqualified 02-20
  C (web): lead 02-01 → opportunity 02-11 → customer 03-01 → churned 05-01
           → customer 06-01 (life 2) → promoter 06-05
  D (no source): lead 01-31 → mql 06-30
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from clm.lifecycle import marks, reports
from clm.lifecycle.models import StageChange
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/lifecycle/reports"
NOW = datetime(2025, 7, 1, tzinfo=UTC)
DAY = 86400.0
LOST = {"churned", "disqualified"}


def d(month: int, day: int) -> datetime:
    return datetime(2025, month, day, tzinfo=UTC)


def write_history(contact, moves: list[tuple[str, datetime]]) -> None:
    """StageChange rows as the engine writes them: seq, from, exited_at, life (+1 on win-back),
    and the funnel's derived advance_s."""
    rows, life, prev = [], 1, ""
    for seq, (stage, at) in enumerate(moves, 1):
        if prev in LOST and stage in ("customer", "promoter"):
            life += 1
        exited = moves[seq][1] if seq < len(moves) else None
        rows.append(StageChange(contact=contact, seq=seq, from_stage=prev, to_stage=stage, at=at,
                                exited_at=exited, actor_type="rule", life=life))
        prev = stage
    StageChange.objects.bulk_create(rows)
    marks.recompute(contact_ids=[contact.pk])


@pytest.fixture
def story(sales_user):
    return make_story(sales_user)


def make_story(sales_user) -> dict:
    """The contacts A to D of the module docstring, with their histories."""
    a = ContactFactory(source="web", owner=sales_user)
    b = ContactFactory(source="ads", owner=sales_user)
    c = ContactFactory(source="web")
    d_ = ContactFactory(source="")
    write_history(a, [("lead", d(1, 10)), ("mql", d(1, 20)), ("sql", d(3, 1))])
    write_history(b, [("subscriber", d(1, 5)), ("lead", d(2, 15)), ("disqualified", d(2, 20))])
    write_history(c, [("lead", d(2, 1)), ("opportunity", d(2, 11)), ("customer", d(3, 1)),
                      ("churned", d(5, 1)), ("customer", d(6, 1)), ("promoter", d(6, 5))])
    write_history(d_, [("lead", d(1, 31)), ("mql", d(6, 30))])
    return {"a": a, "b": b, "c": c, "d": d_}


def steps(report_steps) -> dict[str, tuple[int, int]]:
    return {f"{s.from_stage}>{s.to_stage}": (s.entered, s.converted) for s in report_steps}


Q1 = {"start": date(2025, 1, 1), "end": date(2025, 3, 31), "now": NOW}


# ---------------------------------------------------------------------------- funnel

def test_funnel_overall_30_day_window(story):
    report = reports.funnel(window_days=30, **Q1)
    assert steps(report.steps) == {
        "subscriber>lead": (1, 0),      # B took 41 days
        "lead>mql": (4, 2),             # A (10 d) and C (skipped to opportunity); B lost, D slow
        "mql>sql": (1, 0),              # A took 40 days
        "sql>opportunity": (1, 0),
        "opportunity>customer": (1, 1),  # C in 18 days
        "customer>promoter": (1, 0),    # C's promoter visit is in life 2: does not count
    }
    assert report.steps[1].rate == 0.5


def test_funnel_window_is_inclusive_and_wider_windows_convert_more(story):
    assert steps(reports.funnel(window_days=10, **Q1).steps)["lead>mql"] == (4, 2)
    assert steps(reports.funnel(window_days=9, **Q1).steps)["lead>mql"] == (4, 0)
    wide = steps(reports.funnel(window_days=60, **Q1).steps)
    assert wide["subscriber>lead"] == (1, 1) and wide["mql>sql"] == (1, 1)
    # 120 days would reach C's promoter (06-05), but that is the next life.
    assert steps(reports.funnel(window_days=120, **Q1).steps)["customer>promoter"] == (1, 0)


def test_funnel_by_cohort_month(story):
    report = reports.funnel(window_days=30, by="cohort", **Q1)
    groups = {g.key: steps(g.steps) for g in report.groups}
    assert list(groups) == ["2025-01", "2025-02", "2025-03"]
    assert groups["2025-01"]["subscriber>lead"] == (1, 0)
    assert groups["2025-01"]["lead>mql"] == (2, 1)      # A, D
    assert groups["2025-01"]["mql>sql"] == (1, 0)
    assert groups["2025-02"]["lead>mql"] == (2, 1)      # B, C
    assert groups["2025-02"]["opportunity>customer"] == (1, 1)
    assert groups["2025-03"]["sql>opportunity"] == (1, 0)
    assert groups["2025-03"]["customer>promoter"] == (1, 0)
    assert not any(g.maturing for g in report.groups)  # all windows closed by July
    recent = reports.funnel(window_days=30, by="cohort", start=date(2025, 6, 1),
                            end=date(2025, 6, 30), now=NOW)
    assert [g.maturing for g in recent.groups] == [True]


def test_funnel_by_source_and_source_filter(story):
    report = reports.funnel(window_days=30, by="source", **Q1)
    groups = {g.key: steps(g.steps) for g in report.groups}
    assert set(groups) == {"web", "ads", "(none)"}
    assert groups["web"]["lead>mql"] == (2, 2)
    assert groups["ads"]["lead>mql"] == (1, 0)
    assert groups["(none)"]["lead>mql"] == (1, 0)
    assert report.groups[0].key == "web"  # largest first
    only_web = reports.funnel(window_days=30, source="web", **Q1)
    assert steps(only_web.steps)["lead>mql"] == (2, 2)


def test_funnel_counts_only_visible_contacts(story, sales_user):
    report = reports.funnel(window_days=30, user=sales_user, **Q1)
    assert steps(report.steps)["lead>mql"] == (2, 1)  # A and B only


def test_funnel_empty_period():
    report = reports.funnel(start=date(2020, 1, 1), end=date(2020, 1, 31), window_days=30)
    assert all(s.entered == 0 and s.rate is None for s in report.steps)
    assert report.groups == []


# ---------------------------------------------------------------------------- flows

def test_flows_first_quarter(story):
    report = reports.flows(start=date(2025, 1, 1), end=date(2025, 3, 31))
    got = {(f.from_stage, f.to_stage): (f.count, f.kind) for f in report.flows}
    assert got == {
        ("", "lead"): (3, "entry"), ("", "subscriber"): (1, "entry"),
        ("lead", "mql"): (1, "forward"), ("mql", "sql"): (1, "forward"),
        ("subscriber", "lead"): (1, "forward"), ("lead", "disqualified"): (1, "loss"),
        ("lead", "opportunity"): (1, "forward"), ("opportunity", "customer"): (1, "forward"),
    }
    assert report.total == 10 and report.flows[0].count == 3 and report.loops == []


def test_flows_show_churn_and_win_back_loop(story):
    report = reports.flows(start=date(2025, 4, 1), end=date(2025, 6, 30))
    got = {(f.from_stage, f.to_stage): (f.count, f.kind) for f in report.flows}
    assert got == {("customer", "churned"): (1, "loss"), ("churned", "customer"): (1, "win-back"),
                   ("customer", "promoter"): (1, "forward"), ("lead", "mql"): (1, "forward")}
    assert [(f.from_stage, f.to_stage) for f in report.loops] == [("churned", "customer")]


def test_flow_kind_backward_move():
    lead = reports.StageInfo("lead", "Lead", 20, "prospect")
    sql = reports.StageInfo("sql", "SQL", 40, "prospect")
    assert reports.flow_kind(sql, lead) == "backward"
    assert reports.flow_kind(lead, sql) == "forward"


# ---------------------------------------------------------------------------- velocity

def test_velocity_medians_and_censoring(story):
    report = reports.velocity(start=date(2025, 1, 1), end=date(2025, 12, 31), now=NOW)
    by = {s.stage: s for s in report.stages}
    lead = by["lead"]  # 10, 5, 10, 150 days, all finished
    assert (lead.visits, lead.completed, lead.open) == (4, 4, 0)
    assert lead.median_s == 10 * DAY and lead.p90_s == pytest.approx(108 * DAY)
    assert lead.km_median_s == 10 * DAY
    mql = by["mql"]  # A 40 days; D entered 06-30 and is still there (1 day so far)
    assert (mql.completed, mql.open, mql.median_s) == (1, 1, 40 * DAY)
    assert mql.km_median_s == 40 * DAY and mql.km_p90_s == 40 * DAY
    customer = by["customer"]  # C: 61 days (life 1) and 4 days (life 2)
    assert customer.median_s == 32.5 * DAY and customer.p90_s == pytest.approx(55.3 * DAY)
    sql = by["sql"]  # A is still in sql: nothing finished, nothing to estimate
    assert (sql.visits, sql.open, sql.median_s, sql.km_median_s) == (1, 1, None, None)
    assert by["churned"].median_s == 31 * DAY and by["opportunity"].median_s == 18 * DAY


def test_kaplan_meier_counts_open_visits_as_at_least_that_long():
    import numpy as np

    # Finished after 1, 2, 3 days; two still open after 10 days.
    durations = np.array([1, 2, 3, 10, 10], dtype=float)
    finished = np.array([True, True, True, False, False])
    assert reports.km_quantile(durations, finished, 0.5) == 3  # S: .8, .6, .4
    assert reports.km_quantile(durations, finished, 0.9) is None  # never drops to .1
    assert reports.km_quantile(np.array([]), np.array([], dtype=bool), 0.5) is None


# ---------------------------------------------------------------------------- stage counts

def test_stage_counts_at_month_ends(story):
    report = reports.stage_counts(months=4, now=NOW)
    assert report.months == ["2025-04", "2025-05", "2025-06", "2025-07"]
    counts = {k: v for k, v in report.counts.items() if any(v)}
    assert counts == {
        "lead": [1, 1, 0, 0],          # D until 06-30
        "mql": [0, 0, 1, 1],           # D from 06-30
        "sql": [1, 1, 1, 1],           # A
        "customer": [1, 0, 0, 0],      # C life 1, churned 05-01
        "churned": [0, 1, 0, 0],
        "promoter": [0, 0, 1, 1],      # C after the win-back
        "disqualified": [1, 1, 1, 1],  # B
    }


def test_stage_counts_year_boundary():
    report = reports.stage_counts(months=3, now=datetime(2026, 1, 15, tzinfo=UTC))
    assert report.months == ["2025-11", "2025-12", "2026-01"]


# ---------------------------------------------------------------------------- API

def test_api_funnel(admin_api, story, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = admin_api.get(f"{BASE}/funnel", {"from": "2025-01-01", "to": "2025-03-31",
                                                    "window_days": 30, "by": "source"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["from"] == "2025-01-01" and body["window_days"] == 30 and body["by"] == "source"
    lead = body["steps"][1]
    assert lead == {"from_stage": "lead", "to_stage": "mql", "entered": 4, "converted": 2,
                    "rate": 0.5}
    web = next(g for g in body["groups"] if g["key"] == "web")
    assert web["steps"][1]["converted"] == 2
    assert body["as_of"] is None  # no rollup yet: live


def test_api_funnel_by_source_from_the_rollup_gives_its_time(admin_api, story):
    from clm.lifecycle import services

    params = {"from": "2025-01-01", "to": "2025-03-31", "window_days": 30, "by": "source"}
    live = admin_api.get(f"{BASE}/funnel", params).json()
    services.funnel_rollup_refresh()
    body = admin_api.get(f"{BASE}/funnel", params).json()
    assert body["as_of"] is not None
    assert {k: v for k, v in body.items() if k != "as_of"} == \
        {k: v for k, v in live.items() if k != "as_of"}


def test_api_flows_velocity_stage_counts(admin_api, story, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        flows = admin_api.get(f"{BASE}/flows", {"from": "2025-04-01", "to": "2025-06-30"})
    assert flows.status_code == 200
    loops = [f for f in flows.json()["flows"] if f["is_loop"]]
    assert loops == [{"from_stage": "churned", "to_stage": "customer", "count": 1,
                      "kind": "win-back", "is_loop": True}]
    with django_assert_max_num_queries(6):
        velocity = admin_api.get(f"{BASE}/velocity", {"from": "2025-01-01", "to": "2025-12-31"})
    assert velocity.status_code == 200
    lead = next(s for s in velocity.json()["stages"] if s["stage"] == "lead")
    assert lead["median_seconds"] == 10 * DAY and "censored" in velocity.json()["censoring"]
    with django_assert_max_num_queries(6):
        counts = admin_api.get(f"{BASE}/stage-counts", {"months": 3})
    assert counts.status_code == 200 and len(counts.json()["months"]) == 3


def test_api_defaults_to_the_last_year(admin_api):
    body = admin_api.get(f"{BASE}/funnel").json()
    start, end = date.fromisoformat(body["from"]), date.fromisoformat(body["to"])
    assert end - start == timedelta(days=364) and body["window_days"] == 90


def test_api_sales_user_sees_own_contacts_only(make_api_client, sales_user, story):
    client = make_api_client(sales_user, "read")
    body = client.get(f"{BASE}/funnel", {"from": "2025-01-01", "to": "2025-03-31",
                                         "window_days": 30}).json()
    assert body["steps"][1]["entered"] == 2


@pytest.mark.parametrize(("params", "field"), [
    ({"window_days": 0}, "window_days"),
    ({"window_days": 99999}, "window_days"),
    ({"window_days": "x"}, "window_days"),
    ({"by": "planet"}, "by"),
    ({"from": "2025-02-30"}, "from"),
    ({"from": "2025-03-01", "to": "2025-02-01"}, "from"),
    ({"from": "1900-01-01", "to": "2025-02-01"}, "from"),
])
def test_api_funnel_rejects_bad_params(admin_api, params, field):
    response = admin_api.get(f"{BASE}/funnel", params)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_api_stage_counts_rejects_bad_months(admin_api):
    for months in (0, 1000, "many"):
        response = admin_api.get(f"{BASE}/stage-counts", {"months": months})
        assert response.status_code == 422 and response.json()["field"] == "months"


def test_api_needs_permission(make_api_client, client):
    nobody = UserFactory()  # no role: no lifecycle.view_stagechange
    api = make_api_client(nobody, "read")
    for path in ("funnel", "flows", "velocity", "stage-counts"):
        assert api.get(f"{BASE}/{path}").status_code == 403
        assert client.get(f"{BASE}/{path}").status_code == 401
