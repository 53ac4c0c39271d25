"""Helpers for automation tests: events recorded as the app does, consumers run after commit."""

from __future__ import annotations

import logging

import pytest

from clm.automation import steps as step_module
from clm.automation.services import workflow_activate, workflow_create
from clm.engagement.models import EmailTemplate, SenderIdentity
from clm.timeline.services import event_record
from tests.factories import ContactFactory


@pytest.fixture(autouse=True)
def _defaults(settings):
    settings.CLM_EMAIL_QUIET_HOURS = "off"
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture
def emit(db, django_capture_on_commit_callbacks):
    """emit(contact, kind, **properties): record an event and let every consumer run."""

    def _emit(contact, kind: str, source: str = "test", **properties):
        with django_capture_on_commit_callbacks(execute=True):
            event = event_record(contact=contact, kind=kind, source=source,
                                 properties=properties)
        contact.refresh_from_db()
        return event

    return _emit


@pytest.fixture
def contact(db):
    return ContactFactory()


@pytest.fixture
def template(db) -> EmailTemplate:
    from clm.engagement.services import template_save

    sender = SenderIdentity.objects.create(name="Acme", email="hi@acme.example", is_default=True)
    return template_save(data={"name": "Thanks", "subject": "Thanks {{ first_name }}",
                               "html_body": "<p>Thank you, {{ first_name }}.</p>",
                               "sender": sender.pk})


@pytest.fixture
def make_workflow(db):
    def make(trigger: dict, steps: list[dict], *, active: bool = True, **data):
        wf = workflow_create(data={"name": data.pop("name", f"wf {trigger} {len(steps)}"[:150]),
                                   "trigger": trigger, "steps": steps, **data})
        if active:
            workflow_activate(workflow=wf)
        wf.refresh_from_db()
        return wf

    return make


@pytest.fixture
def nickname(db):
    """A text contact property `nickname` for set-property steps."""
    from clm.customers.services import property_definition_create

    return property_definition_create(object_type="contact", key="nickname", label="Nickname",
                                      type="text")


@pytest.fixture
def fake_web(monkeypatch):
    """Webhook I/O without a network: a fake resolver (host -> addresses) and a transport
    that records requests and answers with `status`."""

    class Web:
        def __init__(self):
            self.hosts: dict[str, list[str]] = {"hooks.example.com": ["93.184.216.34"]}
            self.requests: list[dict] = []
            self.status = 200

        def resolver(self, host, port):
            if host not in self.hosts:
                raise OSError("no such host")
            return self.hosts[host]

        def transport(self, **kw):
            from clm.automation.webhook import Response

            self.requests.append(kw)
            return Response(self.status, b"ok")

    web = Web()
    monkeypatch.setitem(step_module.WEBHOOK_IO, "resolver", web.resolver)
    monkeypatch.setitem(step_module.WEBHOOK_IO, "transport", web.transport)
    return web
