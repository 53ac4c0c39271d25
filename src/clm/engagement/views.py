"""Staff UI for email: templates (with preview), senders, subscription types, broadcasts
(with live progress) and the outbox. Public pages (unsubscribe, preferences, tracking) are
in `views_public.py`.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from clm.accounts.queries import visible
from clm.core.errors import DomainError
from clm.core.types import parse_id
from clm.customers.queries import contacts_search, contacts_visible
from clm.engagement import queries, services
from clm.engagement.forms import (
    BroadcastForm,
    SenderForm,
    SubscriptionTypeForm,
    TemplateForm,
    apply_domain_error,
)
from clm.engagement.models import (
    Broadcast,
    EmailTemplate,
    OutboundMessage,
    SenderIdentity,
    SubscriptionType,
)
from clm.engagement.rendering import RenderError, contact_context
from clm.engagement.rendering import render as render_email
from clm.engagement.tokens import preferences_url, unsubscribe_url


def _perm(codename: str):
    def wrap(view):
        return login_required(permission_required(f"engagement.{codename}",
                                                  raise_exception=True)(view))
    return wrap


# --- templates ---------------------------------------------------------------------------

@_perm("view_emailtemplate")
def template_list(request):
    templates = EmailTemplate.objects.select_related("sender", "subscription_type")
    return render(request, "engagement/template_list.html", {"templates": templates})


def _template_form_view(request, template: EmailTemplate | None):
    if request.method == "POST":
        form = TemplateForm(request.POST)
        if form.is_valid():
            try:
                saved = services.template_save(data=form.cleaned_data, template=template,
                                               actor=request.user)
            except DomainError as exc:
                apply_domain_error(form, exc)
            else:
                messages.success(request, f"Template “{saved.name}” saved.")
                return redirect("engagement:template_preview", saved.pk)
    elif template is not None:
        form = TemplateForm(initial={"name": template.name, "subject": template.subject,
                                     "html_body": template.html_body, "sender": template.sender,
                                     "subscription_type": template.subscription_type})
    else:
        form = TemplateForm()
    return render(request, "engagement/template_form.html", {"form": form, "template": template})


@_perm("add_emailtemplate")
def template_create(request):
    return _template_form_view(request, None)


@_perm("change_emailtemplate")
def template_edit(request, pk: int):
    return _template_form_view(request, get_object_or_404(EmailTemplate, pk=pk))


@_perm("view_emailtemplate")
def template_preview(request, pk: int):
    """Render the template for a real contact the user may see (?contact=<id> or ?q=search)."""
    template = get_object_or_404(EmailTemplate.objects.select_related("subscription_type"), pk=pk)
    visible = contacts_visible(request.user).filter(email__isnull=False)
    q = request.GET.get("q", "").replace("\x00", "").strip()  # NUL: a DataError on PostgreSQL
    candidates = list(contacts_search(visible, q).order_by("last_name", "pk")[:10]) if q else []
    contact = None
    contact_id = request.GET.get("contact", "")
    if contact_id:
        pk = parse_id(contact_id)
        if pk is None:
            raise Http404
        contact = get_object_or_404(visible.select_related("company"), pk=pk)
    elif not q:
        contact = visible.select_related("company").order_by("-created_at").first()
    rendered = error = None
    if contact is not None:
        extra = {"preferences_url": preferences_url(contact_id=contact.pk)}
        if template.subscription_type:
            extra["unsubscribe_url"] = unsubscribe_url(contact_id=contact.pk,
                                                       type_key=template.subscription_type.key)
        tags = list(contact.tags.values_list("name", flat=True))
        try:
            rendered = render_email(subject=template.subject, html=template.html_body,
                                    context=contact_context(contact, extra=extra, tags=tags))
        except RenderError as exc:
            error = exc.message
    return render(request, "engagement/template_preview.html", {
        "template": template, "contact": contact, "rendered": rendered, "error": error,
        "q": q, "candidates": candidates})


# --- senders and subscription types ------------------------------------------------------

@_perm("view_senderidentity")
def sender_list(request):
    return render(request, "engagement/sender_list.html",
                  {"senders": SenderIdentity.objects.all()})


@_perm("change_senderidentity")
def sender_edit(request, pk: int | None = None):
    sender = get_object_or_404(SenderIdentity, pk=pk) if pk else None
    if sender is None and not request.user.has_perm("engagement.add_senderidentity"):
        raise Http404
    if request.method == "POST":
        form = SenderForm(request.POST)
        if form.is_valid():
            try:
                services.sender_save(data=form.cleaned_data, sender=sender)
            except DomainError as exc:
                apply_domain_error(form, exc)
            else:
                messages.success(request, "Sender saved.")
                return redirect("engagement:sender_list")
    else:
        form = SenderForm(initial=sender and {"name": sender.name, "email": sender.email,
                                              "reply_to": sender.reply_to,
                                              "is_default": sender.is_default})
    return render(request, "engagement/simple_form.html",
                  {"form": form, "title": "Sender identity", "back": "engagement:sender_list"})


@_perm("view_subscriptiontype")
def subscription_type_list(request):
    return render(request, "engagement/subscription_type_list.html",
                  {"types": SubscriptionType.objects.all()})


@_perm("change_subscriptiontype")
def subscription_type_edit(request, pk: int | None = None):
    sub_type = get_object_or_404(SubscriptionType, pk=pk) if pk else None
    if sub_type is None and not request.user.has_perm("engagement.add_subscriptiontype"):
        raise Http404
    editing = sub_type is not None
    if request.method == "POST":
        form = SubscriptionTypeForm(request.POST, editing=editing,
                                    initial={"key": sub_type.key} if editing else None)
        if form.is_valid():
            try:
                services.subscription_type_save(data=form.cleaned_data, sub_type=sub_type)
            except DomainError as exc:
                apply_domain_error(form, exc)
            else:
                messages.success(request, "Subscription type saved.")
                return redirect("engagement:subscription_type_list")
    else:
        form = SubscriptionTypeForm(editing=editing, initial=sub_type and {
            "key": sub_type.key, "label": sub_type.label, "description": sub_type.description,
            "is_marketing": sub_type.is_marketing})
    return render(request, "engagement/simple_form.html",
                  {"form": form, "title": "Subscription type",
                   "back": "engagement:subscription_type_list"})


# --- broadcasts --------------------------------------------------------------------------

@_perm("view_broadcast")
def broadcast_list(request):
    broadcasts = Broadcast.objects.select_related("template", "subscription_type")[:200]
    return render(request, "engagement/broadcast_list.html", {"broadcasts": broadcasts})


@_perm("add_broadcast")
def broadcast_create(request):
    if request.method == "POST":
        form = BroadcastForm(request.POST)
        if form.is_valid():
            try:
                broadcast = services.broadcast_create(data=form.service_data(), actor=request.user)
            except DomainError as exc:
                apply_domain_error(form, exc)
            else:
                return redirect("engagement:broadcast_detail", broadcast.pk)
    else:
        template_id = parse_id(request.GET.get("template", ""))
        template = EmailTemplate.objects.filter(pk=template_id).first() if template_id else None
        form = BroadcastForm(initial={
            "template": template, "sender": template and template.sender,
            "subscription_type": template and template.subscription_type})
    return render(request, "engagement/broadcast_form.html", {"form": form})


def _broadcast_context(broadcast: Broadcast) -> dict:
    stats = queries.broadcast_stats(broadcast)
    return {"broadcast": broadcast, "stats": stats,
            "audience": queries.audience_describe(broadcast.audience),
            "polling": broadcast.status in (Broadcast.Status.SENDING, Broadcast.Status.SCHEDULED)}


@_perm("view_broadcast")
def broadcast_detail(request, pk: int):
    broadcast = get_object_or_404(Broadcast.objects.select_related(
        "template", "sender", "subscription_type"), pk=pk)
    ctx = _broadcast_context(broadcast)
    failures = OutboundMessage.objects.filter(broadcast=broadcast,
                                              status=OutboundMessage.Status.FAILED)
    ctx["failures"] = (visible(failures, request.user, owner_field="contact__owner")
                       .select_related("contact").order_by("-pk")[:20])
    return render(request, "engagement/broadcast_detail.html", ctx)


@_perm("view_broadcast")
def broadcast_progress(request, pk: int):
    """The progress fragment the detail page polls with htmx."""
    broadcast = get_object_or_404(Broadcast, pk=pk)
    return render(request, "engagement/_broadcast_progress.html", _broadcast_context(broadcast))


@require_POST
@_perm("change_broadcast")
def broadcast_start(request, pk: int):
    broadcast = get_object_or_404(Broadcast, pk=pk)
    try:
        broadcast = services.broadcast_start(broadcast=broadcast, actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Broadcast scheduled." if broadcast.status == "scheduled"
                         else f"Broadcast started: {broadcast.total} messages queued.")
    return redirect("engagement:broadcast_detail", pk)


@require_POST
@_perm("change_broadcast")
def broadcast_cancel(request, pk: int):
    broadcast = get_object_or_404(Broadcast, pk=pk)
    try:
        services.broadcast_cancel(broadcast=broadcast)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Broadcast cancelled.")
    return redirect("engagement:broadcast_detail", pk)


# --- outbox ------------------------------------------------------------------------------

@_perm("view_outboundmessage")
def outbox_list(request):
    status = request.GET.get("status", "")
    if status not in OutboundMessage.Status.values:
        status = ""
    counts = queries.outbox_counts(visible(OutboundMessage.objects.all(), request.user,
                                           owner_field="contact__owner"))
    qs = visible(queries.outbox_messages(status=status or None), request.user,
                 owner_field="contact__owner")
    page = Paginator(qs, 50).get_page(
        request.GET.get("page"))
    return render(request, "engagement/outbox_list.html", {
        "page": page, "status": status,
        "statuses": [(value, label, counts.get(value, 0))
                     for value, label in OutboundMessage.Status.choices]})
