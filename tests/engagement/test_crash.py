"""Crash test: kill -9 the sending worker halfway through a 1,000-recipient broadcast, start
it again, and the SMTP sink has exactly one message per recipient.

The worker is a real subprocess (`clm send_outbox --loop`) on its own SQLite file database,
migrated and filled through `clm shell`, so the test database of pytest is not involved.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

RECIPIENTS = 1000
CLM = str(Path(sys.executable).with_name("clm"))

SETUP = f"""
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.utils import timezone
from clm.customers.models import ConsentRecord, Contact
from clm.engagement.models import Broadcast, SenderIdentity, SubscriptionType
from clm.engagement.services import broadcast_create, broadcast_expand, template_save
now = timezone.now()
Contact.objects.bulk_create([Contact(first_name=f"P{{i}}", email=f"p{{i}}@crash.example",
    created_at=now, updated_at=now) for i in range({RECIPIENTS})])
ConsentRecord.objects.bulk_create([ConsentRecord(contact=c, purpose="email_marketing",
    granted=True, occurred_at=now, source="test") for c in Contact.objects.all()])
sender = SenderIdentity.objects.create(name="Acme", email="news@acme.example")
template = template_save(data={{"name": "Crash", "subject": "Hi {{{{ first_name }}}}",
    "html_body": "<p>Hello {{{{ first_name }}}}</p>"}})
b = broadcast_create(data={{"name": "Crash", "template": template, "sender": sender,
    "subscription_type": SubscriptionType.objects.get(key="email_marketing"),
    "audience": {{"all": True}}}})
print(broadcast_expand(broadcast=b))
"""

def _db_report(path: Path) -> tuple[dict[str, int], str]:
    """Statuses of the outbox and the broadcast, read straight from the SQLite file."""
    with closing(sqlite3.connect(path)) as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM engagement_outboundmessage "
                                   "GROUP BY status").fetchall())
        [(broadcast_status,)] = db.execute("SELECT status FROM engagement_broadcast").fetchall()
    return statuses, broadcast_status


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run([CLM, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_kill_9_mid_broadcast_then_restart_sends_exactly_one_per_recipient(tmp_path, smtp_sink):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clm.settings", "CLM_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'crash.sqlite3'}", "SECRET_KEY": "crash-test",
           "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
           "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_sink.port),
           "CLM_EMAIL_QUIET_HOURS": "off", "CLM_EMAIL_MAX_PER_DAY": "10",
           "CLM_BASE_URL": "https://clm.example", "LOG_LEVEL": "WARNING"}
    env.pop("CLM_TASKS_IMMEDIATE", None)
    assert _run(["shell", "-v", "0", "-c", SETUP], env).strip() == str(RECIPIENTS)

    worker = subprocess.Popen([CLM, "send_outbox", "--loop", "--batch-size", "50",
                               "--interval", "0.2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120  # a safety net, not the expectation
        while len(smtp_sink.messages) < RECIPIENTS // 2 and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read().decode()[-3000:]
            time.sleep(0.005)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    at_kill = len(smtp_sink.messages)
    assert RECIPIENTS // 2 <= at_kill < RECIPIENTS, at_kill

    _run(["send_outbox", "--batch-size", "50"], env, timeout=180)

    counts = Counter(smtp_sink.recipients)
    statuses, broadcast_status = _db_report(tmp_path / "crash.sqlite3")
    duplicates = [a for a, n in counts.items() if n > 1]
    assert not duplicates, (duplicates[:5], at_kill, statuses)
    assert len(counts) == RECIPIENTS, (RECIPIENTS - len(counts), at_kill, statuses)
    assert statuses == {"sent": RECIPIENTS}
    assert broadcast_status == "done"
