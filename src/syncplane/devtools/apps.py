from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """The demo, bench and simulate commands: installed by the demo and test settings, never in production."""

    name = "syncplane.devtools"
    label = "devtools"
    verbose_name = "Developer tools"
