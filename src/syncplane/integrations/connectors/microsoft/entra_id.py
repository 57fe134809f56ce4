"""Microsoft Entra ID, read through Microsoft Graph v1.0 delta queries (see shared/api-notes/entra-id.md).

Auth: OAuth 2.0 client credentials through MSAL's ConfidentialClientApplication (auth type
oauth2_client_credentials: the app registration's client id and a client secret), scope
`https://graph.microsoft.com/.default`. The authority is configurable (`authority_url` + `tenant_id`; national
clouds, the simulator) and instance discovery / authority validation are off, so MSAL GETs
`{authority}/v2.0/.well-known/openid-configuration` and POSTs to the token_endpoint it names. MSAL's own HTTP
goes through Syncplane's HttpClient bound to the authority's origin (`MsalHttpClient`): the outbound URL
policy, timeouts, Retry-After and redaction apply to it as to Graph calls, and a token endpoint on another
host is refused. MSAL only accepts https authorities; for a plain-http authority (the simulator, allowed only
with SYNCPLANE_ALLOW_INSECURE_OUTBOUND) MSAL is given the https spelling of that one origin, in the authority
and in the endpoints of the OpenID configuration, and the adapter sends to the http origin that was
configured; no other host is ever rewritten. The token is cached per connector (MSAL's in-memory cache); a 401
InvalidAuthenticationToken from Graph (expired or revoked token) drops it, fetches a new one and retries the
request once. Token errors (AADSTS...) become AuthenticationError with the error code, never the secret.

Streams, in this order, each a delta chain: `/users/delta?$select=<USER_SELECT>`,
`/groups/delta?$select=displayName,description,members` (membership in `members@delta`), and
`/devices/delta?$select=<DEVICE_SELECT>`. Query options go into the first request only; every later request
is the `@odata.nextLink` (or stored `@odata.deltaLink`) GET verbatim. A chain ends only when a page carries
an `@odata.deltaLink`: an empty page with a nextLink is not the end. `$top` is not supported on delta, so the
page size is the server's.

Intune (config `include_intune_devices`, off by default; application permission
DeviceManagementManagedDevices.Read.All with admin consent): after the delta streams, the stream `managedDevices`
reads `/deviceManagement/managedDevices?$select=<MANAGED_DEVICE_SELECT>` following `@odata.nextLink` verbatim.
It has no delta, so every run, full or incremental, reads it whole (deletions are seen by the full runs'
reconciliation); it adds nothing to the cursor. A 403 names the missing permission.

Cursor: `{"users": deltaLink, "groups": deltaLink, "devices": deltaLink}`, given to the engine on the last
page of the run; the engine saves it only at the end of a clean run, so a crash never skips changes. A full
run is an initial delta (which also yields fresh delta links); an incremental run follows the stored links and
falls back to an initial delta for a stream without one. Page.resume is the nextLink to continue from (plus
the delta links already collected). An expired delta link (`syncStateNotFound`, `resyncRequired`, or 410 Gone)
fails the run with a message asking for a full sync; the scheduled full sync does exactly that.

Mapping (the directory record contract; absent properties stay absent, meaning "unchanged"):
- user: username = lower-cased userPrincipalName; email = lower-cased mail (null -> ""); first_name =
  givenName; last_name = surname; display_name; is_active = accountEnabled; dn = ""; removed = `@removed`
  present (reason "changed" = soft-deleted, "deleted" = gone: both deactivate).
- group: name = displayName; member_ref "external_id"; members None (Graph reports memberships as
  additions/removals, even in an initial delta); members_added / members_removed from `members@delta` items
  of type user or group (devices, service principals and contacts are not people and are skipped). A large
  group comes in slices on several items or pages: each slice is one record, and the sink merges them.
- device: asset name and hostname = displayName, operating_system (normalised: MacMDM -> macOS, IPhone ->
  iOS, IPad -> iPadOS), os_version, compliance_state from isCompliant (true compliant, false noncompliant,
  null unknown), asset_type from the OS (DEVICE_TYPES: phones mobile, iPads tablet, Windows and macOS
  clients laptop, Windows Server server, anything else other; Entra does not know the form factor),
  last_seen_at = approximateLastSignInDateTime; hostname only when displayName is a DNS label; status from
  accountEnabled (enabled active, disabled retired, as for Active Directory computers; absent unknown);
  azure_ad_device_id = deviceId, lower-cased (the inventory joins Entra, Intune and Defender records on it).
  isManaged and trustType stay in the raw record.
- Intune managed device (map_managed_device), external id `intune:<id>` (never a device object's id): name and
  hostname = deviceName (hostname only as a DNS label), serial_number, manufacturer, model, operating_system
  and asset_type from operatingSystem (as for device objects), os_version = osVersion, compliance_state from
  complianceState (INTUNE_COMPLIANCE: compliant; noncompliant and inGracePeriod noncompliant; conflict, error,
  unknown, configManager unknown), compliance_reasons ["inGracePeriod until <date>"] for a device in its grace
  period (the list reports no per-setting reasons), last_seen_at and compliance_checked_at = lastSyncDateTime
  (compliance is evaluated at check-in), assigned_to = userPrincipalName (else emailAddress), lower-cased,
  azure_ad_device_id = azureADDeviceId lower-cased ("" for the all-zero id of a device Entra does not know),
  status from managementState (MANAGEMENT_STATES; absent: active, the device is enrolled).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import msal

from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, MappedRecord, Page
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentError,
    RecordError,
    TransientError,
)
from syncplane.integrations.http import HttpClient, extract_vendor_message
from syncplane.integrations.paging import DeltaLinkPaginator, NextLinkPaginator
from syncplane.integrations.records import AssetAttributes, DirectoryDevice, DirectoryGroup, DirectoryUser
from syncplane.integrations.registry import register
from syncplane.integrations.secrets import Redactor

GRAPH_BASE = "https://graph.microsoft.com/v1.0"
AUTHORITY_BASE = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
STREAMS = ("users", "groups", "devices")
INTUNE_STREAM = "managedDevices"  # after the delta streams, when include_intune_devices is on
INTUNE_PREFIX = "intune:"  # Intune's ids are not device object ids: an external id of their own
USER_SELECT = "id,userPrincipalName,mail,givenName,surname,displayName,accountEnabled,userType"
GROUP_SELECT = "displayName,description,members"
DEVICE_SELECT = ("id,deviceId,displayName,operatingSystem,operatingSystemVersion,isCompliant,isManaged,"
                 "accountEnabled,approximateLastSignInDateTime,trustType")
MANAGED_DEVICE_SELECT = ("id,deviceName,serialNumber,manufacturer,model,operatingSystem,osVersion,complianceState,"
                         "complianceGracePeriodExpirationDateTime,azureADDeviceId,userPrincipalName,emailAddress,"
                         "managedDeviceOwnerType,managementState,lastSyncDateTime")
SELECT = {"users": USER_SELECT, "groups": GROUP_SELECT, "devices": DEVICE_SELECT}
ODATA_TYPE = {"users": "#microsoft.graph.user", "groups": "#microsoft.graph.group",
              "devices": "#microsoft.graph.device", INTUNE_STREAM: "#microsoft.graph.managedDevice"}
MEMBER_TYPES = {"#microsoft.graph.user", "#microsoft.graph.group"}
# displayName is the hostname for joined devices (LAPTOP-0042) and free text for registered ones ("Tom's
# iPhone"): only a valid DNS label is used as hostname, which the inventory identifies devices by.
_HOST_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
RESYNC_CODES = {"syncStateNotFound", "resyncRequired", "syncStateInvalid"}

# operatingSystem (lower-cased) -> (canonical OS name, asset_type)
DEVICE_TYPES = {
    "iphone": ("iOS", "mobile"), "ios": ("iOS", "mobile"), "android": ("Android", "mobile"),
    "androidforwork": ("Android", "mobile"), "androidenterprise": ("Android", "mobile"),
    "ipad": ("iPadOS", "tablet"), "ipados": ("iPadOS", "tablet"),
    "windows": ("Windows", "laptop"), "macmdm": ("macOS", "laptop"), "macos": ("macOS", "laptop"),
    "mac os x": ("macOS", "laptop"), "windows server": ("Windows Server", "server"),
}
# Intune complianceState (lower-cased) -> compliance_state; conflict, error, unknown, configManager: unknown.
INTUNE_COMPLIANCE = {"compliant": "compliant", "noncompliant": "noncompliant", "ingraceperiod": "noncompliant"}
# Intune managementState -> status: a retire or wipe under way is the end of the device's managed life.
MANAGEMENT_STATES = {
    "managed": "active", "discovered": "in_stock", "unhealthy": "in_maintenance",
    "retirepending": "retired", "retireissued": "retired", "wipepending": "retired", "wipeissued": "retired",
    "deletepending": "retired", "retirefailed": "active", "wipefailed": "active", "retirecanceled": "active",
    "wipecanceled": "active",
}
NO_ENTRA_DEVICE = "00000000-0000-0000-0000-000000000000"  # Intune's azureADDeviceId when Entra has none
ROLE_MAPPING_SCHEMA = {
    "type": "object", "additionalProperties": {"enum": ["admin", "operator", "viewer"]}, "default": {},
    "description": "Directory group (name or id) -> Syncplane role, applied after each sync.",
}


class MsalResponse:
    """The response shape MSAL's HTTP interface expects (status_code, text, headers, raise_for_status)."""

    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.text = response.text
        self.headers = response.headers

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise TransientError(f"the identity platform answered {self.status_code}", status_code=self.status_code)


class MsalHttpClient:
    """MSAL's http_client, backed by Syncplane's HttpClient on the authority's origin.

    Every answer below 500 except 429 is handed to MSAL as it is (it reads OAuth error bodies itself); 429
    and 5xx are retried here with Retry-After, then raised as TransientError. `insecure_origin` maps the https
    spelling MSAL insists on back to the plain-http authority the operator configured (demo, tests)."""

    PASS_THROUGH = tuple(s for s in range(200, 500) if s != 429 and not 300 <= s < 400)

    def __init__(self, client: HttpClient, insecure_origin: tuple[str, str] | None = None):
        self.client = client
        self.insecure_origin = insecure_origin  # (https netloc MSAL uses, http netloc to call)

    def _url(self, url: str) -> str:
        parts = urlsplit(url)
        if self.insecure_origin and parts.scheme == "https" and parts.netloc == self.insecure_origin[0]:
            return urlunsplit(("http", self.insecure_origin[1], parts.path, parts.query, parts.fragment))
        return url

    def get(self, url, params=None, headers=None, **kwargs):
        response = MsalResponse(self.client.request("GET", self._url(url), params=params, headers=headers,
                                                    expected=self.PASS_THROUGH))
        if self.insecure_origin:
            # MSAL checks the endpoints the OpenID configuration names are https too: the same spelling.
            response.text = response.text.replace(f"http://{self.insecure_origin[1]}/",
                                                  f"https://{self.insecure_origin[0]}/")
        return response

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        if isinstance(data, (str, bytes)):
            data = dict(parse_qsl(data.decode() if isinstance(data, bytes) else data))
        # A token request changes nothing: safe to repeat after any transient failure.
        return MsalResponse(self.client.request("POST", self._url(url), params=params, data=data, headers=headers,
                                                expected=self.PASS_THROUGH, idempotent=True))

    def close(self) -> None:
        self.client.close()


class GraphTokenAuth(httpx.Auth):
    """Bearer token from MSAL; on 401 InvalidAuthenticationToken one new token and one retry."""

    requires_response_body = True

    def __init__(self, make_app: Callable[[], msal.ConfidentialClientApplication], client_secret: str,
                 redactor: Redactor):
        # MSAL reads the OpenID configuration when the application object is made: made on first use, so a
        # wrong tenant fails the run as an authentication error instead of failing to build the connector.
        self._make_app = make_app
        self.app: msal.ConfidentialClientApplication | None = None
        self._secret = client_secret
        self._redactor = redactor
        self._lock = threading.Lock()
        self._token: str | None = None
        self.tokens_fetched = 0

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew and self.app is not None:
                self.app.remove_tokens_for_client()
                self._token = None
            if self._token is None:
                self._token = self._acquire()
            return self._token

    def _acquire(self) -> str:
        try:
            if self.app is None:
                self.app = self._make_app()
            result = self.app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except ValueError as exc:
            # MSAL raises ValueError when OIDC discovery fails: an unknown tenant or a wrong authority URL.
            raise AuthenticationError(
                "Entra ID: the authority's OpenID configuration could not be read (are the tenant id and the "
                "authority URL right?): " + self._redactor.redact(_msal_reason(exc))
            ) from None
        if "access_token" in result:
            if result.get("token_source") != "cache":
                self.tokens_fetched += 1
            return result["access_token"]
        error = result.get("error", "error")
        description = str(result.get("error_description", "")).splitlines()[0] if result.get("error_description") \
            else ""
        message = f"Entra ID token request refused: {error}: {description}"[:400]
        raise AuthenticationError(self._redactor.redact(message))

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401 and _graph_code(response) == "InvalidAuthenticationToken":
            request.headers["Authorization"] = f"Bearer {self.token(renew=True)}"
            yield request

    def secret_values(self) -> tuple[str, ...]:
        return tuple(v for v in (self._secret, self._token) if v)


def _msal_reason(exc: Exception) -> str:
    """The identity platform's error description out of MSAL's discovery error, without the rest."""
    context = exc.__context__ if isinstance(exc.__context__, ValueError) else exc
    text = str(context)
    if "AADSTS" in text:
        return "AADSTS" + text.split("AADSTS", 1)[1].split('"', 1)[0][:200]
    return text.split(". ", 1)[0][:200]


def _graph_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return str(error.get("code", "")) if isinstance(error, dict) else ""


@register
class EntraIDConnector(Connector):
    system_type = SystemType.ENTRA_ID
    category = Category.IDENTITY
    display_name = "Microsoft Entra ID"
    url_config_fields = ("authority_url",)  # the client secret goes to the authority's token endpoint
    base_url_help = (
        "The Microsoft Graph root with its version, without a resource: the connector adds /users, "
        "/groups and /devices (national clouds: https://graph.microsoft.us/v1.0, ...)."
    )
    base_url_example = "https://graph.microsoft.com/v1.0"
    owned_path_suffixes = ("/users", "/groups", "/devices", "/deviceManagement")
    record_kind = RecordKind.DIRECTORY
    auth_types = (AuthType.OAUTH2_CLIENT_CREDENTIALS,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL, Capability.DRY_RUN})
    config_schema = {
        "type": "object",
        "properties": {
            "tenant_id": {"type": "string", "minLength": 1, "maxLength": 255,
                          "description": "Directory (tenant) id, or a verified domain of the tenant."},
            "authority_url": {"type": "string", "minLength": 1, "maxLength": 500, "default": AUTHORITY_BASE,
                              "description": "Identity platform host (national clouds: login.microsoftonline.us,"
                              " ...); the tenant id is appended."},
            "sync_devices": {"type": "boolean", "default": True,
                             "description": "Read /devices/delta into the inventory."},
            "include_intune_devices": {
                "type": "boolean", "default": False,
                "description": "Also read Intune's /deviceManagement/managedDevices (serials, compliance, primary "
                               "user) in full on every run; needs DeviceManagementManagedDevices.Read.All."},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
            "role_mapping": ROLE_MAPPING_SCHEMA,
        },
        "required": ["tenant_id"],
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        if context.auth_type != AuthType.OAUTH2_CLIENT_CREDENTIALS:
            raise ConfigurationError("Entra ID takes an app registration's client credentials: use auth type "
                                     "oauth2_client_credentials")
        secrets = context.secret_values()
        redactor = Redactor(secrets)
        timeout = self.config["timeout_seconds"]
        authority = f"{self.config['authority_url'].rstrip('/')}/{self.config['tenant_id'].strip('/')}"
        parts = urlsplit(authority)
        self.login_client = HttpClient(f"{parts.scheme}://{parts.netloc}", timeout=timeout, secrets=secrets)
        insecure = (parts.netloc, parts.netloc) if parts.scheme == "http" else None
        client_id, client_secret = context.credential("client_id"), context.credential("client_secret")

        def make_app() -> msal.ConfidentialClientApplication:
            return msal.ConfidentialClientApplication(
                client_id,
                client_credential=client_secret,
                authority=urlunsplit(("https", parts.netloc, parts.path, "", "")),
                validate_authority=False,
                instance_discovery=False,
                http_client=MsalHttpClient(self.login_client, insecure),
            )

        self.auth = GraphTokenAuth(make_app, client_secret, redactor)
        self.client = HttpClient((context.base_url or GRAPH_BASE).rstrip("/"), auth=self.auth, timeout=timeout,
                                 secrets=secrets)

    def close(self) -> None:
        self.client.close()
        self.login_client.close()

    # --- requests --------------------------------------------------------------------------------

    def _get_page(self, url: str) -> dict:
        response = self.client.get(url, expected=(200, 400, 403, 404, 410))
        if response.status_code == 403:
            vendor = self.client.redact(" ".join(extract_vendor_message(response).split()))[:300]
            hint = (" (Intune needs the application permission DeviceManagementManagedDevices.Read.All with admin "
                    "consent, or turn include_intune_devices off)" if "/deviceManagement/" in url else "")
            raise AuthenticationError(f"GET {response.request.url.path} answered 403: {vendor}{hint}",
                                      status_code=403)
        if response.status_code != 200:
            code = _graph_code(response)
            if response.status_code == 410 or code in RESYNC_CODES:
                raise PermanentError(
                    f"Entra ID: the stored delta link is no longer valid ({code or 'Gone'}); run a full sync to "
                    "start the delta chain again", status_code=response.status_code)
            vendor = self.client.redact(" ".join(extract_vendor_message(response).split()))[:300]
            raise PermanentError(f"GET {response.request.url.path} answered {response.status_code}: {vendor}",
                                 status_code=response.status_code)
        body = self.client.json(response)
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise PermanentError(f"GET {response.request.url.path} answered without a value list")
        return body

    # --- the contract ----------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        body = self._get_page(f"/users/delta?$select={USER_SELECT}")
        message = "Connected to Entra ID: a token was issued and users are readable (User.Read.All)"
        if self.config["include_intune_devices"]:
            self._get_page("/deviceManagement/managedDevices?$select=id&$top=1")
            message += " and so are Intune's managed devices (DeviceManagementManagedDevices.Read.All)"
        return ConnectionResult(ok=True, message=message + ".", details={"tokens_fetched": self.auth.tokens_fetched,
                                                                          "sample": len(body["value"])})

    def streams(self) -> tuple[str, ...]:
        streams = STREAMS if self.config["sync_devices"] else STREAMS[:2]
        return (*streams, INTUNE_STREAM) if self.config["include_intune_devices"] else streams

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        stored = cursor if mode == "incremental" and isinstance(cursor, dict) else {}
        links: dict[str, str] = dict((resume or {}).get("links") or {})
        streams = self.streams()
        start = streams.index(resume["stream"]) if resume and resume.get("stream") in streams else 0
        for position in range(start, len(streams)):
            stream = streams[position]
            resumed = resume["next"] if resume and position == start and resume.get("next") else None
            chain: DeltaLinkPaginator | NextLinkPaginator
            if stream == INTUNE_STREAM:  # no delta: the whole list, every run
                url = resumed or f"/deviceManagement/managedDevices?$select={MANAGED_DEVICE_SELECT}"
                chain = NextLinkPaginator(url, vendor="Intune (managedDevices)", key="@odata.nextLink")
            else:
                url = resumed or stored.get(stream) or f"/{stream}/delta?$select={SELECT[stream]}"
                chain = DeltaLinkPaginator(url, vendor=f"Entra ID ({stream})")
            last_stream = position == len(streams) - 1
            for body in chain.pages(self._get_page):
                records = [_tagged(item, stream) for item in body["value"] if isinstance(item, dict)]
                if not chain.finished:
                    yield Page(records=records, resume={"stream": stream, "next": chain.current, "links": links})
                    continue
                if isinstance(chain, DeltaLinkPaginator):
                    links = {**links, stream: chain.delta_link}
                if last_stream:
                    yield Page(records=records, resume=None, cursor=links)
                else:
                    following = streams[position + 1]
                    yield Page(records=records, resume={"stream": following, "next": None, "links": links})

    def map_record(self, raw: dict) -> MappedRecord:
        return map_directory_object(raw)

    def external_id(self, raw: Any) -> str:
        if not isinstance(raw, dict):
            return ""
        prefix = INTUNE_PREFIX if raw.get("@odata.type") == ODATA_TYPE[INTUNE_STREAM] else ""
        return prefix + str(raw.get("id", ""))


def _tagged(item: dict, stream: str) -> dict:
    """Delta items do not say what they are; the stream does. Graph's own @odata.type is used for it."""
    if "@odata.type" not in item:
        item = {"@odata.type": ODATA_TYPE[stream], **item}
    return item


# --- mapping (pure) -----------------------------------------------------------------------------------

def map_directory_object(raw: Any) -> MappedRecord:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise RecordError("record has no id")
    kind = raw.get("@odata.type")
    removed = "@removed" in raw
    attributes: DirectoryUser | DirectoryGroup | DirectoryDevice
    if kind == ODATA_TYPE[INTUNE_STREAM]:  # a list, not a delta: never @removed
        device: DirectoryDevice = {"kind": "device", "removed": False, "asset": map_managed_device(raw)}
        return MappedRecord(external_id=INTUNE_PREFIX + raw["id"], attributes=device, raw=raw)
    if kind == ODATA_TYPE["users"]:
        attributes = map_user(raw)
    elif kind == ODATA_TYPE["groups"]:
        attributes = map_group(raw)
    elif kind == ODATA_TYPE["devices"]:
        attributes = {"kind": "device", "removed": removed}
        if not removed:
            attributes["asset"] = map_device(raw)
    else:
        raise RecordError(f"unsupported object type {kind!r}")
    attributes["removed"] = removed
    return MappedRecord(external_id=raw["id"], attributes=attributes, raw=raw)


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name} is not a string: {type(value).__name__}")
    return value.strip()


def map_user(raw: dict) -> DirectoryUser:
    """Only the properties the item carries: in a delta, an absent one is unchanged."""
    attributes: DirectoryUser = {"kind": "user", "dn": ""}
    if "userPrincipalName" in raw:
        username = _text(raw, "userPrincipalName").lower()
        if not username:
            raise RecordError("userPrincipalName is empty")
        attributes["username"] = username
    if "mail" in raw:
        attributes["email"] = _text(raw, "mail").lower()
    for source, target in (("givenName", "first_name"), ("surname", "last_name"), ("displayName", "display_name")):
        if source in raw:
            attributes[target] = _text(raw, source)
    if "accountEnabled" in raw:
        if not isinstance(raw["accountEnabled"], bool):
            raise RecordError("accountEnabled is not a boolean")
        attributes["is_active"] = raw["accountEnabled"]
    return attributes


def map_group(raw: dict) -> DirectoryGroup:
    attributes: DirectoryGroup = {"kind": "group", "dn": "", "member_ref": "external_id", "members": None,
                                  "members_added": [], "members_removed": []}
    if "displayName" in raw:
        attributes["name"] = _text(raw, "displayName")
    for item in raw.get("members@delta") or ():
        if not isinstance(item, dict) or item.get("@odata.type") not in MEMBER_TYPES or not item.get("id"):
            continue  # devices, service principals, contacts: not people
        key = "members_removed" if "@removed" in item else "members_added"
        attributes[key].append(str(item["id"]))
    return attributes


def map_device(raw: dict) -> AssetAttributes:
    name = _text(raw, "displayName")
    os_raw = _text(raw, "operatingSystem")
    os_name, asset_type = DEVICE_TYPES.get(os_raw.lower(), (os_raw, "other"))
    compliant = raw.get("isCompliant")
    if compliant not in (True, False, None):
        raise RecordError("isCompliant is not a boolean")
    enabled = raw.get("accountEnabled")
    if enabled not in (True, False, None):
        raise RecordError("accountEnabled is not a boolean")
    seen = _time(raw, "approximateLastSignInDateTime")
    return {
        "name": name, "hostname": name if _HOST_LABEL.fullmatch(name) else "", "asset_type": asset_type,
        "operating_system": os_name,
        "os_version": _text(raw, "operatingSystemVersion"),
        "compliance_state": {True: "compliant", False: "noncompliant"}.get(compliant, "unknown"),
        "status": {True: "active", False: "retired"}.get(enabled, "unknown"),
        "last_seen_at": seen,
        "azure_ad_device_id": _entra_device_id(raw, "deviceId"),
    }


def map_managed_device(raw: dict) -> AssetAttributes:
    """An Intune managed device: the serial, compliance and primary user Entra's device object lacks."""
    name = _text(raw, "deviceName")
    os_raw = _text(raw, "operatingSystem")
    os_name, asset_type = DEVICE_TYPES.get(os_raw.lower(), (os_raw, "other"))
    state = _text(raw, "complianceState")
    compliance = INTUNE_COMPLIANCE.get(state.lower(), "unknown")
    reasons = []
    if state.lower() == "ingraceperiod":
        until = _time(raw, "complianceGracePeriodExpirationDateTime")
        reasons.append(f"inGracePeriod until {until}" if until else "inGracePeriod")
    management = _text(raw, "managementState")
    synced = _time(raw, "lastSyncDateTime")
    return {
        "name": name, "hostname": name if _HOST_LABEL.fullmatch(name) else "", "asset_type": asset_type,
        "serial_number": _text(raw, "serialNumber"),
        "manufacturer": _text(raw, "manufacturer"), "model": _text(raw, "model"),
        "operating_system": os_name, "os_version": _text(raw, "osVersion"),
        "compliance_state": compliance, "compliance_reasons": reasons,
        "compliance_checked_at": synced if compliance != "unknown" else None,
        "status": MANAGEMENT_STATES.get(management.lower(), "unknown") if management else "active",
        "last_seen_at": synced,
        "assigned_to": (_text(raw, "userPrincipalName") or _text(raw, "emailAddress")).lower(),
        "azure_ad_device_id": _entra_device_id(raw, "azureADDeviceId"),
    }


def _entra_device_id(raw: dict, name: str) -> str:
    value = _text(raw, name).lower()
    return "" if value == NO_ENTRA_DEVICE else value


def _time(raw: dict, name: str) -> str | None:
    value = _text(raw, name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).isoformat()
    except ValueError:
        raise RecordError(f"{name} is not a timestamp: {value[:40]!r}") from None
