"""Jira Service Management (Cloud): CAB change requests out, their status and approvals back
(see shared/api-notes/jira-service-management.md; runbook: docs/runbooks/integration-setup.md).

Base URL: the site, `https://<site>.atlassian.net` (OAuth 3LO apps: `https://api.atlassian.com/ex/jira/<cloudId>`).
Auth: Basic with the account e-mail and an API token (auth type basic; passwords are refused), acting as that
user, who needs the agent role in the change project; or a Bearer token (3LO access token, Data Center PAT).

Create: `POST /rest/api/3/issue` in the configured project and issue type (name, or id when all digits), v3 so
`description` is ADF (one paragraph per line: ADF text nodes carry no newlines). Syncplane's correlation id
travels in the same call as the label `syncplane-<correlation id>`, next to the label `syncplane` that marks
every change Syncplane created: atomic with the create and searchable by JQL, so a retry after a lost answer
finds the change instead of creating a second one. The POST is not idempotent: HttpClient repeats it only on
429/503 (not processed). The answer is only `{id, key, self}`; the change is read back once to map its state.
- `id` (numeric string) is the external id and what every later call uses; `key` (ITSM-42) is the number a
  person sees, and changes when the issue moves to another project.
- Change type, risk and the planned window are custom fields with site-specific ids: configured, or found by
  name in `GET /rest/api/3/field` (cached per site for an hour): a name given in `field_names` first, then
  JSM's own names ("Change type", "Change risk", "Change start date", "Change completion date", "Approvals"),
  then older names some sites use ("Planned start", "Planned end"). A field that is not found is left out of
  the create (and named by test_connection); the approvals field is required, since the state depends on it.
- Risk: `risk_band(risk_score)` -> the site's "Change risk" option (`risk_map`):

  | risk_score | band       | option (default) |
  |------------|------------|------------------|
  | 80-100     | very_high  | Critical         |
  | 60-79      | high       | High             |
  | 30-59      | moderate   | Medium           |
  | 0-29       | low        | Low              |
- Dates: `2024-06-04T20:00:00.000+0000` (offset without a colon, both ways).

Read: `POST /rest/api/3/search/jql` (`nextPageToken` paging, read-only so safe to repeat) with the fields the
mapping needs, the approvals custom field included, so one request per page carries status and approvals:
- fetch: `labels = "syncplane" [AND updated >= "yyyy-MM-dd HH:mm"] ORDER BY updated ASC`. JQL dates have minutes
  and are read in the user's time zone (`jql_time_zone`): the filter starts `cursor_overlap_minutes` early and
  each issue's exact `updated` is re-checked. Cursor: the greatest `updated` seen; a resumed run starts again
  from the last committed marker (a page token does not outlive its query).
- get_changes: `id in (...)` in chunks of `page_size` (one request per chunk). JQL answers 400 when one of the
  ids does not exist (as it does for keys); that chunk is then read issue by issue, leaving out the 404s.
- find_change: `labels = "syncplane-<correlation id>"`.
Cancel: the workflow transition named `cancel_transition`, resolved by name at runtime
(`GET .../transitions`, then `POST` with the reason as an ADF comment; 204).

Mapping (`map_change`, pure): status category + status name (`status_map`) + resolution + the approvals field.
Approvals decide approved and rejected, never the status name alone (quirk: Declined and Canceled sit in
category done, so done is completed only with resolution Done/Completed):

  | signal                                                           | state        |
  |------------------------------------------------------------------|--------------|
  | status Canceled, or resolution Won't Do / Canceled               | cancelled    |
  | an approval with finalDecision declined, or status Declined      | rejected     |
  | category done, resolution Done / Completed, no approval pending  | completed    |
  | status Implementing                                              | implementing |
  | an approval pending                                              | assess       |
  | latest approval approved                                         | approved     |
  | no approval yet, category new                                    | submitted    |
  | anything else (unknown status, done without a known resolution)  | assess, logged |

Each approver's decision (`approverDecision` approved / declined) is an `ApprovalDecision` with id
`<approval id>:<accountId>`; `declined` becomes "rejected". Pending ones are left out.
Webhooks: a Jira admin webhook (JQL filter `labels = syncplane`) with a secret sends
`X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`; the body's `issue.id` names the change.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncplane.integrations.base import (
    RATE_MAX,
    RATE_MIN,
    ConnectionResult,
    ConnectorContext,
    MappedRecord,
    Page,
    build_auth,
)
from syncplane.integrations.choices import AuthType, Category, SystemType
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentError,
    RecordError,
    TransientError,
)
from syncplane.integrations.http import HttpClient
from syncplane.integrations.itsm import RISK_BANDS, ItsmConnector, risk_band
from syncplane.integrations.paging import CursorPaginator
from syncplane.integrations.records import ApprovalDecision, ChangeDraft, ChangeState, ExternalChange
from syncplane.integrations.registry import register

logger = logging.getLogger("syncplane.integrations.jira_service_management")

VENDOR = "Jira Service Management"
ISSUE = "/rest/api/3/issue"
SEARCH = "/rest/api/3/search/jql"
FIELDS = "/rest/api/3/field"
MYSELF = "/rest/api/3/myself"
MARKER_LABEL = "syncplane"
LABEL_PREFIX = "syncplane-"
JIRA_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"
JQL_DATE = "%Y-%m-%d %H:%M"
FIELD_CACHE_SECONDS = 3600
SUMMARY_MAX = 255

# The custom fields a change uses: config key of the id -> JSM's own name for it (a JSM site's field dump).
CUSTOM_FIELDS = {
    "change_type_field": "Change type",
    "risk_field": "Change risk",
    "planned_start_field": "Change start date",
    "planned_end_field": "Change completion date",
    "approvals_field": "Approvals",
}
# Other names a site may use, tried after JSM's own.
FIELD_ALIASES = {"planned_start_field": ("Planned start",), "planned_end_field": ("Planned end",)}
DEFAULT_RISK_MAP = {"low": "Low", "moderate": "Medium", "high": "High", "very_high": "Critical"}
# Status name (case-insensitive) -> what it hints; approvals and resolution have the last word (see the table).
DEFAULT_STATUS_MAP = {
    "Planning": ChangeState.SUBMITTED,
    "Awaiting approval": ChangeState.ASSESS,
    "Awaiting implementation": ChangeState.APPROVED,
    "Implementing": ChangeState.IMPLEMENTING,
    "Completed": ChangeState.COMPLETED,
    "Declined": ChangeState.REJECTED,
    "Canceled": ChangeState.CANCELLED,
    "Cancelled": ChangeState.CANCELLED,
}
DONE_RESOLUTIONS = frozenset({"done", "completed", "fixed"})
CANCEL_RESOLUTIONS = frozenset({"won't do", "canceled", "cancelled", "withdrawn"})
DECLINE_RESOLUTIONS = frozenset({"declined", "rejected"})
_CORRELATION = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_ID = re.compile(r"^\d{1,18}$")

# Field ids found by name, per site and names asked: {(base url, names): (found at, {config key: id})}
_field_cache: dict[tuple, tuple[float, dict[str, str]]] = {}
_field_cache_lock = threading.Lock()


def parse_jira_time(value: Any, what: str) -> datetime | None:
    """`2024-06-01T14:05:31.120+0000` (also without milliseconds, or with a colon in the offset)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what} is not a date string: {type(value).__name__}")
    for form in (JIRA_TIME, "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, form).astimezone(UTC)
        except ValueError:
            continue
    raise RecordError(f"{what} is not a Jira timestamp: {value[:40]!r}")


def jira_time(value: datetime) -> str:
    """The platform's datetime form, in UTC: 2024-06-04T20:00:00.000+0000."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def adf(text: str) -> dict:
    """Plain text -> an Atlassian Document: one paragraph per line (text nodes must not hold newlines)."""
    paragraphs = [{"type": "paragraph", "content": [{"type": "text", "text": line}]}
                  for line in (raw.strip() for raw in text.splitlines()) if line]
    return {"type": "doc", "version": 1, "content": paragraphs or [{"type": "paragraph", "content": []}]}


def _sd_time(value: Any) -> datetime | None:
    """servicedeskapi dates are objects; epochMillis is the unambiguous part."""
    if isinstance(value, dict) and isinstance(value.get("epochMillis"), int):
        return datetime.fromtimestamp(value["epochMillis"] / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            return parse_jira_time(value, "approval date")
        except RecordError:
            return None
    return None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def map_approvals(value: Any) -> tuple[list[ApprovalDecision], list[str]]:
    """The approvals field (a list of servicedeskapi Approval objects) -> decided decisions, and every
    approval's finalDecision in order (oldest first)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise RecordError(f"the approvals field is not a list: {type(value).__name__}")
    decisions: list[ApprovalDecision] = []
    finals: list[str] = []
    approvals = [a for a in value if isinstance(a, dict)]
    approvals.sort(key=lambda a: (int(a["id"]) if str(a.get("id", "")).isdigit() else 0))
    for approval in approvals:
        final = str(approval.get("finalDecision") or "").lower()
        finals.append(final)
        decided_at = _sd_time(approval.get("completedDate"))
        for entry in approval.get("approvers") or ():
            if not isinstance(entry, dict):
                continue
            decision = str(entry.get("approverDecision") or "").lower()
            if decision not in ("approved", "declined"):
                continue
            person = entry.get("approver") if isinstance(entry.get("approver"), dict) else {}
            who = person.get("emailAddress") or person.get("displayName") or person.get("accountId") or ""
            decisions.append(ApprovalDecision(
                external_id=f"{approval.get('id')}:{person.get('accountId') or who}",
                approver=str(who),
                decision="approved" if decision == "approved" else "rejected",
                decided_at=decided_at,
            ))
    return decisions, finals


def _name_map_schema(default: dict, values: list[str] | None, description: str) -> dict:
    item: dict = {"type": "string", "minLength": 1, "maxLength": 255}
    if values is not None:
        item = {"type": "string", "enum": values}
    return {"type": "object", "additionalProperties": item, "propertyNames": {"minLength": 1, "maxLength": 255},
            "default": default, "description": description}


_FIELD_ID = {"type": "string", "pattern": "^(customfield_[0-9]{1,10})?$", "default": ""}


@register
class JiraServiceManagementConnector(ItsmConnector):
    system_type = SystemType.JIRA_SERVICE_MANAGEMENT
    category = Category.ITSM
    display_name = "Jira Service Management"
    base_url_help = (
        "The Jira site (Cloud: https://<site>.atlassian.net; with an OAuth token "
        "https://api.atlassian.com/ex/jira/<cloudId>) or Jira Data Center's own URL, without /rest/...: "
        "the connector adds /rest/api/3/... itself."
    )
    base_url_example = "https://acme-it.atlassian.net"
    owned_path_suffixes = ("/rest", "/browse")
    auth_types = (AuthType.BASIC, AuthType.BEARER)
    webhook_signature = "hmac-sha256"
    config_schema = {
        "type": "object",
        "properties": {
            "project_key": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,9}$", "default": "ITSM",
                            "description": "Key of the JSM project changes are created in."},
            "issue_type": {"type": "string", "minLength": 1, "maxLength": 255, "default": "Change",
                           "description": "Issue type name, or its id when all digits (names can be renamed)."},
            "change_type": {"type": "string", "minLength": 1, "maxLength": 255, "default": "Normal",
                            "description": "Option of the Change type field every change is created with."},
            **{key: {**_FIELD_ID, "description": f"Id of the '{name}' custom field; found by name when empty."}
               for key, name in CUSTOM_FIELDS.items()},
            "field_names": {
                "type": "object",
                "properties": {key: {"type": "string", "minLength": 1, "maxLength": 255} for key in CUSTOM_FIELDS},
                "additionalProperties": False,
                "default": {},
                "description": "Names to find the custom fields by, tried before JSM's own (Change type, Change "
                "risk, Change start date, Change completion date, Approvals; then Planned start / end): for a "
                "site that renamed or localised them.",
            },
            "risk_map": {
                "type": "object",
                "properties": {band: {"type": "string", "minLength": 1, "maxLength": 255} for _, band in RISK_BANDS},
                "required": [band for _, band in RISK_BANDS],
                "additionalProperties": False,
                "default": DEFAULT_RISK_MAP,
                "description": "Risk band (from risk_score) -> the site's Change risk option.",
            },
            "status_map": _name_map_schema({k: str(v) for k, v in DEFAULT_STATUS_MAP.items()},
                                           [str(v) for v in ChangeState],
                                           "Status name (case-insensitive) -> the state it hints, added to the "
                                           "default (shown); approvals and resolution decide approved, rejected "
                                           "and completed. A status no map knows is counted on the run."),
            "cancel_transition": {"type": "string", "minLength": 1, "maxLength": 255, "default": "Cancel",
                                  "description": "Name of the workflow transition that cancels a change."},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50,
                          "description": "maxResults of a search page (Jira caps it at 100 with fields)."},
            "jql_time_zone": {"type": "string", "maxLength": 64, "default": "UTC",
                              "description": "The integration user's Jira time zone: JQL dates are read in it."},
            "cursor_overlap_minutes": {"type": "integer", "minimum": 0, "maximum": 1440, "default": 5},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 10},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext, *, sleep=time.sleep):
        super().__init__(context)
        self._sleep = sleep  # HttpClient's waits (Retry-After, backoff, pace); tests record them
        try:
            self.zone = ZoneInfo(self.config["jql_time_zone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"jql_time_zone: unknown time zone {self.config['jql_time_zone']!r}") from None
        self.base_url = context.base_url.rstrip("/")
        # A configured status_map extends the default one (a configured name wins).
        status_map = {**DEFAULT_STATUS_MAP, **self.config["status_map"]}
        self._status_map = {k.strip().lower(): v for k, v in status_map.items()}
        # Configured ids first; the rest is filled in by `resolve_fields`.
        self.fields: dict[str, str] = {k: self.config[k] for k in CUSTOM_FIELDS if self.config[k]}
        self._client: HttpClient | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(
                self.base_url,
                auth=build_auth(self.context),
                headers={"Content-Type": "application/json"},
                timeout=self.config["timeout_seconds"],
                rate_limit_per_second=self.config["rate_limit_per_second"],
                secrets=self.context.secret_values(),
                sleep=self._sleep,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def resolve_fields(self, *, refresh: bool = False) -> dict[str, str]:
        """Custom field ids by role: configured ones, the rest found by name in `GET /rest/api/3/field`
        (one request, cached per site for an hour)."""
        missing = [k for k in CUSTOM_FIELDS if k not in self.fields]
        if not missing:
            return self.fields
        names = {key: self._field_names(key) for key in CUSTOM_FIELDS}
        cache_key = (self.base_url, tuple(sorted(names.items())))
        with _field_cache_lock:
            cached = _field_cache.get(cache_key)
        if cached is None or refresh or time.monotonic() - cached[0] > FIELD_CACHE_SECONDS:
            listing = self.client.get_json(FIELDS)
            if not isinstance(listing, list):
                raise PermanentError(f"GET {FIELDS} did not answer a list of fields")
            by_name: dict[str, list[str]] = {}
            for field in listing:
                if isinstance(field, dict) and field.get("custom") and isinstance(field.get("name"), str):
                    by_name.setdefault(field["name"].strip().lower(), []).append(str(field.get("id")))
            found = {}
            for key, candidates in names.items():
                name, ids = next(((n, by_name[n.strip().lower()]) for n in candidates if n.strip().lower() in by_name),
                                 ("", []))
                if len(ids) > 1:
                    logger.warning("several custom fields are named %r (%s); using %s: set %s to choose",
                                   name, ", ".join(ids), ids[0], key)
                if ids:
                    found[key] = ids[0]
            cached = (time.monotonic(), found)
            with _field_cache_lock:
                _field_cache[cache_key] = cached
        for key in missing:
            if key in cached[1]:
                self.fields[key] = cached[1][key]
        return self.fields

    def _field_names(self, key: str) -> tuple[str, ...]:
        """The names a custom field is looked for by, in order: the configured one, JSM's, the aliases."""
        configured = self.config["field_names"].get(key)
        return tuple(dict.fromkeys(n for n in (configured, CUSTOM_FIELDS[key], *FIELD_ALIASES.get(key, ())) if n))

    def _approvals_field(self) -> str:
        field = self.resolve_fields().get("approvals_field")
        if not field:
            name = " / ".join(self._field_names("approvals_field"))
            raise ConfigurationError(f"no custom field named {name!r} on this site: set approvals_field to the id "
                                     "of the JSM approvals field (GET /rest/api/3/field)")
        return field

    def _read_fields(self) -> list[str]:
        return ["summary", "status", "resolution", "updated", "created", "labels", "project", "issuetype",
                self._approvals_field()]

    def _search(self, jql: str, token: str | None = None, limit: int | None = None) -> dict:
        """One page of `POST /rest/api/3/search/jql` as {"issues", "next"}."""
        body: dict[str, Any] = {"jql": jql, "maxResults": limit or self.config["page_size"],
                                "fields": self._read_fields()}
        if token:
            body["nextPageToken"] = token
        # Read-only despite the POST: safe to repeat on any transient failure.
        answer = self.client.json(self.client.post(SEARCH, json=body, idempotent=True))
        issues = answer.get("issues") if isinstance(answer, dict) else None
        if not isinstance(issues, list):
            raise PermanentError(f"POST {SEARCH} answered without an issues list")
        next_token = answer.get("nextPageToken")
        last = answer.get("isLast") is True or not next_token or not issues
        return {"issues": issues, "next": None if last else next_token}

    def _pages(self, jql: str) -> Iterator[dict]:
        """Every page of a search, following nextPageToken (a repeated token fails the run)."""
        return CursorPaginator(vendor=VENDOR, key="next").pages(lambda token: self._search(jql, token))

    def _search_all(self, jql: str) -> Iterator[dict]:
        for page in self._pages(jql):
            yield from page["issues"]

    def _read_issue(self, external_id: str) -> dict | None:
        response = self.client.get(f"{ISSUE}/{external_id}", params={"fields": ",".join(self._read_fields())},
                                   expected=(200, 404))
        if response.status_code == 404:  # absent and not permitted look the same (quirk 7)
            return None
        issue = self.client.json(response)
        if not isinstance(issue, dict):
            raise PermanentError(f"GET {ISSUE}/{external_id} did not answer an issue")
        return issue

    # --- outbound: change requests -----------------------------------------------------------------

    def create_change(self, draft: ChangeDraft) -> ExternalChange:
        if not _CORRELATION.match(draft.correlation_id or ""):
            raise PermanentError("the correlation id cannot be a Jira label (letters, digits, . _ : - only)")
        fields = self.resolve_fields()
        self._approvals_field()  # without it no state could come back: refuse before creating anything
        issue_type = self.config["issue_type"]
        values: dict[str, Any] = {
            "project": {"key": self.config["project_key"]},
            "issuetype": {"id": issue_type} if issue_type.isdigit() else {"name": issue_type},
            "summary": " ".join(draft.title.split())[:SUMMARY_MAX],
            "description": adf(self._description(draft)),
            "labels": [MARKER_LABEL, LABEL_PREFIX + draft.correlation_id],
        }
        if fields.get("change_type_field"):
            values[fields["change_type_field"]] = {"value": self.config["change_type"]}
        if fields.get("risk_field"):
            values[fields["risk_field"]] = {"value": self.config["risk_map"][risk_band(draft.risk_score)]}
        for key, when in (("planned_start_field", draft.planned_start), ("planned_end_field", draft.planned_end)):
            if when is not None and fields.get(key):
                values[fields[key]] = jira_time(when)
        try:
            response = self.client.post(ISSUE, json={"fields": values}, expected=(201,))
        except AuthenticationError as exc:
            if exc.status_code == 403:  # valid credentials without the right to create here: not an auth fault
                raise PermanentError(f"{exc.message} (the account needs permission to create issues in project "
                                     f"{self.config['project_key']})", status_code=403) from None
            raise
        created = self.client.json(response)
        if not isinstance(created, dict) or not _ID.match(str(created.get("id", ""))):
            raise PermanentError(f"POST {ISSUE} answered without an issue id")
        external_id, key = str(created["id"]), str(created.get("key") or created["id"])
        try:
            issue = self._read_issue(external_id)
        except (TransientError, PermanentError) as exc:
            # The change exists: never lose its id over a failed read; its state comes with the next poll.
            logger.warning("created %s but could not read it back: %s", key, exc)
            issue = None
        if issue is None:
            return ExternalChange(external_id=external_id, number=key, state=ChangeState.SUBMITTED,
                                  correlation_id=draft.correlation_id, url=self._browse(key))
        return self.map_change(issue)

    def _description(self, draft: ChangeDraft) -> str:
        lines = [*draft.description.splitlines(), "", f"Risk score: {draft.risk_score}/100 "
                 f"({risk_band(draft.risk_score).replace('_', ' ')})"]
        if draft.planned_start or draft.planned_end:
            start = draft.planned_start.isoformat() if draft.planned_start else "?"
            end = draft.planned_end.isoformat() if draft.planned_end else "?"
            lines.append(f"Planned window: {start} - {end}")
        if draft.affected_assets:
            lines.append("Affected assets: " + ", ".join(draft.affected_assets))
        if draft.requester_email:
            lines.append(f"Requested by: {draft.requester_email}")
        lines.append(f"Submitted by Syncplane (correlation id {draft.correlation_id})")
        return "\n".join(lines)

    def find_change(self, correlation_id: str) -> ExternalChange | None:
        if not _CORRELATION.match(correlation_id or ""):
            return None
        self.resolve_fields()
        issues = [i for i in self._search_all(f"labels = {_quote(LABEL_PREFIX + correlation_id)}")
                  if isinstance(i, dict) and _ID.match(str(i.get("id", "")))]
        if not issues:
            return None
        issues.sort(key=lambda i: int(i["id"]))
        if len(issues) > 1:
            logger.warning("%d Jira issues carry the label of correlation id %s; using %s", len(issues),
                           correlation_id, issues[0].get("key"))
        return self.map_change(issues[0])

    def get_changes(self, external_ids: list[str]) -> list[ExternalChange]:
        """`id in (...)` searches, `page_size` ids per request. JQL refuses the whole query when one id does
        not exist; such a chunk is read issue by issue (`GET /issue/{id}`), missing ones left out."""
        ids = list(dict.fromkeys(str(i) for i in external_ids if _ID.match(str(i))))
        self.resolve_fields()
        changes: list[ExternalChange] = []
        size = self.config["page_size"]
        for offset in range(0, len(ids), size):
            chunk = ids[offset:offset + size]
            try:
                issues = list(self._search_all(f"id in ({', '.join(chunk)})"))
            except PermanentError as exc:
                if exc.status_code != 400:
                    raise
                issues = [i for i in (self._read_issue(eid) for eid in chunk) if i is not None]
            for issue in issues:
                try:
                    changes.append(self.map_change(issue))
                except RecordError as exc:
                    logger.warning("change %s cannot be read: %s", self.external_id(issue), exc)
        return changes

    def cancel_change(self, external_id: str, reason: str) -> ExternalChange:
        if not _ID.match(str(external_id)):
            raise PermanentError(f"{external_id!r} is not a Jira issue id")
        self.resolve_fields()
        listing = self.client.get_json(f"{ISSUE}/{external_id}/transitions", expected=(200,))
        wanted = self.config["cancel_transition"].strip().lower()
        transition = next((t for t in (listing or {}).get("transitions", [])
                           if isinstance(t, dict) and str(t.get("name", "")).strip().lower() == wanted), None)
        if transition is None:
            issue = self._read_issue(external_id)
            if issue is None:
                raise PermanentError(f"Jira issue {external_id} does not exist or is not visible")
            change = self.map_change(issue)
            if change.state == ChangeState.CANCELLED:
                return change  # already cancelled: a repeated request is not an error
            status = ((issue.get("fields") or {}).get("status") or {}).get("name")
            raise PermanentError(f"{change.number} cannot be cancelled from status {status!r}: no "
                                 f"{self.config['cancel_transition']!r} transition is available")
        body = {"transition": {"id": str(transition.get("id"))},
                "update": {"comment": [{"add": {"body": adf(reason or "Cancelled in Syncplane.")}}]}}
        self.client.post(f"{ISSUE}/{external_id}/transitions", json=body, expected=(204,))
        issue = self._read_issue(external_id)
        if issue is None:
            raise PermanentError(f"Jira issue {external_id} vanished after it was cancelled")
        return self.map_change(issue)

    def webhook_change_ids(self, payload: dict) -> list[str]:
        """Jira admin webhooks send `{"webhookEvent": "jira:issue_updated", "issue": {"id", "key", ...}}`; an
        automation rule's "Send web request" may send `{"issues": [{"id"}...]}`. Only numeric ids count."""
        if not isinstance(payload, dict):
            return []
        candidates = []
        if isinstance(payload.get("issue"), dict):
            candidates.append(payload["issue"].get("id"))
        if isinstance(payload.get("issues"), list):
            candidates.extend(i.get("id") for i in payload["issues"] if isinstance(i, dict))
        return list(dict.fromkeys(str(c) for c in candidates if c is not None and _ID.match(str(c))))

    # --- inbound: the sync engine ------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        me = self.client.get_json(MYSELF)
        fields = self.resolve_fields(refresh=True)
        missing = [" / ".join(self._field_names(k)) for k in CUSTOM_FIELDS if k not in fields]
        who = me.get("emailAddress") or me.get("displayName") if isinstance(me, dict) else None
        details = {"account": who, "fields": dict(fields), "missing_fields": missing,
                   "project_key": self.config["project_key"]}
        if "approvals_field" not in fields:
            return ConnectionResult(ok=False, message=f"Connected as {who}, but the approvals field was not found: "
                                    "set approvals_field", details=details)
        message = f"Connected to Jira Service Management as {who}"
        if missing:
            message += "; not found (left out of new changes): " + ", ".join(missing)
        return ConnectionResult(ok=True, message=message + ".", details=details)

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        marker = resume.get("since") if resume else (cursor if mode == "incremental" else None)
        try:
            since = parse_jira_time(marker, "cursor") if marker else None
        except RecordError:
            since = None  # a cursor from another format: read everything once
        jql = f"labels = {_quote(MARKER_LABEL)}"
        if since is not None:
            # Minutes only, in the user's zone: start a little early, drop what is older afterwards.
            start = (since - timedelta(minutes=self.config["cursor_overlap_minutes"])).astimezone(self.zone)
            jql += f' AND updated >= "{start.strftime(JQL_DATE)}"'
        jql += " ORDER BY updated ASC, id ASC"
        self.resolve_fields()
        greatest = since
        for page in self._pages(jql):
            records = []
            for raw in page["issues"]:
                try:
                    updated = _updated(raw)
                except RecordError:
                    updated = None  # map_change reports it, with the record
                if since is not None and updated is not None and updated < since:
                    continue
                if updated is not None and (greatest is None or updated > greatest):
                    greatest = updated
                records.append(raw)
            marker = greatest.isoformat(timespec="milliseconds") if greatest else None
            yield Page(records=records, resume=None if page["next"] is None else {"since": marker}, cursor=marker)

    def map_change(self, raw: dict) -> ExternalChange:
        if not isinstance(raw, dict):
            raise RecordError("record is not an object")
        external_id, key = str(raw.get("id") or ""), raw.get("key")
        if not _ID.match(external_id):
            raise RecordError("record has no numeric issue id")
        if not isinstance(key, str) or not key:
            raise RecordError("record has no issue key")
        fields = raw.get("fields")
        if not isinstance(fields, dict):
            raise RecordError("record has no fields object")
        status = fields.get("status")
        if not isinstance(status, dict) or not isinstance(status.get("name"), str):
            raise RecordError("record has no status")
        name = status["name"].strip()
        category = str((status.get("statusCategory") or {}).get("key") or "").lower() \
            if isinstance(status.get("statusCategory"), dict) else ""
        resolution_obj = fields.get("resolution")
        resolution = str(resolution_obj.get("name") or "").strip() if isinstance(resolution_obj, dict) else ""
        decisions, finals = map_approvals(self._approvals_value(fields))
        labels = fields.get("labels") if isinstance(fields.get("labels"), list) else []
        correlation = next((str(label)[len(LABEL_PREFIX):] for label in labels
                            if isinstance(label, str) and label.startswith(LABEL_PREFIX)), "")
        state, detail = self._state(name, category, resolution.lower(), finals)
        detail = detail or f"status: {name}" + (f", resolution: {resolution}" if resolution else "")
        return ExternalChange(
            external_id=external_id,
            number=key,
            state=ChangeState(state).value,
            correlation_id=correlation,
            updated_at=parse_jira_time(fields.get("updated"), "updated"),
            approvals=decisions,
            url=self._browse(key),
            detail=detail,
        )

    def map_record(self, raw: dict) -> MappedRecord:
        record = super().map_record(raw)
        name = raw["fields"]["status"]["name"].strip()  # map_change checked the shape
        if name.lower() not in self._status_map:
            record.unmapped = {"status": name}
        return record

    def _approvals_value(self, fields: dict) -> Any:
        """The approvals field's value: by its known id, else (mapping without discovery, which needs the
        network) the custom field whose value is a list of approvals."""
        field = self.fields.get("approvals_field") or self.config["approvals_field"]
        if field:
            return fields.get(field)
        for key, value in fields.items():
            if key.startswith("customfield_") and isinstance(value, list) and value and all(
                    isinstance(v, dict) and "finalDecision" in v for v in value):
                return value
        return None

    def _state(self, name: str, category: str, resolution: str, finals: list[str]) -> tuple[str, str]:
        hint = self._status_map.get(name.lower())
        pending = "pending" in finals
        if hint is None:
            logger.warning("unknown Jira status %r (category %r): state taken from the approvals", name, category)
        if hint == ChangeState.CANCELLED or resolution in CANCEL_RESOLUTIONS:
            return ChangeState.CANCELLED, ""
        if "declined" in finals or hint == ChangeState.REJECTED or resolution in DECLINE_RESOLUTIONS:
            return ChangeState.REJECTED, "approval: declined" if "declined" in finals else ""
        if category == "done" or hint == ChangeState.COMPLETED:
            if resolution in DONE_RESOLUTIONS and not pending:
                return ChangeState.COMPLETED, ""
            # Declined and canceled changes sit in done as well: without a known resolution, claim nothing.
            logger.warning("Jira status %r is done without a known resolution (%r): not taken as completed",
                           name, resolution)
            return ChangeState.ASSESS, f"status {name} (done) without a known resolution"
        if hint == ChangeState.IMPLEMENTING:
            return ChangeState.IMPLEMENTING, ""
        if pending:
            return ChangeState.ASSESS, "approval: pending"
        if finals and finals[-1] == "approved":
            return ChangeState.APPROVED, "approval: approved"
        if hint is None:
            return (ChangeState.SUBMITTED if category == "new" else ChangeState.ASSESS), f"unknown status {name}"
        if category == "new" or hint == ChangeState.SUBMITTED:
            return ChangeState.SUBMITTED, ""
        # A status that says approved (or anything else) without an approval on record: approval is not
        # taken from a status name alone.
        return ChangeState.ASSESS, f"status {name} without a decided approval"

    def _browse(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    def external_id(self, raw: Any) -> str:
        value = raw.get("id") if isinstance(raw, dict) else None
        return str(value) if value is not None and _ID.match(str(value)) else ""


def _updated(raw: Any) -> datetime | None:
    fields = raw.get("fields") if isinstance(raw, dict) else None
    return parse_jira_time(fields.get("updated"), "updated") if isinstance(fields, dict) else None
