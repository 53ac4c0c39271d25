from django.apps import AppConfig


class TimelineConfig(AppConfig):
    name = "clm.timeline"
    label = "timeline"
    verbose_name = "Timeline"
