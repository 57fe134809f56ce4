"""Intune end to end, through the Entra ID integration: Graph simulator (device objects and managed devices
sharing deviceIds) -> sync engine -> directory sink -> inventory, over real HTTP."""

import pytest

from syncplane.integrations.choices import AuthType, RunStatus, SyncMode, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.models import Asset, AssetSource
from syncplane_simulators import entra_id as graph_sim
from syncplane_simulators.devices import device_identity
from tests.integrations.assertions import assert_counters_match_outcomes
from tests.integrations.connectors.microsoft.test_entra_id_sync import connector_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def graph(simulator):
    sim = simulator.graph
    sim.page_size = 10  # managed devices on three pages
    return sim


@pytest.fixture
def entra(simulator, graph):
    from syncplane.integrations.secrets import to_reference

    return ExternalSystem.objects.create(
        name="Entra with Intune", system_type=SystemType.ENTRA_ID, category="identity",
        base_url=f"{simulator.url}/graph/v1.0", auth_type=AuthType.OAUTH2_CLIENT_CREDENTIALS,
        credentials={"client_id": graph_sim.DEFAULT_CLIENT_ID,
                     "client_secret": to_reference(graph_sim.DEFAULT_CLIENT_SECRET)},
        config={"tenant_id": graph_sim.DEFAULT_TENANT, "authority_url": f"{simulator.url}/graph/login",
                "include_intune_devices": True},
    )


def sync(system, mode=SyncMode.FULL, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk, **kwargs))


def intune_source(system, managed_id):
    return AssetSource.objects.select_related("asset").get(external_system=system, external_id=f"intune:{managed_id}")


def test_an_intune_device_and_its_entra_device_object_are_one_asset(entra, graph):
    log = sync(entra)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert graph.stats["managed_devices_requests"] == 3
    by_device_id = {d["deviceId"]: d["id"] for d in graph.devices.values()}
    managed = list(graph.managed_devices.values())
    registered = [m for m in managed if m["azureADDeviceId"] != graph_sim.NO_ENTRA_DEVICE]
    assert len(registered) >= 20
    for m in registered:
        source = intune_source(entra, m["id"])
        entra_source = AssetSource.objects.get(external_system=entra, external_id=by_device_id[m["azureADDeviceId"]])
        assert entra_source.asset_id == source.asset_id
        assert entra_source.attributes["azure_ad_device_id"] == m["azureADDeviceId"].lower()
        asset = source.asset
        assert asset.sources.filter(deleted_at__isnull=True).count() == 2
        assert asset.serial_number == m["serialNumber"] and asset.azure_ad_device_id == m["azureADDeviceId"]
        assert asset.assigned_to == m["userPrincipalName"].lower()
    # Intune's detailed state: inGracePeriod is non-compliant with its reason, error is unknown.
    states = {m["complianceState"]: intune_source(entra, m["id"]).attributes for m in managed}
    assert states["inGracePeriod"]["compliance_state"] == "noncompliant"
    assert states["inGracePeriod"]["compliance_reasons"][0].startswith("inGracePeriod")
    assert states["error"]["compliance_state"] == "unknown"
    # 40 device objects and every managed device; the assets are the device objects' (Intune joined them)
    # plus the two devices Entra does not know.
    assert AssetSource.objects.filter(external_system=entra).count() == 40 + len(managed)
    assert Asset.objects.filter(sources__external_system=entra).distinct().count() == 40 + 2


def test_devices_unknown_to_entra_are_never_joined_by_the_all_zero_id(entra, graph):
    assert sync(entra).status == RunStatus.SUCCESS
    kiosks = [m for m in graph.managed_devices.values() if m["azureADDeviceId"] == graph_sim.NO_ENTRA_DEVICE]
    assert len(kiosks) == 2
    sources = [intune_source(entra, m["id"]) for m in kiosks]
    assert sources[0].asset_id != sources[1].asset_id
    assert all(s.device_key == "" and s.asset.azure_ad_device_id == "" for s in sources)


def test_a_cmdb_asset_gains_intune_compliance_and_its_user_by_serial(simulator, servicenow, entra, graph):
    assert sync(servicenow).status == RunStatus.SUCCESS
    assert sync(entra).status == RunStatus.SUCCESS
    in_cmdb = {device_identity(simulator.servicenow.seed, i).serial
               for i in range(simulator.servicenow.base_records)}
    shared = [m for m in graph.managed_devices.values() if m["serialNumber"] in in_cmdb]
    assert len(shared) >= 10 and any(m["complianceState"] == "noncompliant" for m in shared)
    for m in shared:
        asset = intune_source(entra, m["id"]).asset
        systems = set(asset.sources.values_list("external_system__system_type", flat=True))
        assert SystemType.SERVICENOW_CMDB in systems
        assert asset.compliance_state == {"compliant": "compliant", "noncompliant": "noncompliant",
                                          "inGracePeriod": "noncompliant"}.get(m["complianceState"], "unknown")
        if m["userPrincipalName"]:
            assert asset.assigned_to == m["userPrincipalName"].lower()
        # The CMDB's name wins (precedence), Intune's serial agrees with it.
        assert asset.serial_number.upper() == m["serialNumber"].upper()
    # Registered ones are the Entra device too: three sources, one asset.
    registered = next(m for m in shared if m["azureADDeviceId"] != graph_sim.NO_ENTRA_DEVICE)
    assert intune_source(entra, registered["id"]).asset.sources.count() == 3


def test_incremental_runs_read_intune_whole_and_full_runs_mark_it_deleted(entra, graph):
    assert sync(entra).status == RunStatus.SUCCESS
    gone = next(iter(graph.managed_devices))
    changed = next(i for i, m in graph.managed_devices.items() if m["complianceState"] == "compliant" and i != gone)
    graph.remove_managed_device(gone)
    graph.update_managed_device(changed, complianceState="noncompliant")
    before = graph.stats["managed_devices_requests"]
    log = sync(entra, mode=SyncMode.INCREMENTAL)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert graph.stats["managed_devices_requests"] - before == 3  # no delta: the whole list again
    assert intune_source(entra, changed).attributes["compliance_state"] == "noncompliant"
    assert log.records_updated == 1 and log.records_deleted == 0  # an incremental run cannot see deletions
    assert intune_source(entra, gone).deleted_at is None
    log = sync(entra)
    assert log.status == RunStatus.SUCCESS and log.records_deleted == 1
    assert intune_source(entra, gone).deleted_at is not None


def test_without_the_intune_permission_the_run_fails_naming_it(entra, graph):
    graph.intune_permission = False
    log = sync(entra)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "DeviceManagementManagedDevices.Read.All" in log.error_summary
    assert "include_intune_devices" in log.error_summary


def test_a_429_on_managed_devices_is_retried(entra, graph):
    graph.faults.add("status", status=429, retry_after=1, path="/deviceManagement/managedDevices")
    connector = connector_for(entra)
    log = sync(entra, connector=connector)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert connector.client.stats["retries"] == 1
    assert AssetSource.objects.filter(external_system=entra, external_id__startswith="intune:").count() == len(
        graph.managed_devices)


def test_an_expired_token_in_the_intune_stream_is_renewed_once(entra, graph):
    expired = []

    def expire_in_intune(log):
        if not expired and AssetSource.objects.filter(external_system=entra, external_id__startswith="intune:"):
            graph.expire_tokens()
            expired.append(log.pages)

    graph.page_size = 5  # more Intune pages than the engine reads ahead
    log = sync(entra, progress=expire_in_intune)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert graph.stats["expired_token_requests"] == 1 and graph.stats["token_requests"] == 2
    assert AssetSource.objects.filter(external_system=entra, external_id__startswith="intune:").count() == len(
        graph.managed_devices)
