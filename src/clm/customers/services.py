"""Every write to contacts, companies, consent and custom properties.

Each function validates, writes, audits field changes and records its timeline event in
one transaction. Views, the API, import and tasks all call these.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from clm.core.errors import Conflict, ValidationFailed
from clm.customers.models import (
    Company,
    ConsentRecord,
    Contact,
    FieldChange,
    ObjectType,
    PropertyDefinition,
    PropertyType,
    Tag,
)
from clm.customers.properties import validate_properties
from clm.customers.validation import clean_company_fields, clean_contact_fields
from clm.timeline.models import Event
from clm.timeline.services import event_record, events_record_bulk

TAG_MAX = 64


def _audit_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Model):
        return str(value.pk)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def search_text_for(contact: Contact) -> str:
    return " ".join(p for p in (contact.first_name, contact.last_name, contact.email or "") if p
                    ).lower()[:500]


def _unique_conflict(exc: IntegrityError, obj_label: str) -> Conflict:
    text = str(exc).lower()
    for field in ("email", "external_id", "domain"):
        if field in text:
            return Conflict(f"Another {obj_label} already has this {field.replace('_', ' ')}.",
                            field=field, code="duplicate")
    return Conflict(f"This {obj_label} conflicts with an existing one.", code="duplicate")


def _normalize_tags(tags: list[str] | None) -> list[str]:
    names: list[str] = []
    for tag in tags or []:
        name = str(tag).strip().lower()[:TAG_MAX]
        if name and name not in names:
            names.append(name)
    return names


def _set_tags(contact: Contact, names: list[str]) -> None:
    existing = {t.name: t for t in Tag.objects.filter(name__in=names)}
    missing = [Tag(name=n) for n in names if n not in existing]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {t.name: t for t in Tag.objects.filter(name__in=names)}
    contact.tags.set([existing[n] for n in names])


def _record_changes(*, object_type: str, obj: Model, changes: dict[str, tuple[Any, Any]],
                    actor, via: str, at: datetime) -> None:
    FieldChange.objects.bulk_create([
        FieldChange(object_type=object_type, object_id=obj.pk, field=field,
                    old_value=_audit_value(old), new_value=_audit_value(new),
                    actor=actor if actor is not None and actor.is_authenticated else None,
                    via=via, changed_at=at)
        for field, (old, new) in changes.items()
    ])


def _event_changes(changes: dict[str, tuple[Any, Any]]) -> dict[str, list]:
    return {field: [_audit_value(old), _audit_value(new)] for field, (old, new) in changes.items()}


@transaction.atomic
def contact_create(*, data: dict[str, Any], properties: dict[str, Any] | None = None,
                   tags: list[str] | None = None, actor=None, via: str = "ui",
                   created_at: datetime | None = None) -> Contact:
    """Create a contact from field values; records `contact.created`.

    Without an explicit owner, a user who creates a contact owns it.
    """
    fields = clean_contact_fields(data)
    props = validate_properties(ObjectType.CONTACT, properties or {})
    if "owner" not in data and actor is not None and actor.is_authenticated:
        fields["owner"] = actor
    now = timezone.now()
    contact = Contact(**fields, properties=props, created_at=created_at or now, updated_at=now)
    if not contact.source:
        contact.source = via
    contact.search_text = search_text_for(contact)
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:
        raise _unique_conflict(exc, "contact") from None
    tag_names = _normalize_tags(tags)
    if tag_names:
        _set_tags(contact, tag_names)
    event_record(contact=contact, kind="contact.created", occurred_at=contact.created_at,
                 source=via, actor=actor,
                 properties={"source": contact.source, "email": contact.email})
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, data: dict[str, Any] | None = None,
                   properties: dict[str, Any] | None = None, tags: list[str] | None = None,
                   actor=None, via: str = "ui") -> tuple[Contact, dict[str, tuple[Any, Any]]]:
    """Apply the given fields; audit each change and record one `contact.updated` event.

    Returns the contact and the changes {field: (old, new)}; no change writes nothing.
    """
    fields = clean_contact_fields(data or {})
    changes: dict[str, tuple[Any, Any]] = {}
    for field, new in fields.items():
        old = getattr(contact, field)
        if old != new:
            changes[field] = (old, new)
            setattr(contact, field, new)
    if properties:
        new_props = validate_properties(ObjectType.CONTACT, properties,
                                        existing=contact.properties, partial=True)
        for key in set(new_props) | set(contact.properties):
            if new_props.get(key) != contact.properties.get(key):
                changes[f"properties.{key}"] = (contact.properties.get(key), new_props.get(key))
        contact.properties = new_props
    if tags is not None:
        new_tags = _normalize_tags(tags)
        old_tags = sorted(contact.tags.values_list("name", flat=True))
        if sorted(new_tags) != old_tags:
            changes["tags"] = (", ".join(old_tags), ", ".join(sorted(new_tags)))
            _set_tags(contact, new_tags)
    if not changes:
        return contact, {}
    now = timezone.now()
    contact.updated_at = now
    contact.search_text = search_text_for(contact)
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:
        raise _unique_conflict(exc, "contact") from None
    _record_changes(object_type=ObjectType.CONTACT, obj=contact, changes=changes, actor=actor,
                    via=via, at=now)
    event_record(contact=contact, kind="contact.updated", source=via, actor=actor,
                 properties={"changes": _event_changes(changes)})
    return contact, changes


@transaction.atomic
def contact_delete(*, contact: Contact, actor=None, via: str = "ui") -> None:
    """Delete a contact with its timeline and consent rows; the audit log keeps the deletion."""
    _record_changes(object_type=ObjectType.CONTACT, obj=contact,
                    changes={"deleted": (contact.display_name, None)}, actor=actor, via=via,
                    at=timezone.now())
    contact.delete()


@transaction.atomic
def contacts_bulk_update(*, contacts: list[Contact], data: dict[str, Any] | None = None,
                         add_tags: list[str] | None = None, actor=None, via: str = "ui") -> int:
    """Apply the same field values (e.g. owner) and/or added tags to many contacts."""
    count = 0
    add = _normalize_tags(add_tags)
    for contact in contacts:
        tags = None
        if add:
            current = list(contact.tags.values_list("name", flat=True))
            tags = current + [t for t in add if t not in current]
        _, changes = contact_update(contact=contact, data=data or {}, tags=tags, actor=actor,
                                    via=via)
        count += bool(changes)
    return count


@transaction.atomic
def note_add(*, contact: Contact, body: str, actor=None, via: str = "ui"):
    """Add a note to a contact's timeline (`note.added`)."""
    text = (body or "").strip()
    if not text:
        raise ValidationFailed("A note cannot be empty.", field="body", code="required")
    if len(text) > 10000:
        raise ValidationFailed("A note is at most 10,000 characters.", field="body")
    Contact.objects.filter(pk=contact.pk).update(last_activity_at=timezone.now())
    return event_record(contact=contact, kind="note.added", source=via, actor=actor,
                        properties={"body": text})


@transaction.atomic
def consent_record(*, contact: Contact, purpose: str, granted: bool, source: str,
                   policy_version: str = "", occurred_at: datetime | None = None,
                   actor=None) -> ConsentRecord:
    """Append an opt-in or opt-out (never overwrites); records `consent.changed`."""
    purpose = (purpose or "").strip().lower()
    if not purpose or len(purpose) > 50:
        raise ValidationFailed("A consent needs a purpose (at most 50 characters).",
                               field="purpose", code="required")
    if not source:
        raise ValidationFailed("A consent needs a source.", field="source", code="required")
    record = ConsentRecord.objects.create(
        contact=contact, purpose=purpose, granted=bool(granted),
        occurred_at=occurred_at or timezone.now(), source=source[:50],
        policy_version=(policy_version or "")[:30],
        recorded_by=actor if actor is not None and actor.is_authenticated else None)
    event_record(contact=contact, kind="consent.changed", occurred_at=record.occurred_at,
                 source=source[:30], actor=actor,
                 properties={"purpose": purpose, "granted": record.granted,
                             "policy_version": record.policy_version})
    return record


@transaction.atomic
def company_create(*, data: dict[str, Any], properties: dict[str, Any] | None = None,
                   actor=None, via: str = "ui") -> Company:
    fields = clean_company_fields(data)
    if not fields.get("name"):
        raise ValidationFailed("A company needs a name.", field="name", code="required")
    props = validate_properties(ObjectType.COMPANY, properties or {})
    if "owner" not in data and actor is not None and actor.is_authenticated:
        fields["owner"] = actor
    now = timezone.now()
    company = Company(**fields, properties=props, created_at=now, updated_at=now)
    try:
        with transaction.atomic():
            company.save()
    except IntegrityError as exc:
        raise _unique_conflict(exc, "company") from None
    _record_changes(object_type=ObjectType.COMPANY, obj=company,
                    changes={"created": (None, company.name)}, actor=actor, via=via, at=now)
    return company


@transaction.atomic
def company_update(*, company: Company, data: dict[str, Any] | None = None,
                   properties: dict[str, Any] | None = None, actor=None,
                   via: str = "ui") -> tuple[Company, dict[str, tuple[Any, Any]]]:
    fields = clean_company_fields(data or {})
    changes: dict[str, tuple[Any, Any]] = {}
    for field, new in fields.items():
        old = getattr(company, field)
        if old != new:
            changes[field] = (old, new)
            setattr(company, field, new)
    if properties:
        new_props = validate_properties(ObjectType.COMPANY, properties,
                                        existing=company.properties, partial=True)
        for key in set(new_props) | set(company.properties):
            if new_props.get(key) != company.properties.get(key):
                changes[f"properties.{key}"] = (company.properties.get(key), new_props.get(key))
        company.properties = new_props
    if not changes:
        return company, {}
    now = timezone.now()
    company.updated_at = now
    try:
        with transaction.atomic():
            company.save()
    except IntegrityError as exc:
        raise _unique_conflict(exc, "company") from None
    _record_changes(object_type=ObjectType.COMPANY, obj=company, changes=changes, actor=actor,
                    via=via, at=now)
    # The company's people see the change on their timelines: "their company moved".
    properties = {"company_id": company.pk, "changes": _event_changes(changes)}
    events_record_bulk([
        Event(contact_id=contact_id, kind="company.updated", occurred_at=now, recorded_at=now,
              source=via, properties=properties,
              actor=actor if actor is not None and actor.is_authenticated else None)
        for contact_id in company.contacts.values_list("pk", flat=True).iterator(chunk_size=2000)])
    return company, changes


@transaction.atomic
def company_delete(*, company: Company, actor=None, via: str = "ui") -> None:
    _record_changes(object_type=ObjectType.COMPANY, obj=company,
                    changes={"deleted": (company.name, None)}, actor=actor, via=via,
                    at=timezone.now())
    company.delete()


@transaction.atomic
def property_definition_create(*, object_type: str, key: str, label: str, type: str,
                               choices: list[str] | None = None, required: bool = False,
                               help_text: str = "") -> PropertyDefinition:
    if object_type not in ObjectType.values:
        raise ValidationFailed("object_type must be contact or company.", field="object_type")
    if type not in PropertyType.values:
        raise ValidationFailed(f"type must be one of {', '.join(PropertyType.values)}.",
                               field="type")
    key = (key or "").strip()
    if not key or not key.replace("_", "").isalnum() or not key[0].isalpha() or len(key) > 64:
        raise ValidationFailed("key must start with a letter and hold only letters, digits and _.",
                               field="key")
    choices = [str(c).strip() for c in (choices or []) if str(c).strip()]
    if type == PropertyType.CHOICE and not choices:
        raise ValidationFailed("A choice property needs at least one choice.", field="choices")
    if PropertyDefinition.objects.filter(object_type=object_type, key=key).exists():
        raise Conflict(f"A {object_type} property '{key}' exists already.", field="key",
                       code="duplicate")
    return PropertyDefinition.objects.create(
        object_type=object_type, key=key, label=(label or key).strip()[:100], type=type,
        choices=choices, required=required, help_text=(help_text or "")[:200])


@transaction.atomic
def property_definition_update(*, definition: PropertyDefinition, label: str | None = None,
                               choices: list[str] | None = None, required: bool | None = None,
                               help_text: str | None = None) -> PropertyDefinition:
    """Change a definition's label, choices, required flag or help (not its key or type)."""
    if label is not None:
        definition.label = label.strip()[:100] or definition.key
    if choices is not None:
        cleaned = [str(c).strip() for c in choices if str(c).strip()]
        if definition.type == PropertyType.CHOICE and not cleaned:
            raise ValidationFailed("A choice property needs at least one choice.",
                                   field="choices")
        definition.choices = cleaned
    if required is not None:
        definition.required = required
    if help_text is not None:
        definition.help_text = help_text[:200]
    definition.save()
    return definition


@transaction.atomic
def property_definition_delete(*, definition: PropertyDefinition) -> None:
    """Delete a definition; values already stored on records stay in their properties."""
    definition.delete()


class UpsertOutcome:
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def contact_find(*, email: str | None = None, external_id: str | None = None) -> Contact | None:
    """The contact with this external id, else with this (normalised) email, else None."""
    from clm.core.normalize import normalize_email

    if external_id:
        found = Contact.objects.filter(external_id=str(external_id).strip()).first()
        if found is not None:
            return found
    if email:
        normalized = normalize_email(email)
        if normalized:
            return Contact.objects.filter(email=normalized).first()
    return None


@transaction.atomic
def contact_upsert(*, data: dict[str, Any], properties: dict[str, Any] | None = None,
                   tags: list[str] | None = None, actor=None, via: str = "api",
                   created_at: datetime | None = None) -> tuple[Contact, str]:
    """Create or update the contact identified by `external_id` or `email` in `data`.

    Returns (contact, outcome) with outcome one of UpsertOutcome; running the same upsert
    twice gives UNCHANGED the second time and writes nothing.
    """
    email, external_id = data.get("email"), data.get("external_id")
    if not email and not external_id:
        raise ValidationFailed("A contact needs an email or an external_id to be matched.",
                               field="email", code="required")
    existing = contact_find(email=email, external_id=external_id)
    if existing is None:
        try:
            with transaction.atomic():
                contact = contact_create(data=data, properties=properties, tags=tags,
                                         actor=actor, via=via, created_at=created_at)
            return contact, UpsertOutcome.CREATED
        except Conflict:
            # Another request created it between our lookup and insert: update that one.
            existing = contact_find(email=email, external_id=external_id)
            if existing is None:
                raise
    # Tags in an upsert add to what the contact has; they never remove.
    merged_tags = None
    if tags:
        current = list(existing.tags.values_list("name", flat=True))
        merged_tags = current + [t for t in _normalize_tags(tags) if t not in current]
    contact, changes = contact_update(contact=existing, data=data, properties=properties,
                                      tags=merged_tags, actor=actor, via=via)
    return contact, UpsertOutcome.UPDATED if changes else UpsertOutcome.UNCHANGED


def company_find(*, domain: str | None = None, external_id: str | None = None,
                 name: str | None = None) -> Company | None:
    from clm.core.normalize import normalize_domain

    if external_id:
        found = Company.objects.filter(external_id=str(external_id).strip()).first()
        if found is not None:
            return found
    if domain:
        found = Company.objects.filter(domain=normalize_domain(domain)).first()
        if found is not None:
            return found
    if name:
        return Company.objects.filter(name__iexact=str(name).strip()).order_by("pk").first()
    return None


@transaction.atomic
def company_upsert(*, data: dict[str, Any], properties: dict[str, Any] | None = None,
                   actor=None, via: str = "api") -> tuple[Company, str]:
    """Create or update the company identified by external_id, else domain, else exact name."""
    existing = company_find(domain=data.get("domain"), external_id=data.get("external_id"),
                            name=data.get("name"))
    if existing is None:
        return company_create(data=data, properties=properties, actor=actor, via=via), \
            UpsertOutcome.CREATED
    company, changes = company_update(company=existing, data=data, properties=properties,
                                      actor=actor, via=via)
    return company, UpsertOutcome.UPDATED if changes else UpsertOutcome.UNCHANGED
