from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "syncplane.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self):
        from syncplane.integrations import registry

        registry.load_connectors()
