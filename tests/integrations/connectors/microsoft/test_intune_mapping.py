"""Intune through the Entra ID connector: managed devices (shape of the api note) -> directory device records,
and the Entra deviceId that joins them to the device objects."""

import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import RecordKind
from syncplane.integrations.connectors.microsoft.entra_id import EntraIDConnector, map_directory_object
from syncplane.integrations.errors import RecordError
from syncplane.integrations.sinks import sink_for

MANAGED = "#microsoft.graph.managedDevice"
DEVICE = "#microsoft.graph.device"
INTUNE = {
    "@odata.type": MANAGED, "id": "e41d9c07-5a1b-4c2d-9e3f-0a1b2c3d4e5f", "deviceName": "Tom's iPhone",
    "serialNumber": "G6TZ1ABCD0E2", "manufacturer": "Apple", "model": "iPhone 15", "operatingSystem": "iOS",
    "osVersion": "17.5.1", "complianceState": "noncompliant", "azureADDeviceId": "B2F07C55-1D2E-4F3A-8B9C-0D1E2F3A4B5C",
    "userPrincipalName": "TomH@Fabrikam.Example", "managedDeviceOwnerType": "company", "managementState": "managed",
    "lastSyncDateTime": "2025-06-11T08:15:00Z",
}


def mapped(raw):
    record = map_directory_object(raw)
    sink_for(RecordKind.DIRECTORY, 0).validate(record)  # the record passes the directory sink's checks
    return record


def test_a_managed_device_is_an_asset_with_serial_compliance_and_user():
    record = mapped(INTUNE)
    assert record.external_id == "intune:e41d9c07-5a1b-4c2d-9e3f-0a1b2c3d4e5f"  # never a device object's id
    assert record.attributes == {"kind": "device", "removed": False, "asset": {
        "name": "Tom's iPhone", "hostname": "", "asset_type": "mobile", "serial_number": "G6TZ1ABCD0E2",
        "manufacturer": "Apple", "model": "iPhone 15", "operating_system": "iOS", "os_version": "17.5.1",
        "compliance_state": "noncompliant", "compliance_reasons": [],
        "compliance_checked_at": "2025-06-11T08:15:00+00:00", "status": "active",
        "last_seen_at": "2025-06-11T08:15:00+00:00", "assigned_to": "tomh@fabrikam.example",
        "azure_ad_device_id": "b2f07c55-1d2e-4f3a-8b9c-0d1e2f3a4b5c",
    }}


@pytest.mark.parametrize(("state", "canonical"), [
    ("compliant", "compliant"), ("noncompliant", "noncompliant"), ("inGracePeriod", "noncompliant"),
    ("conflict", "unknown"), ("error", "unknown"), ("unknown", "unknown"), ("configManager", "unknown"),
])
def test_compliance_states(state, canonical):
    asset = mapped({**INTUNE, "complianceState": state}).attributes["asset"]
    assert asset["compliance_state"] == canonical
    assert (asset["compliance_checked_at"] is None) == (canonical == "unknown")


def test_a_device_in_its_grace_period_says_until_when():
    asset = mapped({**INTUNE, "complianceState": "inGracePeriod",
                    "complianceGracePeriodExpirationDateTime": "2025-06-14T08:15:00Z"}).attributes["asset"]
    assert asset["compliance_reasons"] == ["inGracePeriod until 2025-06-14T08:15:00+00:00"]


def test_a_device_entra_does_not_know_has_no_entra_device_id_and_a_personal_one_no_serial():
    asset = mapped({**INTUNE, "azureADDeviceId": "00000000-0000-0000-0000-000000000000", "serialNumber": "",
                    "managedDeviceOwnerType": "personal"}).attributes["asset"]
    assert asset["azure_ad_device_id"] == "" and asset["serial_number"] == ""


def test_the_primary_user_falls_back_to_the_email_address():
    asset = mapped({**INTUNE, "userPrincipalName": None, "emailAddress": "Tom@Fabrikam.Example"}).attributes["asset"]
    assert asset["assigned_to"] == "tom@fabrikam.example"


@pytest.mark.parametrize(("state", "status"), [
    (None, "active"), ("managed", "active"), ("retirePending", "retired"), ("wipeIssued", "retired"),
    ("retireFailed", "active"), ("unhealthy", "in_maintenance"), ("somethingNew", "unknown"),
])
def test_status_follows_the_management_state(state, status):
    raw = {k: v for k, v in INTUNE.items() if k != "managementState"}
    if state:
        raw["managementState"] = state
    assert mapped(raw).attributes["asset"]["status"] == status


def test_windows_and_mac_names_are_host_names():
    asset = mapped({**INTUNE, "deviceName": "LAPTOP-0042", "operatingSystem": "Windows"}).attributes["asset"]
    assert (asset["hostname"], asset["asset_type"], asset["operating_system"]) == ("LAPTOP-0042", "laptop", "Windows")
    assert mapped({**INTUNE, "operatingSystem": "macOS"}).attributes["asset"]["operating_system"] == "macOS"


def test_a_device_object_carries_its_device_id_lower_cased_not_its_object_id():
    asset = mapped({"@odata.type": DEVICE, "id": "3e9a41d0-0000-4000-8000-000000000001",
                    "deviceId": "B2F07C55-1D2E-4F3A-8B9C-0D1E2F3A4B5C", "displayName": "LAPTOP-0042",
                    "operatingSystem": "Windows"}).attributes["asset"]
    assert asset["azure_ad_device_id"] == "b2f07c55-1d2e-4f3a-8b9c-0d1e2f3a4b5c"


@pytest.mark.parametrize("raw", [
    {**INTUNE, "lastSyncDateTime": "last tuesday"},
    {**INTUNE, "serialNumber": 12345.5},
    {"@odata.type": MANAGED, "deviceName": "no id"},
])
def test_unusable_managed_devices_are_record_errors(raw):
    with pytest.raises(RecordError):
        map_directory_object(raw)


def test_intune_is_off_by_default_and_adds_its_stream_last():
    def streams(**config):
        return EntraIDConnector(ConnectorContext(
            base_url="http://127.0.0.1:9/v1.0", auth_type="oauth2_client_credentials",  # nothing is called
            config={"tenant_id": "t", "authority_url": "http://127.0.0.1:9", **config},
            credentials={"client_id": "c", "client_secret": "s"},
            resolve_secret=lambda ref: ref)).streams()

    assert streams() == ("users", "groups", "devices")
    assert streams(include_intune_devices=True) == ("users", "groups", "devices", "managedDevices")
    assert streams(include_intune_devices=True, sync_devices=False) == ("users", "groups", "managedDevices")


def test_the_error_log_names_a_managed_device_by_its_prefixed_id():
    connector = EntraIDConnector.__new__(EntraIDConnector)
    assert connector.external_id({"@odata.type": MANAGED, "id": "m1"}) == "intune:m1"
    assert connector.external_id({"@odata.type": DEVICE, "id": "d1"}) == "d1"
