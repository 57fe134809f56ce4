from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "syncplane.core"
    label = "core"
    verbose_name = "Syncplane core"

    def ready(self):
        from syncplane.core import celery_signals  # noqa: F401  (connects the correlation-id hooks)
