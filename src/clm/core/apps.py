from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "clm.core"
    label = "core"
    verbose_name = "CLM core"
