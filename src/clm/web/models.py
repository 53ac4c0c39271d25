"""Per-user UI state: saved views of list pages."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SavedView(models.Model):
    """A named set of list filters (the query string of a list page) a user can return to."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="saved_views")
    page = models.CharField(max_length=50, help_text="Which list, e.g. 'contacts'.")
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "page", "name"],
                                               name="saved_view_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
