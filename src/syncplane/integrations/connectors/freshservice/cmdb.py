"""Freshservice CMDB, read through the v2 assets API (see shared/api-notes/freshservice-cmdb.md).

Auth and paging: common.py (the agent's API key as the Basic user name; `page` / `per_page` up to 100,
following the Link header's rel="next", whose absence ends the list).
Filter queries page differently: always 30 per page, at most 40 pages, no Link header.
Streams: `/api/v2/assets?include=type_fields`; the reference lists (asset types, products, departments,
locations, requesters, agents) are read once per run, one request per page of each, never one per asset.
Incremental: `filter="updated_at:>'<UTC date of the cursor minus one day>'"` (day granularity), re-filtered
here by updated_at >= cursor; boundary re-reads are unchanged by fingerprint. When the filter's 1,200-record
ceiling is reached the run falls back to the full list.
type_fields keys carry the id of the asset type that defines the field (`serial_number_21000855267`,
`hostname_21000855272`): the suffix is stripped before mapping.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from syncplane.core.normalize import normalize_mac
from syncplane.integrations.base import (
    MAX_CONFIG_ID,
    RATE_MAX,
    RATE_MIN,
    ConnectionResult,
    Connector,
    ConnectorContext,
    MappedRecord,
    Page,
)
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.connectors.freshservice.common import (
    MAX_PAGE_SIZE,
    VENDOR,
    LinkedPages,
    freshservice_client,
    pace,
    parse_time,
)
from syncplane.integrations.errors import PermanentError, RecordError
from syncplane.integrations.paging import PageNumberPaginator
from syncplane.integrations.records import AssetAttributes, AssetStatus, AssetType
from syncplane.integrations.registry import register

ASSETS = "/api/v2/assets"
FILTER_PAGE_SIZE = 30  # filter= answers are fixed at 30 per page...
FILTER_MAX_PAGES = 40  # ...and stop after 40 pages (1,200 records)
LOOKUP_MAX = 200  # deletion candidates confirmed one by one (GET /assets/{display_id}); more: trust the pass

ASSET_TYPE_MAP = {
    "Laptop": "laptop",
    "Notebook": "laptop",
    "Desktop": "desktop",
    "Workstation": "desktop",
    "Server": "server",
    "Virtual Machine": "virtual_machine",
    "VM": "virtual_machine",
    "Mobile": "mobile",
    "Mobile Device": "mobile",
    "Mobile Phone": "mobile",
    "Phone": "mobile",
    "Tablet": "tablet",
    "Printer": "printer",
    "Router": "network_device",
    "Switch": "network_device",
    "Firewall": "network_device",
    "Access Point": "network_device",
    "Network": "network_device",
}
STATE_MAP = {
    "In Use": "active",
    "In Stock": "in_stock",
    "In Transit": "in_stock",
    "In Repair": "in_maintenance",
    "Under Maintenance": "in_maintenance",
    "Retired": "retired",
    "Disposed": "disposed",
    "Missing": "unknown",
}
ASSET_TYPES = tuple(AssetType.values)
STATUSES = tuple(AssetStatus.values)
STRING_FIELDS = ("name", "asset_tag", "serial_number", "hostname", "computer_ip_address", "mac_address", "os",
                 "os_version", "asset_state")
_SUFFIX = re.compile(r"^(.+)_(\d+)$")


@dataclass
class Lookups:
    """The reference data a mapping needs, read once per run: id -> what the asset shows."""

    asset_types: dict[int, tuple[str, int | None]] = field(default_factory=dict)  # id -> (name, parent id)
    products: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, manufacturer)
    departments: dict[int, str] = field(default_factory=dict)
    locations: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)  # requester or agent id -> e-mail
    asset_type_map: dict[str, str] = field(default_factory=lambda: dict(ASSET_TYPE_MAP))
    state_map: dict[str, str] = field(default_factory=lambda: dict(STATE_MAP))

    def __post_init__(self) -> None:
        self.asset_type_map, self.state_map = dict(self.asset_type_map), dict(self.state_map)
        self._type_map = {k.strip().lower(): v for k, v in self.asset_type_map.items()}
        self._state_map = {k.strip().lower(): v for k, v in self.state_map.items()}
        self._canonical_types: dict[int, str] = {}

    def canonical_type(self, asset_type_id: Any) -> str:
        """The leaf type's canonical type, else its nearest ancestor's (Laptop -> Computer -> Hardware)."""
        if not isinstance(asset_type_id, int):
            return "other"
        cached = self._canonical_types.get(asset_type_id)
        if cached is None:
            cached, current, seen = "other", asset_type_id, set()
            while current is not None and current not in seen and current in self.asset_types:
                seen.add(current)
                name, parent = self.asset_types[current]
                if name.strip().lower() in self._type_map:
                    cached = self._type_map[name.strip().lower()]
                    break
                current = parent
            self._canonical_types[asset_type_id] = cached
        return cached

    def status(self, asset_state: str) -> str:
        return self._state_map.get(asset_state.lower(), "unknown") if asset_state else "unknown"

    def knows_state(self, asset_state: str) -> bool:
        return not asset_state or asset_state.lower() in self._state_map


REFERENCE_LISTS = ("asset_types", "products", "departments", "locations", "requesters", "agents")


def build_lookups(lists: dict[str, list], asset_type_map: dict | None = None, state_map: dict | None = None
                  ) -> Lookups:
    """Lookups from the reference lists as the API returns them (`{"asset_types": [...], ...}`). Configured maps
    extend the default tables (a configured name wins)."""
    lookups = Lookups(asset_type_map={**ASSET_TYPE_MAP, **(asset_type_map or {})},
                      state_map={**STATE_MAP, **(state_map or {})})
    for key in REFERENCE_LISTS:
        for item in lists.get(key) or ():
            if not isinstance(item, dict) or _id(item.get("id")) is None:
                continue
            name = str(item.get("name") or "").strip()
            if key == "asset_types":
                lookups.asset_types[item["id"]] = (name, _id(item.get("parent_asset_type_id")))
            elif key == "products":
                lookups.products[item["id"]] = (name, str(item.get("manufacturer") or "").strip())
            elif key in ("departments", "locations"):
                getattr(lookups, key)[item["id"]] = name
            else:
                # Requesters carry primary_email, agents email; a user_id can point at either.
                email = item.get("primary_email") or item.get("email") or ""
                lookups.users.setdefault(item["id"], str(email).strip())
    return lookups


def _id(value: Any) -> int | None:
    """A 64-bit id as the API sends it (an integer); anything else is no id."""
    return value if type(value) is int else None  # noqa: E721 - bool is not an id


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if type(value) in (int, float) and name in ("computer_ip_address", "os_version"):  # noqa: E721
        return str(value)
    raise RecordError(f"field {name} is not a string: {type(value).__name__}")


def type_field_values(type_fields: Any, type_ids: set[int] | frozenset[int] = frozenset()) -> dict[str, Any]:
    """`{"serial_number_21000855267": "X"}` -> `{"serial_number": "X"}`.

    The suffix is the id of the type that defines the field, not the asset's own type, so it differs per
    field. It is stripped when it is a known asset type id, or (reference data unknown) a long number; the
    first non-null value wins when two types define the same name.
    """
    if type_fields is None:
        return {}
    if not isinstance(type_fields, dict):
        raise RecordError(f"type_fields is not an object: {type(type_fields).__name__}")
    values: dict[str, Any] = {}
    for key, value in type_fields.items():
        match = _SUFFIX.match(key)
        name = key
        if match and (int(match.group(2)) in type_ids or (not type_ids and len(match.group(2)) >= 6)):
            name = match.group(1)
        if values.get(name) is None:
            values[name] = value
    return values


def map_asset(raw: Any, lookups: Lookups) -> MappedRecord:
    """One asset (with include=type_fields) -> canonical asset attributes. Pure: lookups are given."""
    if not isinstance(raw, dict):
        raise RecordError("record is not an object")
    display_id = _id(raw.get("display_id"))
    if display_id is None:
        raise RecordError("record has no integer display_id")
    if raw.get("id") is not None and _id(raw.get("id")) is None:
        raise RecordError("record id is not an integer")
    updated = parse_time(raw.get("updated_at"), "updated_at")
    fields = {**type_field_values(raw.get("type_fields"), frozenset(lookups.asset_types)), **{
        name: raw.get(name) for name in ("name", "asset_tag")}}
    last_audit = parse_time(fields.get("last_audit_date"), "last_audit_date") if "last_audit_date" in fields \
        else None
    seen = last_audit or updated
    product = lookups.products.get(_id(fields.get("product")), ("", ""))
    hostname = _text(fields, "hostname")
    fqdn = hostname.lower() if "." in hostname else ""
    attributes: AssetAttributes = {
        "name": _text(fields, "name"),
        "asset_type": lookups.canonical_type(raw.get("asset_type_id")),
        "status": lookups.status(_text(fields, "asset_state")),  # an unknown state is named in `unmapped`
        "serial_number": _text(fields, "serial_number"),
        "asset_tag": _text(fields, "asset_tag"),
        "manufacturer": product[1],
        "model": product[0],
        "hostname": hostname.split(".", 1)[0] if fqdn else hostname,
        "fqdn": fqdn,
        "ip_address": _text(fields, "computer_ip_address"),
        "mac_address": normalize_mac(_text(fields, "mac_address")),
        "operating_system": _text(fields, "os"),
        "os_version": _text(fields, "os_version"),
        "owner_email": lookups.users.get(_id(raw.get("user_id")), "").lower(),
        "location": lookups.locations.get(_id(raw.get("location_id")), ""),
        "department": lookups.departments.get(_id(raw.get("department_id")), ""),
        "last_seen_at": seen.isoformat() if seen else None,
    }
    state = _text(fields, "asset_state")
    unmapped = {} if lookups.knows_state(state) else {"status": state}
    return MappedRecord(external_id=str(display_id), attributes=attributes, raw=raw, unmapped=unmapped)


def _name_map(schema_default: dict, values: list[str], description: str) -> dict:
    return {
        "type": "object",
        "additionalProperties": {"type": "string", "enum": values},
        "propertyNames": {"minLength": 1, "maxLength": 255},
        "default": schema_default,
        "description": description,
    }


@register
class FreshserviceCMDBConnector(Connector):
    system_type = SystemType.FRESHSERVICE_CMDB
    category = Category.CMDB
    display_name = "Freshservice CMDB"
    base_url_help = (
        "The account URL, nothing after the host: the connector adds /api/v2/... (a custom domain answers "
        "HTML)."
    )
    base_url_example = "https://acme.freshservice.com"
    owned_path_suffixes = ("/api/v2", "/api")
    record_kind = RecordKind.ASSET
    auth_types = (AuthType.API_KEY,)  # the agent's API key, sent as Basic "<key>:X"
    capabilities = frozenset({
        Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL, Capability.DRY_RUN, Capability.LOOKUP,
    })
    config_schema = {
        "type": "object",
        "properties": {
            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": MAX_PAGE_SIZE,
                          "description": "per_page of the asset list (the API's maximum is 100)."},
            "workspace_id": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_CONFIG_ID, "default": None,
                             "description": "Accounts with Workspaces: only the primary workspace is listed "
                             "unless set; 0 = every workspace the agent can see (global fields only)."},
            "asset_type_map": _name_map(ASSET_TYPE_MAP, list(ASSET_TYPES),
                                        "Freshservice asset type name -> canonical asset_type, added to the "
                                        "default table (shown); a type not listed takes its nearest listed "
                                        "ancestor's, else other."),
            "state_map": _name_map(STATE_MAP, list(STATUSES),
                                   "asset_state value -> canonical status, added to the default table "
                                   "(shown); anything else is unknown and counted on the run."),
            "resolve_owner_emails": {"type": "boolean", "default": True,
                                     "description": "Read the requester and agent lists once per run to turn "
                                     "user_id into an e-mail address (one request per 100 users)."},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 0.5,
                                      "description": "Client-side pace; 0.5/s stays under every plan's "
                                      "List All Assets limit (40/min on Starter)."},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext, *, pace_sleep=time.sleep):
        super().__init__(context)
        self.client = freshservice_client(context, self.config)
        self._pace_sleep = pace_sleep
        self.lookups: Lookups | None = None

    def close(self) -> None:
        self.client.close()

    # --- requests --------------------------------------------------------------------------------

    def _get(self, path: str, params: dict, key: str) -> tuple[list, httpx.Response]:
        if self.config["workspace_id"] is not None:
            params = {**params, "workspace_id": str(self.config["workspace_id"])}
        response = self.client.get(path, params=params)
        body = self.client.json(response)
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise PermanentError(f"GET {path} answered without a {key} list")
        self._pace(response)
        return items, response

    def _pace(self, response: httpx.Response) -> None:
        pace(response, self._pace_sleep)

    def _list_all(self, path: str, key: str, params: dict | None = None) -> Iterator[list]:
        """Every page of a list endpoint, following rel="next" while the Link header is there."""
        def read(page: int) -> tuple[list, httpx.Response]:
            return self._get(path, {**(params or {}), "page": str(page), "per_page": str(MAX_PAGE_SIZE)}, key)

        for items, _ in LinkedPages().pages(read):
            yield items

    def load_lookups(self) -> Lookups:
        lists = {}
        for key in REFERENCE_LISTS:
            if key in ("requesters", "agents") and not self.config["resolve_owner_emails"]:
                continue
            lists[key] = [item for items in self._list_all(f"/api/v2/{key}", key) for item in items]
        self.lookups = build_lookups(lists, self.config["asset_type_map"], self.config["state_map"])
        return self.lookups

    # --- the contract ----------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        items, response = self._get(ASSETS, {"page": "1", "per_page": "1"}, "assets")
        remaining = response.headers.get("X-Ratelimit-Remaining")
        total = response.headers.get("X-Ratelimit-Total")
        return ConnectionResult(
            ok=True,
            message="Connected to Freshservice: assets are readable"
            + (f"; {remaining} of {total} API credits left this minute." if remaining and total else "."),
            details={"rate_limit_total": total, "rate_limit_remaining": remaining, "sample": len(items)},
        )

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        self.load_lookups()
        resume = resume or {}
        # A resumed incremental pass starts its filter again from page 1 (the filter's order is not a change
        # order, and at most 1,200 records are re-read); a resumed full list continues at its page, and any
        # record that page drift skipped is looked up by id before it is marked deleted.
        since = resume.get("since", cursor) if mode == "incremental" else None
        if since and resume.get("list") is None:
            completed = yield from self._fetch_changed(since)
            if completed:
                return
        yield from self._fetch_list(int(resume.get("list") or 1), resume.get("greatest") or since)

    def _fetch_changed(self, since: str) -> Iterator[Page]:
        """Assets updated since the cursor, via the filter (30/page, 40 pages at most, no Link header).
        Returns False when the filter's ceiling was reached and the full list must be read instead."""
        since_at = parse_time(since, "cursor")
        if since_at is None:
            return False
        day = (since_at - timedelta(days=1)).strftime("%Y-%m-%d")
        query = f"\"updated_at:>'{day}'\""
        greatest, seen = since, set()
        # A short page is the last; a full 40th page is the filter's ceiling, whatever follows.
        pages = PageNumberPaginator(vendor=VENDOR, page_size=FILTER_PAGE_SIZE)

        def read(page: int) -> list:
            return self._get(ASSETS, {"filter": query, "include": "type_fields", "page": str(page)}, "assets")[0]

        for items in pages.pages(read):
            records = []
            for raw in items:
                updated = _updated(raw)
                if updated is not None and updated < since_at:
                    continue  # day granularity: the filter returns a little more than what changed
                key = raw.get("id", raw.get("display_id")) if isinstance(raw, dict) else None
                if key is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                records.append(raw)
                greatest = _greater(greatest, raw)
            full = not pages.finished
            if full and pages.current > FILTER_MAX_PAGES:
                # The ceiling: there may be more changes than the filter can show. Read the full list.
                yield Page(records=records, resume={"since": since, "list": 1, "greatest": greatest},
                           cursor=None)
                return False
            yield Page(records=records, resume={"since": since} if full else None,
                       cursor=None if full else greatest)
        return True

    def _fetch_list(self, page: int, greatest: str | None) -> Iterator[Page]:
        per_page = self.config["page_size"]
        pages = LinkedPages(page)

        def read(number: int) -> tuple[list, httpx.Response]:
            return self._get(ASSETS, {"include": "type_fields", "page": str(number), "per_page": str(per_page)},
                             "assets")

        for records, _ in pages.pages(read):
            for raw in records:
                greatest = _greater(greatest, raw)
            resume = None if pages.finished else {"list": pages.current, "greatest": greatest}
            yield Page(records=records, resume=resume, cursor=greatest)

    def still_present(self, external_ids: list[str]) -> set[str]:
        """One GET per display_id (1 credit without include): only for a handful of candidates, which is what
        page drift produces. A larger number is a real deletion and is taken as it is."""
        if len(external_ids) > LOOKUP_MAX:
            return set()
        present = set()
        for external_id in external_ids:
            if not external_id.isdigit():
                continue
            response = self.client.get(f"{ASSETS}/{external_id}", expected=(200, 404))
            self._pace(response)
            if response.status_code == 200:
                body = self.client.json(response)
                if isinstance(body, dict) and isinstance(body.get("asset"), dict):
                    present.add(external_id)
        return present

    def map_record(self, raw: dict) -> MappedRecord:
        return map_asset(raw, self.lookups if self.lookups is not None else self.load_lookups())

    def external_id(self, raw: Any) -> str:
        value = raw.get("display_id") if isinstance(raw, dict) else None
        return str(value) if _id(value) is not None else ""


def _updated(raw: Any) -> datetime | None:
    try:
        return parse_time(raw.get("updated_at"), "updated_at") if isinstance(raw, dict) else None
    except RecordError:
        return None  # the mapping reports it, with the record


def _greater(greatest: str | None, raw: Any) -> str | None:
    updated = _updated(raw)
    if updated is None:
        return greatest
    current = parse_time(greatest, "cursor") if greatest else None
    return raw["updated_at"] if current is None or updated > current else greatest
