"""From the attributes of an asset's sources to the asset's own values.

For now an asset has the one source that created it, so its values are that source's attributes. Multi-
source identification and per-attribute precedence build on this function's shape: values plus, for each
attribute, the source it came from.
"""

from datetime import datetime

from syncplane.inventory.models import CANONICAL_FIELDS

_DEFAULTS = {"asset_type": "other", "status": "unknown", "compliance_state": "unknown"}
_NULLABLE = {"compliance_score", "last_seen_at"}
_EMPTY = {name: _DEFAULTS.get(name, None if name in _NULLABLE else "") for name in CANONICAL_FIELDS}


def asset_values(attributes: dict, source_id) -> tuple[list, dict]:
    """The asset's column values in CANONICAL_FIELDS order, and which source each non-empty one came from."""
    source = str(source_id)
    values, sources = [], {}
    for name in CANONICAL_FIELDS:
        value = attributes.get(name)
        if value is None or value == "":
            value = _EMPTY[name]
        else:
            sources[name] = source
            if name == "last_seen_at" and type(value) is str:  # noqa: E721
                value = datetime.fromisoformat(value)
        values.append(value)
    return values, sources
