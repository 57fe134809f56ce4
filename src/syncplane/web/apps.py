from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "syncplane.web"
    label = "web"
    verbose_name = "Web UI"
