import pytest

from clm.customers.models import Company

pytestmark = pytest.mark.django_db


def post(client, path, body, key):
    return client.post(path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


def test_retry_with_the_same_key_replays_the_first_answer(admin_api):
    first = post(admin_api, "/api/v1/companies", {"name": "Acme"}, "k-1")
    again = post(admin_api, "/api/v1/companies", {"name": "Acme"}, "k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Company.objects.filter(name="Acme").count() == 1
    other = post(admin_api, "/api/v1/companies", {"name": "Acme"}, "k-2")
    assert other.status_code == 201  # a new key is a new request
    assert Company.objects.filter(name="Acme").count() == 2


def test_same_key_for_another_request_is_refused(admin_api):
    post(admin_api, "/api/v1/companies", {"name": "Acme"}, "k-1")
    reused = post(admin_api, "/api/v1/companies", {"name": "Other"}, "k-1")
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert not Company.objects.filter(name="Other").exists()


def test_keys_are_private_to_a_caller(admin_user, make_api_client):
    one, two = make_api_client(admin_user), make_api_client(admin_user)
    post(one, "/api/v1/companies", {"name": "Acme"}, "shared")
    response = post(two, "/api/v1/companies", {"name": "Acme"}, "shared")
    assert "Idempotent-Replayed" not in response
    assert Company.objects.filter(name="Acme").count() == 2


def test_bad_key_is_a_400(admin_api):
    response = post(admin_api, "/api/v1/companies", {"name": "Acme"}, "x" * 201)
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"
    assert not Company.objects.exists()


def test_an_upload_larger_than_the_memory_limit_is_compared_by_its_parsed_file(
        admin_api, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from clm.customers.models import Contact

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000  # the file below is about 6 KB
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1_000  # and goes to a temporary file
    rows = "".join(f"person{i}@example.com,Person {i}\n" for i in range(200))

    def upload(text: str, key: str = "import-1"):
        return admin_api.post(
            "/api/v1/imports", {"file": SimpleUploadedFile("people.csv", text.encode()),
                                "type": "contacts"}, HTTP_IDEMPOTENCY_KEY=key)

    first = upload("Email,First Name\n" + rows)
    assert first.status_code == 201, first.content
    assert first.json()["created"] == 200
    again = upload("Email,First Name\n" + rows)
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert again.json()["id"] == first.json()["id"]
    other = upload("Email,First Name\n" + rows.replace("Person 7", "Someone"))
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert Contact.objects.count() == 200


@pytest.mark.parametrize("key", ["big", None])
def test_a_plain_body_over_the_memory_limit_is_a_413(admin_api, settings, key):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = admin_api.post("/api/v1/companies", {"name": "A" * 200},
                              content_type="application/json", **headers)
    assert response.status_code == 413
    assert (response.json()["code"], response.json()["field"]) == ("request_too_large", "body")
    assert not Company.objects.exists()
