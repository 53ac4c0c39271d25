"""/api/v1/segments: CRUD, count, members, export, snapshot — permissions and visibility."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission

from clm.segments.models import Segment, SegmentMembership
from tests.factories import ContactFactory

GERMANS = {"op": "and", "conditions": [{"type": "property", "field": "country", "op": "eq",
                                        "value": "DE"}]}
URL = "/api/v1/segments"


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=codenames, content_type__app_label__in=["segments", "customers"]))


def post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def own_user(make_user):
    """A sales user (sees only contacts they own) allowed to use segments."""
    user = make_user("sales", username="owen")
    grant(user, "view_segment", "add_segment", "change_segment", "view_contact")
    return user


def test_crud(admin_api, people):
    r = post(admin_api, URL, {"name": "Germans", "definition": GERMANS})
    assert r.status_code == 201, r.content
    seg = r.json()
    assert seg["kind"] == "dynamic" and seg["definition"] == GERMANS
    r = admin_api.patch(f"{URL}/{seg['id']}", json.dumps({"description": "DE"}),
                        content_type="application/json")
    assert r.status_code == 200 and r.json()["description"] == "DE"
    assert admin_api.get(f"{URL}/{seg['id']}").json()["name"] == "Germans"
    assert [s["name"] for s in admin_api.get(URL).json()["items"]] == ["Germans"]
    assert admin_api.delete(f"{URL}/{seg['id']}").status_code == 204
    assert admin_api.get(f"{URL}/{seg['id']}").status_code == 404
    assert admin_api.get(f"{URL}/99999999999999999999").status_code in (404, 422)


def test_invalid_definition_names_the_path(admin_api, people):
    bad = {"op": "and", "conditions": [GERMANS["conditions"][0],
                                       {"type": "p_alive", "min": 0.5},
                                       {"type": "stage", "op": "like", "value": ["lead"]}]}
    r = post(admin_api, URL, {"name": "Bad", "definition": bad})
    assert r.status_code == 422
    assert r.json()["field"] == "definition.conditions[2].op"
    r = post(admin_api, f"{URL}/count", {"definition": bad})
    assert r.status_code == 422 and r.json()["field"] == "definition.conditions[2].op"
    r = post(admin_api, URL, {"name": "Nul", "definition": {
        "op": "and", "conditions": [{"type": "property", "field": "city", "op": "eq",
                                     "value": "a\x00b"}]}})
    assert r.status_code == 422
    r = post(admin_api, URL, {"name": "X", "definition": GERMANS, "colour": "red"})
    assert r.status_code == 422 and r.json()["field"] == "colour"
    assert not Segment.objects.exists()


def test_count_respects_visibility(admin_api, own_user, make_api_client, people):
    r = post(admin_api, f"{URL}/count", {"definition": GERMANS})
    assert r.json()["count"] == 2
    assert {c["name"] for c in r.json()["contacts"]} >= {people.cat.display_name}
    people.cat.owner = own_user
    people.cat.save()
    r = post(make_api_client(own_user), f"{URL}/count", {"definition": GERMANS})
    assert r.status_code == 200
    assert r.json()["count"] == 1 and [c["id"] for c in r.json()["contacts"]] == [people.cat.pk]


def test_permissions(make_user, make_api_client, people):
    nobody = make_user("sales", username="nora")  # the sales role has no segment permissions
    client = make_api_client(nobody)
    seg = Segment.objects.create(name="S", definition=GERMANS, created_at=people.ann.created_at,
                                 updated_at=people.ann.created_at)
    for method, url, body in [
        ("get", URL, None), ("post", URL, {"name": "N", "definition": GERMANS}),
        ("post", f"{URL}/count", {"definition": GERMANS}), ("get", f"{URL}/{seg.pk}", None),
        ("patch", f"{URL}/{seg.pk}", {"name": "M"}), ("delete", f"{URL}/{seg.pk}", None),
        ("get", f"{URL}/{seg.pk}/contacts", None), ("get", f"{URL}/{seg.pk}/export.csv", None),
        ("post", f"{URL}/{seg.pk}/snapshot", {}), ("post", f"{URL}/{seg.pk}/members",
                                                   {"add": [people.ann.pk]}),
    ]:
        kwargs = ({"data": json.dumps(body), "content_type": "application/json"}
                  if body is not None else {})
        r = getattr(client, method)(url, **kwargs)
        assert r.status_code == 403, (method, url, r.status_code)
    seg.refresh_from_db()
    assert seg.name == "S" and Segment.objects.count() == 1
    assert make_api_client(make_user("admin", username="ro", superuser=True), "read").post(
        URL, json.dumps({"name": "N", "definition": GERMANS}),
        content_type="application/json").status_code == 403


def test_contacts_keyset_pages_visible_members(own_user, make_api_client, people,
                                               django_assert_max_num_queries):
    extra = ContactFactory.create_batch(5, country="DE", owner=own_user)
    people.ann.owner = own_user
    people.ann.save()
    seg = Segment.objects.create(name="S", definition=GERMANS, created_at=people.ann.created_at,
                                 updated_at=people.ann.created_at)
    client = make_api_client(own_user)
    seen, cursor = [], None
    while True:
        url = f"{URL}/{seg.pk}/contacts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        # Auth, permissions and scope, the page and its tags: the same for every page size.
        with django_assert_max_num_queries(10):
            body = client.get(url).json()
        seen += [c["id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    # Ann and the five extras are the user's; Cat is German but not theirs.
    assert seen == sorted([people.ann.pk, *[c.pk for c in extra]])
    assert client.get(f"{URL}/{seg.pk}/contacts?sort=shoe").status_code == 422


def test_export_csv(own_user, make_api_client, people):
    people.ann.owner = own_user
    people.ann.save()
    seg = Segment.objects.create(name="S", definition=GERMANS, created_at=people.ann.created_at,
                                 updated_at=people.ann.created_at)
    r = make_api_client(own_user).get(f"{URL}/{seg.pk}/export.csv")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    lines = b"".join(r.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0].startswith("clm_id,") and len(lines) == 2
    assert lines[1].startswith(f"{people.ann.pk},Ann,")


def test_snapshot_and_members(own_user, make_api_client, people):
    people.ann.owner = own_user
    people.ann.save()
    seg = Segment.objects.create(name="S", definition=GERMANS, created_at=people.ann.created_at,
                                 updated_at=people.ann.created_at)
    client = make_api_client(own_user)
    r = post(client, f"{URL}/{seg.pk}/snapshot", {"name": "Mine"})
    assert r.status_code == 201
    snap = r.json()
    assert snap["kind"] == "static" and snap["member_count"] is None  # own scope: no totals
    assert set(SegmentMembership.objects.filter(segment_id=snap["id"])
               .values_list("contact_id", flat=True)) == {people.ann.pk}
    bob = people.bob
    r = post(client, f"{URL}/{snap['id']}/members", {"add": [bob.pk]})
    assert r.status_code == 422 and r.json()["field"] == "contact_ids"  # not the user's
    bob.owner = own_user
    bob.save()
    r = post(client, f"{URL}/{snap['id']}/members", {"add": [bob.pk], "remove": [people.ann.pk]})
    assert r.json() == {"added": 1, "removed": 1}
    r = post(client, f"{URL}/{seg.pk}/members", {"add": [bob.pk]})
    assert r.status_code == 422  # a dynamic segment has no hand-picked members
