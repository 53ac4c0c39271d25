from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "clm.web"
    label = "web"
    verbose_name = "Web UI"
