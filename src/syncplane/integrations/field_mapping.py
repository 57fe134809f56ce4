"""Per-integration overrides of a connector's default mapping: where a canonical field comes from in the vendor's
raw record, and a short pipeline of steps that turns it into the field's value.

    {"location": {"source": "u_site.display_value"},
     "status": {"source": "u_lifecycle", "map": {"Live": "active", "Spare": "in_stock"}, "default": "unknown"},
     "owner_email": {"source": "assigned_to.email", "transform": "lower"},
     "last_seen_at": {"source": "u_last_scan", "date_format": "%d.%m.%Y %H:%M"},
     "department": {"source": "u_org", "steps": [{"op": "split", "sep": "/", "index": -1}, {"op": "upper"}]}}

A rule is either the shorthand (transform, map, default, date_format: one of each, in that order) or `steps`, an
ordered list of small step objects (STEPS). Which fields a rule may target depends on the connector's record kind
(`targets`): asset attributes for assets, `user.*` / `group.name` / `device.*` for directories, `finding.*` /
`machine.*` for security findings. A mapping is validated when the integration is saved (`validate`), compiled once
per sync (`compile_mapping`) and applied after the connector's own mapping, record by record, by the sync engine
and the preview, which also warns about rules that do nothing on its page (`page_warnings`).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from syncplane.integrations.choices import RecordKind
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.records import (
    ASSET_FIELDS,
    AssetAttributes,
    AssetStatus,
    AssetType,
    ComplianceState,
    FindingRecord,
    Severity,
)

CANONICAL_FIELDS = ASSET_FIELDS  # the targets of an asset connector's mapping, by their plain names
TRANSFORMS = {"lower": str.lower, "upper": str.upper, "strip": str.strip}
SHORTHAND = ("transform", "map", "default", "date_format")
OPTIONS = {"source", "steps", *SHORTHAND}
SCORE_RANGE = (0, 100)  # compliance_score
CVSS_RANGE = (0.0, 10.0)
MAX_STEPS = 20
MAX_PATTERN = 200  # characters of a regular expression
MAX_INPUT = 4096  # characters of a value a regular expression is run on
MAX_SOURCES = 10  # paths of one concat step

# --- the fields a rule may target, per record kind -------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One field a rule can set: `key` of the record's attributes (or of its nested "asset" object), in records
    whose "kind" is `kind` (None: every record, as for assets)."""

    name: str
    key: str
    value_type: str  # text | choice | date | score | cvss | list
    nullable: bool = False
    choices: frozenset[str] = frozenset()
    kind: str | None = None
    nested: bool = False
    # A delta item leaves out what did not change (Entra): a rule whose sources the item lacks leaves it alone.
    delta: bool = False


ASSET_CHOICES = {
    "asset_type": frozenset(AssetType.values),
    "status": frozenset(AssetStatus.values),
    "compliance_state": frozenset(ComplianceState.values),
}
DATE_FIELDS = ("last_seen_at", "compliance_checked_at", "first_seen_at")
USER_FIELDS = ("username", "email", "first_name", "last_name", "display_name")
# A finding's external id is made from its vulnerability id, package, installed version, target and tool: an
# override of those would name another finding than its id does, so they stay the connector's.
FINDING_FIELDS = ("title", "package_type", "fixed_version", "purl", "severity", "cvss_score", "cvss_vector",
                  "first_seen_at")


def _hint_types(typed_dict) -> dict[str, tuple[type, bool]]:
    """Field -> (its value type, whether None is allowed), from a TypedDict's annotations."""
    found = {}
    for name, hint in typing.get_type_hints(typed_dict).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [a for a in args if a is not type(None)]
        found[name] = (typing.get_origin(kinds[0]) or kinds[0], len(kinds) < len(args))
    return found


def _typed(name: str, key: str, hints: dict, choices: dict, **where) -> Target:
    kind, nullable = hints[key]
    if key in choices:
        return Target(name, key, "choice", choices=choices[key], **where)
    if key in DATE_FIELDS:
        value_type = "date"
    else:
        value_type = {int: "score", float: "cvss", list: "list"}.get(kind, "text")
    return Target(name, key, value_type, nullable=nullable, **where)


def _asset_targets(prefix: str = "", **where) -> list[Target]:
    hints = _hint_types(AssetAttributes)
    return [_typed(prefix + key, key, hints, ASSET_CHOICES, **where) for key in ASSET_FIELDS]


def _build_targets() -> dict[str, dict[str, Target]]:
    finding_hints = _hint_types(FindingRecord)
    severity = {"severity": frozenset(Severity.values)}
    directory = [Target(f"user.{key}", key, "text", kind="user", delta=True) for key in USER_FIELDS]
    directory.append(Target("group.name", "name", "text", kind="group", delta=True))
    directory += _asset_targets("device.", kind="device", nested=True)
    finding = [_typed(f"finding.{key}", key, finding_hints, severity, kind="finding") for key in FINDING_FIELDS]
    finding += _asset_targets("machine.", kind="machine", nested=True)
    return {
        RecordKind.ASSET: {t.name: t for t in _asset_targets()},
        RecordKind.DIRECTORY: {t.name: t for t in directory},
        RecordKind.FINDING: {t.name: t for t in finding},
    }


TARGETS = _build_targets()


def targets(record_kind: str) -> dict[str, Target]:
    """The fields a field mapping may set on this kind of record ({} for changes and events)."""
    return TARGETS.get(record_kind, {})


# --- reading the raw record -----------------------------------------------------------------------------------

_ABSENT = object()


def _lookup(raw: dict, path: str):
    """The whole key first (ServiceNow has keys like "assigned_to.email"), then the dotted path through nested
    objects; _ABSENT when the record does not have it."""
    if path in raw:
        return raw[path]
    found = raw
    for part in path.split("."):
        if not isinstance(found, dict) or part not in found:
            return _ABSENT
        found = found[part]
    return found


def extract(raw: dict, path: str):
    """A field of the raw record, None when absent. A {"value", "display_value"} object yields its value."""
    found = _lookup(raw, path)
    if found is _ABSENT:
        return None
    if isinstance(found, dict) and "value" in found:
        found = found["value"]
    return found


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a multi-valued attribute (LDAP): its values, in order
        return ", ".join(_as_text(item) for item in value)
    return str(value)


def source_text(raw: dict, path: str) -> str:
    """A source field as stripped text, "" when absent: what every pipeline starts from."""
    return _as_text(extract(raw, path)).strip()


# --- steps ----------------------------------------------------------------------------------------------------
# Each step compiles to a function (value, raw) -> value. Values are text, except that a map or default may give
# None for a field that allows it; text steps read None as "".

Step = Callable[[object, dict], object]


class StepProblem(Exception):
    """Why a step as written cannot be used (validation)."""


def _text_step(function) -> Callable[[dict], Step]:
    return lambda spec: (lambda value, raw: function(_as_text(value)))


def _regex(spec: dict) -> Step:
    pattern = _pattern(spec, "pattern")
    group = spec.get("group", 1 if pattern.groups else 0)
    if isinstance(group, bool) or not isinstance(group, int | str):
        raise StepProblem("'group' must be a group number or name")
    if isinstance(group, int) and not 0 <= group <= pattern.groups:
        raise StepProblem(f"'group' {group} does not exist: the pattern has {pattern.groups} group(s)")
    if isinstance(group, str) and group not in pattern.groupindex:
        raise StepProblem(f"'group' {group!r} is not a named group of the pattern")

    def extract_match(value, raw):
        match = pattern.search(_as_text(value)[:MAX_INPUT])
        return (match.group(group) or "") if match else ""

    return extract_match


def _replace(spec: dict) -> Step:
    new = _string(spec, "new", default="")
    if ("pattern" in spec) == ("old" in spec):
        raise StepProblem("give either 'old' (text to replace) or 'pattern' (a regular expression)")
    if "old" in spec:
        old = _string(spec, "old", required=True)
        return lambda value, raw: _as_text(value).replace(old, new)
    pattern = _pattern(spec, "pattern")
    return lambda value, raw: pattern.sub(lambda _match: new, _as_text(value)[:MAX_INPUT])


def _split(spec: dict) -> Step:
    sep = _string(spec, "sep", required=True)
    index = spec.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise StepProblem("'index' must be a whole number (0 the first part, -1 the last)")

    def pick(value, raw):
        parts = _as_text(value).split(sep)
        return parts[index].strip() if -len(parts) <= index < len(parts) else ""

    return pick


def _concat(spec: dict) -> Step:
    sources = spec.get("sources")
    if not isinstance(sources, list) or not sources or len(sources) > MAX_SOURCES \
            or not all(isinstance(path, str) and path.strip() for path in sources):
        raise StepProblem(f"'sources' must be a list of 1 to {MAX_SOURCES} field names or dotted paths")
    sep = _string(spec, "sep", default=" ")

    def join(value, raw):
        parts = [_as_text(value), *(source_text(raw, path) for path in sources)]
        return sep.join(part for part in parts if part)

    return join


def _map(spec: dict) -> Step:
    values = spec.get("values")
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise StepProblem("'values' must map source values to text")
    if "fallback" not in spec:
        return lambda value, raw: values.get(_as_text(value), value)
    fallback = spec["fallback"]
    return lambda value, raw: values.get(_as_text(value), fallback)


def _default(spec: dict) -> Step:
    if "value" not in spec:
        raise StepProblem("'value' is required")
    default = spec["value"]
    return lambda value, raw: default if value is None or value == "" else value


def _date_step(spec: dict) -> Step:
    date_format = spec.get("format")
    if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
        raise StepProblem("'format' must be a strptime format such as %d.%m.%Y %H:%M (leave it out for ISO 8601)")
    return lambda value, raw: parse_date(_as_text(value), date_format) or ""


# op -> (its options, how it compiles)
STEPS: dict[str, tuple[frozenset[str], Callable[[dict], Step]]] = {
    "lower": (frozenset(), _text_step(str.lower)),
    "upper": (frozenset(), _text_step(str.upper)),
    "strip": (frozenset(), _text_step(str.strip)),
    "regex": (frozenset({"pattern", "group"}), _regex),
    "replace": (frozenset({"old", "pattern", "new"}), _replace),
    "split": (frozenset({"sep", "index"}), _split),
    "concat": (frozenset({"sources", "sep"}), _concat),
    "map": (frozenset({"values", "fallback"}), _map),
    "default": (frozenset({"value"}), _default),
    "date": (frozenset({"format"}), _date_step),
}


def _string(spec: dict, name: str, *, default: str = "", required: bool = False) -> str:
    if name not in spec:
        if required:
            raise StepProblem(f"'{name}' is required")
        return default
    value = spec[name]
    if not isinstance(value, str) or (required and not value):
        raise StepProblem(f"'{name}' must be {'non-empty ' if required else ''}text")
    return value


def _pattern(spec: dict, name: str) -> re.Pattern:
    text = spec.get(name)
    if not isinstance(text, str) or not text:
        raise StepProblem(f"'{name}' must be a regular expression")
    if len(text) > MAX_PATTERN:
        raise StepProblem(f"'{name}' is longer than {MAX_PATTERN} characters")
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise StepProblem(f"'{name}' does not compile: {exc}") from None
    if nested_repetition(text):
        raise StepProblem(f"'{name}' repeats a group that itself repeats, such as (a+)+: that can take "
                          "exponential time on some values; write it without the nested repetition")
    return compiled


_QUANTIFIER = re.compile(r"[*+?]|\{(\d*)(,?)(\d*)\}")


def nested_repetition(pattern: str) -> bool:
    """A cheap look for the shape that makes a backtracking regex take exponential time: a group that holds a
    quantifier, itself repeated ((a+)+, (\\w*\\s?)*, (x+){5}). It refuses some harmless patterns too."""
    holds = [False]  # per open group: whether a quantifier is inside
    after_holding_group = False  # the atom just read is a group with a quantifier inside
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i, after_holding_group = i + 2, False
        elif char == "[":
            i, after_holding_group = _class_end(pattern, i), False
        elif char == "(":
            holds.append(False)
            i += 2 if pattern.startswith("?", i + 1) else 1  # (?:, (?P<, lookarounds: that ? repeats nothing
            after_holding_group = False
        elif char == ")":
            inner = holds.pop() if len(holds) > 1 else False
            holds[-1] = holds[-1] or inner
            i, after_holding_group = i + 1, inner
        elif quantifier := _QUANTIFIER.match(pattern, i):
            if after_holding_group and _repeats(quantifier):
                return True
            holds[-1] = True
            i = quantifier.end()
            i += 1 if pattern.startswith(("?", "+"), i) else 0  # lazy or possessive: the same repetition
            after_holding_group = False
        else:
            i, after_holding_group = i + 1, False
    return False


def _repeats(quantifier: re.Match) -> bool:
    """Whether a quantifier allows more than one repetition."""
    text = quantifier.group()
    if text in "*+":
        return True
    if text == "?":
        return False
    low, comma, high = quantifier.groups()
    if comma:
        return not high or int(high) > 1
    return bool(low) and int(low) > 1


def _class_end(pattern: str, start: int) -> int:
    """The index after a character class [...] that opens at `start`."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


# --- values of the field's type -------------------------------------------------------------------------------


def parse_date(value: str, date_format: str | None) -> str | None:
    """A date in `date_format` (ISO 8601 without one) as ISO 8601 in UTC (naive means UTC); None for ""."""
    if not value:
        return None
    try:
        parsed = datetime.strptime(value, date_format) if date_format else datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{value[:40]!r} does not match {date_format or 'ISO 8601'}") from None
    return (parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


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
        raise RecordError(f"must be an integer from {low} to {high}, not {str(value)[:40]!r}")
    return score


def _cvss(value) -> float | None:
    if value is None or value == "":
        return None
    low, high = CVSS_RANGE
    try:
        score = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        score = None
    if score is None or not low <= score <= high:
        raise RecordError(f"must be a number from {low:g} to {high:g}, not {str(value)[:40]!r}")
    return score


def _finish(target: Target, value, date_format: str | None, fallback: str):
    """The pipeline's last value as a value of the field (RecordError when it cannot be one)."""
    kind = target.value_type
    if kind == "choice":
        if value is None or value == "":
            return "unknown" if target.key == "severity" else ""  # finding records know no empty severity
        return value if value in target.choices else fallback
    if kind == "date":
        return None if value is None else parse_date(_as_text(value), date_format)
    if kind == "score":
        return _score(value)
    if kind == "cvss":
        return _cvss(value)
    if kind == "list":
        text = _as_text(value)
        return [text] if text else []
    return _as_text(value)


def _not_a_value(target: Target, value, date_format: str | None) -> str | None:
    """Why `value` cannot be the value of the field, or None when it can."""
    if target.value_type == "choice":
        return None if value in target.choices else f"must be one of {', '.join(sorted(target.choices))}"
    if value is None:
        return None if target.nullable else "must be a string, not null"
    try:
        if target.value_type == "score":
            _score(value)
            return None
        if target.value_type == "cvss":
            _cvss(value)
            return None
    except RecordError as exc:
        return str(exc)
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if target.value_type == "date":
        try:
            parse_date(value, date_format)
        except RecordError:
            return f"{value[:40]!r} does not match {date_format or 'ISO 8601'}"
    return None


# --- rules ----------------------------------------------------------------------------------------------------


@dataclass
class Rule:
    """One field's rule, compiled: where its value starts, its steps, and how the result becomes the field's."""

    target: Target
    source: str | None
    sources: tuple[str, ...]  # every path it reads: the source and those of concat steps
    steps: list[tuple[str, Step]] = field(default_factory=list)  # (label for errors, step); label "" = shorthand
    map_at: int | None = None  # the first map step and its values, for the preview's warnings
    map_values: dict = field(default_factory=dict)
    date_format: str | None = None
    fallback: str = "unknown"  # a choice field's value when the pipeline gives one outside the vocabulary

    def reads_from(self, raw: dict) -> bool:
        return any(_lookup(raw, path) is not _ABSENT for path in self.sources)

    def value(self, raw: dict, trace: list | None = None):
        """The value this rule gives its field for one raw record; RecordError naming the field (and step)."""
        name = self.target.name
        value = source_text(raw, self.source) if self.source else ""
        for label, step in self.steps:
            if trace is not None:
                trace.append(value)
            try:
                value = step(value, raw)
            except RecordError as exc:
                raise RecordError(f"{name}: {label}: {exc}" if label else f"{name} {exc}") from None
        try:
            return _finish(self.target, value, self.date_format, self.fallback)
        except RecordError as exc:
            raise RecordError(f"{name} {exc}") from None


def _compile_rule(name: str, rule, target: Target) -> tuple[Rule | None, list[str]]:
    """The compiled rule, or None and every problem with it, each naming the field (and the step)."""
    if not isinstance(rule, dict):
        return None, [f"{name}: must be an object with 'source' (and 'steps', or transform, map, default...)"]
    problems = []
    unknown = set(rule) - OPTIONS
    if unknown:
        problems.append(f"{name}: unknown option {', '.join(sorted(unknown))}")
    source = rule.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        problems.append(f"{name}: 'source' must name a field or dotted path of the raw record")
    if "steps" in rule:
        if set(rule) & set(SHORTHAND):
            problems.append(f"{name}: use either 'steps' or the options {', '.join(SHORTHAND)}, not both "
                            "(each of them is also a step)")
            return None, problems
        compiled, step_problems = _compile_steps(name, rule["steps"], target)
    else:
        compiled, step_problems = _compile_shorthand(name, rule, target)
    problems += step_problems
    steps = rule.get("steps") if isinstance(rule.get("steps"), list) else []
    if source is None and not any(isinstance(s, dict) and s.get("op") == "concat" for s in steps):
        problems.append(f"{name}: 'source' must name a field or dotted path of the raw record (or a concat step "
                        "must name the sources)")
    if problems or compiled is None:
        return None, problems
    compiled.source = source
    compiled.sources = (source,) * bool(source) + tuple(
        path for step in steps if step["op"] == "concat" for path in step["sources"])
    return compiled, []


def _compile_shorthand(name: str, rule: dict, target: Target) -> tuple[Rule | None, list[str]]:
    """The options of a rule written before pipelines: transform, then map (its `default` the map's fallback, or
    a choice field's value outside the vocabulary), then the field's type, with date_format for a date."""
    problems = []
    compiled = Rule(target, None, ())
    if "transform" in rule:
        if rule["transform"] in TRANSFORMS:
            compiled.steps.append(("", STEPS[rule["transform"]][1]({})))
        else:
            problems.append(f"{name}: transform must be one of {', '.join(TRANSFORMS)}")
    if "map" in rule:
        mapping = rule["map"]
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            problems.append(f"{name}: 'map' must map source values to strings")
        else:
            if target.value_type == "choice":
                bad = sorted({v for v in mapping.values() if v not in target.choices})
                if bad:
                    problems.append(f"{name}: {', '.join(bad)} not one of {', '.join(sorted(target.choices))}")
            keeps = "default" not in rule and target.value_type != "choice"
            spec = {"values": mapping} if keeps else {"values": mapping, "fallback": rule.get("default", "unknown")}
            compiled.map_at, compiled.map_values = len(compiled.steps), mapping
            compiled.steps.append(("", _map(spec)))
    if "date_format" in rule:
        if target.value_type != "date":
            problems.append(f"{name}: date_format only applies to the date fields ({', '.join(DATE_FIELDS)})")
        elif not isinstance(rule["date_format"], str) or "%" not in rule["date_format"]:
            problems.append(f"{name}: date_format must be a strptime format such as %d.%m.%Y %H:%M")
            return None, problems
        compiled.date_format = rule["date_format"]
    compiled.fallback = rule.get("default", "unknown")
    problems += _shorthand_value_problems(name, rule, target)
    return compiled, problems


def _shorthand_value_problems(name: str, rule: dict, target: Target) -> list[str]:
    """The default and the map's values become the field's value as they are: each must be one."""
    problems = []
    date_format = rule.get("date_format") if isinstance(rule.get("date_format"), str) else None
    if "default" in rule:
        problem = _not_a_value(target, rule["default"], date_format)
        if problem:
            problems.append(f"{name}: default {problem}")
    if isinstance(rule.get("map"), dict) and target.value_type != "choice":
        for key, value in rule["map"].items():
            problem = isinstance(value, str) and _not_a_value(target, value, date_format)
            if problem:
                problems.append(f"{name}: map value of {key!r} {problem}")
    return problems


def _compile_steps(name: str, steps, target: Target) -> tuple[Rule | None, list[str]]:
    if not isinstance(steps, list) or not steps or len(steps) > MAX_STEPS:
        return None, [f"{name}: 'steps' must be a list of 1 to {MAX_STEPS} steps such as {{\"op\": \"lower\"}}"]
    problems = []
    compiled = Rule(target, None, ())
    for number, spec in enumerate(steps, 1):
        where = f"{name}: step {number}"
        if not isinstance(spec, dict) or spec.get("op") not in STEPS:
            op = spec.get("op") if isinstance(spec, dict) else None
            problems.append(f"{where}: {'unknown op ' + repr(op) if op else 'needs an op'} (one of "
                            f"{', '.join(STEPS)})")
            continue
        op = spec["op"]
        options, build = STEPS[op]
        unknown = set(spec) - options - {"op"}
        if unknown:
            problems.append(f"{where} ({op}): unknown option {', '.join(sorted(unknown))}")
            continue
        try:
            step = build(spec)
        except StepProblem as exc:
            problems.append(f"{where} ({op}): {exc}")
            continue
        if number == len(steps):
            problems += [f"{where} ({op}): {problem}" for problem in _last_value_problems(spec, target)]
        if op == "map" and compiled.map_at is None:
            compiled.map_at, compiled.map_values = len(compiled.steps), spec["values"]
        compiled.steps.append((f"step {number} ({op})", step))
    return (None if problems else compiled), problems


def _last_value_problems(spec: dict, target: Target) -> list[str]:
    """A map or default as the last step gives the field its value as it is: each must be one."""
    constants = []
    if spec["op"] == "default":
        constants.append(("value", spec["value"]))
    elif spec["op"] == "map":
        constants += [(f"value of {key!r}", value) for key, value in spec["values"].items()]
        if "fallback" in spec:
            constants.append(("fallback", spec["fallback"]))
    problems = []
    for label, value in constants:
        problem = _not_a_value(target, value, None)
        if problem:
            problems.append(f"{label} {problem}")
    return problems


# --- a whole mapping ------------------------------------------------------------------------------------------


def _compile(overrides, record_kind: str) -> tuple[list[Rule], list[str]]:
    if not isinstance(overrides, dict):
        return [], ["field_mapping must be an object: canonical field -> {source, steps} (or transform, map...)"]
    allowed = targets(record_kind)
    rules, problems = [], []
    for name, rule in overrides.items():
        target = allowed.get(name)
        if target is None:
            if not allowed:
                problems.append(f"{name}: {RecordKind(record_kind).label.lower()} have no fields a field mapping "
                                "can set (it applies to asset, directory and finding records)")
            else:
                problems.append(f"{name}: not a canonical field of {record_kind} records (one of "
                                f"{', '.join(allowed)})")
            continue
        compiled, rule_problems = _compile_rule(name, rule, target)
        problems += rule_problems
        if compiled is not None:
            rules.append(compiled)
    return rules, problems


def validate(overrides, record_kind: str = RecordKind.ASSET) -> list[str]:
    """Every problem with a field mapping, each naming the field (and the step) and the reason; [] when fine."""
    return _compile(overrides, record_kind)[1]


class FieldMapping:
    """A field mapping compiled for one record kind: compile once per sync, apply to every record."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules

    def __bool__(self) -> bool:
        return bool(self.rules)

    def apply(self, record, raw: dict) -> None:
        """Set the rules' fields on a MappedRecord (the connector's mapping) of this raw record."""
        if self.rules:
            record.attributes = self.apply_attributes(raw, record.attributes)

    def apply_attributes(self, raw: dict, attributes: dict) -> dict:
        result = dict(attributes)
        kind, removed = result.get("kind"), result.get("removed")
        for rule in self.rules:
            target = rule.target
            if target.kind is None:
                result[target.key] = rule.value(raw)
                continue
            if kind != target.kind or removed or (target.delta and not rule.reads_from(raw)):
                continue
            if target.nested:
                if not isinstance(result.get("asset"), dict):
                    continue
                if result["asset"] is attributes.get("asset"):
                    result["asset"] = dict(result["asset"])  # never change the connector's own object
                result["asset"][target.key] = rule.value(raw)
            else:
                result[target.key] = rule.value(raw)
        return result


def compile_mapping(overrides, record_kind: str = RecordKind.ASSET) -> FieldMapping:
    """The field mapping ready to apply; ConfigurationError (naming each problem) when it is not valid."""
    if isinstance(overrides, FieldMapping):
        return overrides
    rules, problems = _compile(overrides or {}, record_kind)
    if problems:
        raise ConfigurationError("field_mapping: " + "; ".join(problems))
    return FieldMapping(rules)


def apply(overrides: dict, raw: dict, attributes: dict, record_kind: str = RecordKind.ASSET) -> dict:
    """The attributes with a field mapping applied (for one record; a sync compiles once instead)."""
    if not overrides:
        return attributes
    return compile_mapping(overrides, record_kind).apply_attributes(raw, attributes)


def value_of(name: str, rule: dict, raw: dict, record_kind: str = RecordKind.ASSET):
    """The value one rule gives its field for one raw record; RecordError when it cannot give one."""
    return compile_mapping({name: rule}, record_kind).rules[0].value(raw)


# --- the preview's warnings -----------------------------------------------------------------------------------


def page_warnings(overrides, raws: list, record_kind: str = RecordKind.ASSET,
                  kind_of: Callable[[dict], str | None] | None = None) -> list[dict]:
    """What the preview warns about, per field, on one page of raw records: a source that no record has, a value
    map that matches no record, a rule that makes records fail (a date that does not parse...). A rule of one kind
    of record (user.*) looks only at the records of that kind, as `kind_of` tells them apart."""
    records = [raw for raw in raws if isinstance(raw, dict)]
    mapping = compile_mapping(overrides, record_kind) if overrides else None
    if not mapping or not records:
        return []
    kinds = [kind_of(raw) for raw in records] if kind_of else [None] * len(records)
    warnings = []
    for rule in mapping.rules:
        name = rule.target.name
        mine = [raw for raw, kind in zip(records, kinds, strict=True)
                if rule.target.kind is None or kind in (None, rule.target.kind)]
        if not mine:
            continue
        texts = [_as_text(_rule_start(rule, raw)) for raw in mine]
        if not any(texts):
            paths = ", ".join(repr(path) for path in rule.sources)
            warnings.append({"field": name, "problem": "source_missing", "message":
                             f"{name}: source {paths} is empty or absent in all {len(mine)} records of this page; "
                             "check the field name (dotted paths reach nested objects)."})
            continue
        failed, example, inputs = 0, "", []
        for raw in mine:
            trace: list = []
            try:
                rule.value(raw, trace)
            except RecordError as exc:
                failed += 1
                example = example or str(exc)
            if rule.map_at is not None and len(trace) > rule.map_at:
                inputs.append(_as_text(trace[rule.map_at]))
        if rule.map_at is not None:
            values = rule.map_values
            present = [text for text in inputs if text]
            if present and not any(text in values for text in present):
                seen = ", ".join(repr(text[:40]) for text in list(dict.fromkeys(present))[:5])
                warnings.append({"field": name, "problem": "map_unmatched", "message":
                                 f"{name}: no value of this page matches the map (values seen: {seen}); every "
                                 "record takes the fallback."})
        if failed:
            problem = "date_format" if rule.target.value_type == "date" else "records_fail"
            warnings.append({"field": name, "problem": problem, "message":
                             f"{name}: {failed} of {len(mine)} records would fail and be left out of a sync "
                             f"({example})."})
    return warnings


def _rule_start(rule: Rule, raw: dict) -> str:
    return " ".join(source_text(raw, path) for path in rule.sources)

