"""Reconciliation of one page: which asset each source belongs to, merges, splits, and asset values.

The rule is a graph: two live sources are linked when `same_device` says so (inventory.identity), and an
asset is a connected group of linked sources, split where it holds two different keys of the first rule (two
serial numbers are two devices, whatever chains them). Each page keeps that true for what it touched: a new
or re-identified source joins every asset it links to (merging them when there are several), and every
touched asset is partitioned again from its live sources (`reconcile.partition`). Both steps depend only on
the set of live sources, so syncing the same sources in any order gives the same assets and, by precedence,
the same values.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from syncplane.core.bulk import Table, chunks
from syncplane.integrations.errors import TransientError
from syncplane.inventory.identity import KEY_COLUMNS, RULES, keys_of, rule_indexes, rules, same_device
from syncplane.inventory.models import CANONICAL_FIELDS, Asset, AssetMerge, AssetSource
from syncplane.inventory.reconcile import SourceView, partition, reconciled_values


def as_uuid(value) -> uuid.UUID:
    """Ids arrive as UUIDs (new, PostgreSQL) or hex text (SQLite raw SQL): one form for comparisons."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def deciding_rule(a: tuple, b: tuple, order: tuple[int, ...]) -> tuple[str, str]:
    for index in order:
        if a[index] and b[index]:
            return RULES[index], a[index]
    return "", ""


@dataclass
class Identified:
    """Where each source of a page belongs, and what that changes for existing assets."""

    source_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    keys: dict[str, tuple] = field(default_factory=dict)
    assignment: dict[str, uuid.UUID] = field(default_factory=dict)
    parent: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # union-find of merged assets
    new_assets: set[uuid.UUID] = field(default_factory=set)
    merges: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)  # (merged asset, rule, key)
    changed_assets: set[uuid.UUID] = field(default_factory=set)
    split_candidates: set[uuid.UUID] = field(default_factory=set)

    def find(self, asset: uuid.UUID) -> uuid.UUID:
        while asset in self.parent:
            asset = self.parent[asset]
        return asset

    def asset_of(self, external_id: str) -> uuid.UUID:
        return self.find(self.assignment[external_id])

    def touched_assets(self) -> set[uuid.UUID]:
        """Existing assets whose values must be worked out again (roots only)."""
        return {self.find(a) for a in self.changed_assets | self.split_candidates} - self.new_assets



class WriteConflict(TransientError):
    """Another sync changed an asset this page was identified against (merged it, moved its sources) before this
    page could lock it: the page is planned again (AssetSink.apply), else the run retried from its checkpoint."""


def _lock_id(position: int, key: str) -> int:
    """A signed 64-bit advisory lock id for one identification key (rule position, normalised key)."""
    digest = hashlib.blake2b(f"{position}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Reconciler:
    def __init__(self, now: datetime):
        self.now = now
        self.order = rule_indexes(rules())
        self.asset_inserts = Table(Asset, ("id", *CANONICAL_FIELDS, "attribute_sources", "is_orphaned",
                                           "created_at", "updated_at"))
        self.asset_updates = Table(Asset, (*CANONICAL_FIELDS, "attribute_sources", "is_orphaned", "updated_at"))

    # --- which asset ---------------------------------------------------------------------------------------
    def identify(self, plan) -> Identified:
        found = Identified()
        pending = []  # (external_id, keys, source id, current asset or None), in page order
        for record, _fp in plan.creates:
            keys = keys_of(record.attributes)
            source_id = uuid.uuid4()
            found.source_ids[record.external_id] = source_id
            found.keys[record.external_id] = keys
            pending.append((record.external_id, keys, source_id, None))
        for record, _fp, row in plan.updates:
            keys = keys_of(record.attributes)
            source_id, asset_id = as_uuid(row.id), as_uuid(row.asset_id)
            found.source_ids[record.external_id] = source_id
            found.keys[record.external_id] = keys
            found.changed_assets.add(asset_id)
            if keys != row.keys or row.deleted_at is not None:  # new identifiers, or back from deletion
                pending.append((record.external_id, keys, source_id, asset_id))
                found.split_candidates.add(asset_id)
            else:
                found.assignment[record.external_id] = asset_id
        concurrent = connection.vendor == "postgresql"  # SQLite takes one writer at a time (IMMEDIATE)
        if not pending:
            if concurrent:
                self._hold(found.changed_assets, {})
            return found
        moving = {source_id for _eid, _keys, source_id, _asset in pending}
        if concurrent:
            self._lock_keys([keys for _eid, keys, _sid, _asset in pending])
        index = self._candidates([keys for _eid, keys, _sid, _asset in pending], exclude=moving)
        read = {source: (asset, keys) for entries in index.values() for source, asset, keys in entries}
        for external_id, keys, source_id, current in pending:
            linked: dict[uuid.UUID, tuple[str, str]] = {}
            for position in self.order:
                for other_source, other_asset, other_keys in index.get((position, keys[position]), ()):
                    if other_source != source_id and same_device(keys, other_keys, self.order):
                        linked.setdefault(found.find(other_asset), deciding_rule(keys, other_keys, self.order))
            # A re-identified source follows its links; with none it stays where it was (its old companions
            # are split off by the check of that asset if it no longer hangs together with them).
            targets = set(linked) or ({found.find(current)} if current else set())
            if not targets:
                asset = uuid.uuid4()
                found.new_assets.add(asset)
            else:
                # Keep an asset users already know when there is one; any fixed choice gives the same groups.
                asset = min(targets, key=lambda a: (a in found.new_assets, str(a)))
                for other in targets - {asset}:
                    found.parent[other] = asset
                    if other not in found.new_assets:
                        found.merges.append((other, *linked.get(other, ("", ""))))
                found.changed_assets.add(asset)
            found.assignment[external_id] = asset
            for position in self.order:
                if keys[position]:
                    index.setdefault((position, keys[position]), []).append((source_id, asset, keys))
        if concurrent:
            self._hold(found.changed_assets | found.split_candidates | {a for a, _keys in read.values()}, read)
        return found

    # --- several workers at once (PostgreSQL) ---------------------------------------------------------------
    # Two syncs writing pages that share a device must not both miss the other's uncommitted sources (two assets
    # for one device) nor rewrite an asset the other has just merged. Each page therefore locks, before reading
    # candidates, every identification key it brings (advisory locks held to the commit, taken in one sorted
    # order), and then the existing assets it will write (row locks, in id order), and checks that what it read
    # of them still holds. Sorted orders keep two pages from waiting on each other in a cycle.
    def _lock_keys(self, key_sets: list[tuple]) -> None:
        wanted = sorted({_lock_id(p, keys[p]) for keys in key_sets for p in self.order if keys[p]})
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(%s::bigint[]) AS u(k) "
                           "ORDER BY k) AS ordered", [wanted])

    def _hold(self, asset_ids: set, read: dict) -> None:
        """Lock the existing assets of the page; `read`: source -> (asset, keys) as the candidates query saw it."""
        existing = sorted(asset_ids, key=str)
        if not existing:
            return
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT merged_into_id IS NOT NULL FROM {Asset._meta.db_table} "  # noqa: S608
                           "WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [existing])
            conflict = any(merged for (merged,) in cursor.fetchall())
            if read and not conflict:
                cursor.execute(
                    f"SELECT id, asset_id, serial_key, mac_key, host_key, device_key "  # noqa: S608
                    f"FROM {AssetSource._meta.db_table} WHERE deleted_at IS NULL AND id = ANY(%s)",
                    [list(read)],
                )
                now = {as_uuid(s): (as_uuid(a), tuple(k)) for s, a, *k in cursor.fetchall()}
                conflict = any(now.get(source) != seen for source, seen in read.items())
        if conflict:
            raise WriteConflict("another sync changed the assets of this page meanwhile")

    def _candidates(self, key_sets: list[tuple], exclude: set) -> dict[tuple[int, str], list[tuple]]:
        """Live sources sharing a key with the page's records: (rule position, key) -> [(source, asset, keys)]."""
        index: dict[tuple[int, str], list[tuple]] = {}
        seen = set()
        table = AssetSource._meta.db_table
        with connection.cursor() as cursor:
            for position in self.order:
                column = KEY_COLUMNS[RULES[position]]
                wanted = sorted({keys[position] for keys in key_sets if keys[position]})
                for part in chunks(wanted):
                    marks = ", ".join(["%s"] * len(part))
                    cursor.execute(
                        f"SELECT id, asset_id, serial_key, mac_key, host_key, device_key FROM {table} "  # noqa: S608
                        f"WHERE deleted_at IS NULL AND {column} IN ({marks})",
                        part,
                    )
                    for source_id, asset_id, *keys in cursor.fetchall():
                        source_id = as_uuid(source_id)
                        if source_id in exclude or source_id in seen:
                            continue
                        seen.add(source_id)
                        entry = (source_id, as_uuid(asset_id), tuple(keys))
                        for other in self.order:
                            if keys[other]:
                                index.setdefault((other, keys[other]), []).append(entry)
        return index

    # --- merges --------------------------------------------------------------------------------------------
    def merge(self, found: Identified) -> None:
        """Existing assets found to be one device: their sources move, the merged asset stays as evidence."""
        if not found.merges:
            return
        moves = [(found.find(merged), merged) for merged, _rule, _key in found.merges]
        sources = Table(AssetSource, ("asset_id",))
        assets = Table(Asset, ("merged_into_id", "is_orphaned", "updated_at"))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {AssetSource._meta.db_table} SET asset_id = %s WHERE asset_id = %s",  # noqa: S608
                [[sources.adapt_value("asset_id", into), sources.adapt_value("asset_id", merged)]
                 for into, merged in moves],
            )
        assets.update_by_pk((merged, into, False, self.now) for into, merged in moves)
        AssetMerge.objects.bulk_create(
            AssetMerge(into_id=found.find(merged), merged_id=merged, rule=rule, key=key[:255],
                       merged_at=self.now)
            for merged, rule, key in found.merges
        )

    # --- values and splits ---------------------------------------------------------------------------------
    def refresh(self, asset_ids) -> None:
        """Work out again the values of these assets from their live sources, split those whose sources are
        no longer one device (`partition`), and flag those with no live source left."""
        asset_ids = {as_uuid(a) for a in asset_ids}
        if not asset_ids:
            return
        groups: dict[uuid.UUID, list[SourceView]] = {}
        for part in chunks(sorted(asset_ids, key=str)):
            rows = AssetSource.objects.filter(asset_id__in=part, deleted_at__isnull=True).values_list(
                "id", "asset_id", "external_system__system_type", "external_id", "attributes", "updated_at",
                "serial_key", "mac_key", "host_key", "device_key",
            )
            for source_id, asset_id, system_type, external_id, attributes, updated_at, *keys in rows:
                groups.setdefault(asset_id, []).append(
                    SourceView(source_id, system_type, external_id, attributes, tuple(keys), updated_at)
                )
        updates, inserts, moves = [], [], []
        for asset_id in asset_ids:
            views = groups.get(asset_id)
            if not views:
                continue
            parts = partition(views, self.order) if len(views) > 1 else [views]
            for number, part in enumerate(parts):
                values, provenance = reconciled_values(part)
                if number == 0:
                    updates.append((asset_id, *values, provenance, False, self.now))
                else:
                    new_id = uuid.uuid4()
                    inserts.append((new_id, *values, provenance, False, self.now, self.now))
                    moves.extend((source.id, new_id) for source in part)
        self.asset_inserts.insert(inserts)
        self.asset_updates.update_by_pk(updates)
        if moves:
            Table(AssetSource, ("asset_id",)).update_by_pk(moves)
        orphans = [a for a in asset_ids if a not in groups]
        for part in chunks(orphans):
            Asset.objects.filter(id__in=part).update(is_orphaned=True, updated_at=self.now)
