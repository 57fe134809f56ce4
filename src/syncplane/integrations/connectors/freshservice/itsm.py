"""Freshservice ITSM: CAB change requests through the v2 changes API (see shared/api-notes/freshservice-itsm.md).

Auth: the API key of an agent as the Basic user name, "X" as the password, exactly as the CMDB connector
(`FreshserviceKeyAuth`, common.py); the key is the secret `api_key` credential of auth type "api_key". Assets and
changes share one account, one base URL and one per-minute, account-wide credit budget.

Calls:
- create: `POST /api/v2/changes` -> 201 `{"change": {...}}`. Not idempotent: HttpClient repeats it only on
  429/503 (nothing was processed). Syncplane's correlation id travels in a change custom field (config
  `correlation_field`, default `syncplane_correlation_id`, created by the admin on the change form) under
  `custom_fields`, and is repeated in the description for people.
- find: `GET /api/v2/changes?updated_since=<now - find_lookback_days>` paged, matching the custom field. There
  is no search by custom field; a change updated since its creation is still inside the window. List items of
  a real account may lack `custom_fields` (reads by id carry them): then the unknown changes of our requester
  in the window are read by id, newest first, until one carries the correlation id (a rare path: only a
  create whose answer was lost is looked for).
- read many: the API has no "changes by id list" call. `get_changes` pages the list (newest first, 100 per
  page, `updated_since` far in the past so the 30-day default window does not hide older changes) until every
  id is found, or the ids on the page fall below the smallest one asked for; one or two ids are read with
  `GET /api/v2/changes/{id}` instead (1 credit each).
- approvals: `GET /api/v2/changes/{id}/approvals`, one request per change: there is no batch form. Only changes
  whose `approval_status` says someone answered (1 approved, 2 rejected, 3 cancelled, 5 peer responded) are
  asked; a new change (4 "not requested") or one still waiting (0) costs nothing extra.
- cancel: Freshservice has no "cancelled" status. `PUT /api/v2/changes/{id}` with status 6 Closed (or the
  account's custom cancelled status, config `cancelled_status`), then `POST /api/v2/changes/{id}/notes` with
  the reason.
- requester: config `requester_id`, or `requester_email` looked up once per connector with
  `GET /api/v2/requesters?email=` and then `GET /api/v2/agents?email=`.

Paging: `page` / `per_page` (max 100), following the Link header's rel="next"; no header on the last page.
The list hides changes created more than 30 days ago unless `updated_since` is given: every list call here
passes it.
Streams (`fetch`): the changes Syncplane created, updated since the cursor (incremental) or since the epoch
(full). They are recognised by the external id stored at create (`context.known_ids`, read once per run),
and by the correlation custom field only for a change whose create answer was lost: list items of a real
account may carry no `custom_fields` at all. The list is ordered by creation, not by update, so the cursor
(the greatest `updated_at` seen) is only final after the whole pass; `updated_since` is inclusive and records
at the boundary are read again, unchanged by fingerprint. A status neither the table below nor `status_map`
knows is counted on the run (`MappedRecord.unmapped`).

State mapping (`map_change`, pure). `approval_status`: 0 requested, 1 approved, 2 rejected, 3 cancelled,
4 not requested, 5 peer responded. `status`: 1 Open, 2 Planning, 3 Awaiting Approval, 4 Pending Release,
5 Pending Review, 6 Closed (accounts add custom statuses; config `status_map`).

| status | approval_status | canonical |
|---|---|---|
| any | 2 rejected | rejected |
| 1 Open | 1 | approved |
| 1 Open | 0, 5 | assess |
| 1 Open | 3, 4, none | submitted |
| 2 Planning, 3 Awaiting Approval | 1 | approved |
| 2 Planning, 3 Awaiting Approval | 0, 3, 4, 5, none | assess |
| 4 Pending Release | 1, with a planned start | scheduled |
| 4 Pending Release | 1, no planned start | approved |
| 4 Pending Release | not 1 | assess (never "approved" without an approval) |
| 5 Pending Review (released, under review) | any but 2 | implementing |
| 6 Closed | 1 | completed |
| 6 Closed | 0, 3, 4, 5, none | cancelled (closed without passing the CAB: withdrawn) |
| custom, in `status_map` | any but 2 | the mapped state |
| custom, not mapped | 1 / other | approved / assess, and a warning in the log |

Risk (`risk`: 1 Low, 2 Medium, 3 High, 4 Very High), from `risk_band(risk_score)` through config `risk_map`:

| risk_score | band | Freshservice `risk` |
|---|---|---|
| 80-100 | very_high | 4 Very High |
| 60-79 | high | 3 High |
| 30-59 | moderate | 2 Medium |
| 0-29 | low | 1 Low |

Webhooks: a Workflow Automator rule's "Trigger Webhook" action, with a JSON body the admin writes
(`{"change_id": "{{change.id}}"}`) and the shared secret in an `X-Syncplane-Webhook-Secret` header. The body
is a hint: the change is read back by id.

Quirks: integers for status, priority, impact, risk and change type (strings for asset impact); approval_status
is an int on the change and an object `{id, name}` on approval rows; `description` is HTML (sent escaped);
ids are the small numbers people see, used as both external id and number.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from syncplane.integrations.base import (
    MAX_CONFIG_ID,
    RATE_MAX,
    RATE_MIN,
    ConnectionResult,
    ConnectorContext,
    MappedRecord,
    Page,
)
from syncplane.integrations.choices import AuthType, Category, SystemType
from syncplane.integrations.connectors.freshservice.common import (
    MAX_PAGE_SIZE,
    LinkedPages,
    freshservice_client,
    pace,
    parse_time,
)
from syncplane.integrations.errors import ConfigurationError, PermanentError, RecordError
from syncplane.integrations.itsm import RISK_BANDS, ItsmConnector, risk_band
from syncplane.integrations.records import ApprovalDecision, ChangeDraft, ChangeState, ExternalChange
from syncplane.integrations.registry import register

logger = logging.getLogger("syncplane.integrations.freshservice_itsm")

CHANGES = "/api/v2/changes"
EPOCH = "1970-01-01T00:00:00Z"  # updated_since for "every change": without it the list shows 30 days only
SINGLE_READ_MAX = 2  # up to this many ids, GET /changes/{id} each is cheaper than paging the list

OPEN, PLANNING, AWAITING_APPROVAL, PENDING_RELEASE, PENDING_REVIEW, CLOSED = 1, 2, 3, 4, 5, 6
STATUS_NAMES = {1: "Open", 2: "Planning", 3: "Awaiting Approval", 4: "Pending Release", 5: "Pending Review",
                6: "Closed"}
REQUESTED, APPROVED, REJECTED, CANCELLED, NOT_REQUESTED, PEER_RESPONDED = 0, 1, 2, 3, 4, 5
APPROVAL_NAMES = {0: "requested", 1: "approved", 2: "rejected", 3: "cancelled", 4: "not requested",
                  5: "peer responded"}
APPROVAL_DETAIL_STATUSES = frozenset({APPROVED, REJECTED, CANCELLED, PEER_RESPONDED})  # rows worth reading
DECISIONS = {APPROVED: "approved", REJECTED: "rejected"}
RISK_MAP = {"low": 1, "moderate": 2, "high": 3, "very_high": 4}
CHANGE_TYPES = {1: "Minor", 2: "Standard", 3: "Major", 4: "Emergency"}
CHANGE_STATES = [state.value for state in ChangeState if state != ChangeState.DRAFT]
_CUSTOM_FIELD = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
_TRAILING_NUMBER = re.compile(r"(\d+)\s*$")


def _int(value: Any) -> int | None:
    return value if type(value) is int else None  # noqa: E721 - bool is not an id or a code


def _iso(moment: datetime) -> str:
    """Freshservice's date format: ISO-8601 UTC with Z, whole seconds (a naive time is taken as UTC, as Django
    stores it)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def risk_code(score: int, risk_map: dict[str, int] | None = None) -> int:
    """risk_score 0-100 -> Freshservice `risk` (1 Low, 2 Medium, 3 High, 4 Very High)."""
    return (risk_map or RISK_MAP)[risk_band(score)]


def canonical_state(status: int, approval_status: int | None, planned_start: Any,
                    status_map: dict[str, str] | None = None) -> str | None:
    """The table in the module docstring; None for a status the table and `status_map` do not know."""
    if approval_status == REJECTED:
        return ChangeState.REJECTED
    mapped = (status_map or {}).get(str(status))
    if mapped:
        return mapped
    approved = approval_status == APPROVED
    if status == OPEN:
        if approved:
            return ChangeState.APPROVED
        return ChangeState.ASSESS if approval_status in (REQUESTED, PEER_RESPONDED) else ChangeState.SUBMITTED
    if status in (PLANNING, AWAITING_APPROVAL):
        return ChangeState.APPROVED if approved else ChangeState.ASSESS
    if status == PENDING_RELEASE:
        if not approved:
            return ChangeState.ASSESS
        return ChangeState.SCHEDULED if planned_start else ChangeState.APPROVED
    if status == PENDING_REVIEW:
        return ChangeState.IMPLEMENTING
    if status == CLOSED:
        return ChangeState.COMPLETED if approved else ChangeState.CANCELLED
    return None


def _remark(value: Any) -> str:
    """latest_remark: a string, or an object with the text (shape UNCONFIRMED), or null."""
    if isinstance(value, dict):
        value = value.get("remark") or value.get("body") or value.get("body_text") or ""
    return value.strip() if isinstance(value, str) else ""


def map_approvals(rows: Any) -> list[ApprovalDecision]:
    """Approval rows -> the decided ones (approved / rejected); requested and cancelled rows are not decisions."""
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise RecordError(f"approvals is not a list: {type(rows).__name__}")
    decisions = []
    for row in rows:
        if not isinstance(row, dict) or _int(row.get("id")) is None:
            raise RecordError("an approval row has no integer id")
        status = row.get("approval_status")
        status_id = _int(status.get("id")) if isinstance(status, dict) else _int(status)
        if status_id not in DECISIONS:
            continue
        approver = str(row.get("approver_name") or "").strip() or (
            f"approver {row['approver_id']}" if row.get("approver_id") is not None else "")
        decisions.append(ApprovalDecision(
            external_id=str(row["id"]),
            approver=approver,
            decision=DECISIONS[status_id],
            comment=_remark(row.get("latest_remark")),
            decided_at=parse_time(row.get("updated_at"), "approvals.updated_at"),
        ))
    return decisions


def map_change(raw: Any, *, correlation_field: str, status_map: dict[str, str] | None = None,
               base_url: str = "") -> ExternalChange:
    """One change (with an `approvals` list when `fetch` or `get_changes` read it) -> ExternalChange."""
    if not isinstance(raw, dict):
        raise RecordError("record is not an object")
    change_id = _int(raw.get("id"))
    if change_id is None:
        raise RecordError("record has no integer id")
    status = _int(raw.get("status"))
    if status is None:
        raise RecordError(f"change {change_id} has no integer status")
    approval_status = _int(raw.get("approval_status"))
    if raw.get("approval_status") is not None and approval_status is None:
        raise RecordError(f"change {change_id}: approval_status is not an integer")
    planned_start = parse_time(raw.get("planned_start_date"), "planned_start_date")
    updated = parse_time(raw.get("updated_at"), "updated_at")
    custom = raw.get("custom_fields")
    if custom is not None and not isinstance(custom, dict):
        raise RecordError(f"change {change_id}: custom_fields is not an object")
    correlation = (custom or {}).get(correlation_field)
    state = canonical_state(status, approval_status, planned_start, status_map)
    if state is None:
        # A custom status nobody mapped: never invent progress. Approved stays approved, anything else waits.
        state = ChangeState.APPROVED if approval_status == APPROVED else ChangeState.ASSESS
        logger.warning("unknown Freshservice change status", extra={
            "change_id": change_id, "status": status, "mapped_to": str(state)})
    status_name = STATUS_NAMES.get(status) or f"custom status {status}"
    approval_name = APPROVAL_NAMES.get(approval_status, "none") if approval_status is not None else "none"
    return ExternalChange(
        external_id=str(change_id),
        number=str(change_id),
        state=str(state),
        correlation_id=str(correlation).strip() if correlation is not None else "",
        updated_at=updated,
        approvals=map_approvals(raw.get("approvals")),
        url=f"{base_url.rstrip('/')}/a/changes/{change_id}" if base_url else "",
        detail=f"status: {status_name}; approval: {approval_name}",
    )


def webhook_ids(payload: Any) -> list[str]:
    """Change ids in a notification: the admin's rule body (`{"change_id": "17"}`, "#CHN-17" tolerated, or
    `{"change_ids": [...]}`) or a marketplace app's event (`{"data": {"change": {"id": 17}}}`)."""
    if not isinstance(payload, dict):
        return []
    values: list[Any] = []
    if "change_id" in payload:
        values.append(payload["change_id"])
    if isinstance(payload.get("change_ids"), list):
        values.extend(payload["change_ids"])
    for holder in (payload, payload.get("data") if isinstance(payload.get("data"), dict) else {}):
        change = holder.get("change")
        if isinstance(change, dict) and "id" in change:
            values.append(change["id"])
    ids = []
    for value in values:
        if type(value) is int:  # noqa: E721
            text = str(value)
        elif isinstance(value, str) and (match := _TRAILING_NUMBER.search(value)):
            text = match.group(1)
        else:
            continue
        text = str(int(text))
        if int(text) > 0 and text not in ids:
            ids.append(text)
    return ids


@register
class FreshserviceITSMConnector(ItsmConnector):
    system_type = SystemType.FRESHSERVICE_ITSM
    category = Category.ITSM
    display_name = "Freshservice ITSM"
    base_url_help = (
        "The account URL, nothing after the host: the connector adds /api/v2/... (a custom domain answers "
        "HTML)."
    )
    base_url_example = "https://acme.freshservice.com"
    owned_path_suffixes = ("/api/v2", "/api")
    auth_types = (AuthType.API_KEY,)  # the agent's API key, sent as Basic "<key>:X"
    webhook_signature = "shared-secret"
    config_schema = {
        "type": "object",
        "properties": {
            "requester_id": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CONFIG_ID, "default": None,
                             "description": "Freshservice id of the requester (or agent) who raises the "
                             "changes. Takes precedence over requester_email."},
            "requester_email": {"type": "string", "default": "", "maxLength": 254,
                                "description": "E-mail of the requester or agent who raises the changes, looked "
                                "up once (requesters first, then agents) when requester_id is not set."},
            "group_id": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CONFIG_ID, "default": None,
                         "description": "Agent group the changes are assigned to (e.g. the CAB's group)."},
            "change_type": {"type": "integer", "enum": sorted(CHANGE_TYPES), "default": 1,
                            "description": "1 Minor, 2 Standard, 3 Major, 4 Emergency."},
            "priority": {"type": "integer", "enum": [1, 2, 3, 4], "default": 2,
                         "description": "1 Low, 2 Medium, 3 High, 4 Urgent."},
            "impact": {"type": "integer", "enum": [1, 2, 3], "default": 2,
                       "description": "1 Low, 2 Medium, 3 High."},
            "workspace_id": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_CONFIG_ID, "default": None,
                             "description": "Accounts with Workspaces: the workspace changes are created in "
                             "and listed from (unset: the primary workspace)."},
            "correlation_field": {"type": "string", "pattern": _CUSTOM_FIELD, "default": "syncplane_correlation_id",
                                  "description": "Name of the change custom field (single-line text) that "
                                  "carries Syncplane's correlation id; it marks the changes Syncplane created."},
            "risk_map": {"type": "object", "properties": {
                band: {"type": "integer", "enum": [1, 2, 3, 4]} for _, band in RISK_BANDS},
                "additionalProperties": False, "required": [band for _, band in RISK_BANDS],
                "default": dict(RISK_MAP),
                "description": "Risk band of risk_score -> Freshservice risk (1 Low, 2 Medium, 3 High, 4 Very High)."},
            "status_map": {"type": "object", "propertyNames": {"pattern": r"^\d+$"},
                           "additionalProperties": {"type": "string", "enum": CHANGE_STATES}, "default": {},
                           "description": "The account's custom status values -> canonical state, e.g. "
                           "{\"7\": \"implementing\"}. Overrides the built-in table for those values."},
            "cancelled_status": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CONFIG_ID, "default": None,
                                 "description": "A custom 'Cancelled' status to set on cancel (map it to "
                                 "cancelled in status_map); unset: cancel closes the change (status 6)."},
            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": MAX_PAGE_SIZE,
                          "description": "per_page of the change list (the API's maximum is 100)."},
            "find_lookback_days": {"type": "integer", "minimum": 1, "maximum": 365, "default": 7,
                                   "description": "How far back a retry looks for a change it may already "
                                   "have created (updated_since = now - this many days)."},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 1.0,
                                      "description": "Client-side pace; the budget is per minute and shared "
                                      "with every other user of the account (CMDB sync included)."},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 30},
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext, *, pace_sleep=time.sleep, clock=None):
        super().__init__(context)
        self.client = freshservice_client(context, self.config)
        self._pace_sleep = pace_sleep
        self._clock = clock or (lambda: datetime.now(UTC))
        self._requester_id: int | None = self.config["requester_id"]

    def close(self) -> None:
        self.client.close()

    # --- requests --------------------------------------------------------------------------------

    def _scoped(self, params: dict) -> dict:
        if self.config["workspace_id"] is not None:
            return {**params, "workspace_id": str(self.config["workspace_id"])}
        return params

    def _body(self, response: httpx.Response, key: str, kind: type) -> Any:
        self._pace(response)
        body = self.client.json(response)
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, kind):
            raise PermanentError(f"{response.request.method} {response.request.url.path} answered without "
                                 f"a{'n' if key[0] in 'aeiou' else ''} {key}")
        return value

    def _pace(self, response: httpx.Response) -> None:
        pace(response, self._pace_sleep)

    def _list_pages(self, since: str, page: int = 1) -> Iterator[tuple[list[dict], int | None]]:
        """(changes of one list page, next page number or None), newest first, from `page` on."""
        per_page = self.config["page_size"]

        def read(number: int) -> tuple[list[dict], httpx.Response]:
            response = self.client.get(CHANGES, params=self._scoped(
                {"updated_since": since, "page": str(number), "per_page": str(per_page)}))
            return self._body(response, "changes", list), response

        pages = LinkedPages(page)
        for changes, _ in pages.pages(read):
            yield changes, None if pages.finished else pages.current

    def _read_one(self, external_id: str) -> dict | None:
        response = self.client.get(f"{CHANGES}/{external_id}", expected=(200, 404))
        if response.status_code == 404:
            self._pace(response)
            return None  # a wrong id, a deleted change, or another workspace
        return self._body(response, "change", dict)

    def _with_approvals(self, changes: list[dict]) -> list[dict]:
        """Attach `approvals` to the changes whose approval_status says someone answered. One request per such
        change: Freshservice has no call that returns the approvals of several changes."""
        for change in changes:
            if isinstance(change, dict) and _int(change.get("id")) is not None \
                    and change.get("approval_status") in APPROVAL_DETAIL_STATUSES:
                response = self.client.get(f"{CHANGES}/{change['id']}/approvals", expected=(200, 404))
                if response.status_code == 404:
                    self._pace(response)
                    continue  # deleted between the two calls: the mapping goes on without approvals
                change["approvals"] = self._body(response, "approvals", list)
        return changes

    def _correlation(self, change: Any) -> str:
        custom = change.get("custom_fields") if isinstance(change, dict) else None
        value = custom.get(self.config["correlation_field"]) if isinstance(custom, dict) else None
        return value.strip() if isinstance(value, str) else ""

    def _known_ids(self) -> set[str]:
        return self.context.known_ids() if self.context.known_ids else set()

    def _is_ours(self, change: Any, known: set[str]) -> bool:
        """Created by Syncplane: its id was stored at create, or (the create answer was lost) it carries a
        correlation id."""
        if not isinstance(change, dict):
            return False
        return (_int(change.get("id")) is not None and str(change["id"]) in known) or bool(self._correlation(change))

    def requester_id(self) -> int:
        """The configured requester id, or the id behind requester_email (looked up once)."""
        if self._requester_id is not None:
            return self._requester_id
        email = self.config["requester_email"].strip()
        if not email:
            raise ConfigurationError("set requester_id or requester_email: Freshservice needs a requester "
                                     "for every change")
        for kind in ("requesters", "agents"):
            response = self.client.get(f"/api/v2/{kind}", params={"email": email})
            for person in self._body(response, kind, list):
                person_email = (person.get("primary_email") or person.get("email") or "") \
                    if isinstance(person, dict) else ""
                if person_email.strip().lower() == email.lower() and _int(person.get("id")) is not None:
                    self._requester_id = person["id"]
                    return self._requester_id
        raise ConfigurationError(f"requester_email {email} is neither a requester nor an agent in Freshservice")

    # --- outbound --------------------------------------------------------------------------------

    def create_body(self, draft: ChangeDraft, requester_id: int) -> dict:
        config = self.config
        paragraphs = [html.escape(line) for line in draft.description.splitlines() if line.strip()]
        body_html = "".join(f"<p>{p}</p>" for p in paragraphs)
        if draft.affected_assets:
            items = "".join(f"<li>{html.escape(name)}</li>" for name in draft.affected_assets)
            body_html += f"<p>Affected assets:</p><ul>{items}</ul>"
        footer = f"Syncplane correlation id: {html.escape(draft.correlation_id)}"
        if draft.requester_email:
            footer = f"Submitted by {html.escape(draft.requester_email)} through Syncplane. " + footer
        body: dict[str, Any] = {
            "requester_id": requester_id,
            "subject": draft.title.strip()[:255],
            "description": body_html + f"<p>{footer}</p>",
            "status": OPEN,
            "priority": config["priority"],
            "impact": config["impact"],
            "risk": risk_code(draft.risk_score, config["risk_map"]),
            "change_type": config["change_type"],
            "custom_fields": {config["correlation_field"]: draft.correlation_id},
        }
        if draft.planned_start:
            body["planned_start_date"] = _iso(draft.planned_start)
        if draft.planned_end:
            body["planned_end_date"] = _iso(draft.planned_end)
        if config["group_id"] is not None:
            body["group_id"] = config["group_id"]
        if config["workspace_id"] is not None:
            body["workspace_id"] = config["workspace_id"]
        return body

    def create_change(self, draft: ChangeDraft) -> ExternalChange:
        # 400 (validation, the vendor's errors[] in the message), 403 and 422 are permanent; HttpClient sends
        # a POST again only on 429/503, where Freshservice did not process it.
        body = self.create_body(draft, self.requester_id())
        response = self.client.post(CHANGES, json=body, expected=(201,))
        return self.map_change(self._body(response, "change", dict))

    def find_change(self, correlation_id: str) -> ExternalChange | None:
        since = _iso(self._clock() - timedelta(days=self.config["find_lookback_days"]))
        known = self._known_ids()
        unread: list[dict] = []  # list items without custom_fields: the field is only on a read by id
        for changes, _ in self._list_pages(since):
            for change in changes:
                if not isinstance(change, dict) or _int(change.get("id")) is None:
                    continue
                if self._correlation(change) == correlation_id:
                    return self.map_change(self._with_approvals([change])[0])
                if "custom_fields" not in change and str(change["id"]) not in known:
                    unread.append(change)
        requester = self.requester_id() if unread else None  # Syncplane raises its changes for this person
        for item in unread:  # newest first: a lost create is among the latest
            if item.get("requester_id") not in (None, requester):
                continue
            change = self._read_one(str(item["id"]))
            if change is not None and self._correlation(change) == correlation_id:
                return self.map_change(self._with_approvals([change])[0])
        return None

    def get_changes(self, external_ids: list[str]) -> list[ExternalChange]:
        """Changes by id. No batch read exists: for more than two ids the list is paged (newest first) until
        all are found or the page has gone below the smallest id asked for; approvals cost one request per
        change that has answers (see `_with_approvals`)."""
        wanted = list(dict.fromkeys(i.strip() for i in external_ids if i and i.strip().isdigit()))
        if not wanted:
            return []
        found: dict[str, dict] = {}
        if len(wanted) <= SINGLE_READ_MAX:
            for external_id in wanted:
                change = self._read_one(external_id)
                if change is not None:
                    found[external_id] = change
        else:
            remaining, lowest = set(wanted), min(int(i) for i in wanted)
            for changes, _ in self._list_pages(EPOCH):
                ids = [_int(c.get("id")) if isinstance(c, dict) else None for c in changes]
                for change_id, change in zip(ids, changes, strict=True):
                    if change_id is not None and str(change_id) in remaining:
                        found[str(change_id)] = change
                        remaining.discard(str(change_id))
                known = [i for i in ids if i is not None]
                descending = all(a > b for a, b in zip(known, known[1:], strict=False))
                # Newest first and already below every id asked for: the missing ones are gone (deleted or in
                # another workspace). Only trusted when this page really is in descending order.
                if not remaining or (known and descending and known[-1] < lowest):
                    break
        self._with_approvals(list(found.values()))
        return [self.map_change(found[i]) for i in wanted if i in found]

    def cancel_change(self, external_id: str, reason: str) -> ExternalChange:
        if not external_id.strip().isdigit():
            raise PermanentError(f"{external_id!r} is not a Freshservice change id")
        status = self.config["cancelled_status"] or CLOSED
        response = self.client.request("PUT", f"{CHANGES}/{external_id}", json={"status": status})
        change = self._body(response, "change", dict)
        note = "Cancelled from Syncplane" + (f": {reason.strip()}" if reason.strip() else ".")
        noted = self.client.post(f"{CHANGES}/{external_id}/notes", json={"body": f"<p>{html.escape(note)}</p>"},
                                 expected=(200, 201))
        self._pace(noted)
        result = self.map_change(self._with_approvals([change])[0])
        if result.state == ChangeState.COMPLETED and not self.config["cancelled_status"]:
            # Closed after approval reads as completed later on; what Syncplane did here is a cancellation.
            result.state, result.detail = ChangeState.CANCELLED.value, f"{result.detail}; closed as cancelled"
        return result

    # --- inbound ---------------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        response = self.client.get(CHANGES, params=self._scoped({"per_page": "1", "updated_since": EPOCH}))
        self._body(response, "changes", list)
        details = {"rate_limit_total": response.headers.get("X-Ratelimit-Total"),
                   "rate_limit_remaining": response.headers.get("X-Ratelimit-Remaining")}
        try:
            requester = self.requester_id()
        except ConfigurationError as exc:
            return ConnectionResult(ok=False, message=f"Changes are readable, but {exc}", details=details)
        details["requester_id"] = requester
        return ConnectionResult(ok=True, message=f"Connected to Freshservice: changes are readable; changes "
                                f"will be raised for requester {requester}.", details=details)

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        # Asked here, in the caller's thread: the engine reads the pages in a read-ahead thread.
        return self._changes(mode, cursor, resume, self._known_ids())

    def _changes(self, mode: str, cursor: Any, resume: dict | None, known: set[str]) -> Iterator[Page]:
        resume = resume or {}
        since = resume.get("since") or (cursor if mode == "incremental" and cursor else EPOCH)
        greatest = resume.get("greatest")
        for changes, next_page in self._list_pages(since, int(resume.get("page") or 1)):
            for change in changes:
                greatest = _later(greatest, change)
            ours = self._with_approvals([c for c in changes if self._is_ours(c, known)])
            yield Page(records=ours, cursor=greatest,
                       resume={"page": next_page, "since": since, "greatest": greatest} if next_page else None)

    def map_change(self, raw: dict) -> ExternalChange:
        return map_change(raw, correlation_field=self.config["correlation_field"],
                          status_map=self.config["status_map"], base_url=self.context.base_url)

    def map_record(self, raw: dict) -> MappedRecord:
        record = super().map_record(raw)
        status = raw["status"]  # map_change checked it is an integer
        if status not in STATUS_NAMES and str(status) not in self.config["status_map"]:
            record.unmapped = {"status": str(status)}
        return record

    def external_id(self, raw: Any) -> str:
        value = raw.get("id") if isinstance(raw, dict) else None
        return str(value) if _int(value) is not None else ""

    def webhook_change_ids(self, payload: dict) -> list[str]:
        return webhook_ids(payload)


def _later(greatest: str | None, change: Any) -> str | None:
    """The later of the cursor so far and this change's updated_at (both ISO strings as the API sends them)."""
    try:
        updated = parse_time(change.get("updated_at"), "updated_at") if isinstance(change, dict) else None
    except RecordError:
        return greatest  # the mapping reports it, with the record
    if updated is None:
        return greatest
    current = parse_time(greatest, "cursor") if greatest else None
    return change["updated_at"] if current is None or updated > current else greatest
