"""Jira Assets (formerly Insight), Cloud and Data Center (see shared/api-notes/jira-assets.md).

Hosts: on Cloud the site (`https://<site>.atlassian.net`, the integration's base URL) only answers workspace
discovery, `GET /rest/servicedeskapi/assets/workspace`; the data lives on the Assets API,
`https://api.atlassian.com/jsm/assets/workspace/{workspaceId}/v1`. A site has one workspace for good: it is asked
once per connector and can be pinned in the config. On Data Center the Assets API is `<jira>/rest/assets/1.0`.
Auth: Cloud, Basic with the Atlassian account e-mail and an API token (auth type basic, username = e-mail,
password = token); Data Center, Basic or a personal access token (auth type bearer).
Paging: Cloud `POST /object/aql?startAt&maxResults`, body `{"qlQuery"}`; the next start is the previous one plus
the objects actually returned; stop on `isLast` or an empty page, never on a short page. maxResults stays below
1000 (a historical bug said isLast at 1000). Data Center `GET /aql/objects?page` (1-based) while
`pageNumber < pageSize` (pageSize is the number of pages).
Streams: the configured object types (`objectType in (...)`), with the extra AQL AND-ed, ordered by Updated.
Attributes come by `objectTypeAttributeId` only; their names come from the page's `objectTypeAttributes` or from
`GET /objecttype/{id}/attributes` (ids differ per type, so names are resolved per type and cached per run) and
are written into each attribute as `objectTypeAttribute`, so the stored raw payload explains itself and the
mapping stays a pure function of it.
Incremental: `Updated > "yyyy-MM-dd HH:mm"` from the greatest `updated` seen, minus a few minutes (the AQL date
has minutes only and its zone is the user's), then re-filtered on each object's exact `updated`. A crashed run
resumes the same way from its last committed change marker. Deletions are invisible to AQL: full runs find them,
and the engine confirms candidates with `objectId in (...)` lookups.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncplane.core.normalize import normalize_mac
from syncplane.integrations.base import (
    RATE_MAX,
    RATE_MIN,
    ConnectionResult,
    Connector,
    ConnectorContext,
    MappedRecord,
    Page,
    build_auth,
)
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.errors import ConfigurationError, PermanentError, RecordError
from syncplane.integrations.http import HttpClient
from syncplane.integrations.paging import OffsetPaginator
from syncplane.integrations.records import AssetAttributes, AssetStatus, AssetType
from syncplane.integrations.registry import register

CLOUD_API = "https://api.atlassian.com"
CLOUD_PATH = "/jsm/assets/workspace/{workspaceId}/v1"
DATA_CENTER_PATH = "/rest/assets/1.0"  # older releases: /rest/insight/1.0 (set assets_api_base)
WORKSPACE_PATH = "/rest/servicedeskapi/assets/workspace"
ORDER = " order by Updated asc"
LOOKUP_BATCH = 100  # object ids per `objectId in (...)` lookup
AQL_DATE = "%Y-%m-%d %H:%M"

# Jira attribute name -> canonical field (runbook: docs/runbooks/jira-assets.md). When several attributes map to
# one field, the first one with a value wins.
DEFAULT_ATTRIBUTE_MAP = {
    "Name": "name",
    "Status": "status",
    "Serial Number": "serial_number",
    "Asset Tag": "asset_tag",
    "Manufacturer": "manufacturer",
    "Model": "model",
    "Hostname": "hostname",
    "FQDN": "fqdn",
    "IP Address": "ip_address",
    "MAC Address": "mac_address",
    "Operating System": "operating_system",
    "OS Version": "os_version",
    "Owner Email": "owner_email",
    "Owner": "owner_email",
    "Location": "location",
    "Department": "department",
    "Last Seen": "last_seen_at",
}
# Status name (case-insensitive) -> canonical status; anything else is "unknown".
DEFAULT_STATUS_MAP = {
    "In Use": "active", "Running": "active", "Active": "active", "Deployed": "active",
    "In Stock": "in_stock", "Available": "in_stock", "Spare": "in_stock", "Ordered": "in_stock",
    "In Repair": "in_maintenance", "Maintenance": "in_maintenance", "In Maintenance": "in_maintenance",
    "Retired": "retired", "Decommissioned": "retired",
    "Disposed": "disposed", "Sold": "disposed", "Donated": "disposed", "Scrapped": "disposed",
    "Lost": "unknown", "Stolen": "unknown", "Missing": "unknown",
}
# Object type name (case-insensitive) -> canonical asset type; anything else is "other".
DEFAULT_TYPE_MAP = {
    "Laptop": "laptop", "Notebook": "laptop",
    "Desktop": "desktop", "Workstation": "desktop",
    "Server": "server", "Host": "server",
    "Virtual Machine": "virtual_machine", "VM": "virtual_machine",
    "Mobile Phone": "mobile", "Phone": "mobile",
    "Tablet": "tablet",
    "Printer": "printer",
    "Network Device": "network_device", "Switch": "network_device", "Router": "network_device",
    "Firewall": "network_device", "Access Point": "network_device",
}
MAPPABLE_FIELDS = (
    "name", "status", "serial_number", "asset_tag", "manufacturer", "model", "hostname", "fqdn", "ip_address",
    "mac_address", "operating_system", "os_version", "owner_email", "location", "department", "last_seen_at",
)
ASSET_TYPES = tuple(AssetType.values)
STATUSES = tuple(AssetStatus.values)
STATUS_TYPE, REFERENCE_TYPE, USER_TYPE, GROUP_TYPE = 7, 1, 2, 4


# ---------------------------------------------------------------------------------------------- mapping


def parse_instant(text: Any, what: str) -> datetime | None:
    """An ISO-8601 instant or date (`2024-05-19T22:10:05.000Z`, `2023-11-02`) as aware UTC; "" is None."""
    if text in (None, ""):
        return None
    if not isinstance(text, str):
        raise RecordError(f"{what} is not a string: {type(text).__name__}")
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RecordError(f"{what} is not an ISO-8601 date: {text[:40]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def object_updated(raw: dict) -> datetime | None:
    """When the object last changed: ISO `updated` on Cloud; on Data Center `updated` is a locale string
    ("9/Dec/15") and the instant is `timestamp` (epoch ms)."""
    timestamp = raw.get("timestamp")
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return datetime.fromtimestamp(timestamp / 1000, UTC)
    return parse_instant(raw.get("updated"), "updated")


def attribute_names(definitions: Any) -> dict[str, dict]:
    """objectTypeAttributes (of a search page or GET /objecttype/{id}/attributes) -> id -> {id, name, type}."""
    names = {}
    for definition in definitions if isinstance(definitions, list) else ():
        if isinstance(definition, dict) and definition.get("id") is not None and definition.get("name"):
            names[str(definition["id"])] = {"id": str(definition["id"]), "name": definition["name"],
                                            "type": definition.get("type")}
    return names


def attribute_value(values: list, kind: Any) -> str:
    """The first usable value of an attribute, as text: the status name, the referenced object's label, the
    user's e-mail (Data Center has it; Cloud gives only an accountId, which is no e-mail), the group name, or
    the raw `value` (never the localised displayValue, except as the last resort of references)."""
    for item in values:
        if not isinstance(item, dict):
            raise RecordError("an attribute value is not an object")
        if isinstance(item.get("status"), dict):
            text = item["status"].get("name")
        elif isinstance(item.get("referencedObject"), dict):
            text = item["referencedObject"].get("label") or item.get("displayValue")
        elif isinstance(item.get("user"), dict) or kind == USER_TYPE:
            user = item.get("user") if isinstance(item.get("user"), dict) else {}
            text = user.get("emailAddress") or ""
            if not text and isinstance(item.get("value"), str) and "@" in item["value"]:
                text = item["value"]
        elif isinstance(item.get("group"), dict):
            text = item["group"].get("name")
        else:
            text = item.get("value")
            if text is None and kind in (STATUS_TYPE, REFERENCE_TYPE):
                text = item.get("displayValue")
        if isinstance(text, bool):
            text = "true" if text else "false"
        elif isinstance(text, int | float):
            text = str(text)
        elif text is not None and not isinstance(text, str):
            raise RecordError(f"an attribute value is a {type(text).__name__}, not text")
        if text and text.strip():
            return text.strip()
    return ""


@dataclass(frozen=True)
class ObjectMaps:
    """The configured maps over the defaults, merged once per connector rather than once per object."""

    attributes: dict[str, str]
    statuses: dict[str, str]  # folded names
    types: dict[str, str]  # folded names

    @classmethod
    def of(cls, attribute_map: dict[str, str] | None = None, status_map: dict[str, str] | None = None,
           type_map: dict[str, str] | None = None) -> ObjectMaps:
        # A configured entry wins, and comes first among the attributes.
        attributes = {**(attribute_map or {}),
                      **{k: v for k, v in DEFAULT_ATTRIBUTE_MAP.items() if k not in (attribute_map or {})}}
        return cls(attributes, _folded({**DEFAULT_STATUS_MAP, **(status_map or {})}),
                   _folded({**DEFAULT_TYPE_MAP, **(type_map or {})}))


def map_object(
    raw: Any,
    *,
    names: dict[str, dict] | None = None,
    attribute_map: dict[str, str] | None = None,
    status_map: dict[str, str] | None = None,
    type_map: dict[str, str] | None = None,
    maps: ObjectMaps | None = None,
) -> MappedRecord:
    """An Assets object (AQL search or single read, Cloud or Data Center) -> canonical asset attributes.

    Attribute names come from `objectTypeAttribute` embedded in each attribute, else from `names` (the page's
    objectTypeAttributes by id). The maps extend the defaults (`maps`: already merged). Pure: no I/O.
    """
    if not isinstance(raw, dict):
        raise RecordError("record is not an object")
    object_id = raw.get("id")
    if object_id in (None, "") or isinstance(object_id, bool) or not str(object_id).strip().isdigit():
        raise RecordError("record has no numeric id")
    object_type = raw.get("objectType")
    if not isinstance(object_type, dict) or not isinstance(object_type.get("name"), str):
        raise RecordError("record has no objectType name")
    object_updated(raw)  # a record whose change marker cannot be read would break the incremental cursor
    attributes = raw.get("attributes", [])
    if not isinstance(attributes, list):
        raise RecordError("attributes is not a list")
    maps = maps or ObjectMaps.of(attribute_map, status_map, type_map)
    attribute_map, status_map, type_map = maps.attributes, maps.statuses, maps.types
    names = names or {}

    by_name: dict[str, tuple[list, Any]] = {}
    for attribute in attributes:
        if not isinstance(attribute, dict):
            raise RecordError("an attribute is not an object")
        definition = attribute.get("objectTypeAttribute")
        if not isinstance(definition, dict):
            definition = names.get(str(attribute.get("objectTypeAttributeId")), {})
        name = definition.get("name")
        values = attribute.get("objectAttributeValues", [])
        if values is None:
            values = []
        if not isinstance(values, list):
            raise RecordError(f"objectAttributeValues of {name or attribute.get('objectTypeAttributeId')} "
                              "is not a list")
        if name:
            by_name.setdefault(name, (values, definition.get("type")))

    found: dict[str, str] = {}
    for name, field in attribute_map.items():
        if name in by_name and not found.get(field):
            values, kind = by_name[name]
            found[field] = attribute_value(values, kind)

    last_seen = parse_instant(found.get("last_seen_at"), "Last Seen") if found.get("last_seen_at") else None
    status_name = found.get("status", "")
    attributes_out: AssetAttributes = {
        "name": found.get("name") or str(raw.get("label") or "").strip(),
        "asset_type": type_map.get(object_type["name"].strip().casefold(), "other"),
        "status": status_map.get(status_name.casefold(), "unknown") if status_name else "unknown",
        "serial_number": found.get("serial_number", ""),
        "asset_tag": found.get("asset_tag", ""),
        "manufacturer": found.get("manufacturer", ""),
        "model": found.get("model", ""),
        "hostname": found.get("hostname", ""),
        "fqdn": found.get("fqdn", "").lower(),
        "ip_address": found.get("ip_address", ""),
        "mac_address": normalize_mac(found.get("mac_address", "")),
        "operating_system": found.get("operating_system", ""),
        "os_version": found.get("os_version", ""),
        "owner_email": found.get("owner_email", "").lower() if "@" in found.get("owner_email", "") else "",
        "location": found.get("location", ""),
        "department": found.get("department", ""),
        "last_seen_at": last_seen.isoformat() if last_seen else None,
    }
    unmapped = {"status": status_name} if status_name and status_name.casefold() not in status_map else {}
    return MappedRecord(external_id=str(object_id).strip(), attributes=attributes_out, raw=raw, unmapped=unmapped)


def _folded(table: dict[str, str]) -> dict[str, str]:
    return {key.strip().casefold(): value for key, value in table.items()}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_map_schema(targets: tuple[str, ...], default: dict, description: str) -> dict:
    return {
        "type": "object",
        "propertyNames": {"minLength": 1, "maxLength": 200},
        "additionalProperties": {"type": "string", "enum": list(targets)},
        "maxProperties": 200,
        "default": default,
        "description": description,
    }


# ---------------------------------------------------------------------------------------------- connector


class AqlPaginator(OffsetPaginator):
    """startAt of an AQL search: where `_search` says the next page starts, until it says isLast. A page is
    what `_search` answers."""

    def __init__(self, page_size: int):
        super().__init__(page_size, vendor="Jira Assets")

    def next_token(self, page: dict) -> int | None:
        return None if page["isLast"] else page["next"]


@register
class JiraAssetsConnector(Connector):
    system_type = SystemType.JIRA_ASSETS
    category = Category.CMDB
    display_name = "Jira Assets"
    base_url_help = (
        "The Jira site (Cloud: https://<site>.atlassian.net) or Jira Data Center's own URL, without "
        "/rest/...: the connector finds the Assets API from it (or from config assets_api_base)."
    )
    base_url_example = "https://acme-it.atlassian.net"
    owned_path_suffixes = ("/rest", "/jsm/assets")
    record_kind = RecordKind.ASSET
    url_config_fields = ("assets_api_base",)  # the Assets API host gets the same credentials as the site
    auth_types = (AuthType.BASIC, AuthType.BEARER)
    capabilities = frozenset({
        Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL, Capability.DRY_RUN, Capability.LOOKUP,
    })
    config_schema = {
        "type": "object",
        "properties": {
            "deployment": {
                "type": "string",
                "enum": ["cloud", "data_center"],
                "default": "cloud",
                "description": "Cloud: base URL is the site (https://<site>.atlassian.net). Data Center: base URL "
                "is Jira's own URL.",
            },
            "assets_api_base": {
                "type": "string",
                "pattern": "^(https?://[^\\s]+)?$",  # empty: the default, derived from the base URL
                "maxLength": 500,
                "default": "",
                "description": "Cloud: the Assets API host (default https://api.atlassian.com); "
                "/jsm/assets/workspace/{workspaceId}/v1 is appended unless the value contains {workspaceId}. "
                "Data Center: the Assets REST base (default <base URL>/rest/assets/1.0; older: /rest/insight/1.0).",
            },
            "workspace_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9-]{0,64}$",
                "default": "",
                "description": "Cloud workspace id; found from the site when empty.",
            },
            "object_types": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": '^[^"\\\\\\n\\r]+$'},
                "minItems": 1,
                "maxItems": 50,
                "uniqueItems": True,
                "description": "Object type names to read, e.g. [\"Laptop\", \"Server\"] (AQL is case-sensitive).",
            },
            "aql": {
                "type": "string",
                "maxLength": 2000,
                "pattern": "^[^\\n\\r]*$",
                "default": "",
                "description": "Extra AQL AND-ed to every search, e.g. objectSchemaId = 3. No 'order by'.",
            },
            "page_size": {"type": "integer", "minimum": 1, "maximum": 999, "default": 250},
            "attribute_map": _name_map_schema(MAPPABLE_FIELDS, DEFAULT_ATTRIBUTE_MAP,
                                              "Jira attribute name -> canonical field, added to the default "
                                              "(shown); a configured attribute is read first."),
            "status_map": _name_map_schema(STATUSES, DEFAULT_STATUS_MAP,
                                           "Status name (case-insensitive) -> canonical status, added to the "
                                           "default (shown); another status is unknown and counted on the run."),
            "type_map": _name_map_schema(ASSET_TYPES, DEFAULT_TYPE_MAP,
                                         "Object type name (case-insensitive) -> canonical asset type, added to "
                                         "the default (shown)."),
            "aql_time_zone": {
                "type": "string",
                "maxLength": 64,
                "default": "UTC",
                "description": "Time zone AQL dates are read in (the integration user's Jira time zone).",
            },
            "cursor_overlap_minutes": {"type": "integer", "minimum": 0, "maximum": 1440, "default": 5},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 10},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "required": ["object_types"],
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        try:
            self.zone = ZoneInfo(self.config["aql_time_zone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"aql_time_zone: unknown time zone {self.config['aql_time_zone']!r}") from None
        self.cloud = self.config["deployment"] == "cloud"
        self.maps = ObjectMaps.of(self.config["attribute_map"], self.config["status_map"], self.config["type_map"])
        self.site_url = context.base_url.rstrip("/")
        self._auth = build_auth(context)
        self._secrets = context.secret_values()
        self._site: HttpClient | None = None
        self._assets: HttpClient | None = None
        self.workspace_id: str = self.config["workspace_id"]
        self._names: dict[str, dict] = {}  # attribute id -> {id, name, type}, for this connector's run
        self._types_asked: set[str] = set()

    # --- plumbing ---------------------------------------------------------------------------------

    def _client(self, base: str) -> HttpClient:
        return HttpClient(
            base,
            auth=self._auth,
            headers={"Content-Type": "application/json"},
            timeout=self.config["timeout_seconds"],
            rate_limit_per_second=self.config["rate_limit_per_second"],
            secrets=self._secrets,
        )

    def close(self) -> None:
        for client in (self._site, self._assets):
            if client is not None:
                client.close()

    def discover_workspace(self) -> str:
        """The site's one Assets workspace id (asked once; the id never changes)."""
        if self.workspace_id:
            return self.workspace_id
        if self._site is None:
            self._site = self._client(self.site_url)
        body = self._site.json(self._site.get(WORKSPACE_PATH, params={"start": 0, "limit": 50}))
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list):
            raise PermanentError(f"GET {WORKSPACE_PATH} answered without a values list")
        ids = [v.get("workspaceId") for v in values if isinstance(v, dict) and v.get("workspaceId")]
        if not ids:
            raise PermanentError("this site has no Assets workspace: Assets needs Jira Service Management Premium "
                                 "or Enterprise, and the user must be allowed to see it")
        self.workspace_id = str(ids[0])
        return self.workspace_id

    @property
    def assets(self) -> HttpClient:
        if self._assets is None:
            configured = self.config["assets_api_base"].rstrip("/")
            if self.cloud:
                workspace = self.discover_workspace()
                base = configured or CLOUD_API
                base = base.replace("{workspaceId}", workspace) if "{workspaceId}" in base \
                    else base + CLOUD_PATH.format(workspaceId=workspace)
            else:
                base = configured or self.site_url + DATA_CENTER_PATH
            self._assets = self._client(base)
        return self._assets

    # --- AQL ----------------------------------------------------------------------------------------

    def aql(self, since: datetime | None = None) -> str:
        types = ", ".join(_quote(name) for name in self.config["object_types"])
        parts = [f"objectType in ({types})"]
        if self.config["aql"].strip():
            parts.append(f"({self.config['aql'].strip()})")
        if since is not None:
            # AQL dates have minutes only and are read in the user's zone: start a little earlier and
            # drop what is older than the marker afterwards.
            start = (since - timedelta(minutes=self.config["cursor_overlap_minutes"])).astimezone(self.zone)
            parts.append(f'Updated > "{start.replace(second=0, microsecond=0).strftime(AQL_DATE)}"')
        return " AND ".join(parts) + ORDER

    def _search(self, query: str, start: int, limit: int, *, attributes: bool = True) -> dict:
        """One page of an AQL search, as {"values", "objectTypeAttributes", "isLast", "total", "next"}."""
        if self.cloud:
            params = {"startAt": start, "maxResults": limit, "includeAttributes": str(attributes).lower()}
            # Read-only despite the POST: safe to repeat on any transient failure.
            response = self.assets.post("/object/aql", params=params, json={"qlQuery": query}, idempotent=True)
            body = self.assets.json(response)
            values = body.get("values") if isinstance(body, dict) else None
            if not isinstance(values, list):
                raise PermanentError("POST /object/aql answered without a values list")
            is_last = body.get("isLast", body.get("last")) is True or not values
            total = body.get("total")
            return {"values": values, "objectTypeAttributes": body.get("objectTypeAttributes"),
                    "isLast": is_last, "total": total if isinstance(total, int) else None,
                    "next": start + len(values)}
        page = start // limit + 1  # 1-based pages of `limit` objects
        params = {"qlQuery": query, "page": page, "resultPerPage": limit,
                  "includeAttributes": str(attributes).lower()}
        body = self.assets.json(self.assets.get("/aql/objects", params=params))
        values = body.get("objectEntries") if isinstance(body, dict) else None
        if not isinstance(values, list):
            raise PermanentError("GET /aql/objects answered without objectEntries")
        pages, number = body.get("pageSize"), body.get("pageNumber", page)
        is_last = not values or not isinstance(pages, int) or not isinstance(number, int) or number >= pages
        total = body.get("totalFilterCount")
        return {"values": values, "objectTypeAttributes": body.get("objectTypeAttributes"), "isLast": is_last,
                "total": total if isinstance(total, int) else None, "next": page * limit}

    def _pages(self, query: str, limit: int, *, attributes: bool = True) -> Iterator[dict]:
        """Every page of an AQL search, `limit` objects each."""
        return AqlPaginator(limit).pages(lambda start: self._search(query, start, limit, attributes=attributes))

    def _name_attributes(self, page: dict) -> None:
        """Write each attribute's name into it (objectTypeAttribute), asking for a type's attributes once."""
        self._names.update(attribute_names(page["objectTypeAttributes"]))
        for raw in page["values"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("attributes"), list):
                continue
            type_id = str((raw.get("objectType") or {}).get("id", "")) if isinstance(raw.get("objectType"),
                                                                                   dict) else ""
            for attribute in raw["attributes"]:
                if not isinstance(attribute, dict) or isinstance(attribute.get("objectTypeAttribute"), dict):
                    continue
                attr_id = str(attribute.get("objectTypeAttributeId"))
                if attr_id not in self._names and type_id.isdigit() and type_id not in self._types_asked:
                    self._types_asked.add(type_id)
                    self._names.update(attribute_names(self.assets.get_json(f"/objecttype/{type_id}/attributes")))
                if attr_id in self._names:
                    attribute["objectTypeAttribute"] = self._names[attr_id]

    # --- the contract ---------------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        page = self._search(self.aql(), 0, 1, attributes=False)
        where = f"workspace {self.workspace_id}" if self.cloud else "Jira Assets (Data Center)"
        total = page["total"]
        return ConnectionResult(
            ok=True,
            message=f"Connected to {where}" + (f": {total} objects of the configured types." if total is not None
                                                 else "."),
            details={"workspace_id": self.workspace_id or None, "total": total,
                     "object_types": self.config["object_types"]},
        )

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        # Resumes from the last committed change marker, not from startAt: offsets shift when objects change
        # or vanish between the crash and the resume, change markers do not.
        marker = resume.get("since") if resume else (cursor if mode == "incremental" else None)
        since = parse_instant(marker, "cursor") if marker else None
        query, limit = self.aql(since), self.config["page_size"]
        greatest = since
        for page in self._pages(query, limit):
            self._name_attributes(page)
            records = []
            for raw in page["values"]:
                try:
                    updated = object_updated(raw) if isinstance(raw, dict) else None
                except RecordError:
                    updated = None  # map_record reports it
                if since is not None and updated is not None and updated < since:
                    continue  # inside the overlap window, older than what was committed
                if updated is not None and (greatest is None or updated > greatest):
                    greatest = updated
                records.append(raw)
            marker = greatest.isoformat(timespec="milliseconds") if greatest else None
            yield Page(records=records, resume=None if page["isLast"] else {"since": marker}, cursor=marker,
                       total=page["total"])

    def still_present(self, external_ids: list[str]) -> set[str]:
        present: set[str] = set()
        ids = [i for i in external_ids if i.isdigit()]
        for offset in range(0, len(ids), LOOKUP_BATCH):
            batch = ids[offset : offset + LOOKUP_BATCH]
            for page in self._pages(f"objectId in ({', '.join(batch)})", len(batch), attributes=False):
                present.update(str(raw.get("id")) for raw in page["values"] if isinstance(raw, dict))
        return present

    def map_record(self, raw: dict) -> MappedRecord:
        return map_object(raw, names=self._names, maps=self.maps)

    def external_id(self, raw: Any) -> str:
        object_id = raw.get("id") if isinstance(raw, dict) else None
        return str(object_id)[:255] if object_id not in (None, "") and not isinstance(object_id, dict) else ""
