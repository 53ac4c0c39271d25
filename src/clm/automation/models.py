"""Workflows (trigger + steps, as data), enrollments (durable per-contact state) and step runs.

A Workflow's `trigger` and `steps` are JSON validated by clm.automation.steps /
clm.automation.conditions. An Enrollment is one contact's pass through one workflow; its
state (status, step index, wake-up time, what it waits for) lives in the row, so a worker
that dies loses nothing. Every execution of a step is a StepRun, unique on (enrollment,
step index, generation) and inserted before the step's side effects: a resumed step finds
its own row and repeats only what is idempotent.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class EnrollmentRule(models.TextChoices):
    ONCE = "once", "Once per contact"
    EVERY_TIME = "every_time", "Every time the trigger fires"
    AFTER_DAYS = "after_days", "Again after N days"


class Workflow(models.Model):
    name = models.CharField(max_length=150, unique=True)
    description = models.CharField(max_length=500, blank=True)
    active = models.BooleanField(default=False, db_index=True)
    # {"type": "event"|"stage"|"segment"|"date"|"schedule", ...} (see clm.automation.steps).
    trigger = models.JSONField(default=dict)
    # Denormalised from `trigger` for set-based matching: the event kind that fires it
    # ("" for date and schedule triggers).
    trigger_kind = models.CharField(max_length=64, blank=True, db_index=True)
    steps = models.JSONField(default=list)
    enrollment_rule = models.CharField(max_length=12, choices=EnrollmentRule.choices,
                                       default=EnrollmentRule.ONCE)
    reenroll_days = models.PositiveIntegerField(null=True, blank=True)
    # {"kind": "...", "conditions": [...]} or {}: reaching it ends the enrollment early.
    goal = models.JSONField(default=dict, blank=True)
    webhook_secret = models.CharField(max_length=64)
    # Date and schedule triggers: the last local date they ran (claimed by a conditional UPDATE).
    trigger_ran_on = models.DateField(null=True, blank=True)
    playbook = models.SlugField(max_length=50, null=True, blank=True, unique=True,
                                help_text="Key of the shipped playbook this was installed from.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def trigger_type(self) -> str:
        return str((self.trigger or {}).get("type", ""))


class Enrollment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        WAITING = "waiting", "Waiting"
        COMPLETED = "completed", "Completed"
        EXITED = "exited", "Exited (goal or stop)"
        FAILED = "failed", "Failed"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="enrollments")
    contact = models.ForeignKey("customers.Contact", on_delete=models.CASCADE,
                                related_name="workflow_enrollments")
    # What let the contact in: "once", "e<event id>", "d<date>", "s<date>". Unique per
    # (workflow, contact): the same trigger never enrolls twice, "once" enrolls once ever.
    entry_key = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    step_index = models.PositiveIntegerField(default=0)
    # Generation of step runs: bumped by a retry, so a failed step can be run again.
    generation = models.PositiveIntegerField(default=0)
    # Active: when a worker may (re)claim it (now, or the end of the running worker's lease).
    # Waiting: when the wait times out.
    wake_at = models.DateTimeField(null=True, blank=True)
    waiting_for = models.CharField(max_length=64, blank=True,
                                   help_text="Event kind a wait-for step waits for.")
    waiting_since = models.DateTimeField(null=True, blank=True)
    trigger_event_id = models.BigIntegerField(null=True, blank=True)
    enrolled_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-enrolled_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "contact", "entry_key"],
                                               name="enrollment_entry_unique")]
        indexes = [
            models.Index(fields=["status", "wake_at"], name="enrollment_due"),
            models.Index(fields=["contact", "status"], name="enrollment_contact"),
            models.Index(fields=["workflow", "status"], name="enrollment_workflow"),
            models.Index(fields=["workflow", "contact", "-enrolled_at"],
                         name="enrollment_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}/{self.contact_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.ACTIVE, self.Status.WAITING)


class StepRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="runs")
    # Denormalised so per-step counts are one GROUP BY without a join.
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    step_index = models.PositiveIntegerField()
    generation = models.PositiveIntegerField(default=0)
    step_type = models.CharField(max_length=20)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    attempts = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # What happened: {"next": 3}, {"branch": "then"}, {"via": "event", "event_id": 9}, …
    outcome = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["enrollment", "step_index", "generation"]
        constraints = [models.UniqueConstraint(fields=["enrollment", "step_index", "generation"],
                                               name="steprun_unique")]
        indexes = [models.Index(fields=["workflow", "step_index", "status"],
                                name="steprun_stats")]

    def __str__(self) -> str:
        return f"{self.enrollment_id}#{self.step_index}.{self.generation} {self.status}"

    @property
    def key(self) -> str:
        return f"wf{self.workflow_id}:e{self.enrollment_id}:s{self.step_index}"


class Notification(models.Model):
    """An in-app notice to a staff user from a workflow's notify step."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="automation_notifications")
    workflow = models.ForeignKey(Workflow, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    contact = models.ForeignKey("customers.Contact", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    message = models.CharField(max_length=500)
    # The step key: a resumed notify step finds its notification instead of adding another.
    key = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    # Set before the email is sent (at most once, like the outbox).
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_unread")]

    def __str__(self) -> str:
        return self.message[:50]
