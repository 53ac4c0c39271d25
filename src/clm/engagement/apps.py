from django.apps import AppConfig


class EngagementConfig(AppConfig):
    name = "clm.engagement"
    label = "engagement"
    verbose_name = "Engagement"
