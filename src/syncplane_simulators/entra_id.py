"""Microsoft Graph (Entra ID) simulator: the identity platform's token endpoint and the directory's delta
queries (see shared/api-notes/entra-id.md).

What it imitates:
- Identity platform, under `/graph/login/{tenant}`: `GET /v2.0/.well-known/openid-configuration` (what MSAL
  reads once instance discovery is off) and `POST /oauth2/v2.0/token` (client credentials, form-encoded,
  `scope=https://graph.microsoft.com/.default`). Errors are OAuth-style: `invalid_client` with AADSTS7000215
  (bad secret, 401) or AADSTS700016 (unknown app, 400); an unknown tenant is AADSTS90002 (400).
  Tokens live `token_lifetime` seconds; `_control/expire-tokens` expires every issued token now, after which
  Graph answers 401 `InvalidAuthenticationToken` with Graph's error body.
- Graph, under `/graph/v1.0`: `/users/delta`, `/groups/delta` (members in `members@delta` when `$select`
  names `members`) and `/devices/delta`. The first call takes `$select`; the query is then encoded in opaque
  `$skiptoken` (nextLink) and `$deltatoken` (deltaLink) values that are absolute URLs to follow verbatim.
  The page size is the server's (`page_size`); `$top` and `$filter` on delta answer 400
  `Request_UnsupportedQuery`. Quirks: the first page of an initial users chain is empty and still carries a
  nextLink; a group's members come in slices of `member_slice`, so a large group appears on several items
  and pages; an initial groups delta lists groups deleted earlier as `@removed`; never-set properties are
  omitted; UPNs come in mixed case; `mail` is sometimes null; some names are not ASCII.
- Delta tokens encode a position in a change log. `_control/` endpoints add, update, disable, enable and
  remove users, add and remove group members, remove groups and devices; a delta from a link taken before
  returns exactly those objects (removed ones as `{"id", "@removed": {"reason": "deleted"}}`, membership
  changes in `members@delta`, a removed member with `@removed`).
- Intune, `GET /v1.0/deviceManagement/managedDevices` (permission DeviceManagementManagedDevices.Read.All; with
  `intune_permission` off it answers 403 naming it): every managed Entra device (not servers, not Linux) plus
  two enrolled without an Entra registration (azureADDeviceId all zeros). `azureADDeviceId` is the device
  object's `deviceId`; Windows and Mac serials are those of the shared fleet (devices.py: the CMDB simulators'
  laptops and desktops), phones have their own, personal Android work profiles an empty serial. No delta: the
  list pages with `$skiptoken` nextLinks (`page_size`) and ends without a deltaLink; `$select` is honoured,
  `$filter` only as `lastSyncDateTime ge <time>`. `_control/managed-devices/{remove,update}` change it.
- Faults through `_control/faults` (FaultInjector): 429 with Retry-After, 503, slow answers, on any path.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
import unicodedata
import uuid
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .devices import device_identity

DEFAULT_TENANT = "8f3c1a52-2b7e-4d0a-9c61-5e4f7a9b0c11"
DEFAULT_DOMAIN = "contoso.example"
DEFAULT_CLIENT_ID = "3b5d7f91-6c2a-4e8b-a0d4-1f9e8c7b6a50"
DEFAULT_CLIENT_SECRET = "demo-graph-client-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

USER_DEFAULT = ("id", "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName")
GROUP_DEFAULT = ("id", "displayName", "description", "groupTypes", "securityEnabled", "mailEnabled")
DEVICE_DEFAULT = ("id", "deviceId", "displayName", "operatingSystem", "operatingSystemVersion", "accountEnabled",
                  "isCompliant", "isManaged", "trustType", "approximateLastSignInDateTime")
STREAMS = {"users": USER_DEFAULT, "groups": GROUP_DEFAULT, "devices": DEVICE_DEFAULT}
ODATA_TYPES = {"users": "#microsoft.graph.user", "groups": "#microsoft.graph.group",
               "devices": "#microsoft.graph.device"}

FIRST_NAMES = ("Ana", "Renée", "Jürgen", "Zoë", "Łukasz", "Søren", "Tom", "Priya", "Chen", "Fatima", "Noah",
               "Olivia", "Mateo", "Aiko", "Kwame", "Ingrid", "Rafael", "Sofia", "Liam", "Yusuf")
LAST_NAMES = ("Lopez", "Dubois", "Müller", "García", "Nakamura", "O'Brien", "Smith", "Kowalski", "Novak",
              "Haddad", "Okafor", "Johansson", "Rossi", "Kim", "Petrov", "Silva")
DEPARTMENTS = ("Finance", "Engineering", "Operations", "Sales", "Legal")
DEVICE_KINDS = (  # (operatingSystem, version, name pattern, trustType)
    ("Windows", "10.0.22631.3737", "LAPTOP-{:04d}", "AzureAd"),
    ("Windows", "10.0.19045.4529", "DESKTOP-{:04d}", "ServerAd"),
    ("MacMDM", "14.5", "MBP-{:04d}", "Workplace"),
    ("IPhone", "17.5.1", "iPhone-{:04d}", "Workplace"),
    ("IPad", "17.5", "iPad-{:04d}", "Workplace"),
    ("AndroidForWork", "14", "Pixel-{:04d}", "Workplace"),
    ("Windows Server", "10.0.20348", "SRV-{:04d}", "ServerAd"),
    ("Linux", "6.5", "ubuntu-{:04d}", "Workplace"),
)
BASE_SIGN_IN = 1_717_000_000  # 2024-05-29, signs-ins spread from there
NO_ENTRA_DEVICE = "00000000-0000-0000-0000-000000000000"  # Intune's azureADDeviceId for an unregistered device
MANAGED_DEVICE_SELECT = ("id", "deviceName", "serialNumber", "manufacturer", "model", "operatingSystem", "osVersion",
                         "complianceState", "azureADDeviceId", "userPrincipalName", "emailAddress",
                         "managedDeviceOwnerType", "managementState", "lastSyncDateTime", "enrolledDateTime",
                         "wiFiMacAddress", "isEncrypted")
# Entra operatingSystem -> (Intune operatingSystem, owner type, phone manufacturer, phone model); servers and
# Linux are not enrolled in Intune here.
INTUNE_KINDS = {
    "Windows": ("Windows", "company", "", ""), "MacMDM": ("macOS", "company", "", ""),
    "IPhone": ("iOS", "company", "Apple", "iPhone 15"),
    "IPad": ("iPadOS", "company", "Apple", "iPad Air (5th generation)"),
    "AndroidForWork": ("Android", "personal", "Google", "Pixel 8"),
}


def _fold(text: str) -> str:
    """ASCII for a UPN: accents dropped, the letters NFKD cannot split spelled out, apostrophes removed."""
    text = text.replace("ł", "l").replace("Ł", "L").replace("ø", "o").replace("Ø", "O").replace("'", "")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def graph_error(code: str, message: str, status: int, headers: dict | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "innerError": {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "request-id": str(uuid.uuid4()),
        "client-request-id": str(uuid.uuid4())}}}
    response = json_response(body, status, headers=headers)
    response.headers["request-id"] = body["error"]["innerError"]["request-id"]
    return response


def oauth_error(error: str, code: int, description: str, status: int) -> Response:
    return json_response({"error": error, "error_description": f"AADSTS{code}: {description}",
                          "error_codes": [code], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                          "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}, status)


class GraphSimulator(SimulatorApp):
    def __init__(self, users: int = 120, devices: int = 40, seed: int = 42, *, page_size: int = 50,
                 member_slice: int = 20, token_lifetime: int = 3599, tenant: str = DEFAULT_TENANT,
                 domain: str = DEFAULT_DOMAIN, client_id: str = DEFAULT_CLIENT_ID,
                 client_secret: str = DEFAULT_CLIENT_SECRET):
        self.user_count, self.device_count, self.seed = users, devices, seed
        self.page_size, self.member_slice, self.token_lifetime = page_size, member_slice, token_lifetime
        self.tenant, self.domain = tenant, domain
        self.client_id, self.client_secret = client_id, client_secret
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.RLock()
        self.reset()

    # ------------------------------------------------------------------ data

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self.seed)
            self.users: dict[str, dict] = {}
            self.groups: dict[str, dict] = {}
            self.devices: dict[str, dict] = {}
            self.members: dict[str, dict[str, str]] = {}  # group id -> {member id: stream}
            self.deleted: dict[str, dict[str, int]] = {s: {} for s in STREAMS}  # stream -> id -> seq
            self.log: list[tuple[int, str, str, str | None, str | None]] = []  # seq, stream, id, member op, member
            self.seq = 0
            self.tokens: dict[str, float] = {}
            self._chains: dict[str, tuple[tuple, list[dict]]] = {}  # stream -> (chain key, its items)
            self.stats.reset()
            self.faults.clear()
            for _ in range(self.user_count):
                self._new_user()
            for _ in range(self.device_count):
                self._new_device()
            self._seed_groups()
            self._seed_managed_devices()
            gone = self._new_group("Legacy VPN Users", [])  # deleted before any sync: @removed in initial delta
            self._remove("groups", gone)
            self.seq = 0  # the initial state is the start of history
            self.log.clear()

    def _guid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_user(self, **overrides) -> str:
        index = len(self.users) + sum(1 for _ in self.deleted["users"])
        first = FIRST_NAMES[index % len(FIRST_NAMES)]
        last = LAST_NAMES[(index * 7 + 3) % len(LAST_NAMES)]
        upn = f"{_fold(first)}.{_fold(last)}{index}@{self.domain.title()}"  # mixed case, as Graph keeps it
        user = {
            "id": self._guid(), "userPrincipalName": upn,
            "mail": None if index % 11 == 7 else upn.replace(".", "_", 1) if index % 13 == 5 else upn,
            "givenName": first, "surname": last, "displayName": f"{first} {last}",
            "accountEnabled": index % 9 != 4, "department": DEPARTMENTS[index % len(DEPARTMENTS)],
            "jobTitle": None if index % 4 == 0 else "Analyst", "userType": "Member",
        }
        user.update(overrides)
        self.users[user["id"]] = user
        self._changed("users", user["id"])
        return user["id"]

    def _new_device(self) -> str:
        index = len(self.devices) + len(self.deleted["devices"])
        os_name, version, pattern, trust = DEVICE_KINDS[index % len(DEVICE_KINDS)]
        device = {
            "id": self._guid(), "deviceId": self._guid(), "displayName": pattern.format(index),
            "operatingSystem": os_name, "operatingSystemVersion": version, "trustType": trust,
            "isCompliant": None if index % 5 == 4 else index % 3 != 1, "isManaged": index % 5 != 4,
            "accountEnabled": index % 10 != 7,  # a few disabled registrations, as every tenant has
            "approximateLastSignInDateTime": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE_SIGN_IN + index * 3607)),
            "registrationDateTime": "2024-01-08T06:00:00Z",
        }
        self.devices[device["id"]] = device
        self._changed("devices", device["id"])
        return device["id"]

    def _new_group(self, name: str, members: list[tuple[str, str]], description: str = "") -> str:
        group = {"id": self._guid(), "displayName": name, "description": description or None, "groupTypes": [],
                 "securityEnabled": True, "mailEnabled": False}
        self.groups[group["id"]] = group
        self.members[group["id"]] = {}
        self._changed("groups", group["id"])
        for stream, member in members:
            self._add_member(group["id"], member, stream)
        return group["id"]

    def _seed_groups(self) -> None:
        users = list(self.users)
        platform = self._new_group("Platform Team", [("users", u) for u in users[5:9]])
        self._new_group("Syncplane Operators", [("users", u) for u in users[:3]] + [("groups", platform)],
                        "Members run syncs in Syncplane (mapped to the operator role in the demo).")
        self._new_group("Syncplane Admins", [("users", users[0])])
        engineering = self._new_group("Engineering", [("users", u) for u in users[::3]] + [("groups", platform)])
        self._new_group("All Staff", [("users", u) for u in users] + [("groups", engineering)],
                        "Everyone: a large group, split over several delta items.")
        self._new_group("Finance", [("users", u) for u in users[::5]])
        self._new_group("Kiosk Devices", [("devices", d) for d in list(self.devices)[:3]])

    def _seed_managed_devices(self) -> None:
        """Intune's view of the managed devices, from an rng of its own: the directory's objects (and the other
        simulators built from them) stay what they were before Intune existed here."""
        rng = random.Random(f"intune-{self.seed}")
        self.intune_permission = True
        self.managed_devices: dict[str, dict] = {}
        fleet = self._fleet_computers()
        users = [u["userPrincipalName"] for u in self.users.values()]
        failing = 0  # Entra's non-compliant devices, in Intune's detail: grace period, non-compliant, error
        for index, device in enumerate(self.devices.values()):
            kind = INTUNE_KINDS.get(device["operatingSystem"])
            if kind is None or not device["isManaged"]:
                continue
            os_name, owner, make, model = kind
            if make:
                serial = "" if owner == "personal" else "F" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
                                                                      for _ in range(11))
            else:
                computer = next(fleet[os_name == "macOS"])
                serial, make, model = computer.serial, computer.manufacturer, computer.model
            state = "compliant"
            if not device["isCompliant"]:
                state = ("inGracePeriod", "noncompliant", "error", "noncompliant")[failing % 4]
                failing += 1
            synced = BASE_SIGN_IN + index * 3607 + 300
            self._add_managed_device(rng, device["displayName"], serial, make, model, os_name, device.get(
                "operatingSystemVersion", ""), state, device["deviceId"], users[(index * 5) % len(users)], owner,
                synced)
        for n in range(2):  # enrolled in Intune without ever registering in Entra
            computer = next(fleet[False])
            self._add_managed_device(rng, f"KIOSK-{n:02d}", computer.serial, computer.manufacturer, computer.model,
                                     "Windows", "10.0.22631.3737", "compliant" if n else "conflict", NO_ENTRA_DEVICE,
                                     "", "company", BASE_SIGN_IN + n * 900)

    def _fleet_computers(self) -> dict[bool, object]:
        """Iterators over the shared fleet's laptops and desktops with a real serial: Macs (True), others (False)."""
        def computers(apple: bool):
            i = 0
            while True:
                device = device_identity(self.seed, i)
                if device.kind in ("laptop", "desktop") and not device.serial_is_placeholder \
                        and (device.manufacturer == "Apple Inc.") == apple:
                    yield device
                i += 1
        return {True: computers(True), False: computers(False)}

    def _add_managed_device(self, rng: random.Random, name: str, serial: str, make: str, model: str, os_name: str,
                            version: str, state: str, entra_id: str, upn: str, owner: str, synced: int) -> None:
        guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mac = "" if owner == "personal" else "".join(f"{rng.getrandbits(8):02X}" for _ in range(6))
        self.managed_devices[guid] = {
            "id": guid, "deviceName": name, "serialNumber": serial, "manufacturer": make, "model": model,
            "operatingSystem": os_name, "osVersion": version, "complianceState": state, "azureADDeviceId": entra_id,
            "userPrincipalName": upn, "emailAddress": upn.lower(), "managedDeviceOwnerType": owner,
            "managementState": "managed", "lastSyncDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(synced)),
            "enrolledDateTime": "2024-01-08T06:05:00Z", "wiFiMacAddress": mac, "isEncrypted": owner == "company",
            "deviceEnrollmentType": "windowsAzureADJoin" if os_name == "Windows" else "userEnrollment",
        }

    def _changed(self, stream: str, object_id: str, op: str | None = None, member: str | None = None) -> None:
        self.seq += 1
        self.log.append((self.seq, stream, object_id, op, member))

    def _add_member(self, group_id: str, member: str, stream: str) -> None:
        self.members[group_id][member] = stream
        self._changed("groups", group_id, "add", member)

    def _remove(self, stream: str, object_id: str) -> None:
        store = getattr(self, stream)
        store.pop(object_id)
        self.deleted[stream][object_id] = self.seq + 1
        self._changed(stream, object_id)
        if stream == "groups":
            self.members.pop(object_id, None)
        for members in self.members.values():  # a deleted object leaves every group it was in
            if members.pop(object_id, None) is not None:
                pass

    def find_group(self, key: str) -> str:
        if key in self.groups:
            return key
        for gid, group in self.groups.items():
            if group["displayName"].lower() == str(key).lower():
                return gid
        raise KeyError(f"no group {key!r}")

    # ------------------------------------------------------------------ changes (control API, tests)

    def add_users(self, count: int = 1) -> list[str]:
        with self._lock:
            return [self._new_user() for _ in range(count)]

    def update_user(self, user_id: str, **fields) -> None:
        with self._lock:
            self.users[user_id].update(fields)
            self._changed("users", user_id)

    def disable_user(self, user_id: str, enabled: bool = False) -> None:
        self.update_user(user_id, accountEnabled=enabled)

    def remove_user(self, user_id: str) -> None:
        with self._lock:
            groups = [gid for gid, members in self.members.items() if user_id in members]
            self._remove("users", user_id)
            for gid in groups:  # Graph reports the membership removal on the group too
                self._changed("groups", gid, "remove", user_id)

    def add_member(self, group: str, member: str) -> None:
        with self._lock:
            gid = self.find_group(group)
            stream = "users" if member in self.users else "groups" if member in self.groups else "devices"
            self._add_member(gid, member, stream)

    def remove_member(self, group: str, member: str) -> None:
        with self._lock:
            gid = self.find_group(group)
            if self.members[gid].pop(member, None) is None:
                raise KeyError(f"{member} is not a member of {group}")
            self._changed("groups", gid, "remove", member)

    def remove_group(self, group: str) -> None:
        with self._lock:
            self._remove("groups", self.find_group(group))

    def disable_device(self, device_id: str, enabled: bool = False) -> None:
        with self._lock:
            self.devices[device_id]["accountEnabled"] = enabled
            self._changed("devices", device_id)

    def remove_device(self, device_id: str) -> None:
        with self._lock:
            self._remove("devices", device_id)

    def remove_managed_device(self, device_id: str) -> None:
        with self._lock:
            del self.managed_devices[device_id]

    def update_managed_device(self, device_id: str, **fields) -> None:
        with self._lock:
            self.managed_devices[device_id].update(fields)

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def state(self) -> dict:
        with self._lock:
            return {
                "tenant": self.tenant, "seq": self.seq, "page_size": self.page_size,
                "users": [{"id": u["id"], "userPrincipalName": u["userPrincipalName"],
                           "accountEnabled": u["accountEnabled"]} for u in self.users.values()],
                "groups": [{"id": g["id"], "displayName": g["displayName"], "members": len(self.members[g["id"]])}
                           for g in self.groups.values()],
                "devices": len(self.devices), "managed_devices": len(self.managed_devices),
                "stats": self.stats.as_dict(),
            }

    # ------------------------------------------------------------------ HTTP

    def fault_response(self, fault) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
        return graph_error(code, "Simulated fault.", fault.status, headers)

    def serve(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/login/"):
            return self._login(request, path[len("/login/"):])
        if path.startswith("/v1.0/"):
            return self._graph(request, path[len("/v1.0"):])
        return graph_error("Request_ResourceNotFound", f"Resource not found for {path}.", 404)

    def _root(self, request: Request) -> str:
        return request.host_url.rstrip("/") + request.script_root

    # ------------------------------------------------------------------ identity platform

    def _login(self, request: Request, rest: str) -> Response:
        tenant, _, endpoint = rest.partition("/")
        if tenant not in (self.tenant, self.domain, "organizations"):
            self.stats.incr("unknown_tenant")
            return oauth_error("invalid_request", 90002, f"Tenant '{tenant}' not found.", 400)
        base = f"{self._root(request)}/login/{tenant}"
        if endpoint == "v2.0/.well-known/openid-configuration" and request.method == "GET":
            self.stats.incr("openid_configuration_requests")
            return json_response({
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "token"], "tenant_region_scope": "EU",
            })
        if endpoint == "oauth2/v2.0/token" and request.method == "POST":
            return self._token(request)
        return oauth_error("invalid_request", 900561, "The endpoint only accepts POST requests.", 400)

    def _token(self, request: Request) -> Response:
        self.stats.incr("token_requests")
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.", 400)
        if form.get("client_id") != self.client_id:
            return oauth_error("unauthorized_client", 700016,
                               f"Application with identifier '{form.get('client_id')}' was not found in the "
                               f"directory '{self.tenant}'.", 400)
        if not secrets.compare_digest(form.get("client_secret", ""), self.client_secret):
            return oauth_error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                               "being sent in the request is the client secret value, not the client secret ID.",
                               401)
        scopes = form.get("scope", "").split()
        if not scopes or not all(s.endswith("/.default") for s in scopes):
            return oauth_error("invalid_scope", 1002012, "The provided value for scope is not valid. Client "
                               "credential flows must have a scope value with /.default suffixed.", 400)
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.time() + self.token_lifetime
        return json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                              "ext_expires_in": self.token_lifetime, "access_token": token})

    # ------------------------------------------------------------------ Graph

    def _graph(self, request: Request, path: str) -> Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if not token:
            return graph_error("InvalidAuthenticationToken", "Access token is empty.", 401)
        if expires is None or expires <= time.time():
            self.stats.incr("expired_token_requests")
            return graph_error("InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", 401)
        if path.strip("/") == "deviceManagement/managedDevices" and request.method == "GET":
            return self._managed_devices(request)
        stream, _, tail = path.strip("/").partition("/")
        if stream not in STREAMS or tail != "delta" or request.method != "GET":
            return graph_error("Request_ResourceNotFound", f"Resource '{path}' does not exist.", 404)
        self.stats.incr(f"{stream}_delta_requests")
        args = request.args
        for unsupported in ("$top", "$filter", "$orderby", "$expand"):
            if unsupported in args:
                return graph_error("Request_UnsupportedQuery", f"Unsupported query option '{unsupported}' on "
                                   "a delta query.", 400)
        with self._lock:
            if "$skiptoken" in args or "$deltatoken" in args:
                try:
                    state = _unb64(args.get("$skiptoken") or args["$deltatoken"])
                except (ValueError, TypeError):
                    return graph_error("syncStateNotFound", "The sync state generation was not found.", 400)
                if state.get("tenant") != self.tenant or state.get("s") != stream:
                    return graph_error("syncStateNotFound", "The sync state generation was not found.", 400)
                if "$deltatoken" in args:  # a new chain of changes since the token's position
                    state = {**state, "since": state["upto"], "upto": self.seq, "o": 0}
            else:
                select = args.get("$select")
                fields = [f.strip() for f in select.split(",") if f.strip()] if select else None
                state = {"tenant": self.tenant, "s": stream, "sel": fields, "since": None, "upto": self.seq,
                         "o": 0, "empty": stream == "users"}
            if state.pop("empty", False):
                # Graph may answer an empty page that still has a nextLink: a client must not stop there.
                return json_response({"@odata.context": self._context(request, stream),
                                      "@odata.nextLink": self._link(request, stream, "$skiptoken", state),
                                      "value": []})
            items = self._items(stream, state)
            offset = state["o"]
            page = items[offset: offset + self.page_size]
            body = {"@odata.context": self._context(request, stream)}
            if offset + self.page_size < len(items):
                body["@odata.nextLink"] = self._link(request, stream, "$skiptoken",
                                                     {**state, "o": offset + self.page_size})
            else:
                body["@odata.deltaLink"] = self._link(request, stream, "$deltatoken",
                                                      {**state, "o": 0, "since": None})
        body["value"] = page
        return json_response(body)

    def _managed_devices(self, request: Request) -> Response:
        """Intune's list: no delta, nextLinks carry the position (and the query) in $skiptoken."""
        self.stats.incr("managed_devices_requests")
        if not self.intune_permission:
            return graph_error("Forbidden", "Application is not authorized to perform this operation. Application "
                               "must have one of the following scopes: DeviceManagementManagedDevices.Read.All, "
                               "DeviceManagementManagedDevices.ReadWrite.All", 403)
        args = request.args
        if "$skiptoken" in args:
            try:
                state = _unb64(args["$skiptoken"])
            except (ValueError, TypeError):
                return graph_error("BadRequest", "The skip token is not valid.", 400)
        else:
            select = args.get("$select")
            since = None
            if "$filter" in args:
                clause = args["$filter"].split()
                if len(clause) != 3 or clause[:2] != ["lastSyncDateTime", "ge"]:
                    return graph_error("BadRequest", "Invalid filter clause.", 400)
                since = clause[2]
            state = {"sel": [f.strip() for f in select.split(",") if f.strip()] if select else None, "since": since,
                     "o": 0}
        with self._lock:
            rows = [d for d in self.managed_devices.values()
                    if state["since"] is None or d["lastSyncDateTime"] >= state["since"]]
        offset = state["o"]
        fields = state["sel"] or MANAGED_DEVICE_SELECT
        page = [{f: d[f] for f in ("id", *fields) if f in d} for d in rows[offset: offset + self.page_size]]
        body = {"@odata.context": f"{self._root(request)}/v1.0/$metadata#deviceManagement/managedDevices",
                "value": page}
        if offset + self.page_size < len(rows):
            body["@odata.nextLink"] = (f"{self._root(request)}/v1.0/deviceManagement/managedDevices?$skiptoken="
                                       f"{quote(_b64({**state, 'o': offset + self.page_size}))}")
        return json_response(body)

    def _context(self, request: Request, stream: str) -> str:
        return f"{self._root(request)}/v1.0/$metadata#{stream}"

    def _link(self, request: Request, stream: str, name: str, state: dict) -> str:
        return f"{self._root(request)}/v1.0/{stream}/delta?{name}={quote(_b64(state))}"

    def _project(self, stream: str, obj: dict, select: list[str] | None) -> dict:
        fields = [f for f in (select or STREAMS[stream]) if f != "members"]
        # Never-set properties are omitted from delta answers (list endpoints would say null).
        item = {f: obj[f] for f in fields if f in obj and obj[f] is not None}
        item["id"] = obj["id"]
        return item

    def _member_item(self, member: str, stream: str, removed: bool = False) -> dict:
        item = {"@odata.type": ODATA_TYPES[stream], "id": member}
        if removed:
            item["@removed"] = {"reason": "deleted"}
        return item

    def _items(self, stream: str, state: dict) -> list[dict]:
        """The items of a chain, computed once per chain and kept while nothing changes: every page of a
        large directory would otherwise rebuild them all (quadratic in its size, which the bench measures)."""
        select = state["sel"]
        key = (tuple(select) if select is not None else None, state["since"], state["upto"], self.seq,
               self.member_slice)
        cached = self._chains.get(stream)
        if cached is None or cached[0] != key:
            cached = self._chains[stream] = (key, self._chain_items(stream, state))
        return cached[1]

    def _chain_items(self, stream: str, state: dict) -> list[dict]:
        """The items of a chain: the whole state (initial) or the objects changed in (since, upto]."""
        select, since, upto = state["sel"], state["since"], state["upto"]
        store = getattr(self, stream)
        with_members = stream == "groups" and select is not None and "members" in select
        items = []
        if since is None:
            for obj in store.values():
                item = self._project(stream, obj, select)
                if with_members:
                    entries = [self._member_item(m, s) for m, s in self.members[obj["id"]].items()]
                    items.extend(self._slices(item, entries))
                else:
                    items.append(item)
            if stream == "groups":
                items.extend({"id": gid, "@removed": {"reason": "deleted"}} for gid in self.deleted["groups"])
            return items
        changed: dict[str, dict[str, str]] = {}  # object id -> {member: "add"|"remove"}
        for seq, log_stream, object_id, op, member in self.log:
            if since < seq <= upto and log_stream == stream:
                ops = changed.setdefault(object_id, {})
                if op is not None:
                    ops[member] = op
        for object_id, ops in changed.items():
            if object_id not in store:
                if object_id in self.deleted[stream]:
                    items.append({"id": object_id, "@removed": {"reason": "deleted"}})
                continue
            item = self._project(stream, store[object_id], select)
            if with_members and ops:
                entries = [self._member_item(m, self._stream_of(m), removed=(op == "remove"))
                           for m, op in ops.items()]
                items.extend(self._slices(item, entries))
            else:
                items.append(item)
        return items

    def _stream_of(self, member: str) -> str:
        for stream in STREAMS:
            if member in getattr(self, stream) or member in self.deleted[stream]:
                return stream
        return "users"

    def _slices(self, item: dict, entries: list[dict]) -> list[dict]:
        """A group with many members comes as several items, each with another slice of members@delta."""
        if not entries:
            return [{**item, "members@delta": []}]
        return [{**item, "members@delta": entries[i: i + self.member_slice]}
                for i in range(0, len(entries), self.member_slice)]

    # ------------------------------------------------------------------ control endpoints

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action == "users/add":
            return json_response({"ids": self.add_users(int(spec.get("count", 1)))})
        if action in ("users/disable", "users/enable"):
            self.disable_user(spec["id"], enabled=action == "users/enable")
        elif action == "users/update":
            self.update_user(spec["id"], **spec.get("fields", {}))
        elif action == "users/remove":
            self.remove_user(spec["id"])
        elif action == "groups/members/add":
            self.add_member(spec["group"], spec["member"])
        elif action == "groups/members/remove":
            self.remove_member(spec["group"], spec["member"])
        elif action == "groups/remove":
            self.remove_group(spec["group"])
        elif action == "devices/remove":
            self.remove_device(spec["id"])
        elif action == "managed-devices/remove":
            self.remove_managed_device(spec["id"])
        elif action == "managed-devices/update":
            self.update_managed_device(spec["id"], **spec.get("fields", {}))
        elif action == "expire-tokens":
            self.expire_tokens()
        elif action == "config":
            for key in ("page_size", "member_slice", "token_lifetime", "client_secret", "intune_permission"):
                if key in spec:
                    setattr(self, key, spec[key])
        else:
            return None
        return json_response({"ok": True, "seq": self.seq})
