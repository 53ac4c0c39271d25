"""The UI shell: home page, navigation, password pages, saved views and capped counting."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse

import clm.web
from clm.core.errors import NotFound, ValidationFailed
from clm.customers import services
from clm.customers.models import Contact
from clm.web.queries import CappedPaginator, count_capped
from clm.web.services import clean_query, saved_view_delete, saved_view_save
from tests.factories import CompanyFactory, ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

WEB_TEMPLATES = Path(clm.web.__file__).parent / "templates"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_home_overview(admin_client_logged_in, admin_user, django_assert_max_num_queries):
    company = CompanyFactory(name="Acme")
    contact = services.contact_create(data={"first_name": "Ada", "last_name": "Lovelace",
                                            "company": company}, actor=admin_user)
    services.note_add(contact=contact, body="hello", actor=admin_user)
    for _ in range(10):
        ContactFactory()
    with django_assert_max_num_queries(9):
        response = admin_client_logged_in.get(reverse("web:home"))
    assert response.status_code == 200
    assert response.context["contact_count"] == (11, False)
    assert response.context["company_count"] == (1, False)
    assert [e.kind for e in response.context["activity"]] == ["note.added", "contact.created"]
    body = response.content.decode()
    assert "Ada Lovelace" in body
    assert "Newest contacts" in body


def test_home_for_own_scope_shows_only_own_activity(make_user):
    sally = make_user("sales", username="sally")
    sam = make_user("sales", username="sam")
    mine = services.contact_create(data={"first_name": "Mine"}, actor=sally)
    services.contact_create(data={"first_name": "Theirs"}, actor=sam)
    response = login(sally).get(reverse("web:home"))
    assert response.context["contact_count"] == (1, False)
    assert [e.contact for e in response.context["activity"]] == [mine]
    assert "Theirs" not in response.content.decode()


def test_home_without_a_role(db):
    response = login(UserFactory(username="nobody")).get(reverse("web:home"))
    assert response.status_code == 200
    assert "no access to customer records" in response.content.decode()
    assert Client().get(reverse("web:home")).status_code == 302


def test_navigation_marks_the_most_specific_entry(admin_client_logged_in):
    response = admin_client_logged_in.get(reverse("customers:company_list"))
    entries = {e["label"]: e["active"] for _, items in response.context["nav_sections"]
               for e in items}
    assert entries["Companies"] is True
    assert entries["Contacts"] is False
    response = admin_client_logged_in.get(reverse("customers:contact_list"))
    entries = {e["label"]: e["active"] for _, items in response.context["nav_sections"]
               for e in items}
    assert entries == {**entries, "Contacts": True, "Companies": False}


def test_navigation_hides_what_the_user_may_not_open(db):
    response = login(UserFactory(username="nobody")).get(reverse("web:home"))
    labels = [e["label"] for _, items in response.context["nav_sections"] for e in items]
    assert "Contacts" not in labels


# The admin app ships registration/* templates too and comes first in INSTALLED_APPS; these
# tests put CLM's templates first so they check CLM's pages.
@override_settings(TEMPLATES=[{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [WEB_TEMPLATES], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
        "clm.web.context_processors.navigation"]},
}])
def test_password_reset_and_change_pages(admin_user):
    client = Client()
    page = client.get(reverse("password_reset"))
    assert "Reset your password" in page.content.decode()
    response = client.post(reverse("password_reset"), {"email": admin_user.email})
    assert response["Location"] == reverse("password_reset_done")
    assert "Check your email" in client.get(reverse("password_reset_done")).content.decode()
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/accounts/reset/" in line)
    path = link[link.index("/accounts/reset/"):].strip()
    confirm = client.get(path, follow=True)
    assert "Choose a new password" in confirm.content.decode()
    form_url = confirm.redirect_chain[-1][0]
    mismatch = client.post(form_url, {"new_password1": "New-pass-9876",
                                      "new_password2": "Other-pass-9876"})
    assert "has-error" in mismatch.content.decode()
    done = client.post(form_url, {"new_password1": "New-pass-9876",
                                  "new_password2": "New-pass-9876"}, follow=True)
    assert "Your password is set" in done.content.decode()
    bad = client.get("/accounts/reset/MQ/bad-token/", follow=True)
    assert "This link has expired" in bad.content.decode()
    admin_user.refresh_from_db()
    client.force_login(admin_user)
    assert "Change your password" in client.get(reverse("password_change")).content.decode()
    changed = client.post(reverse("password_change"), {
        "old_password": "New-pass-9876", "new_password1": "Third-pass-5432",
        "new_password2": "Third-pass-5432"}, follow=True)
    assert "Password changed" in changed.content.decode()


def test_count_capped_and_capped_paginator(db):
    for _ in range(5):
        ContactFactory()
    qs = Contact.objects.order_by("pk")
    assert count_capped(qs, cap=10) == (5, False)
    assert count_capped(qs, cap=3) == (3, True)
    paginator = CappedPaginator(qs, 2, cap=3)
    assert paginator.count == 3
    assert paginator.is_capped
    assert paginator.num_pages == 2
    assert len(paginator.page(2).object_list) == 1


def test_saved_view_services(make_user):
    user = make_user("sales", username="sally")
    other = make_user("sales", username="sam")
    view = saved_view_save(user=user, page="contacts", name=" Mine ", query="q=a&page=3&x=1",
                           allowed={"q"})
    assert (view.name, view.query) == ("Mine", "q=a")
    assert saved_view_save(user=user, page="contacts", name="Mine", query="q=b").pk == view.pk
    with pytest.raises(ValidationFailed) as err:
        saved_view_save(user=user, page="contacts", name="", query="")
    assert err.value.field == "name"
    with pytest.raises(NotFound):
        saved_view_delete(user=other, page="contacts", view_id=view.pk)
    saved_view_delete(user=user, page="contacts", view_id=view.pk)
    assert clean_query("page=2&q=x&csrfmiddlewaretoken=t") == "q=x"


def test_capped_paginator_knows_the_last_page_without_counting(db, django_assert_num_queries):
    for _ in range(5):
        ContactFactory()
    qs = Contact.objects.order_by("pk")
    paginator = CappedPaginator(qs, 10, cap=100)
    with django_assert_num_queries(1):  # the rows only: fewer than a page means no COUNT
        page = paginator.get_page(1)
        assert (paginator.count, page.has_next(), len(page.object_list)) == (5, False, 5)
    paginator = CappedPaginator(qs, 2, cap=100)
    with django_assert_num_queries(2):  # a further page exists: the rows and a capped COUNT
        page = paginator.get_page(1)
        assert (paginator.count, page.has_next()) == (5, True)
    assert len(CappedPaginator(qs, 2, cap=100).get_page(99).object_list) == 1  # → last page
    assert CappedPaginator(qs, 2, cap=3).get_page(3).number == 2  # beyond the cap → last


def test_capped_paginator_later_pages_keep_the_order_and_the_joined_rows(db):
    company = CompanyFactory(name="Acme")
    made = [ContactFactory(company=company if i % 2 else None) for i in range(7)]
    qs = Contact.objects.select_related("company").prefetch_related("tags").order_by("-pk")
    paginator = CappedPaginator(qs, 3, cap=100)
    pages = [[c.pk for c in paginator.get_page(n).object_list] for n in (1, 2, 3)]
    assert pages == [[c.pk for c in reversed(made)][i:i + 3] for i in (0, 3, 6)]
    second = paginator.get_page(2).object_list
    assert [c.company.name if c.company_id else None for c in second] == \
        ["Acme" if made[i].company_id else None for i in (3, 2, 1)]
