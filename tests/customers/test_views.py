"""The staff UI for contacts and companies: what a signed-in user sees and can do."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clm.customers import services, views
from clm.customers.models import Company, Contact, FieldChange, PropertyDefinition
from clm.timeline.models import Event
from clm.web.models import SavedView
from tests.factories import CompanyFactory, ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST = reverse("customers:contact_list")


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def detail_url(contact) -> str:
    return reverse("customers:contact_detail", args=[contact.pk])


def text(response) -> str:
    return response.content.decode()


@pytest.fixture
def admin(admin_client_logged_in):
    return admin_client_logged_in


@pytest.fixture
def viewer(db):
    """A user who may only view contacts (no role, one permission)."""
    user = UserFactory(username="viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    return user


# --- list ---------------------------------------------------------------------------------


def test_list_requires_login_and_permission(db):
    response = Client().get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert login(UserFactory(username="nobody")).get(LIST).status_code == 403


def test_list_empty_state(admin):
    response = admin.get(LIST)
    assert response.status_code == 200
    assert "No contacts yet" in text(response)
    response = admin.get(LIST, {"q": "zzz"})
    assert "No contacts match" in text(response)


def test_list_shows_only_visible_contacts(make_user):
    sally = make_user("sales", username="sally")
    other = make_user("sales", username="sam")
    ContactFactory(owner=sally, first_name="Mine", last_name="Person")
    ContactFactory(owner=other, first_name="Theirs", last_name="Person")
    body = text(login(sally).get(LIST))
    assert "Mine Person" in body
    assert "Theirs Person" not in body


def test_search_filters_and_sort(admin, admin_user):
    acme = CompanyFactory(name="Acme")
    services.contact_create(data={"first_name": "Ada", "last_name": "Lovelace",
                                  "email": "ada@example.com", "country": "GB",
                                  "company": acme, "owner": admin_user},
                            tags=["vip"])
    grace = services.contact_create(data={"first_name": "Grace", "last_name": "Hopper",
                                          "email": "grace@example.com", "country": "US"})
    Contact.objects.filter(pk=grace.pk).update(created_at=timezone.now() - timedelta(days=40))

    def names(params):
        response = admin.get(LIST, params)
        assert response.status_code == 200
        return [c.last_name for c in response.context["page"].object_list]

    assert names({"q": "ada"}) == ["Lovelace"]
    assert names({"q": "grace@example.com"}) == ["Hopper"]
    assert names({"country": "us"}) == ["Hopper"]
    assert names({"tag": "VIP"}) == ["Lovelace"]
    assert names({"company": acme.pk}) == ["Lovelace"]
    assert names({"company_name": "acme"}) == ["Lovelace"]
    assert names({"owner": admin_user.pk}) == ["Lovelace"]
    assert names({"owner": "none"}) == ["Hopper"]
    old = (timezone.now() - timedelta(days=30)).date().isoformat()
    assert names({"created_to": old}) == ["Hopper"]
    assert names({"created_from": old}) == ["Lovelace"]
    assert names({"sort": "last_name"}) == ["Hopper", "Lovelace"]
    assert names({"sort": "-last_name"}) == ["Lovelace", "Hopper"]
    assert names({}) == ["Lovelace", "Hopper"]  # newest first


def test_bad_filter_values_are_reported_not_500(admin):
    ContactFactory(last_name="Kept")
    response = admin.get(LIST, {"sort": "password", "country": "Germany",
                                "company_name": "No Such Co", "created_from": "yesterday"})
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) >= {"sort", "country", "company_name", "created_from"}
    body = text(response)
    assert "Cannot sort by" in body
    assert "There is no company named" in body


def test_pagination_and_capped_count(admin, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for i in range(5):
        ContactFactory(last_name=f"P{i}")
    first = admin.get(LIST, {"sort": "last_name"})
    assert [c.last_name for c in first.context["page"].object_list] == ["P0", "P1"]
    assert first.context["next_url"]
    third = admin.get(LIST, {"sort": "last_name", "page": 3})
    assert [c.last_name for c in third.context["page"].object_list] == ["P4"]
    assert third.context["next_url"] is None
    assert "5\u20135 of 5" in text(third)
    assert admin.get(LIST, {"page": "999"}).status_code == 200
    assert admin.get(LIST, {"page": "x"}).status_code == 200


def test_list_query_count_does_not_grow_with_rows(admin, admin_user, django_assert_max_num_queries):
    def add(n):
        company = CompanyFactory()
        for _ in range(n):
            contact = ContactFactory(company=company, owner=admin_user)
            services.contact_update(contact=contact, tags=["a", "b"])

    add(3)
    with CaptureQueriesContext(connection) as few:
        admin.get(LIST)
    add(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin.get(LIST)
    assert len(response.context["page"].object_list) == 23
    with django_assert_max_num_queries(12):
        admin.get(LIST, {"q": "a", "tag": "a", "company_name": "Company"})


def test_saved_views_save_list_and_delete(admin, admin_user, make_user):
    response = admin.post(reverse("customers:saved_view_create"),
                          {"name": "UK", "query": "country=GB&page=4&sort=-created_at"})
    view = SavedView.objects.get(user=admin_user, name="UK")
    assert view.query == "country=GB&sort=-created_at"
    assert response["Location"].endswith("?country=GB&sort=-created_at")
    body = text(admin.get(LIST))
    assert ">UK</a>" in body
    # saving the same name replaces the query
    admin.post(reverse("customers:saved_view_create"), {"name": "UK", "query": "country=IE"})
    assert SavedView.objects.get(user=admin_user, name="UK").query == "country=IE"
    # a blank name is refused with a message
    admin.post(reverse("customers:saved_view_create"), {"name": " ", "query": "q=x"})
    assert SavedView.objects.filter(user=admin_user).count() == 1
    # another user cannot delete it
    other = login(make_user("sales", username="sam"))
    assert other.post(reverse("customers:saved_view_delete", args=[view.pk])).status_code == 404
    assert SavedView.objects.filter(pk=view.pk).exists()
    admin.post(reverse("customers:saved_view_delete", args=[view.pk]))
    assert not SavedView.objects.filter(pk=view.pk).exists()


def test_bulk_assign_owner_asks_for_confirmation(admin, make_user):
    bob = make_user("sales", username="bob")
    a, b, c = ContactFactory(), ContactFactory(), ContactFactory()
    url = reverse("customers:contact_bulk")
    response = admin.post(url, {"action": "assign_owner", "ids": [a.pk, b.pk],
                                "owner": bob.pk, "back": "country=GB"})
    assert response.status_code == 200
    assert "Assign 2 contacts to bob?" in text(response)
    assert not Contact.objects.filter(owner=bob).exists()
    response = admin.post(url, {"action": "assign_owner", "ids": [a.pk, b.pk],
                                "owner": bob.pk, "back": "country=GB", "confirm": "yes"})
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?country=GB"
    assert set(Contact.objects.filter(owner=bob)) == {a, b}
    c.refresh_from_db()
    assert c.owner is None
    assert FieldChange.objects.filter(object_id=a.pk, field="owner").exists()


def test_bulk_add_tag(admin):
    a, b = ContactFactory(), ContactFactory()
    url = reverse("customers:contact_bulk")
    confirm = admin.post(url, {"action": "add_tag", "ids": [a.pk, b.pk], "tag": "Event-2026"})
    assert "Add the tag “event-2026” to 2 contacts?" in text(confirm)
    assert not a.tags.exists()
    admin.post(url, {"action": "add_tag", "ids": [a.pk, b.pk], "tag": "Event-2026",
                     "confirm": "yes"})
    assert list(a.tags.values_list("name", flat=True)) == ["event-2026"]
    assert list(b.tags.values_list("name", flat=True)) == ["event-2026"]
    # a tag is required
    admin.post(url, {"action": "add_tag", "ids": [a.pk], "tag": "", "confirm": "yes"})
    assert a.tags.count() == 1


def test_bulk_refuses_invisible_contacts_and_users_without_change(make_user, viewer):
    sally = make_user("sales", username="sally")
    mine = ContactFactory(owner=sally)
    theirs = ContactFactory(owner=make_user("sales", username="sam"))
    url = reverse("customers:contact_bulk")
    response = login(sally).post(url, {"action": "add_tag", "ids": [mine.pk, theirs.pk],
                                       "tag": "x", "confirm": "yes"})
    assert response.status_code == 404
    assert not mine.tags.exists() and not theirs.tags.exists()
    ContactFactory()
    response = login(viewer).post(url, {"action": "add_tag", "ids": [mine.pk], "tag": "x",
                                        "confirm": "yes"})
    assert response.status_code == 403
    assert not mine.tags.exists()


def test_bulk_export_selected_and_filtered_export(admin):
    a = ContactFactory(first_name="=HYPERLINK(1)", last_name="A", email="a@example.com",
                       country="GB")
    ContactFactory(last_name="B", email="b@example.com", country="US")
    response = admin.post(reverse("customers:contact_bulk"), {"action": "export", "ids": [a.pk]})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 2
    header, row = rows
    assert row[header.index("email")] == "a@example.com"
    assert row[header.index("first_name")] == "'=HYPERLINK(1)"
    response = admin.get(reverse("customers:contact_export"), {"country": "US"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [r[rows[0].index("email")] for r in rows[1:]] == ["b@example.com"]


# --- contact page -------------------------------------------------------------------------


@pytest.fixture
def ada(admin_user):
    contact = services.contact_create(
        data={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
        actor=admin_user)
    services.contact_update(contact=contact, data={"job_title": "Analyst"}, actor=admin_user)
    return contact


def test_contact_page_shows_profile_timeline_and_audit(admin, ada):
    response = admin.get(detail_url(ada))
    assert response.status_code == 200
    body = text(response)
    assert "Ada Lovelace" in body
    assert "ada@example.com" in body
    kinds = [e.kind for e in response.context["events"]]
    assert kinds == ["contact.updated", "contact.created"]
    assert "job_title" in body  # the audit log row
    assert [c.field for c in response.context["audit"]] == ["job_title"]


def test_contact_page_query_count(admin, ada, django_assert_max_num_queries):
    for i in range(30):
        services.note_add(contact=ada, body=f"note {i}")
    with django_assert_max_num_queries(20):
        response = admin.get(detail_url(ada))
    assert len(response.context["events"]) == views.TIMELINE_PAGE_SIZE


def test_contact_invisible_is_404_everywhere(make_user):
    sally = make_user("sales", username="sally")
    theirs = ContactFactory(owner=make_user("sales", username="sam"))
    client = login(sally)
    assert client.get(detail_url(theirs)).status_code == 404
    assert client.get(reverse("customers:contact_edit", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("customers:contact_edit", args=[theirs.pk]),
                       {"first_name": "Hacked"}).status_code == 404
    assert client.post(reverse("customers:contact_note_add", args=[theirs.pk]),
                       {"body": "x"}).status_code == 404
    assert client.post(reverse("customers:contact_consent_add", args=[theirs.pk]),
                       {"purpose": "email", "granted": "yes", "source": "ui"}).status_code == 404
    assert client.get(reverse("customers:contact_timeline", args=[theirs.pk]),
                      HTTP_HX_REQUEST="true").status_code == 404
    theirs.refresh_from_db()
    assert theirs.first_name != "Hacked"
    assert not Event.objects.filter(contact=theirs).exists()
    assert not theirs.consents.exists()


def test_timeline_filter_by_kind_and_load_more(admin, ada, monkeypatch):
    monkeypatch.setattr(views, "TIMELINE_PAGE_SIZE", 2)
    for i in range(3):
        services.note_add(contact=ada, body=f"note {i}")
    response = admin.get(detail_url(ada), {"kind": "note.added"})
    assert [e.properties["body"] for e in response.context["events"]] == ["note 2", "note 1"]
    cursor = response.context["next_cursor"]
    assert cursor
    url = reverse("customers:contact_timeline", args=[ada.pk])
    more = admin.get(url, {"kind": "note.added", "cursor": cursor}, HTTP_HX_REQUEST="true")
    assert more.status_code == 200
    assert "note 0" in text(more)
    assert "<html" not in text(more)
    assert more.context["next_cursor"] is None
    # changing the kind filter re-renders the timeline section
    part = admin.get(url, {"kind": "contact.created"}, HTTP_HX_REQUEST="true")
    assert 'id="timeline"' in text(part)
    assert [e.kind for e in part.context["events"]] == ["contact.created"]
    assert admin.get(url, {"cursor": "garbage"}, HTTP_HX_REQUEST="true").status_code == 400
    # without htmx, the timeline URL leads back to the page
    assert admin.get(url, {"kind": "note.added"})["Location"].startswith(detail_url(ada))


def test_note_add_with_htmx_returns_the_new_timeline_item(admin, ada):
    url = reverse("customers:contact_note_add", args=[ada.pk])
    response = admin.post(url, {"body": "Called <b>her</b>\nabout renewal"},
                          HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = text(response)
    assert body.lstrip().startswith('<li class="event"')
    assert "Called &lt;b&gt;her&lt;/b&gt;<br>about renewal" in body
    assert 'hx-swap-oob="true"' in body  # a fresh, empty note form
    assert Event.objects.filter(contact=ada, kind="note.added").count() == 1


def test_note_add_empty_shows_the_error_and_writes_nothing(admin, ada):
    url = reverse("customers:contact_note_add", args=[ada.pk])
    response = admin.post(url, {"body": "   "}, HTTP_HX_REQUEST="true")
    assert response["HX-Retarget"] == "#note-form"
    assert "This field is required" in text(response)
    response = admin.post(url, {"body": ""})
    assert response.status_code == 400
    assert not Event.objects.filter(contact=ada, kind="note.added").exists()
    response = admin.post(url, {"body": "Plain form post"})
    assert response.status_code == 302
    assert Event.objects.filter(contact=ada, kind="note.added").count() == 1


def test_consent_record_and_history(admin, ada, admin_user):
    url = reverse("customers:contact_consent_add", args=[ada.pk])
    response = admin.post(url, {"purpose": "Email_Marketing", "granted": "yes", "source": "phone",
                                "policy_version": "2026-01"})
    assert response.status_code == 302
    admin.post(url, {"purpose": "email_marketing", "granted": "no", "source": "email"})
    response = admin.get(detail_url(ada))
    current = response.context["consents"]
    assert [(r.purpose, r.granted) for r in current] == [("email_marketing", False)]
    assert len(response.context["consent_history"]) == 2
    assert "opted out" in text(response)
    assert Event.objects.filter(contact=ada, kind="consent.changed").count() == 2
    bad = admin.post(url, {"purpose": "", "granted": "yes", "source": "ui"})
    assert bad.status_code == 400
    assert bad.context["consent_form"].errors["purpose"]
    assert ada.consents.count() == 2
    assert ada.consents.filter(recorded_by=admin_user).count() == 2


# --- create, edit, delete -----------------------------------------------------------------


def test_create_contact(admin, admin_user):
    acme = CompanyFactory(name="Acme Corp")
    response = admin.post(reverse("customers:contact_create"), {
        "first_name": "Grace", "last_name": "Hopper", "email": "Grace@Example.com",
        "phone": "+1 202 555 0143", "country": "us", "company_name": "acme corp",
        "owner": admin_user.pk, "tags": "navy, Pioneer"})
    contact = Contact.objects.get(email="grace@example.com")
    assert response["Location"] == detail_url(contact)
    assert contact.company == acme
    assert contact.phone == "+12025550143"
    assert sorted(contact.tags.values_list("name", flat=True)) == ["navy", "pioneer"]
    assert Event.objects.filter(contact=contact, kind="contact.created").exists()


def test_create_shows_service_errors_on_their_fields(admin):
    url = reverse("customers:contact_create")
    cases = [({"email": "not-an-email"}, "email"),
             ({"country": "Germany"}, "country"),
             ({"phone": "12"}, "phone"),
             ({"timezone": "Mars/Base"}, "timezone"),
             ({"company_name": "Nowhere Inc"}, "company_name")]
    for data, field in cases:
        response = admin.post(url, {"first_name": "X", **data})
        assert response.status_code == 400, field
        form = response.context["form"]
        assert field in form.errors, (field, form.errors)
        assert 'class="field has-error"' in text(response)
    services.contact_create(data={"email": "taken@example.com"})
    response = admin.post(url, {"email": "TAKEN@example.com"})
    assert "already has this email" in response.context["form"].errors["email"][0]
    assert Contact.objects.count() == 1


def test_custom_property_fields_validate(admin):
    services.property_definition_create(object_type="contact", key="seats", label="Seats",
                                        type="number")
    services.property_definition_create(object_type="contact", key="plan", label="Plan",
                                        type="choice", choices=["free", "pro"])
    url = reverse("customers:contact_create")
    response = admin.post(url, {"first_name": "X", "prop_seats": "many"})
    assert response.status_code == 400
    assert "Seats must be a number" in response.context["form"].errors["prop_seats"][0]
    admin.post(url, {"first_name": "Y", "prop_seats": "12", "prop_plan": "pro"})
    contact = Contact.objects.get(first_name="Y")
    assert contact.properties == {"seats": 12, "plan": "pro"}
    page = text(admin.get(detail_url(contact)))
    assert "Seats" in page and "pro" in page
    # clearing a property on edit removes it
    admin.post(reverse("customers:contact_edit", args=[contact.pk]),
               {"first_name": "Y", "prop_seats": "", "prop_plan": "pro"})
    contact.refresh_from_db()
    assert contact.properties == {"plan": "pro"}
    assert PropertyDefinition.objects.count() == 2


def test_edit_contact_audits_changes(admin, ada):
    url = reverse("customers:contact_edit", args=[ada.pk])
    form = admin.get(url)
    assert form.context["form"]["email"].value() == "ada@example.com"
    response = admin.post(url, {"first_name": "Augusta", "last_name": "Lovelace",
                                "email": "ada@example.com", "job_title": "Analyst"})
    assert response.status_code == 302
    ada.refresh_from_db()
    assert ada.first_name == "Augusta"
    assert FieldChange.objects.filter(object_id=ada.pk, field="first_name",
                                      new_value="Augusta").exists()
    bad = admin.post(url, {"first_name": "A", "email": "broken"})
    assert "email" in bad.context["form"].errors
    ada.refresh_from_db()
    assert ada.first_name == "Augusta"


def test_delete_asks_first_and_needs_post(admin, ada, make_user):
    url = reverse("customers:contact_delete", args=[ada.pk])
    confirm = admin.get(url)
    assert confirm.status_code == 200
    assert "Delete Ada Lovelace?" in text(confirm)
    assert Contact.objects.filter(pk=ada.pk).exists()
    # a sales user has no delete permission
    sales = make_user("sales", username="sally")
    services.contact_update(contact=ada, data={"owner": sales})
    assert login(sales).post(url).status_code == 403
    assert Contact.objects.filter(pk=ada.pk).exists()
    response = admin.post(url)
    assert response["Location"] == LIST
    assert not Contact.objects.filter(pk=ada.pk).exists()


def test_sales_user_cannot_open_create_without_permission(make_user):
    support = make_user("support", username="sue")  # view + change, no add
    assert login(support).get(reverse("customers:contact_create")).status_code == 403


# --- companies ----------------------------------------------------------------------------


def test_company_list_search_and_counts(admin, admin_user):
    acme = CompanyFactory(name="Acme", owner=admin_user)
    CompanyFactory(name="Globex")
    ContactFactory(company=acme)
    ContactFactory(company=acme)
    response = admin.get(reverse("customers:company_list"))
    assert response.status_code == 200
    rows = {c.name: c.contact_count for c in response.context["page"].object_list}
    assert rows == {"Acme": 2, "Globex": 0}
    response = admin.get(reverse("customers:company_list"), {"q": "glob"})
    assert [c.name for c in response.context["page"].object_list] == ["Globex"]
    assert admin.get(reverse("customers:company_list"), {"sort": "bad"}).status_code == 200


def test_company_list_query_count(admin, django_assert_max_num_queries):
    for _ in range(15):
        ContactFactory(company=CompanyFactory())
    with django_assert_max_num_queries(10):
        admin.get(reverse("customers:company_list"))


def test_company_page_shows_only_visible_contacts(make_user):
    sally = make_user("sales", username="sally")
    acme = CompanyFactory(name="Acme", owner=sally)
    ContactFactory(company=acme, owner=sally, last_name="Mine")
    ContactFactory(company=acme, last_name="Hidden")
    response = login(sally).get(reverse("customers:company_detail", args=[acme.pk]))
    assert response.status_code == 200
    assert [c.last_name for c in response.context["contacts"]] == ["Mine"]
    other = CompanyFactory(name="Other")
    assert login(sally).get(reverse("customers:company_detail",
                                     args=[other.pk])).status_code == 404


def test_company_create_and_edit(admin):
    url = reverse("customers:company_create")
    response = admin.post(url, {"name": "", "domain": "x.example"})
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    response = admin.post(url, {"name": "Initech", "domain": "https://www.Initech.example/",
                                "employee_band": "51-200", "country": "us"})
    company = Company.objects.get(name="Initech")
    assert response["Location"] == reverse("customers:company_detail", args=[company.pk])
    assert company.domain == "initech.example"
    dup = admin.post(url, {"name": "Initech 2", "domain": "initech.example"})
    assert "domain" in dup.context["form"].errors
    edit = reverse("customers:company_edit", args=[company.pk])
    admin.post(edit, {"name": "Initech LLC", "domain": "initech.example"})
    company.refresh_from_db()
    assert company.name == "Initech LLC"
    page = text(admin.get(reverse("customers:company_detail", args=[company.pk])))
    assert "Initech LLC" in page and "name" in page  # the audit row


def test_company_suggest_lists_visible_names(make_user):
    sally = make_user("sales", username="sally")
    CompanyFactory(name="Acme Mine", owner=sally)
    CompanyFactory(name="Acme Hidden")
    response = login(sally).get(reverse("customers:company_suggest"), {"company_name": "acm"})
    assert '<option value="Acme Mine">' in text(response)
    assert "Hidden" not in text(response)


def test_contact_list_narrowed_to_a_segment(admin_client_logged_in):
    from clm.segments.services import segment_create
    from tests.factories import ContactFactory

    ContactFactory(country="DE", last_name="Inside")
    ContactFactory(country="FR", last_name="Outside")
    segment = segment_create(data={"name": "Germans", "definition": {"op": "and", "conditions": [
        {"type": "property", "field": "country", "op": "eq", "value": "DE"}]}})
    response = admin_client_logged_in.get(f"/contacts/?segment={segment.pk}")
    assert response.status_code == 200
    assert b"Inside" in response.content and b"Outside" not in response.content
    assert b"Germans" in response.content
    export = admin_client_logged_in.get(f"/contacts/export/?segment={segment.pk}")
    body = b"".join(export.streaming_content)
    assert b"Inside" in body and b"Outside" not in body
    assert admin_client_logged_in.get("/contacts/?segment=999999").status_code == 404


def test_contact_list_rows_show_every_cell_escaped(admin_client_logged_in, admin_user):
    from clm.customers.models import Tag

    owner = UserFactory(first_name="Olga", last_name="<b>Owner</b>")
    company = CompanyFactory(name="A&B <Ltd>")
    created = timezone.now() - timedelta(days=400)
    contact = ContactFactory(first_name="<script>alert(1)</script>", last_name="O'Brien",
                             email="ob@example.com", job_title="CTO & <i>founder</i>",
                             company=company, owner=owner, stage="customer", country="IE",
                             created_at=created,
                             last_activity_at=timezone.now() - timedelta(hours=3))
    contact.tags.add(Tag.objects.create(name="<vip>"))
    bare = ContactFactory(first_name="Bare", last_name="Row", email=None)
    page = text(admin_client_logged_in.get(LIST))
    row = next(r for r in page.split("<tr>") if "ob@example.com" in r)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in row
    assert f'<a href="{detail_url(contact)}"><strong>' in row
    assert "O&#x27;Brien" in row and "CTO &amp; &lt;i&gt;founder&lt;/i&gt;" in row
    assert f'href="?company={company.pk}" title="Contacts at A&amp;B &lt;Ltd&gt;"' in row
    assert "Olga &lt;b&gt;Owner&lt;/b&gt;" in row
    assert '<span class="badge stage stage-customer">customer</span>' in row
    assert "<td>IE</td>" in row and '<span class="tag">&lt;vip&gt;</span>' in row
    local = timezone.localtime(created)
    assert f'<time datetime="{local.isoformat()}">{local:%Y-%m-%d}</time>' in row
    assert "3\xa0hours ago" in row
    assert f'name="ids" value="{contact.pk}"' in row  # the admin may bulk-edit
    bare_row = next(r for r in page.split("<tr>") if f"{detail_url(bare)}" in r)
    assert '<span class="muted">—</span>' in bare_row  # no owner


def test_search_page_counts_its_matches_without_a_count_query(admin_client_logged_in):
    for i in range(60):
        ContactFactory(first_name=f"Zed{i}", last_name="Quill", email=f"zed{i}@example.com")
    ContactFactory(first_name="Other", last_name="Person", email="other@example.com")
    with CaptureQueriesContext(connection) as queries:
        page = text(admin_client_logged_in.get(LIST, {"q": "quill"}))
    assert "1\u201350 of 60" in page and "other@example.com" not in page
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    second = text(admin_client_logged_in.get(LIST, {"q": "quill", "page": 2}))
    assert "51\u201360 of 60" in second
    assert "1\u201350 of 61" in text(admin_client_logged_in.get(LIST, {"country": ""}))  # counted
