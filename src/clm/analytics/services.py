"""Writes of the analytics app: purchases (from events and CSV) and the model refresh."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from clm.analytics import queries, summary
from clm.analytics.models import RefreshRun, Transaction
from clm.core.errors import Conflict, ValidationFailed
from clm.customers.models import Contact
from clm.timeline.models import Event

log = logging.getLogger(__name__)

ORDER_COMPLETED = "order.completed"
MAX_AMOUNT = Decimal("999999999999.99")


def _default_currency() -> str:
    return getattr(settings, "CLM_DEFAULT_CURRENCY", "USD")


def local_day(moment: datetime) -> date:
    """The calendar day of `moment` in the business's time zone (settings.TIME_ZONE)."""
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def _parse_amount(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        raise ValidationFailed(f"'{value}' is not an amount.", field="amount") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise ValidationFailed("An amount is a number from 0 up.", field="amount")
    return amount.quantize(Decimal("0.01"))


def _parse_currency(value: Any) -> str:
    code = str(value or "").strip().upper() or _default_currency()
    if len(code) != 3 or not code.isalpha():
        raise ValidationFailed(f"'{value}' is not a currency code (ISO 4217).", field="currency")
    return code


def _parse_moment(value: Any) -> datetime:
    text = str(value or "").strip()
    moment = None
    if len(text) == 8 and text.isdigit():  # 19970101, as in the CDNOW files
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is not None:
                moment = datetime.combine(day, datetime.min.time())
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationFailed(f"'{value}' is not a date (use YYYY-MM-DD).", field="date")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


# --------------------------------------------------------------------------------------
# Purchases from order.completed events
# --------------------------------------------------------------------------------------

# A merge moves the losers' purchases to the survivor (customers.merging moves every row
# that points at a contact), which the survivor's purchase summary must then include.
MERGED = "contact.merged"


def events_committed_process(event_ids: Iterable[int]) -> int:
    """Record the purchases of committed `order.completed` events (idempotent, in bulk), the
    months in which contacts were active, and recompute the purchase summary and active
    months of contacts that absorbed others in a merge. Returns the purchases added.
    """
    ids = list(event_ids)
    # By primary key only, kind checked here: with `kind IN` in SQL, SQLite may walk the kind
    # index over every order ever placed instead of looking up these ids.
    wanted = {ORDER_COMPLETED, MERGED}
    rows = [row for row in Event.objects.filter(pk__in=ids)
            .values_list("pk", "kind", "contact_id") if row[1] in wanted]
    orders = [pk for pk, kind, _ in rows if kind == ORDER_COMPLETED]
    added = transactions_from_events(orders) if orders else 0
    merged = {contact_id for _, kind, contact_id in rows if kind == MERGED}
    with transaction.atomic():
        summary.activity_months_add(ids)
        if merged:
            purchase_summaries_update(contact_ids=merged)
            summary.activity_months_update(merged)
    return added


def transactions_from_events(event_ids: Iterable[int]) -> int:
    """Turn `order.completed` events among `event_ids` into purchases; returns rows added.

    Idempotent: an event already turned into a purchase, or one whose `order_id` is already
    recorded, adds nothing. Events with an invalid amount or currency are skipped (logged).
    """
    ids = list(event_ids)
    if not ids:
        return 0
    # Looked up by primary key only (see events_committed_process for why).
    events = [e for e in Event.objects.filter(pk__in=ids)
              .only("pk", "kind", "contact_id", "occurred_at", "properties")
              if e.kind == ORDER_COMPLETED]
    if not events:
        return 0
    now = timezone.now()
    rows: list[Transaction] = []
    for event in events:
        props = event.properties or {}
        try:
            amount = _parse_amount(props.get("amount"))
            currency = _parse_currency(props.get("currency"))
        except ValidationFailed as exc:
            log.warning("order.completed event %s skipped: %s", event.pk, exc.message)
            continue
        reference = str(props.get("order_id") or "").strip()[:100] or None
        rows.append(Transaction(contact_id=event.contact_id, occurred_at=event.occurred_at,
                                occurred_on=local_day(event.occurred_at), amount=amount,
                                currency=currency, order_reference=reference, source="event",
                                event_id=event.pk, created_at=now))
    with transaction.atomic():
        before = Transaction.objects.filter(event_id__in=[e.pk for e in events]).count()
        # Unique order_reference and event_id make a repeat a no-op.
        Transaction.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        after = Transaction.objects.filter(event_id__in=[e.pk for e in events]).count()
        if after > before:
            summary.summaries_update({row.contact_id for row in rows})
    return after - before


@transaction.atomic
def transaction_record(*, contact: Contact, occurred_at: datetime, amount: Decimal | str | float,
                       currency: str | None = None, order_reference: str | None = None,
                       source: str = "api") -> Transaction:
    """Record one purchase (and bring the contact's purchase summary up to date).

    Raises ValidationFailed (field amount, currency or order_reference) for a bad amount or
    currency code, or an order reference already recorded.
    """
    value = _parse_amount(amount)
    code = _parse_currency(currency)
    if timezone.is_naive(occurred_at):
        raise ValidationFailed("occurred_at needs a time zone.", field="occurred_at")
    reference = (order_reference or "").strip()[:100] or None
    if reference and Transaction.objects.filter(order_reference=reference).exists():
        raise ValidationFailed(f"Order '{reference}' is already recorded.",
                               field="order_reference", code="duplicate")
    row = Transaction.objects.create(
        contact=contact, occurred_at=occurred_at, occurred_on=local_day(occurred_at),
        amount=value, currency=code, order_reference=reference, source=source[:30],
        created_at=timezone.now())
    summary.summaries_update([contact.pk])
    return row


def purchase_summaries_update(*, contact_ids: Iterable[int]) -> None:
    """Bring the purchase summaries of `contact_ids` up to date with their transactions.

    Every writer of Transaction outside this module (billing, a merge of contacts) calls it
    in its own transaction, with the contacts whose purchases it added, changed or moved.
    """
    summary.summaries_update(contact_ids)


# --------------------------------------------------------------------------------------
# CSV import
# --------------------------------------------------------------------------------------

COLUMN_ALIASES = {
    "customer_id": ["customer_id", "customer", "external_id", "customer id", "id"],
    "email": ["email", "e-mail", "customer_email"],
    "date": ["date", "occurred_at", "order_date", "purchased_at"],
    "amount": ["amount", "value", "total", "dollar_value"],
    "currency": ["currency"],
    "order_reference": ["order_reference", "order_id", "order", "reference", "order reference"],
}


@dataclass
class TransactionImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    contacts_created: int = 0
    errors: list[dict] = field(default_factory=list)  # [{line, field, reason}]

    def as_dict(self) -> dict:
        return {"rows": self.rows, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "contacts_created": self.contacts_created,
                "error_count": len(self.errors), "errors": self.errors[:1000]}


def _header_map(header: list[str]) -> dict[str, int]:
    lowered = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for key, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                found[key] = lowered.index(alias)
                break
    if "customer_id" not in found and "email" not in found:
        raise ValidationFailed("The file needs a customer id or an email column.",
                               field="customer_id", code="missing_column")
    for key in ("date", "amount"):
        if key not in found:
            raise ValidationFailed(f"The file needs a {key} column.", field=key,
                                   code="missing_column")
    return found


def _contacts_for(keys: set[tuple[str, str]], now: datetime) -> tuple[dict, int]:
    """Map (kind, value) customer keys to contact ids, creating missing contacts in bulk."""
    by_key: dict[tuple[str, str], int] = {}
    ext = sorted(v for k, v in keys if k == "external_id")
    emails = sorted(v for k, v in keys if k == "email")
    for chunk_start in range(0, len(ext), 900):
        chunk = ext[chunk_start:chunk_start + 900]
        for pk, value in Contact.objects.filter(external_id__in=chunk).values_list("pk", "external_id"):
            by_key[("external_id", value)] = pk
    for chunk_start in range(0, len(emails), 900):
        chunk = emails[chunk_start:chunk_start + 900]
        for pk, value in Contact.objects.filter(email__in=chunk).values_list("pk", "email"):
            by_key[("email", value)] = pk
    missing = sorted(k for k in keys if k not in by_key)
    if missing:
        new = [Contact(**{kind: value}, source="import", search_text=value if kind == "email" else "",
                       created_at=now, updated_at=now) for kind, value in missing]
        Contact.objects.bulk_create(new, batch_size=500)
        for kind in ("external_id", "email"):
            values = [v for k, v in missing if k == kind]
            for chunk_start in range(0, len(values), 900):
                chunk = values[chunk_start:chunk_start + 900]
                for pk, value in Contact.objects.filter(**{f"{kind}__in": chunk}).values_list("pk", kind):
                    by_key[(kind, value)] = pk
        # The timeline shows where each new contact came from.
        from clm.timeline.services import events_record_bulk

        events_record_bulk([Event(contact_id=by_key[key], kind="contact.created",
                                  occurred_at=now, recorded_at=now, source="import",
                                  properties={"source": "import", "via": "transactions import"})
                            for key in missing])
    return by_key, len(missing)


@transaction.atomic
def transactions_import(*, file: io.TextIOBase | Iterable[str], actor=None,
                        source: str = "import") -> TransactionImportResult:
    """Import purchases from CSV: customer id or email, date, amount [, currency, order reference].

    Rows with an order reference are upserted by it (re-importing a file changes nothing);
    rows without one are always added. Unknown customers become contacts (external id or
    email). Bad rows are skipped and reported by line number; the good rows are imported.
    """
    from clm.core.normalize import normalize_email

    reader = csv.reader(file)
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationFailed("The file is empty.", field="file", code="empty") from None
    cols = _header_map(header)
    result = TransactionImportResult()
    parsed: list[tuple[int, tuple[str, str], datetime, Decimal, str, str | None]] = []
    seen_refs: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        result.rows += 1

        def cell(key: str, row=row) -> str:
            i = cols.get(key)
            return row[i].strip() if i is not None and i < len(row) else ""

        try:
            customer = cell("customer_id")
            if customer:
                key = ("external_id", customer[:100])
            else:
                email = normalize_email(cell("email"))
                if not email:
                    raise ValidationFailed("A row needs a customer id or an email.",
                                           field="customer_id")
                key = ("email", email)
            moment = _parse_moment(cell("date"))
            amount = _parse_amount(cell("amount"))
            currency = _parse_currency(cell("currency"))
            reference = cell("order_reference")[:100] or None
            if reference is not None:
                if reference in seen_refs:
                    raise ValidationFailed(
                        f"Order reference '{reference}' repeats line {seen_refs[reference]}.",
                        field="order_reference")
                seen_refs[reference] = line
        except ValidationFailed as exc:
            result.errors.append({"line": line, "field": exc.field, "reason": exc.message})
            continue
        parsed.append((line, key, moment, amount, currency, reference))
    if not parsed:
        return result
    now = timezone.now()
    contact_ids, result.contacts_created = _contacts_for({p[1] for p in parsed}, now)

    refs = [p[5] for p in parsed if p[5] is not None]
    existing: dict[str, Transaction] = {}
    for chunk_start in range(0, len(refs), 900):
        for t in Transaction.objects.filter(order_reference__in=refs[chunk_start:chunk_start + 900]):
            existing[t.order_reference] = t
    to_create: list[Transaction] = []
    to_update: list[Transaction] = []
    moved_from: set[int] = set()  # previous contacts of updated rows
    for _line, key, moment, amount, currency, reference in parsed:
        contact_id = contact_ids[key]
        old = existing.get(reference) if reference else None
        if old is None:
            to_create.append(Transaction(contact_id=contact_id, occurred_at=moment,
                                         occurred_on=local_day(moment), amount=amount,
                                         currency=currency, order_reference=reference,
                                         source=source[:30], created_at=now))
            continue
        new_values = {"contact_id": contact_id, "occurred_at": moment,
                      "occurred_on": local_day(moment), "amount": amount, "currency": currency}
        if all(getattr(old, k) == v for k, v in new_values.items()):
            result.unchanged += 1
            continue
        moved_from.add(old.contact_id)
        for k, v in new_values.items():
            setattr(old, k, v)
        to_update.append(old)
    Transaction.objects.bulk_create(to_create, batch_size=1000)
    if to_update:
        Transaction.objects.bulk_update(to_update, ["contact_id", "occurred_at", "occurred_on",
                                                    "amount", "currency"], batch_size=500)
    summary.summaries_update({t.contact_id for t in to_create} | {t.contact_id for t in to_update}
                             | moved_from)
    result.created, result.updated = len(to_create), len(to_update)
    return result


# --------------------------------------------------------------------------------------
# Refresh
# --------------------------------------------------------------------------------------

def refresh_settings() -> dict:
    return {
        "horizon_months": int(getattr(settings, "CLM_CLV_HORIZON_MONTHS", 12)),
        "monthly_discount": float(getattr(settings, "CLM_CLV_MONTHLY_DISCOUNT", 0.01)),
        "window_days": int(getattr(settings, "CLM_EXPECTED_PURCHASES_DAYS", 90)),
    }


@transaction.atomic
def refresh_request(*, as_of: date | None = None, actor=None) -> RefreshRun:
    """Queue a refresh as of `as_of` (default today) and return its run (status pending).

    Refuses (409) while another refresh is pending or running.
    """
    today = timezone.localdate()
    as_of = as_of or today
    if as_of > today:
        raise ValidationFailed("as_of cannot be in the future.", field="as_of")
    if queries.active_run() is not None:
        raise Conflict("A refresh is already under way.", code="refresh_running")
    run = RefreshRun.objects.create(
        as_of=as_of, created_at=timezone.now(), settings=refresh_settings(),
        requested_by=actor if actor is not None and actor.is_authenticated else None)

    def enqueue() -> None:
        from clm.analytics.tasks import analytics_refresh_task

        analytics_refresh_task.enqueue(run_id=run.pk)

    transaction.on_commit(enqueue)
    return run


def _progress(run: RefreshRun, percent: int, step: str) -> None:
    RefreshRun.objects.filter(pk=run.pk).update(progress=percent, step=step)
    run.progress, run.step = percent, step


def refresh_execute(*, run: RefreshRun) -> RefreshRun:
    """Compute everything as of `run.as_of` and write the scores; marks the run done or failed.

    Idempotent: running a finished run again does nothing. Only purchases on or before the
    as-of day count. Score rows are replaced in one transaction (readers never see a mix).
    """
    from clm.analytics import refresh

    if run.status in (RefreshRun.Status.DONE, RefreshRun.Status.FAILED):
        return run
    t_start = time.perf_counter()
    run.status, run.started_at = RefreshRun.Status.RUNNING, timezone.now()
    run.settings = run.settings or refresh_settings()
    run.save(update_fields=["status", "started_at", "settings"])
    try:
        refresh.compute(run, lambda percent, step: _progress(run, percent, step))
    except Exception as exc:  # the run records any failure; the task must not crash silently
        log.exception("analytics refresh %s failed", run.pk)
        run.status, run.failure = RefreshRun.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "failure", "finished_at"])
        return run
    run.timings["total"] = round(time.perf_counter() - t_start, 3)
    run.status, run.progress, run.step = RefreshRun.Status.DONE, 100, "done"
    run.finished_at = timezone.now()
    run.save()
    return run


def refresh_now(*, as_of: date | None = None, actor=None) -> RefreshRun:
    """Create a run and execute it in this process (the command line's path)."""
    if queries.active_run() is not None:
        raise Conflict("A refresh is already under way.", code="refresh_running")
    run = RefreshRun.objects.create(
        as_of=as_of or timezone.localdate(), created_at=timezone.now(),
        settings=refresh_settings(),
        requested_by=actor if actor is not None and actor.is_authenticated else None)
    return refresh_execute(run=run)


# A run still pending or running after this long lost its worker (killed, machine restarted).
STALE_RUN_AFTER = timedelta(hours=6)


def refresh_scheduled(*, now: datetime | None = None) -> RefreshRun | None:
    """The periodic refresh, as of today, in the worker that runs the scheduled task.

    Skipped (None) while a recent refresh is under way; one pending or running for longer
    than STALE_RUN_AFTER is marked failed first, so a dead worker cannot stop refreshes.
    """
    now = now or timezone.now()
    active = queries.active_run()
    if active is not None:
        if active.created_at > now - STALE_RUN_AFTER:
            return None
        RefreshRun.objects.filter(
            pk=active.pk, status__in=[RefreshRun.Status.PENDING, RefreshRun.Status.RUNNING],
        ).update(status=RefreshRun.Status.FAILED, finished_at=now,
                 failure=f"Abandoned: still {active.status} after {STALE_RUN_AFTER}.")
    try:
        return refresh_now()
    except Conflict:  # another worker started one in between
        return None
