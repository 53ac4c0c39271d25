"""`clm import_transactions FILE`: import purchases from CSV (see services.transactions_import)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from clm.analytics.services import transactions_import
from clm.core.errors import DomainError


class Command(BaseCommand):
    help = ("Import purchases from a CSV with columns customer_id or email, date, amount "
            "[, currency, order_reference]; upserts by order reference.")

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            with open(file, newline="", encoding="utf-8-sig") as handle:
                result = transactions_import(file=handle)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{result.rows} rows: {result.created} created, {result.updated} updated, "
                          f"{result.unchanged} unchanged, {result.contacts_created} new contacts, "
                          f"{len(result.errors)} errors.")
        for error in result.errors[:50]:
            self.stdout.write(self.style.WARNING(
                f"line {error['line']}: {error['field'] or ''} {error['reason']}"))
