"""Android Management API simulator: Google's OAuth token endpoint for service accounts and the enterprise's
device list (see shared/api-notes/android-enterprise.md).

What it imitates:
- Token endpoint, `POST /token` (the `token_uri` of the service-account keys it hands out): the JWT bearer
  grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`). The assertion is verified
  as Google does: RS256 signature against the public key registered for the service account (`iss`), `kid` =
  that key's id when given, `aud` = this endpoint's URL, `iat`/`exp` present and at most an hour apart, `scope`
  naming the Android Management scope. Errors are OAuth-style (`invalid_grant` "Invalid JWT Signature.",
  "account not found", `invalid_scope`, `unsupported_grant_type`), HTTP 400. Service accounts are registered
  through `_control/service-accounts` (public key only) or `register_service_account`; `make_service_account_key`
  creates a key file the way the Cloud console does, at run time (never stored). A revoked key is refused.
- API under `/v1`: `GET enterprises/{id}/devices` (`pageSize` default 10, larger than 100 coerced to 100,
  opaque `pageToken`, `nextPageToken` absent on the last page), `GET enterprises/{id}/devices/{deviceId}`
  (404 once deleted), `GET enterprises/{id}`. Tokens live `token_lifetime` seconds; `_control/expire-tokens`
  expires them now (then 401 UNAUTHENTICATED). An enterprise not bound to the project (`bound: false` in
  `_control/config`) answers 403 PERMISSION_DENIED. Errors use Google's JSON error envelope.
- Devices (deterministic from the seed): fully managed and work-profile company devices, personally owned
  work profiles whose "serial" is the enterprise-specific id (Android 12+), PROVISIONING devices with almost
  no data, non-compliant devices with nonComplianceDetails, a re-enrolled phone listed under both its old and
  its new name, DISABLED and LOST devices, reports without softwareInfo/networkInfo (reporting disabled), the
  privacy MAC 02:00:00:00:00:00, times with milli- and nanosecond fractions. The first company devices carry
  the serials of the fleet's tablets (devices.py, which the CMDB simulators share) in lower case.
- Faults through `_control/faults`: 429 RESOURCE_EXHAUSTED (with Retry-After when asked), 5xx UNAVAILABLE.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .devices import device_hash, device_identity

DEFAULT_ENTERPRISE = "LC04s1mul8"
DEFAULT_CLIENT_EMAIL = "syncplane-mdm@syncplane-demo.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/androidmanagement"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 10, 100
BASE_REPORT = 1_749_600_000  # 2025-06-11, status reports spread back from there
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}

# (brand, manufacturer, model) of the phones and tablets of the simulated enterprise.
HARDWARE = (
    ("samsung", "samsung", "SM-G991B"), ("google", "Google", "Pixel 8"), ("samsung", "samsung", "SM-X710"),
    ("motorola", "motorola", "moto g84 5G"), ("Zebra", "Zebra Technologies", "TC58"),
)
# Each device index gets a profile, in this rotation.
PROFILES = ("fully_managed", "fully_managed", "work_profile_company", "personal", "fully_managed", "personal",
            "fully_managed", "provisioning", "work_profile_company", "personal")


def google_error(status: int, message: str, reason: str | None = None, headers: dict | None = None) -> Response:
    error = {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    return json_response({"error": error}, status, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def make_service_account_key(token_uri: str, client_email: str = DEFAULT_CLIENT_EMAIL,
                             project_id: str = "syncplane-demo") -> tuple[dict, str]:
    """A new service-account key file (the JSON the Cloud console downloads) and its public key (PEM), for
    `register_service_account`. Generated at run time: no key is ever stored in the repository."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    key = {
        "type": "service_account", "project_id": project_id, "private_key_id": secrets.token_hex(20),
        "private_key": pem, "client_email": client_email, "client_id": str(10**20 + secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" + client_email,
        "universe_domain": "googleapis.com",
    }
    return key, public


def fleet_tablets(seed: int, count: int) -> list[str]:
    """Serials of the first `count` tablets of the shared fleet (devices.py): the CMDB simulators list them."""
    serials, i = [], 0
    while len(serials) < count and i < 100_000:
        device = device_identity(seed, i)
        if device.kind == "tablet" and not device.serial_is_placeholder:
            serials.append(device.serial)
        i += 1
    return serials


def _rfc3339(seconds: float, fraction: str) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction}Z"


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict:
    value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    if not isinstance(value, dict):
        raise ValueError("not a page token")
    return value


class AndroidManagementSimulator(SimulatorApp):
    def __init__(self, devices: int = 60, seed: int = 42, *, enterprise: str = DEFAULT_ENTERPRISE,
                 token_lifetime: int = 3599, shared_serials: int = 3):
        self.device_count, self.seed, self.enterprise = devices, seed, enterprise
        self.token_lifetime, self.shared_serials = token_lifetime, shared_serials
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.RLock()
        self.service_accounts: dict[str, dict] = {}  # client_email -> {key_id: public key PEM}
        self.reset()

    # ------------------------------------------------------------------ data

    def reset(self) -> None:
        """Devices, tokens, faults and counters as at the start; registered service accounts stay (a key
        is registered once per process, as a key is created once in the Cloud console)."""
        with self._lock:
            self.tokens: dict[str, float] = {}
            self.bound = True
            self.stats.reset()
            self.faults.clear()
            self.devices: dict[str, dict] = {}
            shared = fleet_tablets(self.seed, self.shared_serials)
            for i in range(self.device_count):
                device = self._device(i, shared)
                self.devices[device["name"]] = device
            self._re_enrolled()

    def _device(self, i: int, shared: list[str]) -> dict:
        h = device_hash(self.seed, i, b"android")
        profile = PROFILES[i % len(PROFILES)]
        brand, manufacturer, model = HARDWARE[h[0] % len(HARDWARE)]
        device_id = h[:8].hex()
        name = f"enterprises/{self.enterprise}/devices/{device_id}"
        reported = BASE_REPORT - int.from_bytes(h[1:4], "big") % (14 * 86400)
        fraction = f"{h[4] % 1000:03d}" if i % 4 else f"{int.from_bytes(h[4:8], 'big') % 10**9:09d}"
        device = {
            "name": name, "userName": f"enterprises/{self.enterprise}/users/{int.from_bytes(h[8:16], 'big')}",
            "enrollmentTime": _rfc3339(reported - 90 * 86400, "500"),
        }
        if profile == "provisioning":  # almost no data: no serial, no compliance
            device.update(state="PROVISIONING", appliedState="PROVISIONING", managementMode="DEVICE_OWNER",
                          ownership="COMPANY_OWNED")
            return device
        personal = profile == "personal"
        company_index = i - sum(1 for k in range(i) if PROFILES[k % len(PROFILES)] in ("personal", "provisioning"))
        if personal:
            api_level = 31 + h[9] % 4  # Android 12+: the "serial" is the enterprise-specific id
            specific = h[16:24].hex().upper()
            serial = specific if i % 20 != 3 else ""  # an old work profile that reports no serial at all
        else:
            api_level = 30 + h[9] % 5
            specific = h[16:24].hex().upper()
            # Company devices the CMDBs know too, their serial spelled in lower case here.
            serial = shared[company_index].lower() if company_index < len(shared) else f"R{h[24:29].hex().upper()}"
        state = "ACTIVE"
        if i % 23 == 11:
            state = "DISABLED"
        elif i % 29 == 17:
            state = "LOST"
        compliant = i % 6 != 1
        device.update({
            "managementMode": "PROFILE_OWNER" if profile != "fully_managed" else "DEVICE_OWNER",
            "ownership": "PERSONALLY_OWNED" if personal else "COMPANY_OWNED",
            "state": state, "appliedState": state, "policyCompliant": compliant,
            "lastStatusReportTime": _rfc3339(reported, fraction),
            "lastPolicySyncTime": _rfc3339(reported - 4, "001"),
            "apiLevel": api_level, "policyName": f"enterprises/{self.enterprise}/policies/{profile}",
            "hardwareInfo": {"brand": brand, "manufacturer": manufacturer, "model": model,
                             **({"serialNumber": serial} if serial else {}), "enterpriseSpecificId": specific},
        })
        if not compliant:
            details = [{"settingName": "passwordRequirements", "nonComplianceReason": "USER_ACTION"}]
            if i % 4 == 1:
                details.append({"settingName": "applications", "packageName": "com.example.vpn",
                                "nonComplianceReason": "APP_NOT_INSTALLED"})
            device["nonComplianceDetails"] = details
        if i % 5 != 3:  # softwareInfo only where the policy enables software reporting
            device["softwareInfo"] = {"androidVersion": str(api_level - 19), "securityPatchLevel": "2025-05-01",
                                      "androidBuildNumber": "UP1A.231005.007"}
        if i % 7 != 5:
            mac = "02:00:00:00:00:00" if personal else "5c:51:81:" + h[29:32].hex(":")
            device["networkInfo"] = {"wifiMacAddress": mac, "networkOperatorName": "Orange",
                                     **({} if personal else {"imei": f"49015420{i:07d}"})}
        return device

    def _re_enrolled(self) -> None:
        """The first fully managed phone was re-enrolled: a new name, the old one still listed with a stale
        report, its serial in another case."""
        old = next((d for d in self.devices.values() if d.get("managementMode") == "DEVICE_OWNER"
                    and d.get("hardwareInfo", {}).get("serialNumber", "").startswith("R")), None)
        if old is None:
            return
        new_id = hashlib.blake2b(old["name"].encode(), digest_size=8).hexdigest()
        new = json.loads(json.dumps(old))
        new["name"] = f"enterprises/{self.enterprise}/devices/{new_id}"
        new["previousDeviceNames"] = [old["name"]]
        new["hardwareInfo"]["serialNumber"] = old["hardwareInfo"]["serialNumber"].upper()
        old["lastStatusReportTime"] = _rfc3339(BASE_REPORT - 200 * 86400, "000")
        self.devices[new["name"]] = new

    # ------------------------------------------------------------------ changes (control API, tests)

    def register_service_account(self, client_email: str, public_key_pem: str, key_id: str) -> None:
        serialization.load_pem_public_key(public_key_pem.encode())  # refuse garbage now, not at token time
        with self._lock:
            self.service_accounts.setdefault(client_email, {})[key_id] = public_key_pem

    def revoke_key(self, client_email: str, key_id: str | None = None) -> None:
        """Delete a key (or every key of the account), as an admin does in the Cloud console."""
        with self._lock:
            keys = self.service_accounts.get(client_email, {})
            if key_id is None:
                keys.clear()
            else:
                keys.pop(key_id, None)

    def remove_device(self, name: str) -> None:
        with self._lock:
            del self.devices[self._full_name(name)]

    def update_device(self, name: str, fields: dict) -> None:
        with self._lock:
            self.devices[self._full_name(name)].update(fields)

    def _full_name(self, name: str) -> str:
        return name if name.startswith("enterprises/") else f"enterprises/{self.enterprise}/devices/{name}"

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def state(self) -> dict:
        with self._lock:
            return {"enterprise": self.enterprise, "devices": len(self.devices), "bound": self.bound,
                    "service_accounts": {email: sorted(keys) for email, keys in self.service_accounts.items()},
                    "stats": self.stats.as_dict()}

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action == "service-accounts":
            self.register_service_account(spec["client_email"], spec["public_key_pem"], spec["private_key_id"])
        elif action == "service-accounts/revoke":
            self.revoke_key(spec["client_email"], spec.get("private_key_id"))
        elif action == "devices/remove":
            self.remove_device(spec["name"])
        elif action == "devices/update":
            self.update_device(spec["name"], spec.get("fields", {}))
        elif action == "expire-tokens":
            self.expire_tokens()
        elif action == "config":
            for key in ("token_lifetime", "bound"):
                if key in spec:
                    setattr(self, key, spec[key])
        else:
            return None
        return json_response({"ok": True})

    # ------------------------------------------------------------------ HTTP

    def fault_response(self, fault) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        if fault.status == 429:
            return google_error(429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' "
                                "of service 'androidmanagement.googleapis.com'.", "RATE_LIMIT_EXCEEDED", headers)
        message = {400: "Request contains an invalid argument."}.get(
            fault.status, "The service is currently unavailable.")
        return google_error(fault.status, message, headers=headers)

    def serve(self, request: Request) -> Response:
        path = request.path
        if path == "/token":
            if request.method != "POST":
                return oauth_error("invalid_request", "Only POST is supported.", 405)
            return self._token(request)
        if path.startswith("/v1/"):
            return self._api(request, path[len("/v1/"):])
        return google_error(404, f"The requested URL {path} was not found on this server.")

    # ------------------------------------------------------------------ token endpoint

    def _token(self, request: Request) -> Response:
        self.stats.incr("token_requests")
        form = request.form
        if form.get("grant_type") != JWT_BEARER:
            return oauth_error("unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return oauth_error("invalid_request", "Invalid JWT: the assertion is not a JWT.")
        issuer = claims.get("iss")
        with self._lock:
            keys = dict(self.service_accounts.get(issuer, {}))
        if not keys:
            self.stats.incr("token_refusals")
            return oauth_error("invalid_grant", "Invalid grant: account not found")
        kid = header.get("kid")
        candidates = [keys[kid]] if kid in keys else ([] if kid else list(keys.values()))
        audience = request.host_url.rstrip("/") + request.script_root + request.path
        verified = None
        for public in candidates:
            try:
                verified = jwt.decode(assertion, public, algorithms=["RS256"], audience=audience,
                                      options={"require": ["iss", "aud", "iat", "exp"]}, leeway=30)
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAudienceError:
                return oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
            except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError, jwt.MissingRequiredClaimError):
                return self._bad_time()
            except jwt.PyJWTError:
                break
        if verified is None:
            self.stats.incr("token_refusals")
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        if not isinstance(verified["iat"], int | float) or not isinstance(verified["exp"], int | float) \
                or not 0 < verified["exp"] - verified["iat"] <= 3600:
            return self._bad_time()
        if SCOPE not in str(verified.get("scope", "")).split():
            return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29.sim-" + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.time() + self.token_lifetime
        self.stats.incr("tokens_issued")
        return json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    @staticmethod
    def _bad_time() -> Response:
        return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                           "reasonable timeframe. Check your iat and exp values in the JWT claim.")

    # ------------------------------------------------------------------ API

    def _api(self, request: Request, path: str) -> Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if expires is None or expires <= time.time():
            self.stats.incr("unauthenticated_requests")
            return google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                "token, login cookie or other valid authentication credential.", "ACCESS_TOKEN_EXPIRED"
                                if expires is not None else "CREDENTIALS_MISSING")
        if request.method != "GET":
            return google_error(405, f"Method {request.method} is not allowed here.")
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "enterprises":
            return google_error(404, f"The requested URL /v1/{path} was not found on this server.")
        if parts[1] != self.enterprise or not self.bound:
            return google_error(403, "The caller does not have permission", "PERMISSION_DENIED")
        if len(parts) == 2:
            return json_response({"name": f"enterprises/{self.enterprise}", "enterpriseDisplayName": "Acme Corp"})
        if parts[2] != "devices" or len(parts) > 4:
            return google_error(404, f"The requested URL /v1/{path} was not found on this server.")
        if len(parts) == 4:
            with self._lock:
                device = self.devices.get(f"enterprises/{self.enterprise}/devices/{parts[3]}")
            if device is None:
                return google_error(404, f"Device enterprises/{self.enterprise}/devices/{parts[3]} not found.")
            return json_response(device)
        return self._list(request)

    def _list(self, request: Request) -> Response:
        self.stats.incr("device_list_requests")
        raw_size = request.args.get("pageSize", "")
        try:
            size = int(raw_size) if raw_size else DEFAULT_PAGE_SIZE
        except ValueError:
            return google_error(400, f"Invalid value at 'page_size' (TYPE_INT32), \"{raw_size[:40]}\"")
        if size < 0:
            return google_error(400, "page_size must not be negative.")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)  # larger values are coerced, not refused
        offset = 0
        if request.args.get("pageToken"):
            try:
                offset = int(_unb64(request.args["pageToken"])["o"])
            except (ValueError, TypeError, KeyError):
                return google_error(400, "Invalid page token.")
        with self._lock:
            names = sorted(self.devices)
            page = [self.devices[name] for name in names[offset:offset + size]]
        body: dict = {"devices": page}
        if offset + size < len(names):
            body["nextPageToken"] = _b64({"o": offset + size})
        return json_response(body)
