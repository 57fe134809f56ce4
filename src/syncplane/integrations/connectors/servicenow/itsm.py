"""ServiceNow ITSM: CAB change requests through the Table API (shared/api-notes/servicenow-itsm.md).

Auth: as the CMDB connector (same instance, same Table API): Basic, or OAuth 2.0 against the instance's
/oauth_token.do (password or client-credentials grant). The account needs itil (or sn_change_write) to
create and update change_request, and read access to sysapproval_approver, sys_user_group and sys_user.

Outbound:
- create: `POST /api/now/v2/table/change_request` -> 201 + the full record. Body: short_description,
  description, type, risk (see RISK_CODES), start_date/end_date (raw UTC "YYYY-MM-DD HH:MM:SS"),
  assignment_group (a sys_user_group sys_id, resolved once from its name), requested_by (the sys_user with
  the requester's email, when there is one), correlation_id = Syncplane's idempotency key,
  correlation_display = "Syncplane". A POST is not idempotent: HttpClient repeats it only on 429/503 (not
  processed); a caller that lost the answer looks the change up with `find_change` before creating again.
  Unknown body fields are silently ignored by the instance, so the answer's correlation_id is checked.
- request approval: the "Request Approval" UI action is `PATCH {"state": "-4"}` (normal) or `"-3"`
  (emergency, which skips Assess); standard changes are pre-approved and stay as created. Always numeric
  codes: text such as "assess" lands in the wrong state. Setting a state is safe to repeat.
- cancel: `PATCH {"state": "4", "work_notes": reason}`.

Inbound (record_kind "change"): the changes whose correlation_id starts with `correlation_prefix`,
`sysparm_query=correlation_idSTARTSWITH<prefix>[^sys_updated_on>=<cursor>]^ORDERBYsys_updated_on^ORDERBYsys_id`,
raw values (`sysparm_display_value=false`, reference links excluded, so references are bare sys_ids).
Paging: sysparm_limit/sysparm_offset following the Link header's rel="next", X-Total-Count as the fallback
(common.py, shared with the CMDB connector).
Each page's decided approvals come in one more request (`sysapprovalIN<page's sys_ids>^stateINapproved,rejected`)
and ride along in the raw record under APPROVALS_KEY, so `map_change` stays pure. `get_changes` batches the
same way: one `sys_idIN` request per 100 changes plus one approvals request.

Mapping (`canonical_state`): approved/rejected come from `approval` (a rejection has no state of its own: the
change usually goes back to New), the rest from `state`:

| state | approval | canonical |
|---|---|---|
| 4 Canceled | any | cancelled |
| 0 Review, 3 Closed | any | completed (close_code in `detail`) |
| -1 Implement | any | implementing |
| -5, -4, -3, -2 | rejected | rejected |
| -5, -4, -3, -2 | approved | approved |
| -2 Scheduled | other | approved (authorised; standard changes have no approvers) |
| -5, -4, -3 | requested | assess |
| -5 New | not requested, cancelled, not_required, duplicate | submitted |
| -4 Assess, -3 Authorize | not requested, ... | assess |
| anything else | not decided | assess (logged: a site-specific state) |

Quirks handled: every value is a string and "" means empty; "-5" sorts before "0" (states are compared as
codes, never ordered); `approval` says "not requested" with a space; approvals may appear seconds after the
state change (a flow), so a fresh change can still say "not requested"; dates are UTC without a zone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from syncplane.integrations.base import RATE_MAX, RATE_MIN, ConnectionResult, ConnectorContext, Page
from syncplane.integrations.choices import Category, SystemType
from syncplane.integrations.connectors.servicenow.common import (
    AUTH_TYPES,
    BASE_URL_EXAMPLE,
    BASE_URL_HELP,
    DATE_FORMAT,
    LOOKUP_BATCH,
    ORDER,
    OWNED_PATH_SUFFIXES,
    TableApiPaginator,
    parse_instance_date,
    table_api_client,
    total,
    value,
)
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    IntegrationError,
    PermanentError,
    RecordError,
)
from syncplane.integrations.itsm import ItsmConnector, risk_band
from syncplane.integrations.records import ApprovalDecision, ChangeDraft, ChangeState, ExternalChange
from syncplane.integrations.registry import register

logger = logging.getLogger("syncplane.integrations.servicenow_itsm")

API = "/api/now/v2/table"  # v2: an empty list is 200 + [] (v1 answers 404)
CHANGE_FIELDS = (
    "sys_id", "number", "state", "approval", "approval_set", "on_hold", "on_hold_reason", "close_code", "type",
    "risk", "short_description", "correlation_id", "correlation_display", "start_date", "end_date",
    "assignment_group", "sys_created_on", "sys_updated_on",
)
APPROVAL_FIELDS = (
    "sys_id", "sysapproval", "approver", "approver.name", "approver.email", "state", "comments", "sys_updated_on",
)
APPROVALS_KEY = "sysapproval_approver"  # where a raw change record carries its decided approval rows
APPROVALS_PAGE = 1000  # approval rows per request: a page of changes has few
CORRELATION_DISPLAY = "Syncplane"
SYS_ID = re.compile(r"[0-9a-f]{32}")

# risk_score band (itsm.RISK_BANDS) -> change_request.risk; reading back: 1 -> 90, 2 -> 70, 3 -> 45, 4 -> 15.
RISK_CODES = {"very_high": "1", "high": "2", "moderate": "3", "low": "4"}  # >= 80, 60-79, 30-59, < 30
RISK_SCORES = {"1": 90, "2": 70, "3": 45, "4": 15}

# state code -> canonical state, when `approval` does not decide it (see the module's table).
STATES = {
    "-5": ChangeState.SUBMITTED,  # New: we created it
    "-4": ChangeState.ASSESS,  # Assess: peer/technical review
    "-3": ChangeState.ASSESS,  # Authorize: CAB approval
    "-2": ChangeState.APPROVED,  # Scheduled: authorised, waiting for the planned start
    "-1": ChangeState.IMPLEMENTING,  # Implement
    "0": ChangeState.COMPLETED,  # Review: done, post-implementation review
    "3": ChangeState.COMPLETED,  # Closed (close_code says how it went)
    "4": ChangeState.CANCELLED,  # Canceled
}
AFTER_APPROVAL = frozenset({"-1", "0", "3", "4"})  # the approval field no longer decides the state
KNOWN_APPROVALS = frozenset({"not requested", "requested", "approved", "rejected", "cancelled", "not_required",
                             "duplicate", ""})
# change type -> the state "Request Approval" moves a new change to (None: pre-approved, nothing to request)
REVIEW_STATE = {"normal": "-4", "emergency": "-3", "standard": None}


def canonical_state(state: str, approval: str) -> str:
    """The canonical ChangeState of a change_request's raw `state` and `approval` codes."""
    if state in AFTER_APPROVAL:
        return STATES[state]
    if approval == "rejected":
        return ChangeState.REJECTED
    if approval == "approved":
        return ChangeState.APPROVED
    if state == "-2":
        return ChangeState.APPROVED
    if approval == "requested":
        return ChangeState.ASSESS
    if state in STATES:
        return STATES[state]
    # A site-specific state: nothing is decided, so "assess" (waiting for the CAB) is the state that neither
    # claims an approval nor ends the change.
    logger.warning("unknown change_request state %r mapped to assess", state[:20])
    return ChangeState.ASSESS


def instance_date(moment: datetime | None) -> str:
    """A datetime as the Table API takes it by default: UTC, "YYYY-MM-DD HH:MM:SS". Naive means UTC."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def map_approval(row: Any) -> ApprovalDecision | None:
    """A sysapproval_approver row -> ApprovalDecision; None for a row nobody has decided."""
    if not isinstance(row, dict):
        raise RecordError("an approval row is not an object")
    decision = value(row, "state")
    if decision not in ("approved", "rejected"):
        return None
    sys_id = value(row, "sys_id")
    if not sys_id:
        raise RecordError("an approval row has no sys_id")
    return ApprovalDecision(
        external_id=sys_id,
        approver=value(row, "approver.name") or value(row, "approver.email") or value(row, "approver"),
        decision=decision,
        comment=value(row, "comments"),
        decided_at=parse_instance_date(value(row, "sys_updated_on"), "approval sys_updated_on"),
    )


def map_change(raw: Any, instance_url: str = "") -> ExternalChange:
    """Pure: a change_request record (raw values, decided approvals under APPROVALS_KEY) -> ExternalChange."""
    if not isinstance(raw, dict):
        raise RecordError("record is not an object")
    sys_id = value(raw, "sys_id")
    if not SYS_ID.fullmatch(sys_id):
        raise RecordError(f"record has no usable sys_id: {sys_id[:40]!r}")
    number = value(raw, "number")
    if not number:
        raise RecordError(f"change {sys_id} has no number")
    state, approval = value(raw, "state"), value(raw, "approval")
    if approval not in KNOWN_APPROVALS:
        logger.warning("unknown change_request approval %r on %s: state decides", approval[:20], number)
    rows = raw.get(APPROVALS_KEY) or []
    if not isinstance(rows, list):
        raise RecordError(f"change {number}: {APPROVALS_KEY} is not a list")
    approvals = [decision for decision in map(map_approval, rows) if decision is not None]
    detail = [f"approval: {approval}"] if approval else []
    if value(raw, "close_code"):
        detail.append(f"close code: {value(raw, 'close_code')}")
    if value(raw, "on_hold") == "true":
        detail.append("on hold" + (f": {value(raw, 'on_hold_reason')}" if value(raw, "on_hold_reason") else ""))
    return ExternalChange(
        external_id=sys_id,
        number=number,
        state=ChangeState(canonical_state(state, approval)).value,  # a plain str, for JSON
        correlation_id=value(raw, "correlation_id"),
        updated_at=parse_instance_date(value(raw, "sys_updated_on"), "sys_updated_on"),
        approvals=approvals,
        url=f"{instance_url}/nav_to.do?uri=change_request.do%3Fsys_id%3D{sys_id}" if instance_url else "",
        detail="; ".join(detail),
    )


@register
class ServiceNowItsmConnector(ItsmConnector):
    system_type = SystemType.SERVICENOW_ITSM
    category = Category.ITSM
    display_name = "ServiceNow ITSM"
    base_url_help = BASE_URL_HELP
    base_url_example = BASE_URL_EXAMPLE
    owned_path_suffixes = OWNED_PATH_SUFFIXES
    auth_types = AUTH_TYPES
    # A business rule on change_request posts {"table", "sys_id", ...} through an outbound REST message that
    # carries the shared secret in a header (runbook: "ServiceNow ITSM", webhook).
    webhook_signature = "shared-secret"
    config_schema = {
        "type": "object",
        "properties": {
            "assignment_group": {
                "type": "string",
                "maxLength": 100,
                "pattern": "^[^\\^\\n\\r]*$",
                "default": "CAB",
                "description": "The group that assesses and approves the changes: its name in sys_user_group "
                "or its sys_id (32 hex). Empty: none (the instance then cannot move the change to Assess).",
            },
            "change_type": {"type": "string", "enum": ["normal", "standard", "emergency"], "default": "normal"},
            "standard_change_template": {
                "type": "string",
                "pattern": "^([0-9a-f]{32})?$",
                "default": "",
                "description": "sys_id of the std_change_producer_version a standard change is created from.",
            },
            "request_approval": {
                "type": "boolean",
                "default": True,
                "description": "Move each new change to Assess (normal) or Authorize (emergency), as the "
                "'Request Approval' button does. Off when a flow on the instance does it on insert.",
            },
            "risk_codes": {
                "type": "object",
                "properties": {
                    band: {"type": "string", "pattern": "^[0-9]{1,4}$"} for band in RISK_CODES
                },
                "additionalProperties": False,
                "default": dict(RISK_CODES),
                "description": "risk_score band -> change_request.risk code, for instances with their own risk "
                "choices (bands: very_high >= 80, high 60-79, moderate 30-59, low < 30).",
            },
            "correlation_prefix": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_.:-]{1,40}$",
                "default": "syncplane-",
                "description": "Syncplane's correlation ids start with this: the changes a sync reads.",
            },
            "page_size": {
                "type": "integer",
                "minimum": 1,
                "maximum": LOOKUP_BATCH,  # each page's approvals are read with one sysapprovalIN<ids> query
                "default": 100,
            },
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 10},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "additionalProperties": False,
        # A standard change is created from its template: refuse the config at save time, not at the first create.
        "if": {"properties": {"change_type": {"const": "standard"}}, "required": ["change_type"]},
        "then": {"required": ["standard_change_template"],
                 "properties": {"standard_change_template": {"minLength": 32}}},
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        self.instance_url = context.base_url.rstrip("/")
        self.client = table_api_client(context, self.config)
        self.risk_codes = {**RISK_CODES, **self.config["risk_codes"]}
        self._group: tuple[str, str] | None = None  # (sys_id, name), resolved once

    def close(self) -> None:
        self.client.close()

    # --- plumbing ---------------------------------------------------------------------------------

    def _list(self, table: str, query: str, fields: tuple[str, ...], offset: int, limit: int):
        params = {
            "sysparm_query": query,
            "sysparm_fields": ",".join(fields),
            "sysparm_exclude_reference_link": "true",
            "sysparm_limit": str(limit),
            "sysparm_offset": str(offset),
        }
        response = self.client.get(f"{API}/{table}", params=params)
        result = self._result(response)
        if not isinstance(result, list):
            raise PermanentError(f"GET {API}/{table} answered without a result list")
        return result, response

    def _result(self, response: httpx.Response) -> Any:
        body = self.client.json(response)
        return body.get("result") if isinstance(body, dict) else None

    def _write(self, method: str, path: str, body: dict, expected: tuple[int, ...]) -> dict:
        """POST/PATCH; a 403 here is an ACL, business rule or data policy refusing the write, not bad credentials."""
        params = {"sysparm_fields": ",".join(CHANGE_FIELDS), "sysparm_exclude_reference_link": "true"}
        try:
            # PATCH sets fields to fixed values: repeating it is safe. POST keeps HttpClient's default.
            idempotent = True if method == "PATCH" else None
            response = self.client.request(
                method, path, params=params, json=body, expected=expected, idempotent=idempotent
            )
        except AuthenticationError as exc:
            if exc.status_code == 403:
                raise PermanentError(exc.message, status_code=403) from None
            raise
        result = self._result(response)
        if not isinstance(result, dict):
            raise PermanentError(f"{method} {path} answered without a result record")
        return result

    def _query_value(self, text: str, what: str) -> str:
        # "^" separates encoded-query terms: a value containing it would change the query's meaning.
        if "^" in text or "\n" in text:
            raise PermanentError(f"{what} contains a character an encoded query cannot carry")
        return text

    def assignment_group(self) -> tuple[str, str] | None:
        """(sys_id, name) of the configured group; a name is looked up once in sys_user_group."""
        configured = self.config["assignment_group"].strip()
        if not configured:
            return None
        if self._group is None:
            if SYS_ID.fullmatch(configured):
                self._group = (configured, configured)
            else:
                rows, _ = self._list("sys_user_group", f"name={configured}", ("sys_id", "name"), 0, 2)
                if not rows:
                    raise ConfigurationError(
                        f"assignment_group: no group named {configured!r} in sys_user_group (or no read access)"
                    )
                self._group = (value(rows[0], "sys_id"), value(rows[0], "name"))
        return self._group

    def _requester(self, email: str) -> str:
        """sys_id of the sys_user with this email, or "" (the email then goes into the description)."""
        if not email or "^" in email:
            return ""
        rows, _ = self._list("sys_user", f"email={email}^active=true", ("sys_id",), 0, 1)
        return value(rows[0], "sys_id") if rows else ""

    def _approvals(self, change_ids: list[str]) -> dict[str, list[dict]]:
        """Decided approval rows of these changes (at most LOOKUP_BATCH ids), usually in one request."""
        by_change: dict[str, list[dict]] = {sys_id: [] for sys_id in change_ids}
        if not change_ids:
            return by_change
        query = f"sysapprovalIN{','.join(change_ids)}^stateINapproved,rejected^{ORDER}"
        pages = TableApiPaginator(APPROVALS_PAGE)
        for rows, _ in pages.pages(
                lambda offset: self._list("sysapproval_approver", query, APPROVAL_FIELDS, offset, APPROVALS_PAGE)):
            for row in rows:
                if isinstance(row, dict) and value(row, "sysapproval") in by_change:
                    by_change[value(row, "sysapproval")].append(row)
        return by_change

    def _with_approvals(self, records: list) -> list:
        """The records, each carrying its decided approvals under APPROVALS_KEY (one request for all)."""
        ids = [_safe_id(r) for r in records if SYS_ID.fullmatch(_safe_id(r))]
        approvals = self._approvals(ids)
        for raw in records:
            if isinstance(raw, dict) and _safe_id(raw) in approvals:
                raw[APPROVALS_KEY] = approvals[_safe_id(raw)]
        return records

    # --- outbound -----------------------------------------------------------------------------------

    def create_change(self, draft: ChangeDraft) -> ExternalChange:
        group = self.assignment_group()
        requester = self._requester(draft.requester_email)
        change_type = self.config["change_type"]
        body = {
            "short_description": draft.title[:160],
            "description": self._description(draft, requester_found=bool(requester)),
            "type": change_type,
            "risk": self.risk_codes[risk_band(draft.risk_score)],
            "correlation_id": draft.correlation_id,
            "correlation_display": CORRELATION_DISPLAY,
        }
        if draft.planned_start:
            body["start_date"] = instance_date(draft.planned_start)
        if draft.planned_end:
            body["end_date"] = instance_date(draft.planned_end)
        if group:
            body["assignment_group"] = group[0]
        if requester:
            body["requested_by"] = requester
        if change_type == "standard":
            body["std_change_producer_version"] = self.config["standard_change_template"]
        path = f"{API}/change_request"
        # 201 is documented; a 200 must not be taken for a failure: the change would exist unknown to us.
        record = self._write("POST", path, body, (200, 201))
        if value(record, "correlation_id") != draft.correlation_id:
            # Fields are silently dropped (ACL, business rule): without it find_change cannot find this change.
            logger.error(
                "%s was created but its correlation_id was not stored: a retry could not find it",
                value(record, "number"),
            )
        change = self.map_change(record)
        review_state = REVIEW_STATE[change_type]
        if self.config["request_approval"] and review_state and value(record, "state") == "-5":
            try:
                record = self._write("PATCH", f"{path}/{change.external_id}", {"state": review_state}, (200,))
            except IntegrationError as exc:
                # The change exists: failing now would make the caller create it again. It stays New.
                logger.warning("%s was created, but requesting approval failed: %s", change.number, exc)
                change.detail = f"created, but approval could not be requested: {exc}"
                return change
            change = self.map_change(record)
        return change

    def _description(self, draft: ChangeDraft, requester_found: bool) -> str:
        lines = [draft.description.strip()] if draft.description.strip() else []
        if draft.affected_assets:
            lines.append("Affected assets: " + ", ".join(draft.affected_assets))
        if draft.requester_email and not requester_found:
            lines.append(f"Requested by: {draft.requester_email}")
        lines.append(f"Submitted by Syncplane (correlation id {draft.correlation_id}).")
        return "\n\n".join(lines)

    def find_change(self, correlation_id: str) -> ExternalChange | None:
        query = f"correlation_id={self._query_value(correlation_id, 'correlation id')}^ORDERBYsys_created_on"
        rows, _ = self._list("change_request", query, CHANGE_FIELDS, 0, 10)
        rows = [r for r in rows if isinstance(r, dict) and value(r, "correlation_id") == correlation_id]
        if not rows:
            return None
        if len(rows) > 1:
            logger.warning(
                "%d changes carry correlation id %s; the first created (%s) is used",
                len(rows), correlation_id, value(rows[0], "number"),
            )
        return self.map_change(self._with_approvals(rows[:1])[0])

    def get_changes(self, external_ids: list[str]) -> list[ExternalChange]:
        """One `sys_idIN` request and one approvals request per 100 changes; ids that are not sys_ids, and
        changes gone or hidden by an ACL, are left out."""
        ids = list(dict.fromkeys(i for i in external_ids if isinstance(i, str) and SYS_ID.fullmatch(i)))
        changes = []
        for start in range(0, len(ids), LOOKUP_BATCH):
            batch = ids[start : start + LOOKUP_BATCH]
            rows, _ = self._list("change_request", f"sys_idIN{','.join(batch)}", CHANGE_FIELDS, 0, len(batch))
            for raw in self._with_approvals(rows):
                try:
                    changes.append(self.map_change(raw))
                except RecordError as exc:
                    logger.warning("change %s cannot be read: %s", _safe_id(raw), exc)
        return changes

    def cancel_change(self, external_id: str, reason: str) -> ExternalChange:
        if not SYS_ID.fullmatch(external_id or ""):
            raise PermanentError(f"{external_id!r} is not a ServiceNow sys_id")
        body = {"state": "4", "work_notes": reason or "Cancelled in Syncplane"}
        record = self._write("PATCH", f"{API}/change_request/{external_id}", body, (200,))
        return self.map_change(self._with_approvals([record])[0])

    def webhook_change_ids(self, payload: dict) -> list[str]:
        """`{"table": "change_request", "sys_id": ...}` (runbook), or a list in "sys_ids"; a rule on
        sysapproval_approver may post {"table": "sysapproval_approver", "sysapproval": <change sys_id>}."""
        if not isinstance(payload, dict):
            return []
        table = payload.get("table") or "change_request"
        if table == "sysapproval_approver":
            candidates = [payload.get("sysapproval")]
        elif table == "change_request":
            many = payload.get("sys_ids")
            candidates = [payload.get("sys_id"), *(many if isinstance(many, list) else [])]
        else:
            return []
        return [c for c in dict.fromkeys(candidates) if isinstance(c, str) and SYS_ID.fullmatch(c)]

    # --- inbound ------------------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        prefix = self.config["correlation_prefix"]
        _, response = self._list("change_request", f"correlation_idSTARTSWITH{prefix}", ("sys_id",), 0, 1)
        changes = total(response)
        group = self.assignment_group()
        message = "Connected: change_request is readable" + (
            f", {changes} Syncplane change(s)" if changes is not None else ""
        )
        message += f"; assignment group {group[1]} ({group[0]})." if group else "; no assignment group configured."
        return ConnectionResult(
            ok=True,
            message=message,
            details={"changes": changes, "assignment_group": group[0] if group else None},
        )

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        # As the CMDB connector: a resumed run starts again from the greatest committed change marker, not
        # an offset (offsets shift when changes are updated in between); boundary rows are re-read.
        since = resume.get("since") if resume else (cursor if mode == "incremental" else None)
        parts = [f"correlation_idSTARTSWITH{self.config['correlation_prefix']}"]
        if since:
            parts.append(f"sys_updated_on>={self._query_value(str(since), 'cursor')}")
        query, limit, greatest = "^".join([*parts, ORDER]), self.config["page_size"], since

        def read(offset: int) -> tuple[list, httpx.Response]:
            records, response = self._list("change_request", query, CHANGE_FIELDS, offset, limit)
            return self._with_approvals(records), response

        pages = TableApiPaginator(limit)
        for records, response in pages.pages(read):
            for raw in records:
                updated = _safe(raw, "sys_updated_on")
                if updated and (greatest is None or updated > greatest):
                    greatest = updated
            resume_token = None if pages.finished else {"since": greatest}
            yield Page(records=records, resume=resume_token, cursor=greatest, total=total(response))

    def map_change(self, raw: dict) -> ExternalChange:
        return map_change(raw, self.instance_url)

    def external_id(self, raw: Any) -> str:
        return _safe_id(raw)[:255]


def _safe(raw: Any, name: str) -> str:
    try:
        return value(raw, name) if isinstance(raw, dict) else ""
    except RecordError:
        return ""


def _safe_id(raw: Any) -> str:
    return _safe(raw, "sys_id")
