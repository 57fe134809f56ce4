"""Android Enterprise, read through the Android Management API (AMAPI) v1 (see shared/api-notes/android-enterprise.md).

Why AMAPI and not the Google Play EMM API: the Play EMM API lists devices per user only (users.list needs an
exact e-mail), reports no serial and no compliance, and is closed to new EMM registrations; enumerating an
enterprise's devices with serials and compliance is only possible through AMAPI.

Auth: a service account's JSON key (auth type google_service_account, credential `service_account_key`, a secret
reference), scope `https://www.googleapis.com/auth/androidmanagement`; the JWT bearer grant is in
`service_account.py`. The enterprise must be bound to the key's Cloud project, else every call answers 403
PERMISSION_DENIED.

Stream: `GET {base}/enterprises/{id}/devices?pageSize=100[&pageToken=...]` (the default page size is 10 and
larger than 100 is coerced, so 100 is always asked for), `devices` and `nextPageToken` (absent on the last page)
in the body; an empty enterprise answers `{}`. Deleted devices are not listed, and there is no delta or
"modified since": every run is a full run, keyed by the device's resource name, and what is no longer listed is
marked deleted by the engine's reconciliation. Page.resume holds the next page token.

Mapping (map_device), each device one asset whose external id is its resource name
`enterprises/{e}/devices/{d}`:
- status from appliedState (state when absent): STATUSES below; an unknown value is "unknown", and named
  on the log as unmapped;
- compliance_state from policyCompliant (true compliant, false noncompliant, absent unknown: PROVISIONING
  devices have none); compliance_reasons from nonComplianceDetails ("passwordRequirements: USER_ACTION",
  "applications com.example.vpn: APP_NOT_INSTALLED"); compliance_checked_at = lastStatusReportTime;
- serial_number = hardwareInfo.serialNumber, except on personally owned devices: from Android 12 (apiLevel 31)
  it is the enterprise-specific pseudo id, not the hardware serial, so it is dropped (it must never merge a
  phone with a CMDB asset); such devices stay assets of their own, identified by their resource name;
- manufacturer (hardwareInfo.manufacturer, else brand), model, mac_address = networkInfo.wifiMacAddress
  (the privacy placeholder 02:00:00:00:00:00 is no MAC), operating_system "Android", os_version =
  softwareInfo.androidVersion (absent when the policy does not report software: "" = unknown),
  last_seen_at = lastStatusReportTime (RFC 3339, with up to nanoseconds), asset_type
  mobile (AMAPI does not tell tablets apart);
- assigned_to: AMAPI names the user by an opaque resource name (enterprises/.../users/<id>), not an e-mail;
  only a userName that is an e-mail address is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from syncplane.core.normalize import normalize_mac
from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, MappedRecord, Page
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.connectors.google.service_account import ServiceAccountAuth, check_key
from syncplane.integrations.errors import AuthenticationError, ConfigurationError, PermanentError, RecordError
from syncplane.integrations.http import HttpClient, extract_vendor_message
from syncplane.integrations.paging import CursorPaginator
from syncplane.integrations.records import AssetAttributes
from syncplane.integrations.registry import register

API_BASE = "https://androidmanagement.googleapis.com/v1"
SCOPE = "https://www.googleapis.com/auth/androidmanagement"
MAX_PAGE_SIZE = 100
ENTERPRISE_ID = re.compile(r"(?:enterprises/)?([A-Za-z0-9_-]{2,100})")
DEVICE_NAME = re.compile(r"enterprises/[A-Za-z0-9_-]+/devices/[A-Za-z0-9_-]+")
ANDROID_12 = 31  # apiLevel from which a personal device's serialNumber is the enterprise-specific id
PRIVACY_MAC = "02:00:00:00:00:00"

# appliedState / state -> canonical status (the api note's suggested mapping)
STATUSES = {
    "ACTIVE": "active", "PROVISIONING": "in_stock", "DISABLED": "in_maintenance", "LOST": "in_maintenance",
    "DELETED": "retired", "PREPARING_FOR_MIGRATION": "active", "DEACTIVATED_BY_DEVICE_FINANCE": "in_maintenance",
}
COMPLIANCE = {True: "compliant", False: "noncompliant", None: "unknown"}


@register
class AndroidEnterpriseConnector(Connector):
    system_type = SystemType.ANDROID_ENTERPRISE
    category = Category.MDM
    display_name = "Android Enterprise"
    record_kind = RecordKind.ASSET
    auth_types = (AuthType.GOOGLE_SERVICE_ACCOUNT,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.FULL, Capability.DRY_RUN})
    base_url_help = ("The Android Management API root with its version, without a resource: the connector adds "
                     "/enterprises/<id>/devices.")
    base_url_example = API_BASE
    owned_path_suffixes = ("/enterprises",)
    default_sync_interval_minutes = 240  # every run reads the whole enterprise; the quota is per project
    config_schema = {
        "type": "object",
        "properties": {
            "enterprise_id": {"type": "string", "minLength": 1, "maxLength": 120,
                              "description": "The enterprise's id (LC0...) or its resource name enterprises/LC0..."},
            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": MAX_PAGE_SIZE,
                          "description": "Devices per request (the API's maximum is 100)."},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "required": ["enterprise_id"],
        "additionalProperties": False,
    }

    @classmethod
    def validated_config(cls, config: dict | None) -> dict:
        config = super().validated_config(config)
        enterprise_id(config["enterprise_id"])
        return config

    @classmethod
    def check_credential(cls, auth_type: str, name: str, value: str) -> None:
        if name == "service_account_key":
            check_key(value)

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        if context.auth_type != AuthType.GOOGLE_SERVICE_ACCOUNT:
            raise ConfigurationError("Android Enterprise takes a service account's key: use auth type "
                                     "google_service_account")
        text = context.credential("service_account_key")
        try:
            key = check_key(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"service_account_key {exc}") from None
        self.auth = ServiceAccountAuth(key, SCOPE)
        self.enterprise = f"enterprises/{enterprise_id(self.config['enterprise_id'])}"
        self.client = HttpClient((context.base_url or API_BASE).rstrip("/"), auth=self.auth,
                                 timeout=self.config["timeout_seconds"], secrets=context.secret_values())

    def close(self) -> None:
        self.client.close()

    def _get(self, path: str, params: dict | None = None) -> dict:
        response = self.client.get(path, params=params, expected=(200, 403, 404))
        if response.status_code == 403:
            vendor = self.client.redact(" ".join(extract_vendor_message(response).split()))[:200]
            raise AuthenticationError(
                f"Android Management API answered 403 for {self.enterprise} ({vendor}): the enterprise is not bound "
                "to the service account's Cloud project, or the Android Management API is not enabled there",
                status_code=403)
        if response.status_code == 404:
            raise PermanentError(f"Android Management API: {self.enterprise} was not found (is enterprise_id "
                                 "right?)", status_code=404)
        body = self.client.json(response)
        if not isinstance(body, dict):
            raise PermanentError(f"GET {response.request.url.path} answered a JSON {type(body).__name__}, "
                                 "not an object")
        return body

    def _devices_page(self, page_token: str | None) -> dict:
        params = {"pageSize": self.config["page_size"]}
        if page_token:
            params["pageToken"] = page_token
        body = self._get(f"/{self.enterprise}/devices", params)
        devices = body.setdefault("devices", [])  # an empty enterprise answers {}
        if not isinstance(devices, list):
            raise PermanentError("Android Management API answered a device list that is not a list")
        return body

    # --- the contract ----------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        body = self._get(f"/{self.enterprise}")
        display = body.get("enterpriseDisplayName") or self.enterprise
        return ConnectionResult(ok=True, message=f"Connected to Android Enterprise {display}: a token was issued to "
                                f"{self.auth.key.client_email} and the enterprise is readable.",
                                details={"enterprise": self.enterprise, "tokens_fetched": self.auth.token_requests})

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        pages = CursorPaginator((resume or {}).get("page_token"), vendor="Android Management API",
                                key="nextPageToken")
        for body in pages.pages(self._devices_page):
            records = [device for device in body["devices"] if isinstance(device, dict)]
            yield Page(records=records, resume=None if pages.finished else {"page_token": pages.current})

    def map_record(self, raw: dict) -> MappedRecord:
        return map_device(raw)

    def external_id(self, raw: Any) -> str:
        return str(raw.get("name", "")) if isinstance(raw, dict) else ""


def enterprise_id(value: str) -> str:
    """The bare enterprise id of `LC0...` or `enterprises/LC0...`; ConfigurationError naming the field."""
    match = ENTERPRISE_ID.fullmatch(value or "")
    if not match:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ConfigurationError(f"enterprise_id: {shown!r} is neither an enterprise id (LC0...) nor its resource "
                                 "name enterprises/<id>")
    return match.group(1)


# --- mapping (pure) -----------------------------------------------------------------------------------

def map_device(raw: Any) -> MappedRecord:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not DEVICE_NAME.fullmatch(raw["name"]):
        raise RecordError("device has no resource name enterprises/<id>/devices/<id>")
    name = raw["name"]
    hardware = _object(raw, "hardwareInfo")
    software = _object(raw, "softwareInfo")
    network = _object(raw, "networkInfo")
    unmapped: dict[str, str] = {}
    state = _text(raw, "appliedState") or _text(raw, "state")
    status = STATUSES.get(state.upper(), "unknown")
    if status == "unknown" and state and state != "DEVICE_STATE_UNSPECIFIED":
        unmapped["status"] = state
    compliant = raw.get("policyCompliant")
    if compliant not in (True, False, None):
        raise RecordError("policyCompliant is not a boolean")
    reported = _time(raw, "lastStatusReportTime")
    manufacturer = _text(hardware, "manufacturer") or _text(hardware, "brand")
    model = _text(hardware, "model")
    device_id = name.rsplit("/", 1)[1]
    attributes: AssetAttributes = {
        "name": f"{model} ({device_id})" if model else device_id,
        "asset_type": "mobile",
        "status": status,
        "serial_number": _serial(raw, hardware),
        "manufacturer": manufacturer[:1].upper() + manufacturer[1:],  # "samsung" as people write it
        "model": model,
        "mac_address": _mac(_text(network, "wifiMacAddress")),
        "operating_system": "Android",
        "os_version": _text(software, "androidVersion"),
        "compliance_state": COMPLIANCE[compliant],
        "compliance_reasons": _reasons(raw) if compliant is False else [],
        "compliance_checked_at": reported if compliant is not None else None,
        "assigned_to": _user_email(_text(raw, "userName")),
        "last_seen_at": reported,
    }
    return MappedRecord(external_id=name, attributes=attributes, raw=raw, unmapped=unmapped)


def _object(raw: dict, name: str) -> dict:
    value = raw.get(name)
    if value is None:
        return {}  # not reported: the policy's statusReportingSettings leave it out
    if not isinstance(value, dict):
        raise RecordError(f"{name} is not an object")
    return value


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise RecordError(f"{name} is not text: {type(value).__name__}")
    return str(value).strip()


def _serial(raw: dict, hardware: dict) -> str:
    serial = _text(hardware, "serialNumber")
    if raw.get("ownership") != "PERSONALLY_OWNED" or not serial:
        return serial
    api_level = raw.get("apiLevel")
    pseudo = serial.upper() == _text(hardware, "enterpriseSpecificId").upper()
    if pseudo or not isinstance(api_level, int) or api_level >= ANDROID_12:
        return ""  # the enterprise-specific id, or possibly so: never a key to merge on
    return serial


def _mac(value: str) -> str:
    mac = normalize_mac(value)
    return "" if mac == PRIVACY_MAC else mac


def _reasons(raw: dict) -> list[str]:
    details = raw.get("nonComplianceDetails") or []
    if not isinstance(details, list):
        raise RecordError("nonComplianceDetails is not a list")
    reasons = []
    for detail in details:
        if not isinstance(detail, dict):
            continue
        setting = " ".join(filter(None, (_text(detail, "settingName"), _text(detail, "packageName"))))
        reason = _text(detail, "nonComplianceReason")
        reasons.append(": ".join(filter(None, (setting, reason))) or "unspecified")
    return reasons


def _user_email(user_name: str) -> str:
    return user_name.lower() if "@" in user_name and "/" not in user_name else ""


def _time(raw: dict, name: str) -> str | None:
    """RFC 3339 with milli- or nanosecond fractions ("...06:30:44.210Z") as ISO 8601 UTC."""
    value = _text(raw, name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise RecordError(f"{name} is not an RFC 3339 time: {value[:40]!r}")
    return moment.astimezone(UTC).isoformat()
