"""Forms of the staff UI; they only collect input — services validate and write."""

from __future__ import annotations

from django import forms

from clm.engagement.models import EmailTemplate, SenderIdentity, SubscriptionType
from clm.segments.models import Segment


class SenderForm(forms.Form):
    name = forms.CharField(max_length=100)
    email = forms.EmailField(max_length=254)
    reply_to = forms.EmailField(max_length=254, required=False)
    is_default = forms.BooleanField(required=False, label="Default sender")


class SubscriptionTypeForm(forms.Form):
    key = forms.SlugField(max_length=50, help_text="The consent purpose; cannot be changed later.")
    label = forms.CharField(max_length=100)
    description = forms.CharField(max_length=300, required=False)
    is_marketing = forms.BooleanField(required=False, initial=True,
                                      help_text="Marketing needs an explicit opt-in.")

    def __init__(self, *args, editing: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["key"].disabled = True
            self.fields["key"].required = False


class TemplateForm(forms.Form):
    name = forms.CharField(max_length=150)
    subject = forms.CharField(max_length=300,
                              help_text='Merge fields: {{ first_name|default:"there" }}')
    html_body = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), label="HTML body",
                                help_text="Sanitised on save. Links: {{ unsubscribe_url }}, "
                                          "{{ preferences_url }}.")
    sender = forms.ModelChoiceField(SenderIdentity.objects.all(), required=False)
    subscription_type = forms.ModelChoiceField(SubscriptionType.objects.all(), required=False,
                                               empty_label="(transactional)")


class BroadcastForm(forms.Form):
    name = forms.CharField(max_length=150)
    template = forms.ModelChoiceField(EmailTemplate.objects.all())
    sender = forms.ModelChoiceField(SenderIdentity.objects.all())
    subscription_type = forms.ModelChoiceField(SubscriptionType.objects.all())
    segment = forms.ModelChoiceField(Segment.objects.order_by("name"), required=False,
                                     help_text="Only contacts in this segment.")
    tag = forms.CharField(max_length=64, required=False, help_text="Only contacts with this tag.")
    stage = forms.CharField(max_length=32, required=False, help_text="Only contacts in this stage.")
    everyone = forms.BooleanField(required=False, label="Everyone with an email (no filter)")
    scheduled_at = forms.DateTimeField(required=False, label="Send at (empty: when started)",
                                       widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def service_data(self) -> dict:
        d = self.cleaned_data
        return {"name": d["name"], "template": d["template"], "sender": d["sender"],
                "subscription_type": d["subscription_type"], "scheduled_at": d["scheduled_at"],
                "audience": {"segment": d["segment"].pk if d["segment"] else None,
                             "tag": d["tag"], "stage": d["stage"], "all": d["everyone"]}}


def apply_domain_error(form: forms.Form, exc) -> None:
    """Show a service's ValidationFailed/Conflict on the field it names (or the form)."""
    field = exc.field.split(".")[0] if exc.field else None
    if field == "audience":
        field = None
    form.add_error(field if field in form.fields else None, exc.message)
