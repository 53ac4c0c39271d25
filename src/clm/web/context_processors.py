from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from clm.web.navigation import nav_entries


def navigation(request) -> dict:
    """Navigation sections for the signed-in user: entries they may open, grouped."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_sections": []}
    sections: dict[str, list[dict]] = {}
    for section, label, url_name, perm in nav_entries():
        if perm and not user.has_perm(perm):
            continue
        try:
            url = reverse(url_name)
        except NoReverseMatch:
            continue
        sections.setdefault(section, []).append(
            {"label": label, "url": url, "active": request.path.startswith(url) and url != "/"})
    return {"nav_sections": list(sections.items())}
