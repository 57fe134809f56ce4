from django.apps import AppConfig


class FindingsConfig(AppConfig):
    name = "syncplane.findings"
    label = "findings"
    verbose_name = "Security findings"

    def ready(self):
        from syncplane.core.triggers import register
        from syncplane.findings import evidence
        from syncplane.findings.sink import FindingSink
        from syncplane.integrations.choices import RecordKind
        from syncplane.integrations.sinks import register_sink

        register_sink(RecordKind.FINDING, FindingSink)
        # Installed after every migrate by core, like the sync-log and change-event triggers.
        register(evidence.TRIGGERS)
