from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "clm.automation"
    label = "automation"
    verbose_name = "Automation"
