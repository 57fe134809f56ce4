"""From the sources of an asset to the asset's own values, and which sources belong together.

Values: each attribute takes the value of the highest-precedence live source that has one (precedence per
system type, SYNCPLANE_PRECEDENCE). Between sources of equal precedence (two records of one system that are one
device: a stale registration beside a fresh one) the most recent wins: the one its system saw last (the record's
own last_seen_at) or, for records without one, the one that changed last here (the source's updated_at). Full
ties go to the smaller (system type, external id). So the result depends only on the set of sources and their
times, never on the order they were synced in.

Compliance is one verdict, not three attributes: compliance_state is taken from the source that judged best
(a verdict, compliant or noncompliant, before "not applicable", before "unknown"; by compliance_state's
precedence among equals), and compliance_reasons and compliance_checked_at come from that same source, so the
reasons shown are always the reasons for the state shown.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.conf import settings

from syncplane.inventory.identity import same_device
from syncplane.inventory.models import CANONICAL_FIELDS

_DEFAULTS = {"asset_type": "other", "status": "unknown", "compliance_state": "unknown"}
_NULLABLE = {"compliance_score", "last_seen_at", "compliance_checked_at"}
_DATES = {"last_seen_at", "compliance_checked_at"}
_EMPTY = {name: _DEFAULTS.get(name, None if name in _NULLABLE else "") for name in CANONICAL_FIELDS}

# How much a compliance_state says, best first: a source that does not know never outweighs one that does.
COMPLIANCE_WEIGHT = {"compliant": 0, "noncompliant": 0, "not_applicable": 1, "unknown": 2}
# The attributes that describe compliance_state's verdict and so come from its source only.
FOLLOW_COMPLIANCE = frozenset({"compliance_reasons", "compliance_checked_at"})


def _column_value(name: str, value):
    if value is None or value == "" or value == []:
        return [] if name == "compliance_reasons" else _EMPTY[name]
    if name in _DATES and type(value) is str:  # noqa: E721
        return datetime.fromisoformat(value)
    return value


def asset_values(attributes: dict, source_id) -> tuple[list, dict]:
    """The columns of an asset with one source, in CANONICAL_FIELDS order, and where each value came from."""
    source = str(source_id)
    judged = attributes.get("compliance_state") in COMPLIANCE_WEIGHT
    values, sources = [], {}
    for name in CANONICAL_FIELDS:
        value = attributes.get(name)
        if name in FOLLOW_COMPLIANCE and not judged:  # reasons without a state explain nothing shown
            value = None
        if value is not None and value != "" and value != []:
            sources[name] = source
        values.append(_column_value(name, value))
    return values, sources


class SourceView(NamedTuple):
    """What reconciliation needs of a source."""

    id: Any
    system_type: str
    external_id: str
    attributes: dict
    keys: tuple[str, ...]  # serial, MAC, host, device keys, in the order of identity.RULES
    updated_at: datetime | None = None  # when the source last changed here

    @property
    def sort_key(self) -> tuple:
        return (self.system_type, self.external_id)

    @property
    def recency(self) -> float:
        """How recent the record is, as a timestamp: its system's own last_seen_at where the record carries one
        (validated by the sink), else when the source last changed here; -inf when neither is known."""
        seen = self.attributes.get("last_seen_at")
        if seen:
            try:
                return _timestamp(seen if isinstance(seen, datetime) else datetime.fromisoformat(seen))
            except (TypeError, ValueError):  # stored before the sink checked it
                pass
        return _timestamp(self.updated_at) if self.updated_at else float("-inf")


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # naive: UTC, as vendors send


def _rank(order: Sequence[str], system_type: str) -> int:
    return order.index(system_type) if system_type in order else len(order)


def reconciled_values(sources: list[SourceView]) -> tuple[list, dict]:
    """The columns of an asset with several sources, by precedence (the most recent first among equals), and
    where each value came from."""
    precedence = settings.SYNCPLANE_PRECEDENCE
    default = precedence["default"]
    newest_first = {source.id: -source.recency for source in sources}

    def ranked_by(order: Sequence[str]) -> list[SourceView]:
        return sorted(sources, key=lambda s: (_rank(order, s.system_type), newest_first[s.id], s.sort_key))

    by_default = ranked_by(default)
    judge = compliance_judge(ranked_by(precedence.get("compliance_state") or default))
    values, provenance = [], {}
    for name in CANONICAL_FIELDS:
        if name == "compliance_state" or name in FOLLOW_COMPLIANCE:
            ranked = [judge] if judge else []
        else:
            order = precedence.get(name)
            ranked = by_default if order is None else ranked_by(order)
        chosen = None
        for source in ranked:
            value = source.attributes.get(name)
            if value is not None and value != "" and value != []:
                chosen = value
                provenance[name] = str(source.id)
                break
        values.append(_column_value(name, chosen))
    return values, provenance


def compliance_judge(ranked: list[SourceView]) -> SourceView | None:
    """The source whose compliance verdict the asset shows: the first, in precedence order, of those that say
    the most (COMPLIANCE_WEIGHT); None when no source has a compliance_state."""
    weighed = [s for s in ranked if s.attributes.get("compliance_state") in COMPLIANCE_WEIGHT]
    return min(weighed, key=lambda s: COMPLIANCE_WEIGHT[s.attributes["compliance_state"]], default=None)


def components(sources: list[SourceView], order: tuple[int, ...]) -> list[list[SourceView]]:
    """The groups of sources linked by same_device, directly or through others; each sorted, groups in the
    order of their first member, so the split of an asset is the same whatever order it was built in."""
    ordered = sorted(sources, key=lambda s: s.sort_key)
    parent = list(range(len(ordered)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            if same_device(a.keys, ordered[j].keys, order):
                parent[find(j)] = find(i)
    groups: dict[int, list[SourceView]] = {}
    for i, source in enumerate(ordered):
        groups.setdefault(find(i), []).append(source)
    return list(groups.values())


def partition(sources: list[SourceView], order: tuple[int, ...]) -> list[list[SourceView]]:
    """The assets these sources make: linked groups (`components`), where a group whose sources carry
    different keys of the first rule (two serial numbers, by default) is split per key, because two serials are
    two devices even when a shared host name or a bad record chains them. Sources without that key join the
    first split group (in key order) they link to. A pure function of the set of sources, like `components`."""
    if not order:
        return [sources]
    first = order[0]
    result = []
    for group in components(sources, order):
        decisive = sorted({source.keys[first] for source in group if source.keys[first]})
        if len(decisive) <= 1:
            result.append(group)
            continue
        by_key = {key: [s for s in group if s.keys[first] == key] for key in decisive}
        waiting = [s for s in group if not s.keys[first]]  # already sorted: components() sorts each group
        placed = True
        while waiting and placed:
            placed = False
            for source in list(waiting):
                for key in decisive:
                    if any(same_device(source.keys, member.keys, order) for member in by_key[key]):
                        by_key[key].append(source)
                        waiting.remove(source)
                        placed = True
                        break
        result.extend(by_key.values())
        if waiting:
            result.extend(components(waiting, order))
    return result
