"""system_type -> connector class. Connector modules register themselves when imported."""

import importlib
import pkgutil

from syncplane.integrations.base import Connector

_connectors: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    if cls.system_type in _connectors and _connectors[cls.system_type] is not cls:
        raise RuntimeError(f"two connectors claim system_type {cls.system_type!r}")
    _connectors[cls.system_type] = cls
    return cls


def load_connectors() -> None:
    from syncplane.integrations import connectors

    for module in pkgutil.iter_modules(connectors.__path__):
        importlib.import_module(f"{connectors.__name__}.{module.name}")


def get_connector_class(system_type: str) -> type[Connector]:
    try:
        return _connectors[system_type]
    except KeyError:
        raise KeyError(f"no connector is registered for system_type {system_type!r}") from None


def registered_types() -> dict[str, type[Connector]]:
    return dict(sorted(_connectors.items()))
