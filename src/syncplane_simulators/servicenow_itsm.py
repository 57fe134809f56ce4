"""ServiceNow change management (Table API) simulator: the ITSM half of the ServiceNow instance.

See shared/api-notes/servicenow-itsm.md (and servicenow-cmdb.md for auth, value shapes, errors, paging).
A real instance serves the CMDB and the change tables from one base URL, so this is not a WSGI app of its
own: `ServiceNowSimulator` (simulators/servicenow.py) authenticates, applies fault injection and then hands
requests for the tables below and for the control actions below to `ServiceNowItsm`.

What it imitates:
- `change_request`: POST (201 + full record, `Location` header), GET list/single, PATCH/PUT; unknown body
  fields silently ignored; numbering CHG0030001, CHG0030002...; every value a string; dates raw UTC
  "YYYY-MM-DD HH:MM:SS"; references as {link, value} unless `sysparm_exclude_reference_link=true`;
  `sysparm_display_value` false/true/all; `sysparm_fields` with dot-walks (`approver.name`).
- `sysapproval_approver`: one row per approver; created "requested" when a change with an assignment group
  is created or moved to Assess (-4) / Authorize (-3); PATCH {"state": "approved"|"rejected"} is rolled up.
- `sys_user_group` (seeded: "CAB") and `sys_user` (seeded: one CAB member), read-only.
- Lists: `sysparm_query` (`correlation_idSTARTSWITH...`, `sys_idIN...`, `sys_updated_on>=...`, `ORDERBY`...),
  `sysparm_limit`/`sysparm_offset`, `X-Total-Count` and `Link` like the CMDB tables; v1 answers 404 to an
  empty list, v2 200 with `[]`.
- Errors in the vendor envelope: 400 unparsable/oversized body, 400 missing mandatory field (data policy;
  the status of a data policy refusal is UNCONFIRMED in the note), 403 closing without a close code, 404.
- Approval roll-up (note §4): any rejection -> "rejected" (the change goes back to New, -5, and the other
  pending rows become "not_required"); every required row approved -> "approved" (state -2 Scheduled,
  `approval_set` stamped); only "not requested"/withdrawn rows or none -> "not requested"; else "requested".

Control (`<prefix>/_control/...`, no auth: tests and the demo act as a CAB member through it):
- `GET changes`, `GET changes/{sys_id|number}`; `POST changes/{id}/approve|reject|implement|close|cancel`
  (body may carry "approver" (user_name, email or sys_id) and "comment"; close takes "close_code").
- `POST cab {"auto_approve_seconds": N}` (null switches it off): each new change is approved N s after it
  is created, by a background timer.
- `POST webhook {"url", "secret"}` configures the notification target (DELETE removes it); every insert and
  every change of `state` or `approval` builds the notification an admin's business rule would send (see
  `notification`), records it for `GET webhooks` and POSTs it to the URL from a background thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time

import httpx
from werkzeug.wrappers import Request, Response

from .base import json_response, read_json
from .servicenow_common import display_of_raw_time, int_arg, parse_query, term_matches

logger = logging.getLogger("syncplane_simulators.servicenow_itsm")

TABLES = ("change_request", "sysapproval_approver", "sys_user_group", "sys_user")
CONTROL_ACTIONS = ("changes", "cab", "webhook", "webhooks")
FIRST_NUMBER = 30001
MAX_PAYLOAD = 10 * 1024 * 1024  # the instance's default REST payload cap (KB0747638)
WEBHOOK_SECRET_HEADER = "X-Syncplane-Webhook-Secret"
MAX_NOTIFICATIONS = 1000  # recorded for GET _control/webhooks

CAB_GROUP_NAME = "CAB"
CAB_USER = {"user_name": "cab.manager", "name": "Casey Approver", "email": "cab.manager@acme.example"}

STATE_LABELS = {
    "-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled", "-1": "Implement", "0": "Review",
    "3": "Closed", "4": "Canceled",
}
APPROVAL_LABELS = {
    "not requested": "Not Yet Requested", "requested": "Requested", "approved": "Approved",
    "rejected": "Rejected", "cancelled": "Cancelled", "not_required": "No Longer Required",
    "duplicate": "Duplicate",
}
CHOICES = {
    "change_request": {
        "state": STATE_LABELS,
        "approval": APPROVAL_LABELS,
        "risk": {"1": "Very High", "2": "High", "3": "Moderate", "4": "Low"},
        "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
        "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
        "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"},
        "type": {"normal": "Normal", "standard": "Standard", "emergency": "Emergency"},
        "on_hold": {"true": "true", "false": "false"},
    },
    "sysapproval_approver": {"state": APPROVAL_LABELS},
}
REFERENCES = {
    "change_request": {"assignment_group": "sys_user_group", "requested_by": "sys_user", "cmdb_ci": "cmdb_ci"},
    "sysapproval_approver": {"approver": "sys_user", "sysapproval": "change_request", "group": "sys_user_group"},
    "sys_user_group": {},
    "sys_user": {},
}
CHANGE_FIELDS = (
    "sys_id", "number", "short_description", "description", "type", "chg_model", "state", "approval",
    "approval_set", "risk", "impact", "urgency", "priority", "start_date", "end_date", "assignment_group",
    "requested_by", "cmdb_ci", "category", "correlation_id", "correlation_display", "on_hold", "on_hold_reason",
    "close_code", "close_notes", "work_notes", "std_change_producer_version", "sys_created_on", "sys_updated_on",
)
# What a POST or PATCH may set (anything else in the body is silently ignored, as on a real instance).
WRITABLE = frozenset(CHANGE_FIELDS) - {"sys_id", "number", "approval_set", "sys_created_on", "sys_updated_on"}
FIELDS = {
    "change_request": CHANGE_FIELDS,
    "sysapproval_approver": ("sys_id", "sysapproval", "approver", "group", "state", "comments", "sys_created_on",
                             "sys_updated_on"),
    "sys_user_group": ("sys_id", "name", "description", "active", "sys_updated_on"),
    "sys_user": ("sys_id", "user_name", "name", "email", "active", "sys_updated_on"),
}
DATE_FIELDS = frozenset({"approval_set", "start_date", "end_date", "sys_created_on", "sys_updated_on"})
TERMINAL_STATES = frozenset({"3", "4"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _sys_id(*parts: object) -> str:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def notification(change: dict, event: str) -> dict:
    """The body an admin's business rule ("after insert/update" on change_request, condition: state or
    approval changes) posts through an outbound REST message. Only a hint: Syncplane reads the change back."""
    return {
        "event": event,
        "table": "change_request",
        "sys_id": change["sys_id"],
        "number": change["number"],
        "state": change["state"],
        "approval": change["approval"],
        "sys_updated_on": change["sys_updated_on"],
    }


class ServiceNowItsm:
    """The change tables and the CAB of one simulated instance; thread-safe (one lock)."""

    tables = TABLES

    def __init__(self, parent, seed: int = 42):
        self.parent = parent  # the ServiceNowSimulator: authentication, error envelope, Link header, stats
        self.seed = seed
        self._lock = threading.RLock()
        self._clock = 0
        self.group = {
            "sys_id": _sys_id(seed, "sys_user_group", CAB_GROUP_NAME), "name": CAB_GROUP_NAME,
            "description": "Change Advisory Board", "active": "true", "sys_updated_on": "2024-01-02 08:00:00",
        }
        self.cab_user = {
            "sys_id": _sys_id(seed, "sys_user", CAB_USER["user_name"]), **CAB_USER, "active": "true",
            "sys_updated_on": "2024-01-02 08:00:00",
        }
        self._timers: list[threading.Timer] = []
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """No changes, no approvals, no CAB automation, no webhook target, no recorded notifications."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers = []
            self.changes: dict[str, dict] = {}  # sys_id -> raw record, in creation order
            self.approvals: dict[str, dict] = {}  # sys_id -> raw sysapproval_approver row
            self.users: dict[str, dict] = {self.cab_user["sys_id"]: dict(self.cab_user)}
            self.groups: dict[str, dict] = {self.group["sys_id"]: dict(self.group)}
            self._next_number = FIRST_NUMBER
            self.auto_approve_seconds: float | None = None
            self.webhook_url: str | None = None
            self.webhook_secret: str | None = None
            self.notifications: list[dict] = []

    def _now(self) -> str:
        """sys_updated_on for a write: UTC, second resolution, never going backwards."""
        self._clock = max(self._clock, int(time.time()))
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._clock))

    def _rows(self, table: str) -> dict[str, dict]:
        return {"change_request": self.changes, "sysapproval_approver": self.approvals,
                "sys_user_group": self.groups, "sys_user": self.users}[table]

    def find_change(self, key: str) -> dict | None:
        """A change by sys_id or number (control endpoints accept either)."""
        with self._lock:
            if key in self.changes:
                return self.changes[key]
            return next((c for c in self.changes.values() if c["number"] == key), None)

    def approvals_of(self, change_sys_id: str) -> list[dict]:
        with self._lock:
            return [dict(a) for a in self.approvals.values() if a["sysapproval"] == change_sys_id]

    # ------------------------------------------------------------------ HTTP: Table API

    def dispatch(self, request: Request, version: str | None, table: str, sys_id: str | None) -> Response:
        parent = self.parent
        if not parent._authenticated(request):
            parent.stats.incr("auth_failures")
            return json_response(
                _error("User Not Authenticated", "Required to provide Auth information"), 401,
                headers={"WWW-Authenticate": 'Basic realm="Service-now"'},
            )
        parent.stats.incr("table_requests")
        parent.stats.incr(f"{request.method} {table}")
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get_one(request, table, sys_id) if sys_id else self._list(request, version, table)
        if table not in ("change_request", "sysapproval_approver"):
            return json_response(_error("Operation Failed", f"Table {table} is read-only for this user"), 403)
        if method == "POST" and not sys_id and table == "change_request":
            return self._create(request)
        if method in ("PATCH", "PUT") and sys_id:
            return self._update(request, table, sys_id)
        return json_response(
            _error("Method not Supported", f"HTTP method {method} is not supported on this resource"), 405
        )

    def _body(self, request: Request) -> tuple[dict | None, Response | None]:
        if (request.content_length or 0) > MAX_PAYLOAD:
            return None, json_response(_error(
                "Exception while reading request",
                f"Rejected large REST payload with content-length = {request.content_length} bytes. "
                f"Max allowed: {MAX_PAYLOAD} bytes.",
            ), 400)
        try:
            body = json.loads(request.get_data() or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None, json_response(_error("Exception while reading request", "Unable to parse JSON body"), 400)
        if not isinstance(body, dict):
            return None, json_response(_error("Exception while reading request", "Expected a JSON object"), 400)
        return body, None

    def _create(self, request: Request) -> Response:
        body, error = self._body(request)
        if error:
            return error
        values = {k: v if isinstance(v, str) else json.dumps(v) if v is not None else ""
                  for k, v in body.items() if k in WRITABLE}
        if not values.get("short_description", "").strip():
            # A data policy on the base instance makes short_description mandatory.
            return json_response(_error(
                "Data Policy Exception", "The following fields are mandatory: Short description"
            ), 400)
        with self._lock:
            number = f"CHG{self._next_number:07d}"
            self._next_number += 1
            now = self._now()
            change = dict.fromkeys(CHANGE_FIELDS, "")
            change.update({
                "type": "normal", "state": "-5", "approval": "not requested", "risk": "3", "impact": "3",
                "urgency": "3", "on_hold": "false", "correlation_display": "",
            })
            change.update(values)
            change.update({
                "sys_id": _sys_id(self.seed, "change_request", number), "number": number,
                "sys_created_on": now, "sys_updated_on": now,
            })
            change["state"] = change["state"] if change["state"] in STATE_LABELS else "-5"
            change["priority"] = _priority(change["impact"], change["urgency"])
            self.changes[change["sys_id"]] = change
            if change["assignment_group"] and change["type"] != "standard":
                # The change flow asks the assignment group for approval as soon as the change has one.
                self._request_approvals(change, now)
            notes = [notification(change, "inserted")]  # an "after insert" rule sees the record as stored
            if self.auto_approve_seconds is not None:
                self._schedule_auto_approve(change["sys_id"])
            record = dict(change)
        self._send(notes)
        instance = request.host_url.rstrip("/") + request.script_root
        location = f"{instance}/api/now/table/change_request/{record['sys_id']}"
        return self._render(request, "change_request", [record], single=True, status=201,
                            headers={"Location": location})

    def _update(self, request: Request, table: str, sys_id: str) -> Response:
        body, error = self._body(request)
        if error:
            return error
        with self._lock:
            rows = self._rows(table)
            if sys_id not in rows:
                return _not_found()
            notes: list[dict] = []
            if table == "sysapproval_approver":
                row = rows[sys_id]
                state = body.get("state")
                if state in APPROVAL_LABELS and state != row["state"]:
                    now = self._now()
                    row.update({"state": state, "sys_updated_on": now})
                    if isinstance(body.get("comments"), str):
                        row["comments"] = body["comments"]
                    change = self.changes.get(row["sysapproval"])
                    if change is not None:
                        notes += self._roll_up(change, now)
                record = dict(row)
            else:
                change = rows[sys_id]
                values = {k: v for k, v in body.items() if k in WRITABLE and isinstance(v, str)}
                new_state = values.pop("state", None)
                if new_state == "3" and not (values.get("close_code") or change["close_code"]):
                    return json_response(_error(
                        "Data Policy Exception", "The following fields are mandatory: Close code, Close notes"
                    ), 403)
                before = (change["state"], change["approval"])
                now = self._now()
                change.update(values)
                if new_state is not None and new_state in STATE_LABELS:
                    # Text such as "assess" is not a state code: the record keeps its state (note §3).
                    self._set_state(change, new_state, now)
                change["sys_updated_on"] = now
                if (change["state"], change["approval"]) != before:
                    notes.append(notification(change, "updated"))
                record = dict(change)
        self._send(notes)
        return self._render(request, table, [record], single=True)

    def _get_one(self, request: Request, table: str, sys_id: str) -> Response:
        with self._lock:
            row = self._rows(table).get(sys_id)
            row = dict(row) if row else None
        if row is None:
            return _not_found()
        return self._render(request, table, [row], single=True)

    def _list(self, request: Request, version: str | None, table: str) -> Response:
        args = request.args
        limit = int_arg(args.get("sysparm_limit"), 10000)
        limit = limit if limit > 0 else 10000
        offset = max(int_arg(args.get("sysparm_offset"), 0), 0)
        known = self._known_fields(table)
        query = parse_query(args.get("sysparm_query", ""), known)
        with self._lock:
            rows = [dict(r) for r in self._rows(table).values()]
        for clause in query.clauses:
            rows = [r for r in rows if any(term_matches(self._value(table, r, f), op, v) for f, op, v in clause)]
        for field, descending in reversed(query.order):
            rows.sort(key=lambda r, f=field: self._value(table, r, f), reverse=descending)
        total = len(rows)
        headers = {}
        if args.get("sysparm_no_count", "false").lower() != "true":
            headers["X-Total-Count"] = str(total)
        if args.get("sysparm_suppress_pagination_header", "false").lower() != "true":
            headers["Link"] = self.parent._link_header(request, offset, limit, total)
        if version is None and offset >= total:
            body = _error(
                "No Record found", "Records matching query not found. Check query parameter or offered values"
            )
            return json_response(body, 404, headers=headers)
        return self._render(request, table, rows[offset : offset + limit], headers=headers)

    # ------------------------------------------------------------------ rendering

    def _known_fields(self, table: str) -> set[str]:
        fields = set(FIELDS[table])
        for ref_field, target in REFERENCES[table].items():
            fields.update(f"{ref_field}.{f}" for f in FIELDS.get(target, ()))
        return fields

    def _value(self, table: str, row: dict, field: str) -> str:
        """A field's raw value, dot-walking one reference (approver.email, assignment_group.name)."""
        if "." in field:
            ref_field, _, target_field = field.partition(".")
            target = REFERENCES[table].get(ref_field)
            if target is None:
                return ""
            with self._lock:
                referenced = self._rows(target).get(row.get(ref_field, "")) if target in TABLES else None
            return referenced.get(target_field, "") if referenced else ""
        return row.get(field, "")

    def _display(self, table: str, field: str, value: str) -> str:
        target = REFERENCES[table].get(field)
        if target is not None:
            with self._lock:
                referenced = self._rows(target).get(value) if target in TABLES else None
            if not referenced:
                return value if target not in TABLES else ""
            return referenced.get("number") or referenced.get("name") or value
        if field in DATE_FIELDS:
            return display_of_raw_time(value)
        return CHOICES.get(table, {}).get(field, {}).get(value, value)

    def _render(self, request: Request, table: str, rows: list[dict], *, single: bool = False, status: int = 200,
                headers: dict | None = None) -> Response:
        args = request.args
        known = self._known_fields(table)
        fields = [f.strip() for f in args.get("sysparm_fields", "").split(",") if f.strip() in known]
        fields = fields or list(FIELDS[table])
        mode = args.get("sysparm_display_value", "false").lower()
        links = args.get("sysparm_exclude_reference_link", "false").lower() != "true"
        instance = request.host_url.rstrip("/") + request.script_root
        out = [self._shape(table, row, fields, mode, links, instance) for row in rows]
        return json_response({"result": out[0] if single else out}, status, headers=headers)

    def _shape(self, table: str, row: dict, fields: list[str], mode: str, links: bool, instance: str) -> dict:
        shaped = {}
        for field in fields:
            value = self._value(table, row, field)
            target = REFERENCES[table].get(field)
            link = f"{instance}/api/now/table/{target}/{value}" if target and links and value else None
            if mode == "true":
                shaped[field] = self._display(table, field, value)
            elif mode == "all":
                item = {"display_value": self._display(table, field, value), "value": value}
                shaped[field] = {**item, "link": link} if link else item
            else:
                shaped[field] = {"link": link, "value": value} if link else value
        return shaped

    # ------------------------------------------------------------------ the change model

    def _set_state(self, change: dict, state: str, now: str) -> None:
        change["state"] = state
        if state in ("-4", "-3") and change["assignment_group"]:
            self._request_approvals(change, now)
        elif state in TERMINAL_STATES:
            for row in self.approvals.values():
                if row["sysapproval"] == change["sys_id"] and row["state"] in ("requested", "not requested"):
                    row.update({"state": "not_required", "sys_updated_on": now})
            if state == "4" and change["approval"] == "requested":
                change["approval"] = "not requested"

    def _request_approvals(self, change: dict, now: str) -> None:
        """One requested row per member of the assignment group (the seeded CAB has one member)."""
        members = [self.cab_user["sys_id"]] if change["assignment_group"] in self.groups else []
        pending = {r["approver"] for r in self.approvals.values()
                   if r["sysapproval"] == change["sys_id"] and r["state"] == "requested"}
        for approver in members:
            if approver not in pending:
                self._add_approval(change, approver, "requested", now)
        if members:
            change["approval"] = "requested"
            change["approval_set"] = ""

    def _add_approval(self, change: dict, approver: str, state: str, now: str, comment: str = "") -> dict:
        row = {
            "sys_id": _sys_id(self.seed, "sysapproval_approver", change["sys_id"], approver, len(self.approvals)),
            "sysapproval": change["sys_id"], "approver": approver, "group": change["assignment_group"],
            "state": state, "comments": comment, "sys_created_on": now, "sys_updated_on": now,
        }
        self.approvals[row["sys_id"]] = row
        return row

    def _roll_up(self, change: dict, now: str) -> list[dict]:
        """Recompute `approval` from the rows (note §4) and move the state as the change flow would."""
        states = [r["state"] for r in self.approvals.values() if r["sysapproval"] == change["sys_id"]]
        required = [s for s in states if s not in ("not requested", "not_required", "cancelled", "duplicate")]
        if "rejected" in required:
            approval = "rejected"
        elif required and all(s == "approved" for s in required):
            approval = "approved"
        elif not required:
            approval = "not requested"
        else:
            approval = "requested"
        before = (change["state"], change["approval"])
        change["approval"] = approval
        if approval == "rejected":
            for row in self.approvals.values():
                if row["sysapproval"] == change["sys_id"] and row["state"] == "requested":
                    row.update({"state": "not_required", "sys_updated_on": now})
            change.update({"state": "-5", "approval_set": now})
        elif approval == "approved" and change["state"] in ("-5", "-4", "-3"):
            change.update({"state": "-2", "approval_set": now})
        change["sys_updated_on"] = now
        return [notification(change, "updated")] if (change["state"], change["approval"]) != before else []

    def _user(self, key: str | None) -> dict | None:
        """An approver named by user_name, email, name or sys_id; an unknown name becomes a new user (demo)."""
        if not key:
            return None
        for user in self.users.values():
            if key in (user["sys_id"], user["user_name"], user["email"], user["name"]):
                return user
        user = {"sys_id": _sys_id(self.seed, "sys_user", key), "user_name": key,
                "name": key, "email": key if "@" in key else "", "active": "true", "sys_updated_on": self._now()}
        self.users[user["sys_id"]] = user
        return user

    def decide(self, key: str, decision: str, approver: str | None = None, comment: str = "") -> dict:
        """A CAB member approves or rejects: their row (or every pending row) is decided, then rolled up."""
        with self._lock:
            change = self.find_change(key)
            if change is None:
                raise LookupError(key)
            if change["state"] in TERMINAL_STATES:
                raise ValueError(f"{change['number']} is {STATE_LABELS[change['state']]}: nothing to decide")
            now = self._now()
            user = self._user(approver)
            rows = [r for r in self.approvals.values() if r["sysapproval"] == change["sys_id"]
                    and r["state"] == "requested" and (user is None or r["approver"] == user["sys_id"])]
            if not rows:
                # Nobody was asked yet (no assignment group): the decision arrives as an ad-hoc approver.
                rows = [self._add_approval(change, (user or self.cab_user)["sys_id"], "requested", now)]
            for row in rows:
                row.update({"state": decision, "comments": comment, "sys_updated_on": now})
            notes = self._roll_up(change, now)
            record = dict(change)
        self._send(notes)
        return record

    def move(self, key: str, action: str, spec: dict) -> dict:
        """implement / close / cancel, with the checks the state model makes."""
        with self._lock:
            change = self.find_change(key)
            if change is None:
                raise LookupError(key)
            if change["state"] in TERMINAL_STATES:
                raise ValueError(f"{change['number']} is {STATE_LABELS[change['state']]} already")
            now = self._now()
            before = (change["state"], change["approval"])
            if action == "implement":
                if change["state"] != "-2":
                    raise ValueError(f"{change['number']} is {STATE_LABELS[change['state']]}, not Scheduled")
                self._set_state(change, "-1", now)
            elif action == "close":
                change["close_code"] = str(spec.get("close_code") or "successful")
                change["close_notes"] = str(spec.get("close_notes") or "Implemented as planned")
                self._set_state(change, "3", now)
            else:
                change["work_notes"] = str(spec.get("reason") or spec.get("comment") or "")
                self._set_state(change, "4", now)
            change["sys_updated_on"] = now
            notes = [notification(change, "updated")] if (change["state"], change["approval"]) != before else []
            record = dict(change)
        self._send(notes)
        return record

    def _schedule_auto_approve(self, sys_id: str) -> None:
        def approve() -> None:
            try:
                self.decide(sys_id, "approved", comment="Approved automatically by the simulated CAB")
            except (LookupError, ValueError):
                pass  # reset, cancelled or decided meanwhile

        timer = threading.Timer(self.auto_approve_seconds or 0, approve)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    # ------------------------------------------------------------------ webhooks

    def _send(self, notes: list[dict]) -> None:
        """Record each notification and deliver it to the configured URL, outside the lock."""
        for note in notes:
            raw = json.dumps(note, separators=(",", ":"))
            headers = {"Content-Type": "application/json"}
            with self._lock:
                url, secret = self.webhook_url, self.webhook_secret
                if secret:
                    headers[WEBHOOK_SECRET_HEADER] = secret
                self.notifications.append({"body": raw, "headers": headers})
                del self.notifications[:-MAX_NOTIFICATIONS]  # a long demo must not grow without bound
            if url:
                threading.Thread(target=_post, args=(url, raw, headers), name="sn-webhook", daemon=True).start()

    # ------------------------------------------------------------------ control endpoints

    @staticmethod
    def serves_control(action: str) -> bool:
        return action.split("/", 1)[0] in CONTROL_ACTIONS

    def control(self, request: Request, action: str) -> Response:
        try:
            spec = read_json(request) if request.method in ("POST", "PUT") else {}
            parts = action.split("/")
            if parts[0] == "changes":
                return self._control_changes(request.method, parts[1:], spec)
            if parts[0] == "cab":
                if request.method == "POST":
                    seconds = spec.get("auto_approve_seconds")
                    if seconds is not None and (not isinstance(seconds, int | float) or seconds < 0):
                        raise ValueError("auto_approve_seconds must be a number >= 0 or null")
                    with self._lock:
                        self.auto_approve_seconds = seconds
                return json_response({"auto_approve_seconds": self.auto_approve_seconds})
            if parts[0] == "webhook":
                with self._lock:
                    if request.method == "DELETE":
                        self.webhook_url = self.webhook_secret = None
                    elif request.method == "POST":
                        url = spec.get("url") or None
                        if url is not None and not re.match(r"https?://", str(url)):
                            raise ValueError("url must be an http(s) URL")
                        self.webhook_url, self.webhook_secret = url, spec.get("secret") or None
                    # The secret is never echoed back.
                    return json_response({"url": self.webhook_url, "secret_set": bool(self.webhook_secret)})
            if parts[0] == "webhooks":
                with self._lock:
                    if request.method == "DELETE":
                        self.notifications.clear()
                    return json_response({"notifications": list(self.notifications)})
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"error": f"unknown control action {action!r}"}, 404)

    def _control_changes(self, method: str, parts: list[str], spec: dict) -> Response:
        if not parts:
            with self._lock:
                changes = [dict(c) for c in self.changes.values()]
            return json_response({"changes": changes})
        change = self.find_change(parts[0])
        if change is None:
            return json_response({"error": f"no change {parts[0]!r}"}, 404)
        if len(parts) == 1 and method == "GET":
            return json_response({"change": dict(change), "approvals": self.approvals_of(change["sys_id"])})
        if len(parts) != 2 or method != "POST":
            return json_response({"error": "use POST changes/{id}/approve|reject|implement|close|cancel"}, 405)
        action = parts[1]
        try:
            if action in ("approve", "reject"):
                decision = "approved" if action == "approve" else "rejected"
                record = self.decide(change["sys_id"], decision, spec.get("approver"), str(spec.get("comment") or ""))
            elif action in ("implement", "close", "cancel"):
                record = self.move(change["sys_id"], action, spec)
            else:
                return json_response({"error": f"unknown change action {action!r}"}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 409)
        return json_response({"change": record, "approvals": self.approvals_of(record["sys_id"])})


def _priority(impact: str, urgency: str) -> str:
    """The base instance's priority lookup: a business rule recomputes it from impact and urgency."""
    try:
        return str(min(int(impact) + int(urgency) - 1, 5))
    except ValueError:
        return "4"


def _error(message: str, detail: str | None) -> dict:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def _not_found() -> Response:
    return json_response(_error("No Record found", "Record doesn't exist or ACL restricts the record retrieval"), 404)


def _post(url: str, raw: str, headers: dict) -> None:
    try:
        httpx.post(url, content=raw.encode(), headers=headers, timeout=5)
    except Exception as exc:  # noqa: BLE001 - a webhook target that is down must not break the simulator
        logger.warning("webhook delivery to %s failed: %s", url.split("?")[0], exc.__class__.__name__)


__all__ = ["ServiceNowItsm", "WEBHOOK_SECRET_HEADER", "notification"]
