"""Per-integration overrides of a connector's default mapping.

An override says where a canonical attribute comes from in the vendor's raw record and how to transform it:

    {"location": {"source": "u_site.display_value"},
     "status": {"source": "u_lifecycle", "map": {"Live": "active", "Spare": "in_stock"}, "default": "unknown"},
     "owner_email": {"source": "assigned_to.email", "transform": "lower"},
     "last_seen_at": {"source": "u_last_scan", "date_format": "%d.%m.%Y %H:%M"}}

It is validated when the integration is saved and applied after the connector's own mapping, record by
record, by the sync engine and by the preview.
"""

from datetime import UTC, datetime

from syncplane.integrations.errors import RecordError
from syncplane.integrations.records import ASSET_FIELDS as CANONICAL_FIELDS
from syncplane.integrations.records import AssetStatus, AssetType, ComplianceState

TRANSFORMS = {"lower": str.lower, "upper": str.upper, "strip": str.strip}
CHOICES = {
    "asset_type": set(AssetType.values),
    "status": set(AssetStatus.values),
    "compliance_state": set(ComplianceState.values),
}
OPTIONS = {"source", "transform", "map", "default", "date_format"}


def validate(overrides) -> list[str]:
    """Every problem with an override, each naming the attribute and the reason; [] when it is fine."""
    if not isinstance(overrides, dict):
        return ["field_mapping must be an object: canonical attribute -> {source, transform, map, ...}"]
    problems = []
    for name, rule in overrides.items():
        if name not in CANONICAL_FIELDS:
            problems.append(f"{name}: not a canonical attribute (one of {', '.join(CANONICAL_FIELDS)})")
            continue
        if not isinstance(rule, dict):
            problems.append(f"{name}: must be an object with at least 'source'")
            continue
        unknown = set(rule) - OPTIONS
        if unknown:
            problems.append(f"{name}: unknown option {', '.join(sorted(unknown))}")
        if not isinstance(rule.get("source"), str) or not rule["source"].strip():
            problems.append(f"{name}: 'source' must name a field or dotted path of the raw record")
        if "transform" in rule and rule["transform"] not in TRANSFORMS:
            problems.append(f"{name}: transform must be one of {', '.join(TRANSFORMS)}")
        if "map" in rule:
            mapping = rule["map"]
            if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
                problems.append(f"{name}: 'map' must map source values to strings")
            elif name in CHOICES:
                bad = sorted({v for v in mapping.values() if v not in CHOICES[name]})
                if bad:
                    problems.append(f"{name}: {', '.join(bad)} not one of {', '.join(sorted(CHOICES[name]))}")
        if name in CHOICES and "default" in rule and rule["default"] not in CHOICES[name]:
            problems.append(f"{name}: default must be one of {', '.join(sorted(CHOICES[name]))}")
        if "date_format" in rule:
            if name != "last_seen_at":
                problems.append(f"{name}: date_format only applies to last_seen_at")
            elif not isinstance(rule["date_format"], str) or "%" not in rule["date_format"]:
                problems.append(f"{name}: date_format must be a strptime format such as %d.%m.%Y %H:%M")
    return problems


def extract(raw: dict, path: str):
    """A field of the raw record: the whole key first (ServiceNow has keys like "assigned_to.email"), then the
    dotted path through nested objects. A {"value", "display_value"} object yields its value."""
    if path in raw:
        found = raw[path]
    else:
        found = raw
        for part in path.split("."):
            if not isinstance(found, dict) or part not in found:
                return None
            found = found[part]
    if isinstance(found, dict) and "value" in found:
        found = found["value"]
    return found


def apply(overrides: dict, raw: dict, attributes: dict) -> dict:
    if not overrides:
        return attributes
    result = dict(attributes)
    for name, rule in overrides.items():
        value = extract(raw, rule["source"])
        if value is None:
            value = ""
        if not isinstance(value, str):
            value = str(value)
        value = value.strip()
        if "transform" in rule:
            value = TRANSFORMS[rule["transform"]](value)
        if "map" in rule:
            value = rule["map"].get(value, rule.get("default", value if name not in CHOICES else "unknown"))
        elif name in CHOICES and value and value not in CHOICES[name]:
            value = rule.get("default", "unknown")
        if name == "last_seen_at":
            value = _date(value, rule.get("date_format"))
        result[name] = value
    return result


def _date(value: str, date_format: str | None):
    if not value:
        return None
    try:
        parsed = datetime.strptime(value, date_format) if date_format else datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"last_seen_at {value[:40]!r} does not match {date_format or 'ISO 8601'}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()
