"""The analytics API and page: permissions, visibility, refresh."""

from __future__ import annotations

from datetime import date

import pytest
from django.test import Client

from clm.analytics import services
from clm.analytics.models import RefreshRun
from tests.analytics.test_services import _shop
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_clv_model_404_before_any_refresh(admin_api):
    response = admin_api.get("/api/v1/analytics/clv-model")
    assert response.status_code == 404
    assert response.json()["code"] == "no_model"


def test_roles_without_the_permission_get_403(sales_user, make_api_client):
    api = make_api_client(sales_user)
    assert api.get("/api/v1/analytics/clv-model").status_code == 403
    assert api.post("/api/v1/analytics/refresh", {}, content_type="application/json"
                    ).status_code == 403
    assert RefreshRun.objects.count() == 0


def test_anonymous_gets_401():
    assert Client().get("/api/v1/analytics/clv-model").status_code == 401


def test_contact_score_respects_visibility(make_user, make_api_client, admin_user):
    from django.contrib.auth.models import Permission

    contacts, _ = _shop(10)
    services.refresh_now(as_of=date(2024, 6, 30))
    seller = make_user("sales", username="seller")
    seller.user_permissions.add(Permission.objects.get(codename="view_contactscore"))
    mine = contacts[0]
    mine.owner = seller
    mine.save()
    api = make_api_client(seller, scope="read")
    ok = api.get(f"/api/v1/analytics/contacts/{mine.pk}/score")
    assert ok.status_code == 200, ok.content
    body = ok.json()
    assert body["time_unit"] == "weeks" and body["expected_purchases_days"] == 90
    assert set(body["health_parts"]) >= {"p_alive"}
    hidden = api.get(f"/api/v1/analytics/contacts/{contacts[1].pk}/score")
    assert hidden.status_code == 404
    assert api.get("/api/v1/analytics/contacts/999999/score").status_code == 404


def test_refresh_through_the_api(admin_api, django_capture_on_commit_callbacks):
    _shop(10)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post("/api/v1/analytics/refresh", {"as_of": "2024-06-30"},
                                  content_type="application/json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    status = admin_api.get(f"/api/v1/analytics/refresh/{run_id}").json()
    assert status["status"] == "done" and status["progress"] == 100
    model = admin_api.get("/api/v1/analytics/clv-model").json()
    assert model["as_of"] == "2024-06-30" and model["bgnbd"]["time_unit"] == "weeks"
    bad = admin_api.post("/api/v1/analytics/refresh", {"as_of": "2999-01-01"},
                         content_type="application/json")
    assert bad.status_code == 422 and bad.json()["field"] == "as_of"


def test_read_only_token_cannot_refresh(admin_user, make_api_client):
    api = make_api_client(admin_user, scope="read")
    assert api.post("/api/v1/analytics/refresh", {}, content_type="application/json"
                    ).status_code == 403


def test_model_page_shows_parameters_and_refresh_button(admin_client_logged_in):
    _shop(10)
    services.refresh_now(as_of=date(2024, 6, 30))
    page = admin_client_logged_in.get("/analytics/clv/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "BG/NBD" in text and "Refresh now" in text and "vendor/chart.umd.min.js" in text
    assert "diagnostics-data" in text


def test_model_page_forbidden_without_permission(sales_user):
    client = Client()
    client.force_login(sales_user)
    assert client.get("/analytics/clv/").status_code == 403
    assert client.post("/analytics/clv/refresh/").status_code == 403


def test_refresh_button_queues_a_run(admin_client_logged_in, django_capture_on_commit_callbacks):
    ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_logged_in.post("/analytics/clv/refresh/")
    assert response.status_code == 302
    assert RefreshRun.objects.get().status == RefreshRun.Status.DONE
