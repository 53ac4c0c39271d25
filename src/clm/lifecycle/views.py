"""Staff UI of the lifecycle: stage and rule editors, and the contact's stage fragment."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from clm.core.errors import DomainError
from clm.customers.queries import contacts_visible
from clm.lifecycle import services
from clm.lifecycle.models import Rule, Stage, StageGroup
from clm.lifecycle.queries import (
    contact_history,
    contact_life,
    contact_stage_summary,
    rules_ordered,
    stages_ordered,
)


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


class StageForm(forms.Form):
    key = forms.SlugField(max_length=32, required=False)
    label = forms.CharField(max_length=64)
    order = forms.IntegerField(min_value=0, max_value=32767)
    group = forms.ChoiceField(choices=StageGroup.choices)


class RuleForm(forms.Form):
    name = forms.CharField(max_length=120)
    event_kind = forms.CharField(max_length=64)
    target_stage = forms.ChoiceField(choices=())
    conditions = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                 help_text='JSON list, e.g. [{"field": "score", "op": "gte", '
                                           '"value": 9}]')
    contact_conditions = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}),
                                         required=False,
                                         help_text='e.g. [{"field": "stage", "op": "eq", '
                                                   '"value": "churned"}]')
    priority = forms.IntegerField(initial=100)
    forward_only = forms.BooleanField(required=False, initial=True)
    is_loop = forms.BooleanField(required=False)
    active = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target_stage"].choices = [(s.key, s.label) for s in stages_ordered()]

    def clean_conditions(self):
        return self._json("conditions")

    def clean_contact_conditions(self):
        return self._json("contact_conditions")

    def _json(self, name: str):
        raw = (self.cleaned_data.get(name) or "").strip()
        if not raw:
            return []
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from None


def _add_domain_error(form: forms.Form, exc: DomainError) -> None:
    field = (exc.field or "").split("[")[0]
    form.add_error(field if field in form.fields else None, exc.message)


@login_required
def stage_list(request: HttpRequest) -> HttpResponse:
    _require(request, "lifecycle.view_stage")
    form = StageForm()
    if request.method == "POST":
        _require(request, "lifecycle.add_stage")
        form = StageForm(request.POST)
        if form.is_valid():
            try:
                stage = services.stage_create(data=form.cleaned_data)
                messages.success(request, f"Stage “{stage.label}” added.")
                return redirect("lifecycle:stage_list")
            except DomainError as exc:
                _add_domain_error(form, exc)
    return render(request, "lifecycle/stage_list.html", {
        "stages": stages_ordered(), "form": form, "groups": StageGroup.choices,
        "can_edit": request.user.has_perm("lifecycle.change_stage"),
        "can_add": request.user.has_perm("lifecycle.add_stage")})


@login_required
def stage_edit(request: HttpRequest, key: str) -> HttpResponse:
    _require(request, "lifecycle.change_stage")
    stage = Stage.objects.filter(key=key).first()
    if stage is None:
        raise Http404
    if request.method != "POST":
        return redirect("lifecycle:stage_list")
    form = StageForm(request.POST)
    if form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "key"}
        try:
            services.stage_update(stage=stage, data=data)
            messages.success(request, f"Stage “{stage.label}” saved.")
        except DomainError as exc:
            messages.error(request, exc.message)
    else:
        messages.error(request, "; ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items()))
    return redirect("lifecycle:stage_list")


@login_required
def rule_list(request: HttpRequest) -> HttpResponse:
    _require(request, "lifecycle.view_rule")
    return render(request, "lifecycle/rule_list.html", {
        "rules": rules_ordered(), "can_edit": request.user.has_perm("lifecycle.change_rule"),
        "can_add": request.user.has_perm("lifecycle.add_rule")})


@login_required
def rule_edit(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    rule = None
    if rule_id is not None:
        _require(request, "lifecycle.change_rule")
        rule = Rule.objects.filter(pk=rule_id).first()
        if rule is None:
            raise Http404
    else:
        _require(request, "lifecycle.add_rule")
    if request.method == "POST":
        form = RuleForm(request.POST)
        if form.is_valid():
            try:
                if rule is None:
                    services.rule_create(data=form.cleaned_data)
                else:
                    services.rule_update(rule=rule, data=form.cleaned_data)
                messages.success(request, "Rule saved.")
                return redirect("lifecycle:rule_list")
            except DomainError as exc:
                _add_domain_error(form, exc)
    elif rule is not None:
        form = RuleForm(initial={
            "name": rule.name, "event_kind": rule.event_kind, "target_stage": rule.target_stage_id,
            "conditions": json.dumps(rule.conditions), "priority": rule.priority,
            "contact_conditions": json.dumps(rule.contact_conditions),
            "forward_only": rule.forward_only, "is_loop": rule.is_loop, "active": rule.active})
    else:
        form = RuleForm()
    return render(request, "lifecycle/rule_edit.html", {"form": form, "rule": rule})


class MoveForm(forms.Form):
    to_stage = forms.ChoiceField(choices=())
    reason = forms.CharField(max_length=500)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to_stage"].choices = [(s.key, s.label) for s in stages_ordered()]


@login_required
def contact_stage(request: HttpRequest, contact_id: int) -> HttpResponse:
    """The contact's stage fragment: current stage, life, history, and a move form.

    GET renders `lifecycle/_contact_stage.html`; POST moves (needs lifecycle.move_stage) and
    re-renders it, so the contact page can swap it with htmx.
    """
    _require(request, "customers.view_contact")
    contact = contacts_visible(request.user).filter(pk=contact_id).first()
    if contact is None:
        raise Http404
    form = MoveForm()
    status = 200
    if request.method == "POST":
        if not services.can_move(request.user):
            raise PermissionDenied
        form = MoveForm(request.POST)
        if form.is_valid():
            try:
                services.stage_move(contact=contact, to_stage=form.cleaned_data["to_stage"],
                                    reason=form.cleaned_data["reason"], actor=request.user)
                form = MoveForm()
            except DomainError as exc:
                _add_domain_error(form, exc)
                status = 422
        else:
            status = 422
        if not request.htmx:
            if status == 200:
                messages.success(request, "Stage changed.")
            target = request.POST.get("next", "")
            if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
                return redirect(target)
            return redirect("lifecycle:contact_stage", contact_id=contact.pk)
    return render(request, "lifecycle/_contact_stage.html",
                  contact_stage_context(request, contact, form), status=status)


def contact_stage_context(request: HttpRequest, contact, form: MoveForm | None = None) -> dict:
    """Context of `lifecycle/_contact_stage.html` (for a page that includes it directly)."""
    labels = dict(stages_ordered().values_list("key", "label"))
    return {"lc_contact": contact, "lc_stage_label": labels.get(contact.stage, contact.stage),
            "lc_life": contact_life(contact), "lc_history": contact_history(contact),
            "lc_summary": contact_stage_summary(contact), "lc_labels": labels,
            "lc_form": form or MoveForm(), "lc_can_move": services.can_move(request.user)}
