"""Per-integration overrides of a connector's default mapping.

An override says where a canonical attribute comes from in the vendor's raw record and how to transform it:

    {"location": {"source": "u_site.display_value"},
     "status": {"source": "u_lifecycle", "map": {"Live": "active", "Spare": "in_stock"}, "default": "unknown"},
     "owner_email": {"source": "assigned_to.email", "transform": "lower"},
     "last_seen_at": {"source": "u_last_scan", "date_format": "%d.%m.%Y %H:%M"}}

It is validated when the integration is saved (a default must have its attribute's type: records.py's
AssetAttributes) and applied after the connector's own mapping, record by record, by the sync engine and by
the preview, which also warns about rules that do nothing on its page (`page_warnings`).
"""

import types
import typing
from datetime import UTC, datetime

from syncplane.integrations.errors import RecordError
from syncplane.integrations.records import ASSET_FIELDS as CANONICAL_FIELDS
from syncplane.integrations.records import AssetAttributes, AssetStatus, AssetType, ComplianceState

TRANSFORMS = {"lower": str.lower, "upper": str.upper, "strip": str.strip}
CHOICES = {
    "asset_type": set(AssetType.values),
    "status": set(AssetStatus.values),
    "compliance_state": set(ComplianceState.values),
}
OPTIONS = {"source", "transform", "map", "default", "date_format"}
SCORE_RANGE = (0, 100)  # compliance_score


def _field_types() -> dict[str, tuple[type, bool]]:
    """Canonical attribute -> (its value type, whether None is allowed), from AssetAttributes."""
    found = {}
    for name, hint in typing.get_type_hints(AssetAttributes).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [a for a in args if a is not type(None)]
        found[name] = (kinds[0], len(kinds) < len(args))
    return found


FIELD_TYPES = _field_types()


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
        if "date_format" in rule:
            if name != "last_seen_at":
                problems.append(f"{name}: date_format only applies to last_seen_at")
            elif not isinstance(rule["date_format"], str) or "%" not in rule["date_format"]:
                problems.append(f"{name}: date_format must be a strptime format such as %d.%m.%Y %H:%M")
                continue
        problems += _value_problems(name, rule)
    return problems


def _value_problems(name: str, rule: dict) -> list[str]:
    """The default and the map's values become the attribute's value as they are: each must be one."""
    problems = []
    if "default" in rule:
        problem = _not_a_value(name, rule["default"], rule.get("date_format"))
        if problem:
            problems.append(f"{name}: default {problem}")
    if isinstance(rule.get("map"), dict) and name not in CHOICES:
        for key, target in rule["map"].items():
            problem = isinstance(target, str) and _not_a_value(name, target, rule.get("date_format"))
            if problem:
                problems.append(f"{name}: map value of {key!r} {problem}")
    return problems


def _not_a_value(name: str, value, date_format: str | None) -> str | None:
    """Why `value` cannot be the value of attribute `name`, or None when it can."""
    if name in CHOICES:
        return None if value in CHOICES[name] else f"must be one of {', '.join(sorted(CHOICES[name]))}"
    kind, nullable = FIELD_TYPES[name]
    if value is None:
        return None if nullable else "must be a string, not null"
    if kind is int:
        try:
            _score(value)
        except RecordError as exc:
            return str(exc).removeprefix(f"{name} ")
        return None
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if name == "last_seen_at":
        try:
            _date(value, date_format)
        except RecordError:
            return f"{value[:40]!r} does not match {date_format or 'ISO 8601'}"
    return None


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
        result[name] = value_of(name, rule, raw)
    return result


def value_of(name: str, rule: dict, raw: dict):
    """The value one rule gives its attribute for one raw record; RecordError when it cannot give one."""
    value = _source_text(rule, raw)
    if "map" in rule:
        value = rule["map"].get(value, rule.get("default", value if name not in CHOICES else "unknown"))
    elif name in CHOICES and value and value not in CHOICES[name]:
        value = rule.get("default", "unknown")
    if name == "last_seen_at":
        value = value if value is None else _date(value, rule.get("date_format"))
    elif name == "compliance_score":
        value = _score(value)
    return value


def _source_text(rule: dict, raw: dict) -> str:
    """The rule's source field of the record as stripped text ("" when absent), transformed."""
    value = extract(raw, rule["source"])
    if value is None:
        value = ""
    if not isinstance(value, str):
        value = str(value)
    value = value.strip()
    if "transform" in rule:
        value = TRANSFORMS[rule["transform"]](value)
    return value


def _score(value) -> int | None:
    """A compliance score: an integer 0-100 (given as a number or as text); None or "" when unknown."""
    if value is None or value == "":
        return None
    low, high = SCORE_RANGE
    try:
        score = int(value) if not isinstance(value, bool | float) else None
    except (TypeError, ValueError):
        score = None
    if score is None or not low <= score <= high:
        raise RecordError(f"compliance_score must be an integer from {low} to {high}, not {str(value)[:40]!r}")
    return score


def page_warnings(overrides: dict, raws: list) -> list[dict]:
    """What the preview warns about, per attribute, on one page of raw records: a source that no record has,
    a value map that matches no record, a date format that drops records."""
    records = [raw for raw in raws if isinstance(raw, dict)]
    if not overrides or not records:
        return []
    warnings = []
    for name, rule in overrides.items():
        texts = [_source_text(rule, raw) for raw in records]
        present = [text for text in texts if text]
        if not present:
            warnings.append({"field": name, "problem": "source_missing", "message":
                             f"{name}: source {rule['source']!r} is empty or absent in all {len(records)} records "
                             "of this page; check the field name (dotted paths reach nested objects)."})
            continue
        if isinstance(rule.get("map"), dict) and not any(text in rule["map"] for text in present):
            seen = ", ".join(repr(text[:40]) for text in list(dict.fromkeys(present))[:5])
            warnings.append({"field": name, "problem": "map_unmatched", "message":
                             f"{name}: no value of this page matches the map (values seen: {seen}); every "
                             "record takes the default."})
        if name == "last_seen_at":
            failed = 0
            example = ""
            for raw in records:
                try:
                    value_of(name, rule, raw)
                except RecordError as exc:
                    failed += 1
                    example = example or str(exc)
            if failed:
                warnings.append({"field": name, "problem": "date_format", "message":
                                 f"{name}: {failed} of {len(records)} records would fail and be left out of a "
                                 f"sync ({example})."})
    return warnings


def _date(value: str, date_format: str | None):
    if not value:
        return None
    try:
        parsed = datetime.strptime(value, date_format) if date_format else datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"last_seen_at {value[:40]!r} does not match {date_format or 'ISO 8601'}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()
