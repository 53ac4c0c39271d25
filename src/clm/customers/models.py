"""Contacts, companies, custom properties, consent, field audit and merges."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class ObjectType(models.TextChoices):
    CONTACT = "contact", "Contact"
    COMPANY = "company", "Company"


class Tag(models.Model):
    """A tag or interest on a contact (one vocabulary, so segments can filter on both)."""

    name = models.CharField(max_length=64, unique=True)

    def __str__(self) -> str:
        return self.name


class Company(models.Model):
    name = models.CharField(max_length=200, db_index=True)
    domain = models.CharField(max_length=200, null=True, blank=True, unique=True)
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    industry = models.CharField(max_length=100, blank=True)
    employee_band = models.CharField(max_length=20, blank=True)
    revenue_band = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    region = models.CharField(max_length=100, blank=True)
    city = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=20, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="owned_companies")
    stage = models.CharField(max_length=32, blank=True, db_index=True,
                             help_text="Follows the most advanced contact (lifecycle engine).")
    properties = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "companies"
        indexes = [models.Index(fields=["owner", "name"])]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    # NULL, not '', when absent: unique constraints then admit many contacts without email.
    email = models.CharField(max_length=254, null=True, blank=True, unique=True)
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    phone = models.CharField(max_length=20, blank=True, db_index=True, help_text="E.164")
    job_title = models.CharField(max_length=150, blank=True)
    company = models.ForeignKey(Company, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="contacts")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="owned_contacts")
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    region = models.CharField(max_length=100, blank=True)
    city = models.CharField(max_length=100, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    date_of_birth = models.DateField(null=True, blank=True)
    age_band = models.CharField(max_length=10, blank=True)
    income_band = models.CharField(max_length=20, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="contacts")
    source = models.CharField(max_length=50, blank=True, db_index=True,
                              help_text="How the contact came: web, import, api, referral, …")
    source_detail = models.JSONField(default=dict, blank=True,
                                     help_text="UTM parameters, referrer, referral code.")
    stage = models.CharField(max_length=32, blank=True, db_index=True,
                             help_text="Current lifecycle stage key (lifecycle engine).")
    properties = models.JSONField(default=dict, blank=True)
    # Lower-cased "first last email" for a portable indexed prefix/contains search.
    search_text = models.CharField(max_length=500, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    last_activity_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "created_at"]),
            models.Index(fields=["last_name", "first_name"]),
            models.Index(fields=["company", "last_name"]),
            models.Index(fields=["owner", "last_name"]),
            # Case-insensitive last-name prefix search as an index range (see contacts_search).
            models.Index(Lower("last_name"), name="contact_last_name_lower"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or f"Contact {self.pk}"


class PropertyType(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"
    CHOICE = "choice", "Choice"
    BOOLEAN = "boolean", "Yes/no"


class PropertyDefinition(models.Model):
    """A custom property an admin defines for contacts or companies."""

    object_type = models.CharField(max_length=10, choices=ObjectType.choices)
    key = models.SlugField(max_length=64)
    label = models.CharField(max_length=100)
    type = models.CharField(max_length=10, choices=PropertyType.choices)
    choices = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=False)
    help_text = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["object_type", "key"],
                                               name="property_definition_unique_key")]
        ordering = ["object_type", "key"]

    def __str__(self) -> str:
        return f"{self.object_type}.{self.key}"


class ConsentRecord(models.Model):
    """One opt-in or opt-out. Never updated: the latest row per purpose is the current state."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    purpose = models.CharField(max_length=50)
    granted = models.BooleanField()
    occurred_at = models.DateTimeField()
    source = models.CharField(max_length=50)
    policy_version = models.CharField(max_length=30, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["contact", "purpose", "-occurred_at"])]

    def __str__(self) -> str:
        return f"{self.purpose}: {'granted' if self.granted else 'withdrawn'}"


class FieldChange(models.Model):
    """Audit log of one field's change on a contact or company."""

    object_type = models.CharField(max_length=10, choices=ObjectType.choices)
    object_id = models.BigIntegerField()
    field = models.CharField(max_length=100)
    old_value = models.TextField(blank=True, null=True)
    new_value = models.TextField(blank=True, null=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    via = models.CharField(max_length=20, blank=True, help_text="ui, api, import, merge, system")
    changed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id", "-changed_at"])]

    def __str__(self) -> str:
        return f"{self.object_type} {self.object_id}.{self.field}"


class MergeRecord(models.Model):
    """A contact merged into a survivor; the loser's values are kept here."""

    survivor = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="merges")
    loser_id = models.BigIntegerField()
    loser_data = models.JSONField()
    merged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="+")
    merged_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"contact {self.loser_id} into {self.survivor_id}"


class ImportJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    object_type = models.CharField(max_length=10, choices=ObjectType.choices)
    file = models.FileField(upload_to="imports/")
    original_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64, db_index=True)
    mapping = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, field, reason}]")
    failure = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"import of {self.original_name}"

    @property
    def progress_percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, round(100 * self.processed_rows / self.total_rows))


class ContactQ:
    """Reusable Q objects (kept here so queries and services agree)."""

    has_email = Q(email__isnull=False)
