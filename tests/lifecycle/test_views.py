"""Stage and rule editors and the contact stage fragment."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from clm.lifecycle.models import Rule, Stage, StageChange
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_stage_editor_lists_adds_and_edits(admin_client_logged_in):
    client = admin_client_logged_in
    page = client.get(reverse("lifecycle:stage_list"))
    assert page.status_code == 200 and b"opportunity" in page.content
    client.post(reverse("lifecycle:stage_list"),
                {"key": "advocate", "label": "Advocate", "order": 75, "group": "customer"})
    assert Stage.objects.get(key="advocate").label == "Advocate"
    client.post(reverse("lifecycle:stage_edit", args=["lead"]),
                {"label": "Lead!", "order": 20, "group": "prospect"})
    assert Stage.objects.get(key="lead").label == "Lead!"


def test_rule_editor_creates_and_reports_bad_json(admin_client_logged_in):
    client = admin_client_logged_in
    assert client.get(reverse("lifecycle:rule_list")).status_code == 200
    url = reverse("lifecycle:rule_create")
    data = {"name": "Trial", "event_kind": "trial.started", "target_stage": "sql",
            "conditions": "[{\"field\": \"plan\", \"op\": \"eq\", \"value\": \"pro\"}]",
            "priority": 50, "forward_only": "on", "active": "on"}
    assert client.post(url, data).status_code == 302
    rule = Rule.objects.get(name="Trial")
    assert rule.conditions == [{"field": "plan", "op": "eq", "value": "pro"}]
    page = client.post(url, {**data, "conditions": "[{"})
    assert page.status_code == 200 and b"Not valid JSON" in page.content
    assert client.get(reverse("lifecycle:rule_edit", args=[rule.pk])).status_code == 200


def test_sales_user_cannot_edit(sales_user):
    client = Client()
    client.force_login(sales_user)
    assert client.post(reverse("lifecycle:stage_list"),
                       {"key": "x", "label": "X", "order": 1, "group": "prospect"}
                       ).status_code == 403
    assert not Stage.objects.filter(key="x").exists()


def test_contact_fragment_shows_history_and_moves(admin_client_logged_in, admin_user, emit):
    contact = ContactFactory(owner=admin_user)
    emit(contact, "form.submitted", 0)
    url = reverse("lifecycle:contact_stage", args=[contact.pk])
    page = admin_client_logged_in.get(url)
    assert page.status_code == 200 and b"lead" in page.content and b"Reason" in page.content
    page = admin_client_logged_in.post(url, {"to_stage": "sql", "reason": "Met at <b>expo</b>"},
                                       HTTP_HX_REQUEST="true")
    assert page.status_code == 200
    assert b"Met at &lt;b&gt;expo&lt;/b&gt;" in page.content
    contact.refresh_from_db()
    assert contact.stage == "sql"
    page = admin_client_logged_in.post(url, {"to_stage": "mql", "reason": ""},
                                       HTTP_HX_REQUEST="true")
    assert page.status_code == 422


def test_contact_fragment_hides_invisible_contacts(sales_user, make_user):
    contact = ContactFactory(owner=make_user("sales", username="someone"))
    client = Client()
    client.force_login(sales_user)
    url = reverse("lifecycle:contact_stage", args=[contact.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"to_stage": "sql", "reason": "x"}).status_code == 404
    assert not StageChange.objects.exists()
