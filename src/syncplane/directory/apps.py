from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "syncplane.directory"
    label = "directory"
    verbose_name = "Directory"

    def ready(self):
        from syncplane.directory.sink import DirectorySink
        from syncplane.integrations.choices import RecordKind
        from syncplane.integrations.sinks import register_sink

        register_sink(RecordKind.DIRECTORY, DirectorySink)
