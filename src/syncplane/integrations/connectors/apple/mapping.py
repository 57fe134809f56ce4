"""Apple device records -> canonical asset attributes (pure functions, tested on fixture payloads).

Both APIs describe the same thing, a device the organisation bought, so both map to the same table; the
external id is the serial number, upper-case (Apple's own spelling), so that switching an integration from
the legacy server token to the API account keeps its sources.

| canonical        | Apple Business API (`orgDevices` attributes)     | Device Assignment (DEP) device          |
|------------------|--------------------------------------------------|-----------------------------------------|
| serial_number    | serialNumber, upper-case                         | serial_number, upper-case               |
| manufacturer     | "Apple"                                          | "Apple"                                 |
| model            | deviceModel ("MacBook Air (15-inch, M3, 2024)")  | model                                   |
| asset_type       | productFamily (+ deviceModel for Macs)           | device_family (+ model for Macs)        |
| operating_system | the family's OS (Mac -> macOS, iPad -> iPadOS)   | os ("OSX" -> macOS), else the family's  |
| status           | status ASSIGNED active, UNASSIGNED in_stock;     | active: the token's MDM server holds it |
|                  | releasedFromOrgDateTime set -> disposed          |                                         |
| mac_address      | wifiMacAddress, else the first ethernet MAC      | -                                       |
| asset_tag        | -                                                | asset_tag                               |
| last_seen_at     | updatedDateTime (when ABM's record last changed: | -                                       |
|                  | ABM never sees the device itself)                |                                         |

ABM knows no owner, host name or OS version: the MDM and the directory bring those. Purchase details (order
number and date, purchase source, part number, capacity, colour, IMEI, the assigned MDM server) stay in the raw
record only. UNASSIGNED is not retired: it means "not assigned to any MDM server", a device on the shelf.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from syncplane.core.normalize import normalize_mac
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.errors import RecordError
from syncplane.integrations.records import AssetAttributes

MANUFACTURER = "Apple"
# productFamily / device_family (lower-case) -> (asset_type, operating system); Macs are decided by model.
FAMILIES = {
    "iphone": ("mobile", "iOS"),
    "ipod": ("mobile", "iOS"),
    "ipad": ("tablet", "iPadOS"),
    "mac": (None, "macOS"),
    "appletv": ("other", "tvOS"),
    "watch": ("other", "watchOS"),
    "vision": ("other", "visionOS"),
}
# Model names (and pre-2023 product types such as MacBookPro18,3 or Macmini9,1) that tell a Mac's form.
MAC_LAPTOPS = ("macbook",)
MAC_DESKTOPS = ("imac", "mac mini", "macmini", "mac studio", "mac pro", "macpro")
DEP_OS = {"osx": "macOS", "macos": "macOS", "ios": "iOS", "ipados": "iPadOS", "tvos": "tvOS", "watchos": "watchOS"}
STATUSES = {"ASSIGNED": "active", "UNASSIGNED": "in_stock"}


def serial_of(value: Any) -> str:
    """The serial as an id: trimmed, upper-case (the API's listing may spell a serial in another case)."""
    return value.strip().upper() if isinstance(value, str) else ""


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name} is not a string: {type(value).__name__}")
    return value.strip()


def _timestamp(raw: dict, name: str) -> str | None:
    value = _text(raw, name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).isoformat()
    except ValueError:
        raise RecordError(f"{name} is not a timestamp: {value[:40]!r}") from None


def device_kind(family: str, model: str, product_type: str = "") -> tuple[str, str, dict[str, str]]:
    """(asset_type, operating system, unmapped) of a product family and model."""
    known = FAMILIES.get(family.lower().replace(" ", ""))
    if known is None:
        return "other", "", ({"asset_type": family} if family else {})
    asset_type, os_name = known
    if asset_type is not None:
        return asset_type, os_name, {}
    # A Mac: laptop or desktop by its model name; new product types ("Mac15,3") say nothing of the form.
    for text in (model.lower(), product_type.lower()):
        if text.startswith(MAC_LAPTOPS):
            return "laptop", os_name, {}
        if text.startswith(MAC_DESKTOPS):
            return "desktop", os_name, {}
    return "other", os_name, {"asset_type": f"Mac {model or product_type}".strip()}


def map_org_device(raw: Any) -> MappedRecord:
    """An `orgDevices` resource of the Apple Business API (JSON:API: type, id, attributes)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("attributes"), dict):
        raise RecordError("record is not an orgDevices resource with attributes")
    attrs = raw["attributes"]
    serial = serial_of(attrs.get("serialNumber")) or serial_of(raw.get("id"))
    if not serial:
        raise RecordError("record has no serialNumber")
    model = _text(attrs, "deviceModel")
    asset_type, os_name, unmapped = device_kind(_text(attrs, "productFamily"), model, _text(attrs, "productType"))
    state = _text(attrs, "status")
    status = STATUSES.get(state.upper(), "unknown")
    if state and status == "unknown":
        unmapped["status"] = state
    if _timestamp(attrs, "releasedFromOrgDateTime"):
        status = "disposed"
    ethernet = attrs.get("ethernetMacAddress")
    mac = normalize_mac(_text(attrs, "wifiMacAddress"))
    if not mac and isinstance(ethernet, list) and ethernet and isinstance(ethernet[0], str):
        mac = normalize_mac(ethernet[0])
    attributes: AssetAttributes = {
        "serial_number": serial,
        "manufacturer": MANUFACTURER,
        "model": model,
        "asset_type": asset_type,
        "operating_system": os_name,
        "status": status,
        "mac_address": mac,
        "last_seen_at": _timestamp(attrs, "updatedDateTime"),
    }
    return MappedRecord(external_id=serial, attributes=attributes, raw=raw, unmapped=unmapped)


def map_dep_device(raw: Any) -> MappedRecord:
    """A device of the Device Assignment API (fetch or sync devices); every one is assigned to the token's
    MDM server, so it is in use. Deleted ones never get here: they are reported as deletions (the connector)."""
    if not isinstance(raw, dict):
        raise RecordError("record is not an object")
    serial = serial_of(raw.get("serial_number"))
    if not serial:
        raise RecordError("record has no serial_number")
    model = _text(raw, "model")
    asset_type, os_name, unmapped = device_kind(_text(raw, "device_family"), model)
    os_name = DEP_OS.get(_text(raw, "os").lower(), os_name)
    if os_name == "iOS" and asset_type == "tablet":
        os_name = "iPadOS"  # DEP says iOS for iPads too
    attributes: AssetAttributes = {
        "serial_number": serial,
        "manufacturer": MANUFACTURER,
        "model": model,
        "asset_type": asset_type,
        "operating_system": os_name,
        "status": "active",
        "asset_tag": _text(raw, "asset_tag"),
    }
    return MappedRecord(external_id=serial, attributes=attributes, raw=raw, unmapped=unmapped)
