"""Microsoft Defender for Endpoint: machines and their software vulnerabilities (see
shared/api-notes/defender-endpoint.md).

Auth: OAuth 2.0 client credentials of an Entra app registration with the application permissions
Machine.Read.All and Vulnerability.Read.All of the "WindowsDefenderATP" API (auth type
oauth2_client_credentials), through the project's OAuth2Auth: a cached token, one refresh and one retry on a
401. Two token endpoints, chosen by `token_endpoint`: "v2" (`{authority}/{tenant}/oauth2/v2.0/token` with
`scope={resource}/.default`, the default) or "v1" (`{authority}/{tenant}/oauth2/token` with
`resource={resource}`, as Microsoft's samples do; it sends `expires_in` as a string, which OAuth2Auth reads).
The resource is `https://api.securitycenter.microsoft.com` (the audience of Microsoft's samples) unless set;
`authority_url` is a URL config field, checked by the outbound URL policy like base_url. Token errors become
AuthenticationError with the AADSTS code, never the secret; a 403 of the API (a permission not granted or not
consented) too: the run fails at once, nothing written, no retry.

Paging: collections are OData, `{"value": [...], "@odata.nextLink": ...}`, followed verbatim (the export's
link carries a `$skiptoken` and may name another path: never rebuilt). `/api/machines` is asked with `$top`
(<= 10,000); the docs do not show its nextLink, so a full page without one is continued with `$skip`
(`ODataPaginator`). `/api/machines` answers 404 (not an empty list) when the tenant has no recent machines:
an empty fleet. The client paces itself (`rate_limit_per_second`, default 0.5 = the exports' 30 calls a
minute) and HttpClient honours 429 Retry-After.

A full pass, in three phases:
1. identities: `/api/machines` read once into {machine id: (host, fqdn, aadDeviceId)} (no records yet), so
   that each finding names its machine's Entra device id, which the export rows do not carry;
2. vulnerabilities: the JSON export `/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=` (default, as
   the note recommends: package, version, severity, CVSS and exploitability in one pass) or, with
   `vulnerability_source: machines_vulnerabilities`, `/api/vulnerabilities/machinesVulnerabilities` (no CVSS).
   Each row with a CVE is a finding; rows without one are software inventory and are skipped. The pass counts
   each machine's open critical and high findings;
3. machines: `/api/machines` again, each machine a SecurityMachine record carrying its compliance score
   (below), followed by a complete ScanSummary for each onboarded, not inactive machine: the export is a
   snapshot, so a finding it no longer lists is fixed. A machine with a row that could not be used gets
   `complete: False` (fixes nothing). Vulnerabilities are read before machines so that the machine records
   can carry the score; a pass that fails before phase 3 sends no summary.
Resume tokens carry the phase, the link and the counts (only the machines with critical or high findings).

Incremental runs (export source): `/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={cursor}`:
New and Updated rows are open findings. Fixed rows are skipped: the finding record has no state to carry a
fix, and a scan summary would fix everything the run did not read, so the next full pass (the schedule runs one
every SYNCPLANE_FULL_SYNC_HOURS) fixes them. The answer covers the whole 6-hour bucket holding sinceTime, so
rows repeat across runs: harmless, a finding is upserted by its key, and within a page the last event of a key
wins (a Fixed after a New drops both). No machine records and no summaries. The cursor is the greatest
`eventTimestamp` read (a full pass sets it to the time its export began). Without a cursor, or with the
machines_vulnerabilities source (it has no change feed), an incremental run reads the whole snapshot as a full
pass does.

Finding key (MappedRecord.external_id): `asset:{machine id}|{CVE}|{software}|{version}`: the Defender machine
id is the target's ref (only Defender reports on it), and the version is part of it because two installed
versions can carry the same CVE.

Compliance score (0-100) of an onboarded machine: 100 - EXPOSURE_PENALTY[exposure] - 20 per open critical -
5 per open high, clamped to 0-100; None for a machine without telemetry. compliance_state is not set: Defender
has no compliance verdict.

Mapping: see map_machine, map_export_row, map_machine_vulnerability (and the tables below).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from syncplane.core.normalize import normalize_mac
from syncplane.integrations.auth import OAuth2Auth
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
from syncplane.integrations.errors import ConfigurationError, PermanentError, RecordError
from syncplane.integrations.http import HttpClient
from syncplane.integrations.paging import NextLinkPaginator
from syncplane.integrations.records import (
    AssetAttributes,
    FindingRecord,
    FindingTarget,
    ScanSummary,
    SecurityMachine,
)
from syncplane.integrations.registry import register

API_BASE = "https://api.security.microsoft.com"
AUTHORITY_BASE = "https://login.microsoftonline.com"
RESOURCE = "https://api.securitycenter.microsoft.com"
TOOL = SystemType.DEFENDER_ENDPOINT
MACHINES = "/api/machines"
EXPORT = "/api/machines/SoftwareVulnerabilitiesByMachine"
CHANGES = "/api/machines/SoftwareVulnerabilityChangesByMachine"
MACHINES_VULNERABILITIES = "/api/vulnerabilities/machinesVulnerabilities"
# Which stream a raw record came from: fetch tags each one, map_record dispatches on it.
STREAM = "@syncplane.stream"
OPEN_COUNTS = "@syncplane.openFindings"  # {"critical": n, "high": n} the pass counted for a machine

SEVERITY = {"critical": "critical", "high": "high", "medium": "medium", "low": "low"}
EXPOSURE = {"none": "none", "low": "low", "medium": "medium", "high": "high"}
EXPOSURE_PENALTY = {"none": 0, "low": 10, "medium": 25, "high": 40, "": 0}
CRITICAL_PENALTY, HIGH_PENALTY = 20, 5
RISK = {"none": "none", "informational": "informational", "low": "low", "medium": "medium", "high": "high"}
HEALTH = {"active": "active", "inactive": "inactive", "impairedcommunication": "impaired_communication",
          "nosensordata": "no_sensor_data",
          "nosensordataimpairedcommunication": "no_sensor_data_impaired_communication", "unknown": "unknown"}
ONBOARDING = {"onboarded": "onboarded", "canbeonboarded": "can_be_onboarded", "unsupported": "unsupported",
              "insufficientinfo": "insufficient_info"}
# healthStatus -> asset status: an inactive sensor is a machine not seen for days, not proof it is retired.
STATUS = {"active": "active", "inactive": "unknown", "impaired_communication": "active",
          "no_sensor_data": "active", "no_sensor_data_impaired_communication": "active", "unknown": "unknown"}
# osPlatform (lower-cased, prefix) -> (operating system, asset type). Defender does not know the form factor:
# clients are laptops, as for Entra ID.
PLATFORMS = (
    ("windowsserver", "Windows Server", "server"), ("windows", "Windows", "laptop"), ("macos", "macOS", "laptop"),
    ("linux", "Linux", "other"), ("ios", "iOS", "mobile"), ("ipados", "iPadOS", "tablet"),
    ("android", "Android", "mobile"),
)


class ODataPaginator(NextLinkPaginator):
    """`@odata.nextLink` verbatim; a full page without one goes on with `$skip` (the machines API's link is
    not documented, so both forms are read)."""

    def __init__(self, path: str, top: int, *, vendor: str, start: str | None = None):
        super().__init__(start or f"{path}?{urlencode({'$top': top})}", vendor=vendor, key="@odata.nextLink")
        # Rows before `start` (a resumed pass): the $skip it carries.
        skip = parse_qs(urlsplit(self.current).query).get("$skip", ["0"])[0]
        self.path, self.top, self.read = path, top, int(skip) if skip.isdigit() else 0

    def next_token(self, page: dict) -> str | None:
        self.read += len(page["value"])
        link = super().next_token(page)
        if link or len(page["value"]) < self.top:
            return link
        return f"{self.path}?{urlencode({'$top': self.top, '$skip': self.read})}"


@register
class DefenderEndpointConnector(Connector):
    system_type = SystemType.DEFENDER_ENDPOINT
    category = Category.SECURITY
    display_name = "Microsoft Defender for Endpoint"
    record_kind = RecordKind.FINDING
    auth_types = (AuthType.OAUTH2_CLIENT_CREDENTIALS,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL,
                              Capability.DRY_RUN})
    url_config_fields = ("authority_url",)  # the client secret goes to the authority's token endpoint
    base_url_help = ("The Defender API host without a path: the connector adds /api/... (regional hosts such as "
                     "https://eu.api.security.microsoft.com, or the older https://api.securitycenter.microsoft.com)."
                     )
    base_url_example = API_BASE
    owned_path_suffixes = ("/api",)
    default_sync_interval_minutes = 360  # the vulnerability data is refreshed every 6 hours
    config_schema = {
        "type": "object",
        "properties": {
            "tenant_id": {"type": "string", "minLength": 1, "maxLength": 255,
                          "description": "Directory (tenant) id of the Entra tenant, or one of its verified domains."},
            "authority_url": {"type": "string", "minLength": 1, "maxLength": 500, "default": AUTHORITY_BASE,
                              "description": "Identity platform host (US Government: login.microsoftonline.us); "
                              "the tenant id is appended."},
            "token_endpoint": {"enum": ["v2", "v1"], "default": "v2",
                               "description": "v2: /oauth2/v2.0/token with scope={resource}/.default; v1: "
                               "/oauth2/token with resource={resource} (Microsoft's samples)."},
            "resource": {"type": "string", "pattern": "^https://[^/?#\\s]+/?$", "default": RESOURCE,
                         "description": "The API's application id URI (the token audience)."},
            "vulnerability_source": {"enum": ["export", "machines_vulnerabilities"], "default": "export",
                                     "description": "export: SoftwareVulnerabilitiesByMachine (recommended: CVSS, "
                                     "and a change feed for incremental runs); machines_vulnerabilities: "
                                     "/api/vulnerabilities/machinesVulnerabilities (no CVSS, no change feed)."},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 10_000,
                          "description": "Machines (and machinesVulnerabilities rows) per request ($top)."},
            "export_page_size": {"type": "integer", "minimum": 1, "maximum": 200_000, "default": 50_000,
                                 "description": "Export rows per request (pageSize)."},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 0.5,
                                      "description": "Client-side pace; the exports allow 30 calls a minute."},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 600, "default": 120},
        },
        "required": ["tenant_id"],
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        if context.auth_type != AuthType.OAUTH2_CLIENT_CREDENTIALS:
            raise ConfigurationError("Defender for Endpoint takes an app registration's client credentials: use "
                                     "auth type oauth2_client_credentials")
        config = self.config
        authority = f"{config['authority_url'].rstrip('/')}/{config['tenant_id'].strip('/')}"
        resource = config["resource"].rstrip("/")
        if config["token_endpoint"] == "v1":
            token_url, scope, extra = f"{authority}/oauth2/token", None, {"resource": resource}
        else:
            token_url, scope, extra = f"{authority}/oauth2/v2.0/token", f"{resource}/.default", None
        self.auth = OAuth2Auth(token_url, context.credential("client_id"), context.credential("client_secret"),
                               scope=scope, extra_params=extra)
        self.client = HttpClient((context.base_url or API_BASE).rstrip("/"), auth=self.auth,
                                 timeout=config["timeout_seconds"],
                                 rate_limit_per_second=config["rate_limit_per_second"],
                                 secrets=context.secret_values())

    def close(self) -> None:
        self.client.close()

    # --- requests --------------------------------------------------------------------------------

    def _get_page(self, url: str) -> dict:
        response = self.client.get(url, expected=(200, 404))
        body = self.client.json(response) if response.content else None
        if response.status_code == 404:
            code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
            if url.startswith(MACHINES + "?") and code in ("NotFound", "ResourceNotFound"):
                return {"value": []}  # the tenant has no recent machines: Defender says 404, not []
            raise PermanentError(f"GET {response.request.url.path} answered 404 (is the base URL the Defender "
                                 "API host?)", status_code=404)
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise PermanentError(f"GET {response.request.url.path} answered without a value list")
        return body

    def _machines(self, start: str | None = None) -> ODataPaginator:
        return ODataPaginator(MACHINES, self.config["page_size"], vendor="Defender for Endpoint (machines)",
                              start=start)

    def _vulnerabilities(self, start: str | None = None) -> NextLinkPaginator:
        if self.config["vulnerability_source"] == "machines_vulnerabilities":
            return ODataPaginator(MACHINES_VULNERABILITIES, self.config["page_size"], start=start,
                                  vendor="Defender for Endpoint (machinesVulnerabilities)")
        first = f"{EXPORT}?{urlencode({'pageSize': self.config['export_page_size']})}"
        return NextLinkPaginator(start or first, key="@odata.nextLink", vendor="Defender for Endpoint (export)")

    # --- the contract ----------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        machines = self._get_page(f"{MACHINES}?$top=1")
        if self.config["vulnerability_source"] == "machines_vulnerabilities":
            self._get_page(f"{MACHINES_VULNERABILITIES}?$top=1")
        else:
            self._get_page(f"{EXPORT}?pageSize=1")
        return ConnectionResult(ok=True, message="Connected to Defender for Endpoint: a token was issued, machines "
                                "(Machine.Read.All) and vulnerabilities (Vulnerability.Read.All) are readable.",
                                details={"token_endpoint": self.config["token_endpoint"],
                                         "sample": len(machines["value"])})

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        resume = resume or {}
        identities = self._identities()
        changes = (mode == "incremental" and isinstance(cursor, str) and cursor
                   and self.config["vulnerability_source"] == "export")
        if resume.get("phase") == "changes" or (changes and not resume):
            first = f"{CHANGES}?{urlencode({'sinceTime': cursor, 'pageSize': self.config['export_page_size']})}"
            yield from self._changes(resume or {"next": first, "cursor": cursor}, identities)
            return
        pass_state = PassState.from_resume(resume)
        if resume.get("phase") != "machines":
            yield from self._vulnerability_phase(pass_state, identities, resume.get("next"))
        yield from self._machine_phase(pass_state, resume.get("next") if resume.get("phase") == "machines" else None)

    def _identities(self) -> dict[str, dict]:
        """Phase 1: machine id -> identification fields of its findings' target (one small dict a machine)."""
        identities: dict[str, dict] = {}
        for body in self._machines().pages(self._get_page):
            for machine in body["value"]:
                if isinstance(machine, dict) and isinstance(machine.get("id"), str):
                    identities[machine["id"]] = machine_identity(machine)
        return identities

    def _vulnerability_phase(self, state: PassState, identities: dict, start: str | None) -> Iterator[Page]:
        """Phase 2: every finding of the snapshot, counted per machine."""
        stream = "machinesVulnerabilities" if self.config["vulnerability_source"] == "machines_vulnerabilities" \
            else "export"
        pages = self._vulnerabilities(start)
        for body in pages.pages(self._get_page):
            records = []
            for row in body["value"]:
                if not isinstance(row, dict) or not row.get("cveId"):
                    continue  # software inventory without a CVE: not a finding
                record = {**row, STREAM: stream, "@syncplane.target": identities.get(
                    str(row.get("deviceId") or row.get("machineId") or ""), {})}
                state.count(record, self.map_record)
                records.append(record)
            if pages.finished:
                # The next page is the machines' first: the resume token says so.
                yield Page(records=records, resume=state.resume("machines", None))
            else:
                yield Page(records=records, resume=state.resume("vulnerabilities", pages.current))

    def _machine_phase(self, state: PassState, start: str | None) -> Iterator[Page]:
        """Phase 3: the machines with their scores, each onboarded one closing its scan."""
        pages = self._machines(start)
        scanned_at = datetime.now(UTC).isoformat()
        for body in pages.pages(self._get_page):
            records = []
            for machine in body["value"]:
                if not isinstance(machine, dict):
                    records.append(machine)  # the engine logs it as a record that cannot be used
                    continue
                machine_id = str(machine.get("id") or "")
                records.append({**machine, STREAM: "machines", OPEN_COUNTS: state.counts_of(machine_id)})
                if machine_id and scanned(machine):
                    records.append({STREAM: "scan", "machine": machine_identity(machine), "machineId": machine_id,
                                    "complete": machine_id not in state.incomplete, "scannedAt": scanned_at})
            if pages.finished:
                yield Page(records=records, resume=None, cursor=state.since)
            else:
                yield Page(records=records, resume=state.resume("machines", pages.current))

    def _changes(self, resume: dict, identities: dict) -> Iterator[Page]:
        """Incremental: the delta export since the cursor; the cursor moves to the greatest eventTimestamp."""
        pages = NextLinkPaginator(resume["next"], key="@odata.nextLink", vendor="Defender for Endpoint (changes)")
        newest = resume.get("cursor")
        for body in pages.pages(self._get_page):
            latest: dict[tuple, dict] = {}  # the last event of each finding in this page
            rows = [r for r in body["value"] if isinstance(r, dict)]
            for row in sorted(rows, key=lambda r: str(r.get("eventTimestamp") or "")):
                if not row.get("cveId"):
                    continue
                key = (row.get("deviceId"), row.get("softwareName"), row.get("softwareVersion"), row.get("cveId"))
                latest.pop(key, None)
                latest[key] = {**row, STREAM: "changes",
                               "@syncplane.target": identities.get(str(row.get("deviceId") or ""), {})}
                stamp = event_time(row)
                if stamp and (newest is None or stamp > newest):
                    newest = stamp
            records = [r for r in latest.values() if _code(r.get("status")) != "fixed"]
            if pages.finished:
                yield Page(records=records, resume=None, cursor=newest)
            else:
                yield Page(records=records, resume={"phase": "changes", "next": pages.current, "cursor": newest},
                           cursor=newest)

    def map_record(self, raw: dict) -> MappedRecord:
        if not isinstance(raw, dict):
            raise RecordError("record is not an object")
        mapper = MAPPERS.get(raw.get(STREAM))
        if mapper is None:
            raise RecordError(f"unknown Defender record stream {raw.get(STREAM)!r}")
        return mapper(raw)

    def external_id(self, raw: Any) -> str:
        return str(raw.get("id", "")) if isinstance(raw, dict) else ""


class PassState:
    """What a full pass remembers between its phases: open critical / high counts per machine, the machines
    with a row that could not be used, and when the snapshot was read (the next incremental run's cursor)."""

    def __init__(self, counts: dict[str, list[int]], incomplete: set[str], since: str):
        self.counts, self.incomplete, self.since = counts, incomplete, since

    @classmethod
    def from_resume(cls, resume: dict) -> PassState:
        return cls({k: list(v) for k, v in (resume.get("counts") or {}).items()}, set(resume.get("incomplete") or ()),
                   resume.get("since") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def resume(self, phase: str, next_link: str | None) -> dict:
        return {"phase": phase, "next": next_link, "counts": self.counts, "incomplete": sorted(self.incomplete),
                "since": self.since}

    def count(self, record: dict, map_record) -> None:
        machine_id = str(record.get("deviceId") or record.get("machineId") or "")
        try:
            severity = map_record(record).attributes["severity"]
        except RecordError:
            self.incomplete.add(machine_id)  # its scan is not complete: its summary fixes nothing
            return
        if severity in ("critical", "high"):
            self.counts.setdefault(machine_id, [0, 0])[severity == "high"] += 1

    def counts_of(self, machine_id: str) -> dict[str, int]:
        critical, high = self.counts.get(machine_id, (0, 0))
        return {"critical": critical, "high": high}


def scanned(machine: dict) -> bool:
    """Onboarded machines with telemetry are in the snapshot; an inactive one reports nothing new."""
    return _code(machine.get("onboardingStatus")) == "onboarded" and _code(machine.get("healthStatus")) != "inactive"


# --- mapping (pure) -----------------------------------------------------------------------------------

def _code(value: Any) -> str:
    return str(value or "").strip().lower().replace("_", "")


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RecordError(f"{name} is not a string: {type(value).__name__}")
    return str(value).strip()


def utc(value: Any, name: str) -> str | None:
    """ISO-8601 UTC from Defender's forms: `2025-06-10T16:41:07.1234567Z`, and the export's `2025-06-10
    05:30:00` (no zone: UTC)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RecordError(f"{name} is not a timestamp")
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"{name} is not a timestamp: {value[:40]!r}") from None
    return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)).isoformat()


def event_time(row: dict) -> str | None:
    """A delta row's eventTimestamp as the cursor keeps it (UTC, `Z`), or None."""
    try:
        stamp = utc(row.get("eventTimestamp"), "eventTimestamp")
    except RecordError:
        return None
    return stamp.replace("+00:00", "Z") if stamp else None


def machine_identity(raw: dict) -> dict:
    """The identification fields of a machine (a finding's target.asset): host name, FQDN, Entra device id."""
    dns = _text(raw, "computerDnsName").lower().rstrip(".")
    return {"hostname": dns.split(".", 1)[0], "fqdn": dns if "." in dns else "",
            "azure_ad_device_id": _text(raw, "aadDeviceId").lower()}


def compliance_score(exposure: str, critical: int, high: int) -> int:
    """100 minus the exposure's penalty, 20 per open critical and 5 per open high finding, within 0-100."""
    score = 100 - EXPOSURE_PENALTY.get(exposure, 0) - CRITICAL_PENALTY * critical - HIGH_PENALTY * high
    return max(0, min(100, score))


def _looked_up(table: dict, value: Any, canonical: str, unmapped: dict, fallback: str = "") -> str:
    """The canonical value of a vendor code; a code the table does not know takes the fallback and is reported."""
    code = _code(value)
    if code and code not in table:
        unmapped[canonical] = str(value)
        return fallback
    return table.get(code, fallback)


def _mac(raw: dict) -> str:
    """The MAC of the first connected adapter (Defender writes bare upper-case hex)."""
    for adapter in raw.get("ipAddresses") or ():
        if isinstance(adapter, dict) and _code(adapter.get("operationalStatus")) == "up":
            mac = normalize_mac(str(adapter.get("macAddress") or ""))
            if mac:
                return mac
    return ""


def map_machine(raw: dict) -> MappedRecord:
    machine_id = raw.get("id")
    if not isinstance(machine_id, str) or not machine_id:
        raise RecordError("machine has no id")
    identity = machine_identity(raw)
    if not identity["hostname"]:
        raise RecordError("machine has no computerDnsName")
    unmapped: dict[str, str] = {}
    platform = _code(raw.get("osPlatform"))
    os_name, asset_type = next(((name, kind) for prefix, name, kind in PLATFORMS if platform.startswith(prefix)),
                               (_text(raw, "osPlatform"), "other"))
    if os_name in ("Windows", "Windows Server"):
        os_name = _text(raw, "osPlatform").replace("WindowsServer", "Windows Server ").replace("Windows1",
                                                                                               "Windows 1")
    health = _looked_up(HEALTH, raw.get("healthStatus"), "health_status", unmapped, "unknown")
    onboarding = _looked_up(ONBOARDING, raw.get("onboardingStatus"), "onboarding_status", unmapped)
    exposure = _looked_up(EXPOSURE, raw.get("exposureLevel"), "exposure_level", unmapped)
    counts = raw.get(OPEN_COUNTS)
    score = None
    if onboarding == "onboarded" and isinstance(counts, dict):
        score = compliance_score(exposure, int(counts.get("critical", 0)), int(counts.get("high", 0)))
    asset: AssetAttributes = {
        "name": identity["hostname"], "hostname": identity["hostname"], "fqdn": identity["fqdn"],
        "asset_type": asset_type, "status": STATUS.get(health, "unknown"),
        "operating_system": os_name, "os_version": _text(raw, "version"),
        "ip_address": _text(raw, "lastIpAddress"), "mac_address": _mac(raw),
        "last_seen_at": utc(raw.get("lastSeen"), "lastSeen"),
        "azure_ad_device_id": identity["azure_ad_device_id"],
        "exposure_level": exposure,
        "risk_score": _looked_up(RISK, raw.get("riskScore"), "risk_score", unmapped),
        "health_status": health, "onboarding_status": onboarding, "compliance_score": score,
    }
    record: SecurityMachine = {"kind": "machine", "removed": False, "asset": asset}
    return MappedRecord(external_id=machine_id, attributes=record, raw=raw, unmapped=unmapped)


def _target(machine_id: str, raw: dict) -> FindingTarget:
    known = raw.get("@syncplane.target") or {}
    dns = _text(raw, "deviceName").lower().rstrip(".")
    hostname = known.get("hostname") or dns.split(".", 1)[0]
    asset: AssetAttributes = {"hostname": hostname, "fqdn": known.get("fqdn") or (dns if "." in dns else ""),
                              "azure_ad_device_id": known.get("azure_ad_device_id", "")}
    return {"kind": "asset", "ref": machine_id, "name": hostname or machine_id, "asset": asset}


def _finding(machine_id: str, cve: str, vendor: str, software: str, version: str, severity_value: Any,
             raw: dict) -> tuple[str, FindingRecord, dict]:
    if not machine_id:
        raise RecordError("row has no machine id")
    if not software:
        raise RecordError("row has no software name")
    unmapped: dict[str, str] = {}
    severity = _looked_up(SEVERITY, severity_value, "severity", unmapped, "unknown")
    record: FindingRecord = {
        "kind": "finding", "target": _target(machine_id, raw), "vulnerability_id": cve.upper(), "aliases": [],
        "title": f"{cve.upper()} in {' '.join(filter(None, (vendor, software, version)))}",
        "package_name": software, "package_type": "", "installed_version": version, "fixed_version": "",
        "purl": f"pkg:generic/{vendor + '/' if vendor else ''}{software}" + (f"@{version}" if version else ""),
        "severity": severity, "cvss_score": None, "cvss_vector": "", "locations": [], "tool": TOOL,
        "first_seen_at": None,
    }
    external_id = f"asset:{machine_id}|{cve.upper()}|{software}|{version}"
    return external_id, record, unmapped


def map_export_row(raw: dict) -> MappedRecord:
    """A row of the export (or of its delta): one CVE in one software version on one machine."""
    cve = _text(raw, "cveId")
    if not cve:
        raise RecordError("row has no cveId: software inventory, not a finding")
    external_id, record, unmapped = _finding(
        _text(raw, "deviceId"), cve, _text(raw, "softwareVendor").lower(), _text(raw, "softwareName").lower(),
        _text(raw, "softwareVersion"), raw.get("vulnerabilitySeverityLevel"), raw)
    cvss = raw.get("cvssScore")
    if cvss is not None and (isinstance(cvss, bool) or not isinstance(cvss, int | float) or not 0 <= cvss <= 10):
        raise RecordError(f"cvssScore is not a score from 0 to 10: {cvss!r}"[:120])
    update = _text(raw, "recommendedSecurityUpdateId") or _text(raw, "recommendedSecurityUpdate")
    if update:  # a KB or advisory, not a package version: named in the title, fixed_version stays empty
        record["title"] += f" (fix: {update})"
    record.update(
        cvss_score=float(cvss) if cvss is not None else None,
        locations=[str(p) for p in (raw.get("diskPaths") or []) + (raw.get("registryPaths") or []) if p],
        first_seen_at=utc(raw.get("firstSeenTimestamp"), "firstSeenTimestamp"),
    )
    return MappedRecord(external_id=external_id, attributes=record, raw=raw, unmapped=unmapped)


def map_machine_vulnerability(raw: dict) -> MappedRecord:
    """A machinesVulnerabilities row: no CVSS, no paths; fixingKbId is the update that fixes it."""
    cve = _text(raw, "cveId")
    if not cve:
        raise RecordError("row has no cveId")
    external_id, record, unmapped = _finding(
        _text(raw, "machineId"), cve, _text(raw, "productVendor").lower(), _text(raw, "productName").lower(),
        _text(raw, "productVersion"), raw.get("severity"), raw)
    kb = _text(raw, "fixingKbId")
    if kb:
        record["title"] += f" (fix: KB{kb.removeprefix('KB')})"
    return MappedRecord(external_id=external_id, attributes=record, raw=raw, unmapped=unmapped)


def map_scan(raw: dict) -> MappedRecord:
    machine_id = _text(raw, "machineId")
    identity = raw.get("machine") or {}
    target: FindingTarget = {"kind": "asset", "ref": machine_id, "name": identity.get("hostname") or machine_id,
                             "asset": {k: identity.get(k, "") for k in ("hostname", "fqdn", "azure_ad_device_id")}}
    summary: ScanSummary = {"kind": "scan", "target": target, "tool": TOOL, "complete": bool(raw.get("complete")),
                            "scanned_at": utc(raw.get("scannedAt"), "scannedAt")}
    return MappedRecord(external_id=f"scan:asset:{machine_id}", attributes=summary, raw=raw)


MAPPERS = {"machines": map_machine, "export": map_export_row, "changes": map_export_row,
           "machinesVulnerabilities": map_machine_vulnerability, "scan": map_scan}
