"""`clm seed_demo --contacts N [--seed S] [--if-empty] [--events-per-contact E]`.

Fills an empty database with a realistic, deterministic demo population (see
clm.core.seeding). With --if-empty it does nothing when contacts exist, so `make run` can
call it every time.

After the bulk load, each installed CLM app may derive its own state from the seeded
events (the bulk load bypasses the per-event consumers): a module `clm.<app>.demo` with a
function `after_seed_demo(*, stdout) -> None` is called, in INSTALLED_APPS order
(lifecycle before analytics). --no-hooks skips them (benchmarks time them separately).
"""

from __future__ import annotations

import importlib
from datetime import date

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clm.core.seeding import anchor_for, seed_population


def after_seed_hooks() -> list:
    """The `after_seed_demo` functions of installed CLM apps, in INSTALLED_APPS order."""
    hooks = []
    for config in apps.get_app_configs():
        if not config.name.startswith("clm."):
            continue
        try:
            module = importlib.import_module(f"{config.name}.demo")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.demo":
                raise
            continue
        hook = getattr(module, "after_seed_demo", None)
        if callable(hook):
            hooks.append(hook)
    return hooks


class Command(BaseCommand):
    help = "Load a deterministic demo population (contacts, companies, events) in bulk."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=2000, help="how many (default 2000)")
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument("--events-per-contact", type=float, default=10,
                            help="average timeline events per contact (default 10)")
        parser.add_argument("--if-empty", action="store_true",
                            help="do nothing when the database already has contacts")
        parser.add_argument("--as-of", type=date.fromisoformat, default=None,
                            help="end of the three-year history, YYYY-MM-DD (default today)")
        parser.add_argument("--no-hooks", action="store_true",
                            help="skip the apps' after_seed_demo hooks")

    def handle(self, *args, contacts: int, seed: int, events_per_contact: float,
               if_empty: bool, as_of: date | None, no_hooks: bool, **options) -> None:
        from clm.customers.models import Contact

        if contacts < 1:
            raise CommandError("--contacts must be at least 1.")
        if events_per_contact < 1:
            raise CommandError("--events-per-contact must be at least 1.")
        existing = Contact.objects.count()
        if existing:
            if if_empty:
                self.stdout.write(f"Demo data: {existing:,} contacts exist already; nothing to do.")
                return
            raise CommandError(
                f"The database has {existing:,} contacts already; seed_demo fills an empty "
                "database (use --if-empty to skip quietly).")
        self.stdout.write(f"Seeding {contacts:,} contacts (seed {seed}, about "
                          f"{events_per_contact:g} events each)…")
        report = seed_population(contacts=contacts, seed=seed,
                                 events_per_contact=events_per_contact,
                                 anchor=anchor_for(as_of), progress=self.stdout.write)
        kinds = ", ".join(f"{k} {v:,}" for k, v in report.counts_by_kind.items())
        self.stdout.write(
            f"Seeded {report.contacts:,} contacts, {report.companies:,} companies, "
            f"{report.events:,} events, {report.consents:,} consent rows in "
            f"{report.seconds:,.1f} s.\n  events: {kinds}")
        if not no_hooks:
            for hook in after_seed_hooks():
                self.stdout.write(f"Running {hook.__module__}.after_seed_demo…")
                hook(stdout=self.stdout)
