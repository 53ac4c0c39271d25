"""Finding duplicate contacts and merging them into one.

Candidates are found with SQL GROUP BY on normalised keys (never a Python loop over the
table). Same normalised email cannot occur: emails are normalised and unique.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import CharField, Count, F, Func, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat, Left, Lower, StrIndex, Trim
from django.utils import timezone

from clm.core.errors import NotFound, PermissionDenied, ValidationFailed
from clm.customers.models import Contact, FieldChange, MergeRecord, ObjectType
from clm.customers.queries import DuplicateGroup, contacts_visible
from clm.customers.services import search_text_for
from clm.timeline.services import event_record

MAX_MERGE = 10
REASONS = {
    "phone": "Same phone number",
    "email_name": "Same email name and last name",
    "company_name": "Same name at the same company",
}
# Fields a survivor takes from a loser when its own is empty.
FILL_FIELDS = [
    "first_name", "last_name", "email", "external_id", "phone", "job_title", "company",
    "owner", "country", "region", "city", "timezone", "date_of_birth", "age_band",
    "income_band", "source", "stage",
]


def _norm(field: str) -> Func:
    return Lower(Trim(F(field)))


def _key_expressions() -> dict[str, tuple[Any, Q]]:
    """Per reason: the SQL key expression and the filter for contacts that can have one."""
    email_local = Left("email", StrIndex("email", Value("@")) - 1)
    return {
        "phone": (F("phone"), ~Q(phone="")),
        "email_name": (
            Concat(email_local, Value("|"), _norm("last_name"), output_field=CharField()),
            Q(email__isnull=False) & ~Q(last_name=""),
        ),
        "company_name": (
            Concat(Cast("company_id", CharField()), Value("|"), _norm("first_name"), Value("|"),
                   _norm("last_name"), output_field=CharField()),
            Q(company__isnull=False) & ~Q(last_name=""),
        ),
    }


def duplicate_groups(qs: QuerySet[Contact], *, limit: int = 50,
                     reasons: list[str] | None = None) -> list[DuplicateGroup]:
    """Groups of two or more contacts of `qs` that may be the same person, largest first.

    Reasons: same phone; same email local part and last name; same first and last name at the
    same company (names compared trimmed and lower-cased). Two queries per reason.
    """
    groups: list[DuplicateGroup] = []
    for reason, (expression, usable) in _key_expressions().items():
        if reasons and reason not in reasons:
            continue
        remaining = limit - len(groups)
        if remaining <= 0:
            break
        keyed = qs.filter(usable).annotate(dup_key=expression)
        keys = list(keyed.values("dup_key").annotate(n=Count("id")).filter(n__gt=1)
                    .order_by("-n", "dup_key").values_list("dup_key", flat=True)[:remaining])
        if not keys:
            continue
        members: dict[str, list[Contact]] = defaultdict(list)
        for contact in (keyed.filter(dup_key__in=keys).select_related("company", "owner")
                        .order_by("created_at", "pk")):
            members[contact.dup_key].append(contact)
        groups += [DuplicateGroup(reason=reason, contacts=members[k]) for k in keys
                   if len(members[k]) > 1]
    return groups


def merge_contacts_for(user, ids: list[int]) -> list[Contact]:
    """The contacts `user` may merge, in the order of `ids`.

    Raises PermissionDenied without the change permission, NotFound when any of them is not
    visible to the user (the same answer as for a contact that does not exist).
    """
    # The losers are deleted, so merging needs the delete permission too.
    if not (user.has_perm("customers.change_contact") and
            user.has_perm("customers.delete_contact") and
            user.has_perm("customers.add_mergerecord")):
        raise PermissionDenied("You may not merge contacts.")
    ids = list(dict.fromkeys(int(i) for i in ids))
    if len(ids) < 2:
        raise ValidationFailed("Choose at least two contacts to merge.", field="contacts")
    if len(ids) > MAX_MERGE:
        raise ValidationFailed(f"Merge at most {MAX_MERGE} contacts at once.", field="contacts")
    found = {c.pk: c for c in contacts_visible(user).filter(pk__in=ids)}
    if len(found) != len(ids):
        raise NotFound("There is no such contact.")
    return [found[i] for i in ids]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _snapshot(contact: Contact) -> dict[str, Any]:
    """The loser's own values, JSON-safe, as kept in its MergeRecord."""
    data: dict[str, Any] = {}
    for f in contact._meta.concrete_fields:
        data[f.attname] = _json_value(getattr(contact, f.attname))
    data["tags"] = sorted(contact.tags.values_list("name", flat=True))
    data["display_name"] = contact.display_name
    return data


def _move_links(survivor: Contact, losers: list[Contact]) -> dict[str, int]:
    """Point every row of any app that refers to a loser at the survivor.

    Found through Contact's reverse relations, so links added by later apps move too. A row
    that cannot move because the survivor already has its twin (a unique constraint) stays
    with the loser and is deleted with it.
    """
    moved: dict[str, int] = {}
    loser_ids = [c.pk for c in losers]
    for rel in Contact._meta.related_objects:
        label = rel.related_model._meta.label_lower
        if rel.many_to_many:
            through = rel.through
            contact_fk = rel.field.m2m_reverse_field_name()
            other_fk = rel.field.m2m_field_name()
            already = through._default_manager.filter(**{contact_fk: survivor}).values(other_fk)
            rows = through._default_manager.filter(**{f"{contact_fk}__in": loser_ids})
            rows.filter(**{f"{other_fk}__in": already}).delete()
            count = rows.update(**{contact_fk: survivor})
        else:
            if not rel.field.concrete:
                continue
            name = rel.field.name
            rows = rel.related_model._default_manager.filter(**{f"{name}__in": loser_ids})
            try:
                with transaction.atomic():
                    count = rows.update(**{name: survivor})
            except IntegrityError:
                count = 0
                for pk in rows.values_list("pk", flat=True):
                    try:
                        with transaction.atomic():
                            count += rel.related_model._default_manager.filter(pk=pk).update(
                                **{name: survivor})
                    except IntegrityError:
                        continue
        if count:
            moved[label] = moved.get(label, 0) + count
    # Contact's own many-to-many fields (tags): the survivor gets the union.
    for m2m in Contact._meta.many_to_many:
        manager = getattr(survivor, m2m.name)
        related = m2m.related_model._default_manager.filter(
            **{f"{m2m.related_query_name()}__in": loser_ids}).distinct()
        manager.add(*related)
    return moved


@transaction.atomic
def contact_merge(*, survivor: Contact, losers: list[Contact], actor=None,
                  via: str = "ui") -> Contact:
    """Merge `losers` into `survivor`: their events, consent rows, tags and every link move to
    the survivor, empty survivor fields are filled from the losers (first loser first), each
    loser's values are kept in a MergeRecord, the merge is audited and recorded on the
    survivor's timeline as `contact.merged`, and the losers are deleted.

    The caller checks permission and visibility (see `merge_contacts_for`).
    """
    loser_ids = [c.pk for c in losers]
    if not loser_ids:
        raise ValidationFailed("Choose at least one contact to merge into this one.",
                               field="losers")
    if survivor.pk in loser_ids or len(set(loser_ids)) != len(loser_ids):
        raise ValidationFailed("A contact cannot be merged into itself.", field="losers")
    locked = {c.pk: c for c in Contact.objects.select_for_update()
              .filter(pk__in=[survivor.pk, *loser_ids])}
    if len(locked) != len(loser_ids) + 1:
        raise NotFound("One of these contacts no longer exists.")
    survivor = locked[survivor.pk]
    losers = [locked[pk] for pk in loser_ids]
    now = timezone.now()
    snapshots = {c.pk: _snapshot(c) for c in losers}

    changes: dict[str, tuple[Any, Any]] = {}
    for name in FILL_FIELDS:
        attname = Contact._meta.get_field(name).attname
        if getattr(survivor, attname) not in (None, ""):
            continue
        for loser in losers:
            value = getattr(loser, attname)
            if value not in (None, ""):
                changes[name] = (getattr(survivor, name), getattr(loser, name))
                break
    props = dict(survivor.properties)
    for loser in losers:
        for key, value in loser.properties.items():
            if props.get(key) in (None, "") and value not in (None, ""):
                changes[f"properties.{key}"] = (props.get(key), value)
                props[key] = value
    earliest = min([survivor.created_at, *(c.created_at for c in losers)])
    activities = [t for t in [survivor.last_activity_at, *(c.last_activity_at for c in losers)]
                  if t is not None]

    moved = _move_links(survivor, losers)
    # Unique email / external id move with the data: free them before the survivor takes them.
    Contact.objects.filter(pk__in=loser_ids).delete()

    for name, (_, new) in changes.items():
        if not name.startswith("properties."):
            setattr(survivor, name, new)
    survivor.properties = props
    survivor.created_at = earliest
    survivor.last_activity_at = max(activities) if activities else None
    survivor.updated_at = now
    survivor.search_text = search_text_for(survivor)
    survivor.save()

    actor_user = actor if actor is not None and actor.is_authenticated else None
    MergeRecord.objects.bulk_create([
        MergeRecord(survivor=survivor, loser_id=pk, loser_data=snapshots[pk],
                    merged_by=actor_user, merged_at=now) for pk in loser_ids])
    audit = [FieldChange(object_type=ObjectType.CONTACT, object_id=survivor.pk, field=name,
                         old_value=_audit(old), new_value=_audit(new), actor=actor_user,
                         via="merge", changed_at=now) for name, (old, new) in changes.items()]
    audit.append(FieldChange(
        object_type=ObjectType.CONTACT, object_id=survivor.pk, field="merged",
        old_value=", ".join(f"{snapshots[pk]['display_name']} (#{pk})" for pk in loser_ids),
        new_value=str(survivor.pk), actor=actor_user, via="merge", changed_at=now))
    FieldChange.objects.bulk_create(audit)
    event_record(contact=survivor, kind="contact.merged", source=via, actor=actor,
                 properties={"loser_ids": loser_ids, "filled": sorted(changes),
                             "moved": moved,
                             "losers": [snapshots[pk]["display_name"] for pk in loser_ids]})
    return survivor


def _audit(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, models.Model):
        return str(value.pk)
    return str(_json_value(value))
