"""From the attributes of an asset's sources to the asset's own values.

For now an asset has the one source that created it, so its values are that source's attributes. Multi-
source identification and per-attribute precedence build on this function's shape: values plus, for each
attribute, the source it came from.
"""

from datetime import datetime

from syncplane.inventory.models import CANONICAL_FIELDS

_DEFAULTS = {"asset_type": "other", "status": "unknown", "compliance_state": "unknown"}
_NULLABLE = {"compliance_score", "last_seen_at"}


def asset_values(attributes: dict, source_id) -> tuple[list, dict]:
    values, sources = [], {}
    for name in CANONICAL_FIELDS:
        value = attributes.get(name)
        if value in (None, ""):
            value = _DEFAULTS.get(name, None if name in _NULLABLE else "")
        else:
            sources[name] = str(source_id)
        if name == "last_seen_at" and isinstance(value, str):
            value = datetime.fromisoformat(value)
        values.append(value)
    return values, sources
