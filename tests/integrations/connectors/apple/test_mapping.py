"""Apple Business Manager mapping and key checks: pure functions on payloads in the shape of the API notes."""

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from syncplane.integrations.choices import AuthType
from syncplane.integrations.connectors.apple.business_manager import AppleBusinessManagerConnector, LatestBySerial
from syncplane.integrations.connectors.apple.keys import load_signing_key
from syncplane.integrations.connectors.apple.mapping import device_kind, map_dep_device, map_org_device
from syncplane.integrations.errors import ConfigurationError, RecordError
from tests.integrations.connectors.apple.keys import encrypted_private_pem, key_pair, rsa_private_pem

NOTE_EXAMPLE = {
    "type": "orgDevices", "id": "C02ZZ9XYQ6LR",
    "attributes": {"serialNumber": "C02ZZ9XYQ6LR", "deviceModel": "MacBook Air (15-inch, M3, 2024)",
                   "productFamily": "Mac", "productType": "Mac15,13", "deviceCapacity": "512GB", "color": "MIDNIGHT",
                   "status": "ASSIGNED", "addedToOrgDateTime": "2024-06-20T11:30:00.000Z",
                   "releasedFromOrgDateTime": None, "updatedDateTime": "2025-06-02T09:00:00.000Z",
                   "orderNumber": "PO-88213", "partNumber": "MRYU3LL/A", "purchaseSourceType": "APPLE", "imei": [],
                   "meid": [], "wifiMacAddress": "8C:7A:AA:10:20:30", "futureAttribute": {"x": 1}},
}


def org_device(**attributes):
    return {**NOTE_EXAMPLE, "attributes": {**NOTE_EXAMPLE["attributes"], **attributes}}


def test_the_notes_example_maps_to_canonical_fields_and_keeps_purchase_details_raw():
    record = map_org_device(NOTE_EXAMPLE)
    assert record.external_id == "C02ZZ9XYQ6LR"
    assert record.attributes == {
        "serial_number": "C02ZZ9XYQ6LR", "manufacturer": "Apple", "model": "MacBook Air (15-inch, M3, 2024)",
        "asset_type": "laptop", "operating_system": "macOS", "status": "active", "mac_address": "8c:7a:aa:10:20:30",
        "last_seen_at": "2025-06-02T09:00:00+00:00",
    }
    assert record.raw["attributes"]["orderNumber"] == "PO-88213" and not record.unmapped


@pytest.mark.parametrize(("family", "model", "product_type", "expected"), [
    ("iPhone", "iPhone 15", "iPhone15,4", ("mobile", "iOS")),
    ("iPad", "iPad Air 11-inch (M2)", "iPad14,8", ("tablet", "iPadOS")),
    ("Mac", "MacBook Pro (14-inch, M3, Nov 2023)", "Mac15,3", ("laptop", "macOS")),
    ("Mac", "iMac (24-inch, 2023)", "Mac15,5", ("desktop", "macOS")),
    ("Mac", "Mac mini (2023)", "Mac14,3", ("desktop", "macOS")),
    ("Mac", "Mac Studio (2023)", "Mac14,13", ("desktop", "macOS")),
    ("Mac", "", "MacBookPro18,3", ("laptop", "macOS")),  # a sparse fieldset dropped deviceModel
    ("AppleTV", "Apple TV 4K", "AppleTV14,1", ("other", "tvOS")),
    ("Watch", "Apple Watch Series 9", "Watch7,1", ("other", "watchOS")),
    ("Vision", "Apple Vision Pro", "RealityDevice14,1", ("other", "visionOS")),
])
def test_product_family_and_model_decide_the_asset_type(family, model, product_type, expected):
    asset_type, os_name, unmapped = device_kind(family, model, product_type)
    assert (asset_type, os_name) == expected and not unmapped


def test_an_unknown_family_or_an_unclassifiable_mac_is_other_and_counted_as_unmapped():
    assert device_kind("HomePod", "HomePod mini")[::2] == ("other", {"asset_type": "HomePod"})
    record = map_org_device(org_device(deviceModel="Mac (2026)", productType="Mac17,1"))
    assert record.attributes["asset_type"] == "other" and record.unmapped == {"asset_type": "Mac Mac (2026)"}


@pytest.mark.parametrize(("changes", "status"), [
    ({"status": "ASSIGNED"}, "active"),
    ({"status": "UNASSIGNED"}, "in_stock"),  # on the shelf, not retired
    ({"status": "ASSIGNED", "releasedFromOrgDateTime": "2025-07-01T00:00:00Z"}, "disposed"),
    ({"status": "LOST_IN_SPACE"}, "unknown"),
])
def test_status_follows_the_assignment_and_the_release(changes, status):
    record = map_org_device(org_device(**changes))
    assert record.attributes["status"] == status
    assert record.unmapped == ({"status": "LOST_IN_SPACE"} if status == "unknown" else {})


def test_serial_case_empty_strings_and_ethernet_fallback():
    record = map_org_device(org_device(serialNumber=" c02zz9xyq6lr ", wifiMacAddress="", color="",
                                       ethernetMacAddress=["A8-20-66-01-02-03"]))
    assert record.external_id == record.attributes["serial_number"] == "C02ZZ9XYQ6LR"
    assert record.attributes["mac_address"] == "a8:20:66:01:02:03"


@pytest.mark.parametrize("raw", [None, {"id": "X"}, {"attributes": {"serialNumber": ""}},
                                 org_device(updatedDateTime="yesterday"), org_device(deviceModel=42)])
def test_unusable_devices_are_record_errors(raw):
    with pytest.raises(RecordError):
        map_org_device(raw)


def test_dep_device_maps_family_os_and_asset_tag():
    record = map_dep_device({"serial_number": "dmpxk1abcd12", "model": "iPad Air 11-inch (M2)", "os": "iOS",
                             "device_family": "iPad", "asset_tag": "AT-1", "profile_status": "pushed",
                             "op_type": "modified", "op_date": "2025-06-02T09:00:00Z"})
    assert record.external_id == "DMPXK1ABCD12"
    assert record.attributes == {"serial_number": "DMPXK1ABCD12", "manufacturer": "Apple",
                                 "model": "iPad Air 11-inch (M2)", "asset_type": "tablet",
                                 "operating_system": "iPadOS", "status": "active", "asset_tag": "AT-1"}
    assert map_dep_device({"serial_number": "X1", "model": "MacBook Pro", "os": "OSX", "device_family": "Mac"}) \
        .attributes["operating_system"] == "macOS"
    with pytest.raises(RecordError):
        map_dep_device({"model": "iPhone"})


def test_the_newest_reading_of_a_serial_wins():
    latest = LatestBySerial()
    assert latest.newer("A", "2025-01-01T00:00:00Z")
    assert not latest.newer("A", "2025-01-01T00:00:00Z")  # the same reading again
    assert not latest.newer("A", "2024-12-31T00:00:00Z")
    assert latest.newer("A", "2025-02-01T00:00:00Z") and latest.newer("B", "")
    # A change log lists changes in the order they happened: of two in the same millisecond the later is newer.
    changes = LatestBySerial(ties_are_newer=True)
    assert changes.newer("A", "2025-01-01T00:00:00Z") and changes.newer("A", "2025-01-01T00:00:00Z")
    assert not changes.newer("A", "2024-12-31T00:00:00Z")


@pytest.mark.parametrize("sec1", [False, True])
def test_both_pem_forms_of_a_p256_key_load(sec1):
    private, _ = key_pair(sec1=sec1)
    assert private.startswith("-----BEGIN EC PRIVATE KEY-----" if sec1 else "-----BEGIN PRIVATE KEY-----")
    assert isinstance(load_signing_key(private).curve, ec.SECP256R1)
    AppleBusinessManagerConnector.check_credential(AuthType.OAUTH2_CLIENT_ASSERTION, "private_key", private)


@pytest.mark.parametrize(("make_pem", "reason"), [
    (lambda: key_pair(ec.SECP384R1())[0], "secp384r1, not P-256"),
    (lambda: key_pair(ec.SECP384R1(), sec1=True)[0], "secp384r1, not P-256"),
    (rsa_private_pem, "RSA key"),
    (encrypted_private_pem, "passphrase"),
    (lambda: "not a key at all", "not a PEM private key"),
    (lambda: key_pair()[1], "PUBLIC KEY, not a private key"),
    (lambda: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "cannot be read"),
])
def test_a_key_apple_would_not_take_is_refused_with_the_reason_and_without_the_key(make_pem, reason):
    pem = make_pem()
    with pytest.raises(ConfigurationError) as refused:
        AppleBusinessManagerConnector.check_credential(AuthType.OAUTH2_CLIENT_ASSERTION, "private_key", pem)
    message = str(refused.value)
    assert reason in message and "P-256" in message
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert not any(line in message for line in body)
