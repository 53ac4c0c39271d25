"""Forms of the staff UI for contacts and companies.

The forms only collect and shape input; the services validate it. A DomainError raised by a
service is put back on the form field it names (`add_domain_error`).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils import timezone

from clm.core.errors import DomainError
from clm.core.pagination import parse_sort
from clm.core.types import parse_id
from clm.customers.models import Company, Contact, ObjectType, PropertyDefinition, PropertyType
from clm.customers.queries import (
    CONTACT_SORTS,
    companies_visible,
    contacts_filter,
    contacts_search_counted,
)
from clm.customers.validation import AGE_BANDS, EMPLOYEE_BANDS, INCOME_BANDS

# The default stage keys of the lifecycle engine; stages are data, so the filter also takes
# any other key typed in.
DEFAULT_STAGES = ["subscriber", "lead", "mql", "sql", "opportunity", "customer", "promoter",
                  "churned", "disqualified"]
CONTACT_DEFAULT_SORT = "-created_at"
# Query parameters of the contacts list that a saved view keeps.
CONTACT_LIST_PARAMS = {"q", "owner", "company", "company_name", "country", "stage", "source",
                       "tag", "created_from", "created_to", "sort", "segment"}
BULK_MAX = 500
CONSENT_SOURCES = [("ui", "Entered by staff"), ("phone", "By phone"), ("email", "By email"),
                   ("in_person", "In person"), ("paper", "Paper form"), ("web", "Web form")]


def owner_choices(blank_label: str) -> list[tuple[str, str]]:
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    return [("", blank_label), *(
        (str(u.pk), u.get_full_name() or u.get_username())
        for u in users.only("pk", "username", "first_name", "last_name"))]


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class DomainErrorFormMixin:
    """Put a service's DomainError on the form field it names (else on the form)."""

    field_aliases: dict[str, str] = {}

    def add_domain_error(self, exc: DomainError) -> None:
        field = exc.field or None
        if field and field.startswith("properties."):
            field = "prop_" + field.removeprefix("properties.")
        field = self.field_aliases.get(field, field)
        if field not in self.fields:  # type: ignore[attr-defined]
            field = None
        self.add_error(field, exc.message)  # type: ignore[attr-defined]


def property_fields(object_type: str) -> dict[str, forms.Field]:
    """Form fields for the admin-defined custom properties of contacts or companies."""
    fields: dict[str, forms.Field] = {}
    for definition in PropertyDefinition.objects.filter(object_type=object_type):
        common = {"label": definition.label, "required": False,
                  "help_text": definition.help_text}
        if definition.type == PropertyType.CHOICE:
            field: forms.Field = forms.ChoiceField(
                choices=[("", "—")] + [(c, c) for c in definition.choices], **common)
        elif definition.type == PropertyType.BOOLEAN:
            field = forms.ChoiceField(choices=[("", "—"), ("yes", "Yes"), ("no", "No")],
                                      **common)
        elif definition.type == PropertyType.DATE:
            field = forms.CharField(widget=forms.DateInput(attrs={"type": "date"}), **common)
        elif definition.type == PropertyType.NUMBER:
            field = forms.CharField(widget=forms.TextInput(attrs={"inputmode": "decimal"}),
                                    **common)
        else:
            field = forms.CharField(max_length=2000, **common)
        field.property_required = definition.required  # shown with a marker in the template
        fields[f"prop_{definition.key}"] = field
    return fields


def property_initial(values: dict[str, Any]) -> dict[str, Any]:
    initial = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        initial[f"prop_{key}"] = value
    return initial


class ContactFilterForm(forms.Form):
    """Search, filters and sort of the contacts list (all optional; bad values are reported)."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    owner = forms.ChoiceField(required=False)
    company = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    company_name = forms.CharField(required=False, max_length=200, label="Company")
    country = forms.CharField(required=False, max_length=2)
    stage = forms.CharField(required=False, max_length=32)
    source = forms.CharField(required=False, max_length=50)
    tag = forms.CharField(required=False, max_length=64)
    created_from = forms.DateField(required=False, widget=_date_input(), label="Created from")
    created_to = forms.DateField(required=False, widget=_date_input(), label="Created to")
    sort = forms.CharField(required=False, max_length=40)

    def __init__(self, data, *, user, owners: list[tuple[str, str]] | None = None,
                 **kwargs) -> None:
        super().__init__(data, **kwargs)
        self.user = user
        owners = owner_choices("") if owners is None else owners
        self.fields["owner"].choices = [("", "Anyone"), ("none", "Nobody"), *owners[1:]]
        self.company_obj: Company | None = None
        # How many contacts apply() matched, when its search knew without counting.
        self.match_count: int | None = None
        self.sort_field, self.sort_desc = "created_at", True

    def clean_country(self) -> str:
        value = self.cleaned_data["country"].strip().upper()
        if value and (len(value) != 2 or not value.isalpha()):
            raise forms.ValidationError("Use a two-letter country code, e.g. DE.")
        return value

    def clean_sort(self) -> str:
        value = self.cleaned_data["sort"] or CONTACT_DEFAULT_SORT
        try:
            self.sort_field, self.sort_desc = parse_sort(value, CONTACT_SORTS, CONTACT_DEFAULT_SORT)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return value

    @property
    def active_filters(self) -> int:
        """How many filters (not search or sort) are in use; opens the filter panel."""
        keys = CONTACT_LIST_PARAMS - {"q", "sort", "company"}
        return sum(1 for k in keys if self.data.get(k))

    def apply(self, qs: QuerySet[Contact]) -> QuerySet[Contact]:
        """Filter, search and sort `qs` (the contacts the user may see) by the valid fields."""
        self.is_valid()
        data = self.cleaned_data
        filters: dict[str, Any] = {k: data.get(k) for k in ("owner", "country", "stage",
                                                            "source", "tag")}
        if data.get("created_from"):
            filters["created_after"] = timezone.make_aware(
                datetime.combine(data["created_from"], time.min))
        if data.get("created_to"):
            filters["created_before"] = timezone.make_aware(
                datetime.combine(data["created_to"] + timedelta(days=1), time.min))
        empty = False
        visible_companies = companies_visible(self.user)
        if data.get("company_name"):
            name = data["company_name"].strip()
            self.company_obj = visible_companies.filter(name__iexact=name).order_by("pk").first()
            if self.company_obj is None:
                self.add_error("company_name", f"There is no company named “{name}”.")
                empty = True
        elif data.get("company"):
            self.company_obj = visible_companies.filter(pk=data["company"]).first()
            if self.company_obj is None:
                empty = True
        if self.company_obj is not None:
            filters["company"] = self.company_obj.pk
        qs, self.match_count = contacts_search_counted(contacts_filter(qs, filters), data.get("q"))
        if empty:
            qs, self.match_count = qs.none(), 0
        direction = "-" if self.sort_desc else ""
        return qs.order_by(f"{direction}{self.sort_field}", f"{direction}pk")


class ContactForm(DomainErrorFormMixin, forms.Form):
    """Create or edit a contact; `service_kwargs()` gives what contact_create/update take."""

    first_name = forms.CharField(required=False, max_length=100)
    last_name = forms.CharField(required=False, max_length=100)
    email = forms.CharField(required=False, max_length=254,
                            widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    phone = forms.CharField(required=False, max_length=40,
                            widget=forms.TextInput(attrs={"type": "tel"}))
    job_title = forms.CharField(required=False, max_length=150)
    company_name = forms.CharField(required=False, max_length=200, label="Company",
                                   widget=forms.TextInput(attrs={"list": "company-options",
                                                                 "autocomplete": "off"}))
    owner = forms.ChoiceField(required=False)
    country = forms.CharField(required=False, max_length=2,
                              widget=forms.TextInput(attrs={"placeholder": "DE"}))
    region = forms.CharField(required=False, max_length=100)
    city = forms.CharField(required=False, max_length=100)
    timezone = forms.CharField(required=False, max_length=64, label="Time zone",
                               widget=forms.TextInput(attrs={"placeholder": "Europe/Berlin"}))
    date_of_birth = forms.CharField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    age_band = forms.ChoiceField(required=False, choices=[("", "—")] + [(b, b) for b in AGE_BANDS])
    income_band = forms.ChoiceField(required=False,
                                    choices=[("", "—")] + [(b, b) for b in INCOME_BANDS])
    source = forms.CharField(required=False, max_length=50)
    external_id = forms.CharField(required=False, max_length=100, label="External ID")
    tags = forms.CharField(required=False, max_length=1000,
                           help_text="Separate tags with commas.")

    field_aliases = {"company": "company_name"}
    DATA_FIELDS = ["first_name", "last_name", "email", "phone", "job_title", "owner", "country",
                   "region", "city", "timezone", "date_of_birth", "age_band", "income_band",
                   "source", "external_id"]

    def __init__(self, data=None, *, user, contact: Contact | None = None, **kwargs) -> None:
        self.user = user
        self.contact = contact
        initial = kwargs.pop("initial", {})
        if contact is not None:
            initial = {f: getattr(contact, f) or "" for f in self.DATA_FIELDS if f != "owner"}
            initial["owner"] = str(contact.owner_id or "")
            initial["company_name"] = contact.company.name if contact.company_id else ""
            initial["date_of_birth"] = (contact.date_of_birth.isoformat()
                                        if contact.date_of_birth else "")
            initial["tags"] = ", ".join(sorted(t.name for t in contact.tags.all()))
            initial.update(property_initial(contact.properties))
        super().__init__(data, initial=initial, **kwargs)
        self.fields["owner"].choices = owner_choices("— nobody —")
        self.fields.update(property_fields(ObjectType.CONTACT))
        self.company: Company | None = None

    @property
    def property_field_names(self) -> list[str]:
        return [name for name in self.fields if name.startswith("prop_")]

    def clean_company_name(self) -> str:
        name = self.cleaned_data["company_name"].strip()
        if name:
            self.company = (companies_visible(self.user).filter(name__iexact=name)
                            .order_by("pk").first())
            if self.company is None:
                raise forms.ValidationError(
                    f"There is no company named “{name}”. Create it first, or leave this empty.")
        return name

    def service_kwargs(self) -> dict[str, Any]:
        """data, properties and tags for contact_create / contact_update."""
        cd = self.cleaned_data
        data = {f: cd.get(f, "") for f in self.DATA_FIELDS}
        data["company"] = self.company
        data["owner"] = cd.get("owner") or None
        properties = {name.removeprefix("prop_"): cd.get(name) or None
                      for name in self.property_field_names}
        if self.contact is None:
            properties = {k: v for k, v in properties.items() if v is not None}
        tags = [t for t in (cd.get("tags") or "").split(",") if t.strip()]
        return {"data": data, "properties": properties, "tags": tags}


class CompanyForm(DomainErrorFormMixin, forms.Form):
    name = forms.CharField(max_length=200)
    domain = forms.CharField(required=False, max_length=200,
                             widget=forms.TextInput(attrs={"placeholder": "example.com"}))
    industry = forms.CharField(required=False, max_length=100)
    employee_band = forms.ChoiceField(required=False, label="Employees",
                                      choices=[("", "—")] + [(b, b) for b in EMPLOYEE_BANDS])
    revenue_band = forms.CharField(required=False, max_length=20, label="Revenue band")
    country = forms.CharField(required=False, max_length=2,
                              widget=forms.TextInput(attrs={"placeholder": "DE"}))
    region = forms.CharField(required=False, max_length=100)
    city = forms.CharField(required=False, max_length=100)
    phone = forms.CharField(required=False, max_length=40,
                            widget=forms.TextInput(attrs={"type": "tel"}))
    owner = forms.ChoiceField(required=False)
    external_id = forms.CharField(required=False, max_length=100, label="External ID")

    DATA_FIELDS = ["name", "domain", "industry", "employee_band", "revenue_band", "country",
                   "region", "city", "phone", "owner", "external_id"]

    def __init__(self, data=None, *, company: Company | None = None, **kwargs) -> None:
        self.company = company
        initial = kwargs.pop("initial", {})
        if company is not None:
            initial = {f: getattr(company, f) or "" for f in self.DATA_FIELDS if f != "owner"}
            initial["owner"] = str(company.owner_id or "")
            initial.update(property_initial(company.properties))
        super().__init__(data, initial=initial, **kwargs)
        self.fields["owner"].choices = owner_choices("— nobody —")
        self.fields.update(property_fields(ObjectType.COMPANY))

    @property
    def property_field_names(self) -> list[str]:
        return [name for name in self.fields if name.startswith("prop_")]

    def service_kwargs(self) -> dict[str, Any]:
        cd = self.cleaned_data
        data = {f: cd.get(f, "") for f in self.DATA_FIELDS}
        data["owner"] = cd.get("owner") or None
        data["domain"] = data["domain"] or None
        properties = {name.removeprefix("prop_"): cd.get(name) or None
                      for name in self.property_field_names}
        if self.company is None:
            properties = {k: v for k, v in properties.items() if v is not None}
        return {"data": data, "properties": properties}


class NoteForm(DomainErrorFormMixin, forms.Form):
    body = forms.CharField(label="Note", max_length=10000, widget=forms.Textarea(
        attrs={"rows": 3, "placeholder": "Write a note…"}))


class ConsentForm(DomainErrorFormMixin, forms.Form):
    purpose = forms.CharField(max_length=50, widget=forms.TextInput(
        attrs={"list": "consent-purposes", "placeholder": "email_marketing"}))
    granted = forms.TypedChoiceField(choices=[("yes", "Opt in"), ("no", "Opt out")],
                                     coerce=lambda v: v == "yes", widget=forms.RadioSelect,
                                     label="Decision")
    source = forms.ChoiceField(choices=CONSENT_SOURCES, initial="ui")
    policy_version = forms.CharField(required=False, max_length=30, label="Policy version")


class BulkForm(forms.Form):
    """A bulk action on selected contacts: assign an owner, add a tag, or export."""

    ACTIONS = [("assign_owner", "Assign owner"), ("add_tag", "Add tag"),
               ("export", "Export to CSV")]
    action = forms.ChoiceField(choices=ACTIONS)
    ids = forms.TypedMultipleChoiceField(coerce=int, required=True,
                                         error_messages={"required": "Select some contacts first."})
    owner = forms.ChoiceField(required=False)
    tag = forms.CharField(required=False, max_length=64)
    back = forms.CharField(required=False, max_length=1000)

    def __init__(self, data=None, *, owners: list[tuple[str, str]] | None = None,
                 **kwargs) -> None:
        super().__init__(data, **kwargs)
        owners = owner_choices("") if owners is None else owners
        self.fields["owner"].choices = [("", "— nobody —"), *owners[1:]]
        # Any integers are accepted here; the view checks that the user may see each one.
        raw = data.getlist("ids") if data is not None and hasattr(data, "getlist") else []
        self.fields["ids"].choices = [(v, v) for v in raw if parse_id(v) is not None]

    def clean_ids(self) -> list[int]:
        ids = sorted(set(self.cleaned_data["ids"]))
        if len(ids) > BULK_MAX:
            raise forms.ValidationError(f"Select at most {BULK_MAX} contacts at a time.")
        return ids

    def clean(self) -> dict:
        cd = super().clean()
        action = cd.get("action")
        if action == "add_tag" and not (cd.get("tag") or "").strip():
            self.add_error("tag", "Name the tag to add.")
        return cd
