"""Staff UI for contacts and companies (placeholder; built out in the UI work)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from clm.customers.queries import contacts_visible


@login_required
def contact_list(request):
    contacts = contacts_visible(request.user).order_by("-created_at")[:50]
    return render(request, "customers/contact_list.html", {"contacts": contacts})
