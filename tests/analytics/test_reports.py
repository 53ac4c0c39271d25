"""Cohorts, revenue, churn, CLV distribution, RFM grid, stages and at-risk, on small data
whose every number can be checked by hand (see `shop`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from clm.analytics import reports, services
from clm.analytics.models import ActivityMonth, ContactScore, PurchaseMonth, PurchaseSummary
from clm.timeline.services import event_record
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
TODAY = date(2024, 3, 15)


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)


def buy(contact, day: str, amount: str) -> None:
    services.transaction_record(contact=contact, occurred_at=at(day), amount=amount, source="test")


@pytest.fixture
def shop():
    """Five customers, purchases December 2023 to March 2024:

    A: Jan 100, Feb 50, Mar 25      B: Jan 200, Mar 20      C: Feb 10, Feb 10 (two days)
    D: Mar 40                       E: Dec 99 (cohort before the window), Jan 1
    """
    a, b, c, d, e = (ContactFactory(first_name=n) for n in "ABCDE")
    for contact, day, amount in [
            (a, "2024-01-05", "100"), (a, "2024-02-10", "50"), (a, "2024-03-01", "25"),
            (b, "2024-01-20", "200"), (b, "2024-03-03", "20"),
            (c, "2024-02-02", "10"), (c, "2024-02-20", "10"),
            (d, "2024-03-10", "40"),
            (e, "2023-12-01", "99"), (e, "2024-01-15", "1")]:
        buy(contact, day, amount)
    return {"A": a, "B": b, "C": c, "D": d, "E": e}


def test_purchases_keep_summary_and_months_current(shop):
    s = PurchaseSummary.objects.get(contact=shop["A"])
    assert (s.first_purchase_on, s.last_purchase_on, s.purchase_days, s.transactions) == (
        date(2024, 1, 5), date(2024, 3, 1), 3, 3)
    assert (s.total_amount, s.first_day_amount) == (175, 100)
    c = PurchaseMonth.objects.get(contact=shop["C"])
    assert (reports.month_label(c.month), c.revenue, c.purchase_days) == ("2024-02", 20, 2)
    # A second purchase on the first day counts towards that day's amount.
    buy(shop["A"], "2024-01-05", "0.50")
    s.refresh_from_db()
    assert (s.purchase_days, s.transactions, s.first_day_amount) == (3, 4, services.Decimal("100.50"))


def test_repeat_purchase_cohorts(shop):
    t = reports.purchase_cohorts(months=3, today=TODAY)
    assert t.cohorts == ["2024-01", "2024-02", "2024-03"]
    assert t.sizes == [2, 1, 1]  # A and B; C; D (E's cohort is December)
    assert t.values == [[2, 1, 2], [1, 0, None], [1, None, None]]
    assert t.percent == [[100.0, 50.0, 100.0], [100.0, 0.0, None], [100.0, None, None]]


def test_revenue_retention(shop):
    t = reports.revenue_retention(months=3, today=TODAY)
    assert t.sizes == [300, 20, 40]  # month-0 revenue of each cohort
    assert t.values[0] == [300, 50, 45]
    assert t.percent[0] == [100.0, 16.7, 15.0]
    assert t.percent[1] == [100.0, 0.0, None]


def test_churn_by_month(shop):
    s = reports.churn_by_month(months=3, today=TODAY)
    assert s.months == ["2024-01", "2024-02", "2024-03"]
    # January: E bought in December and again in January. February: of A, B, E (January),
    # only A bought again. March: of A and C (February), A bought again.
    assert s.columns["active_previous_month"] == [1, 3, 2]
    assert s.columns["churned"] == [0, 2, 1]
    assert s.columns["churn_rate_percent"] == [0.0, 66.7, 50.0]


def test_revenue_by_month(shop):
    s = reports.revenue_by_month(months=4, today=TODAY)
    assert s.months == ["2023-12", "2024-01", "2024-02", "2024-03"]
    assert s.columns["revenue"] == [99.0, 301.0, 70.0, 85.0]
    assert s.columns["customers"] == [1, 3, 2, 3]


def test_activity_cohorts_from_committed_events(django_capture_on_commit_callbacks):
    p, q, r = ContactFactory(), ContactFactory(), ContactFactory()
    for contact, created in [(p, "2024-01-10"), (q, "2024-01-25"), (r, "2024-02-05")]:
        type(contact).objects.filter(pk=contact.pk).update(created_at=at(created))
    with django_capture_on_commit_callbacks(execute=True):
        for contact, day in [(p, "2024-01-11"), (p, "2024-01-12"), (p, "2024-03-02"),
                             (q, "2024-02-14")]:
            event_record(contact=contact, kind="page.viewed", occurred_at=at(day))
    assert ActivityMonth.objects.count() == 3  # two January events of P are one month
    t = reports.activity_cohorts(months=3, today=TODAY)
    assert t.sizes == [2, 1, 0]
    assert t.values == [[1, 1, 1], [0, 0, None], [0, None, None]]
    assert t.percent[0] == [50.0, 50.0, 50.0]


def _score(contact, **values):
    return ContactScore.objects.create(contact=contact, as_of=TODAY, **values)


def test_clv_distribution_rfm_grid_and_stages():
    for clv in (0, 10, 20, 30, 1000):
        _score(ContactFactory(stage="customer"), predicted_clv=clv)
    h = reports.clv_distribution(bins=4)
    # Top 1 % of 5 is the largest, 1000: four bins 500 wide up to it.
    assert (h.width, h.total, h.counts) == (500, 5, [4, 0, 1, 0])
    assert h.labels == ["0-500", "500-1000", "1000-1500", "≥ 1500"]

    ContactScore.objects.all().delete()
    for r, f, segment in [(5, 5, "champions"), (5, 5, "champions"), (1, 1, "lost"),
                          (3, 2, "hibernating")]:
        _score(ContactFactory(stage="lead"), rfm_r=r, rfm_f=f, rfm_segment=segment)
    g = reports.rfm_grid()
    assert g["counts"][0] == [0, 0, 0, 0, 2]   # R = 5
    assert g["counts"][2] == [0, 1, 0, 0, 0]   # R = 3
    assert g["counts"][4] == [1, 0, 0, 0, 0]   # R = 1
    assert g["segments"] == {"champions": 2, "lost": 1, "hibernating": 1}
    stages = {s["stage"]: s["contacts"] for s in reports.stage_counts()}
    assert stages["customer"] == 5 and stages["lead"] == 4 and stages["promoter"] == 0


def test_at_risk_ranks_by_value_at_risk_among_visible_contacts(make_user):
    boss = make_user("manager", username="mgr", team="east")
    east = make_user("sales", username="e1", team="east")
    west = make_user("sales", username="w1", team="west")
    mine = ContactFactory(owner=east)
    theirs = ContactFactory(owner=west)
    cheap = ContactFactory(owner=east)
    _score(mine, predicted_clv=500, p_alive=0.5)
    _score(theirs, predicted_clv=900, p_alive=0.1)
    _score(cheap, predicted_clv=100, p_alive=0.1)
    assert [s.contact for s in reports.at_risk(boss)] == [mine, cheap]
    assert reports.at_risk(make_user("admin", username="a1"))[0].contact == theirs


def test_dashboard_summary(shop):
    _score(shop["A"], predicted_clv=100, p_alive=0.5)
    _score(shop["B"], predicted_clv=300, p_alive=0.9)
    s = reports.dashboard_summary()
    assert (s["contacts"], s["customers"], s["revenue_total"]) == (5, 5, 555.0)
    assert (s["predicted_clv_total"], s["predicted_clv_average"], s["p_alive_average"],
            s["value_at_risk_total"]) == (400, 200, 0.7, 80)
