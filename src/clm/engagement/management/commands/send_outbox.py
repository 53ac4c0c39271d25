"""`clm send_outbox`: send due outbox messages now, once or in a loop (a dedicated sender)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from clm.engagement.outbox import outbox_send_due
from clm.engagement.services import broadcasts_start_due


class Command(BaseCommand):
    help = "Send due outbox messages (at most once each); --loop keeps polling."
    requires_system_checks: list = []  # a worker restarts fast; `clm check` runs elsewhere

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=100)
        parser.add_argument("--loop", action="store_true", help="Keep polling for due messages.")
        parser.add_argument("--interval", type=float, default=2.0,
                            help="Seconds between polls when idle (with --loop).")

    def handle(self, *args, batch_size: int, loop: bool, interval: float, **options) -> None:
        while True:
            broadcasts_start_due()
            report = outbox_send_due(batch_size=batch_size)
            if report.claimed or report.recovered:
                self.stdout.write(" ".join(f"{k}={v}" for k, v in report.as_dict().items() if v))
            if not loop:
                return
            if not report.claimed:
                time.sleep(interval)
