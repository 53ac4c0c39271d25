"""CSV import: reading odd files, mapping other CRMs' headers, per-row validation, re-import."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from clm.core.errors import PermissionDenied, ValidationFailed
from clm.customers import importing
from clm.customers.importing import (
    import_errors_rows,
    import_job_create,
    import_job_run,
    import_job_set_mapping,
    import_job_start,
    import_preview,
    suggest_mapping,
)
from clm.customers.models import Company, Contact, FieldChange, ImportJob, ObjectType
from clm.customers.services import property_definition_create
from clm.timeline.models import Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

HEADER = "First Name,Last Name,Email,Phone Number\n"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(content: bytes | str, name: str = "contacts.csv") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="text/csv")


def run_import(content, *, actor=None, object_type="contact", mapping=None) -> ImportJob:
    job = import_job_create(object_type=object_type, file=upload(content), actor=actor,
                            mapping=mapping)
    return import_job_start(job=job)


def test_other_crms_headers_are_mapped():
    hubspot = ["Record ID", "First Name", "Last Name", "Email", "Phone Number", "Mobile Phone",
               "Company Name", "Job Title", "Country/Region", "City", "State/Region",
               "Lifecycle Stage", "Create Date", "Contact owner", "Tags", "Favourite Colour"]
    assert suggest_mapping(ObjectType.CONTACT, hubspot) == [
        "external_id", "first_name", "last_name", "email", "phone", "",  # second phone ignored
        "company_name", "job_title", "country", "city", "region", "lifecycle_stage",
        "created_at", "owner", "tags", ""]
    salesforce = ["Lead ID", "Salutation", "Email Address", "Mailing City", "Lead Source"]
    assert suggest_mapping(ObjectType.CONTACT, salesforce) == [
        "external_id", "", "email", "city", "source"]


def test_custom_property_columns_match_key_or_label():
    property_definition_create(object_type="contact", key="plan", label="Pricing Plan",
                               type="choice", choices=["free", "pro"])
    property_definition_create(object_type="contact", key="seats", label="Seats", type="number")
    assert suggest_mapping(ObjectType.CONTACT, ["Email", "Pricing Plan", "seats"]) == [
        "email", "property:plan", "property:seats"]


def test_import_creates_contacts_with_timeline_events(admin_user):
    job = run_import(HEADER + "Ada,Lovelace,ada@example.com,+44 20 7946 0958\n"
                     "Alan,Turing,alan@example.com,\n", actor=admin_user)
    assert job.status == ImportJob.Status.DONE
    assert (job.created_count, job.updated_count, job.error_count) == (2, 0, 0)
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.phone, ada.source) == ("Ada", "+442079460958", "import")
    event = Event.objects.get(contact=ada, kind="import.row_applied")
    assert event.properties == {"import_job_id": job.pk, "line": 2, "outcome": "created",
                                "file": "contacts.csv"}


def test_same_file_again_changes_nothing(admin_user):
    content = HEADER + "Ada,Lovelace,ada@example.com,\nAlan,Turing,alan@example.com,\n"
    run_import(content, actor=admin_user)
    contacts, events, audit = Contact.objects.count(), Event.objects.count(), \
        FieldChange.objects.count()
    again = run_import(content, actor=admin_user)
    assert (again.created_count, again.updated_count, again.unchanged_count) == (0, 0, 2)
    assert Contact.objects.count() == contacts
    assert Event.objects.count() == events
    assert FieldChange.objects.count() == audit


def test_changed_row_updates_and_records_event(admin_user):
    run_import(HEADER + "Ada,Lovelace,ada@example.com,\n", actor=admin_user)
    job = run_import(HEADER + "Ada,King,ADA@example.com,\n", actor=admin_user)
    assert job.updated_count == 1
    ada = Contact.objects.get(email="ada@example.com")
    assert ada.last_name == "King"
    assert ada.events.filter(kind="import.row_applied",
                             properties__outcome="updated").count() == 1


def test_empty_cells_do_not_blank_existing_values(admin_user):
    run_import(HEADER + "Ada,Lovelace,ada@example.com,\n", actor=admin_user)
    job = run_import(HEADER + ",,ada@example.com,\n", actor=admin_user)
    assert job.unchanged_count == 1
    assert Contact.objects.get(email="ada@example.com").last_name == "Lovelace"


def test_bad_rows_are_reported_by_physical_line(admin_user):
    content = (HEADER
               + "Good,One,one@example.com,\n"                 # line 2
               + "Bad,Email,not-an-email,\n"                    # line 3
               + '"Multi\nLine",Name,multi@example.com,\n'      # lines 4-5
               + "\n"                                           # line 6, blank
               + "Bad,Phone,phone@example.com,12\n"             # line 7
               + "No,Identifier,,\n")                           # line 8
    job = run_import(content, actor=admin_user)
    assert (job.created_count, job.error_count) == (2, 3)
    assert [(e["line"], e["field"]) for e in job.errors] == [
        (3, "email"), (7, "phone"), (8, "email")]
    assert "not-an-email" in job.errors[0]["reason"]
    assert Contact.objects.get(email="multi@example.com").first_name == "Multi\nLine"
    assert not Contact.objects.filter(email="phone@example.com").exists()
    header, rows = import_errors_rows(job)
    assert header == ["line", "field", "reason", "First Name", "Last Name", "Email",
                      "Phone Number"]
    assert next(iter(rows))[:2] == [3, "email"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "cp1252", "utf-16-le"])
def test_encodings(admin_user, encoding):
    content = (HEADER + "Zoë,Müller,zoe@example.com,\n").encode(encoding)
    job = run_import(content, actor=admin_user)
    assert job.created_count == 1, job.errors
    zoe = Contact.objects.get(email="zoe@example.com")
    assert (zoe.first_name, zoe.last_name) == ("Zoë", "Müller")


def test_latin1_bytes_that_are_not_cp1252_still_read(admin_user):
    # 0x81 is undefined in cp1252 and invalid UTF-8: only Latin-1 reads it.
    content = HEADER.encode() + b"Ren\xe9\x81,X,rene@example.com,\n"
    job = run_import(content, actor=admin_user)
    assert job.mapping["encoding"] == "latin-1"
    assert Contact.objects.get(email="rene@example.com").first_name == "René\x81"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimiters(admin_user, delimiter):
    content = f"First Name{delimiter}Email\r\nAda{delimiter}ada@example.com\r\n"
    job = run_import(content, actor=admin_user)
    assert job.mapping["delimiter"] == delimiter
    assert Contact.objects.get(email="ada@example.com").first_name == "Ada"


@pytest.mark.parametrize(("content", "code"), [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (HEADER.encode(), "no_rows"),
    (b"First Name,Last Name\nAda,Lovelace\n", "missing_identifier"),
    (b"PK\x03\x04binary-xlsx", "not_csv"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not_csv"),
])
def test_unimportable_files_are_refused_before_anything_happens(admin_user, content, code):
    with pytest.raises(ValidationFailed) as exc:
        import_job_create(object_type="contact", file=upload(content), actor=admin_user)
    assert exc.value.code == code
    assert exc.value.field in ("file", "mapping")
    assert not ImportJob.objects.exists()
    assert not Contact.objects.exists()


def test_extra_columns_long_cells_and_formulas(admin_user):
    long_name = "x" * 5000
    content = ("Email,First Name,Unknown Column,Another\n"
               f"a@example.com,{long_name},whatever,1\n"
               "b@example.com,=HYPERLINK(\"http://evil\"),x\n"
               "c@example.com,'=1+1\n")
    job = run_import(content, actor=admin_user)
    assert job.created_count == 2
    assert job.errors[0]["line"] == 2 and job.errors[0]["field"] == "first_name"
    assert len(job.errors[0]["values"][1]) == importing.MAX_STORED_CELL
    # Stored as the text it is; the export neutralises it. The export's own quote is undone.
    assert Contact.objects.get(email="b@example.com").first_name == '=HYPERLINK("http://evil")'
    assert Contact.objects.get(email="c@example.com").first_name == "=1+1"


def test_cell_beyond_csv_field_limit_is_a_clear_file_error(admin_user):
    content = "Email,Notes\n" + "a@example.com," + "y" * 200_000 + "\n"
    with pytest.raises(ValidationFailed) as exc:
        import_job_create(object_type="contact", file=upload(content), actor=admin_user)
    assert exc.value.code == "bad_csv"
    assert "Line 2" in exc.value.message


def test_same_email_twice_in_file_first_row_wins(admin_user):
    content = HEADER + "Ada,First,ada@example.com,\nAda,Second,ADA@example.com,\n"
    job = run_import(content, actor=admin_user)
    assert (job.created_count, job.error_count) == (1, 1)
    assert job.errors[0]["line"] == 3
    assert "line 2" in job.errors[0]["reason"]
    assert Contact.objects.get(email="ada@example.com").last_name == "First"
    assert run_import(content, actor=admin_user).unchanged_count == 1


def test_crm_values_are_translated(admin_user, make_user, django_capture_on_commit_callbacks):
    owner = make_user("sales", username="jdoe")
    owner.first_name, owner.last_name = "Jane", "Doe"
    owner.save()
    property_definition_create(object_type="contact", key="plan", label="Pricing Plan",
                               type="choice", choices=["free", "pro"])
    content = ("Record ID,Email,Country/Region,Company Name,Create Date,Lifecycle Stage,"
               "Contact owner,Tags,Pricing Plan,Date of birth\n"
               "17,ada@example.com,United Kingdom,Analytical Engines,2021-03-04 10:30,"
               "Marketing Qualified Lead,Jane Doe,\"math, poetry\",pro,12/10/1815\n")
    with django_capture_on_commit_callbacks(execute=True):  # the lifecycle engine runs
        job = run_import(content, actor=admin_user)
    assert job.created_count == 1, job.errors
    ada = Contact.objects.get(email="ada@example.com")
    assert ada.stage_changes.filter(to_stage="mql").exists()
    assert (ada.external_id, ada.country, ada.stage, ada.owner) == ("17", "GB", "mql", owner)
    assert ada.company.name == "Analytical Engines"
    assert ada.created_at.date() == date(2021, 3, 4)
    assert ada.date_of_birth == date(1815, 12, 10)
    assert sorted(ada.tags.values_list("name", flat=True)) == ["math", "poetry"]
    assert ada.properties == {"plan": "pro"}
    event = ada.events.get(kind="import.row_applied")
    assert event.properties["lifecycle_stage"] == "Marketing Qualified Lead"
    assert event.properties["stage_key"] == "mql"
    # Second run: company found by name, nothing new.
    assert run_import(content, actor=admin_user).unchanged_count == 1
    assert Company.objects.count() == 1


def test_bad_values_name_their_field(admin_user):
    content = ("Email,Country,Create Date,Contact owner\n"
               "a@example.com,Atlantis,,\n"
               "b@example.com,DE,not a date,\n"
               "c@example.com,,,nobody\n")
    job = run_import(content, actor=admin_user)
    assert [(e["line"], e["field"]) for e in job.errors] == [
        (2, "country"), (3, "created_at"), (4, "owner")]


def test_mapping_can_be_overridden(admin_user):
    job = import_job_create(object_type="contact", actor=admin_user,
                            file=upload("Mail,Nick,Phone\nada@example.com,Ada,12\n"),
                            require_identifier=False)
    assert job.mapping["targets"] == ["", "", "phone"]
    with pytest.raises(ValidationFailed):
        import_job_set_mapping(job=job, mapping={"Nick": "first_name"})  # still no email
    with pytest.raises(ValidationFailed) as exc:
        import_job_set_mapping(job=job, mapping=["email", "first_name", "nonsense"])
    assert exc.value.code == "unknown_target"
    import_job_set_mapping(job=job, mapping={"Mail": "email", "Nick": "first_name",
                                             "Phone": ""})
    assert import_preview(job) == [(2, ["ada@example.com", "Ada", "12"])]
    job = import_job_start(job=job)
    assert job.created_count == 1
    assert Contact.objects.get(email="ada@example.com").first_name == "Ada"


def test_companies_import(admin_user):
    content = ("Record ID,Company name,Company Domain Name,Number of Employees,Country/Region\n"
               "c1,Acme,https://www.acme.example/,250,Germany\n"
               "c2,,,,\n")
    job = run_import(content, actor=admin_user, object_type="companies")
    assert (job.created_count, job.error_count) == (1, 1)
    acme = Company.objects.get(external_id="c1")
    assert (acme.name, acme.domain, acme.employee_band, acme.country) == (
        "Acme", "acme.example", "201-1000", "DE")
    assert job.errors[0]["line"] == 3
    assert run_import(content, actor=admin_user, object_type="company").unchanged_count == 1


def test_large_file_runs_in_background_with_progress(admin_user, settings, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    settings.CLM_IMPORT_INLINE_MAX_ROWS = 3
    monkeypatch.setattr(importing, "CHUNK_ROWS", 2)
    saved: list[int] = []
    real_save = importing._save_progress

    def spy(job, run, processed, **kwargs):
        saved.append(processed)
        real_save(job, run, processed, **kwargs)

    monkeypatch.setattr(importing, "_save_progress", spy)
    rows = "".join(f"P,{i},p{i}@example.com,\n" for i in range(5))
    job = import_job_create(object_type="contact", file=upload(HEADER + rows), actor=admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = import_job_start(job=job)
    assert job.status == ImportJob.Status.PENDING  # not inline: enqueued after commit
    assert len(callbacks) == 1
    callbacks[0]()  # the commit happens: the (immediate) task runs
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert (job.processed_rows, job.total_rows, job.created_count) == (5, 5, 5)
    assert saved[:3] == [2, 4, 5]
    assert job.progress_percent == 100


def test_running_a_job_twice_runs_it_once(admin_user):
    job = run_import(HEADER + "Ada,L,ada@example.com,\n", actor=admin_user)
    events = Event.objects.count()
    again = import_job_run(job_id=job.pk)
    assert (again.status, again.created_count) == (ImportJob.Status.DONE, 1)
    assert Event.objects.count() == events


def test_task_runs_pending_job(admin_user):
    from clm.customers.tasks import import_job_run_task

    job = import_job_create(object_type="contact", actor=admin_user,
                            file=upload(HEADER + "Ada,L,ada@example.com,\n"))
    result = import_job_run_task.enqueue(job.pk)
    assert result.status == "SUCCESSFUL"
    job.refresh_from_db()
    assert job.created_count == 1


def test_import_cannot_change_contacts_the_user_may_not_see(make_user):
    sally = make_user("sales", username="sally")
    other = make_user("sales", username="other")
    hidden = ContactFactory(email="hidden@example.com", first_name="Keep", owner=other)
    job = run_import("Email,First Name\nhidden@example.com,Changed\nnew@example.com,New\n",
                     actor=sally)
    assert (job.created_count, job.error_count) == (1, 1)
    assert job.errors[0]["line"] == 2
    hidden.refresh_from_db()
    assert hidden.first_name == "Keep"
    assert Contact.objects.get(email="new@example.com").owner == sally


def test_user_without_add_permission_cannot_import(make_user):
    support = make_user("support")
    with pytest.raises(PermissionDenied):
        import_job_create(object_type="contact", file=upload(HEADER + "A,B,a@example.com,\n"),
                          actor=support)
    assert not ImportJob.objects.exists()


def test_company_created_for_a_failed_row_is_rolled_back(admin_user):
    content = ("Email,Company,Phone\n"
               "a@example.com,NewCo,12\n"            # bad phone: the row and its company go
               "b@example.com,NewCo,\n")
    job = run_import(content, actor=admin_user)
    assert (job.created_count, job.error_count) == (1, 1)
    assert Company.objects.get().name == "NewCo"
    assert Contact.objects.get(email="b@example.com").company.name == "NewCo"
