from django.apps import AppConfig


class SimulatorsConfig(AppConfig):
    """High-fidelity fakes of the external APIs; installed for the `simulate` management command."""

    name = "syncplane.simulators"
    label = "simulators"
    verbose_name = "API simulators"
