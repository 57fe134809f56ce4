from django.apps import AppConfig


class ChangesConfig(AppConfig):
    name = "syncplane.changes"
    label = "changes"
    verbose_name = "Change requests"

    def ready(self):
        from syncplane.changes import evidence
        from syncplane.changes.delivery import register_handlers
        from syncplane.changes.sink import ChangeSink
        from syncplane.core.triggers import register
        from syncplane.integrations.choices import RecordKind
        from syncplane.integrations.evidence import register_check
        from syncplane.integrations.sinks import register_sink

        register_sink(RecordKind.CHANGE, ChangeSink)
        register_handlers()
        # Installed after every migrate by core, like the sync-log triggers; checked by verify-evidence.
        register(evidence.TRIGGERS)
        register_check("change events", evidence.verify_event_logs)
