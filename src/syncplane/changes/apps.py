from django.apps import AppConfig


class ChangesConfig(AppConfig):
    name = "syncplane.changes"
    label = "changes"
    verbose_name = "Change requests"

    def ready(self):
        from django.db.models.signals import post_migrate

        from syncplane.changes.delivery import register_handlers
        from syncplane.changes.sink import ChangeSink
        from syncplane.integrations.choices import RecordKind
        from syncplane.integrations.sinks import register_sink

        register_sink(RecordKind.CHANGE, ChangeSink)
        register_handlers()
        post_migrate.connect(_reinstall_evidence_triggers, sender=self)


def _reinstall_evidence_triggers(sender, using="default", plan=None, **kwargs):
    """Same reason as the integrations app: SQLite loses a table's triggers when a migration rebuilds it."""
    from django.db import connections

    from syncplane.changes.evidence import install_triggers

    if plan is not None and not any(not backwards for _migration, backwards in plan):
        return
    install_triggers(connections[using])
