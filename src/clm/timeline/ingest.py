"""Events from outside: the idempotent bulk ingest and single external events.

The bulk path does a fixed number of queries per batch whatever its size (find the known
idempotency keys, resolve contacts by email / external id, create the unknown contacts,
insert the events, leave the contacts' `last_activity_at` to a background task), so a batch
of 1,000 costs about as many round trips as a batch of 10. Correctness under concurrent
retries rests on the unique `Event.idempotency_key`: when a bulk insert meets a key another
request has just written, the batch falls back to inserting its events one by one and
answers `duplicate` for those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from clm.accounts.models import Scope
from clm.accounts.queries import user_scope, visibility_filter
from clm.core.errors import Conflict, DomainError, ValidationFailed
from clm.core.normalize import normalize_email
from clm.customers.models import Contact, ObjectType
from clm.customers.properties import validate_properties
from clm.customers.services import search_text_for
from clm.customers.validation import clean_contact_fields
from clm.timeline.models import Event
from clm.timeline.services import contacts_last_activity_touch, event_record, events_insert_rows

SOURCE = "ingest"
KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
# Kinds that only CLM's own services write (they carry invariants: audit, stage history).
RESERVED_KIND_PREFIXES = ("contact.", "company.", "consent.", "stage.", "import.", "note.")
MAX_FUTURE = timedelta(hours=1)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
MAX_PROPERTIES_BYTES = 16 * 1024


class IngestEventIn(BaseModel):
    """One event of a batch. The contact is named by `external_id` or `email` (or both)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: str = Field(min_length=1, max_length=200,
                                 description="Unique per event; a retry with the same key is "
                                             "answered `duplicate` and writes nothing.")
    email: str | None = Field(None, max_length=254)
    external_id: str | None = Field(None, max_length=100)
    kind: str = Field(min_length=1, max_length=64, pattern=KIND_PATTERN,
                      description="e.g. page.viewed, order.placed (lower case, dotted)")
    occurred_at: datetime
    source: str = Field(SOURCE, min_length=1, max_length=30)
    properties: dict[str, Any] = Field(default_factory=dict)


@dataclass
class IngestResult:
    index: int
    idempotency_key: str | None
    status: str = "rejected"  # created | duplicate | rejected
    event_id: int | None = None
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "idempotency_key": self.idempotency_key,
                "status": self.status, "event_id": self.event_id, "error": self.error}


@dataclass
class _Pending:
    """A valid event waiting for its contact and its insert."""

    result: IngestResult
    item: IngestEventIn
    email: str | None
    external_id: str | None
    occurred_at: datetime
    properties_json: str
    contact_id: int | None = None


@dataclass
class _NewContact:
    email: str | None
    external_id: str | None
    first_seen: datetime
    last_seen: datetime
    pendings: list[_Pending] = field(default_factory=list)
    contact: Contact | None = None


def _actor_id(actor) -> int | None:
    return actor.pk if actor is not None and actor.is_authenticated else None


def _error(code: str, field_name: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field_name, "message": message}


def properties_json(properties: dict[str, Any]) -> str:
    """The properties as JSON text; refuse what the databases cannot store or is too big."""
    try:
        text = json.dumps(properties, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        raise ValidationFailed("properties must hold finite numbers, text, lists and objects.",
                               field="properties") from None
    if "\\u0000" in text:
        raise ValidationFailed("properties must not contain NUL characters.", field="properties")
    if len(text) > MAX_PROPERTIES_BYTES:
        raise ValidationFailed(f"properties are larger than {MAX_PROPERTIES_BYTES} bytes.",
                               field="properties", code="too_large")
    return text


def check_event_fields(*, kind: str, occurred_at: datetime, now: datetime) -> datetime:
    """Refuse a reserved kind or an implausible time; return the time as an aware datetime
    (naive times are taken as UTC)."""
    if kind.startswith(RESERVED_KIND_PREFIXES):
        raise ValidationFailed(f"Events of kind '{kind}' are written by CLM itself.",
                               field="kind", code="reserved_kind")
    if timezone.is_naive(occurred_at):
        occurred_at = occurred_at.replace(tzinfo=UTC)
    if occurred_at < EARLIEST:
        raise ValidationFailed("occurred_at is before 1900.", field="occurred_at")
    if occurred_at > now + MAX_FUTURE:
        raise ValidationFailed("occurred_at is in the future.", field="occurred_at")
    return occurred_at


_TEXT_FIELDS = ("idempotency_key", "email", "external_id", "kind", "source")


def _validate(index: int, raw: Any, now: datetime, emails: dict[str, str | None]
              ) -> _Pending | IngestResult:
    key = raw.get("idempotency_key") if isinstance(raw, dict) else None
    result = IngestResult(index=index, idempotency_key=key if isinstance(key, str) else None)
    if not isinstance(raw, dict):
        result.error = _error("invalid", None, "Each event must be an object.")
        return result
    try:
        item = IngestEventIn.model_validate(raw)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        code = {"missing": "required", "extra_forbidden": "unknown_field"}.get(err["type"],
                                                                               "invalid")
        result.error = _error(code, ".".join(str(p) for p in err["loc"]) or None, err["msg"])
        return result
    result.idempotency_key = item.idempotency_key
    try:
        for name in _TEXT_FIELDS:
            value = getattr(item, name)
            if value and "\x00" in value:
                raise ValidationFailed(f"{name} must not contain NUL characters.", field=name)
        occurred_at = check_event_fields(kind=item.kind, occurred_at=item.occurred_at, now=now)
        props = properties_json(item.properties)
        email = None
        if item.email:
            # Visitors repeat inside a batch; validate each address once.
            if item.email not in emails:
                emails[item.email] = normalize_email(item.email)
            email = emails[item.email]
        external_id = item.external_id or None
        if not email and not external_id:
            raise ValidationFailed("An event needs the contact's email or external_id.",
                                   field="email", code="required")
    except DomainError as exc:
        result.error = _error(exc.code, exc.field, exc.message)
        return result
    return _Pending(result=result, item=item, email=email, external_id=external_id,
                    occurred_at=occurred_at, properties_json=props)


@cache
def _sqlite_key_index() -> str | None:
    """Name of the unique index on timeline_event.idempotency_key (SQLite)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA index_list('timeline_event')")
        for _, name, unique, *_ in cursor.fetchall():
            if not unique:
                continue
            cursor.execute(f"PRAGMA index_info('{name}')")
            if [row[2] for row in cursor.fetchall()] == ["idempotency_key"]:
                return name
    return None


def _stored_keys(keys: list[str]) -> list[tuple[str, int, int]]:
    """(key, event id, contact id) of stored events with these idempotency keys.

    Most events carry no key, and SQLite's statistics count all those NULLs as one value, so
    its planner believes each key matches thousands of rows and scans the whole table. There
    the unique index is named explicitly; PostgreSQL's statistics know better.
    """
    index = _sqlite_key_index() if connection.vendor == "sqlite" else None
    if index is None:
        return list(Event.objects.filter(idempotency_key__in=keys)
                    .values_list("idempotency_key", "pk", "contact_id"))
    rows: list[tuple[str, int, int]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(keys), 900):  # SQLite's limit on bound parameters
            chunk = keys[start:start + 900]
            marks = ",".join("%s" for _ in chunk)
            cursor.execute(
                f'SELECT idempotency_key, id, contact_id FROM timeline_event INDEXED BY "{index}" '  # noqa: S608 - index name from PRAGMA, values bound
                f"WHERE idempotency_key IN ({marks})", chunk)
            rows.extend(cursor.fetchall())
    return rows


def _known_keys(keys: set[str], actor) -> dict[str, int | None]:
    """The stored events' ids by idempotency key, for the keys given.

    The id is None for an event on a contact `actor` may not see: the key is still a
    duplicate, but whose event it is stays hidden. One query when no key is known (the
    common case), two otherwise.
    """
    from clm.accounts.queries import visibility_filter

    rows = _stored_keys(sorted(keys))
    if not rows:
        return {}
    visible_ids = set(Contact.objects.filter(visibility_filter(actor),
                                             pk__in={contact_id for _, _, contact_id in rows})
                      .values_list("pk", flat=True))
    return {key: pk if contact_id in visible_ids else None for key, pk, contact_id in rows}


def _resolve(emails: set[str], external_ids: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Map known emails and external ids to contact ids (one query)."""
    by_email: dict[str, int] = {}
    by_external: dict[str, int] = {}
    if not emails and not external_ids:
        return by_email, by_external
    rows = Contact.objects.filter(Q(email__in=emails) | Q(external_id__in=external_ids)
                                  ).values_list("pk", "email", "external_id")
    for pk, email, external_id in rows:
        if email in emails:
            by_email[email] = pk
        if external_id in external_ids:
            by_external[external_id] = pk
    return by_email, by_external


def _match(p: _Pending, by_email: dict[str, int], by_external: dict[str, int]) -> int | None:
    # The same precedence as customers.services.contact_find: external id, then email.
    if p.external_id and p.external_id in by_external:
        return by_external[p.external_id]
    if p.email and p.email in by_email:
        return by_email[p.email]
    return None


def _plan_new_contacts(unmatched: list[_Pending]) -> list[_NewContact]:
    """Group events of unknown contacts so each unknown person is created once."""
    new_by_external: dict[str, _NewContact] = {}
    new_by_email: dict[str, _NewContact] = {}
    planned: list[_NewContact] = []
    for p in unmatched:
        nc = (new_by_external.get(p.external_id) if p.external_id else None) or \
             (new_by_email.get(p.email) if p.email else None)
        if nc is None:
            nc = _NewContact(email=p.email, external_id=p.external_id, first_seen=p.occurred_at,
                             last_seen=p.occurred_at)
            planned.append(nc)
        else:
            nc.first_seen = min(nc.first_seen, p.occurred_at)
            nc.last_seen = max(nc.last_seen, p.occurred_at)
            if nc.external_id is None and p.external_id:
                nc.external_id = p.external_id
            if nc.email is None and p.email and p.email not in new_by_email:
                nc.email = p.email
        if nc.external_id:
            new_by_external.setdefault(nc.external_id, nc)
        if nc.email:
            new_by_email.setdefault(nc.email, nc)
        nc.pendings.append(p)
    return planned


def _build_contact(nc: _NewContact, *, actor, now: datetime) -> Contact:
    # The normalisation and validation of customers.services.contact_create, in bulk.
    fields = clean_contact_fields({"email": nc.email, "external_id": nc.external_id,
                                   "source": SOURCE})
    if actor is not None and actor.is_authenticated:
        fields["owner"] = actor
    created_at = min(nc.first_seen, now)
    contact = Contact(**fields, properties={}, created_at=created_at, updated_at=now,
                      last_activity_at=nc.last_seen)
    contact.search_text = search_text_for(contact)
    return contact


def _created_event(contact: Contact, *, actor_id: int | None) -> tuple:
    """The `contact.created` row for events_insert_rows, as contact_create records it."""
    return (contact.pk, "contact.created", contact.created_at, SOURCE,
            json.dumps({"source": contact.source, "email": contact.email}), None, actor_id)


def _create_contacts(planned: list[_NewContact], *, actor, now: datetime) -> list[tuple]:
    """Insert the planned contacts (one statement); return their `contact.created` events.

    A contact another request created meanwhile is used instead of being created again.
    """
    for nc in planned:
        nc.contact = _build_contact(nc, actor=actor, now=now)
    try:
        with transaction.atomic():
            Contact.objects.bulk_create([nc.contact for nc in planned], batch_size=1000)
        return [_created_event(nc.contact, actor_id=_actor_id(actor)) for nc in planned]
    except IntegrityError:
        pass
    # Rare: a concurrent request created some of them. Settle them one by one.
    events: list[tuple] = []
    for nc in planned:
        nc.contact.pk = None
        try:
            with transaction.atomic():
                nc.contact.save(force_insert=True)
            events.append(_created_event(nc.contact, actor_id=_actor_id(actor)))
        except IntegrityError:
            by_email, by_external = _resolve({nc.email} - {None}, {nc.external_id} - {None})
            pk = by_external.get(nc.external_id) or by_email.get(nc.email)
            if pk is None:
                raise
            nc.contact = Contact(pk=pk)
    return events


def _row(p: _Pending, actor_id: int | None) -> tuple:
    return (p.contact_id, p.item.kind, p.occurred_at, p.item.source, p.properties_json,
            p.item.idempotency_key, actor_id)


def _insert_events(pendings: list[_Pending], created_events: list[tuple],
                   actor_id: int | None) -> None:
    """Insert the events; a key a concurrent request wrote meanwhile becomes a duplicate."""
    try:
        with transaction.atomic():
            ids = events_insert_rows(created_events + [_row(p, actor_id) for p in pendings])
        for p, pk in zip(pendings, ids[len(created_events):], strict=True):
            p.result.status, p.result.event_id = "created", pk
        return
    except IntegrityError:
        pass
    if created_events:
        events_insert_rows(created_events)
    for p in pendings:
        try:
            with transaction.atomic():
                (pk,) = events_insert_rows([_row(p, actor_id)])
            p.result.status, p.result.event_id = "created", pk
        except IntegrityError:
            existing = (Event.objects.filter(idempotency_key=p.item.idempotency_key)
                        .values_list("pk", flat=True).first())
            if existing is None:
                raise
            p.result.status, p.result.event_id = "duplicate", existing


@transaction.atomic
def events_ingest(*, items: list[Any], actor) -> list[IngestResult]:
    """Record a batch of outside events idempotently; answer each item in order.

    Each item is `created` (with its event id), `duplicate` (its idempotency key is known:
    nothing is written, the id of the first event is given) or `rejected` (with
    {code, field, message}); good items are kept whatever happens to bad ones. A contact
    named by an unknown email or external id is created (source "ingest", owned by `actor`,
    created at its earliest event) with its `contact.created` event. Events naming a contact
    `actor` may not see are rejected (`not_found`). The caller checks permissions and the cap.
    """
    now = timezone.now()
    results: list[IngestResult] = []
    pendings: list[_Pending] = []
    emails: dict[str, str | None] = {}
    for index, raw in enumerate(items):
        outcome = _validate(index, raw, now, emails)
        if isinstance(outcome, _Pending):
            pendings.append(outcome)
            results.append(outcome.result)
        else:
            results.append(outcome)
    if not pendings:
        return results

    # Keys already stored, and keys repeated inside this batch (the first one wins).
    known = _known_keys({p.item.idempotency_key for p in pendings}, actor)
    first_of_key: dict[str, _Pending] = {}
    repeats: list[tuple[_Pending, _Pending]] = []
    fresh: list[_Pending] = []
    for p in pendings:
        key = p.item.idempotency_key
        if key in known:
            p.result.status, p.result.event_id = "duplicate", known[key]
        elif key in first_of_key:
            repeats.append((p, first_of_key[key]))
        else:
            first_of_key[key] = p
            fresh.append(p)

    by_email, by_external = _resolve({p.email for p in fresh if p.email},
                                     {p.external_id for p in fresh if p.external_id})
    matched_ids = {pk for pk in (_match(p, by_email, by_external) for p in fresh) if pk}
    if matched_ids and user_scope(actor) != Scope.ALL:
        allowed = set(Contact.objects.filter(visibility_filter(actor), pk__in=matched_ids)
                      .values_list("pk", flat=True))
    else:
        allowed = matched_ids
    unmatched: list[_Pending] = []
    ready: list[_Pending] = []
    for p in fresh:
        pk = _match(p, by_email, by_external)
        if pk is None:
            unmatched.append(p)
        elif pk not in allowed:
            p.result.error = _error("not_found", "external_id" if p.external_id else "email",
                                    "There is no contact you may see with this identity.")
        else:
            p.contact_id = pk
            ready.append(p)

    created_events: list[tuple] = []
    if unmatched:
        try:
            # Required custom properties bind ingest-created contacts like any other.
            validate_properties(ObjectType.CONTACT, {})
            planned = _plan_new_contacts(unmatched)
            created_events = _create_contacts(planned, actor=actor, now=now)
            for nc in planned:
                for p in nc.pendings:
                    p.contact_id = nc.contact.pk
            ready.extend(unmatched)
        except DomainError as exc:
            for p in unmatched:
                p.result.error = _error(exc.code, exc.field, exc.message)

    ready.sort(key=lambda p: p.result.index)
    if ready or created_events:
        _insert_events(ready, created_events, _actor_id(actor))

    latest: dict[int, datetime] = {}
    for p in ready:
        if p.result.status == "created":
            latest[p.contact_id] = max(latest.get(p.contact_id, p.occurred_at), p.occurred_at)
    if latest:
        # In the worker, after this commits (the task row is part of this transaction):
        # updating 1,000 contacts' rows and their last-activity index was a sixth of a
        # batch's cost, for a value that may lag the timeline by a second.
        from clm.timeline.tasks import contacts_last_activity_touch

        contacts_last_activity_touch.enqueue(
            [[pk, at.isoformat()] for pk, at in sorted(latest.items())])

    for p, first in repeats:
        if first.result.status in ("created", "duplicate"):
            p.result.status, p.result.event_id = "duplicate", first.result.event_id
        else:
            p.result.error = first.result.error
    return results


@transaction.atomic
def event_record_external(*, contact: Contact, kind: str, occurred_at: datetime | None,
                          properties: dict[str, Any], source: str, actor,
                          idempotency_key: str | None = None) -> tuple[Event, bool]:
    """Record one event from outside on `contact`; return (event, created).

    With an idempotency key already stored on this contact, nothing is written and the
    stored event is returned with created=False; a key stored on another contact is a
    409 `duplicate`. The contact's last_activity_at moves forward to the event's time.
    """
    now = timezone.now()
    occurred_at = check_event_fields(kind=kind, occurred_at=occurred_at or now, now=now)
    properties_json(properties)
    if idempotency_key:
        existing = Event.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.contact_id != contact.pk:
                raise Conflict("This idempotency_key belongs to another event.",
                               field="idempotency_key", code="duplicate")
            return existing, False
    try:
        with transaction.atomic():
            event = event_record(contact=contact, kind=kind, occurred_at=occurred_at,
                                 source=source, properties=properties, actor=actor,
                                 idempotency_key=idempotency_key)
    except IntegrityError:
        # A concurrent request stored the same key between our check and insert.
        existing = Event.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None or existing.contact_id != contact.pk:
            raise Conflict("This idempotency_key belongs to another event.",
                           field="idempotency_key", code="duplicate") from None
        return existing, False
    contacts_last_activity_touch({contact.pk: occurred_at})
    return event, True
