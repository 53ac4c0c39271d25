from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "clm.lifecycle"
    label = "lifecycle"
    verbose_name = "Lifecycle"
