"""Shipped playbooks install inactive, with templates, and work once switched on."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from clm.automation.models import Enrollment, Workflow
from clm.automation.playbooks import PLAYBOOKS
from clm.automation.services import workflow_activate
from clm.engagement.models import EmailTemplate, OutboundMessage

pytestmark = pytest.mark.django_db


def test_install_command_is_idempotent():
    out = StringIO()
    call_command("automation_install_playbooks", stdout=out)
    assert Workflow.objects.count() == len(PLAYBOOKS) == 6
    assert not Workflow.objects.filter(active=True).exists()
    assert EmailTemplate.objects.filter(name__startswith="Playbook:").count() == 10
    call_command("automation_install_playbooks", stdout=out)
    assert Workflow.objects.count() == 6
    assert "nothing to install" in out.getvalue()
    nurture = Workflow.objects.get(playbook="lead-nurture")
    assert [s["type"] for s in nurture.steps] == ["send_email", "wait", "send_email", "wait",
                                                  "send_email"]
    assert nurture.goal["kind"] == "stage.changed"
    assert Workflow.objects.get(playbook="renewal-reminder").trigger["offset_days"] == -30


def test_thank_you_playbook_sends_on_first_order_only(emit, contact):
    call_command("automation_install_playbooks", only=["thank-you-first-purchase"],
                 stdout=StringIO())
    wf = Workflow.objects.get()
    workflow_activate(workflow=wf)
    emit(contact, "order.completed", amount="10")
    emit(contact, "order.completed", amount="10")
    assert Enrollment.objects.filter(workflow=wf).count() == 1
    assert OutboundMessage.objects.filter(contact=contact).count() == 1
