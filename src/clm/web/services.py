"""Writes of per-user UI state (saved views). Not customer data: no timeline events."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from django.db import transaction

from clm.core.errors import NotFound, ValidationFailed
from clm.web.models import SavedView

NAME_MAX = 100
QUERY_MAX = 1000
# Parameters that describe a position or a one-off action, not the view itself.
_DROP_PARAMS = {"page", "csrfmiddlewaretoken", "cursor"}


def clean_query(query: str, allowed: set[str] | None = None) -> str:
    """The query string without paging parameters (and, given `allowed`, only those keys)."""
    pairs = [(k, v) for k, v in parse_qsl(query or "", keep_blank_values=False)
             if k not in _DROP_PARAMS and (allowed is None or k in allowed)]
    return urlencode(pairs)


@transaction.atomic
def saved_view_save(*, user, page: str, name: str, query: str,
                    allowed: set[str] | None = None) -> SavedView:
    """Save `query` under `name` for `user` on list `page`; the same name replaces the old one."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the view a name.", field="name", code="required")
    if len(name) > NAME_MAX:
        raise ValidationFailed(f"A name is at most {NAME_MAX} characters.", field="name",
                               code="too_long")
    query = clean_query(query, allowed)
    if len(query) > QUERY_MAX:
        raise ValidationFailed("These filters are too long to save.", field="query",
                               code="too_long")
    view, _ = SavedView.objects.update_or_create(user=user, page=page, name=name,
                                                 defaults={"query": query})
    return view


@transaction.atomic
def saved_view_delete(*, user, page: str, view_id: int) -> None:
    """Delete one of the user's own saved views; another user's view is NotFound."""
    deleted, _ = SavedView.objects.filter(pk=view_id, user=user, page=page).delete()
    if not deleted:
        raise NotFound("There is no such saved view.")
