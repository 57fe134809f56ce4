"""The sink contract: where the sync engine writes each record kind.

A domain app owns the models a record kind lands in, so it owns the sink too, and registers it from its
`AppConfig.ready` (`register_sink(RecordKind.ASSET, AssetSink)`), just as connectors register with the
registry. The engine asks `sink_for(kind, system_id)` and never names a domain app.

A sink, per page: `validate` one record (raise RecordError; it also makes sure the record fits the columns it is
written to, so the database never refuses a page for one record's value), `plan` the page against the existing
rows in one query (the plan counts created / updated / unchanged / deleted, one count per `PlannedChange` it
lists, and the engine writes one outcome per change), `apply` the plan. After a complete full pass: `unseen`,
`mark_seen`, `mark_deleted`; `count_unseen` says which live records are not among some ids (a dry run's full
pass, or a connector's `list_ids` after an incremental one); `live` says which of some ids are live (a directory
asks it of its devices). `finish` is the after-pass hook (directory roles).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from syncplane.integrations.base import MappedRecord
from syncplane.integrations.errors import RecordError


def fingerprint(attributes: dict) -> str:
    """Equal exactly when the mapped attributes are equal."""
    return hashlib.blake2b(orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def check_external_id(external_id, limit: int) -> None:
    """A record's id is its key: one that is empty, longer than its column or holds a NUL is not cleaned up, the
    record fails (RecordError)."""
    if not isinstance(external_id, str) or not external_id or len(external_id) > limit or "\x00" in external_id:
        raise RecordError(f"the record's external id is empty, longer than {limit} characters or holds a NUL "
                          "character")


@dataclass
class PlannedChange:
    """One record's planned action and field-level diff ({field: [before, after]}); kept as dry-run evidence."""

    external_id: str
    action: str
    changes: dict | None = None


class PagePlan(Protocol):
    created: int
    updated: int  # updates and restores
    unchanged: int
    deleted: int  # records the source says are gone (a delta's removals)
    changes: list[PlannedChange]


class Sink(Protocol):
    def validate(self, record: MappedRecord) -> None: ...
    def plan(self, records: list[MappedRecord]) -> Any: ...
    def apply(self, plan: Any, now: datetime) -> None: ...
    def unseen(self, seen_before: datetime) -> list[str]: ...
    def live(self, external_ids: list[str]) -> list[str]: ...
    def mark_seen(self, external_ids: list[str], now: datetime) -> None: ...
    def mark_deleted(self, external_ids: list[str], now: datetime) -> None: ...
    def count_unseen(self, seen_external_ids: set[str]) -> list[str]: ...
    def finish(self, *, complete_full_pass: bool, dry_run: bool, now: datetime,
               pass_started_at: datetime | None = None) -> None: ...


_sinks: dict[str, Callable[[int], Sink]] = {}


def register_sink(record_kind: str, factory: Callable[[int], Sink]) -> None:
    """`factory(external_system_id)` builds the sink of one run."""
    if _sinks.get(record_kind, factory) is not factory:
        raise RuntimeError(f"two sinks claim record kind {record_kind!r}")
    _sinks[record_kind] = factory


def sink_for(record_kind: str, external_system_id: int) -> Sink:
    try:
        factory = _sinks[record_kind]
    except KeyError:
        raise ValueError(f"no sink for record kind {record_kind!r}") from None
    return factory(external_system_id)
