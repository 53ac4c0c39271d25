"""CSV export: rows for any filtered list, formulas neutralised, no N+1, visibility."""

from __future__ import annotations

import csv
import io

import pytest

from clm.customers.exporting import companies_export_rows, contacts_export_rows
from clm.customers.models import Company, Contact, Tag
from clm.customers.services import property_definition_create
from tests.factories import CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


def test_contacts_export_rows_batches_queries(django_assert_max_num_queries, admin_user):
    property_definition_create(object_type="contact", key="plan", label="Plan", type="text")
    acme = CompanyFactory(name="Acme")
    vip, new = Tag.objects.create(name="vip"), Tag.objects.create(name="new")
    for i in range(30):
        c = ContactFactory(company=acme if i % 2 else None, owner=admin_user,
                           properties={"plan": f"p{i}"})
        c.tags.add(vip, new)
    with django_assert_max_num_queries(3):
        header, rows = contacts_export_rows(Contact.objects.all())
        rows = list(rows)
    assert header[:4] == ["clm_id", "first_name", "last_name", "email"]
    assert header[-1] == "plan"
    assert len(rows) == 30
    first = dict(zip(header, rows[1], strict=True))
    assert (first["company"], first["owner"], first["tags"], first["plan"]) == (
        "Acme", admin_user.username, "new, vip", "p1")


def test_companies_export_rows():
    CompanyFactory(name="=cmd|' /C calc'!A0", domain="evil.example")
    header, rows = companies_export_rows(Company.objects.all())
    row = dict(zip(header, next(rows), strict=True))
    assert row["name"].startswith("=cmd")  # raw; csv_response neutralises


def test_export_api_neutralises_formulas_and_filters(admin_api):
    ContactFactory(first_name="=HYPERLINK(\"http://evil\")", last_name="Smith",
                   email="evil@example.com", phone="+14155550100", country="US")
    ContactFactory(first_name="Ok", last_name="Jones", email="ok@example.com", country="DE")
    response = admin_api.get("/api/v1/exports/contacts.csv?country=US")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = read_csv(response)
    assert [r["email"] for r in rows] == ["evil@example.com"]
    assert rows[0]["first_name"] == "'=HYPERLINK(\"http://evil\")"
    rows = read_csv(admin_api.get("/api/v1/exports/contacts.csv?q=jones"))
    assert [r["email"] for r in rows] == ["ok@example.com"]


def test_export_only_what_the_user_may_see(make_user, make_api_client):
    sally, other = make_user("sales"), make_user("sales")
    ContactFactory(email="mine@example.com", owner=sally)
    ContactFactory(email="theirs@example.com", owner=other)
    rows = read_csv(make_api_client(sally).get("/api/v1/exports/contacts.csv"))
    assert [r["email"] for r in rows] == ["mine@example.com"]


def test_export_refuses_without_view_permission(make_user, make_api_client):
    user = make_user("sales")
    user.groups.clear()  # no role: no permissions
    response = make_api_client(user).get("/api/v1/exports/contacts.csv")
    assert response.status_code == 403


def test_companies_export_api(admin_api):
    CompanyFactory(name="Acme", country="DE")
    CompanyFactory(name="Other", country="FR")
    rows = read_csv(admin_api.get("/api/v1/exports/companies.csv?country=de"))
    assert [r["name"] for r in rows] == ["Acme"]
