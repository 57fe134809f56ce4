"""Microsoft Defender for Endpoint simulator: the identity platform's two token endpoints and the machine and
vulnerability APIs (see shared/api-notes/defender-endpoint.md).

What it imitates:
- Identity platform, under `/defender/login/{tenant}`: `POST /oauth2/v2.0/token` (client credentials with
  `scope=<resource>/.default`; numbers are numbers) and the v1 `POST /oauth2/token` (with `resource=<resource>`;
  `expires_in`, `expires_on` are strings, as the v1 endpoint sends them). The resource is
  `https://api.securitycenter.microsoft.com` or the newer `https://api.security.microsoft.com`. OAuth errors
  carry AADSTS codes (7000215 bad secret, 700016 unknown app, 90002 unknown tenant, 500011 unknown resource).
  `expire_tokens()` (`_control/expire-tokens`) expires every issued token: the API then answers 401.
- The API, under `/defender/api`: `GET /machines` (OData `$top` <= 10,000, `$skip`; `@odata.nextLink` carries
  `$skip`; 404 when the tenant has no machines), the JSON export `GET /machines/SoftwareVulnerabilitiesByMachine`
  (`pageSize`, default 50,000; `@odata.nextLink` with an opaque `$skiptoken`; `$top` truncates and gives no
  nextLink), the delta export `GET /machines/SoftwareVulnerabilityChangesByMachine?sinceTime=` (New / Fixed /
  Updated since the start of the 6-hour bucket holding sinceTime; its nextLink points at another path,
  `/machines/SoftwareVulnerabilitiesTimeline`, as in Microsoft's example: a client follows it verbatim) and
  `GET /vulnerabilities/machinesVulnerabilities` (`$top`/`$skip`, no CVSS). Application permissions
  (`Machine.Read.All`, `Vulnerability.Read.All`) can be revoked (`revoke()`): 403 Forbidden.
- Error bodies `{"error": {"code", "message", "target"}}`; 429 `TooManyRequests` with Retry-After through the
  shared FaultInjector (`_control/faults`), like every simulator.

The fleet: a machine for each Windows, macOS and Linux device of the Entra ID simulator (same `aadDeviceId`,
the host name of its displayName; Windows machines report an FQDN, macOS and Linux a bare host name), servers
of the shared fleet (`devices.py`: the host names the CMDB simulators know, no Entra id), a re-onboarded PC
(its old record Inactive, same name and aadDeviceId, another machine id) and a discovered device
(`CanBeOnboarded`, no telemetry). Onboarded machines get software and CVEs from a small catalogue, chosen
deterministically from the seed: some machines are clean, some rows have no CVE (plain inventory), one machine
has two versions of one program with the same CVE. `fix()`, `add_vulnerability()` and `update_vulnerability()`
(and their `_control/` forms) change the state and write the change log the delta export reads.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .devices import device_identity
from .entra_id import oauth_error

DEFAULT_TENANT = "0c6a9d2e-41f7-4b3a-8e15-7d2f9a6c4b80"
DEFAULT_CLIENT_ID = "a7e3c915-2d4b-4f86-9c0e-5b1d8f3a6e27"
DEFAULT_CLIENT_SECRET = "demo-defender-client-secret"
RESOURCES = ("https://api.securitycenter.microsoft.com", "https://api.security.microsoft.com")
PERMISSIONS = ("Machine.Read.All", "Vulnerability.Read.All")
MAX_TOP = 10_000
EXPORT_PAGE_DEFAULT, EXPORT_PAGE_MAX = 50_000, 200_000
BUCKET_SECONDS = 6 * 3600
DOMAIN = "contoso.example"
# Entra operatingSystem -> Defender osPlatform, for the devices Defender onboards here.
PLATFORMS = {"Windows": "Windows11", "Windows Server": "WindowsServer2022", "MacMDM": "macOS", "Linux": "Linux"}
SERVER_PLATFORMS = {"Windows Server 2022 Datacenter": "WindowsServer2022", "Windows Server 2019 Standard":
                    "WindowsServer2019", "Red Hat Enterprise Linux": "Linux", "Ubuntu": "Linux"}
# The catalogue (illustrative): vendor, software, versions a machine may have, and the CVEs of each version.
# A CVE row: (cve id, severity, CVSS, exploitability, recommended update or None).
CATALOGUE = (
    ("google", "chrome", {
        "116.0.5845.96": (("CVE-2023-4863", "High", 8.8, "ExploitIsVerified", None),
                          ("CVE-2023-5217", "High", 8.8, "ExploitIsPublic", None)),
        "118.0.5993.70": (("CVE-2023-5472", "High", 8.8, "NoExploit", None),),
        "126.0.6478.127": (),
    }),
    ("mozilla", "firefox", {
        "115.0.2": (("CVE-2023-4863", "High", 8.8, "ExploitIsVerified", None),
                    ("CVE-2023-37201", "Medium", 6.5, "NoExploit", None)),
        "127.0": (),
    }),
    ("microsoft", "windows_11", {
        "10.0.22631.3737": (("CVE-2024-38063", "Critical", 9.8, "ExploitIsPublic", "KB5040442"),
                            ("CVE-2024-38112", "High", 7.5, "ExploitIsInKit", "KB5040442")),
        "10.0.22631.4037": (),
    }),
    ("7-zip", "7-zip", {
        "22.01": (("CVE-2024-11477", "High", 7.8, "NoExploit", None),),
        "24.09": (),
    }),
    ("oracle", "jre", {
        "8.0.3410": (("CVE-2024-20918", "Medium", 7.4, "NoExploit", None),
                     ("CVE-2024-20952", "Low", 3.7, "NoExploit", None)),
    }),
    ("apache", "log4j", {
        "2.14.1": (("CVE-2021-44228", "Critical", 10.0, "ExploitIsInKit", None),
                   ("CVE-2021-45046", "Critical", 9.0, "ExploitIsPublic", None)),
        "2.17.1": (),
    }),
    ("openssl", "openssl", {
        "3.0.7": (("CVE-2023-0286", "High", 7.4, "NoExploit", None),
                  ("CVE-2023-0464", "Medium", 5.9, "NoExploit", None)),
    }),
    ("notepad-plus-plus", "notepad++", {"8.6.9": ()}),
)
BASE_TIME = 1_748_736_000  # 2025-06-01, first-seen dates spread from there


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def export_time(seconds: float) -> str:
    """The export's timestamp format: a space, no zone (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def defender_error(code: str, message: str, status: int, headers: dict | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}, status,
                         headers=headers)


class DefenderSimulator(SimulatorApp):
    def __init__(self, seed: int = 42, *, entra_devices: Iterable[dict] | None = None, servers: int = 10,
                 page_size: int = MAX_TOP, token_lifetime: int = 3599, tenant: str = DEFAULT_TENANT,
                 client_id: str = DEFAULT_CLIENT_ID, client_secret: str = DEFAULT_CLIENT_SECRET):
        self.seed, self.server_count = seed, servers
        # The Entra devices to mirror (dicts with deviceId, displayName, operatingSystem); None: a few of its own.
        self.entra_devices = list(entra_devices) if entra_devices is not None else None
        self.page_size, self.token_lifetime = page_size, token_lifetime
        # Whether /api/machines pages carry an @odata.nextLink (seen in client code, not in the docs); without
        # one, a client pages with $top/$skip until a short page.
        self.machine_links = True
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.RLock()
        self.reset()

    # ------------------------------------------------------------------ data

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self.seed)
            self.machines: dict[str, dict] = {}
            # (deviceId, software, version, cve or None) -> export row; insertion order is the export's order.
            self.rows: dict[tuple, dict] = {}
            self.changes: list[tuple[float, str, dict]] = []  # (event time, status, row) for the delta export
            self.tokens: dict[str, float] = {}
            self.permissions = set(PERMISSIONS)
            self.reonboarded: tuple[str, str] | None = None  # (old machine id, new machine id)
            self.stats.reset()
            self.faults.clear()
            for device in self.entra_devices if self.entra_devices is not None else self._own_devices():
                platform = PLATFORMS.get(device.get("operatingSystem", ""))
                if platform:
                    self._from_entra(device, platform)
            for index in range(self.server_count * 4):  # the fleet's servers and VMs among its first indices
                if len([m for m in self.machines.values() if not m["isAadJoined"]]) >= self.server_count:
                    break
                identity = device_identity(self.seed, index)
                if identity.os in SERVER_PLATFORMS:
                    self._new_machine(identity.hostname + (f".{DOMAIN}" if "Windows" in identity.os else ""),
                                      SERVER_PLATFORMS[identity.os], identity.os_version, None, index,
                                      mac=identity.mac)
            self._quirky_machines()
            for position, machine in enumerate(list(self.machines.values())):
                if machine["onboardingStatus"] == "Onboarded" and machine["healthStatus"] == "Active":
                    self._seed_software(machine, position)
            self._derive_exposure()

    def _own_devices(self) -> list[dict]:
        kinds = (("Windows", "LAPTOP-{:04d}"), ("MacMDM", "MBP-{:04d}"), ("Linux", "ubuntu-{:04d}"))
        return [{"deviceId": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                 "displayName": kinds[i % 3][1].format(i), "operatingSystem": kinds[i % 3][0]} for i in range(12)]

    def _machine_id(self) -> str:
        return f"{self._rng.getrandbits(160):040x}"  # Defender machine ids are 40 hex digits

    def _from_entra(self, device: dict, platform: str) -> dict:
        host = device["displayName"].lower()
        name = host if platform in ("macOS", "Linux") else f"{host}.{DOMAIN}"
        # Defender reports the Entra deviceId; some agents send it upper-case.
        aad = device["deviceId"].upper() if len(self.machines) % 7 == 3 else device["deviceId"]
        return self._new_machine(name, platform, "23H2" if platform.startswith("Windows1") else "", aad,
                                 len(self.machines))

    def _new_machine(self, name: str, platform: str, version: str, aad_device_id: str | None, index: int,
                     mac: str | None = None, **overrides) -> dict:
        seen = BASE_TIME + 86400 * 9 + index * 3607
        # Defender writes MACs as bare upper-case hex; the fleet's servers keep the MAC the CMDBs know.
        mac = mac.replace(":", "").upper() if mac else f"{self._rng.getrandbits(48):012X}"
        machine = {
            "id": self._machine_id(), "computerDnsName": name, "firstSeen": iso_time(BASE_TIME - 86400 * 90),
            "lastSeen": iso_time(seen), "osPlatform": platform, "version": version,
            "osBuild": 22631 if platform.startswith("Windows") else None, "osArchitecture": "64-bit",
            "lastIpAddress": f"10.8.{index // 250}.{index % 250 + 2}", "lastExternalIpAddress": "198.51.100.40",
            "healthStatus": "Active", "onboardingStatus": "Onboarded", "riskScore": ("None", "Low", "Medium",
                                                                                      "High")[index % 4],
            "exposureLevel": "None", "isAadJoined": aad_device_id is not None, "aadDeviceId": aad_device_id,
            "machineTags": ["Servers"] if "Server" in platform or platform == "Linux" else [],
            "rbacGroupId": 140, "rbacGroupName": "Workstations", "deviceValue": "Normal",
            "ipAddresses": [{"ipAddress": f"10.8.{index // 250}.{index % 250 + 2}",
                             "macAddress": mac, "type": "Ethernet",
                             "operationalStatus": "Up"}],
        }
        machine.update(overrides)
        self.machines[machine["id"]] = machine
        return machine

    def _quirky_machines(self) -> None:
        # A re-onboarded PC: the old record stays, Inactive, with the same name and aadDeviceId.
        first = next((m for m in self.machines.values() if m["osPlatform"] == "Windows11"), None)
        if first is not None:
            old = self._new_machine(first["computerDnsName"], "Windows11", "22H2", first["aadDeviceId"], 900,
                                    healthStatus="Inactive", lastSeen=iso_time(BASE_TIME - 86400 * 30))
            self.reonboarded = (old["id"], first["id"])
        # A device the sensors discovered on the network: no telemetry, no Entra id.
        self._new_machine("printer-3f-02", "Linux", "", None, 901, onboardingStatus="CanBeOnboarded",
                          healthStatus="Unknown", riskScore="None")

    def _seed_software(self, machine: dict, position: int) -> None:
        rng = random.Random(self.seed * 1_000_003 + position)
        if position % 6 == 5:
            return  # a clean machine: nothing installed that Defender assesses
        server = machine["osPlatform"].startswith("WindowsServer") or machine["osPlatform"] == "Linux"
        for vendor, software, versions in CATALOGUE:
            if software == "windows_11" and machine["osPlatform"] != "Windows11":
                continue
            if software in ("log4j", "openssl") and not server:
                continue
            if software not in ("log4j", "openssl", "windows_11") and rng.random() < 0.45:
                continue
            chosen = [rng.choice(sorted(versions))]
            if software == "chrome" and position % 9 == 1:
                chosen = ["116.0.5845.96", "118.0.5993.70"]  # two installs; the same CVE on both below
            for version in chosen:
                self._install(machine, vendor, software, version, versions[version], position)
        if position % 9 == 1:  # the second Chrome carries libwebp's CVE too
            self._add_row(machine, "google", "chrome", "118.0.5993.70", ("CVE-2023-4863", "High", 8.8,
                                                                        "ExploitIsVerified", None), position)

    def _install(self, machine: dict, vendor: str, software: str, version: str, cves, position: int) -> None:
        if not cves:  # plain inventory: a row without a CVE
            self._add_row(machine, vendor, software, version, None, position)
        for cve in cves:
            self._add_row(machine, vendor, software, version, cve, position)

    def _add_row(self, machine: dict, vendor: str, software: str, version: str, cve, position: int,
                 when: float | None = None) -> dict:
        cve_id, severity, cvss, exploit, update = cve or (None, None, None, "NoExploit", None)
        first = when or BASE_TIME + position * 600
        row = {
            "id": f"{machine['id']}_{vendor}_{software}_{version}_{cve_id or ''}_",
            "deviceId": machine["id"], "deviceName": machine["computerDnsName"], "rbacGroupName": "Workstations",
            "osPlatform": machine["osPlatform"], "osVersion": machine["version"] or None,
            "osArchitecture": "x64", "softwareVendor": vendor, "softwareName": software,
            "softwareVersion": version, "cveId": cve_id, "vulnerabilitySeverityLevel": severity,
            "cvssScore": cvss, "exploitabilityLevel": exploit,
            "securityUpdateAvailable": cve_id is not None, "recommendedSecurityUpdateId": update,
            "recommendedSecurityUpdate": f"July 2024 Security Updates ({update})" if update else None,
            "firstSeenTimestamp": export_time(first), "lastSeenTimestamp": export_time(BASE_TIME + 86400 * 9),
            "diskPaths": [f"C:\\Program Files\\{software}\\{software}.exe"] if "Windows" in machine["osPlatform"]
            else [f"/opt/{software}/{version}"],
            "registryPaths": [], "endOfSupportStatus": None, "endOfSupportDate": None,
        }
        self.rows[(machine["id"], software, version, cve_id)] = row
        # The initial state dates from before any sync: its change events lie in the past.
        self.changes.append((when or first, "New", row))
        return row

    def _derive_exposure(self) -> None:
        """Exposure from the open CVEs, roughly as Defender weighs them."""
        worst: dict[str, int] = {}
        rank = {"Low": 1, "Medium": 1, "High": 2, "Critical": 3}
        for row in self.rows.values():
            if row["cveId"]:
                worst[row["deviceId"]] = max(worst.get(row["deviceId"], 0), rank[row["vulnerabilitySeverityLevel"]])
        for machine in self.machines.values():
            if machine["onboardingStatus"] == "Onboarded":
                machine["exposureLevel"] = ("None", "Low", "Medium", "High")[worst.get(machine["id"], 0)]

    # ------------------------------------------------------------------ changes (control API, tests)

    def open_rows(self, machine_id: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.rows.values() if r["cveId"] and machine_id in (None, r["deviceId"])]

    def fix(self, machine_id: str, cve_id: str) -> list[dict]:
        """The machine was patched: every row of that CVE on it is fixed (a Fixed event each)."""
        with self._lock:
            keys = [k for k in self.rows if k[0] == machine_id and k[3] == cve_id]
            if not keys:
                raise KeyError(f"{cve_id} is not open on {machine_id}")
            fixed = [self.rows.pop(k) for k in keys]
            now = time.time()
            self.changes.extend((now, "Fixed", row) for row in fixed)
            self._derive_exposure()
            return fixed

    def add_vulnerability(self, machine_id: str, cve: tuple, software: tuple[str, str, str]) -> dict:
        """A new CVE on a machine: cve = (id, severity, cvss, exploitability, update), software = (vendor,
        name, version)."""
        with self._lock:
            machine = self.machines[machine_id]
            row = self._add_row(machine, *software, cve, 0, when=time.time())
            self._derive_exposure()
            return row

    def update_vulnerability(self, machine_id: str, cve_id: str, **fields) -> dict:
        with self._lock:
            key = next(k for k in self.rows if k[0] == machine_id and k[3] == cve_id)
            self.rows[key] = row = {**self.rows[key], **fields}
            self.changes.append((time.time(), "Updated", row))
            self._derive_exposure()
            return row

    def remove_machine(self, machine_id: str) -> None:
        """Out of the retention window: the machine and its rows are no longer listed."""
        with self._lock:
            self.machines.pop(machine_id)
            for key in [k for k in self.rows if k[0] == machine_id]:
                del self.rows[key]

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def revoke(self, permission: str) -> None:
        with self._lock:
            self.permissions.discard(permission)

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action == "expire-tokens":
            self.expire_tokens()
        elif action == "revoke":
            self.revoke(spec["permission"])
        elif action == "fix":
            return json_response({"fixed": self.fix(spec["machine_id"], spec["cve_id"])})
        elif action == "add":
            return json_response(self.add_vulnerability(
                spec["machine_id"], tuple(spec["cve"]), tuple(spec["software"])), 201)
        elif action == "update":
            return json_response(self.update_vulnerability(spec["machine_id"], spec["cve_id"], **spec["fields"]))
        elif action == "machines/remove":
            self.remove_machine(spec["id"])
        else:
            return None
        return json_response(self.state())

    def state(self) -> dict:
        with self._lock:
            return {"tenant": self.tenant, "machines": len(self.machines),
                    "vulnerabilities": len(self.open_rows()), "changes": len(self.changes),
                    "permissions": sorted(self.permissions), "stats": self.stats.as_dict()}

    # ------------------------------------------------------------------ HTTP

    def fault_response(self, fault) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        code = {429: "TooManyRequests", 500: "InternalServerError"}.get(fault.status, "ServiceUnavailable")
        message = ("API call quota exceeded: the rate limit is 100 calls per minute." if fault.status == 429
                   else "Simulated fault.")
        return defender_error(code, message, fault.status, headers)

    def serve(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/login/"):
            return self._login(request, path[len("/login/"):])
        if path.startswith("/api/"):
            return self._api(request, path[len("/api"):])
        return defender_error("ResourceNotFound", f"Resource not found: {path}", 404)

    def _root(self, request: Request) -> str:
        return request.host_url.rstrip("/") + request.script_root

    # ------------------------------------------------------------------ identity platform

    def _login(self, request: Request, rest: str) -> Response:
        tenant, _, endpoint = rest.partition("/")
        if request.method != "POST" or endpoint not in ("oauth2/v2.0/token", "oauth2/token"):
            return oauth_error("invalid_request", 900561, "The endpoint only accepts POST requests.", 400)
        self.stats.incr("token_requests")
        self.stats.incr("token_requests_v1" if endpoint == "oauth2/token" else "token_requests_v2")
        if tenant != self.tenant:
            return oauth_error("invalid_request", 90002, f"Tenant '{tenant}' not found.", 400)
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.", 400)
        if form.get("client_id") != self.client_id:
            return oauth_error("unauthorized_client", 700016, f"Application with identifier "
                               f"'{form.get('client_id')}' was not found in the directory '{self.tenant}'.", 400)
        if not secrets.compare_digest(form.get("client_secret", ""), self.client_secret):
            return oauth_error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                               "being sent in the request is the client secret value, not the client secret ID.",
                               401)
        if endpoint == "oauth2/token":
            resource = form.get("resource", "").rstrip("/")
            if resource not in RESOURCES:
                return oauth_error("invalid_resource", 500011, f"The resource principal named {resource} was "
                                   f"not found in the tenant named {self.tenant}.", 400)
        else:
            scope = form.get("scope", "")
            if scope not in tuple(f"{r}/.default" for r in RESOURCES):
                return oauth_error("invalid_scope", 1002012, "The provided value for scope is not valid. "
                                   "Client credential flows must have a scope value with /.default suffixed.", 400)
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self.tokens[token] = now + self.token_lifetime
        if endpoint == "oauth2/token":  # v1: every number is a string
            return json_response({"token_type": "Bearer", "expires_in": str(self.token_lifetime),
                                  "ext_expires_in": str(self.token_lifetime),
                                  "expires_on": str(int(now) + self.token_lifetime), "not_before": str(int(now)),
                                  "resource": form["resource"], "access_token": token})
        return json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                              "ext_expires_in": self.token_lifetime, "access_token": token})

    # ------------------------------------------------------------------ API

    def _api(self, request: Request, path: str) -> Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if expires is None or expires <= time.time():
            self.stats.incr("expired_token_requests" if expires is not None else "unauthenticated_requests")
            return defender_error("Unauthorized", "Authorization token is missing, invalid or expired.", 401)
        if request.method != "GET":
            return defender_error("BadRequest", f"{request.method} is not supported on {path}.", 400)
        routes = {
            "/machines": ("Machine.Read.All", self._machines),
            "/machines/SoftwareVulnerabilitiesByMachine": ("Vulnerability.Read.All", self._export),
            "/machines/SoftwareVulnerabilityChangesByMachine": ("Vulnerability.Read.All", self._changes),
            "/machines/SoftwareVulnerabilitiesTimeline": ("Vulnerability.Read.All", self._changes),
            "/vulnerabilities/machinesVulnerabilities": ("Vulnerability.Read.All", self._machines_vulnerabilities),
        }
        route = routes.get(path.rstrip("/"))
        if route is None:
            return defender_error("ResourceNotFound", f"Resource '{path}' does not exist.", 404)
        permission, handler = route
        if permission not in self.permissions:
            return defender_error("Forbidden", f"Missing application roles. API required roles: {permission}. "
                                  "Application has the following roles: " + ", ".join(sorted(self.permissions)), 403)
        self.stats.incr(path.strip("/").replace("/", "_") + "_requests")
        try:
            return handler(request)
        except ValueError as exc:
            return defender_error("InvalidInput", str(exc), 400)

    def _top_skip(self, request: Request, limit: int) -> tuple[int, int]:
        top = int(request.args.get("$top", limit))
        skip = int(request.args.get("$skip", 0))
        if not 0 < top <= limit or skip < 0:
            raise ValueError(f"$top must be between 1 and {limit}, $skip not negative")
        return top, skip

    def _collection(self, request: Request, items: list[dict], top: int, skip: int, context: str,
                    link: bool = True) -> Response:
        body = {"@odata.context": f"{self._root(request)}/api/$metadata#{context}",
                "value": items[skip: skip + top]}
        if link and skip + top < len(items):
            args = {k: v for k, v in request.args.items() if k not in ("$skip", "$top")}
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in args.items())
            body["@odata.nextLink"] = (f"{self._root(request)}/api{request.path.split('/api', 1)[1]}?"
                                       f"{query + '&' if query else ''}$top={top}&$skip={skip + top}")
        return json_response(body)

    def _machines(self, request: Request) -> Response:
        top, skip = self._top_skip(request, MAX_TOP)
        if "$top" not in request.args:
            top = min(top, self.page_size)
        with self._lock:
            machines = list(self.machines.values())
        if not machines:
            return defender_error("NotFound", "No machines found.", 404)
        return self._collection(request, machines, top, skip, "Machines", link=self.machine_links)

    def _machines_vulnerabilities(self, request: Request) -> Response:
        top, skip = self._top_skip(request, MAX_TOP)
        if "$top" not in request.args:
            top = min(top, self.page_size)
        with self._lock:
            rows = [{"id": f"{r['deviceId']}-{r['cveId']}-{r['softwareVendor']}-{r['softwareName']}-"
                           f"{r['softwareVersion']}", "cveId": r["cveId"], "machineId": r["deviceId"],
                     "fixingKbId": (r["recommendedSecurityUpdateId"] or "").removeprefix("KB") or None,
                     "productName": r["softwareName"], "productVendor": r["softwareVendor"],
                     "productVersion": r["softwareVersion"], "severity": r["vulnerabilitySeverityLevel"]}
                    for r in self.rows.values() if r["cveId"]]
        return self._collection(request, rows, top, skip, "MachineVulnerabilities")

    def _export_page(self, request: Request, rows: list[dict], next_path: str, extra: dict) -> Response:
        """Export paging: pageSize rows per page, an opaque $skiptoken; $top cuts the answer with no link."""
        if "$skiptoken" in request.args:
            try:
                state = _unb64(request.args["$skiptoken"])
            except (ValueError, TypeError):
                raise ValueError("The $skiptoken is invalid.") from None
            size, offset = state["size"], state["offset"]
        else:
            size = int(request.args.get("pageSize", EXPORT_PAGE_DEFAULT))
            if not 0 < size <= EXPORT_PAGE_MAX:
                raise ValueError(f"pageSize must be between 1 and {EXPORT_PAGE_MAX}")
            offset = 0
        if "$top" in request.args:  # the documented trap: a truncated answer, no nextLink
            return json_response({"@odata.context": f"{self._root(request)}/api/$metadata#Collection",
                                  "value": rows[: int(request.args["$top"])]})
        body = {"@odata.context": f"{self._root(request)}/api/$metadata#Collection",
                "value": rows[offset: offset + size]}
        if offset + size < len(rows):
            query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in extra.items())
            token = _b64({"size": size, "offset": offset + size, **extra})
            body["@odata.nextLink"] = (f"{self._root(request)}/api{next_path}?{query + '&' if query else ''}"
                                       f"$skiptoken={token}")
        return json_response(body)

    def _export(self, request: Request) -> Response:
        with self._lock:
            rows = list(self.rows.values())
        return self._export_page(request, rows, "/machines/SoftwareVulnerabilitiesByMachine", {})

    def _changes(self, request: Request) -> Response:
        since_text = request.args.get("sinceTime") or request.args.get("sincetime")
        if "$skiptoken" in request.args:
            since_text = _unb64(request.args["$skiptoken"]).get("sincetime", since_text)
        if not since_text:
            raise ValueError("sinceTime is required.")
        try:
            since = datetime.fromisoformat(since_text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"sinceTime '{since_text}' is not a date and time.") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        # The data comes in 6-hour buckets: the answer starts at the bucket that holds sinceTime.
        start = since.timestamp() // BUCKET_SECONDS * BUCKET_SECONDS
        with self._lock:
            rows = [{**row, "status": status, "eventTimestamp": iso_time(when), "isOnboarded": True}
                    for when, status, row in self.changes if when >= start]
        return self._export_page(request, rows, "/machines/SoftwareVulnerabilitiesTimeline",
                                 {"sincetime": since_text})
