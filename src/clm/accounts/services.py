"""Writes for users, roles and API tokens."""

from __future__ import annotations

import secrets

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from clm.accounts.models import ApiToken, Profile, RoleVisibility, Team, TokenScope, hash_token
from clm.accounts.roles import ROLE_DEFAULTS, role_permission_codenames
from clm.core.errors import ValidationFailed

TOKEN_PREFIX = "clm_"  # noqa: S105 - a public prefix, not a secret


@transaction.atomic
def roles_sync() -> None:
    """Create the built-in roles and grant each default permission once.

    A default already granted before is not granted again, so removals by an admin stick,
    while the permissions of apps added since the last sync are granted.
    """
    perms = list(Permission.objects.select_related("content_type"))
    for role, spec in ROLE_DEFAULTS.items():
        group, _ = Group.objects.get_or_create(name=role)
        visibility, _ = RoleVisibility.objects.get_or_create(
            group=group, defaults={"scope": spec["scope"]})
        if "*" in spec["extra"]:
            wanted = {(p.content_type.app_label, p.codename) for p in perms}
        else:
            wanted = set(role_permission_codenames(role))
        done = set(visibility.granted_defaults)
        new = [p for p in perms if (p.content_type.app_label, p.codename) in wanted
               and f"{p.content_type.app_label}.{p.codename}" not in done]
        if new:
            group.permissions.add(*new)
            visibility.granted_defaults = sorted(
                done | {f"{p.content_type.app_label}.{p.codename}" for p in new})
            visibility.save(update_fields=["granted_defaults"])


@transaction.atomic
def user_set_role(*, user, role: str, team: str | None = None):
    """Put `user` in exactly the named role (and team, when given)."""
    group = Group.objects.filter(name=role).first()
    if group is None:
        raise ValidationFailed(f"Unknown role '{role}'.", field="role")
    user.groups.set([group])
    profile, _ = Profile.objects.get_or_create(user=user)
    if team is not None:
        profile.team, _ = Team.objects.get_or_create(name=team)
        profile.save(update_fields=["team"])
    return user


@transaction.atomic
def api_token_create(*, user, name: str, scope: str = TokenScope.READ) -> tuple[ApiToken, str]:
    """Create a token; return it and the raw secret, which is shown once and never stored."""
    if scope not in TokenScope.values:
        raise ValidationFailed(f"Scope must be one of {', '.join(TokenScope.values)}.", field="scope")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100] or "token", prefix=raw[:12],
                                    token_hash=hash_token(raw), scope=scope)
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(raw: str) -> ApiToken | None:
    """The active token matching `raw`, or None. Updates last_used_at at most once a minute."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = (ApiToken.objects.select_related("user")
             .filter(token_hash=hash_token(raw), revoked_at__isnull=True).first())
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
