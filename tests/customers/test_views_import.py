"""Import wizard, duplicates review, the imports/duplicates API and the import_csv command."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from clm.customers.models import Contact, ImportJob, MergeRecord
from clm.timeline.models import Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

CSV = ("First Name,Last Name,Email Address,Phone Number\n"
       "Ada,Lovelace,ada@example.com,\n"
       "Bad,Row,nope,\n"
       "Alan,Turing,alan@example.com,\n")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def csv_file(content: str = CSV, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode(), content_type="text/csv")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- wizard ---------------------------------------------------------------------------------

def test_wizard_upload_map_confirm_report(admin_client_logged_in):
    client = admin_client_logged_in
    assert client.get("/contacts/import/").status_code == 200
    response = client.post("/contacts/import/", {"type": "contact", "file": csv_file()})
    job = ImportJob.objects.get()
    assert response.url == f"/contacts/import/{job.pk}/mapping/"
    page = client.get(response.url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Email Address" in html and "ada@example.com" in html
    assert '<option value="email" selected>' in html
    response = client.post(f"/contacts/import/{job.pk}/mapping/", {
        "column_0": "first_name", "column_1": "last_name", "column_2": "email", "column_3": ""})
    assert response.url == f"/contacts/import/{job.pk}/confirm/"
    assert "Phone Number" in client.get(response.url).content.decode()  # listed as ignored
    response = client.post(f"/contacts/import/{job.pk}/confirm/")
    assert response.url == f"/contacts/import/{job.pk}/"
    report = client.get(response.url).content.decode()
    assert 'data-count="created">2<' in report
    assert "<td>3</td><td>email</td>" in report
    assert "Download errors CSV" in report
    assert Contact.objects.count() == 2
    errors = client.get(f"/contacts/import/{job.pk}/errors.csv")
    rows = list(csv.reader(io.StringIO(b"".join(errors.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:3] == ["line", "field", "reason"]
    assert rows[1][:2] == ["3", "email"]


def test_wizard_reports_unreadable_file(admin_client_logged_in):
    response = admin_client_logged_in.post("/contacts/import/", {
        "type": "contact", "file": csv_file("First Name,Email\n")})
    assert response.status_code == 400
    assert "no rows" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_wizard_mapping_without_identifier_is_refused(admin_client_logged_in):
    client = admin_client_logged_in
    client.post("/contacts/import/", {"type": "contact", "file": csv_file("Nick,Mail\nA,a@x.io\n")})
    job = ImportJob.objects.get()
    response = client.post(f"/contacts/import/{job.pk}/mapping/", {"column_0": "first_name",
                                                                   "column_1": ""})
    assert response.status_code == 400
    assert "identifies each row" in response.content.decode()
    assert not Contact.objects.exists()


def test_progress_fragment_polls_while_running(admin_client_logged_in, admin_user):
    job = ImportJob.objects.create(object_type="contact", original_name="big.csv",
                                   file_sha256="x", status=ImportJob.Status.RUNNING,
                                   total_rows=1000, processed_rows=250, created_by=admin_user,
                                   mapping={"headers": ["Email"], "targets": ["email"],
                                            "queued": True})
    html = admin_client_logged_in.get(f"/contacts/import/{job.pk}/status/").content.decode()
    assert 'hx-trigger="every 1s"' in html
    assert '<progress value="250" max="1000"' in html
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.DONE, processed_rows=1000)
    html = admin_client_logged_in.get(f"/contacts/import/{job.pk}/status/").content.decode()
    assert "hx-trigger" not in html and "import-counts" in html


def test_someone_elses_import_is_404(make_user, admin_user):
    job = ImportJob.objects.create(object_type="contact", original_name="x.csv",
                                   file_sha256="x", created_by=admin_user,
                                   mapping={"headers": [], "targets": []})
    sally = logged_in(make_user("sales"))
    for url in ("", "mapping/", "confirm/", "status/", "errors.csv"):
        assert sally.get(f"/contacts/import/{job.pk}/{url}").status_code == 404
    assert sally.post(f"/contacts/import/{job.pk}/confirm/").status_code == 404


def test_user_without_import_permission_gets_403(make_user):
    support = logged_in(make_user("support"))
    assert support.get("/contacts/import/").status_code == 403
    response = support.post("/contacts/import/", {"type": "contact", "file": csv_file()})
    assert response.status_code == 403
    assert not ImportJob.objects.exists()


# --- duplicates UI ----------------------------------------------------------------------------

def test_duplicates_review_and_merge(admin_client_logged_in):
    keep = ContactFactory(first_name="Ann", phone="+14155550100")
    lose = ContactFactory(first_name="Annie", phone="+14155550100", email="annie@example.com")
    client = admin_client_logged_in
    html = client.get("/contacts/import/duplicates/").content.decode()
    assert "Same phone number" in html and "Annie" in html
    query = f"?survivor={keep.pk}&ids={keep.pk}&ids={lose.pk}"
    confirm = client.get(f"/contacts/import/duplicates/merge/{query}")
    assert confirm.status_code == 200
    assert "This cannot be undone" in confirm.content.decode()
    assert Contact.objects.count() == 2  # the GET changed nothing
    response = client.post("/contacts/import/duplicates/merge/",
                           {"survivor": keep.pk, "ids": [keep.pk, lose.pk]})
    assert response.status_code == 302
    assert list(Contact.objects.values_list("pk", flat=True)) == [keep.pk]
    assert MergeRecord.objects.get().loser_data["first_name"] == "Annie"


def test_merge_of_invisible_contact_is_404_and_changes_nothing(make_user):
    sally, other = make_user("manager", team="east"), make_user("manager", team="west")
    mine = ContactFactory(owner=sally)
    theirs = ContactFactory(owner=other)
    response = logged_in(sally).post("/contacts/import/duplicates/merge/",
                                     {"survivor": mine.pk, "ids": [mine.pk, theirs.pk]})
    assert response.status_code == 404
    assert Contact.objects.count() == 2


# --- API ------------------------------------------------------------------------------------

def test_api_import_status_and_errors(admin_api):
    response = admin_api.post("/api/v1/imports", {"file": csv_file(), "type": "contacts"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["created"], body["errors"]) == ("done", 2, 1)
    assert body["mapping"]["Email Address"] == "email"
    status = admin_api.get(f"/api/v1/imports/{body['id']}").json()
    assert status["progress_percent"] == 100
    errors = admin_api.get(f"/api/v1/imports/{body['id']}/errors.csv")
    assert errors.status_code == 200
    assert b"3,email" in b"".join(errors.streaming_content)


def test_api_import_with_mapping_and_bad_input(admin_api):
    response = admin_api.post("/api/v1/imports", {
        "file": csv_file("Mail,Nick\nada@example.com,Ada\n"), "type": "contacts",
        "mapping": json.dumps({"Mail": "email", "Nick": "first_name"})})
    assert response.status_code == 201
    assert Contact.objects.get().first_name == "Ada"
    bad = admin_api.post("/api/v1/imports", {"file": csv_file("Nick\nAda\n"), "type": "contacts"})
    assert bad.status_code == 422
    assert (bad.json()["code"], bad.json()["field"]) == ("missing_identifier", "mapping")
    bad = admin_api.post("/api/v1/imports", {"file": csv_file(), "type": "contacts",
                                             "mapping": "{not json"})
    assert (bad.status_code, bad.json()["field"]) == (422, "mapping")
    bad = admin_api.post("/api/v1/imports", {"file": csv_file(), "type": "dogs"})
    assert (bad.status_code, bad.json()["field"]) == (422, "type")
    bad = admin_api.post("/api/v1/imports", {"type": "contacts"})
    assert bad.status_code == 422
    assert ImportJob.objects.count() == 1


def test_api_import_refused_without_permission_or_write_scope(make_user, make_api_client,
                                                              admin_user):
    support = make_api_client(make_user("support"))
    assert support.post("/api/v1/imports", {"file": csv_file(), "type": "contacts"}
                        ).status_code == 403
    read_only = make_api_client(admin_user, scope="read")
    assert read_only.post("/api/v1/imports", {"file": csv_file(), "type": "contacts"}
                          ).status_code == 403
    assert not ImportJob.objects.exists() and not Contact.objects.exists()


def test_api_import_of_someone_else_is_404(admin_api, make_user, make_api_client):
    job_id = admin_api.post("/api/v1/imports", {"file": csv_file(), "type": "contacts"}
                            ).json()["id"]
    sally = make_api_client(make_user("sales"))
    assert sally.get(f"/api/v1/imports/{job_id}").status_code == 404
    assert sally.get(f"/api/v1/imports/{job_id}/errors.csv").status_code == 404


def test_api_duplicates_and_merge(admin_api, make_user, make_api_client):
    west = make_user("sales", team="west")
    keep = ContactFactory(first_name="Ann", phone="+14155550100", owner=west)
    lose = ContactFactory(first_name="Annie", phone="+14155550100", owner=west)
    groups = admin_api.get("/api/v1/duplicates").json()
    assert groups[0]["reason"] == "phone"
    assert {c["id"] for c in groups[0]["contacts"]} == {keep.pk, lose.pk}
    sally = make_api_client(make_user("manager", team="east"))  # sees neither (not her team's)
    denied = sally.post("/api/v1/duplicates/merge", {"survivor_id": keep.pk,
                                                     "loser_ids": [lose.pk]},
                        content_type="application/json")
    assert denied.status_code == 404
    assert Contact.objects.count() == 2
    response = admin_api.post("/api/v1/duplicates/merge", {"survivor_id": keep.pk,
                                                           "loser_ids": [lose.pk]},
                              content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["merged_ids"] == [lose.pk]
    assert Event.objects.get(kind="contact.merged").contact_id == keep.pk
    same = admin_api.post("/api/v1/duplicates/merge", {"survivor_id": keep.pk,
                                                       "loser_ids": [keep.pk]},
                          content_type="application/json")
    assert same.status_code == 422


# --- command --------------------------------------------------------------------------------

def test_import_csv_command(tmp_path, admin_user):
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    errors = tmp_path / "errors.csv"
    out = io.StringIO()
    call_command("import_csv", str(path), "--type", "contacts", "--user", admin_user.username,
                 "--errors-out", str(errors), stdout=out)
    assert "2 created" in out.getvalue() and "line 3: email" in out.getvalue()
    assert "3,email" in errors.read_text(encoding="utf-8-sig")
    out = io.StringIO()
    call_command("import_csv", str(path), stdout=out)
    assert "0 created, 0 updated, 2 unchanged" in out.getvalue()
    bad = tmp_path / "bad.csv"
    bad.write_text("Nick\nAda\n")
    with pytest.raises(CommandError, match="mapping"):
        call_command("import_csv", str(bad))
