"""A real SMTP server on loopback (aiosmtpd) that counts what arrives, and email fixtures."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import threading
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from clm.engagement.models import EmailTemplate, SenderIdentity, SubscriptionType


@dataclass
class Sink:
    """Collects messages; `reject` maps an address to an SMTP reply ("550 no such user")."""

    messages: list = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    delay: float = 0.0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return self.reject[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    @property
    def recipients(self) -> list[str]:
        with self.lock:
            return [r.lower() for rcpts, _ in self.messages for r in rcpts]

    def to(self, address: str) -> list:
        with self.lock:
            return [m for rcpts, m in self.messages if address.lower() in
                    [r.lower() for r in rcpts]]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_sink():
    """Start an SMTP sink on 127.0.0.1 and point Django's SMTP backend at it."""
    sink = Sink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port,
                            server_hostname="sink.test")
    controller.start()
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                           EMAIL_HOST="127.0.0.1", EMAIL_PORT=sink.port, EMAIL_USE_TLS=False,
                           EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="", EMAIL_TIMEOUT=10,
                           CLM_BASE_URL="https://clm.example"):
        yield sink
    controller.stop()


@pytest.fixture(autouse=True)
def _email_defaults(settings):
    """Quiet hours off unless a test turns them on (tests must not depend on the clock)."""
    settings.CLM_EMAIL_QUIET_HOURS = "off"
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture
def sender(db) -> SenderIdentity:
    return SenderIdentity.objects.create(name="Acme", email="news@acme.example",
                                         reply_to="help@acme.example", is_default=True)


@pytest.fixture
def marketing_type(db) -> SubscriptionType:
    return SubscriptionType.objects.get(key="email_marketing")


@pytest.fixture
def news_template(db, sender, marketing_type) -> EmailTemplate:
    from clm.engagement.services import template_save

    return template_save(data={
        "name": "Newsletter", "subject": "Hello {{ first_name|default:'there' }}",
        "html_body": '<p>Hi {{ first_name|default:"there" }},</p>'
                     '<p>See <a href="https://shop.example/new?a=1&b=2">what is new</a>.</p>',
        "sender": sender.pk, "subscription_type": marketing_type.pk})


@pytest.fixture
def receipt_template(db, sender) -> EmailTemplate:
    from clm.engagement.services import template_save

    return template_save(data={"name": "Receipt", "subject": "Your receipt",
                               "html_body": "<p>Thanks for your order, {{ first_name }}.</p>",
                               "sender": sender.pk})
