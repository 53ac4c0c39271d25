"""Who may see what: the visibility scope of a user and the records it admits."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from clm.accounts.models import SCOPE_RANK, Profile, RoleVisibility, Scope


def user_scope(user) -> str:
    """The widest scope among the user's roles; superusers see all; no role sees only own."""
    if not user.is_authenticated:
        return Scope.OWN
    if user.is_superuser:
        return Scope.ALL
    cached = getattr(user, "_clm_scope", None)
    if cached:
        return cached
    scopes = RoleVisibility.objects.filter(group__user=user).values_list("scope", flat=True)
    scope = max(scopes, key=lambda s: SCOPE_RANK[Scope(s)], default=Scope.OWN)
    user._clm_scope = scope
    return scope


def user_team_id(user) -> int | None:
    cached = getattr(user, "_clm_team_id", "unset")
    if cached != "unset":
        return cached
    team_id = Profile.objects.filter(user=user).values_list("team_id", flat=True).first()
    user._clm_team_id = team_id
    return team_id


def visibility_filter(user, owner_field: str = "owner") -> Q:
    """A Q admitting the records `user` may see, by the record's owner field."""
    scope = user_scope(user)
    if scope == Scope.ALL:
        return Q()
    if scope == Scope.TEAM:
        team_id = user_team_id(user)
        q = Q(**{owner_field: user.pk}) | Q(**{f"{owner_field}__isnull": True})
        if team_id is not None:
            q |= Q(**{f"{owner_field}__profile__team_id": team_id})
        return q
    return Q(**{owner_field: user.pk})


def visible(qs: QuerySet, user, owner_field: str = "owner") -> QuerySet:
    return qs.filter(visibility_filter(user, owner_field))
