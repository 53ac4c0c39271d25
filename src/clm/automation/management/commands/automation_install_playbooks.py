"""`clm automation_install_playbooks [--only KEY ...]`: install the shipped playbooks as
inactive workflows (with their email templates); running it again changes nothing."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clm.automation.playbooks import PLAYBOOKS, playbooks_install
from clm.core.errors import DomainError


class Command(BaseCommand):
    help = "Install the shipped workflow playbooks (inactive, ready to switch on)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", nargs="*", choices=[p.key for p in PLAYBOOKS],
                            help="install only these playbooks")

    def handle(self, *args, only: list[str] | None = None, **options) -> None:
        try:
            created = playbooks_install(keys=only or None)
        except DomainError as exc:
            raise CommandError(f"{exc.message} ({exc.field})") from None
        for workflow in created:
            self.stdout.write(f"installed: {workflow.name} (inactive)")
        if not created:
            self.stdout.write("nothing to install: every playbook is installed")
