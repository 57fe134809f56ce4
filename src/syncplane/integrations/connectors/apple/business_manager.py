"""Apple Business Manager (and Apple School Manager): the organisation's purchased devices, two ways in
(see shared/api-notes/apple-business-manager.md; mapping in mapping.py, auth in auth.py).

Apple Business API (auth type oauth2_client_assertion; the way for a new integration):
- Base URL `https://api-business.apple.com/v1` (School: `https://api-school.apple.com/v1`); config
  `account_type` business/school picks the token scope (`business.api` / `school.api`) and must agree with the
  client ID's prefix (BUSINESSAPI. / SCHOOLAPI.) and with an Apple base host.
- Token: POST `token_url` (default `https://account.apple.com/auth/oauth2/token`; some clients use
  `.../oauth2/v2/token`, both work), client credentials with an ES256 client assertion (auth.py). The token is
  kept until a minute before its hour is up (Apple answers 400 to clients that ask too often); a 401 from the
  API gets one new token and one retry, then the run fails as an authentication error.
- Devices: GET `/orgDevices?limit=<page_size>` (max 1000), then `links.next` verbatim (an absolute URL,
  checked to stay on the base URL's host); `meta.paging.nextCursor` is the fallback where a page has no link.
  The listing is not a snapshot: a device updated while the run pages can come twice; only its newest
  version (greatest updatedDateTime, serial compared case-insensitively) is kept.
- MDM servers: before the devices, GET `/mdmServers` and each server's `/relationships/devices` (paged the same
  way) give serial -> server, one request per thousand devices instead of one per device. The server
  (id, serverName, serverType) is added to each raw device as `assignedServer` (null when unassigned).
- No change filter exists: an incremental run lists again (unchanged devices cost a fingerprint), and devices
  released from the organisation are found by `list_ids` (`fields[orgDevices]=serialNumber`, 1000 a page).

Device Assignment API, the legacy DEP flow (auth type apple_server_token): for customers who can only give the
decrypted server token of one MDM server (consumer key and secret, access token and secret).
- Base URL `https://mdmenrollment.apple.com`. GET `/session` (OAuth 1.0a-signed) then X-ADM-Auth-Session on
  every call, rotated when Apple sends a new one (auth.py).
- Full: POST `/server/devices` `{"limit", "cursor"}` while `more_to_follow`; the last cursor is the run's cursor.
- Incremental: POST `/devices/sync` `{"cursor"}` from that cursor, while `more_to_follow`. Changes carry
  `op_type` and `op_date`; a serial may come several times, the latest op_date wins. A device whose latest
  change is `deleted` (or `removed`) is left out of the pages: `list_ids` (one fetch listing of serials) no
  longer has it, and the engine marks its source deleted. A cursor Apple no longer takes (EXPIRED_CURSOR after 7
  days, INVALID_CURSOR, EXHAUSTED_CURSOR) restarts the run with a full fetch listing.
- The scope is the devices assigned to that one MDM server, not the organisation: the reason it is legacy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from syncplane.integrations.base import (
    RATE_MAX,
    RATE_MIN,
    ConnectionResult,
    Connector,
    ConnectorContext,
    MappedRecord,
    Page,
)
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.connectors.apple.auth import ClientAssertionAuth, DepSessionAuth
from syncplane.integrations.connectors.apple.keys import load_signing_key
from syncplane.integrations.connectors.apple.mapping import map_dep_device, map_org_device, serial_of
from syncplane.integrations.errors import ConfigurationError, PermanentError
from syncplane.integrations.http import HttpClient
from syncplane.integrations.paging import CursorPaginator, NextLinkPaginator
from syncplane.integrations.registry import register

TOKEN_URL = "https://account.apple.com/auth/oauth2/token"
DEP_BASE = "https://mdmenrollment.apple.com"
# account type -> (token scope, client ID prefix, API host)
ACCOUNTS = {
    "business": ("business.api", "BUSINESSAPI.", "api-business.apple.com"),
    "school": ("school.api", "SCHOOLAPI.", "api-school.apple.com"),
}
DEP_CURSOR_ERRORS = ("EXPIRED_CURSOR", "INVALID_CURSOR", "EXHAUSTED_CURSOR")
DEP_GONE = frozenset({"deleted", "removed"})
ID_PAGE_SIZE = 1000


class LatestBySerial:
    """Which reading of a serial to keep in one run: listings repeat a device that changed while they were
    paged (and DEP's sync repeats a serial per change), and only its newest reading counts."""

    def __init__(self, *, ties_are_newer: bool = False) -> None:
        # A change log lists a device's changes in the order they happened, two of them in the same millisecond
        # included: there the later of equal readings is the newer. A listing repeats the same reading.
        self._seen: dict[str, str] = {}
        self.ties_are_newer = ties_are_newer

    def newer(self, serial: str, when: str) -> bool:
        """Record this reading; False when a newer reading (or, for a listing, the same one) was already kept."""
        previous = self._seen.get(serial)
        if previous is not None and (when < previous or (when == previous and not self.ties_are_newer)):
            return False
        self._seen[serial] = when
        return True


class JsonApiPaginator(NextLinkPaginator):
    """JSON:API paging: `links.next`, an absolute URL to follow verbatim; where a page only has
    `meta.paging.nextCursor`, the same list with that cursor."""

    def __init__(self, start: str | None, *, vendor: str, with_cursor: Callable[[str], str]):
        super().__init__(start, vendor=vendor)
        self.with_cursor = with_cursor

    def next_token(self, page: dict) -> str | None:
        link = (page.get("links") or {}).get("next")
        if isinstance(link, str) and link:
            return link
        cursor = ((page.get("meta") or {}).get("paging") or {}).get("nextCursor")
        return self.with_cursor(cursor) if isinstance(cursor, str) and cursor else None


class DepCursorPaginator(CursorPaginator):
    """DEP: the body's cursor leads on while `more_to_follow` is true."""

    def next_token(self, page: dict) -> str | None:
        if not page.get("more_to_follow"):
            return None
        if not isinstance(page.get("cursor"), str) or not page["cursor"]:
            raise PermanentError(f"{self.vendor}: more_to_follow is true but the answer has no cursor")
        return page["cursor"]


class DepCursorGone(Exception):
    """Apple no longer takes the stored cursor: the run starts over with a fetch listing."""


def _total(body: dict) -> int | None:
    total = ((body.get("meta") or {}).get("paging") or {}).get("total")
    return total if type(total) is int else None  # noqa: E721 - a bool is not a total


@register
class AppleBusinessManagerConnector(Connector):
    system_type = SystemType.APPLE_BUSINESS_MANAGER
    category = Category.MDM
    display_name = "Apple Business Manager"
    record_kind = RecordKind.ASSET
    auth_types = (AuthType.OAUTH2_CLIENT_ASSERTION, AuthType.APPLE_SERVER_TOKEN)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL,
                              Capability.DRY_RUN, Capability.LIST_IDS})
    url_config_fields = ("token_url",)  # the signed client assertion goes there
    base_url_help = (
        "Apple Business API: https://api-business.apple.com/v1 (Apple School Manager: https://api-school.apple.com/v1)."
        " Server token (legacy): https://mdmenrollment.apple.com. The connector adds /orgDevices, /mdmServers, "
        "/session, /server/devices itself."
    )
    base_url_example = "https://api-business.apple.com/v1"
    owned_path_suffixes = ("/orgDevices", "/mdmServers", "/server/devices", "/devices/sync", "/session")
    config_schema = {
        "type": "object",
        "properties": {
            "account_type": {"enum": list(ACCOUNTS), "default": "business",
                             "description": "business (Apple Business Manager) or school (Apple School Manager): "
                             "the token scope and the API host."},
            "token_url": {"type": "string", "minLength": 1, "maxLength": 500, "default": TOKEN_URL,
                          "description": "Apple's OAuth token endpoint (API accounts only)."},
            "page_size": {"type": "integer", "minimum": 100, "maximum": 1000, "default": 1000,
                          "description": "Devices per request (Apple allows up to 1000)."},
            "read_assigned_servers": {"type": "boolean", "default": True,
                                      "description": "Record the MDM server each device is assigned to (API "
                                      "accounts; one request per server and thousand devices)."},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 20},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "additionalProperties": False,
    }

    @classmethod
    def check_credential(cls, auth_type: str, name: str, value: str) -> None:
        if auth_type == AuthType.OAUTH2_CLIENT_ASSERTION and name == "private_key":
            load_signing_key(value)

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        if context.auth_type not in self.auth_types:
            raise ConfigurationError("Apple Business Manager takes an API account (oauth2_client_assertion) or, "
                                     "legacy, an MDM server token (apple_server_token)")
        self.legacy = context.auth_type == AuthType.APPLE_SERVER_TOKEN
        base = (context.base_url or "").rstrip("/")
        if self.legacy:
            base = base or DEP_BASE
            auth = DepSessionAuth(f"{base}/session", context.credential("consumer_key"),
                                  context.credential("consumer_secret"), context.credential("access_token"),
                                  context.credential("access_secret"))
        else:
            scope, prefix, host = ACCOUNTS[self.config["account_type"]]
            base = base or f"https://{host}/v1"
            client_id = context.credential("client_id")
            self._check_account(client_id, base)
            auth = ClientAssertionAuth(self.config["token_url"], client_id, context.credential("key_id"),
                                       load_signing_key(context.credential("private_key")), scope=scope)
        self.auth = auth
        self.client = HttpClient(base, auth=auth, timeout=self.config["timeout_seconds"],
                                 rate_limit_per_second=self.config["rate_limit_per_second"],
                                 secrets=context.secret_values())
        self.page_size = self.config["page_size"]

    def _check_account(self, client_id: str, base_url: str) -> None:
        """The account type, the client ID's prefix and an Apple API host must tell the same story."""
        account = self.config["account_type"]
        other = "school" if account == "business" else "business"
        if client_id.upper().startswith(ACCOUNTS[other][1]):
            raise ConfigurationError(f"config.account_type: is {account}, but the client ID is an Apple "
                                     f"{other.title()} Manager API account ({ACCOUNTS[other][1]}...): "
                                     f"set it to {other}")
        if (urlsplit(base_url).hostname or "").lower() == ACCOUNTS[other][2]:
            raise ConfigurationError(f"base_url: {ACCOUNTS[other][2]} serves {other} accounts; a {account} account "
                                     f"uses https://{ACCOUNTS[account][2]}/v1")

    def close(self) -> None:
        self.client.close()

    @property
    def account_name(self) -> str:
        return "Apple School Manager" if self.config["account_type"] == "school" and not self.legacy \
            else "Apple Business Manager"

    # --- the contract ----------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        if self.legacy:
            account = self.client.json(self.client.get("/account"))
            server = account.get("server_name", "") if isinstance(account, dict) else ""
            return ConnectionResult(ok=True, message=f"Connected to Apple DEP with the server token of MDM server "
                                    f"'{server}' (legacy: only devices assigned to it are read).",
                                    details={"server_name": server, "org_name": account.get("org_name", "")})
        body = self._list(self._devices_url(limit=1))
        return ConnectionResult(ok=True, message=f"Connected to {self.account_name}: a token was issued and "
                                "devices are readable.", details={"sample": len(body["data"]),
                                                                  "tokens_fetched": self.auth.token_requests})

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        if self.legacy:
            yield from self._fetch_dep(mode, cursor, resume)
        else:
            yield from self._fetch_devices(resume)

    def list_ids(self) -> Iterator[str]:
        if self.legacy:
            for body in self._dep_pages("fetch", None)[1]:
                for device in body["devices"]:
                    if isinstance(device, dict) and serial_of(device.get("serial_number")):
                        yield serial_of(device["serial_number"])
            return
        url = self._devices_url(limit=ID_PAGE_SIZE, **{"fields[orgDevices]": "serialNumber"})
        for body in self._pages(url)[1]:
            for item in body["data"]:
                serial = serial_of(item.get("id")) if isinstance(item, dict) else ""
                if serial:
                    yield serial

    def map_record(self, raw: dict) -> MappedRecord:
        return map_dep_device(raw) if self.legacy else map_org_device(raw)

    def external_id(self, raw: Any) -> str:
        if not isinstance(raw, dict):
            return ""
        value = raw.get("serial_number") if self.legacy else raw.get("id")
        return serial_of(value)[:255]

    # --- Apple Business API ----------------------------------------------------------------------

    def _devices_url(self, **params) -> str:
        return "/orgDevices?" + urlencode({"limit": self.page_size, **params})

    def _list(self, url: str) -> dict:
        body = self.client.json(self.client.get(url))
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise PermanentError(f"GET {urlsplit(url).path} answered without a data list")
        return body

    def _pages(self, first: str, resume_at: str | None = None) -> tuple[JsonApiPaginator, Iterator[dict]]:
        """A JSON:API list from its first URL (or a page to resume at): the paginator and its pages."""
        path, _, query = first.partition("?")

        def with_cursor(cursor: str) -> str:
            return f"{path}?{query}&{urlencode({'cursor': cursor})}"

        pages = JsonApiPaginator(resume_at, vendor=self.account_name, with_cursor=with_cursor)
        return pages, pages.pages(lambda url: self._list(url or first))

    def _fetch_devices(self, resume: dict | None) -> Iterator[Page]:
        servers = self._assigned_servers() if self.config["read_assigned_servers"] else None
        latest = LatestBySerial()
        pages, bodies = self._pages(self._devices_url(), (resume or {}).get("next"))
        for body in bodies:
            records = []
            for item in body["data"]:
                attributes = item.get("attributes") if isinstance(item, dict) else None
                if isinstance(attributes, dict):
                    serial = serial_of(attributes.get("serialNumber")) or serial_of(item.get("id"))
                    updated = attributes.get("updatedDateTime")
                    if serial and not latest.newer(serial, updated if isinstance(updated, str) else ""):
                        continue  # an older or the same reading of a device already taken in this run
                    if servers is not None:
                        item = {**item, "assignedServer": servers.get(serial)}
                records.append(item)  # anything else fails in the mapping, as a record error with its payload
            yield Page(records=records, resume=None if pages.finished else {"next": pages.current},
                       total=_total(body))

    def _assigned_servers(self) -> dict[str, dict]:
        """serial -> the MDM server it is assigned to (id, serverName, serverType), one shared dict per server."""
        servers = {}
        for body in self._pages("/mdmServers?" + urlencode({"limit": ID_PAGE_SIZE}))[1]:
            for item in body["data"]:
                if isinstance(item, dict) and item.get("id"):
                    attributes = item.get("attributes") or {}
                    servers[str(item["id"])] = {"id": str(item["id"]), "serverName": attributes.get("serverName"),
                                                "serverType": attributes.get("serverType")}
        assigned: dict[str, dict] = {}
        for server_id, server in servers.items():
            first = f"/mdmServers/{server_id}/relationships/devices?" + urlencode({"limit": ID_PAGE_SIZE})
            for body in self._pages(first)[1]:
                for link in body["data"]:
                    serial = serial_of(link.get("id")) if isinstance(link, dict) else ""
                    if serial:
                        assigned[serial] = server
        return assigned

    # --- Device Assignment (DEP), legacy ---------------------------------------------------------

    def _fetch_dep(self, mode: str, cursor: Any, resume: dict | None) -> Iterator[Page]:
        stored = cursor.get("dep") if mode == "incremental" and isinstance(cursor, dict) else None
        if resume:
            kind, start = resume.get("kind", "fetch"), resume.get("cursor")
        else:
            kind, start = ("sync", stored) if stored else ("fetch", None)
        try:
            yield from self._dep_stream(kind, start)
        except DepCursorGone:
            # Pages already read are written; the fetch listing reads every device again, which is harmless.
            yield from self._dep_stream("fetch", None)

    def _dep_stream(self, kind: str, start: str | None) -> Iterator[Page]:
        latest = LatestBySerial(ties_are_newer=True)
        pages, bodies = self._dep_pages(kind, start)
        for body in bodies:
            records, by_serial = [], {}
            for device in body["devices"]:
                serial = serial_of(device.get("serial_number")) if isinstance(device, dict) else None
                if not serial:
                    records.append(device)  # anything else fails in the mapping, as a record error with its payload
                elif latest.newer(serial, str(device.get("op_date") or "")):
                    by_serial[serial] = device  # a later change of a device earlier in this page replaces it
            # A device whose latest change is a removal: list_ids no longer lists it, the engine marks it deleted.
            records += [d for d in by_serial.values() if str(d.get("op_type", "")).lower() not in DEP_GONE]
            cursor = {"dep": body["cursor"]} if isinstance(body.get("cursor"), str) and body["cursor"] else None
            yield Page(records=records, cursor=cursor,
                       resume=None if pages.finished else {"kind": kind, "cursor": pages.current})

    def _dep_pages(self, kind: str, start: str | None) -> tuple[DepCursorPaginator, Iterator[dict]]:
        """Fetch devices (every device of the MDM server) or sync devices (changes since `start`)."""
        path = "/server/devices" if kind == "fetch" else "/devices/sync"
        pages = DepCursorPaginator(start, vendor="Apple DEP", key="cursor")
        return pages, pages.pages(lambda position: self._dep_post(path, position))

    def _dep_post(self, path: str, cursor: str | None) -> dict:
        body = {"limit": self.page_size, **({"cursor": cursor} if cursor else {})}
        # A listing changes nothing: safe to send again after a transient failure.
        response = self.client.post(path, json=body, expected=(200, 400), idempotent=True)
        if response.status_code == 400:
            text = response.text[:300]
            code = next((c for c in DEP_CURSOR_ERRORS if c in text), None)
            if code and cursor:
                raise DepCursorGone(code)
            raise PermanentError(f"Apple DEP: POST {path} answered 400: {self.client.redact(' '.join(text.split()))}",
                                 status_code=400)
        answer = self.client.json(response)
        if not isinstance(answer, dict) or not isinstance(answer.get("devices"), list):
            raise PermanentError(f"Apple DEP: POST {path} answered without a devices list")
        return answer
