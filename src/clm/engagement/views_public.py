"""Public pages reached from emails, with no login: one-click unsubscribe (RFC 8058),
the preference page, the open pixel and the click redirect.

Every link is signed (tokens.py). A tampered, foreign (another link kind) or unknown token
gets the same generic answer — same status, same body — so a guess learns nothing.
"""

from __future__ import annotations

import base64

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from clm.customers.models import Contact
from clm.engagement import services, tokens
from clm.engagement.models import OutboundMessage, SubscriptionType

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _invalid(request) -> HttpResponse:
    return render(request, "engagement/public_invalid.html", status=400)


def _resolve_unsubscribe(token: str):
    data = tokens.unsubscribe_read(token)
    if data is None:
        return None
    contact_id, type_key, message_id = data
    contact = Contact.objects.filter(pk=contact_id).first()
    sub_type = SubscriptionType.objects.filter(key=type_key).first()
    if contact is None or sub_type is None:
        return None
    message = OutboundMessage.objects.filter(pk=message_id, contact=contact).first() \
        if message_id else None
    return contact, sub_type, message


@csrf_exempt  # RFC 8058: mail providers POST here with no cookie and no CSRF token.
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """GET shows a confirmation page; POST (the one-click) records the opt-out, idempotently."""
    resolved = _resolve_unsubscribe(token)
    if resolved is None:
        return _invalid(request)
    contact, sub_type, message = resolved
    if request.method == "GET":
        return render(request, "engagement/public_unsubscribe.html",
                      {"sub_type": sub_type, "done": False})
    services.unsubscribe(contact=contact, type_key=sub_type.key, message=message)
    return render(request, "engagement/public_unsubscribe.html",
                  {"sub_type": sub_type, "done": True,
                   "preferences_url": tokens.preferences_url(contact_id=contact.pk)})


@never_cache
@require_http_methods(["GET", "POST"])
def preferences(request, token: str):
    """Per-type opt in/out for one contact; each change is a consent row."""
    contact_id = tokens.preferences_read(token)
    contact = Contact.objects.filter(pk=contact_id).first() if contact_id else None
    if contact is None:
        return _invalid(request)
    types = list(SubscriptionType.objects.all())
    saved = False
    if request.method == "POST":
        if request.POST.get("unsubscribe_all"):
            wanted = {t.key: False for t in types}
        else:
            chosen = set(request.POST.getlist("types"))
            wanted = {t.key: t.key in chosen for t in types}
        services.preferences_update(contact=contact, wanted=wanted)
        saved = True
    state = services.subscription_state(contact)
    rows = [(t, state.get(t.key, False)) for t in types]
    return render(request, "engagement/public_preferences.html",
                  {"rows": rows, "saved": saved})


@never_cache
def track_open(request, token: str):
    message_id = tokens.open_read(token)
    message = OutboundMessage.objects.select_related("contact").filter(pk=message_id).first() \
        if message_id else None
    if message is None:
        return HttpResponse(status=404)
    services.email_open_record(message=message)
    return HttpResponse(PIXEL, content_type="image/gif")


@never_cache
def track_click(request, token: str):
    """Redirect to the URL inside the signature, never to one from the request."""
    data = tokens.click_read(token)
    message = OutboundMessage.objects.select_related("contact").filter(pk=data[0]).first() \
        if data else None
    if message is None:
        return HttpResponse("Not found.", status=404, content_type="text/plain")
    services.email_click_record(message=message, url=data[1])
    return HttpResponseRedirect(data[1])
