"""Freshservice CMDB end to end: connector -> sync engine -> inventory, against the simulator over HTTP."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import AuthType, RecordStatus, RunStatus, SystemType
from syncplane.integrations.connectors.freshservice.cmdb import FreshserviceCMDBConnector
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome, SyncState
from syncplane.integrations.secrets import resolve_secret, to_reference
from syncplane.inventory.models import Asset, AssetSource
from syncplane_simulators.freshservice_cmdb import DEFAULT_API_KEY, FreshserviceSimulator
from syncplane_simulators.server import SimulatorServer
from tests.integrations.assertions import assert_counters_match_outcomes

RECORDS = 250


@pytest.fixture
def server():
    fs = FreshserviceSimulator(records=RECORDS, seed=7)
    with SimulatorServer(records=RECORDS, seed=7, extra_apps={"/freshservice": fs}) as running:
        running.freshservice = fs
        yield running


@pytest.fixture
def fs(server):
    return server.freshservice


@pytest.fixture
def freshservice(server, db):
    return ExternalSystem.objects.create(
        name="Freshservice test",
        system_type=SystemType.FRESHSERVICE_CMDB,
        category="cmdb",
        base_url=f"{server.url}/freshservice",
        auth_type=AuthType.API_KEY,
        credentials={"api_key": to_reference(DEFAULT_API_KEY)},
        config={"page_size": 50, "rate_limit_per_second": 1000},
    )


def sync(system, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, **kwargs).pk))


def connector_for(system, pace_sleep):
    context = ConnectorContext(base_url=system.base_url, auth_type=system.auth_type, config=system.config,
                               credentials=system.credentials, resolve_secret=resolve_secret, name=system.name)
    return FreshserviceCMDBConnector(context, pace_sleep=pace_sleep)


@pytest.mark.django_db
def test_full_sync_brings_in_every_asset(freshservice, fs):
    log = sync(freshservice)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_created, log.records_failed) == (RECORDS, RECORDS, 0)
    assert log.pages == RECORDS // 50
    assert not AssetSource.objects.filter(external_system=freshservice, deleted_at__isnull=False).exists()
    assert AssetSource.objects.filter(external_system=freshservice).count() == RECORDS
    # The same laptop recorded twice (serial in another case) joins one asset.
    assert Asset.objects.count() < RECORDS
    state = SyncState.objects.get(external_system=freshservice)
    assert state.checkpoint is None and state.cursor.endswith("Z")
    # Reference lists are read once per run, one request per page, never one per asset.
    stats = fs.stats
    assert stats["departments_requests"] == stats["locations_requests"] == stats["asset_types_requests"] == 1
    assert stats["requesters_requests"] == 2 and stats["assets_requests"] == RECORDS // 50


@pytest.mark.django_db
def test_mapped_values_reach_the_asset(freshservice, fs):
    sync(freshservice)
    source = AssetSource.objects.select_related("asset").get(external_id="1")
    raw = fs.record(0)
    assert source.raw_payload["id"] == fs.asset_id_for(0) > 2**31
    assert source.asset.name == raw["name"]
    assert source.asset.hostname == raw["type_fields"]["hostname_21000855272"]
    assert source.asset.asset_type == "laptop"


@pytest.mark.django_db
def test_the_runbooks_state_map_keeps_the_default_states_and_counts_unknown_ones(freshservice, fs):
    freshservice.config = {**freshservice.config, "state_map": {"In Use": "active", "Lost": "unknown"}}
    freshservice.save()
    on_loan = fs.set_state([0, 1, 2], "On Loan")  # a state the admin added, in no map
    log = sync(freshservice)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    statuses = set(Asset.objects.values_list("status", flat=True))
    assert {"active", "in_stock", "in_maintenance", "retired"} <= statuses  # In Stock etc. are not lost
    assert "unmapped values" in log.error_summary and "status 'On Loan' 3" in log.error_summary
    unknown = AssetSource.objects.filter(external_system=freshservice, external_id__in=on_loan)
    assert {s.asset.status for s in unknown.select_related("asset")} == {"unknown"}


@pytest.mark.django_db
def test_resync_with_nothing_changed_updates_nothing(freshservice):
    sync(freshservice)
    log = sync(freshservice)
    assert (log.records_created, log.records_updated, log.records_unchanged) == (0, 0, RECORDS)


@pytest.mark.django_db
def test_incremental_reads_only_what_changed_through_the_filter(freshservice, fs):
    sync(freshservice)
    touched = fs.touch(count=5)
    before = fs.stats["filter_requests"]
    log = sync(freshservice, mode="incremental")
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_updated, log.records_created) == (5, 0)
    assert log.records_read < 10  # the changed ones and the boundary record(s) again
    assert fs.stats["filter_requests"] == before + 1
    changed = set(SyncRecordOutcome.objects.filter(sync_log=log, action="update").values_list("external_id",
                                                                                              flat=True))
    assert changed == set(touched)
    again = sync(freshservice, mode="incremental")
    assert (again.records_updated, again.records_created) == (0, 0)


@pytest.mark.django_db
def test_full_sync_marks_deleted_assets_and_incremental_never_does(freshservice, fs):
    sync(freshservice)
    gone = fs.delete(count=3)
    log = sync(freshservice)
    assert log.records_deleted == 3
    assert set(AssetSource.objects.filter(deleted_at__isnull=False).values_list("external_id", flat=True)) \
        == set(gone)
    fs.delete(count=2)
    assert sync(freshservice, mode="incremental").records_deleted == 0


@pytest.mark.django_db
def test_an_asset_skipped_by_page_drift_is_looked_up_not_deleted(freshservice, fs):
    sync(freshservice)

    def delete_an_early_asset(log):
        # Page numbers shift by one: the first asset of the next page moves onto this one, unread.
        if log.pages == 1:
            fs.delete(indices=[0])

    log = assert_counters_match_outcomes(run_sync(start_sync(freshservice).pk, progress=delete_an_early_asset))
    assert log.status == RunStatus.SUCCESS
    # Asset 0 was read on page 1; a later page lost one asset to the shift.
    assert log.records_read == RECORDS - 1
    # The skipped one was looked up by display_id and found: nothing is marked deleted by this pass.
    assert log.records_deleted == 0
    assert not AssetSource.objects.filter(deleted_at__isnull=False).exists()
    assert sync(freshservice).records_deleted == 1  # the next full pass sees asset 0 gone


@pytest.mark.django_db
def test_killed_run_resumes_at_its_page(freshservice):
    class Killed(BaseException):
        pass

    def die_after_two_pages(log):
        if log.pages == 2:
            raise Killed

    first = start_sync(freshservice)
    with pytest.raises(Killed):
        run_sync(first.pk, progress=die_after_two_pages)
    IntegrationSyncLog.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    second = sync(freshservice)
    assert second.status == RunStatus.SUCCESS and second.resumed_from_id == first.pk
    assert second.records_read == RECORDS - 100
    assert AssetSource.objects.count() == RECORDS


@pytest.mark.django_db
def test_rate_limit_429_with_retry_after_is_waited_out(freshservice, fs):
    fs.rate_limit_per_minute, fs.rate_limit_window = 12, 1.0  # 12 credits a "minute" of one second
    paced = []
    log = run_sync(start_sync(freshservice).pk, connector=connector_for(freshservice, paced.append))
    assert_counters_match_outcomes(log)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_created == RECORDS
    assert fs.stats["rate_limited"] > 0
    assert paced and all(0 < wait <= 60 for wait in paced)  # slowed down when few credits were left


@pytest.mark.django_db
def test_malformed_records_end_partial_with_reasons(freshservice, fs):
    sync(freshservice)
    fs.delete(count=2)
    fs.inject_fault("malformed", indices=[3, 7, 11])
    log = sync(freshservice)
    assert log.status == RunStatus.PARTIAL
    assert (log.records_failed, log.records_deleted) == (3, 0)
    errors = SyncRecordOutcome.objects.filter(sync_log=log, status=RecordStatus.FAILED)
    reasons = sorted(e.reason for e in errors)
    assert any("display_id" in r for r in reasons) and any("updated_at" in r for r in reasons)
    assert all(e.raw_payload for e in errors)


@pytest.mark.django_db
def test_bad_api_key_is_a_clear_permanent_error(freshservice, fs):
    freshservice.credentials = {"api_key": to_reference("wrong-key-123456")}
    freshservice.save()
    log = sync(freshservice)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "401" in log.error_summary and "logged in" in log.error_summary
    assert "wrong-key-123456" not in log.error_summary


@pytest.mark.django_db
@pytest.mark.parametrize(("config", "message"), [({"page_size": 500}, "page_size"),
                                                 ({"state_map": {"In Use": "on"}}, "state_map"),
                                                 ({"sysparm_limit": 5}, "sysparm_limit")])
def test_config_errors_fail_the_run_naming_the_field(freshservice, config, message):
    freshservice.config = config
    freshservice.save()
    log = sync(freshservice)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert message in log.error_summary


@pytest.mark.django_db
def test_test_connection_reports_the_rate_limit(freshservice):
    from syncplane.integrations.registry import build_connector

    with build_connector(freshservice) as connector:
        result = connector.test_connection()
    assert result.ok and "credits" in result.message


def test_more_changes_than_the_filter_can_show_fall_back_to_the_full_list():
    fs = FreshserviceSimulator(records=1300, seed=3)
    with SimulatorServer(records=10, extra_apps={"/freshservice": fs}) as running:
        context = ConnectorContext(base_url=running.url + "/freshservice", auth_type=AuthType.API_KEY,
                                   config={"rate_limit_per_second": 1000}, credentials={"api_key": "t"},
                                   resolve_secret=lambda ref: DEFAULT_API_KEY)
        with FreshserviceCMDBConnector(context) as connector:
            cursor = list(connector.fetch("full"))[-1].cursor
            fs.touch(count=1250)
            pages = list(connector.fetch("incremental", cursor))
    assert fs.stats["filter_requests"] == 40  # the ceiling: 40 pages of 30
    ids = [raw["display_id"] for page in pages for raw in page.records]
    assert set(ids) == set(range(1, 1301))  # then the whole list, so nothing is missed
    assert pages[-1].cursor > cursor and pages[-1].resume is None


@pytest.mark.django_db
def test_shared_devices_join_the_servicenow_assets(freshservice, server):
    servicenow = ExternalSystem.objects.create(
        name="ServiceNow", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
        base_url=f"{server.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": 100},
    )
    assert sync(servicenow).status == RunStatus.SUCCESS
    assert sync(freshservice).status == RunStatus.SUCCESS
    fs_assets = set(AssetSource.objects.filter(external_system=freshservice).values_list("asset_id", flat=True))
    sn_assets = set(AssetSource.objects.filter(external_system=servicenow).values_list("asset_id", flat=True))
    joined = len(fs_assets & sn_assets)
    # The first 60% are ServiceNow's devices (serials in other case or with spaces still join, placeholders
    # fall back to MAC or host name); the rest are devices of their own.
    assert 0.5 * RECORDS <= joined <= 0.6 * RECORDS


@pytest.mark.django_db
def test_dry_run_writes_nothing_and_shows_the_diff(freshservice, fs):
    sync(freshservice)
    fs.touch(count=4)
    fs.delete(count=1)
    before = list(AssetSource.objects.order_by("id").values_list("id", "fingerprint", "last_seen_at", "deleted_at"))
    log = sync(freshservice, dry_run=True)
    assert log.status == RunStatus.SUCCESS
    assert (log.records_updated, log.records_deleted, log.records_created) == (4, 1, 0)
    after = list(AssetSource.objects.order_by("id").values_list("id", "fingerprint", "last_seen_at", "deleted_at"))
    assert after == before
