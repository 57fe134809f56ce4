"""system_type -> connector class, and the connector of one integration.

Connector modules register themselves when imported; `load_connectors` imports every module under
`integrations/connectors/` (vendor packages included) when the app is ready.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from syncplane.integrations.base import Connector, ConnectorContext

if TYPE_CHECKING:
    from syncplane.integrations.models import ExternalSystem

_connectors: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    if cls.system_type in _connectors and _connectors[cls.system_type] is not cls:
        raise RuntimeError(f"two connectors claim system_type {cls.system_type!r}")
    _connectors[cls.system_type] = cls
    return cls


def load_connectors() -> None:
    from syncplane.integrations import connectors

    for module in pkgutil.walk_packages(connectors.__path__, prefix=f"{connectors.__name__}."):
        importlib.import_module(module.name)


def get_connector_class(system_type: str) -> type[Connector]:
    try:
        return _connectors[system_type]
    except KeyError:
        raise KeyError(f"no connector is registered for system_type {system_type!r}") from None


def registered_types() -> dict[str, type[Connector]]:
    return dict(sorted(_connectors.items()))


def build_connector(system: ExternalSystem) -> Connector:
    """The connector of one integration, given its settings and a way to resolve its secrets (never a model)."""
    from syncplane.integrations.secrets import resolve_secret

    cls = get_connector_class(system.system_type)
    context = ConnectorContext(
        base_url=system.base_url,
        auth_type=system.auth_type,
        config=system.config,
        credentials=system.credentials,
        resolve_secret=resolve_secret,
        name=system.name,
        known_ids=lambda: _known_ids(cls.record_kind, system.pk),
    )
    return cls(context)


def _known_ids(record_kind: str, system_id: int) -> set[str]:
    """What the record kind's sink says Syncplane holds for this integration (sinks with `known_ids`)."""
    from syncplane.integrations.sinks import sink_for

    known = getattr(sink_for(record_kind, system_id), "known_ids", None)
    return set(known()) if known else set()
