from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "syncplane.core"
    label = "core"
    verbose_name = "Syncplane core"

    def ready(self):
        from django.db.models.signals import post_migrate, pre_migrate

        from syncplane.core import celery_signals  # noqa: F401  (connects the correlation-id hooks)

        pre_migrate.connect(_lift_sqlite_triggers, sender=self)
        post_migrate.connect(_reinstall_evidence_triggers, sender=self)


def _applies_something(plan) -> bool:
    return plan is None or any(not backwards for _migration, backwards in plan)


def _lift_sqlite_triggers(sender, using="default", plan=None, **kwargs):
    """SQLite rebuilds a table to alter it, and renaming the rebuilt table fails while a trigger of another
    table names it (the outcome triggers read the sync log): drop every app's triggers before migrating."""
    from django.db import connections

    from syncplane.core.triggers import remove_all

    connection = connections[using]
    if connection.vendor == "sqlite" and plan and _applies_something(plan):
        remove_all(connection)


def _reinstall_evidence_triggers(sender, using="default", plan=None, **kwargs):
    """SQLite drops a table's triggers when a migration rebuilds the table: put every app's back each time."""
    from django.db import connections

    from syncplane.core.triggers import install_all

    if _applies_something(plan):
        install_all(connections[using])
