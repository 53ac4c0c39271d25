from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from clm.customers.queries import contacts_visible


@login_required
def home(request):
    contacts = contacts_visible(request.user)
    return render(request, "web/home.html", {
        "contact_count": contacts.count(),
        "recent_contacts": contacts.order_by("-created_at")[:10],
    })


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
