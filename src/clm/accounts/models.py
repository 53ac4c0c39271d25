"""Users belong to roles (Django groups) and a team; roles decide how far a user sees."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class Scope(models.TextChoices):
    OWN = "own", "Own records"
    TEAM = "team", "Team's records"
    ALL = "all", "All records"


SCOPE_RANK = {Scope.OWN: 0, Scope.TEAM: 1, Scope.ALL: 2}


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class RoleVisibility(models.Model):
    """How far members of a role (group) see records: their own, their team's, or all."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="visibility")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.OWN)
    # "app.codename" of default permissions granted once; never granted again, so an admin
    # who removes one keeps it removed, while permissions of new apps still arrive.
    granted_defaults = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "role visibility"

    def __str__(self) -> str:
        return f"{self.group.name}: {self.scope}"


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="profile")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="members")

    def __str__(self) -> str:
        return f"profile of {self.user}"


class TokenScope(models.TextChoices):
    READ = "read", "Read only"
    READ_WRITE = "read_write", "Read and write"


def hash_token(raw: str) -> str:
    """Tokens carry 256 random bits, so one SHA-256 is enough (no slow KDF needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True, help_text="Shown to tell tokens apart.")
    token_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=16, choices=TokenScope.choices, default=TokenScope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def can_write(self) -> bool:
        return self.scope == TokenScope.READ_WRITE
