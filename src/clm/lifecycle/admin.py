from django.contrib import admin

from clm.lifecycle.models import ManualMove, Rule, Stage, StageChange


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ("key", "label", "order", "group")
    list_editable = ("label", "order", "group")
    ordering = ("order",)

    def get_readonly_fields(self, request, obj=None):
        return ("key",) if obj else ()  # keys are stored on contacts and history

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # As the stage services do: the funnel's advance_s follows the stage order.
        from django.db import transaction

        from clm.lifecycle.tasks import lifecycle_funnel_marks_recompute

        transaction.on_commit(lifecycle_funnel_marks_recompute.enqueue)


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("name", "event_kind", "target_stage", "priority", "forward_only", "is_loop",
                    "active")
    list_filter = ("active", "is_loop", "target_stage")
    search_fields = ("name", "event_kind")


@admin.register(StageChange)
class StageChangeAdmin(admin.ModelAdmin):
    list_display = ("contact", "seq", "from_stage", "to_stage", "at", "actor_type", "life")
    list_filter = ("to_stage", "actor_type")
    raw_id_fields = ("contact", "cause_event", "manual_move", "actor", "rule")

    def has_change_permission(self, request, obj=None):
        return False  # history is written by the engine only


@admin.register(ManualMove)
class ManualMoveAdmin(admin.ModelAdmin):
    list_display = ("contact", "to_stage", "at", "actor", "reason")
    raw_id_fields = ("contact", "actor")

    def has_change_permission(self, request, obj=None):
        return False
