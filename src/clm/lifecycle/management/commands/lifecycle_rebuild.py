"""`clm lifecycle_rebuild`: replay all events through the rules; rebuild stages and history."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from clm.lifecycle.services import lifecycle_rebuild


class Command(BaseCommand):
    help = "Replay every event and manual move in time order and rebuild stages and history."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--quiet", action="store_true", help="No progress lines.")

    def handle(self, *args, quiet: bool = False, **options) -> None:
        started, cpu = time.perf_counter(), time.process_time()

        def progress(done: int, total: int, stats) -> None:
            if not quiet and options.get("verbosity", 1) > 1:
                self.stdout.write(f"  contacts up to id {done:,} of {total:,}: "
                                  f"{stats.events:,} events, {stats.moves:,} moves "
                                  f"({time.perf_counter() - started:.1f} s)")

        stats = lifecycle_rebuild(progress=progress)
        elapsed = time.perf_counter() - started
        phases = stats.extra.get("seconds", {})
        breakdown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()
                              if seconds >= 0.05)
        if breakdown:
            breakdown += f"; CPU time {time.process_time() - cpu:.1f} s"
        if stats.extra.get("workers"):  # read, fold and compare ran in worker processes
            busy = stats.extra["worker_seconds"]
            breakdown += (f"; {stats.extra['workers']} workers busy "
                          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in busy.items()
                                      if seconds >= 0.05)
                          + f", CPU time {sum(stats.extra['worker_cpu_seconds'].values()):.1f} s")
        self.stdout.write(self.style.SUCCESS(
            f"Rebuilt {stats.contacts:,} contacts from {stats.events:,} events: "
            f"{stats.moves:,} stage changes in {elapsed:.1f} s"
            + (f" ({breakdown})." if breakdown else ".")))
