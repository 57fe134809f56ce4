from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "syncplane.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self):
        from django.db.models.signals import post_migrate

        from syncplane.integrations import registry

        registry.load_connectors()
        post_migrate.connect(_reinstall_evidence_triggers, sender=self)


def _reinstall_evidence_triggers(sender, using="default", plan=None, **kwargs):
    """SQLite drops a table's triggers when a migration rebuilds the table: put them back every time."""
    from django.db import connections

    from syncplane.integrations.evidence import install_triggers

    if plan is not None and not any(not backwards for _migration, backwards in plan):
        return  # nothing was applied
    install_triggers(connections[using])
