"""Webhook step: HMAC signature, refusal of loopback/private/reserved addresses after DNS."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from clm.automation.models import Enrollment
from clm.automation.services import workflow_create
from clm.automation.webhook import WebhookRefused, address_allowed, deliver
from clm.core.errors import ValidationFailed

HOOK = "https://hooks.example.com/in?x=1"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.5", "192.168.1.1",
                                     "169.254.169.254", "0.0.0.0",  # noqa: S104
                                     "100.64.0.1", "240.0.0.1",
                                     "224.0.0.1", "::1", "fe80::1", "fc00::1",
                                     "::ffff:127.0.0.1", "2002:7f00:1::1"])
def test_non_public_addresses_refused(address):
    assert not address_allowed(address)


def test_public_address_allowed():
    assert address_allowed("93.184.216.34") and address_allowed("2606:2800:220:1::1")


def test_refused_when_any_resolved_address_is_private():
    sent = []
    with pytest.raises(WebhookRefused, match=r"127\.0\.0\.1"):
        deliver(url=HOOK, secret="s", body=b"{}", delivery_id="d", timestamp=1, timeout=1,
                resolver=lambda h, p: ["93.184.216.34", "127.0.0.1"],
                transport=lambda **kw: sent.append(kw))
    assert sent == []


def test_literal_loopback_refused_when_saved(db):
    with pytest.raises(ValidationFailed) as exc:
        workflow_create(data={"name": "w", "trigger": {"type": "event", "kind": "x.y"},
                              "steps": [{"type": "webhook", "url": "http://127.0.0.1:8000/x"}]})
    assert exc.value.field == "steps[0].url"
    with pytest.raises(ValidationFailed):
        workflow_create(data={"name": "w", "trigger": {"type": "event", "kind": "x.y"},
                              "steps": [{"type": "webhook", "url": "http://localhost/x"}]})


def test_step_signs_body_and_refuses_rebinding(make_workflow, contact, emit, fake_web):
    wf = make_workflow({"type": "event", "kind": "x.happened"},
                       [{"type": "webhook", "url": HOOK, "timeout": 3}],
                       enrollment_rule="every_time")
    emit(contact, "x.happened")
    req = fake_web.requests[0]
    assert req["address"] == "93.184.216.34" and req["host"] == "hooks.example.com"
    assert req["path"] == "/in?x=1" and req["timeout"] == 3.0
    h = req["headers"]
    expected = hmac.new(wf.webhook_secret.encode(),
                        f"{h['X-CLM-Timestamp']}.".encode() + req["body"],
                        hashlib.sha256).hexdigest()
    assert h["X-CLM-Signature"] == f"sha256={expected}"
    body = json.loads(req["body"])
    assert body["contact"]["id"] == contact.pk and body["workflow"]["id"] == wf.pk
    assert h["X-CLM-Delivery"] == body["delivery"]
    # The name now resolves to loopback: the step fails, nothing is sent.
    fake_web.hosts["hooks.example.com"] = ["127.0.0.1"]
    emit(contact, "x.happened")
    assert len(fake_web.requests) == 1
    failed = Enrollment.objects.get(status="failed")
    assert "non-public" in failed.last_error


def test_redirect_is_a_failure(make_workflow, contact, emit, fake_web):
    fake_web.status = 302
    make_workflow({"type": "event", "kind": "x.happened"}, [{"type": "webhook", "url": HOOK}])
    emit(contact, "x.happened")
    assert "HTTP 302" in Enrollment.objects.get().last_error
