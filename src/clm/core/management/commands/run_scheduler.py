"""`clm run_scheduler`: enqueue periodic jobs when due (run beside `clm db_worker`)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from clm.core import scheduler


class Command(BaseCommand):
    help = "Sync the declared periodic jobs, then enqueue each one when it falls due."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument("--max-sleep", type=float, default=30.0,
                            help="Longest pause between passes, in seconds.")

    def handle(self, *args, once: bool = False, max_sleep: float = 30.0, **options) -> None:
        jobs = scheduler.jobs_sync()
        if options.get("verbosity", 1) > 1:
            self.stdout.write(f"{len(jobs)} periodic jobs: {', '.join(j.name for j in jobs)}")
        while True:
            for name in scheduler.run_due():
                self.stdout.write(f"enqueued {name}")
            if once:
                return
            try:
                time.sleep(scheduler.seconds_until_next(cap=max_sleep))
            except KeyboardInterrupt:
                return
