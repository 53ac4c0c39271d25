"""Staff UI of segments: list, builder with live count, detail, export, snapshot, members."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from clm.segments.models import Segment, SegmentMembership
from tests.segments.test_api import GERMANS, grant


@pytest.fixture
def seg(people):
    return Segment.objects.create(name="Germans", definition=GERMANS,
                                  created_at=people.ann.created_at,
                                  updated_at=people.ann.created_at)


def test_list_and_nav(admin_client_logged_in, seg, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        r = admin_client_logged_in.get(reverse("segments:segment_list"))
    assert r.status_code == 200
    assert b"Germans" in r.content and reverse("segments:segment_list").encode() in r.content


def test_live_count_fragment(admin_client_logged_in, people, django_assert_max_num_queries):
    url = reverse("segments:segment_count")
    with django_assert_max_num_queries(8):
        r = admin_client_logged_in.post(url, {"definition": json.dumps(GERMANS)})
    assert r.status_code == 200
    assert b'data-count="2"' in r.content and b"Ann" in r.content and b"Bob" not in r.content
    r = admin_client_logged_in.post(url, {"definition": json.dumps(
        {"op": "and", "conditions": [{"type": "p_alive", "min": 7}]})})
    assert b"conditions[0].min" in r.content and b'role="alert"' in r.content
    r = admin_client_logged_in.post(url, {"definition": "{not json"})
    assert b"not valid JSON" in r.content


def test_builder_creates_and_edits(admin_client_logged_in, people):
    r = admin_client_logged_in.get(reverse("segments:segment_create"))
    assert r.status_code == 200 and b'id="segment-config"' in r.content
    r = admin_client_logged_in.post(reverse("segments:segment_create"), {
        "name": "DE", "kind": "dynamic", "active": "on", "definition": json.dumps(GERMANS)})
    seg = Segment.objects.get(name="DE")
    assert r.status_code == 302 and r.url == reverse("segments:segment_detail", args=[seg.pk])
    bad = {"op": "and", "conditions": [{"type": "stage", "op": "maybe", "value": ["lead"]}]}
    r = admin_client_logged_in.post(reverse("segments:segment_edit", args=[seg.pk]), {
        "name": "DE", "kind": "dynamic", "definition": json.dumps(bad)})
    assert r.status_code == 422 and b"definition.conditions[0].op" in r.content
    seg.refresh_from_db()
    assert seg.definition == GERMANS
    r = admin_client_logged_in.post(reverse("segments:segment_create"), {
        "name": "VIPs", "kind": "static", "definition": ""})
    assert Segment.objects.get(name="VIPs").kind == "static"


def test_detail_export_snapshot_and_members(admin_client_logged_in, seg, people,
                                            django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        r = admin_client_logged_in.get(reverse("segments:segment_detail", args=[seg.pk]))
    assert r.status_code == 200 and b"Ann" in r.content and b"Bob" not in r.content
    r = admin_client_logged_in.get(reverse("segments:segment_export", args=[seg.pk]))
    assert len(b"".join(r.streaming_content).splitlines()) == 3
    r = admin_client_logged_in.post(reverse("segments:segment_snapshot", args=[seg.pk]))
    snap = Segment.objects.get(kind="static")
    assert r.url == reverse("segments:segment_detail", args=[snap.pk])
    url = reverse("segments:segment_members", args=[snap.pk])
    admin_client_logged_in.post(url, {"action": "add", "contact": people.bob.email})
    admin_client_logged_in.post(url, {"action": "remove", "contact": str(people.ann.pk)})
    assert set(SegmentMembership.objects.filter(segment=snap)
               .values_list("contact__first_name", flat=True)) == {"Bob", "Cat"}
    admin_client_logged_in.post(reverse("segments:segment_delete", args=[snap.pk]))
    assert not Segment.objects.filter(pk=snap.pk).exists()


def test_views_check_permissions_and_visibility(make_user, seg, people):
    client = Client()
    user = make_user("sales", username="vera")
    client.force_login(user)
    assert client.get(reverse("segments:segment_list")).status_code == 403
    assert client.post(reverse("segments:segment_count"),
                       {"definition": json.dumps(GERMANS)}).status_code == 403
    assert client.post(reverse("segments:segment_delete", args=[seg.pk])).status_code == 403
    grant(user, "view_segment", "view_contact")
    client.force_login(user)
    r = client.get(reverse("segments:segment_detail", args=[seg.pk]))
    assert r.status_code == 200 and b"Ann" not in r.content  # Ann is not Vera's
    r = client.post(reverse("segments:segment_count"), {"definition": json.dumps(GERMANS)})
    assert b'data-count="0"' in r.content
    assert client.post(reverse("segments:segment_snapshot", args=[seg.pk])).status_code == 403
    assert Segment.objects.count() == 1
    anon = Client().get(reverse("segments:segment_list"))
    assert anon.status_code == 302
