"""Automation API: CRUD, activate/pause, stats, enrollments; permissions and field errors."""

from __future__ import annotations

import json

import pytest

from clm.automation.models import Enrollment, Workflow
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/automation"


def post(client, url, body=None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def patch(client, url, body):
    return client.patch(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def body(nickname):
    return {"name": "Tag buyers", "trigger": {"type": "event", "kind": "order.completed"},
            "steps": [{"type": "set_property", "field": "properties.nickname", "value": "b"}],
            "enrollment_rule": "every_time"}


def test_crud_activate_pause_and_stats(admin_api, body, emit):
    r = post(admin_api, f"{BASE}/workflows", body)
    assert r.status_code == 201, r.content
    wf = r.json()
    assert wf["active"] is False and wf["steps"][0]["type"] == "set_property"
    url = f"{BASE}/workflows/{wf['id']}"
    assert post(admin_api, f"{url}/activate").json()["active"] is True
    c = ContactFactory()
    emit(c, "order.completed")
    stats = admin_api.get(f"{url}/stats").json()
    assert stats[0]["entered"] == 1 and stats[0]["completed"] == 1
    page = admin_api.get(f"{url}/enrollments").json()
    assert page["items"][0]["contact_id"] == c.pk and page["items"][0]["status"] == "completed"
    assert admin_api.get(f"{BASE}/workflows").json()[0]["enrollments"] == {"completed": 1}
    r = patch(admin_api, url, {"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert admin_api.delete(url).status_code == 409  # active: pause first
    assert post(admin_api, f"{url}/pause").json()["active"] is False
    assert admin_api.delete(url).status_code == 204
    assert not Workflow.objects.exists()


def test_invalid_step_names_the_field(admin_api, body):
    body["steps"].append({"type": "send_email", "template_id": 999})
    r = post(admin_api, f"{BASE}/workflows", body)
    assert r.status_code == 422
    assert r.json()["field"] == "steps[1].template_id"
    body["steps"] = [{"type": "teleport"}]
    assert post(admin_api, f"{BASE}/workflows", body).json()["field"] == "steps[0].type"
    body["steps"] = [{"type": "wait_for", "kind": "x.y", "timeout_days": 1, "on_event": 1}]
    assert post(admin_api, f"{BASE}/workflows", body).json()["field"] == "steps[0].on_event"
    body["trigger"] = {"type": "stage", "stage": "nowhere"}
    assert post(admin_api, f"{BASE}/workflows", body).json()["field"] == "trigger.stage"


def test_permissions(sales_user, make_api_client, body, admin_api):
    wf_id = post(admin_api, f"{BASE}/workflows", body).json()["id"]
    client = make_api_client(sales_user)
    assert client.get(f"{BASE}/workflows").status_code == 403
    assert post(client, f"{BASE}/workflows", body).status_code == 403
    assert post(client, f"{BASE}/workflows/{wf_id}/activate").status_code == 403
    assert not Workflow.objects.get(pk=wf_id).active
    reader = make_api_client(sales_user, scope="read")
    from django.contrib.auth.models import Permission

    sales_user.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    assert reader.get(f"{BASE}/workflows").status_code == 200
    assert post(reader, f"{BASE}/workflows/{wf_id}/pause").status_code == 403  # read-only token
    assert client.get(f"{BASE}/workflows/{wf_id}/secret").status_code == 403


def test_enrollments_only_of_visible_contacts(sales_user, make_api_client, body, admin_api,
                                              emit, django_assert_max_num_queries):
    from django.contrib.auth.models import Permission

    wf_id = post(admin_api, f"{BASE}/workflows", body).json()["id"]
    post(admin_api, f"{BASE}/workflows/{wf_id}/activate")
    mine = ContactFactory(owner=sales_user)
    others = [ContactFactory() for _ in range(3)]
    for c in [mine, *others]:
        emit(c, "order.completed")
    for code in ("view_enrollment", "change_enrollment"):
        sales_user.user_permissions.add(Permission.objects.get(codename=code))
    client = make_api_client(sales_user)
    with django_assert_max_num_queries(8):
        items = client.get(f"{BASE}/workflows/{wf_id}/enrollments").json()["items"]
    assert [i["contact_id"] for i in items] == [mine.pk]
    hidden = Enrollment.objects.get(contact=others[0])
    assert post(client, f"{BASE}/enrollments/{hidden.pk}/stop").status_code == 404


def test_list_query_count_is_flat(admin_api, body, django_assert_max_num_queries):
    for i in range(5):
        post(admin_api, f"{BASE}/workflows", {**body, "name": f"w{i}"})
    with django_assert_max_num_queries(6):
        assert len(admin_api.get(f"{BASE}/workflows").json()) == 5


def test_team_scoped_manager_cannot_switch_a_workflow_on(make_user, make_api_client):
    from clm.automation.models import Workflow
    from clm.automation.services import workflow_create

    manager = make_user("manager", username="meg", team="east")
    manager.user_permissions.add(*__import__("django.contrib.auth.models", fromlist=["Permission"])
                                 .Permission.objects.filter(content_type__app_label="automation"))
    workflow = workflow_create(data={
        "name": "Tag buyers", "trigger": {"type": "event", "kind": "order.completed"},
        "steps": [{"type": "set_property", "field": "job_title", "value": "Buyer"}]})
    response = make_api_client(manager).post(f"/api/v1/automation/workflows/{workflow.pk}/activate")
    assert response.status_code == 403
    assert response.json()["code"] == "scope_too_narrow"
    assert not Workflow.objects.get(pk=workflow.pk).active


@pytest.mark.parametrize("number", ["9" * 5000, "9" * 25, 2**70])
def test_numbers_too_long_for_any_id_are_422_naming_the_field(admin_api, body, number):
    # int() refuses strings of more than 4300 digits: that was a 500.
    body["trigger"] = {"type": "segment", "segment_id": number}
    r = post(admin_api, f"{BASE}/workflows", body)
    assert r.status_code == 422 and r.json()["field"] == "trigger.segment_id"
    body["trigger"] = {"type": "event", "kind": "order.completed"}
    body["steps"] = [{"type": "wait", "days": number}]
    r = post(admin_api, f"{BASE}/workflows", body)
    assert r.status_code == 422 and r.json()["field"] == "steps[0].days"
    assert r.json()["message"] == "Must be between 0 and 100000."


def test_a_lower_bound_alone_reads_as_such(admin_api, body):
    body["trigger"] = {"type": "segment", "segment_id": -5}
    r = post(admin_api, f"{BASE}/workflows", body)
    assert r.status_code == 422 and r.json()["message"] == "Must be 1 or more."


@pytest.mark.parametrize("field, value", [
    ("name", "Tag\x00buyers"), ("description", "\x00"),
    ("trigger", {"type": "event", "kind": "order.completed",
                 "conditions": [{"field": "total", "op": "eq", "value": "\x00"}]}),
    ("steps", [{"type": "notify", "message": "hi\x00"}]),
])
def test_nul_text_is_422_naming_the_field_not_a_database_error(admin_api, body, field, value):
    # PostgreSQL cannot store NUL in text: unrefused, that was a 500 there.
    body[field] = value
    r = post(admin_api, f"{BASE}/workflows", body)
    assert r.status_code == 422 and r.json()["field"] == field
    assert not Workflow.objects.exists()


def test_enrollments_of_an_unknown_status_is_422(admin_api, body):
    wf = post(admin_api, f"{BASE}/workflows", body).json()
    for status in ("bogus", "active\x00"):
        r = admin_api.get(f"{BASE}/workflows/{wf['id']}/enrollments", {"status": status})
        assert r.status_code == 422 and r.json()["field"] == "status"
    assert admin_api.get(f"{BASE}/workflows/{wf['id']}/enrollments",
                         {"status": "failed"}).status_code == 200
