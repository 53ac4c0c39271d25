"""REST API for contacts, companies and property definitions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from clm.customers import services
from clm.customers.models import Company, Contact, FieldChange, PropertyDefinition
from clm.timeline.models import Event
from tests.factories import CompanyFactory, ContactFactory

pytestmark = pytest.mark.django_db

JSON = "application/json"


def post(client: Client, url: str, body, method: str = "post"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(client, method)(url, data=data, content_type=JSON)


def patch(client: Client, url: str, body):
    return post(client, url, body, method="patch")


# --- contacts CRUD --------------------------------------------------------------------------

def test_contact_crud_round_trip(admin_api, admin_user):
    company = CompanyFactory()
    created = post(admin_api, "/api/v1/contacts", {
        "first_name": "Ada", "last_name": "Lovelace", "email": " Ada@Example.com ",
        "phone": "020 7946 0958", "country": "gb", "company_id": company.pk,
        "tags": ["VIP", "newsletter"], "date_of_birth": "1990-12-10"})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["email"] == "ada@example.com"
    assert body["phone"] == "+442079460958"
    assert body["company_id"] == company.pk
    assert body["owner_id"] == admin_user.pk
    assert body["tags"] == ["newsletter", "vip"]
    assert body["age_band"]
    assert {"id", "first_name", "last_name", "job_title", "region", "city", "timezone",
            "income_band", "source", "stage", "properties", "created_at",
            "updated_at"} <= set(body)
    url = f"/api/v1/contacts/{body['id']}"
    assert admin_api.get(url).json()["last_name"] == "Lovelace"

    changed = patch(admin_api, url, {"job_title": "Analyst", "tags": ["vip"]})
    assert changed.status_code == 200, changed.json()
    assert changed.json()["job_title"] == "Analyst"
    assert changed.json()["tags"] == ["vip"]
    assert changed.json()["first_name"] == "Ada"  # untouched by a partial update
    assert FieldChange.objects.filter(object_id=body["id"], field="job_title", via="api").exists()
    kinds = set(Event.objects.filter(contact_id=body["id"]).values_list("kind", flat=True))
    assert kinds == {"contact.created", "contact.updated"}

    assert admin_api.delete(url).status_code == 204
    assert admin_api.get(url).status_code == 404
    assert not Contact.objects.filter(pk=body["id"]).exists()


def test_contact_properties_validated_and_merged(admin_api):
    services.property_definition_create(object_type="contact", key="plan", label="Plan",
                                        type="choice", choices=["free", "pro"])
    services.property_definition_create(object_type="contact", key="seats", label="Seats",
                                        type="number")
    bad = post(admin_api, "/api/v1/contacts", {"email": "p@example.com",
                                               "properties": {"plan": "gold"}})
    assert bad.status_code == 422
    assert bad.json()["field"] == "properties.plan"
    ok = post(admin_api, "/api/v1/contacts", {"email": "p@example.com",
                                              "properties": {"plan": "pro", "seats": "5"}})
    assert ok.status_code == 201
    assert ok.json()["properties"] == {"plan": "pro", "seats": 5}
    merged = patch(admin_api, f"/api/v1/contacts/{ok.json()['id']}",
                   {"properties": {"seats": None}})
    assert merged.json()["properties"] == {"plan": "pro"}


def test_duplicate_email_is_conflict(admin_api):
    assert post(admin_api, "/api/v1/contacts", {"email": "a@example.com"}).status_code == 201
    again = post(admin_api, "/api/v1/contacts", {"email": "A@example.com"})
    assert again.status_code == 409
    assert again.json()["field"] == "email"
    assert Contact.objects.count() == 1


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"email": "not-an-email"}, "email"),
    ({"email": "x" * 250 + "@example.com"}, "email"),
    ({"first_name": 123}, "first_name"),
    ({"date_of_birth": "1990-13-45"}, "date_of_birth"),
    ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
    ({"shoe_size": 44}, "shoe_size"),
    ({"stage": "customer"}, "stage"),
    ({"phone": "12"}, "phone"),
    ({"country": "Germany"}, "country"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"age_band": "old"}, "age_band"),
    ({"company_id": 999999}, "company_id"),
    ({"company_id": "abc"}, "company_id"),
    ({"owner_id": 999999}, "owner_id"),
    ({"tags": "vip"}, "tags"),
    ({"first_name": "A\x00B"}, "first_name"),
    ({"properties": {"x": float("nan")}}, "properties"),
    ({"properties": {"nope": 1}}, "properties.nope"),
])
def test_contact_create_bad_input_names_the_field(admin_api, body, field):
    response = post(admin_api, "/api/v1/contacts", json.dumps(body, allow_nan=True))
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["field"] == field
    assert Contact.objects.count() == 0


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "null", '"text"'])
def test_malformed_json_is_4xx(admin_api, raw):
    response = post(admin_api, "/api/v1/contacts", raw)
    assert 400 <= response.status_code < 500
    assert response.json()["code"]
    assert Contact.objects.count() == 0


def test_patch_bad_input_changes_nothing(admin_api):
    contact = ContactFactory(first_name="Ada")
    response = patch(admin_api, f"/api/v1/contacts/{contact.pk}",
                     {"first_name": "Bea", "email": "bad"})
    assert response.status_code == 422
    assert response.json()["field"] == "email"
    contact.refresh_from_db()
    assert contact.first_name == "Ada"


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=abc", "limit"),
    ("sort=password", "sort"), ("sort=-search_text", "sort"),
    ("cursor=%%%", "cursor"), ("cursor=WyJ4Il0", "cursor"),
    ("created_after=yesterday", "created_after"), ("owner=alice", "owner"),
    ("company=-1", "company"), ("has_email=maybe", "has_email"),
])
def test_contact_list_bad_query_names_the_field(admin_api, query, field):
    response = admin_api.get(f"/api/v1/contacts?{query}")
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field


def test_cursor_of_another_sort_is_refused(admin_api):
    ContactFactory.create_batch(3)
    page = admin_api.get("/api/v1/contacts?limit=1&sort=email").json()
    other = admin_api.get(f"/api/v1/contacts?limit=1&sort=created_at&cursor={page['next_cursor']}")
    assert other.status_code == 422
    assert other.json()["field"] == "cursor"


def test_huge_ids_are_not_found(admin_api):
    assert admin_api.get("/api/v1/contacts/99999999999999999999999").status_code == 404
    assert admin_api.get("/api/v1/companies/99999999999999999999999").status_code == 404


# --- list: search, filters, sort, pagination ------------------------------------------------

def _walk(client: Client, url: str) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        sep = "&" if "?" in url else "?"
        response = client.get(url + (f"{sep}cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.content
        body = response.json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return items
        assert pages < 50


def test_pagination_visits_every_contact_once_in_order(admin_api):
    base = timezone.now() - timedelta(days=10)
    for i in range(7):
        # Ties on created_at check the pk tie-breaker.
        ContactFactory(created_at=base + timedelta(hours=i // 2), last_name=f"N{i % 3}")
    ContactFactory(email=None, last_name="Noemail")
    ContactFactory(email=None, last_name="Noemail2")
    all_ids = set(Contact.objects.values_list("pk", flat=True))
    for sort in ["created_at", "-created_at", "email", "-email", "last_name", "-last_name", "id",
                 "-last_activity_at"]:
        items = _walk(admin_api, f"/api/v1/contacts?limit=2&sort={sort}")
        ids = [c["id"] for c in items]
        assert len(ids) == len(all_ids) and set(ids) == all_ids, sort
        field = sort.lstrip("-")
        values = [c[field] for c in items if c[field] is not None]
        assert values == sorted(values, reverse=sort.startswith("-")), sort
        # NULLs come last whatever the direction.
        nulls = [c[field] is None for c in items]
        assert nulls == sorted(nulls), sort


def test_search_and_filters(admin_api, sales_user):
    acme = CompanyFactory(name="Acme")
    ada = ContactFactory(first_name="Ada", last_name="Lovelace", email="ada@acme.test",
                         company=acme, country="GB", owner=sales_user)
    services.contact_update(contact=ada, tags=["vip"])
    ContactFactory(first_name="Alan", last_name="Turing", email="alan@bletchley.test",
                   country="GB")
    ContactFactory(first_name="Grace", last_name="Hopper", email=None, country="US")

    def ids(query: str) -> set[int]:
        response = admin_api.get(f"/api/v1/contacts?{query}")
        assert response.status_code == 200, response.content
        return {c["id"] for c in response.json()["items"]}

    assert ids("q=ada") == {ada.pk}
    assert ids("q=lovel") == {ada.pk}
    assert ids("q=@acme.test") == {ada.pk}
    assert len(ids("country=gb")) == 2
    assert ids(f"company={acme.pk}") == {ada.pk}
    assert ids("tag=VIP") == {ada.pk}
    assert ids(f"owner={sales_user.pk}") == {ada.pk}
    assert len(ids("owner=none")) == 2
    assert len(ids("has_email=false")) == 1
    assert ids("q=ada&country=US") == set()
    future = (timezone.now() + timedelta(days=1)).isoformat().replace("+", "%2B")
    assert ids(f"created_after={future}") == set()


def test_limit_defaults_and_caps(admin_api, settings):
    settings.CLM_API_DEFAULT_PAGE_SIZE = 3
    settings.CLM_API_MAX_PAGE_SIZE = 4
    ContactFactory.create_batch(5)
    body = admin_api.get("/api/v1/contacts").json()
    assert len(body["items"]) == 3 and body["next_cursor"]
    assert len(admin_api.get("/api/v1/contacts?limit=4").json()["items"]) == 4
    over = admin_api.get("/api/v1/contacts?limit=5")
    assert over.status_code == 422 and over.json()["field"] == "limit"


def test_list_query_count_does_not_grow(make_user, make_api_client,
                                        django_assert_max_num_queries):
    manager = make_user("manager", username="mgr", team="east")
    company = CompanyFactory(owner=manager)
    for i in range(30):
        contact = ContactFactory(company=company, owner=manager)
        if i % 3 == 0:
            services.contact_update(contact=contact, tags=["a", "b"])
        CompanyFactory(owner=manager)
    client = make_api_client(manager)
    client.get("/api/v1/contacts?limit=1")  # warm-up: first-request caches
    # token, last-used, permissions (2), scope, team, page, tag prefetch
    with django_assert_max_num_queries(8):
        response = client.get("/api/v1/contacts?limit=30&sort=email")
    assert len(response.json()["items"]) == 30
    with django_assert_max_num_queries(7):
        response = client.get("/api/v1/companies?limit=30")
    assert len(response.json()["items"]) == 30


# --- visibility and permissions -------------------------------------------------------------

def test_sales_sees_only_own_contacts(make_user, make_api_client):
    alice, bob = make_user("sales", username="alice"), make_user("sales", username="bob")
    mine, theirs = ContactFactory(owner=alice), ContactFactory(owner=bob)
    client = make_api_client(alice)
    listed = {c["id"] for c in client.get("/api/v1/contacts").json()["items"]}
    assert listed == {mine.pk}
    assert client.get(f"/api/v1/contacts/{theirs.pk}").status_code == 404
    response = patch(client, f"/api/v1/contacts/{theirs.pk}", {"first_name": "Hacked"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.first_name != "Hacked"
    # Sales may not delete at all; the permission check answers first.
    assert client.delete(f"/api/v1/contacts/{mine.pk}").status_code == 403
    assert Contact.objects.filter(pk=mine.pk).exists()


def test_manager_cannot_delete_contact_outside_team(make_user, make_api_client):
    manager = make_user("manager", username="mgr", team="east")
    outsider = make_user("sales", username="out", team="west")
    contact = ContactFactory(owner=outsider)
    response = make_api_client(manager).delete(f"/api/v1/contacts/{contact.pk}")
    assert response.status_code == 404
    assert Contact.objects.filter(pk=contact.pk).exists()


def _no_role_user(make_user):
    user = make_user("sales", username="norole")
    user.groups.clear()
    return user


ENDPOINTS = [
    ("get", "/api/v1/contacts", None),
    ("get", "/api/v1/contacts/{contact}", None),
    ("post", "/api/v1/contacts", {"email": "new@example.com"}),
    ("patch", "/api/v1/contacts/{contact}", {"first_name": "Changed"}),
    ("delete", "/api/v1/contacts/{contact}", None),
    ("post", "/api/v1/contacts/batch", {"contacts": [{"email": "new@example.com"}]}),
    ("get", "/api/v1/companies", None),
    ("get", "/api/v1/companies/{company}", None),
    ("post", "/api/v1/companies", {"name": "New Co"}),
    ("patch", "/api/v1/companies/{company}", {"name": "Changed"}),
    ("delete", "/api/v1/companies/{company}", None),
    ("get", "/api/v1/properties", None),
    ("get", "/api/v1/properties/{prop}", None),
    ("post", "/api/v1/properties", {"object_type": "contact", "key": "k2", "type": "text"}),
    ("patch", "/api/v1/properties/{prop}", {"label": "Changed"}),
    ("delete", "/api/v1/properties/{prop}", None),
]


def _snapshot() -> tuple:
    return (sorted(Contact.objects.values_list("pk", "first_name")),
            sorted(Company.objects.values_list("pk", "name")),
            sorted(PropertyDefinition.objects.values_list("pk", "label")),
            Event.objects.count(), FieldChange.objects.count())


def _fill(url: str, contact, company, prop) -> str:
    return url.format(contact=contact.pk, company=company.pk, prop=prop.pk)


@pytest.fixture
def records(admin_user):
    company = CompanyFactory(name="Keep Co", owner=admin_user)
    contact = ContactFactory(first_name="Keep", owner=admin_user, company=company)
    prop = services.property_definition_create(object_type="contact", key="k", label="K",
                                               type="text")
    return contact, company, prop


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_every_endpoint_refuses_a_user_without_the_right(make_user, make_api_client, records,
                                                         method, url, body):
    client = make_api_client(_no_role_user(make_user))
    before = _snapshot()
    response = post(client, _fill(url, *records), body or {}, method=method) if body \
        else getattr(client, method)(_fill(url, *records))
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "forbidden"
    assert _snapshot() == before


@pytest.mark.parametrize(("method", "url", "body"), [e for e in ENDPOINTS if e[0] != "get"])
def test_read_only_token_refused_on_writes(admin_user, make_api_client, records, method, url, body):
    client = make_api_client(admin_user, scope="read")
    before = _snapshot()
    response = post(client, _fill(url, *records), body or {}, method=method) if body \
        else getattr(client, method)(_fill(url, *records))
    assert response.status_code == 403
    assert _snapshot() == before


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_unauthenticated_is_401(records, method, url, body):
    client = Client()
    response = post(client, _fill(url, *records), body or {}, method=method) if body \
        else getattr(client, method)(_fill(url, *records))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_contact_cannot_be_linked_to_invisible_company(make_user, make_api_client):
    alice, bob = make_user("sales", username="alice"), make_user("sales", username="bob")
    hidden = CompanyFactory(owner=bob)
    response = post(make_api_client(alice), "/api/v1/contacts",
                    {"email": "x@example.com", "company_id": hidden.pk})
    assert response.status_code == 422
    assert response.json()["field"] == "company_id"


def test_session_auth_works_for_the_ui(admin_client_logged_in):
    ContactFactory()
    assert admin_client_logged_in.get("/api/v1/contacts").status_code == 200


# --- contacts batch -------------------------------------------------------------------------

def test_contacts_batch_upserts_and_is_idempotent(admin_api):
    ContactFactory(email="old@example.com", first_name="Old")
    batch = {"contacts": [
        {"email": "new@example.com", "first_name": "New"},
        {"email": "old@example.com", "first_name": "Renamed"},
        {"external_id": "crm-1", "last_name": "Ext"},
        {"email": "bad-email"},
        {"first_name": "No identity"},
        {"email": "x@example.com", "unknown": 1},
        "not an object",
    ]}
    first = post(admin_api, "/api/v1/contacts/batch", batch)
    assert first.status_code == 200, first.content
    results = first.json()["results"]
    assert [r["status"] for r in results] == ["created", "updated", "created", "rejected",
                                              "rejected", "rejected", "rejected"]
    assert [r["index"] for r in results] == list(range(7))
    assert results[3]["error"]["field"] == "email"
    assert results[4]["error"]["code"] == "required"
    assert results[5]["error"]["field"] == "unknown"
    assert Contact.objects.get(email="old@example.com").first_name == "Renamed"
    count = Contact.objects.count()

    again = post(admin_api, "/api/v1/contacts/batch", batch).json()["results"]
    assert [r["status"] for r in again[:3]] == ["unchanged"] * 3
    assert [r["id"] for r in again[:3]] == [r["id"] for r in results[:3]]
    assert Contact.objects.count() == count


def test_contacts_batch_does_not_touch_invisible_contacts(make_user, make_api_client):
    alice, bob = make_user("sales", username="alice"), make_user("sales", username="bob")
    ContactFactory(email="bobs@example.com", first_name="Bob's", owner=bob)
    response = post(make_api_client(alice), "/api/v1/contacts/batch",
                    {"contacts": [{"email": "bobs@example.com", "first_name": "Mine"}]})
    assert response.json()["results"][0]["status"] == "rejected"
    assert Contact.objects.get(email="bobs@example.com").first_name == "Bob's"


def test_contacts_batch_cap(admin_api, settings):
    settings.CLM_INGEST_MAX_BATCH = 3
    response = post(admin_api, "/api/v1/contacts/batch",
                    {"contacts": [{"email": f"c{i}@example.com"} for i in range(4)]})
    assert response.status_code == 422
    assert response.json()["field"] == "contacts"
    assert Contact.objects.count() == 0


# --- companies ------------------------------------------------------------------------------

def test_company_crud_and_list(admin_api):
    created = post(admin_api, "/api/v1/companies", {"name": "Acme", "domain": "https://www.Acme.com/",
                                                    "employee_band": "11-50", "country": "de"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["domain"] == "acme.com" and body["country"] == "DE"
    url = f"/api/v1/companies/{body['id']}"
    assert patch(admin_api, url, {"industry": "Rockets"}).json()["industry"] == "Rockets"
    CompanyFactory(name="Beta")
    CompanyFactory(name="Gamma", country="FR")
    names = [c["name"] for c in _walk(admin_api, "/api/v1/companies?limit=1&sort=name")]
    assert names == ["Acme", "Beta", "Gamma"]
    assert [c["name"] for c in admin_api.get("/api/v1/companies?q=gam").json()["items"]] == ["Gamma"]
    assert [c["name"] for c in admin_api.get("/api/v1/companies?country=fr").json()["items"]] == [
        "Gamma"]
    assert admin_api.delete(url).status_code == 204
    assert not Company.objects.filter(name="Acme").exists()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"), ({"name": ""}, "name"), ({"name": "X", "employee_band": "lots"}, "employee_band"),
    ({"name": "X", "owner_id": 424242}, "owner_id"), ({"name": "X", "domain": "d" * 300}, "domain"),
])
def test_company_bad_input(admin_api, body, field):
    response = post(admin_api, "/api/v1/companies", body)
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field
    assert Company.objects.count() == 0


# --- property definitions -------------------------------------------------------------------

def test_property_definition_crud(admin_api):
    created = post(admin_api, "/api/v1/properties", {
        "object_type": "contact", "key": "plan", "label": "Plan", "type": "choice",
        "choices": ["free", "pro"]})
    assert created.status_code == 201, created.content
    url = f"/api/v1/properties/{created.json()['id']}"
    assert patch(admin_api, url, {"label": "Pricing plan"}).json()["label"] == "Pricing plan"
    assert patch(admin_api, url, {"type": "text"}).json()["field"] == "type"  # not changeable
    listed = admin_api.get("/api/v1/properties?object_type=contact").json()["items"]
    assert [p["key"] for p in listed] == ["plan"]
    dup = post(admin_api, "/api/v1/properties", {"object_type": "contact", "key": "plan",
                                                 "type": "text"})
    assert dup.status_code == 409 and dup.json()["field"] == "key"
    bad = post(admin_api, "/api/v1/properties", {"object_type": "deal", "key": "x", "type": "text"})
    assert bad.status_code == 422 and bad.json()["field"] == "object_type"
    assert admin_api.delete(url).status_code == 204
    assert PropertyDefinition.objects.count() == 0


def test_openapi_lists_the_endpoints(admin_api):
    spec = Client().get("/api/openapi.json").json()
    for path in ["/api/v1/contacts", "/api/v1/contacts/{contact_id}", "/api/v1/contacts/batch",
                 "/api/v1/companies", "/api/v1/properties", "/api/v1/events/batch"]:
        assert path in spec["paths"], path
    for name in ["ContactIn", "ContactOut", "ContactPatch", "CompanyIn", "CompanyOut",
                 "PropertyDefinitionIn", "PropertyDefinitionOut"]:
        assert name in spec["components"]["schemas"], name


@pytest.mark.parametrize("pin_limit", [0, 3, 5_000])
def test_search_pages_are_the_same_whether_matches_are_pinned_or_not(admin_api, monkeypatch,
                                                                    pin_limit):
    """Below SEARCH_PIN_LIMIT matches the search is pinned to their ids; above it the sort
    index is walked. Either way the same contacts come back, in the same order, page by page."""
    from clm.customers import queries

    monkeypatch.setattr(queries, "SEARCH_PIN_LIMIT", pin_limit)
    for i in range(7):
        ContactFactory(first_name="Mara", last_name=f"Quill{i}", email=f"mq{i}@example.test",
                       country="GB" if i % 2 else "FR")
    ContactFactory(first_name="Otto", last_name="Other", email="otto@example.test",
                   country="GB")
    seen, cursor = [], ""
    while True:
        body = admin_api.get(f"/api/v1/contacts?q=quill&country=GB&sort=last_name&limit=2"
                             f"{cursor}").json()
        seen += [c["last_name"] for c in body["items"]]
        if not body["next_cursor"]:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == ["Quill1", "Quill3", "Quill5"]
