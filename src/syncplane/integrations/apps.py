from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "syncplane.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self):
        from syncplane.core.triggers import register
        from syncplane.integrations import events, evidence, registry  # noqa: F401 (events: its cache follows saves)

        registry.load_connectors()
        # Installed after every migrate by core (SQLite loses a table's triggers when a migration rebuilds it).
        register(evidence.TRIGGERS)
