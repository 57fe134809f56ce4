"""Android Enterprise end to end: connector (service-account JWT grant + AMAPI device list) -> sync engine ->
inventory, against the Android Management simulator over real HTTP."""

import json

import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import RunStatus, SyncMode
from syncplane.integrations.connectors.google.android_enterprise import AndroidEnterpriseConnector
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import resolve_secret
from syncplane.inventory.models import Asset, AssetSource
from syncplane_simulators import android_enterprise as android_sim
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db


def sync(system, mode=SyncMode.FULL, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk, **kwargs))


def connector_for(system):
    return AndroidEnterpriseConnector(ConnectorContext(
        base_url=system.base_url, auth_type=system.auth_type, config=system.config, credentials=system.credentials,
        resolve_secret=resolve_secret, name=system.name))


def sources(system):
    return AssetSource.objects.filter(external_system=system).select_related("asset")


def test_a_full_sync_pages_through_the_enterprise_and_maps_compliance(android_enterprise, android):
    log = sync(android_enterprise)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    total = len(android.devices)
    # 25 a page: three list requests, and the page size asked for every time (the API's default is 10).
    assert android.stats["device_list_requests"] == 3 and android.stats["token_requests"] == 1
    assert (log.records_read, log.records_created) == (total, total)
    rows = {s.external_id: s for s in sources(android_enterprise)}
    assert set(rows) == set(android.devices)  # every device, keyed by its resource name
    noncompliant = {name for name, d in android.devices.items() if d.get("policyCompliant") is False}
    assert noncompliant and {n for n, s in rows.items() if s.attributes["compliance_state"] == "noncompliant"} \
        == noncompliant
    sample = rows[next(iter(noncompliant))]
    assert "passwordRequirements: USER_ACTION" in sample.asset.compliance_reasons
    assert sample.asset.compliance_checked_at is not None
    provisioning = [s for n, s in rows.items() if android.devices[n]["state"] == "PROVISIONING"]
    assert provisioning and {(s.asset.status, s.asset.compliance_state) for s in provisioning} == {
        ("in_stock", "unknown")}
    assert {s.asset.asset_type for s in rows.values()} == {"mobile"}


def test_personally_owned_devices_are_kept_apart_and_never_merged_by_their_pseudo_serial(android_enterprise, android):
    assert sync(android_enterprise).status == RunStatus.SUCCESS
    personal = [s for s in sources(android_enterprise) if s.raw_payload["ownership"] == "PERSONALLY_OWNED"]
    assert len(personal) >= 10
    assert all(s.attributes["serial_number"] == "" and s.serial_key == "" for s in personal)
    # The pseudo serial was there in the payload (Android 12+), and one reports none at all.
    assert any(s.raw_payload["hardwareInfo"].get("serialNumber") for s in personal)
    assert any("serialNumber" not in s.raw_payload["hardwareInfo"] for s in personal)
    # One asset each, whatever they share (no serial, the privacy MAC, the same model).
    assert len({s.asset_id for s in personal}) == len(personal)
    assert all(s.asset.mac_address == "" for s in personal)


def test_a_re_enrolled_phone_is_one_asset_with_its_fresh_report(android_enterprise, android):
    assert sync(android_enterprise).status == RunStatus.SUCCESS
    new = next(d for d in android.devices.values() if d.get("previousDeviceNames"))
    old_source = AssetSource.objects.get(external_system=android_enterprise, external_id=new["previousDeviceNames"][0])
    new_source = AssetSource.objects.get(external_system=android_enterprise, external_id=new["name"])
    # Same serial in another case: one device; the values come from the freshest report.
    assert old_source.asset_id == new_source.asset_id
    assert new_source.asset.last_seen_at.isoformat() == new_source.attributes["last_seen_at"]


def test_company_phones_join_the_cmdb_assets_with_the_same_serial_in_another_case(
        simulator, servicenow, android_enterprise, android):
    assert sync(servicenow).status == RunStatus.SUCCESS
    assert sync(android_enterprise).status == RunStatus.SUCCESS
    shared = android_sim.fleet_tablets(simulator.android.seed, android.shared_serials)
    for serial in shared:
        android_source = AssetSource.objects.get(external_system=android_enterprise, serial_key=serial.upper())
        assert android_source.raw_payload["hardwareInfo"]["serialNumber"] == serial.lower()
        cmdb_source = AssetSource.objects.get(external_system=servicenow, asset=android_source.asset)
        asset = Asset.objects.get(pk=cmdb_source.asset_id)
        assert asset.sources.count() == 2
        # The MDM judges compliance; the CMDB does not.
        assert asset.compliance_state == android_source.attributes["compliance_state"] != "unknown"


def test_a_429_is_retried_after_retry_after(android_enterprise, android):
    android.faults.add("status", status=429, retry_after=1, path="/devices")
    connector = connector_for(android_enterprise)
    log = sync(android_enterprise, connector=connector)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert android.stats["faults_fired"] == 1 and connector.client.stats["retries"] == 1
    assert sources(android_enterprise).count() == len(android.devices)


def test_a_429_on_the_token_endpoint_is_retried_too(android_enterprise, android):
    android.faults.add("status", status=429, retry_after=1, path="/token")
    connector = connector_for(android_enterprise)
    log = sync(android_enterprise, connector=connector)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert android.stats["token_requests"] == 1 and android.stats["tokens_issued"] == 1  # the fault, then one
    assert connector.client.stats["retries"] == 1


def small_pages(system):
    """Seven pages: more than the engine reads ahead, so a hook after the first page acts before the last."""
    system.config = {**system.config, "page_size": 10}
    system.save()
    return system


def test_an_expired_token_is_renewed_once_and_the_run_goes_on(android_enterprise, android):
    expired = []

    def expire_after_first_page(log):
        if not expired:
            android.expire_tokens()
            expired.append(log.pages)

    log = sync(small_pages(android_enterprise), progress=expire_after_first_page)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert android.stats["unauthenticated_requests"] == 1 and android.stats["tokens_issued"] == 2
    assert sources(android_enterprise).count() == len(android.devices)


def test_a_revoked_key_fails_the_run_for_good_and_writes_nothing(android_enterprise, android, service_account):
    android.revoke_key(service_account["client_email"])
    connector = connector_for(android_enterprise)
    log = sync(android_enterprise, connector=connector)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "invalid_grant" in log.error_summary and "new key" in log.error_summary
    assert service_account["private_key"][40:80] not in log.error_summary
    assert android.stats["token_requests"] == 1 and connector.client.stats["retries"] == 0  # no retry storm
    assert android.stats["device_list_requests"] == 0 and not sources(android_enterprise).exists()


def test_an_enterprise_not_bound_to_the_project_is_a_permanent_error_that_says_so(android_enterprise, android):
    android.bound = False
    log = sync(android_enterprise)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "not bound" in log.error_summary and "403" in log.error_summary


def test_a_device_gone_from_the_list_is_marked_deleted_by_the_next_full_run(android_enterprise, android):
    assert sync(android_enterprise).status == RunStatus.SUCCESS
    gone = next(name for name, d in android.devices.items() if d["state"] == "ACTIVE")
    android.remove_device(gone)
    log = sync(android_enterprise)
    assert log.status == RunStatus.SUCCESS and log.records_deleted == 1
    assert AssetSource.objects.get(external_system=android_enterprise, external_id=gone).deleted_at is not None


def test_a_malformed_device_fails_alone(android_enterprise, android):
    broken = next(iter(sorted(android.devices)))
    android.update_device(broken, {"policyCompliant": "yes"})
    log = sync(android_enterprise)
    assert log.status == RunStatus.PARTIAL and log.records_failed == 1
    assert sources(android_enterprise).count() == len(android.devices) - 1


def test_a_failed_run_resumes_from_the_page_token(android_enterprise, android):
    failed = []

    def fail_after_first_page(log):
        if not failed:
            android.faults.add("status", status=400, path="/devices")  # permanent: the run stops there
            failed.append(log.pages)

    log = sync(small_pages(android_enterprise), progress=fail_after_first_page)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "INVALID_ARGUMENT" in log.error_summary or "invalid argument" in log.error_summary
    written = sources(android_enterprise).count()
    assert 0 < written < len(android.devices)
    before = android.stats["device_list_requests"]
    log = sync(android_enterprise)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.resumed_from_id is not None
    # Only the pages after the checkpoint were read again, and every device is there.
    assert android.stats["device_list_requests"] - before < 7
    assert sources(android_enterprise).count() == len(android.devices)


def test_test_connection_names_the_enterprise_and_the_account(android_enterprise, android, service_account):
    result = connector_for(android_enterprise).test_connection()
    assert result.ok and "Acme Corp" in result.message and service_account["client_email"] in result.message


# --- saving through the REST API --------------------------------------------------------------------


def body(simulator, key, **overrides):
    return {"name": "Android", "system_type": "android_enterprise", "base_url": f"{simulator.url}/android/v1",
            "auth_type": "google_service_account", "credentials": {"service_account_key": key},
            "config": {"enterprise_id": f"enterprises/{android_sim.DEFAULT_ENTERPRISE}"}, **overrides}


def test_the_api_stores_the_key_as_a_secret_and_never_returns_it(api_as, simulator, service_account):
    admin = api_as("admin")
    created = admin.post("/api/v1/integrations/", body(simulator, json.dumps(service_account)), format="json")
    assert created.status_code == 201, created.content
    system = ExternalSystem.objects.get(pk=created.data["id"])
    assert system.credentials["service_account_key"].startswith("enc:")
    for response in (created, admin.get(f"/api/v1/integrations/{system.pk}/")):
        assert service_account["private_key"][40:80] not in response.content.decode()
    assert sync(system).status == RunStatus.SUCCESS


@pytest.mark.parametrize(("change", "reason"), [
    (lambda key: json.dumps({k: v for k, v in key.items() if k != "private_key"}), "private_key missing"),
    (lambda key: '{"installed": {"client_id": "x.apps.googleusercontent.com"}}', "type, client_email"),
    (lambda key: key["private_key"], "not JSON"),
])
def test_a_bad_service_account_key_is_refused_on_save(api_as, simulator, service_account, change, reason):
    response = api_as("admin").post("/api/v1/integrations/", body(simulator, change(service_account)), format="json")
    assert response.status_code == 400
    message = response.data["credentials"]
    message = message[0] if isinstance(message, list) else message
    assert "service_account_key" in message and reason in message
    assert "PRIVATE KEY" not in json.dumps(response.data)


def test_a_wrong_enterprise_id_shape_is_refused_on_save(api_as, simulator, service_account):
    response = api_as("admin").post("/api/v1/integrations/", body(
        simulator, json.dumps(service_account), config={"enterprise_id": "enterprises/LC04/devices/1"}),
        format="json")
    assert response.status_code == 400 and "enterprise_id" in str(response.data["config"])


def test_the_demo_integration_makes_its_key_at_start_and_syncs(simulator, android):
    from syncplane.devtools.management.commands.demo import Command

    system = Command()._android_enterprise(simulator.url)
    assert system.credentials["service_account_key"].startswith("enc:")  # the key file, never stored plain
    log = sync(system)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert sources(system).count() == len(android.devices)
