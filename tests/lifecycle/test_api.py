"""The lifecycle API: permissions, visibility, validation, and query counts."""

from __future__ import annotations

import json

import pytest

from clm.lifecycle.models import Rule, Stage, StageChange
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/lifecycle"


def post(client, url, body, method="post"):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def test_stages_listed_in_order(admin_api, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = admin_api.get(f"{BASE}/stages")
    assert response.status_code == 200
    assert [s["key"] for s in response.json()] == [
        "subscriber", "lead", "mql", "sql", "opportunity", "customer", "promoter", "churned",
        "disqualified"]


def test_stage_create_and_patch(admin_api):
    response = post(admin_api, f"{BASE}/stages",
                    {"key": "advocate", "label": "Advocate", "order": 75, "group": "customer"})
    assert response.status_code == 201
    response = post(admin_api, f"{BASE}/stages/advocate", {"label": "Fan"}, "patch")
    assert response.status_code == 200 and response.json()["label"] == "Fan"
    response = post(admin_api, f"{BASE}/stages/lead", {"group": "nope"}, "patch")
    assert response.status_code == 422 and response.json()["field"] == "group"
    assert post(admin_api, f"{BASE}/stages",
                {"key": "lead", "label": "L", "order": 1, "group": "prospect"}).status_code == 409


def test_rules_list_create_patch(admin_api, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = admin_api.get(f"{BASE}/rules")
    assert response.status_code == 200
    assert len(response.json()) == Rule.objects.count() >= 15
    body = {"name": "Webinar", "event_kind": "webinar.attended", "target_stage": "mql",
            "conditions": [{"field": "minutes", "op": "gte", "value": 30}]}
    response = post(admin_api, f"{BASE}/rules", body)
    assert response.status_code == 201, response.content
    rule_id = response.json()["id"]
    response = post(admin_api, f"{BASE}/rules/{rule_id}", {"active": False}, "patch")
    assert response.json()["active"] is False
    bad = {**body, "target_stage": "nowhere"}
    response = post(admin_api, f"{BASE}/rules", bad)
    assert response.status_code == 422 and response.json()["field"] == "target_stage"
    bad = {**body, "conditions": [{"field": "x", "op": "like", "value": 1}]}
    assert post(admin_api, f"{BASE}/rules", bad).status_code == 422
    bad = {**body, "event_kind": "stage.changed"}
    response = post(admin_api, f"{BASE}/rules", bad)
    assert response.status_code == 422 and response.json()["field"] == "event_kind"


def test_sales_user_cannot_edit_stages_or_rules(sales_user, make_api_client):
    client = make_api_client(sales_user)
    response = post(client, f"{BASE}/stages",
                    {"key": "x", "label": "X", "order": 1, "group": "prospect"})
    assert response.status_code == 403
    assert not Stage.objects.filter(key="x").exists()


def test_history_and_move(admin_api, admin_user, emit, django_assert_max_num_queries):
    contact = ContactFactory(owner=admin_user)
    emit(contact, "form.submitted", 0)
    emit(contact, "order.completed", 1)
    with django_assert_max_num_queries(12):
        response = admin_api.get(f"{BASE}/contacts/{contact.pk}/history")
    body = response.json()
    assert body["stage"] == "customer" and body["life"] == 1
    assert [i["to_stage"] for i in body["items"]] == ["lead", "customer"]
    assert body["items"][0]["seconds_in_stage"] == 86400
    response = post(admin_api, f"{BASE}/contacts/{contact.pk}/move",
                    {"to_stage": "lead", "reason": "Refunded"})
    assert response.status_code == 200
    assert response.json()["items"][-1]["actor_type"] == "api"
    assert response.json()["stage"] == "lead"
    response = post(admin_api, f"{BASE}/contacts/{contact.pk}/move",
                    {"to_stage": "mql", "reason": ""})
    assert response.status_code == 422 and response.json()["field"] == "reason"


def test_invisible_contact_is_404_and_unchanged(sales_user, make_api_client, make_user):
    other = make_user("sales", username="other")
    contact = ContactFactory(owner=other)
    client = make_api_client(sales_user)
    assert client.get(f"{BASE}/contacts/{contact.pk}/history").status_code == 404
    response = post(client, f"{BASE}/contacts/{contact.pk}/move",
                    {"to_stage": "lead", "reason": "x"})
    assert response.status_code == 404
    assert not StageChange.objects.filter(contact=contact).exists()


def test_move_without_permission_is_403(make_user, make_api_client):
    support = make_user("support", username="sue")  # sees all contacts, may not move stages
    contact = ContactFactory()
    client = make_api_client(support)
    response = post(client, f"{BASE}/contacts/{contact.pk}/move",
                    {"to_stage": "lead", "reason": "x"})
    assert response.status_code == 403
    contact.refresh_from_db()
    assert contact.stage == ""


def test_bulk_move(admin_api, admin_user):
    contacts = [ContactFactory(owner=admin_user) for _ in range(3)]
    response = post(admin_api, f"{BASE}/contacts/move",
                    {"contact_ids": [c.pk for c in contacts], "to_stage": "sql",
                     "reason": "Trade show"})
    assert response.status_code == 200 and response.json() == {"moved": 3}
    response = post(admin_api, f"{BASE}/contacts/move",
                    {"contact_ids": [contacts[0].pk, 999999], "to_stage": "lead",
                     "reason": "x"})
    assert response.status_code == 404
    assert StageChange.objects.filter(to_stage="lead").count() == 0


def test_read_only_token_cannot_move(admin_user, make_api_client):
    contact = ContactFactory(owner=admin_user)
    client = make_api_client(admin_user, scope="read")
    response = post(client, f"{BASE}/contacts/{contact.pk}/move",
                    {"to_stage": "lead", "reason": "x"})
    assert response.status_code == 403
