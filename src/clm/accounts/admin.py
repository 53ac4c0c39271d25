from django.contrib import admin

from clm.accounts.models import ApiToken, Profile, RoleVisibility, Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(RoleVisibility)
class RoleVisibilityAdmin(admin.ModelAdmin):
    list_display = ["group", "scope"]


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "team"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]
    list_filter = ["scope"]
