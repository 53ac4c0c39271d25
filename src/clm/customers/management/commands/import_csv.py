"""`clm import_csv FILE --type contacts|companies [--mapping JSON] [--user NAME]`."""

from __future__ import annotations

import json
import os

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from clm.core.csvsafe import csv_rows
from clm.core.errors import DomainError
from clm.customers.importing import import_errors_rows, import_job_create, import_job_run


class Command(BaseCommand):
    help = ("Import a CSV of contacts or companies (upsert by email or external id). Runs in "
            "the foreground whatever its size; bad rows are listed with their line numbers.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--type", choices=["contacts", "companies"], default="contacts")
        parser.add_argument("--mapping", help='JSON {"column header": "field"}; "" ignores')
        parser.add_argument("--user", help="username the import acts as (owner of new records, "
                                           "permissions and visibility); default: none")
        parser.add_argument("--errors-out", help="write the bad rows to this CSV file")

    def handle(self, *args, **options) -> None:
        path = options["file"]
        if not os.path.isfile(path):
            raise CommandError(f"No such file: {path}")
        mapping = None
        if options["mapping"]:
            try:
                mapping = json.loads(options["mapping"])
            except ValueError as exc:
                raise CommandError(f"--mapping is not JSON: {exc}") from None
        actor = None
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user {options['user']}")
        with open(path, "rb") as fh:
            try:
                job = import_job_create(object_type=options["type"], file=File(fh, name=path),
                                        mapping=mapping, actor=actor)
            except DomainError as exc:
                raise CommandError(f"{exc.field or 'file'}: {exc.message}") from None
        job = import_job_run(job_id=job.pk)
        self.stdout.write(f"import {job.pk}: {job.status}; {job.total_rows} rows: "
                          f"{job.created_count} created, {job.updated_count} updated, "
                          f"{job.unchanged_count} unchanged, {job.error_count} bad")
        if job.failure:
            self.stderr.write(job.failure)
        for error in job.errors[:20]:
            self.stdout.write(f"  line {error['line']}: {error['field'] or '-'}: {error['reason']}")
        if job.error_count > 20:
            self.stdout.write(f"  … {job.error_count - 20} more")
        if options["errors_out"]:
            header, rows = import_errors_rows(job)
            with open(options["errors_out"], "w", newline="", encoding="utf-8") as out:
                out.writelines(csv_rows(header, rows))
        if job.status == job.Status.FAILED:
            raise CommandError("The import failed.")
