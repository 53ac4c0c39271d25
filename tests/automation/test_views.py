"""The workflow editor and pages: add/remove/reorder steps, field errors, activate, counts."""

from __future__ import annotations

import pytest
from django.test import Client

from clm.automation.models import Workflow

pytestmark = pytest.mark.django_db


def form(**extra):
    data = {"name": "Nurture", "description": "", "trigger_type": "event",
            "t_kind": "order.completed", "trigger_conditions": "[]", "enrollment_rule": "once",
            "reenroll_days": "", "goal_kind": "", "goal_conditions": "", "step_count": "0"}
    data.update(extra)
    return data


def test_editor_add_reorder_remove_then_save(admin_client_logged_in, nickname):
    c = admin_client_logged_in
    assert c.get("/automation/new/").status_code == 200
    r = c.post("/automation/new/", form(op="add", add_type="wait"))
    assert r.status_code == 200 and 'name="step-0-type"' in r.content.decode()
    r = c.post("/automation/new/", form(**{
        "step_count": "2", "step-0-type": "wait", "step-0-config": '{"days": 1}',
        "step-1-type": "set_property",
        "step-1-config": '{"field": "properties.nickname", "value": "x"}', "op": "up-1"}))
    html = r.content.decode()
    assert html.index('value="set_property" selected') < html.index('value="wait" selected')
    r = c.post("/automation/new/", form(**{
        "step_count": "2", "step-0-type": "wait", "step-0-config": '{"days": 1}',
        "step-1-type": "wait", "step-1-config": '{"days": 2}', "op": "remove-0"}))
    assert "step-1-type" not in r.content.decode()
    r = c.post("/automation/new/", form(**{
        "step_count": "1", "step-0-type": "set_property",
        "step-0-config": '{"field": "properties.nickname", "value": "x"}', "op": "save"}))
    wf = Workflow.objects.get()
    assert r.status_code == 302 and r.url == f"/automation/{wf.pk}/"
    assert wf.steps == [{"type": "set_property", "field": "properties.nickname", "value": "x"}]
    assert not wf.active
    c.post(f"/automation/{wf.pk}/activate/")
    wf.refresh_from_db()
    assert wf.active
    page = c.get(f"/automation/{wf.pk}/").content.decode()
    assert "step-stats" in page and "Set a property" in page


def test_editor_shows_errors_at_the_step(admin_client_logged_in):
    c = admin_client_logged_in
    r = c.post("/automation/new/", form(**{"step_count": "1", "step-0-type": "wait",
                                           "step-0-config": "{not json", "op": "save"}))
    assert r.status_code == 422 and "Not valid JSON" in r.content.decode()
    r = c.post("/automation/new/", form(**{"step_count": "1", "step-0-type": "send_email",
                                           "step-0-config": '{"template_id": 42}',
                                           "op": "save"}))
    html = r.content.decode()
    assert r.status_code == 422 and "Unknown email template" in html
    assert html.index("Unknown email template") > html.index('id="step-0"')
    assert not Workflow.objects.exists()


def test_pages_need_permissions(sales_user, admin_client_logged_in):
    admin_client_logged_in.post("/automation/playbooks/install/")
    wf = Workflow.objects.first()
    c = Client()
    c.force_login(sales_user)
    assert c.get("/automation/").status_code == 403
    assert c.post(f"/automation/{wf.pk}/activate/").status_code == 403
    assert c.get("/automation/notifications/").status_code == 200
    assert admin_client_logged_in.get("/automation/").status_code == 200


@pytest.mark.parametrize("extra", [
    {"step_count": "²", "op": "add", "add_type": "wait"},  # isdigit() but not int()
    {"step_count": "9" * 5000, "op": "add", "add_type": "wait"},
    {"step_count": "1", "step-0-type": "wait", "step-0-config": "{}", "op": "remove-²"},
    {"step_count": "1", "step-0-type": "wait", "step-0-config": "{}", "op": "up-" + "9" * 5000},
])
def test_editor_survives_junk_counts_and_indexes(admin_client_logged_in, extra):
    r = admin_client_logged_in.post("/automation/new/", form(**extra))
    assert r.status_code in (200, 422)
    assert not Workflow.objects.exists()


@pytest.mark.parametrize("extra", [
    {"trigger_type": "segment", "t_segment_id": "9" * 5000},
    {"trigger_type": "date", "t_field": "date_of_birth", "t_offset_days": "-" + "9" * 5000},
    {"enrollment_rule": "after_days", "reenroll_days": "9" * 5000},
])
def test_editor_refuses_huge_numbers_at_the_field(admin_client_logged_in, extra):
    r = admin_client_logged_in.post("/automation/new/", form(op="save", **extra))
    assert r.status_code == 422
    assert not Workflow.objects.exists()


def test_a_paused_workflow_can_be_deleted_from_its_page_after_confirming(admin_client_logged_in,
                                                                        nickname):
    c = admin_client_logged_in
    c.post("/automation/new/", form(**{
        "step_count": "1", "step-0-type": "set_property",
        "step-0-config": '{"field": "properties.nickname", "value": "x"}', "op": "save"}))
    wf = Workflow.objects.get()
    page = c.get(f"/automation/{wf.pk}/").content.decode()
    assert f'action="/automation/{wf.pk}/delete/"' in page
    assert "return confirm(" in page.split(f'action="/automation/{wf.pk}/delete/"')[1][:200]
    c.post(f"/automation/{wf.pk}/activate/")
    assert f'action="/automation/{wf.pk}/delete/"' not in c.get(f"/automation/{wf.pk}/").content.decode()
    c.post(f"/automation/{wf.pk}/pause/")
    assert c.post(f"/automation/{wf.pk}/delete/").status_code == 302
    assert not Workflow.objects.exists()


def test_editor_refuses_nul_text(admin_client_logged_in):
    r = admin_client_logged_in.post("/automation/new/", form(name="Nur\x00ture", op="save"))
    assert r.status_code == 422
    r = admin_client_logged_in.post("/automation/new/", form(**{
        "step_count": "1", "step-0-type": "notify", "step-0-config": '{"message": "\\u0000"}',
        "op": "save"}))
    assert r.status_code == 422
    assert not Workflow.objects.exists()
