"""The idempotent bulk ingest: POST /api/v1/events/batch and timeline.ingest.events_ingest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from clm.customers import services
from clm.customers.models import Contact
from clm.timeline import ingest
from clm.timeline.models import Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/batch"


def send(client, events):
    return client.post(URL, data=json.dumps({"events": events}), content_type="application/json")


def event(i: int, **over):
    body = {"idempotency_key": f"k-{i}", "email": f"visitor{i % 7}@example.com",
            "kind": "page.viewed", "occurred_at": f"2025-03-01T10:{i % 60:02d}:00Z",
            "properties": {"path": f"/p/{i}"}}
    body.update(over)
    return body


def test_batch_creates_events_and_unknown_contacts(admin_api, admin_user):
    known = ContactFactory(email="visitor0@example.com")
    response = send(admin_api, [event(i) for i in range(10)])
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["duplicate"], body["rejected"]) == (10, 0, 0)
    assert [r["index"] for r in body["results"]] == list(range(10))
    assert all(r["event_id"] for r in body["results"])
    # 7 distinct emails, one known: six contacts created, each with contact.created.
    assert Contact.objects.count() == 7
    new = Contact.objects.exclude(pk=known.pk)
    assert all(c.source == "ingest" and c.owner_id == admin_user.pk for c in new)
    assert Event.objects.filter(kind="contact.created").count() == 6
    assert Event.objects.filter(kind="page.viewed").count() == 10
    first = Event.objects.get(idempotency_key="k-0")
    assert first.contact_id == known.pk and first.properties == {"path": "/p/0"}
    # last_activity_at follows the newest event of each contact.
    known.refresh_from_db()
    assert known.last_activity_at == datetime(2025, 3, 1, 10, 7, tzinfo=UTC)
    created = Contact.objects.get(email="visitor1@example.com")
    assert created.created_at == datetime(2025, 3, 1, 10, 1, tzinfo=UTC)
    assert created.last_activity_at == datetime(2025, 3, 1, 10, 8, tzinfo=UTC)


def test_retried_batch_creates_nothing_new(admin_api):
    events = [event(i) for i in range(12)]
    first = send(admin_api, events).json()
    counts = (Event.objects.count(), Contact.objects.count())
    second = send(admin_api, events).json()
    assert (second["created"], second["duplicate"], second["rejected"]) == (0, 12, 0)
    assert [r["event_id"] for r in second["results"]] == [r["event_id"] for r in first["results"]]
    assert (Event.objects.count(), Contact.objects.count()) == counts


def test_last_activity_never_moves_backwards(admin_api):
    contact = ContactFactory(email="a@example.com",
                             last_activity_at=datetime(2025, 6, 1, tzinfo=UTC))
    send(admin_api, [event(1, email="a@example.com", occurred_at="2024-01-01T00:00:00Z")])
    contact.refresh_from_db()
    assert contact.last_activity_at == datetime(2025, 6, 1, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_known_contacts_last_activity_moves_in_the_worker_after_the_batch(admin_api):
    """With the real task backend the batch answers first; the worker moves last_activity_at."""
    from django.core.management import call_command
    from django.test import override_settings
    from django_tasks_db.models import DBTaskResult

    known = ContactFactory(email="visitor0@example.com",
                           last_activity_at=datetime(2025, 1, 1, tzinfo=UTC))
    db_tasks = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend",
                            "QUEUES": ["default"]}}
    with override_settings(TASKS=db_tasks):
        body = send(admin_api, [event(0), event(7), event(1)]).json()
        assert body["created"] == 3
        known.refresh_from_db()
        assert known.last_activity_at == datetime(2025, 1, 1, tzinfo=UTC)  # not yet
        # Created with the batch: a new contact's last activity is set at once.
        created = Contact.objects.get(email="visitor1@example.com")
        assert created.last_activity_at == datetime(2025, 3, 1, 10, 1, tzinfo=UTC)
        touch = DBTaskResult.objects.get(
            task_path="clm.timeline.tasks.contacts_last_activity_touch")
        assert touch.status == "READY"
        call_command("db_worker", batch=True, startup_delay=False, reload=False, verbosity=0)
    known.refresh_from_db()
    assert known.last_activity_at == datetime(2025, 3, 1, 10, 7, tzinfo=UTC)
    touch.refresh_from_db()
    assert touch.status == "SUCCESSFUL"


def test_mixed_batch_keeps_the_good_and_rejects_the_bad(admin_api):
    future = (timezone.now() + timedelta(days=2)).isoformat()
    events = [
        event(0),
        event(1, email="not-an-email"),
        event(2, idempotency_key=""),
        {k: v for k, v in event(3).items() if k != "idempotency_key"},
        event(4, occurred_at="yesterday"),
        event(5, occurred_at=future),
        event(6, kind="Page Viewed"),
        event(7, kind="contact.created"),
        event(8, email=None),
        event(9, colour="blue"),
        event(10, properties=["not", "an", "object"]),
        event(11, properties={"text": "a\x00b"}),
        event(12, properties={"blob": "x" * 20000}),
        "not an object",
        event(14, external_id="shop-14", email=None),
        event(15, occurred_at="0001-01-01T00:00:00+05:00"),
    ]
    response = send(admin_api, events)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    statuses = [r["status"] for r in results]
    assert statuses[0] == "created" and statuses[14] == "created"
    assert all(s == "rejected" for i, s in enumerate(statuses) if i not in (0, 14))
    fields = {i: results[i]["error"]["field"] for i in range(1, 16) if i != 14}
    assert fields == {1: "email", 2: "idempotency_key", 3: "idempotency_key", 4: "occurred_at",
                      5: "occurred_at", 6: "kind", 7: "kind", 8: "email", 9: "colour",
                      10: "properties", 11: "properties", 12: "properties", 13: None,
                      15: "occurred_at"}
    assert results[3]["error"]["code"] == "required"
    assert results[9]["error"]["code"] == "unknown_field"
    assert results[7]["error"]["code"] == "reserved_kind"
    assert Event.objects.exclude(kind="contact.created").count() == 2
    assert Contact.objects.get(external_id="shop-14").email is None


def test_keys_repeated_inside_one_batch(admin_api):
    response = send(admin_api, [event(1), event(1, kind="other.kind"), event(2)]).json()
    assert [r["status"] for r in response["results"]] == ["created", "duplicate", "created"]
    assert response["results"][1]["event_id"] == response["results"][0]["event_id"]
    assert Event.objects.filter(idempotency_key="k-1").count() == 1


def test_same_unknown_person_by_email_and_external_id_is_created_once(admin_api):
    send(admin_api, [event(1, email="p@example.com", external_id=None),
                     event(2, email="p@example.com", external_id="shop-9"),
                     event(3, email=None, external_id="shop-9")])
    person = Contact.objects.get()
    assert (person.email, person.external_id) == ("p@example.com", "shop-9")
    assert person.events.exclude(kind="contact.created").count() == 3


def test_external_id_wins_over_email(admin_api):
    by_ext = ContactFactory(email="one@example.com", external_id="ext-1")
    ContactFactory(email="two@example.com")
    send(admin_api, [event(1, email="two@example.com", external_id="ext-1")])
    assert Event.objects.get(idempotency_key="k-1").contact_id == by_ext.pk


def test_cap_on_batch_size(admin_api, settings):
    settings.CLM_INGEST_MAX_BATCH = 5
    response = send(admin_api, [event(i) for i in range(6)])
    assert response.status_code == 422
    assert response.json()["field"] == "events"
    assert Event.objects.count() == 0


@pytest.mark.parametrize("body", ['{"events": "nope"}', '{"events": [], "extra": 1}', "{bad",
                                  '{"nothing": []}'])
def test_malformed_batch_is_4xx(admin_api, body):
    response = admin_api.post(URL, data=body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert Event.objects.count() == 0


def test_required_custom_property_rejects_new_contacts_only(admin_api):
    ContactFactory(email="known@example.com")
    services.property_definition_create(object_type="contact", key="plan", label="Plan",
                                        type="text", required=True)
    results = send(admin_api, [event(1, email="known@example.com"),
                               event(2, email="unknown@example.com")]).json()["results"]
    assert [r["status"] for r in results] == ["created", "rejected"]
    assert results[1]["error"]["field"] == "properties.plan"
    assert not Contact.objects.filter(email="unknown@example.com").exists()


def test_events_on_invisible_contacts_are_rejected(make_user, make_api_client):
    alice, bob = make_user("sales", username="alice"), make_user("sales", username="bob")
    ContactFactory(email="bobs@example.com", owner=bob)
    mine = ContactFactory(email="mine@example.com", owner=alice)
    results = send(make_api_client(alice), [event(1, email="bobs@example.com"),
                                            event(2, email="mine@example.com")]).json()["results"]
    assert [r["status"] for r in results] == ["rejected", "created"]
    assert results[0]["error"]["code"] == "not_found"
    assert Event.objects.filter(idempotency_key__isnull=False).get().contact_id == mine.pk


@pytest.mark.parametrize("role", ["support"])
def test_ingest_needs_add_event_and_add_contact(make_user, make_api_client, role):
    client = make_api_client(make_user(role, username="helper"))
    response = send(client, [event(1)])
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert Event.objects.count() == 0 and Contact.objects.count() == 0


def test_read_only_token_cannot_ingest(admin_user, make_api_client):
    response = send(make_api_client(admin_user, scope="read"), [event(1)])
    assert response.status_code == 403
    assert Event.objects.count() == 0


def test_unauthenticated_ingest_is_401(client):
    assert send(client, [event(1)]).status_code == 401


def _count_queries(client, django_assert_max_num_queries, events) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = send(client, events)
    assert response.json()["created"] == len(events)
    return len(ctx.captured_queries)


def test_query_count_does_not_grow_with_batch_size(make_user, make_api_client,
                                                    django_assert_max_num_queries):
    client = make_api_client(make_user("marketing", username="integration"))
    # Half the events name known contacts, half unknown ones; both paths are exercised.
    for i in range(50):
        ContactFactory(email=f"known{i}@example.com")

    def batch(n: int, tag: str):
        return [event(i, idempotency_key=f"{tag}-{i}",
                      email=f"{tag}{i}@example.com" if i % 4 == 0 else f"known{i % 50}@example.com")
                for i in range(n)]

    send(client, batch(1, "warm-up"))  # first-request work: token last-used, caches
    small = _count_queries(client, django_assert_max_num_queries, batch(10, "a"))
    # Events go in one statement per batch. Django splits SQLite bulk_create at 999
    # parameters (39 contacts a statement): 25 new contacts stay within one, as on PostgreSQL.
    large = _count_queries(client, django_assert_max_num_queries, batch(100, "b"))
    assert large == small
    assert small <= 20


def test_concurrent_retry_falls_back_to_duplicate(admin_user, monkeypatch):
    """A bulk insert that meets a key written meanwhile answers duplicate, not an error."""
    contact = ContactFactory(email="c@example.com")
    # Another request stored k-1 but had not committed when this one looked the keys up.
    stored = Event.objects.create(contact=contact, kind="page.viewed", occurred_at=timezone.now(),
                                  recorded_at=timezone.now(), source="ingest",
                                  idempotency_key="k-1")
    monkeypatch.setattr(ingest, "_known_keys", lambda keys, actor: {})
    results = ingest.events_ingest(items=[event(1, email="c@example.com"),
                                          event(2, email="c@example.com")], actor=admin_user)
    assert [r.status for r in results] == ["duplicate", "created"]
    assert results[0].event_id == stored.pk
    assert Event.objects.filter(idempotency_key="k-1").count() == 1
    assert Event.objects.filter(idempotency_key="k-2").count() == 1


def test_concurrent_contact_creation_falls_back_to_existing(admin_user, monkeypatch):
    original = Contact.objects.bulk_create

    def racing(objs, **kwargs):
        # Another request creates the same person first.
        services.contact_create(data={"email": "racer@example.com"})
        raise IntegrityError("UNIQUE constraint failed: customers_contact.email")

    monkeypatch.setattr(Contact.objects, "bulk_create", racing)
    results = ingest.events_ingest(items=[event(1, email="racer@example.com"),
                                          event(2, email="fresh@example.com")], actor=admin_user)
    monkeypatch.setattr(Contact.objects, "bulk_create", original)
    assert [r.status for r in results] == ["created", "created"]
    assert Contact.objects.filter(email="racer@example.com").count() == 1
    assert Event.objects.filter(kind="contact.created").count() == 2


def test_duplicate_of_an_invisible_contacts_event_hides_its_id(make_user, make_api_client):
    owner, other = make_user("sales", username="own"), make_user("sales", username="oth")
    body = {"events": [{"idempotency_key": "k-secret", "email": "hidden@example.com",
                        "kind": "page.viewed", "occurred_at": "2026-01-01T00:00:00Z"}]}
    first = make_api_client(owner).post("/api/v1/events/batch", body,
                                        content_type="application/json").json()
    assert first["results"][0]["status"] == "created"
    again = make_api_client(other).post("/api/v1/events/batch", body,
                                        content_type="application/json").json()
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["event_id"] is None
