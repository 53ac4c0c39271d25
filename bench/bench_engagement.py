"""Email throughput: outbox messages per second to an SMTP sink on loopback, one worker.

Each message is rendered from a template (merge fields, sanitising, text part, tracked
links), claimed, handed off to SMTP with its Message-ID committed first (at-most-once),
confirmed, and recorded on the timeline (email.sent + email.delivered). The SMTP sink
(`aiosmtpd -c aiosmtpd.handlers.Sink`) runs in its own process, so its work is not counted
against the sender. In the seeded bench database the messages, events and template made
here are deleted afterwards.

Standalone (own throwaway SQLite database):
    CLM_VAR_DIR=$(mktemp -d) python -m bench.bench_engagement 1000
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ORDER = 70
MESSAGES = 1000
ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """An aiosmtpd process that accepts and discards everything; yields its port."""
    port = _free_port()
    exe = str(Path(sys.executable).with_name("aiosmtpd"))
    proc = subprocess.Popen([exe, "-n", "-l", f"127.0.0.1:{port}", "-c",
                             "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _contacts(n: int) -> list:
    """n contacts with an email (made if the database has fewer); returns their ids."""
    from django.utils import timezone

    from clm.customers.models import Contact

    ids = list(Contact.objects.filter(email__isnull=False).order_by("pk")
               .values_list("pk", flat=True)[:n])
    if len(ids) < n:
        now = timezone.now()
        Contact.objects.bulk_create([
            Contact(first_name=f"Bench{i}", email=f"bench{i}@bench.example", created_at=now,
                    updated_at=now) for i in range(n - len(ids))], batch_size=1000)
        ids = list(Contact.objects.filter(email__isnull=False).order_by("pk")
                   .values_list("pk", flat=True)[:n])
    return ids


def measure(n: int = MESSAGES, rounds: int = ROUNDS) -> dict:
    """Send n transactional messages `rounds` times; returns rates and the sink's count."""
    from django.test import override_settings
    from django.utils import timezone

    from clm.engagement.models import EmailTemplate, OutboundMessage, SenderIdentity
    from clm.engagement.outbox import dedupe_key_for, outbox_send_due
    from clm.engagement.services import template_save
    from clm.timeline.models import Event

    ids = _contacts(n)
    stamp = int(time.time())
    sender = SenderIdentity.objects.create(name="Bench", email=f"bench{stamp}@bench.example")
    template = template_save(data={
        "name": f"bench-{stamp}", "subject": 'Hello {{ first_name|default:"there" }}',
        "html_body": '<h1>Hi {{ first_name }}</h1><p>Your order from {{ company|default:"us" }} '
                     'ships today. <a href="https://shop.example/orders">Track it</a>.</p>',
        "sender": sender.pk})
    rates: list[float] = []
    sent_total = 0
    purposes = [f"bench:{stamp}:{r}" for r in range(rounds)]
    try:
        with smtp_sink() as port, override_settings(
                EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_USE_TLS=False,
                EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD=""):
            for purpose in purposes:
                now = timezone.now()
                OutboundMessage.objects.bulk_create([OutboundMessage(
                    dedupe_key=dedupe_key_for(purpose, cid), purpose=purpose, contact_id=cid,
                    template=template, sender=sender, next_attempt_at=now, created_at=now)
                    for cid in ids], batch_size=1000)
                t0 = time.perf_counter()
                report = outbox_send_due(batch_size=100)
                rates.append(report.sent / (time.perf_counter() - t0))
                sent_total += report.sent
    finally:
        msg_ids = list(OutboundMessage.objects.filter(purpose__in=purposes)
                       .values_list("pk", flat=True))
        keys = [f"{k}:{m}" for m in msg_ids for k in ("email.sent", "email.delivered")]
        for i in range(0, len(keys), 500):
            Event.objects.filter(idempotency_key__in=keys[i:i + 500]).delete()
        OutboundMessage.objects.filter(purpose__in=purposes).delete()
        EmailTemplate.objects.filter(pk=template.pk).delete()
        sender.delete()
    return {"n": n, "rounds": rounds, "rates": rates, "median": statistics.median(rates),
            "sent": sent_total, "load": os.getloadavg()[0]}


def report(result: dict) -> str:
    rates = ", ".join(f"{r:,.0f}" for r in result["rates"])
    return "\n".join([
        f"**{result['median']:,.0f} emails/s** (median of {result['rounds']} runs of "
        f"{result['n']:,} messages; each run: {rates} emails/s), one worker, batches of 100 "
        f"over one SMTP connection each, to an aiosmtpd sink on loopback in its own process; "
        f"{result['sent']:,} sent in all (1-minute load average at the end: "
        f"{result['load']:.1f} on {os.cpu_count()} CPUs; the sink and the timeline's event "
        f"consumers share the machine).",
        "",
        "Per message: render (sandboxed template, nh3, text part, signed tracking links), "
        "gate (suppression, consent, caps, quiet hours; one query per batch each), commit the "
        "hand-off and Message-ID before the final \".\" of DATA (at-most-once), and per batch "
        "one UPDATE to sent plus the email.sent/email.delivered timeline events.",
    ])


def run(ctx):
    from bench.common import Section

    return [Section("Email throughput (outbox → SMTP on loopback)", report(measure()))]


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clm.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(report(measure(int(argv[0]) if argv else MESSAGES)))


if __name__ == "__main__":
    main(sys.argv[1:])
