import pytest

pytestmark = pytest.mark.django_db

# Each answered 500 on PostgreSQL ("text fields cannot contain NUL") before the middleware.
API_PATHS = ["/api/v1/properties?object_type=%00",
             "/api/v1/lifecycle/reports/funnel?source=%00",
             "/api/v1/lifecycle/reports/flows?source=a%00b",
             "/api/v1/lifecycle/reports/velocity?source=%00",
             "/api/v1/lifecycle/reports/stage-counts?source=%00",
             "/api/v1/contacts?q=%00"]


@pytest.mark.parametrize("path", API_PATHS)
def test_api_refuses_nul_in_query_with_the_parameter_named(admin_api, path):
    response = admin_api.get(path)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid"
    assert body["field"] == path.split("?")[1].split("=")[0]
    assert "NUL" in body["message"]


def test_pages_refuse_nul_in_query(admin_client_logged_in):
    response = admin_client_logged_in.get("/contacts/companies/?q=%00")
    assert response.status_code == 400
    assert "“q”" in response.content.decode()
    assert admin_client_logged_in.get("/contacts/companies/?q=acme").status_code == 200


def test_nul_in_idempotency_key_is_refused(admin_api):
    response = admin_api.post("/api/v1/contacts", {"email": "a@example.test"},
                              content_type="application/json",
                              headers={"Idempotency-Key": "a\x00b"})
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"
