"""Tasks and periodic jobs: the scheduler finds them; running the send task twice sends once."""

from __future__ import annotations

import pytest
from django.utils.module_loading import import_string

from clm.engagement.outbox import message_enqueue
from clm.engagement.schedule import SCHEDULE
from tests.factories import ContactFactory


def test_schedule_entries_name_real_tasks():
    from clm.core.scheduler import declared_jobs

    names = {name for name, _, _ in declared_jobs()}
    for name, path, interval in SCHEDULE:
        assert name in names and interval >= 60
        assert hasattr(import_string(path), "enqueue")


@pytest.mark.django_db
def test_send_task_is_idempotent(smtp_sink, receipt_template):
    from clm.engagement.tasks import broadcasts_start_due, outbox_send_due

    message_enqueue(purpose="t", contact=ContactFactory(email="a@example.com"),
                    template=receipt_template)
    first = outbox_send_due.enqueue().return_value
    second = outbox_send_due.enqueue().return_value
    assert first["sent"] == 1 and second["sent"] == 0
    assert smtp_sink.recipients == ["a@example.com"]
    assert broadcasts_start_due.enqueue().return_value == []
