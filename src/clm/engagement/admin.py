"""Admin views of the email tables, for operators (writes go through the staff UI/services)."""

from django.contrib import admin

from clm.engagement.models import (
    Broadcast,
    EmailTemplate,
    OutboundMessage,
    SenderIdentity,
    SubscriptionType,
    Suppression,
)


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):
    list_display = ("pk", "dedupe_key", "to_email", "status", "attempts", "next_attempt_at",
                    "sent_at", "last_error")
    list_filter = ("status", "is_marketing")
    search_fields = ("dedupe_key", "to_email", "provider_message_id")
    raw_id_fields = ("contact", "broadcast", "template")
    readonly_fields = ("claim_token", "claimed_at", "handed_off_at", "provider_message_id")


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("email", "reason", "created_at")
    search_fields = ("email",)
    raw_id_fields = ("message",)


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "total", "scheduled_at", "started_at", "finished_at")
    list_filter = ("status",)


admin.site.register(EmailTemplate)
admin.site.register(SenderIdentity)
admin.site.register(SubscriptionType)
