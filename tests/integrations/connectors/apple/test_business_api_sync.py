"""Apple Business API end to end: connector (ES256 client assertion, orgDevices cursor paging, MDM servers) ->
sync engine -> inventory, against the Apple simulator over real HTTP."""

import pytest

from syncplane.integrations.choices import ErrorKind, RunStatus, SyncMode
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import IntegrationSyncLog, SyncRecordOutcome
from syncplane.inventory.models import Asset, AssetSource
from syncplane_simulators import apple_business_manager as abm_sim
from tests.integrations.assertions import assert_counters_match_outcomes
from tests.integrations.connectors.apple.keys import key_pair

pytestmark = pytest.mark.django_db


def sync(system, mode=SyncMode.FULL):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk))


def test_full_sync_pages_every_device_with_its_mdm_server(abm, apple):
    log = sync(abm)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_created, log.pages) == (250, 250, 3)
    stats = apple.stats
    assert stats["tokens_issued"] == 1 and stats["org_devices_requests"] == 3
    assert stats["mdm_servers_requests"] == 1 and stats["server_devices_requests"] == 3  # one page per server
    sources = AssetSource.objects.filter(external_system=abm).select_related("asset")
    assert sources.count() == 250
    for source in sources:
        attrs = source.raw_payload["attributes"]
        assert source.external_id == attrs["serialNumber"].upper()
        server = source.raw_payload["assignedServer"]
        assert (server is not None) == (attrs["status"] == "ASSIGNED")
        assert source.asset.status == {"ASSIGNED": "active", "UNASSIGNED": "in_stock"}[attrs["status"]]
        assert source.asset.manufacturer == "Apple"
    assert {s.raw_payload["assignedServer"]["serverName"] for s in sources if s.raw_payload["assignedServer"]} \
        == {name for _id, name, _kind in abm_sim.SERVERS}
    types = {s.asset.asset_type for s in sources}
    assert {"laptop", "desktop", "mobile", "tablet"} <= types


def test_a_device_updated_while_paging_comes_twice_and_is_kept_once_in_its_newest_version(abm, apple):
    apple.update_while_paging = 2
    log = sync(abm)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    # The two devices changed after the first page and were listed again at the end, in their new version.
    assert apple.stats["org_devices_requests"] == 3 and log.records_read == 252
    assert (log.records_created, log.records_updated) == (250, 2)
    assert AssetSource.objects.filter(external_system=abm).count() == 250
    touched = sorted(apple.moved, key=lambda i: apple.moved[i][0])
    for index in touched:
        resource = apple.device(index)
        source = AssetSource.objects.get(external_system=abm, external_id=resource["id"].upper())
        assert source.raw_payload["attributes"]["updatedDateTime"] == resource["attributes"]["updatedDateTime"]


def test_a_rate_limit_is_waited_out_and_an_expired_token_is_renewed_once(abm, apple):
    apple.faults.add("status", status=429, retry_after=1, path="/v1/orgDevices")
    log = sync(abm)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert apple.stats["faults_fired"] == 1 and log.records_created == 250
    apple.expire_tokens()
    apple.touch([0])
    log = sync(abm)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_updated, log.records_unchanged) == (1, 249)
    assert apple.stats["unauthorized_requests"] == 0  # a new connector asks for a new token
    # Within one run: the token expires after the first page; one new token, the page read again.
    from syncplane.integrations.registry import build_connector

    with build_connector(abm) as connector:
        pages = connector.fetch("full")
        next(pages)
        apple.expire_tokens()
        rest = list(pages)
    assert sum(len(p.records) for p in rest) == 150
    assert connector.auth.token_requests == 2 and apple.stats["unauthorized_requests"] == 1


def test_a_revoked_key_fails_the_run_for_good_with_a_clear_message_and_writes_nothing(abm, apple, api_key):
    apple.revoke_key(abm_sim.DEFAULT_CLIENT_ID, abm_sim.DEFAULT_KEY_ID)
    log = sync(abm)
    assert (log.status, log.error_kind) == (RunStatus.FAILED, ErrorKind.PERMANENT)
    assert "Apple refused the client assertion" in log.error_summary and "revoked" in log.error_summary
    assert log.attempts == 1 and apple.stats["token_requests"] == 1  # no retry storm
    assert not AssetSource.objects.filter(external_system=abm).exists()
    assert "PRIVATE KEY" not in log.error_summary and api_key[0][40:80] not in log.error_summary


def test_a_key_that_apple_does_not_know_is_refused(abm, apple):
    other_private, _ = key_pair()
    from syncplane.integrations.secrets import to_reference

    abm.credentials = {**abm.credentials, "private_key": to_reference(other_private)}
    abm.save()
    log = sync(abm)
    assert log.status == RunStatus.FAILED and "does not verify" in log.error_summary


def test_released_devices_are_marked_deleted_by_full_and_by_incremental_runs(abm, apple):
    assert sync(abm).records_created == 250
    gone = apple.release([10, 20])
    log = sync(abm)
    assert (log.status, log.records_deleted) == (RunStatus.SUCCESS, 2)
    assert set(AssetSource.objects.filter(external_system=abm, deleted_at__isnull=False)
               .values_list("external_id", flat=True)) == {s.upper() for s in gone}
    # Incremental: the listing again, then the id listing (list_ids) finds what left.
    later = apple.release([30])
    (new,) = apple.add(1)
    log = sync(abm, SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_created, log.records_deleted) == (1, 1)
    assert AssetSource.objects.get(external_system=abm, external_id=later[0].upper()).deleted_at is not None
    assert AssetSource.objects.filter(external_system=abm, external_id=new.upper(), deleted_at__isnull=True).exists()
    deleted = SyncRecordOutcome.objects.filter(sync_log=log, action="delete").values_list("external_id", flat=True)
    assert list(deleted) == [later[0].upper()]


def test_a_cmdb_asset_gains_the_abm_source_by_its_serial_in_another_case(servicenow, abm, apple, simulator):
    assert run_sync(start_sync(servicenow).pk).status == RunStatus.SUCCESS
    shared = [i for i in range(apple.shared) if apple._fleet(i) is not None]
    lower = [i for i in shared if apple.device(i)["id"] != apple.device(i)["id"].upper()]
    assert shared and lower  # the simulator spells some shared serials in lower case
    assert sync(abm).status == RunStatus.SUCCESS
    for index in lower[:5]:
        serial = apple.device(index)["id"].upper()
        source = AssetSource.objects.get(external_system=abm, external_id=serial)
        systems = set(source.asset.sources.values_list("external_system__system_type", flat=True))
        assert systems == {"servicenow_cmdb", "apple_business_manager"}, serial
        assert Asset.objects.get(pk=source.asset_id).serial_number.upper() == serial


def test_a_school_account_asks_for_the_school_scope_at_the_v2_token_path(simulator, apple, db, api_key):
    from syncplane.integrations.models import ExternalSystem
    from syncplane.integrations.secrets import to_reference

    client_id = "SCHOOLAPI.0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    apple.register_key(client_id, "k-school", api_key[1], account_type="school")
    system = ExternalSystem.objects.create(
        name="ASM", system_type="apple_business_manager", category="mdm", base_url=f"{simulator.url}/apple/v1",
        auth_type="oauth2_client_assertion",
        credentials={"client_id": client_id, "key_id": "k-school", "private_key": to_reference(api_key[0])},
        config={"account_type": "school", "token_url": f"{simulator.url}/apple/auth/oauth2/v2/token",
                "read_assigned_servers": False})
    log = sync(system)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert apple.stats["server_devices_requests"] == 0
    system.config = {**system.config, "account_type": "business"}
    system.save()
    log = sync(system)
    assert log.status == RunStatus.FAILED and "account_type" in log.error_summary and "school" in log.error_summary
    assert IntegrationSyncLog.objects.filter(external_system=system).count() == 2
