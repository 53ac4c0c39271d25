from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from clm.customers.queries import companies_visible, contacts_visible
from clm.web.queries import count_capped, recent_activity

# The home page counts up to this many and then says "100,000+", so it stays fast at scale.
HOME_COUNT_CAP = 100_000


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """A short overview: how many contacts and companies, the newest, the latest activity."""
    user = request.user
    context: dict = {"can_contacts": user.has_perm("customers.view_contact")}
    if context["can_contacts"]:
        contacts = contacts_visible(user)
        since = timezone.now() - timedelta(days=30)
        context.update({
            "contact_count": count_capped(contacts, HOME_COUNT_CAP),
            "new_count": count_capped(contacts.filter(created_at__gte=since), HOME_COUNT_CAP),
            "recent_contacts": list(contacts.select_related("company")
                                    .order_by("-created_at", "-pk")[:8]),
            "activity": recent_activity(user, contacts, limit=10),
        })
    if user.has_perm("customers.view_company"):
        context["company_count"] = count_capped(companies_visible(user), HOME_COUNT_CAP)
    return render(request, "web/home.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
