"""Report endpoints, the dashboard page and its CSV downloads: numbers, permissions,
visibility and query counts.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import timezone

from clm.analytics import reports, services
from clm.analytics.models import ContactScore
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

ENDPOINTS = ["/api/v1/analytics/cohorts", "/api/v1/analytics/cohorts?kind=activity",
             "/api/v1/analytics/cohorts?kind=revenue", "/api/v1/analytics/revenue",
             "/api/v1/analytics/churn", "/api/v1/analytics/clv-distribution",
             "/api/v1/analytics/rfm-grid", "/api/v1/analytics/stages",
             "/api/v1/analytics/at-risk", "/api/v1/analytics/dashboard"]


def _this_month_day(day: int) -> datetime:
    today = timezone.localdate()
    return datetime(today.year, today.month, min(day, today.day), 12, tzinfo=UTC)


@pytest.fixture
def data(make_user):
    """Two buyers this month (30 and 70), one of them scored and at risk."""
    a, b = ContactFactory(first_name="Ann", stage="customer"), ContactFactory(stage="customer")
    services.transaction_record(contact=a, occurred_at=_this_month_day(1), amount="30")
    services.transaction_record(contact=b, occurred_at=_this_month_day(1), amount="70")
    ContactScore.objects.create(contact=a, as_of=timezone.localdate(), predicted_clv=200,
                                p_alive=0.25, rfm_r=5, rfm_f=1, rfm_segment="new")
    return a, b


@pytest.mark.parametrize("role", ["manager", "marketing", "admin"])
def test_analytics_roles_read_every_report(role, make_user, make_api_client, data):
    api = make_api_client(make_user(role, username=f"u-{role}"), scope="read")
    for url in ENDPOINTS:
        response = api.get(url)
        assert response.status_code == 200, (url, response.content)


@pytest.mark.parametrize("role", ["sales", "support"])
def test_other_roles_get_403(role, make_user, make_api_client):
    api = make_api_client(make_user(role, username=f"u-{role}"), scope="read")
    for url in ENDPOINTS:
        assert api.get(url).status_code == 403, url


def test_report_numbers_through_the_api(admin_api, data):
    month = reports.month_label(reports.month_of(timezone.localdate()))
    cohorts = admin_api.get("/api/v1/analytics/cohorts?months=1").json()
    assert cohorts == {"kind": "purchase", "cohorts": [month], "sizes": [2.0], "offsets": [0],
                       "values": [[2.0]], "percent": [[100.0]]}
    revenue = admin_api.get("/api/v1/analytics/revenue?months=1").json()
    assert revenue == {"months": [month], "columns": {"revenue": [100.0], "customers": [2]}}
    risk = admin_api.get("/api/v1/analytics/at-risk").json()
    assert [(r["name"], r["value_at_risk"]) for r in risk] == [(data[0].display_name, 150.0)]
    summary = admin_api.get("/api/v1/analytics/dashboard").json()
    assert (summary["customers"], summary["revenue_total"]) == (2, 100.0)
    grid = admin_api.get("/api/v1/analytics/rfm-grid").json()
    assert grid["counts"][0] == [1, 0, 0, 0, 0]


def test_bad_parameters_are_422_naming_the_field(admin_api):
    for url, field in [("/api/v1/analytics/cohorts?kind=weekly", "kind"),
                       ("/api/v1/analytics/cohorts?months=0", "months"),
                       ("/api/v1/analytics/clv-distribution?bins=1", "bins"),
                       ("/api/v1/analytics/at-risk?limit=1000", "limit")]:
        response = admin_api.get(url)
        assert response.status_code == 422, url
        assert field in str(response.json()), url


# Token (and its last-used stamp), the cache's model-run check, then the report's own
# aggregates (at most 4). At-risk is never cached: token + one query, contacts included.
QUERIES = dict(zip(ENDPOINTS, [5, 5, 5, 5, 5, 6, 5, 5, 3, 8], strict=True))


@pytest.mark.parametrize("url", ENDPOINTS)
def test_query_counts_are_pinned(url, admin_api, data, django_assert_max_num_queries):
    with django_assert_max_num_queries(QUERIES[url]):
        assert admin_api.get(url).status_code == 200
    # A second call within the cache's lifetime only checks the model run.
    with django_assert_max_num_queries(3 if "at-risk" in url else 2):
        admin_api.get(url)


def test_at_risk_hides_contacts_the_caller_may_not_see(make_user, make_api_client, data):
    boss = make_user("manager", username="mgr", team="east")
    west = make_user("sales", username="w1", team="west")
    data[0].owner = west
    data[0].save()
    assert make_api_client(boss).get("/api/v1/analytics/at-risk").json() == []


def test_dashboard_page_shows_every_chart_and_links_contacts(admin_client_logged_in, data):
    page = admin_client_logged_in.get("/analytics/")
    assert page.status_code == 200
    text = page.content.decode()
    for marker in ("chart-stages", "chart-revenue", "chart-clv", "chart-churn", "rfm-grid",
                   "cohorts-purchase", "cohorts-revenue", "cohorts-activity",
                   "vendor/chart.umd.min.js", "dashboard-data"):
        assert marker in text, marker
    assert f'href="/contacts/{data[0].pk}/"' in text
    assert "Dashboard" in text  # the Insight navigation entry


def test_dashboard_csv_downloads(admin_client_logged_in, data):
    for chart in ("stages", "revenue", "churn", "clv-distribution", "rfm-grid", "at-risk",
                  "cohorts-purchase", "cohorts-activity", "cohorts-revenue"):
        response = admin_client_logged_in.get(f"/analytics/csv/{chart}/")
        assert response.status_code == 200, chart
        assert response["Content-Type"].startswith("text/csv")
    body = b"".join(admin_client_logged_in.get("/analytics/csv/at-risk/").streaming_content)
    lines = body.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("contact_id,name,predicted_clv")
    assert lines[1].startswith(f"{data[0].pk},{data[0].display_name},200")
    assert admin_client_logged_in.get("/analytics/csv/nope/").status_code == 404


def test_dashboard_forbidden_without_the_permission(sales_user):
    client = Client()
    client.force_login(sales_user)
    assert client.get("/analytics/").status_code == 403
    assert client.get("/analytics/csv/stages/").status_code == 403
