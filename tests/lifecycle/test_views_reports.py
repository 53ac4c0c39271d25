"""Report pages (charts, CSV, filters, permissions) and the contact journey fragment."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from clm.lifecycle import reports, services
from clm.lifecycle.views_reports import journey, sankey
from clm.timeline.models import Event
from tests.factories import ContactFactory, UserFactory
from tests.lifecycle.test_reports import d, make_story, write_history

pytestmark = pytest.mark.django_db
Q1 = {"from": "2025-01-01", "to": "2025-03-31"}


@pytest.fixture
def story(sales_user):
    return make_story(sales_user)


@pytest.fixture
def sales_client(sales_user) -> Client:
    client = Client()
    client.force_login(sales_user)
    return client


def test_funnel_page_shows_table_chart_and_groups(admin_client_logged_in, story,
                                                  django_assert_max_num_queries):
    url = reverse("lifecycle:report_funnel")
    with django_assert_max_num_queries(8):
        page = admin_client_logged_in.get(url, {**Q1, "window_days": 30, "by": "source"})
    assert page.status_code == 200
    html = re.sub(r">\s+<", "><", page.content.decode())
    assert "vendor/chart.umd.min.js" in html and 'id="funnel-data"' in html
    assert "2/4" not in html  # the overall table shows counts in columns, groups as x/y
    assert "<td>4</td><td>2</td><td>50%</td>" in html  # lead → mql overall
    assert "2/2" in html and ">web" in html  # web: both leads converted


def test_funnel_page_by_source_says_how_old_the_rollup_is(admin_client_logged_in, story):
    url = reverse("lifecycle:report_funnel")
    live = admin_client_logged_in.get(url, {**Q1, "window_days": 30, "by": "source"})
    assert b'id="funnel-as-of"' not in live.content
    services.funnel_rollup_refresh()
    page = admin_client_logged_in.get(url, {**Q1, "window_days": 30, "by": "source"})
    html = re.sub(r">\s+<", "><", page.content.decode())
    assert 'id="funnel-as-of"' in html and "UTC" in html
    assert "<td>4</td><td>2</td><td>50%</td>" in html and "2/2" in html  # the same figures
    cohort = admin_client_logged_in.get(url, {**Q1, "window_days": 30, "by": "cohort"})
    assert b'id="funnel-as-of"' not in cohort.content  # live


def test_funnel_csv_download(admin_client_logged_in, story):
    response = admin_client_logged_in.get(reverse("lifecycle:report_funnel"),
                                          {**Q1, "window_days": 30, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0] == "cohort,from_stage,to_stage,entered,converted,rate"
    assert "all,lead,mql,4,2,0.5000" in lines
    assert "2025-01,lead,mql,2,1,0.5000" in lines


def test_report_pages_reject_bad_filters(admin_client_logged_in):
    url = reverse("lifecycle:report_funnel")
    page = admin_client_logged_in.get(url, {"from": "2025-03-01", "to": "2025-01-01"})
    assert page.status_code == 422 and b"<strong>from</strong>" in page.content
    page = admin_client_logged_in.get(url, {"window_days": "0"})
    assert page.status_code == 422 and b"window_days" in page.content
    page = admin_client_logged_in.get(reverse("lifecycle:report_stages"), {"months": "x"})
    assert page.status_code == 422


def test_flows_page_draws_sankey_and_lists_loops(admin_client_logged_in, story):
    page = admin_client_logged_in.get(reverse("lifecycle:report_flows"),
                                      {"from": "2025-04-01", "to": "2025-06-30"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html and 'stroke-dasharray="6 4"' in html  # the win-back loop
    assert "churned → customer: <strong>1</strong>" in html
    csv = admin_client_logged_in.get(reverse("lifecycle:report_flows"),
                                     {"from": "2025-04-01", "to": "2025-06-30", "format": "csv"})
    body = b"".join(csv.streaming_content).decode("utf-8-sig")
    assert "churned,customer,win-back,1" in body


def test_sankey_layout_puts_lost_stages_below_and_scales_links(story):
    report = reports.flows(start=d(1, 1).date(), end=d(6, 30).date())
    nodes, links = sankey(report)
    by_key = {n.key: n for n in nodes}
    assert by_key["churned"].y > by_key["lead"].y and by_key[""].label == "New"
    assert by_key["lead"].value == 4  # 3 new + 1 from subscriber in, 4 out
    widest = max(links, key=lambda link: link.count)
    assert widest.count == 3 and widest.width == max(link.width for link in links)
    assert sankey(reports.flows(start=d(1, 1).date(), end=d(1, 1).date())) == ([], [])


def test_velocity_and_stages_pages_with_csv(admin_client_logged_in, story):
    page = admin_client_logged_in.get(reverse("lifecycle:report_velocity"),
                                      {"from": "2025-01-01", "to": "2025-12-31"})
    assert page.status_code == 200 and b"Kaplan" in page.content
    csv = admin_client_logged_in.get(reverse("lifecycle:report_velocity"),
                                     {"from": "2025-01-01", "to": "2025-12-31", "format": "csv"})
    rows = b"".join(csv.streaming_content).decode("utf-8-sig").splitlines()
    assert rows[0].startswith("stage,visits,completed,open,median_days")
    assert any(r.startswith("lead,4,4,0,10.0,108.0,") for r in rows)
    page = admin_client_logged_in.get(reverse("lifecycle:report_stages"), {"months": 6})
    assert page.status_code == 200 and b'id="stages-data"' in page.content
    csv = admin_client_logged_in.get(reverse("lifecycle:report_stages"),
                                     {"months": 2, "format": "csv"})
    rows = b"".join(csv.streaming_content).decode("utf-8-sig").splitlines()
    assert rows[0].startswith("month,subscriber,lead") and len(rows) == 3


def test_report_pages_need_permission():
    nobody = UserFactory()
    client = Client()
    client.force_login(nobody)
    for name in ("report_funnel", "report_flows", "report_velocity", "report_stages"):
        assert client.get(reverse(f"lifecycle:{name}")).status_code == 403
    anonymous = Client().get(reverse("lifecycle:report_funnel"))
    assert anonymous.status_code == 302


def test_sales_user_report_counts_own_contacts(sales_client, story):
    csv = sales_client.get(reverse("lifecycle:report_funnel"),
                           {**Q1, "window_days": 30, "format": "csv"})
    assert "all,lead,mql,2,1,0.5000" in b"".join(csv.streaming_content).decode("utf-8-sig")


def test_nav_lists_report_pages(admin_client_logged_in):
    html = admin_client_logged_in.get(reverse("lifecycle:report_funnel")).content.decode()
    for name in ("report_funnel", "report_flows", "report_velocity", "report_stages"):
        assert f'href="{reverse(f"lifecycle:{name}")}"' in html


# ---------------------------------------------------------------------------- journey

def _event(contact, kind: str, at: datetime) -> Event:
    return Event.objects.create(contact=contact, kind=kind, occurred_at=at, recorded_at=at,
                                source="test")


def test_journey_groups_touchpoints_by_stage_interval(admin_user):
    contact = ContactFactory(owner=admin_user)
    write_history(contact, [("lead", d(1, 10)), ("customer", d(2, 1)), ("churned", d(3, 1)),
                            ("customer", d(4, 1))])
    _event(contact, "page.viewed", d(1, 1))      # before the first stage
    _event(contact, "form.submitted", d(1, 10))  # at the moment it became a lead
    _event(contact, "email.opened", d(1, 20))
    _event(contact, "email.opened", d(1, 25))
    _event(contact, "order.completed", d(2, 1))
    _event(contact, "stage.changed", d(2, 1))    # the move itself is not a touchpoint
    _event(contact, "order.completed", d(4, 1))
    segments, before, more = journey(contact, now=datetime(2025, 5, 1, tzinfo=UTC))
    assert [(s.stage, s.life, [e.kind for e in s.touchpoints]) for s in segments] == [
        ("lead", 1, ["form.submitted", "email.opened", "email.opened"]),
        ("customer", 1, ["order.completed"]),
        ("churned", 1, []),
        ("customer", 2, ["order.completed"]),
    ]
    assert segments[0].kinds == [("email.opened", 2), ("form.submitted", 1)]
    assert segments[0].seconds == 22 * 86400 and segments[-1].seconds == 30 * 86400
    assert [e.kind for e in before] == ["page.viewed"] and more == 0
    _, _, more = journey(contact, limit=2)
    assert more == 4


def test_journey_fragment_renders_ribbon(admin_client_logged_in, admin_user,
                                         django_assert_max_num_queries):
    contact = ContactFactory(owner=admin_user)
    write_history(contact, [("lead", d(1, 10)), ("customer", d(2, 1))])
    _event(contact, "order.completed", d(2, 1))
    url = reverse("lifecycle:contact_journey", args=[contact.pk])
    assert url == f"/lifecycle/contacts/{contact.pk}/journey/"
    with django_assert_max_num_queries(8):
        page = admin_client_logged_in.get(url, HTTP_HX_REQUEST="true")
    assert page.status_code == 200
    html = page.content.decode()
    assert "journey-ribbon" in html and "order.completed \u00d71" in html
    assert html.count("<span style=\"flex:") == 2


def test_journey_hidden_contact_is_404(sales_client, sales_user):
    other = ContactFactory()  # not sally's
    url = reverse("lifecycle:contact_journey", args=[other.pk])
    assert sales_client.get(url).status_code == 404
    own = ContactFactory(owner=sales_user)
    page = sales_client.get(reverse("lifecycle:contact_journey", args=[own.pk]))
    assert page.status_code == 200 and b"No stage history yet" in page.content
