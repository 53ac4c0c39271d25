"""Shipped playbooks: workflows (inactive, ready to switch on) and their email templates.

`playbooks_install()` is idempotent: a playbook already installed (by its key) is left as
it is, so an admin's edits survive a second run; a template of the same name is reused.
Templates go through clm.engagement.services.template_save (sanitised, checked to render).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from clm.automation.models import Workflow
from clm.automation.services import workflow_create

MARKETING = "email_marketing"


@dataclass(frozen=True)
class Mail:
    name: str
    subject: str
    html: str
    marketing: bool = False


@dataclass(frozen=True)
class Playbook:
    key: str
    name: str
    description: str
    trigger: dict
    # Steps; {"mail": i} in a send_email step stands for the i-th template of `mails`.
    steps: list[dict]
    mails: list[Mail] = field(default_factory=list)
    enrollment_rule: str = "once"
    reenroll_days: int | None = None
    goal: dict = field(default_factory=dict)
    needs_property: tuple[str, str] | None = None  # (key, label) of a date property


def _hi(body: str) -> str:
    return f"<p>Hi {{{{ first_name|default:\"there\" }}}},</p>{body}"


PLAYBOOKS: list[Playbook] = [
    Playbook(
        key="thank-you-first-purchase", name="Thank you for your first purchase",
        description="Thanks a customer right after their first completed order.",
        trigger={"type": "event", "kind": "order.completed", "conditions": [],
                 "first_time": True},
        mails=[Mail("Playbook: thank you (first purchase)", "Thank you for your order!",
                    _hi("<p>Thank you for your first order with us. We are glad to have you."
                        "</p><p>If anything is not right, just reply to this email.</p>"))],
        steps=[{"type": "send_email", "mail": 0}]),
    Playbook(
        key="lead-nurture", name="Lead nurture",
        description="Three emails over two weeks to new leads; ends when the lead becomes an MQL.",
        trigger={"type": "stage", "stage": "lead"},
        goal={"kind": "stage.changed", "conditions": [{"field": "to", "op": "eq", "value": "mql"}]},
        mails=[
            Mail("Playbook: nurture 1 of 3", "Welcome — here is where to start",
                 _hi("<p>Thanks for your interest. Here is a short guide to get the most out "
                     "of what we do.</p>"), marketing=True),
            Mail("Playbook: nurture 2 of 3", "How others use us",
                 _hi("<p>A few stories from customers like you.</p>"), marketing=True),
            Mail("Playbook: nurture 3 of 3", "Shall we talk?",
                 _hi("<p>If you would like a demo, reply to this email and we will set one up."
                     "</p>"), marketing=True),
        ],
        steps=[{"type": "send_email", "mail": 0}, {"type": "wait", "days": 5},
               {"type": "send_email", "mail": 1}, {"type": "wait", "days": 9},
               {"type": "send_email", "mail": 2}]),
    Playbook(
        key="customer-onboarding", name="New-customer onboarding",
        description="Welcomes a new customer, then checks in after a week.",
        trigger={"type": "stage", "stage": "customer"},
        mails=[
            Mail("Playbook: onboarding welcome", "Welcome aboard",
                 _hi("<p>Welcome! Here are the three things new customers do first.</p>")),
            Mail("Playbook: onboarding check-in", "How is it going?",
                 _hi("<p>It has been a week. Is everything working as you hoped? Reply and "
                     "tell us.</p>")),
        ],
        steps=[{"type": "send_email", "mail": 0}, {"type": "wait", "days": 7},
               {"type": "send_email", "mail": 1}]),
    Playbook(
        key="renewal-reminder", name="Renewal reminder",
        description="Reminds a customer 30 days before their renewal date "
                    "(contact property renewal_date).",
        trigger={"type": "date", "field": "properties.renewal_date", "offset_days": -30},
        enrollment_rule="every_time", needs_property=("renewal_date", "Renewal date"),
        mails=[Mail("Playbook: renewal reminder", "Your renewal is coming up",
                    _hi("<p>Your plan renews on {{ renewal_date }}. Nothing to do if you "
                        "want to continue; reply if you have questions.</p>"))],
        steps=[{"type": "send_email", "mail": 0}]),
    Playbook(
        key="win-back", name="Win back churned customers",
        description="Emails a churned customer, waits 14 days for an order; without one, "
                    "sends a last offer.",
        trigger={"type": "stage", "stage": "churned"},
        enrollment_rule="after_days", reenroll_days=180,
        mails=[
            Mail("Playbook: win-back 1", "We miss you",
                 _hi("<p>It has been a while. Here is what is new since your last visit.</p>"),
                 marketing=True),
            Mail("Playbook: win-back 2", "A little something to come back",
                 _hi("<p>Come back this month and your next order is on us up to 10%.</p>"),
                 marketing=True),
        ],
        steps=[{"type": "send_email", "mail": 0},
               {"type": "wait_for", "kind": "order.completed", "timeout_days": 14,
                "on_event": "end", "on_timeout": "next"},
               {"type": "send_email", "mail": 1}]),
    Playbook(
        key="promoter-referral", name="Promoter → referral invitation",
        description="Invites a promoter to refer friends.",
        trigger={"type": "stage", "stage": "promoter"},
        mails=[Mail("Playbook: referral invitation", "Know someone who would like us?",
                    _hi("<p>Thank you for recommending us. Invite a friend and you both get a "
                        "reward on their first order.</p>"), marketing=True)],
        steps=[{"type": "send_email", "mail": 0}]),
]


def _template(mail: Mail):
    from clm.engagement.models import EmailTemplate, SubscriptionType
    from clm.engagement.services import template_save

    existing = EmailTemplate.objects.filter(name=mail.name).first()
    if existing is not None:
        return existing
    sub = SubscriptionType.objects.filter(key=MARKETING).first() if mail.marketing else None
    return template_save(data={"name": mail.name, "subject": mail.subject, "html_body": mail.html,
                               "subscription_type": sub.pk if sub else None})


def _ensure_property(key: str, label: str) -> None:
    from clm.customers.models import ObjectType, PropertyDefinition
    from clm.customers.services import property_definition_create

    if not PropertyDefinition.objects.filter(object_type=ObjectType.CONTACT, key=key).exists():
        property_definition_create(object_type=ObjectType.CONTACT, key=key, label=label,
                                   type="date")


def _steps(playbook: Playbook, templates: list) -> list[dict[str, Any]]:
    steps = []
    for step in playbook.steps:
        step = dict(step)
        if "mail" in step:
            mail = playbook.mails[step.pop("mail")]
            step["template_id"] = templates[playbook.mails.index(mail)].pk
            step["subscription_type"] = MARKETING if mail.marketing else None
        steps.append(step)
    return steps


@transaction.atomic
def playbooks_install(*, keys: list[str] | None = None, actor=None) -> list[Workflow]:
    """Install the shipped playbooks (all, or those of `keys`) as inactive workflows;
    returns the workflows created now."""
    created = []
    for playbook in PLAYBOOKS:
        if keys is not None and playbook.key not in keys:
            continue
        if Workflow.objects.filter(playbook=playbook.key).exists():
            continue
        if playbook.needs_property:
            _ensure_property(*playbook.needs_property)
        templates = [_template(mail) for mail in playbook.mails]
        name = playbook.name
        if Workflow.objects.filter(name=name).exists():
            name = f"{name} (playbook)"
        created.append(workflow_create(data={
            "name": name, "description": playbook.description, "trigger": playbook.trigger,
            "steps": _steps(playbook, templates), "enrollment_rule": playbook.enrollment_rule,
            "reenroll_days": playbook.reenroll_days, "goal": playbook.goal,
        }, actor=actor, playbook=playbook.key))
    return created
