from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "clm.segments"
    label = "segments"
    verbose_name = "Segments"
