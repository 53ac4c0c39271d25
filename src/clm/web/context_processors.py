from __future__ import annotations

from functools import cache

from django.urls import NoReverseMatch, get_script_prefix, reverse

from clm.web.navigation import nav_entries


@cache
def _entries(script_prefix: str) -> tuple[tuple[str, str, str, str | None], ...]:
    """(section, label, url, permission) of every entry whose URL exists; reversed once per
    process (and script prefix), not twenty times per page."""
    entries = []
    for section, label, url_name, perm in nav_entries():
        try:
            entries.append((section, label, reverse(url_name), perm))
        except NoReverseMatch:
            continue
    return tuple(entries)


def navigation(request) -> dict:
    """Navigation sections for the signed-in user: entries they may open, grouped.

    The entry whose URL is the longest prefix of the current path is marked active (so
    /contacts/companies/ lights up Companies, not Contacts as well).
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_sections": []}
    sections: dict[str, list[dict]] = {}
    best: dict | None = None
    for section, label, url, perm in _entries(get_script_prefix()):
        if perm and not user.has_perm(perm):
            continue
        entry = {"label": label, "url": url, "active": False}
        sections.setdefault(section, []).append(entry)
        if url != "/" and request.path.startswith(url) and (
                best is None or len(url) > len(best["url"])):
            best = entry
    if best is not None:
        best["active"] = True
    return {"nav_sections": list(sections.items())}
