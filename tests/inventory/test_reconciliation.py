"""Reconciliation: sources of several systems that describe one device become one asset."""

from collections import Counter
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syncplane.integrations.base import MappedRecord
from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.identity import host_key, serial_key
from syncplane.inventory.models import Asset, AssetMerge, AssetSource
from syncplane.inventory.sink import AssetSink

pytestmark = pytest.mark.django_db

TYPES = ("servicenow_cmdb", "jira_assets", "freshservice_cmdb")


@pytest.fixture
def systems(db):
    return {
        system_type: ExternalSystem.objects.create(
            name=system_type, system_type=system_type, category="cmdb", base_url="https://example.com"
        )
        for system_type in TYPES
    }


def ingest(system, records: dict[str, dict]):
    """One page of mapped records into the inventory, as the sync engine writes it."""
    sink = AssetSink(system.pk)
    mapped = [MappedRecord(external_id, attributes, raw={"id": external_id}) for external_id, attributes in
              records.items()]
    with transaction.atomic():
        sink.apply(sink.plan(mapped), timezone.now())


def delete(system, external_ids):
    with transaction.atomic():
        AssetSink(system.pk).mark_deleted(list(external_ids), timezone.now())


def live_assets():
    return Asset.objects.filter(merged_into__isnull=True, sources__isnull=False).distinct()


def groups() -> set[frozenset]:
    """The inventory as sets of (system type, external id), one set per live asset."""
    result = set()
    for asset in live_assets().prefetch_related("sources__external_system"):
        members = frozenset((s.external_system.system_type, s.external_id)
                            for s in asset.sources.all() if s.deleted_at is None)
        if members:
            result.add(members)
    return result


def asset_of(system, external_id) -> Asset:
    return AssetSource.objects.get(external_system=system, external_id=external_id).asset


def test_normalised_keys():
    assert serial_key("  5cg1234xyz ") == "5CG1234XYZ"
    assert serial_key("VMware-42 1a  2b") == "VMWARE-42 1A 2B"
    for placeholder in ("0", "N/A", "Default string", "To be filled by O.E.M.", "000000", "xxxxxxx", " "):
        assert serial_key(placeholder) == "", placeholder
    assert host_key("LT-BER-0142") == host_key(None, "lt-ber-0142.acme.example.") == "lt-ber-0142"
    assert host_key("localhost") == ""


def test_the_same_device_in_three_systems_is_one_asset_with_three_sources(systems):
    ingest(systems["servicenow_cmdb"], {"sn-1": {"name": "LT-1", "serial_number": "5CG1234XYZ"}})
    ingest(systems["jira_assets"], {"ja-1": {"name": "Laptop 1", "serial_number": " 5cg1234xyz"}})
    ingest(systems["freshservice_cmdb"], {"fs-1": {"name": "lt-1", "serial_number": "5CG1234XYZ "}})
    assert groups() == {frozenset({("servicenow_cmdb", "sn-1"), ("jira_assets", "ja-1"),
                                   ("freshservice_cmdb", "fs-1")})}
    asset = asset_of(systems["jira_assets"], "ja-1")
    assert asset.name == "LT-1"  # ServiceNow comes first by default
    assert asset.attribute_sources["name"] == str(
        AssetSource.objects.get(external_id="sn-1").pk
    )


def test_placeholder_serials_never_join_unrelated_devices(systems):
    ingest(systems["servicenow_cmdb"], {"a": {"serial_number": "To be filled by O.E.M.", "hostname": "alpha"},
                                        "b": {"serial_number": "To be filled by O.E.M.", "hostname": "beta"}})
    ingest(systems["jira_assets"], {"c": {"serial_number": "0", "hostname": "gamma"}})
    assert len(groups()) == 3


def test_mac_then_hostname_fallbacks(systems):
    ingest(systems["servicenow_cmdb"], {"a": {"mac_address": "00:1a:2b:3c:4d:5e", "hostname": "one"},
                                        "b": {"hostname": "web-01", "fqdn": "web-01.acme.example"}})
    ingest(systems["jira_assets"], {"c": {"mac_address": "00-1A-2B-3C-4D-5E"}, "d": {"hostname": "WEB-01"}})
    assert groups() == {frozenset({("servicenow_cmdb", "a"), ("jira_assets", "c")}),
                        frozenset({("servicenow_cmdb", "b"), ("jira_assets", "d")})}


def test_a_different_serial_outweighs_a_shared_hostname(systems):
    ingest(systems["servicenow_cmdb"], {"a": {"serial_number": "SER-AAA", "hostname": "reused"}})
    ingest(systems["jira_assets"], {"b": {"serial_number": "SER-BBB", "hostname": "reused"}})
    assert len(groups()) == 2


def test_precedence_per_attribute_and_its_override(systems, settings):
    ingest(systems["jira_assets"], {"j": {"serial_number": "SER-1", "location": "Jira room", "model": "X1"}})
    ingest(systems["servicenow_cmdb"], {"s": {"serial_number": "SER-1", "location": "SN room"}})
    asset = asset_of(systems["jira_assets"], "j")
    assert asset.location == "SN room"  # ServiceNow first by default
    assert asset.model == "X1"  # only Jira has one
    assert asset.attribute_sources["model"] == str(AssetSource.objects.get(external_id="j").pk)

    settings.SYNCPLANE_PRECEDENCE = {**settings.SYNCPLANE_PRECEDENCE, "location": ["jira_assets"]}
    ingest(systems["servicenow_cmdb"], {"s": {"serial_number": "SER-1", "location": "SN room 2"}})
    asset.refresh_from_db()
    assert asset.location == "Jira room"


# --- within one system, the most recent record wins ----------------------------------------------------------

# Two of these are one instant written two ways (08:00Z, 09:00+01:00): a tie, which the external id decides.
SEEN = ["2024-01-01T00:00:00+00:00", "2024-06-01T12:00:00", "2025-01-01T08:00:00+00:00", "2025-01-01T09:00:00+01:00"]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.sampled_from(SEEN), min_size=2, max_size=5), data=st.data())
def test_within_one_system_the_most_recently_seen_record_wins(systems, times, data):
    """Registrations of one device in one system (same serial), each seen at its own time, synced in any order
    and any pages: every value comes from the one seen last, whatever its external id."""
    records = {f"reg-{i}": {"serial_number": "5CG-ONE", "name": f"name-{i}", "last_seen_at": seen}
               for i, seen in enumerate(times)}
    # The latest instant; among equal ones, the smaller external id.
    newest = min(records, key=lambda eid: (-_instant(records[eid]["last_seen_at"]), eid))
    order = data.draw(st.permutations(list(records)))
    cut = data.draw(st.integers(min_value=1, max_value=len(order)))
    with transaction.atomic():
        for page in (order[:cut], order[cut:]):
            if page:
                ingest(systems["servicenow_cmdb"], {eid: records[eid] for eid in page})
        assert groups() == {frozenset(("servicenow_cmdb", eid) for eid in records)}
        asset = asset_of(systems["servicenow_cmdb"], "reg-0")
        assert asset.name == records[newest]["name"]
        assert asset.attribute_sources["name"] == str(AssetSource.objects.get(external_id=newest).pk)
        transaction.set_rollback(True)


def _instant(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # naive: UTC


def test_without_a_last_seen_time_the_record_that_changed_last_wins(systems):
    sn = systems["servicenow_cmdb"]
    ingest(sn, {"a-stale": {"serial_number": "5CG-TWO", "name": "stale", "location": "Old office"}})
    ingest(sn, {"b-fresh": {"serial_number": "5CG-TWO", "name": "fresh"}})
    asset = asset_of(sn, "a-stale")
    # The fresh registration's values win although its external id sorts after; it has no location, so the
    # stale one still gives that.
    assert (asset.name, asset.location) == ("fresh", "Old office")
    ingest(sn, {"a-stale": {"serial_number": "5CG-TWO", "name": "stale", "location": "Old office"}})  # unchanged
    asset.refresh_from_db()
    assert asset.name == "fresh"
    ingest(sn, {"a-stale": {"serial_number": "5CG-TWO", "name": "revived", "location": "Old office"}})
    asset.refresh_from_db()
    assert asset.name == "revived"  # now the one that changed last


def test_a_merge_keeps_every_source_and_records_the_merge(systems):
    ingest(systems["servicenow_cmdb"], {"s": {"serial_number": "SER-9", "mac_address": ""}})
    ingest(systems["jira_assets"], {"j": {"mac_address": "aa:bb:cc:00:11:22"}})
    assert len(groups()) == 2
    first, second = asset_of(systems["servicenow_cmdb"], "s"), asset_of(systems["jira_assets"], "j")
    # A third source carries both identifiers: the two assets are one device.
    ingest(systems["freshservice_cmdb"], {"f": {"serial_number": "ser-9", "mac_address": "AA-BB-CC-00-11-22"}})
    assert len(groups()) == 1
    merge = AssetMerge.objects.get()
    assert {merge.into_id, merge.merged_id} == {first.pk, second.pk}
    merged = Asset.objects.get(pk=merge.merged_id)
    assert merged.merged_into_id == merge.into_id  # kept, never lost
    assert AssetSource.objects.filter(asset_id=merge.into_id).count() == 3


def test_a_source_that_changes_serial_moves(systems):
    ingest(systems["servicenow_cmdb"], {"s": {"serial_number": "OLD-1"}, "t": {"serial_number": "NEW-2"}})
    ingest(systems["jira_assets"], {"j": {"serial_number": "OLD-1"}})
    assert asset_of(systems["jira_assets"], "j") == asset_of(systems["servicenow_cmdb"], "s")
    ingest(systems["jira_assets"], {"j": {"serial_number": "NEW-2"}})
    assert asset_of(systems["jira_assets"], "j") == asset_of(systems["servicenow_cmdb"], "t")
    assert asset_of(systems["servicenow_cmdb"], "s") != asset_of(systems["servicenow_cmdb"], "t")
    assert len(groups()) == 2


def test_a_deleted_source_leaves_and_an_asset_without_sources_is_flagged(systems):
    ingest(systems["servicenow_cmdb"], {"s": {"serial_number": "SER-5", "name": "from sn"}})
    ingest(systems["jira_assets"], {"j": {"serial_number": "SER-5", "name": "from jira"}})
    asset = asset_of(systems["jira_assets"], "j")
    assert asset.name == "from sn"
    delete(systems["servicenow_cmdb"], ["s"])
    asset.refresh_from_db()
    assert asset.name == "from jira" and not asset.is_orphaned
    delete(systems["jira_assets"], ["j"])
    asset.refresh_from_db()
    assert asset.is_orphaned and Asset.objects.filter(pk=asset.pk).exists()


def test_a_deletion_that_held_two_sources_together_splits_them(systems):
    ingest(systems["servicenow_cmdb"], {"a": {"serial_number": "SER-A"}})
    ingest(systems["freshservice_cmdb"], {"c": {"mac_address": "aa:aa:aa:aa:aa:01"}})
    ingest(systems["jira_assets"], {"b": {"serial_number": "SER-A", "mac_address": "aa:aa:aa:aa:aa:01"}})
    assert len(groups()) == 1
    delete(systems["jira_assets"], ["b"])
    assert groups() == {frozenset({("servicenow_cmdb", "a")}), frozenset({("freshservice_cmdb", "c")})}


def test_a_record_chaining_two_serials_does_not_merge_two_devices(systems):
    """A duplicate record with one device's serial and another's host name links both; serials still rule."""
    ingest(systems["servicenow_cmdb"], {"vm": {"serial_number": "VMWARE-42 AA", "hostname": "vm-1"},
                                        "lt": {"serial_number": "5CG-LAPTOP", "hostname": "lt-1"}})
    ingest(systems["jira_assets"], {"lt-no-serial": {"hostname": "lt-1"}})
    ingest(systems["freshservice_cmdb"], {"bad-copy": {"serial_number": "vmware-42 aa", "hostname": "lt-1"}})
    assert groups() == {
        frozenset({("servicenow_cmdb", "vm"), ("freshservice_cmdb", "bad-copy")}),
        frozenset({("servicenow_cmdb", "lt"), ("jira_assets", "lt-no-serial")}),
    }


# --- order independence ----------------------------------------------------------------------------------

SERIALS = st.sampled_from(["", "S1", "s1 ", "S2", "S3", "N/A", "To be filled by O.E.M."])
MACS = st.sampled_from(["", "aa:00:00:00:00:01", "AA-00-00-00-00-02", "aa:00:00:00:00:03"])
HOSTS = st.sampled_from(["", "h1", "H2", "h3.acme.example", "localhost"])
NAMES = st.sampled_from(["", "alpha", "beta", "gamma"])
# Every record carries its system's last-seen time: the tie-break between sources of one system depends on it
# (else on when a source last changed here, which is what the order of syncs decides).
RECORD = st.fixed_dictionaries({"serial_number": SERIALS, "mac_address": MACS, "hostname": HOSTS, "name": NAMES,
                                "location": NAMES, "last_seen_at": st.sampled_from(SEEN)})
SOURCES = st.lists(st.tuples(st.sampled_from(TYPES), RECORD), min_size=1, max_size=12)


def inventory_snapshot() -> set:
    """Each live asset as (its members, its values): what must not depend on the order of syncs."""
    snapshot = set()
    for asset in live_assets().prefetch_related("sources__external_system"):
        members = frozenset((s.external_system.system_type, s.external_id)
                            for s in asset.sources.all() if s.deleted_at is None)
        if members:
            snapshot.add((members, asset.name, asset.location, asset.serial_number, asset.mac_address))
    return snapshot


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sources=SOURCES, data=st.data())
def test_reconciliation_does_not_depend_on_the_order_of_syncs(systems, sources, data):
    by_system: dict[str, dict[str, dict]] = {t: {} for t in TYPES}
    counter = Counter()
    for system_type, attributes in sources:
        counter[system_type] += 1
        by_system[system_type][f"{system_type}-{counter[system_type]}"] = attributes
    # First: each system in one page, in the usual order. Then: every record a page of its own, all systems
    # interleaved in a random order.
    records = [(t, eid, attrs) for t in TYPES for eid, attrs in by_system[t].items()]
    shuffled = data.draw(st.permutations(records))
    snapshots = []
    for pages in ([(t, by_system[t]) for t in TYPES if by_system[t]],
                  [(t, {eid: attrs}) for t, eid, attrs in shuffled]):
        with transaction.atomic():
            for system_type, page in pages:
                ingest(systems[system_type], page)
            snapshots.append(inventory_snapshot())
            transaction.set_rollback(True)
    assert snapshots[0] == snapshots[1]
