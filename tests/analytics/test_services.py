"""Purchases from events and CSV, and the refresh as of a date."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest

from clm.analytics import rfm, services
from clm.analytics.models import ContactScore, RefreshRun, Transaction
from clm.core.errors import Conflict
from clm.timeline.services import event_record
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)


def order(contact, day: str, amount, order_id: str | None = None):
    props = {"amount": amount, "currency": "eur"}
    if order_id:
        props["order_id"] = order_id
    return event_record(contact=contact, kind="order.completed", occurred_at=at(day),
                        source="ingest", properties=props)


@pytest.mark.django_db(transaction=True)
def test_purchases_from_events_are_recorded_by_the_task_worker():
    """With the real task backend the commit only enqueues; `db_worker` records the purchase
    and the contact's active month."""
    from django.core.management import call_command
    from django.db import transaction
    from django.test import override_settings

    from clm.analytics.models import ActivityMonth

    contact = ContactFactory()
    db_tasks = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend",
                            "QUEUES": ["default"]}}
    with override_settings(TASKS=db_tasks):
        with transaction.atomic():
            order(contact, "2024-03-01", "19.90", "W-1")
        assert not Transaction.objects.exists()
        call_command("db_worker", batch=True, startup_delay=False, reload=False, verbosity=0)
    t = Transaction.objects.get()
    assert (t.contact_id, t.order_reference, t.amount) == (contact.pk, "W-1",
                                                          services.Decimal("19.90"))
    # Active in the month of the order and in the month it was created (contact.created).
    assert ActivityMonth.objects.filter(contact=contact).count() == 2


def test_order_completed_event_becomes_one_transaction(django_capture_on_commit_callbacks):
    contact = ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        event = order(contact, "2024-03-01", "19.90", "A-1")
    t = Transaction.objects.get()
    assert (t.contact, t.amount, t.currency, t.order_reference, t.source) == (
        contact, services.Decimal("19.90"), "EUR", "A-1", "event")
    assert t.occurred_on == date(2024, 3, 1)
    # The same event delivered again, and another event for the same order: still one row.
    assert services.transactions_from_events([event.pk]) == 0
    with django_capture_on_commit_callbacks(execute=True):
        order(contact, "2024-03-01", "19.90", "A-1")
    assert Transaction.objects.count() == 1


def test_events_without_order_id_or_with_a_bad_amount(django_capture_on_commit_callbacks):
    contact = ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        e1 = order(contact, "2024-03-01", 10)
        order(contact, "2024-03-02", "ten")
        event_record(contact=contact, kind="page.viewed", properties={"amount": 5})
    assert Transaction.objects.count() == 1
    assert services.transactions_from_events([e1.pk]) == 0


def test_csv_import_reports_bad_rows_by_line_and_upserts_by_reference():
    existing = ContactFactory(email="ann@example.com")
    csv_text = ("email,customer_id,date,amount,order_reference\n"
                "ann@example.com,,2024-01-05,10.00,R1\n"
                ",C-9,2024-01-06,5,R2\n"
                ",C-9,not-a-date,5,R3\n"
                ",,2024-01-06,5,R4\n"
                ",C-9,2024-01-07,-3,R5\n"
                ",C-9,2024-01-08,7,\n")
    result = services.transactions_import(file=io.StringIO(csv_text))
    assert (result.rows, result.created, result.contacts_created) == (6, 3, 1)
    assert [(e["line"], e["field"]) for e in result.errors] == [
        (4, "date"), (5, "customer_id"), (6, "amount")]
    assert Transaction.objects.get(order_reference="R1").contact == existing
    again = services.transactions_import(
        file=io.StringIO("email,date,amount,order_reference\nann@example.com,2024-01-05,12,R1\n"))
    assert (again.created, again.updated) == (0, 1)
    assert Transaction.objects.get(order_reference="R1").amount == services.Decimal("12.00")


def test_csv_import_needs_the_columns():
    with pytest.raises(services.ValidationFailed) as exc:
        services.transactions_import(file=io.StringIO("email,amount\nx@example.com,1\n"))
    assert exc.value.field == "date"


def _purchase(contact, day: str, amount: str):
    return services.transaction_record(contact=contact, occurred_at=at(day), amount=amount,
                                       currency="USD", source="test")


def _shop(n: int = 40):
    """n buyers with purchases before and after 2024-06-30, and one contact who never bought."""
    contacts = [ContactFactory() for _ in range(n)]
    for i, c in enumerate(contacts):
        start = date(2024, 1, 1) + timedelta(days=i)
        for k in range(i % 5 + 1):
            _purchase(c, (start + timedelta(days=17 * k)).isoformat(), f"{10 + i}.50")
        _purchase(c, "2024-08-01", "999.00")  # after the as-of date
    return contacts, ContactFactory()


def test_refresh_as_of_ignores_later_purchases():
    contacts, never = _shop()
    run = services.refresh_now(as_of=date(2024, 6, 30))
    assert run.status == RefreshRun.Status.DONE, run.failure
    assert run.customer_count == 40 and run.contact_count == 41
    assert run.bgnbd["time_unit"] == "weeks"
    score = ContactScore.objects.get(contact=contacts[4])
    assert score.purchases == 5 and score.frequency == 4
    assert score.last_purchase_on < date(2024, 6, 30)
    assert score.historical_clv == pytest.approx(5 * 14.5)
    assert 0 < score.p_alive <= 1 and score.churn_risk == pytest.approx(1 - score.p_alive)
    assert score.predicted_clv > 0 and 1 <= score.clv_decile <= 10
    assert score.rfm_segment in rfm.SEGMENTS
    assert "p_alive" in score.health_parts and score.health_score is not None
    blank = ContactScore.objects.get(contact=never)
    assert blank.purchases == 0 and blank.p_alive is None and blank.churn_risk is None
    assert blank.rfm_segment == ""

    # A later refresh sees the August purchases; the rows are replaced, not added.
    services.refresh_now(as_of=date(2024, 8, 31))
    assert ContactScore.objects.count() == 41
    assert ContactScore.objects.get(contact=contacts[4]).purchases == 6


def test_health_uses_nps_tickets_and_failed_payments_when_they_exist():
    contacts, _ = _shop(12)
    c = contacts[0]
    event_record(contact=c, kind="nps.answered", occurred_at=at("2024-06-01"),
                 properties={"score": 3})
    event_record(contact=c, kind="ticket.opened", occurred_at=at("2024-06-02"))
    event_record(contact=c, kind="payment.failed", occurred_at=at("2024-06-03"))
    services.refresh_now(as_of=date(2024, 6, 30))
    parts = ContactScore.objects.get(contact=c).health_parts
    assert parts["nps"] == pytest.approx(0.3)
    assert parts["open_tickets"] == pytest.approx(0.5)
    assert parts["failed_payments"] == pytest.approx(0.5)
    assert parts["events_30d"] == 3
    other = ContactScore.objects.get(contact=contacts[1]).health_parts
    assert "nps" not in other and "open_tickets" not in other


def test_refresh_without_purchases_scores_contacts_and_reports_why():
    ContactFactory()
    run = services.refresh_now(as_of=date(2024, 6, 30))
    assert run.status == RefreshRun.Status.DONE
    assert run.bgnbd == {} and run.diagnostics["errors"]
    assert ContactScore.objects.count() == 1


def test_refresh_request_queues_a_task_and_refuses_a_second(django_capture_on_commit_callbacks):
    _shop(10)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.refresh_request(as_of=date(2024, 6, 30))
    run.refresh_from_db()
    assert run.status == RefreshRun.Status.DONE and run.progress == 100
    RefreshRun.objects.create(as_of=date(2024, 6, 30), created_at=run.created_at)
    with pytest.raises(Conflict):
        services.refresh_request()


def test_scheduled_refresh_skips_a_recent_run_and_replaces_an_abandoned_one():
    from django.utils import timezone

    from clm.analytics.tasks import analytics_refresh_periodic
    from clm.core.scheduler import declared_jobs

    assert ("analytics.refresh", "clm.analytics.tasks.analytics_refresh_periodic", 24 * 3600) \
        in declared_jobs()
    _shop(10)
    now = timezone.now()
    busy = RefreshRun.objects.create(as_of=date(2024, 6, 30), created_at=now,
                                     status=RefreshRun.Status.RUNNING)
    assert services.refresh_scheduled(now=now) is None
    assert RefreshRun.objects.count() == 1 and not ContactScore.objects.exists()

    RefreshRun.objects.filter(pk=busy.pk).update(created_at=now - timedelta(hours=7))
    analytics_refresh_periodic.enqueue()  # the scheduler's path (immediate backend in tests)
    busy.refresh_from_db()
    assert busy.status == RefreshRun.Status.FAILED and "Abandoned" in busy.failure
    latest = RefreshRun.objects.latest("pk")
    assert latest.status == RefreshRun.Status.DONE and latest.as_of == timezone.localdate()
    assert ContactScore.objects.count() == 11  # ten buyers and one who never bought


def test_refresh_writes_what_the_model_path_computes():
    """The scores derived in SQL (frequency, recency, T, spend, …) equal the NumPy model path's."""
    import numpy as np

    from clm.analytics import scoring, summary

    _shop(12)
    run = services.refresh_now(as_of=date(2024, 6, 30))
    s = summary.read(summary.source_for(date(2024, 6, 30)))
    summary.drop_as_of_table()
    expected = scoring.score(s, (date(2024, 6, 30) - date(1970, 1, 1)).days)
    rows = {sc.contact_id: sc for sc in ContactScore.objects.filter(contact_id__in=s.contact_id)}
    for i, cid in enumerate(s.contact_id.tolist()):
        sc = rows[cid]
        assert (sc.frequency, sc.rfm_r, sc.rfm_f, sc.rfm_m, sc.rfm_segment, sc.clv_decile) == (
            expected.frequency[i], expected.rfm_r[i], expected.rfm_f[i], expected.rfm_m[i],
            expected.rfm_segment[i], expected.clv_decile[i])
        np.testing.assert_allclose(
            [sc.recency, sc.T, sc.monetary, sc.average_spend, sc.historical_clv, sc.p_alive,
             sc.predicted_clv, sc.expected_purchases, sc.days_since_last_purchase,
             sc.tenure_days],
            [expected.recency[i], expected.T[i], expected.monetary[i],
             expected.average_spend[i], expected.historical_clv[i], expected.p_alive[i],
             expected.predicted_clv[i], expected.expected_purchases[i],
             expected.days_since_last[i], expected.tenure_days[i]], rtol=1e-9)
        assert sc.value_at_risk == pytest.approx(sc.predicted_clv * (1 - sc.p_alive))
    assert run.contact_count == 13


def test_import_moving_an_order_updates_both_summaries():
    from clm.analytics.models import PurchaseSummary

    services.transactions_import(file=io.StringIO(
        "customer_id,date,amount,order_reference\nC-1,2024-01-05,10,R1\nC-1,2024-01-06,5,R2\n"))
    services.transactions_import(file=io.StringIO(
        "customer_id,date,amount,order_reference\nC-2,2024-01-06,5,R2\n"))
    totals = dict(PurchaseSummary.objects.values_list("contact__external_id", "total_amount"))
    assert totals == {"C-1": 10, "C-2": 5}


def test_merge_moves_purchases_into_the_survivors_summary(django_capture_on_commit_callbacks):
    from clm.analytics.models import PurchaseSummary
    from clm.customers.merging import contact_merge

    keep, lose = ContactFactory(), ContactFactory()
    _purchase(keep, "2024-02-01", "10.00")
    _purchase(lose, "2024-01-01", "5.00")
    with django_capture_on_commit_callbacks(execute=True):
        contact_merge(survivor=keep, losers=[lose])
    s = PurchaseSummary.objects.get(contact=keep)
    assert (s.purchase_days, s.total_amount, s.first_purchase_on) == (2, 15, date(2024, 1, 1))


def test_refresh_command_can_rebuild_the_summaries(capsys):
    from django.core.management import call_command

    from clm.analytics.models import PurchaseSummary

    contacts, _ = _shop(3)
    PurchaseSummary.objects.all().delete()  # as after a load that bypassed the services
    call_command("analytics_refresh", "--as-of", "2024-12-31", "--rebuild-summaries")
    assert "Rebuilt the purchase summaries of 3 customers" in capsys.readouterr().out
    assert ContactScore.objects.get(contact=contacts[2]).purchases == 4


def test_values_derived_on_read_agree_in_sql_and_python():
    """What is computed on read (frequency, recency, health, …) is the same whether a queryset
    computes it (segment filters, reports) or a loaded row does (API, automation)."""
    from clm.analytics import derived

    contacts, _ = _shop(12)
    c = contacts[0]
    event_record(contact=c, kind="nps.answered", occurred_at=at("2024-06-01"),
                 properties={"score": 8})
    event_record(contact=c, kind="ticket.opened", occurred_at=at("2024-06-02"))
    event_record(contact=contacts[1], kind="page.viewed", occurred_at=at("2024-03-01"))
    services.refresh_now(as_of=date(2024, 6, 30))
    rows = list(ContactScore.objects.annotate(
        **{f"sql_{name}": derived.Derived(name) for name in derived.NAMES}))
    assert len(rows) == 13
    for row in rows:
        for name in derived.NAMES:
            in_sql, in_python = getattr(row, f"sql_{name}"), getattr(row, name)
            assert (in_sql is None) == (in_python is None), (row.contact_id, name)
            if in_python is not None:
                assert in_sql == pytest.approx(in_python, rel=1e-12), (row.contact_id, name)
    mine = next(r for r in rows if r.contact_id == c.pk)
    assert mine.health_parts["nps"] == pytest.approx(0.8)
    assert mine.health_parts["open_tickets"] == pytest.approx(0.5)
    # Filtering and ordering on a derived value use those numbers.
    healthy = {r.contact_id for r in rows if r.health_score is not None and r.health_score >= 60}
    assert set(ContactScore.objects.filter(health_score__gte=60)
               .values_list("contact_id", flat=True)) == healthy
    ranked = list(ContactScore.objects.filter(value_at_risk__isnull=False)
                  .order_by("-value_at_risk", "contact_id").values_list("contact_id", flat=True))
    assert ranked == [r.contact_id for r in sorted(
        (r for r in rows if r.value_at_risk is not None),
        key=lambda r: (-r.value_at_risk, r.contact_id))]


def test_every_contact_gets_a_row_whether_or_not_all_of_them_bought():
    contacts = [ContactFactory() for _ in range(3)]
    for c in contacts:
        _purchase(c, "2024-01-05", "10.00")
    run = services.refresh_now(as_of=date(2024, 6, 30))
    assert run.contact_count == 3 and ContactScore.objects.count() == 3
    later = ContactFactory()  # no purchase: a blank row from the next refresh on
    run = services.refresh_now(as_of=date(2024, 6, 30))
    assert run.contact_count == 4
    blank = ContactScore.objects.get(contact=later)
    assert (blank.purchases, blank.frequency, blank.p_alive, blank.rfm_segment) == (0, None, None, "")
