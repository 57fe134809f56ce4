"""Jira Assets end to end: connector -> sync engine -> inventory, against the simulator over HTTP."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.integrations.choices import AuthType, RecordStatus, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.errors import ConfigurationError
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome, SyncState
from syncplane.integrations.registry import build_connector, get_connector_class
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import Asset, AssetSource
from syncplane_simulators.jira_assets import DEFAULT_WORKSPACE_ID, JiraAssetsSimulator
from syncplane_simulators.server import SimulatorServer
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db

RECORDS = 240
TYPES = ["Laptop", "Desktop", "Server", "Virtual Machine", "Tablet"]


@pytest.fixture
def jira_sim():
    return JiraAssetsSimulator(records=RECORDS, seed=7)


@pytest.fixture
def server(jira_sim):
    with SimulatorServer(records=RECORDS, seed=7, extra_apps={"/jira": jira_sim}) as running:
        yield running


@pytest.fixture
def jira(server, db):
    """A Jira Assets Cloud integration: site and Assets API both on the simulator, workspace discovered."""
    return ExternalSystem.objects.create(
        name="Jira Assets test",
        system_type=SystemType.JIRA_ASSETS,
        category="cmdb",
        base_url=f"{server.url}/jira",
        auth_type=AuthType.BASIC,
        credentials={"username": "syncplane@acme.example", "password": to_reference("demo-jira-token")},
        config={"object_types": TYPES, "assets_api_base": f"{server.url}/jira", "page_size": 50},
    )


def sync(system, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, **kwargs).pk))


def test_full_sync_discovers_the_workspace_and_brings_in_every_object(jira, jira_sim):
    log = sync(jira)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_created, log.records_failed) == (RECORDS, RECORDS, 0)
    assert log.pages == -(-RECORDS // 50)
    assert log.total_expected == RECORDS
    assert AssetSource.objects.filter(external_system=jira, deleted_at__isnull=True).count() == RECORDS
    assert jira_sim.stats["aql_queries"] == log.pages
    state = SyncState.objects.get(external_system=jira)
    assert state.checkpoint is None and state.cursor.startswith("2024-01-08T")


def test_mapped_values_reach_the_asset(jira, jira_sim):
    sync(jira)
    source = AssetSource.objects.select_related("asset").get(external_system=jira,
                                                              external_id=jira_sim.object_id_for(0))
    asset, values = source.asset, jira_sim.object_values(0)
    assert asset.name == values["Name"][0]
    assert asset.hostname == values["Hostname"][0]
    assert asset.manufacturer == values["Manufacturer"][0]  # the referenced object's label
    assert asset.asset_type in {"laptop", "desktop", "server", "virtual_machine", "tablet"}
    assert asset.status in {"active", "in_stock", "in_maintenance", "retired", "disposed", "unknown"}
    # Names were resolved from objectTypeAttributeId and kept in the stored payload.
    names = {a["objectTypeAttribute"]["name"] for a in source.raw_payload["attributes"]}
    assert {"Name", "Hostname"} <= names
    statuses = set(Asset.objects.values_list("status", flat=True))
    assert "active" in statuses and len(statuses) > 1


def test_shared_devices_join_the_servicenow_assets(jira, server, db):
    servicenow = ExternalSystem.objects.create(
        name="ServiceNow", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
        base_url=f"{server.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": 100},
    )
    assert sync(servicenow).status == RunStatus.SUCCESS
    assert sync(jira).status == RunStatus.SUCCESS
    joined = Asset.objects.filter(sources__external_system=jira).filter(sources__external_system=servicenow)
    # 60 % of the Jira objects are ServiceNow's devices; most of them join despite case, blanks and placeholders.
    assert int(RECORDS * 0.6 * 0.8) <= joined.distinct().count() <= int(RECORDS * 0.6)


def test_resync_with_nothing_changed_updates_nothing(jira):
    sync(jira)
    log = sync(jira)
    assert (log.records_created, log.records_updated, log.records_unchanged) == (0, 0, RECORDS)


def test_incremental_reads_only_what_changed(jira, jira_sim):
    sync(jira)
    touched = jira_sim.touch(count=5)
    log = sync(jira, mode="incremental")
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_updated == 5 and log.records_created == 0
    assert log.records_read <= 6  # the boundary object (== cursor) comes back, unchanged
    changed = set(SyncRecordOutcome.objects.filter(sync_log=log, action="update").values_list("external_id",
                                                                                              flat=True))
    assert changed == set(touched)
    again = sync(jira, mode="incremental")
    assert (again.records_updated, again.records_created) == (0, 0)
    assert again.records_read <= 5


def test_incremental_aql_uses_minutes_and_an_overlap(jira, jira_sim):
    connector = build_connector(jira)
    from datetime import UTC, datetime

    query = connector.aql(datetime(2024, 5, 18, 7, 1, 44, tzinfo=UTC))
    assert query == ('objectType in ("Laptop", "Desktop", "Server", "Virtual Machine", "Tablet") '
                     'AND Updated > "2024-05-18 06:56" order by Updated asc')


def test_full_sync_marks_vanished_objects_deleted(jira, jira_sim):
    sync(jira)
    gone = jira_sim.delete(count=3)
    log = sync(jira)
    assert log.status == RunStatus.SUCCESS
    assert log.records_deleted == 3
    deleted = AssetSource.objects.filter(external_system=jira, deleted_at__isnull=False)
    assert set(deleted.values_list("external_id", flat=True)) == set(gone)
    jira_sim.delete(count=2)
    assert sync(jira, mode="incremental").records_deleted == 0


def test_an_object_moved_by_a_touch_mid_run_is_not_marked_deleted(jira, jira_sim):
    sync(jira)

    def touch_an_early_object(log):
        if log.pages == 1:
            jira_sim.touch(indices=[0])  # moves to the end of `order by Updated`: startAt skips one object

    log = assert_counters_match_outcomes(run_sync(start_sync(jira).pk, progress=touch_an_early_object))
    assert log.status == RunStatus.SUCCESS
    assert log.records_deleted == 0  # the skipped object is confirmed by an objectId lookup


def test_rate_limited_searches_are_retried_after_retry_after(jira, jira_sim):
    jira_sim.inject_fault("status", status=429, retry_after=1, count=2, path="/object/aql")
    log = sync(jira)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_created == RECORDS
    assert jira_sim.stats["faults_fired"] == 2


def test_malformed_objects_end_partial_with_a_reason(jira, jira_sim):
    sync(jira)
    jira_sim.delete(count=1)
    jira_sim.inject_fault("malformed", indices=[3, 7, 11])
    log = sync(jira)
    assert log.status == RunStatus.PARTIAL
    assert log.records_failed == 3
    assert log.records_deleted == 0  # a partial pass proves nothing about deletions
    errors = SyncRecordOutcome.objects.filter(sync_log=log, status=RecordStatus.FAILED)
    reasons = sorted(e.reason for e in errors)
    assert any("no numeric id" in r for r in reasons)
    assert any("updated" in r for r in reasons)
    assert any("not a list" in r for r in reasons)
    assert all(e.raw_payload for e in errors)
    assert {e.external_id for e in errors} >= {jira_sim.object_id_for(11)}


def test_names_come_from_the_type_attributes_endpoint_when_the_page_has_none(jira, jira_sim):
    jira_sim.type_attributes_in_search = False
    log = sync(jira)
    assert log.status == RunStatus.SUCCESS and log.records_created == RECORDS
    assert 1 <= jira_sim.stats["attribute_requests"] <= 5  # once per object type, not per page
    assert Asset.objects.exclude(hostname="").count() == RECORDS


def test_bad_credentials_fail_permanently_with_a_clear_reason(jira):
    jira.credentials = {"username": "syncplane@acme.example", "password": to_reference("wrong-token")}
    jira.save()
    log = sync(jira)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "401" in log.error_summary and "not authenticated" in log.error_summary
    assert "wrong-token" not in log.error_summary


def test_no_assets_permission_is_a_permanent_403(jira, jira_sim):
    jira_sim.permitted = False
    log = sync(jira)
    assert log.status == RunStatus.FAILED and "403" in log.error_summary


def test_a_site_without_assets_says_so(jira, jira_sim):
    jira_sim.assets_enabled = False
    log = sync(jira)
    assert log.status == RunStatus.FAILED and "no Assets workspace" in log.error_summary


def test_a_configured_workspace_skips_discovery(jira, jira_sim):
    jira.config = {**jira.config, "workspace_id": DEFAULT_WORKSPACE_ID}
    jira.save()
    connector = build_connector(jira)
    result = connector.test_connection()
    assert result.ok and str(RECORDS) in result.message
    assert jira_sim.stats["requests"] == 1  # no discovery call


def test_connection_test_reports_the_workspace(jira):
    with build_connector(jira) as connector:
        result = connector.test_connection()
    assert result.ok and DEFAULT_WORKSPACE_ID in result.message
    assert result.details["total"] == RECORDS


def test_bad_aql_fails_with_the_servers_reason(jira):
    jira.config = {**jira.config, "aql": "Colour = Blue"}
    jira.save()
    log = sync(jira)
    assert log.status == RunStatus.FAILED and "400" in log.error_summary
    assert "no attribute named Colour" in log.error_summary


def test_only_the_configured_object_types_are_read(jira, jira_sim):
    jira.config = {**jira.config, "object_types": ["Server"]}
    jira.save()
    log = sync(jira)
    servers = sum(1 for i in range(RECORDS) if jira_sim.object_type(i)[1] == "Server")
    assert log.records_created == servers and 0 < servers < RECORDS
    assert set(Asset.objects.values_list("asset_type", flat=True)) == {"server"}


def test_killed_run_resumes_from_its_change_marker(jira):
    first = start_sync(jira)

    class Killed(BaseException):
        pass

    def die(log):
        if log.pages == 2:
            raise Killed

    with pytest.raises(Killed):
        run_sync(first.pk, progress=die)
    IntegrationSyncLog.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    second = sync(jira)
    assert second.status == RunStatus.SUCCESS and second.resumed_from_id == first.pk
    assert RECORDS - 100 <= second.records_read <= RECORDS - 100 + 2
    assert second.records_created == RECORDS - 100
    assert AssetSource.objects.filter(external_system=jira).count() == RECORDS


def test_data_center_with_a_personal_access_token(server, jira_sim, db):
    system = ExternalSystem.objects.create(
        name="Jira DC", system_type=SystemType.JIRA_ASSETS, category="cmdb", base_url=f"{server.url}/jira",
        auth_type=AuthType.BEARER, credentials={"token": to_reference("demo-jira-pat")},
        config={"deployment": "data_center", "object_types": TYPES, "page_size": 70},
    )
    log = sync(system)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_created == RECORDS and log.pages == 4
    source = AssetSource.objects.get(external_system=system, external_id=jira_sim.object_id_for(0))
    assert source.asset.name == jira_sim.device(0).name
    jira_sim.touch(count=2)
    assert sync(system, mode="incremental").records_updated == 2
    jira_sim.delete(count=1)
    assert sync(system).records_deleted == 1


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, "object_types"),
        ({"object_types": []}, "object_types"),
        ({"object_types": ['Lap"top']}, "object_types.0"),
        ({"object_types": ["Laptop"], "page_size": 1000}, "page_size"),
        ({"object_types": ["Laptop"], "deployment": "server"}, "deployment"),
        ({"object_types": ["Laptop"], "status_map": {"In Use": "working"}}, "status_map.In Use"),
        ({"object_types": ["Laptop"], "attribute_map": {"Serial": "serial"}}, "attribute_map.Serial"),
        ({"object_types": ["Laptop"], "colour": "blue"}, "colour"),
    ],
)
def test_config_validation_names_the_field(config, reason):
    with pytest.raises(ConfigurationError, match=reason):
        get_connector_class("jira_assets").validated_config(config)


def test_unknown_time_zone_is_a_configuration_error(jira):
    jira.config = {**jira.config, "aql_time_zone": "Mars/Olympus"}
    jira.save()
    with pytest.raises(ConfigurationError, match="aql_time_zone"):
        build_connector(jira)


def test_described_for_the_api():
    described = get_connector_class("jira_assets").describe()
    assert described["category"] == "cmdb" and "lookup" in described["capabilities"]
    assert described["config_schema"]["required"] == ["object_types"]
    assert described["credential_schema"]["bearer"]["properties"]["token"]["x-secret"] is True
