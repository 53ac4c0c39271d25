from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "clm.analytics"
    label = "analytics"
    verbose_name = "Analytics"
