"""Navigation entries of the engagement app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Engagement", "Broadcasts", "engagement:broadcast_list", "engagement.view_broadcast"),
    ("Engagement", "Email templates", "engagement:template_list", "engagement.view_emailtemplate"),
    ("Engagement", "Outbox", "engagement:outbox_list", "engagement.view_outboundmessage"),
    ("Engagement", "Subscription types", "engagement:subscription_type_list",
     "engagement.view_subscriptiontype"),
    ("Engagement", "Sender identities", "engagement:sender_list",
     "engagement.view_senderidentity"),
]
