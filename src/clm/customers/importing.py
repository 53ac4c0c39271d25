"""CSV import of contacts and companies: reading, column mapping, and applying rows.

The flow: `import_job_create` stores the upload and checks it can be read (encoding, delimiter,
header, an identifier column) before anything is imported; `import_job_set_mapping` lets the
user override the suggested column mapping; `import_job_start` runs small files inline and
hands large ones to the background task; `import_job_run` applies the rows.

Promises:
- Rows are upserted by email or external id (companies: external id, domain, or exact name)
  through `contact_upsert` / `company_upsert` with via="import".
- Good rows are applied; each bad row is reported with its physical line number in the file
  (header = line 1) and the field at fault. Nothing is imported when the file cannot be read.
- A row that changed a contact records `import.row_applied` on its timeline; unchanged rows
  write nothing, so importing the same file again changes nothing.
- Empty cells never blank existing values (other CRMs export empty columns freely).
- A row repeating the email / external id of an earlier row of the same file is reported, not
  applied: the first row counts. (Applying both would make a re-import flip values back and
  forth, so a file would never be idempotent.)
- "Lifecycle Stage": the value goes into the event's properties; a known stage key (lead,
  mql, customer, …) goes there too, and the lifecycle engine moves the contact forward to it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import IO, Any

from django.conf import settings
from django.core.files.base import File
from django.db import DatabaseError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from clm.accounts.models import Scope
from clm.accounts.queries import user_scope, visible
from clm.core.csvsafe import FORMULA_PREFIXES
from clm.core.errors import DomainError, NotFound, PermissionDenied, ValidationFailed
from clm.core.normalize import normalize_domain, normalize_email
from clm.customers import services
from clm.customers.models import (
    Company,
    Contact,
    ImportJob,
    ObjectType,
    PropertyDefinition,
)
from clm.timeline.services import event_record

logger = logging.getLogger(__name__)

IGNORE = ""
PROPERTY_PREFIX = "property:"
PREVIEW_ROWS = 5
CHUNK_ROWS = 200  # rows per transaction; progress is saved after each
MAX_STORED_ERRORS = 5000
MAX_STORED_CELL = 500
READ_CHUNK = 1 << 16
DELIMITERS = ",;\t|"

CONTACT_TARGETS: dict[str, str] = {
    "first_name": "First name", "last_name": "Last name", "full_name": "Full name (split)",
    "email": "Email", "external_id": "External id", "phone": "Phone",
    "job_title": "Job title", "company_name": "Company (by name)",
    "owner": "Owner (username, email or name)", "country": "Country", "region": "State/region",
    "city": "City", "timezone": "Time zone", "date_of_birth": "Date of birth",
    "age_band": "Age band", "income_band": "Income band", "source": "Source",
    "tags": "Tags (comma-separated)", "created_at": "Created at",
    "lifecycle_stage": "Lifecycle stage",
}
COMPANY_TARGETS: dict[str, str] = {
    "name": "Name", "domain": "Domain / website", "external_id": "External id",
    "industry": "Industry", "employee_band": "Employees", "revenue_band": "Revenue band",
    "country": "Country", "region": "State/region", "city": "City", "phone": "Phone",
    "owner": "Owner (username, email or name)", "created_at": "Created at",
}
IDENTIFIERS = {ObjectType.CONTACT: ("email", "external_id"),
               ObjectType.COMPANY: ("name", "domain", "external_id")}


def _norm_header(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _aliases(pairs: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {_norm_header(alias): target for target, aliases in pairs.items() for alias in aliases}


# Headers of HubSpot, Salesforce, Pipedrive and Zoho exports (and CLM's own export).
CONTACT_ALIASES = _aliases({
    "first_name": ("first name", "firstname", "first", "given name", "forename"),
    "last_name": ("last name", "lastname", "last", "surname", "family name"),
    "full_name": ("name", "full name", "contact name", "person", "person name"),
    "email": ("email", "e-mail", "email address", "email 1", "primary email", "work email",
              "contact email", "person email", "personal email"),
    "external_id": ("record id", "id", "external id", "contact id", "lead id", "person id",
                    "record id contact", "contact record id"),
    "phone": ("phone", "phone number", "mobile phone", "mobile", "mobile phone number",
              "cell phone", "work phone", "business phone", "telephone", "person phone"),
    "job_title": ("job title", "title", "position", "designation"),
    "company_name": ("company", "company name", "account", "account name", "organization",
                     "organisation", "organization name", "associated company",
                     "person organization"),
    "owner": ("owner", "contact owner", "lead owner", "account owner", "owner name",
              "owner email", "hubspot owner"),
    "country": ("country", "country/region", "country region", "mailing country",
                "country name"),
    "region": ("state", "region", "state/region", "state region", "province",
               "state/province", "mailing state/province", "mailing state"),
    "city": ("city", "town", "mailing city"),
    "timezone": ("time zone", "timezone", "iana time zone"),
    "date_of_birth": ("date of birth", "birthdate", "birthday", "dob"),
    "age_band": ("age band", "age range", "age group"),
    "income_band": ("income band", "income range", "income"),
    "source": ("source", "lead source", "original source", "contact source"),
    "tags": ("tags", "tag", "labels", "label", "interests"),
    "created_at": ("create date", "created date", "created at", "created", "date created",
                   "created time", "person created", "create time"),
    "lifecycle_stage": ("lifecycle stage", "lifecycle", "stage", "lifecyclestage"),
})
COMPANY_ALIASES = _aliases({
    "name": ("name", "company", "company name", "account name", "organization",
             "organisation", "organization name"),
    "domain": ("domain", "company domain name", "website", "website url", "domain name",
               "web site"),
    "external_id": ("record id", "id", "external id", "company id", "account id",
                    "organization id"),
    "industry": ("industry",),
    "employee_band": ("employees", "number of employees", "employee count", "employee band",
                      "company size"),
    "revenue_band": ("revenue band", "annual revenue", "revenue"),
    "country": ("country", "country/region", "billing country"),
    "region": ("state", "region", "state/region", "billing state/province", "province"),
    "city": ("city", "billing city", "town"),
    "phone": ("phone", "phone number", "company phone"),
    "owner": ("owner", "company owner", "account owner"),
    "created_at": ("create date", "created date", "created at", "created", "date created"),
})

# Lifecycle stage names of other CRMs -> CLM's default stage keys.
STAGE_KEYS = {
    "subscriber": "subscriber", "lead": "lead", "marketingqualifiedlead": "mql", "mql": "mql",
    "salesqualifiedlead": "sql", "sql": "sql", "opportunity": "opportunity",
    "customer": "customer", "evangelist": "promoter", "promoter": "promoter",
    "churned": "churned", "disqualified": "disqualified",
}


# ---------------------------------------------------------------- reading the file


@dataclass
class FileLayout:
    encoding: str
    delimiter: str
    headers: list[str]
    header_line: int
    total_rows: int


def detect_encoding(fh: IO[bytes]) -> str:
    """The text encoding of a CSV file: a BOM decides, else UTF-8 if it decodes, else cp1252,
    else Latin-1 (which decodes anything). Refuses spreadsheets and binary files."""
    fh.seek(0)
    head = fh.read(READ_CHUNK)
    fh.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ValidationFailed("This is a spreadsheet (Excel) file, not CSV: save it as "
                               "'CSV UTF-8' and upload that.", field="file", code="not_csv")
    if b"\x00" in head:
        # UTF-16 without a BOM: ASCII text has a zero in every other byte.
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd > len(head) // 4 and even == 0:
            return "utf-16-le"
        if even > len(head) // 4 and odd == 0:
            return "utf-16-be"
        raise ValidationFailed("This file is not text: upload a CSV file.", field="file",
                               code="not_csv")
    for encoding in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            while chunk := fh.read(READ_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError:
            continue
        finally:
            fh.seek(0)
    return "latin-1"


def _text_lines(fh: IO[bytes], encoding: str) -> Iterator[str]:
    """Decoded lines with their endings ("\\r\\n", "\\n", or old Mac "\\r"), NULs dropped."""
    fh.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)()
    buffer, sep = "", None
    while True:
        chunk = fh.read(READ_CHUNK)
        final = not chunk
        buffer += decoder.decode(chunk, final=final)
        if sep is None and (final or "\n" in buffer or "\r" in buffer[:-1]):
            sep = "\n" if "\n" in buffer or "\r" not in buffer else "\r"
        if sep is not None:
            parts = buffer.split(sep)
            buffer = parts.pop()
            for part in parts:
                yield (part + sep).replace("\x00", "")
        if final:
            break
    if buffer:
        yield buffer.replace("\x00", "")


def _sniff_delimiter(sample: str) -> str:
    first_line = sample.lstrip("\r\n").splitlines()[0] if sample.strip() else ""
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
        if delimiter in first_line:
            return delimiter
    except csv.Error:
        pass
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _rows(fh: IO[bytes], encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(physical line number where the row starts, cells) for each non-blank row."""
    reader = csv.reader(_text_lines(fh, encoding), delimiter=delimiter)
    previous = 0
    try:
        for row in reader:
            start = previous + 1
            previous = reader.line_num
            if any(cell.strip() for cell in row):
                yield start, row
    except csv.Error as exc:
        raise ValidationFailed(f"Line {previous + 1} cannot be read as CSV: {exc}.", field="file",
                               code="bad_csv") from None


def analyse_file(fh: IO[bytes]) -> FileLayout:
    """Detect encoding and delimiter, read the header and count the data rows.

    Raises ValidationFailed (field "file") for an empty, unreadable or header-only file.
    """
    encoding = detect_encoding(fh)
    sample = ""
    for line in _text_lines(fh, encoding):
        sample += line
        if len(sample) > READ_CHUNK:
            break
    if not sample.strip():
        raise ValidationFailed("The file is empty.", field="file", code="empty")
    delimiter = _sniff_delimiter(sample)
    rows = _rows(fh, encoding, delimiter)
    first = next(rows, None)
    if first is None:
        raise ValidationFailed("The file is empty.", field="file", code="empty")
    header_line, raw_headers = first
    headers = [h.strip().lstrip("\ufeff").strip() or f"Column {i + 1}"
               for i, h in enumerate(raw_headers)]
    total = sum(1 for _ in rows)
    if total == 0:
        raise ValidationFailed("The file has a header but no rows to import.", field="file",
                               code="no_rows")
    return FileLayout(encoding=encoding, delimiter=delimiter, headers=headers,
                      header_line=header_line, total_rows=total)


def _open(job: ImportJob) -> IO[bytes]:
    return job.file.storage.open(job.file.name, "rb")


def job_rows(job: ImportJob) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a job's file (header skipped) as (line number, cells)."""
    with _open(job) as fh:
        rows = _rows(fh, job.mapping["encoding"], job.mapping["delimiter"])
        next(rows, None)
        yield from rows


def import_preview(job: ImportJob, limit: int = PREVIEW_ROWS) -> list[tuple[int, list[str]]]:
    """The first `limit` data rows, padded to the header's width."""
    width = len(job.mapping["headers"])
    preview = []
    for line, row in job_rows(job):
        preview.append((line, (row + [""] * width)[:width]))
        if len(preview) >= limit:
            break
    return preview


# ---------------------------------------------------------------- mapping


def _property_definitions(object_type: str) -> list[PropertyDefinition]:
    return list(PropertyDefinition.objects.filter(object_type=object_type).order_by("key"))


def mapping_choices(object_type: str) -> list[tuple[str, str]]:
    """(target, label) pairs a column can be mapped to; IGNORE first."""
    targets = CONTACT_TARGETS if object_type == ObjectType.CONTACT else COMPANY_TARGETS
    choices = [(IGNORE, "— ignore —"), *targets.items()]
    choices += [(f"{PROPERTY_PREFIX}{d.key}", f"Property: {d.label}")
                for d in _property_definitions(object_type)]
    return choices


def suggest_mapping(object_type: str, headers: list[str]) -> list[str]:
    """A target per column from known CRM headers and custom property keys/labels.

    Each target is used once: when two columns match (Phone Number and Mobile Phone) the
    first wins and the other is ignored.
    """
    aliases = CONTACT_ALIASES if object_type == ObjectType.CONTACT else COMPANY_ALIASES
    props = {}
    for d in _property_definitions(object_type):
        props.setdefault(_norm_header(d.label), d.key)
        props[_norm_header(d.key)] = d.key
    used: set[str] = set()
    targets = []
    for header in headers:
        norm = _norm_header(header)
        if norm.startswith("property") and norm[8:] in props:
            norm = norm[8:]
        target = aliases.get(norm) or (f"{PROPERTY_PREFIX}{props[norm]}" if norm in props else "")
        if target and target in used:
            target = IGNORE
        used.add(target)
        targets.append(target)
    return targets


def _check_targets(object_type: str, targets: list[str], *,
                   require_identifier: bool = True) -> None:
    allowed = {value for value, _ in mapping_choices(object_type)}
    seen: set[str] = set()
    for target in targets:
        if target not in allowed:
            raise ValidationFailed(f"'{target}' is not a field a column can be imported into.",
                                   field="mapping", code="unknown_target")
        if target and target in seen:
            raise ValidationFailed(f"Two columns are mapped to '{target}'; map one of them only.",
                                   field="mapping", code="duplicate_target")
        seen.add(target)
    mapped = set(targets)
    if object_type == ObjectType.CONTACT and "full_name" in mapped and \
            mapped & {"first_name", "last_name"}:
        raise ValidationFailed("Map either a full name or first/last name columns, not both.",
                               field="mapping", code="duplicate_target")
    if require_identifier and not mapped & set(IDENTIFIERS[object_type]):
        names = " or ".join(IDENTIFIERS[object_type])
        raise ValidationFailed(f"No column holds the {names} that identifies each row; "
                               f"map one before importing.", field="mapping",
                               code="missing_identifier")


def _targets_from(object_type: str, headers: list[str],
                  mapping: dict[str, str] | list[str] | None) -> list[str]:
    """Targets per column: the suggestion, overridden by `mapping` ({header: target} or list)."""
    targets = suggest_mapping(object_type, headers)
    if mapping is None:
        return targets
    if isinstance(mapping, list):
        if len(mapping) != len(headers):
            raise ValidationFailed(f"The mapping has {len(mapping)} entries for "
                                   f"{len(headers)} columns.", field="mapping")
        return [str(t or "") for t in mapping]
    if not isinstance(mapping, dict):
        raise ValidationFailed("The mapping must be an object {column header: field}.",
                               field="mapping")
    for header, target in mapping.items():
        if header not in headers:
            raise ValidationFailed(f"The file has no column '{header}'.", field="mapping",
                                   code="unknown_column")
        index = headers.index(header)
        target = str(target or "")
        # A column moved onto a target another column had by suggestion takes it over.
        targets = [IGNORE if (t == target and i != index) else t for i, t in enumerate(targets)]
        targets[index] = target
    return targets


# ---------------------------------------------------------------- permissions and visibility


def _model_name(object_type: str) -> str:
    return "contact" if object_type == ObjectType.CONTACT else "company"


def import_check_permission(user, object_type: str) -> None:
    """Raise PermissionDenied unless `user` may import records of this type."""
    model = _model_name(object_type)
    if not (user.has_perm("customers.add_importjob") and user.has_perm(f"customers.add_{model}")):
        raise PermissionDenied(f"You may not import {model} records.")


def import_jobs_visible(user) -> QuerySet[ImportJob]:
    """The import jobs `user` may see: by who started them, per the user's visibility scope."""
    return visible(ImportJob.objects.all(), user, owner_field="created_by")


def import_job_get(user, job_id: int) -> ImportJob:
    job = import_jobs_visible(user).filter(pk=job_id).first()
    if job is None or not user.has_perm("customers.view_importjob"):
        raise NotFound("There is no such import.")
    return job


# ---------------------------------------------------------------- creating and starting jobs


@transaction.atomic
def import_job_create(*, object_type: str, file: File, actor=None,
                      mapping: dict[str, str] | list[str] | None = None,
                      original_name: str | None = None,
                      require_identifier: bool = True) -> ImportJob:
    """Store an uploaded CSV as a pending import, after checking it can be imported.

    Raises ValidationFailed (nothing stored) for an unreadable, empty or header-only file, an
    unknown type, or (unless `require_identifier` is off, for the wizard, where the user maps
    columns next) a mapping without an identifier column.
    """
    if object_type in ("contacts", "companies"):
        object_type = object_type[:-1] if object_type == "contacts" else ObjectType.COMPANY
    if object_type not in ObjectType.values:
        raise ValidationFailed("type must be contacts or companies.", field="type")
    if actor is not None:
        import_check_permission(actor, object_type)
    if file is None or not getattr(file, "name", None):
        raise ValidationFailed("Choose a CSV file to import.", field="file", code="required")
    digest = hashlib.sha256()
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    layout = analyse_file(file)
    targets = _targets_from(object_type, layout.headers, mapping)
    _check_targets(object_type, targets, require_identifier=require_identifier)
    name = os.path.basename(original_name or file.name)[:255] or "import.csv"
    job = ImportJob(
        object_type=object_type, original_name=name, file_sha256=digest.hexdigest(),
        total_rows=layout.total_rows,
        created_by=actor if actor is not None and actor.is_authenticated else None,
        mapping={"encoding": layout.encoding, "delimiter": layout.delimiter,
                 "headers": layout.headers, "header_line": layout.header_line,
                 "targets": targets})
    file.seek(0)
    job.file.save(f"{timezone.now():%Y/%m}/{digest.hexdigest()[:16]}.csv", file, save=False)
    job.save()
    return job


@transaction.atomic
def import_job_set_mapping(*, job: ImportJob, mapping: dict[str, str] | list[str]) -> ImportJob:
    """Replace a pending job's column mapping ({header: target} or a target per column)."""
    if job.status != ImportJob.Status.PENDING or job.mapping.get("queued"):
        raise ValidationFailed("This import has started; its mapping cannot change.",
                               field="mapping", code="started")
    targets = _targets_from(job.object_type, job.mapping["headers"], mapping)
    _check_targets(job.object_type, targets)
    job.mapping = {**job.mapping, "targets": targets}
    job.save(update_fields=["mapping"])
    return job


def import_job_start(*, job: ImportJob) -> ImportJob:
    """Run a pending import: inline when it has at most CLM_IMPORT_INLINE_MAX_ROWS rows,
    else as a background task enqueued after the current transaction commits."""
    if job.status != ImportJob.Status.PENDING or job.mapping.get("queued"):
        return job
    _check_targets(job.object_type, job.mapping["targets"])
    if job.total_rows <= settings.CLM_IMPORT_INLINE_MAX_ROWS:
        return import_job_run(job_id=job.pk)
    from clm.customers.tasks import import_job_run_task

    # Marks the job as handed to the worker (the wizard then shows progress, not the mapping).
    job.mapping = {**job.mapping, "queued": True}
    job.save(update_fields=["mapping"])
    job_id = job.pk
    transaction.on_commit(lambda: import_job_run_task.enqueue(job_id))
    return job


# ---------------------------------------------------------------- cleaning cells


def _cell(value: str) -> str:
    text = value.strip()
    # Undo the quote CLM's own export puts before formula-like text, so exports re-import.
    if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES):
        text = text[1:]
    return text


_COUNTRIES: dict[str, str] | None = None
_COUNTRY_ALIASES = {
    "usa": "US", "unitedstatesofamerica": "US", "america": "US", "uk": "GB",
    "greatbritain": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
    "northernireland": "GB", "deutschland": "DE", "holland": "NL", "thenetherlands": "NL",
    "southkorea": "KR", "korea": "KR", "russia": "RU", "czechia": "CZ", "uae": "AE",
    "espana": "ES", "schweiz": "CH", "osterreich": "AT", "italia": "IT", "brasil": "BR",
}


def _country_code(value: str) -> str:
    """An ISO code for a code or an English country name ("Germany", "United States")."""
    global _COUNTRIES
    if len(value) == 2 and value.isalpha():
        return value.upper()
    if _COUNTRIES is None:
        names = dict(_COUNTRY_ALIASES)
        try:
            import phonenumbers
            from phonenumbers.geocoder import _region_display_name

            for code in phonenumbers.SUPPORTED_REGIONS:
                name = _region_display_name(code, "en", None, None)
                if name:
                    names.setdefault(_norm_header(name), code)
        except ImportError:  # pragma: no cover - the geocoder data ships with phonenumbers
            pass
        _COUNTRIES = names
    code = _COUNTRIES.get(_norm_header(value))
    if code is None:
        raise ValidationFailed(f"'{value}' is not a country name or two-letter code.",
                               field="country")
    return code


_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y")
_TIME_FORMATS = ("%H:%M", "%H:%M:%S", "%I:%M %p", "%I:%M:%S %p")


def parse_date(value: str, field_name: str) -> date:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value[:10].strip(), fmt).date()  # noqa: DTZ007
        except ValueError:
            continue
    raise ValidationFailed(f"'{value}' is not a date (YYYY-MM-DD or MM/DD/YYYY).",
                           field=field_name)


def parse_datetime(value: str, field_name: str) -> datetime:
    """A time-aware datetime from ISO 8601, US or European exports, or epoch (milli)seconds.

    Naive times are read in the server's time zone.
    """
    parsed: datetime | None = None
    if value.isdigit() and len(value) in (10, 13):
        seconds = int(value) / (1000 if len(value) == 13 else 1)
        return datetime.fromtimestamp(seconds, tz=timezone.get_current_timezone())
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        day_part, _, time_part = value.partition(" ")
        day = parse_date(day_part, field_name)
        clock = time(0, 0)
        if time_part.strip():
            for fmt in _TIME_FORMATS:
                try:
                    clock = datetime.strptime(time_part.strip(), fmt).time()  # noqa: DTZ007
                    break
                except ValueError:
                    continue
            else:
                raise ValidationFailed(f"'{value}' is not a date and time.",
                                       field=field_name) from None
        parsed = datetime.combine(day, clock)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    if parsed > timezone.now():
        raise ValidationFailed(f"{field_name} cannot be in the future.", field=field_name)
    return parsed


def _employee_band(value: str) -> str:
    digits = value.replace(",", "").replace(".", "").strip()
    if not digits.isdigit():
        return value
    count = int(digits)
    for band, upper in (("1-10", 10), ("11-50", 50), ("51-200", 200), ("201-1000", 1000),
                        ("1001-5000", 5000)):
        if count <= upper:
            return band
    return "5000+"


def _split_tags(value: str) -> list[str]:
    return [t.strip() for t in re.split(r"[,;|]", value) if t.strip()]


@dataclass
class _Run:
    """State of one pass over a job's rows."""

    job: ImportJob
    actor: Any
    may_see_all: bool
    may_change: bool
    owners: dict[str, Any] = field(default_factory=dict)
    companies: dict[str, Company] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0,
                                                            "unchanged": 0})


def _owner(run: _Run, value: str):
    """A user by username, email or full name (what other CRMs export as "Contact owner")."""
    from django.contrib.auth import get_user_model

    key = value.lower()
    if key not in run.owners:
        users = get_user_model().objects.filter(is_active=True)
        user = users.filter(username__iexact=value).first() or \
            (users.filter(email__iexact=value).first() if "@" in value else None)
        if user is None and " " in value:
            first, _, last = value.partition(" ")
            user = users.filter(first_name__iexact=first, last_name__iexact=last.strip()).first()
        run.owners[key] = user
    if run.owners[key] is None:
        raise ValidationFailed(f"There is no active user '{value}'.", field="owner")
    return run.owners[key]


def _row_fields(run: _Run, row: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(model fields, custom properties, extras) from the mapped, non-empty cells of a row."""
    data: dict[str, Any] = {}
    props: dict[str, Any] = {}
    extras: dict[str, str] = {}
    for target, raw in zip(run.job.mapping["targets"], row, strict=False):
        if not target:
            continue
        value = _cell(raw)
        if not value:
            continue
        if target.startswith(PROPERTY_PREFIX):
            props[target[len(PROPERTY_PREFIX):]] = value
        elif target in ("full_name", "company_name", "tags", "created_at", "lifecycle_stage"):
            extras[target] = value
        elif target == "country":
            data["country"] = _country_code(value)
        elif target == "owner":
            data["owner"] = _owner(run, value)
        elif target == "date_of_birth":
            data["date_of_birth"] = parse_date(value, "date_of_birth")
        elif target == "employee_band":
            data["employee_band"] = _employee_band(value)
        elif target == "email":
            if len(value) > 254:
                raise ValidationFailed("email is longer than 254 characters.", field="email")
            data["email"] = normalize_email(value)
        else:
            data[target] = value
    if "full_name" in extras:
        first, _, last = extras["full_name"].rpartition(" ")
        data["first_name"], data["last_name"] = (first, last) if first else (last, "")
    return data, props, extras


def _may_change(run: _Run, obj: Contact | Company) -> bool:
    if not run.may_change:
        return False
    if run.may_see_all:
        return True
    return visible(type(obj).objects.filter(pk=obj.pk), run.actor).exists()


def _claim_keys(run: _Run, keys: list[tuple[str, str]], line: int) -> None:
    """Refuse a row repeating an identifier of an earlier applied row of this file."""
    for name, value in keys:
        earlier = run.seen.get(f"{name}:{value}")
        if earlier is not None:
            raise ValidationFailed(f"Same {name.replace('_', ' ')} as line {earlier} of this "
                                   f"file; only the first row is imported.", field=name,
                                   code="duplicate_in_file")


def _remember_keys(run: _Run, keys: list[tuple[str, str]], line: int) -> None:
    for name, value in keys:
        run.seen.setdefault(f"{name}:{value}", line)


def _apply_contact_row(run: _Run, line: int, row: list[str]) -> str:
    data, props, extras = _row_fields(run, row)
    if not data.get("email") and not data.get("external_id"):
        raise ValidationFailed("The row has neither an email nor an external id.",
                               field="email", code="required")
    keys = [(k, str(data[k]).lower()) for k in ("email", "external_id") if data.get(k)]
    _claim_keys(run, keys, line)
    created_at = parse_datetime(extras["created_at"], "created_at") \
        if "created_at" in extras else None
    if not (run.may_see_all and run.may_change):  # else the upsert's own lookup suffices
        existing = services.contact_find(email=data.get("email"),
                                         external_id=data.get("external_id"))
        if existing is not None and not _may_change(run, existing):
            raise PermissionDenied("The row matches a contact you may not change.")
    if "company_name" in extras:
        data["company"] = _company_by_name(run, extras["company_name"])
    tags = _split_tags(extras["tags"]) if "tags" in extras else None
    actor = run.actor
    contact, outcome = services.contact_upsert(data=data, properties=props or None, tags=tags,
                                               actor=actor, via="import",
                                               created_at=created_at)
    stage_raw = extras.get("lifecycle_stage")
    # The stage itself is the lifecycle engine's to set (its "Imported stage" rules read
    # stage_key from the event), so the move has its history row like any other.
    stage_key = STAGE_KEYS.get(_norm_header(stage_raw)) if stage_raw else None
    if outcome != services.UpsertOutcome.UNCHANGED:
        properties = {"import_job_id": run.job.pk, "line": line, "outcome": outcome,
                      "file": run.job.original_name}
        if stage_raw:
            properties["lifecycle_stage"] = stage_raw[:64]
            if stage_key:
                properties["stage_key"] = stage_key
        event_record(contact=contact, kind="import.row_applied", source="import", actor=actor,
                     properties=properties)
    _remember_keys(run, keys, line)
    if data.get("company") is not None:
        # Cached only now: a company created for a row that then failed was rolled back.
        run.companies.setdefault(extras["company_name"].lower(), data["company"])
    return outcome


def _company_by_name(run: _Run, name: str) -> Company:
    """The company with this exact name (case-insensitive), created when there is none."""
    company = run.companies.get(name.lower()) or services.company_find(name=name)
    if company is None:
        company = services.company_create(data={"name": name}, actor=run.actor, via="import")
    return company


def _apply_company_row(run: _Run, line: int, row: list[str]) -> str:
    data, props, extras = _row_fields(run, row)
    if "domain" in data:
        data["domain"] = normalize_domain(data["domain"])
    if not any(data.get(k) for k in IDENTIFIERS[ObjectType.COMPANY]):
        raise ValidationFailed("The row has no name, domain or external id.", field="name",
                               code="required")
    keys = [(k, str(data[k]).lower()) for k in ("external_id", "domain", "name") if data.get(k)]
    _claim_keys(run, keys, line)
    created_at = parse_datetime(extras["created_at"], "created_at") \
        if "created_at" in extras else None
    existing = services.company_find(domain=data.get("domain"),
                                     external_id=data.get("external_id"), name=data.get("name"))
    if existing is not None and not _may_change(run, existing):
        raise PermissionDenied("The row matches a company you may not change.")
    company, outcome = services.company_upsert(data=data, properties=props or None,
                                               actor=run.actor, via="import")
    if outcome == services.UpsertOutcome.CREATED and created_at is not None:
        Company.objects.filter(pk=company.pk).update(created_at=created_at)
    _remember_keys(run, keys, line)
    return outcome


def _error(run: _Run, line: int, row: list[str], exc: Exception, field_name: str | None) -> None:
    run.error_count += 1
    if len(run.errors) >= MAX_STORED_ERRORS:
        return
    message = exc.message if isinstance(exc, DomainError) else \
        f"The row could not be saved ({type(exc).__name__})."
    run.errors.append({"line": line, "field": field_name or "", "reason": message,
                       "values": [cell[:MAX_STORED_CELL] for cell in row]})


# ---------------------------------------------------------------- running


def import_job_run(*, job_id: int, force: bool = False) -> ImportJob:
    """Apply the rows of a pending import; idempotent.

    A job that is running or finished is left alone (so a task delivered twice runs once);
    `force` re-runs a job left "running" by a crash, which is safe because applying a row
    twice changes nothing the second time. Progress is saved every CHUNK_ROWS rows.
    """
    allowed = [ImportJob.Status.PENDING] + ([ImportJob.Status.RUNNING] if force else [])
    claimed = ImportJob.objects.filter(pk=job_id, status__in=allowed).update(
        status=ImportJob.Status.RUNNING, processed_rows=0, created_count=0, updated_count=0,
        unchanged_count=0, error_count=0, errors=[], failure="")
    job = ImportJob.objects.select_related("created_by").get(pk=job_id)
    if not claimed:
        return job
    actor = job.created_by
    model = _model_name(job.object_type)
    run = _Run(job=job, actor=actor,
               may_see_all=actor is None or user_scope(actor) == Scope.ALL,
               may_change=actor is None or actor.has_perm(f"customers.change_{model}"))
    apply_row = _apply_contact_row if job.object_type == ObjectType.CONTACT \
        else _apply_company_row
    processed, line = 0, 0
    try:
        for chunk in _chunks(job_rows(job), CHUNK_ROWS):
            with transaction.atomic():
                for line, row in chunk:
                    try:
                        with transaction.atomic():
                            outcome = apply_row(run, line, row)
                        run.counts[outcome] += 1
                    except DomainError as exc:
                        _error(run, line, row, exc, exc.field)
                    except DatabaseError as exc:
                        # e.g. a value too long for a column on PostgreSQL: the row's fault.
                        logger.warning("import %s line %s: %s", job.pk, line, exc)
                        _error(run, line, row, exc, None)
                    processed += 1
                _save_progress(job, run, processed)
    except Exception as exc:
        logger.exception("import %s failed at line %s", job.pk, line)
        _save_progress(job, run, processed, save_errors=True)
        reason = exc.message if isinstance(exc, DomainError) else \
            f"Unexpected error at line {line}: {type(exc).__name__}."
        ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.FAILED,
                                                   failure=reason, finished_at=timezone.now())
        job.refresh_from_db()
        return job
    _save_progress(job, run, processed, save_errors=True)
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.DONE,
                                               finished_at=timezone.now())
    job.refresh_from_db()
    return job


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _save_progress(job: ImportJob, run: _Run, processed: int, *, save_errors: bool = False) -> None:
    values = {"processed_rows": processed, "created_count": run.counts["created"],
              "updated_count": run.counts["updated"], "unchanged_count": run.counts["unchanged"],
              "error_count": run.error_count}
    if save_errors:
        values["errors"] = run.errors
    ImportJob.objects.filter(pk=job.pk).update(**values)


# ---------------------------------------------------------------- reporting


def import_errors_rows(job: ImportJob) -> tuple[list[str], Iterator[list[Any]]]:
    """Header and rows of the bad-rows report: line, field, reason, then the row as read."""
    header = ["line", "field", "reason", *job.mapping.get("headers", [])]
    rows = ([e["line"], e["field"], e["reason"], *e.get("values", [])] for e in job.errors)
    return header, rows


def import_summary(job: ImportJob) -> dict[str, Any]:
    """What the UI and API report about a job."""
    return {
        "id": job.pk, "type": job.object_type, "file": job.original_name,
        "status": job.status, "total_rows": job.total_rows,
        "processed_rows": job.processed_rows, "progress_percent": job.progress_percent,
        "created": job.created_count, "updated": job.updated_count,
        "unchanged": job.unchanged_count, "errors": job.error_count,
        "failure": job.failure, "created_at": job.created_at, "finished_at": job.finished_at,
        "mapping": dict(zip(job.mapping.get("headers", []), job.mapping.get("targets", []),
                            strict=False)),
    }
