"""Freshservice v2 changes API simulator (see shared/api-notes/freshservice-itsm.md).

A real account serves assets and changes from one base URL, so this is not an app of its own: the
Freshservice simulator (`simulators/freshservice.py`) hands it every `/api/v2/changes...` request and the
`email=` lookups of `/api/v2/requesters` and `/api/v2/agents` after its own rate limiting, fault injection
and Basic-auth check, and its `_control/changes...`, `_control/cab` and `_control/webhook(s)` requests.

What it imitates:
- `POST /api/v2/changes` -> 201 `{"change": {...}}`; 400 `{"description": "Validation failed", "errors":
  [{"field", "message", "code"}]}` for a missing `requester_id` or `subject` (`missing_field`), a bad code
  (`invalid_value`), a wrong type (`datatype_mismatch`), `approval_status` or an unknown custom field
  (`invalid_field`). New changes read back with `approval_status` 4 "Not requested".
- `GET/PUT /api/v2/changes/{id}` (partial update), `GET /api/v2/changes` with `page`/`per_page` (<= 100),
  `updated_since` (inclusive) and `workspace_id`, newest first, a Link rel="next" header absent on the last
  page, and the quirk: without `updated_since` only changes created in the last 30 days are listed.
- `GET /api/v2/changes/{id}/approvals` (rows with `approval_status` as an object `{id, name}`),
  `POST /api/v2/changes/{id}/notes`.
- Every custom field of the change form comes back under `custom_fields`, null when not set. The api note's
  quirk 5 (UNCONFIRMED): items of the list may carry no `custom_fields` at all, only reads by id do; off by
  default, `list_custom_fields = False` (or `POST _control/quirks {"list_custom_fields": false}`) turns it on.
- Ids are small per-account numbers starting at 1; approval ids are 64-bit.

Control (a test or the demo acting as the CAB), under the Freshservice simulator's `_control/`:
- `POST quirks {"list_custom_fields": false}`: list items without `custom_fields` (see above).
- `POST changes/{id}/request-approval|approve|reject|implement|close|cancel` (body may carry `approver`,
  `comment`); `GET changes`, `GET changes/{id}`; `POST changes` seeds changes made by people
  (`{"count", "days_ago", "correlation_id"}`).
- `POST cab {"auto_approve_seconds": N}`: every new change is approved N seconds after it is created.
- `POST webhook {"url", "secret"}`: every create, CAB action and status change builds the body the admin's
  Workflow Automator rule sends (`{"change_id": "17"}`) with the shared secret in `X-Syncplane-Webhook-Secret`,
  records it (`GET webhooks`) and, with a URL, POSTs it from a background thread.

UNCONFIRMED behaviour it assumes: closing a change cancels its pending approvals (approval_status 3); a
rejection leaves the status at Awaiting Approval; `updated_since` is inclusive; the list is newest first.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from datetime import datetime

import httpx
from werkzeug.wrappers import Request, Response

from .base import SimulatorApp, json_response, read_json

logger = logging.getLogger("syncplane_simulators.freshservice_itsm")

CUSTOM_FIELDS = ("syncplane_correlation_id", "business_justification")
DEFAULT_WINDOW_DAYS = 30
APPROVAL_ID_BASE = 21_000_143_860
CAB_AGENT_ID = 21_001_931_878
STATUS_RANGE = range(1, 7)
CODES = {"priority": range(1, 5), "impact": range(1, 4), "risk": range(1, 5), "change_type": range(1, 5),
         "status": STATUS_RANGE}
ID_FIELDS = ("requester_id", "group_id", "agent_id", "department_id", "workspace_id")
TEXT_FIELDS = ("subject", "description", "category", "sub_category", "item_category")
UPDATABLE = frozenset({"subject", "description", *CODES, *ID_FIELDS, "planned_start_date", "planned_end_date",
                       "custom_fields", "category", "sub_category", "item_category"})
APPROVAL_STATUS = {0: "requested", 1: "approved", 2: "rejected", 3: "cancelled"}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_TAGS = re.compile(r"<[^>]+>")
WEBHOOK_HEADER = "X-Syncplane-Webhook-Secret"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _parse(value: str) -> float | None:
    if not isinstance(value, str) or not _ISO.fullmatch(value.strip()):
        return None
    return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()


def _text(markup: str) -> str:
    """description_text: the plain rendering of the HTML description."""
    return html.unescape(" ".join(_TAGS.sub(" ", markup).split()))


def _invalid(errors: list[dict]) -> Response:
    return json_response({"description": "Validation failed", "errors": errors}, 400)


def _error(field: str, message: str, code: str) -> dict:
    return {"field": field, "message": message, "code": code}


class FreshserviceChangesSimulator:
    """Changes, approvals and notes in memory; one lock guards them all."""

    custom_statuses: tuple[int, ...] = (7,)  # one custom status the account added ("Cancelled")

    def __init__(self, owner: SimulatorApp,  # the account's FreshserviceSimulator (its people, paging, stats)
                 custom_fields: tuple[str, ...] = CUSTOM_FIELDS):
        self.owner = owner
        self.custom_fields = tuple(custom_fields)
        self._lock = threading.RLock()
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        with self._lock:
            for timer in getattr(self, "_timers", ()):
                timer.cancel()
            self._timers: list[threading.Timer] = []
            self.changes: dict[int, dict] = {}
            self.approvals: dict[int, list[dict]] = {}
            self.notes: dict[int, list[dict]] = {}
            self._next_id = 1
            self._next_approval = APPROVAL_ID_BASE
            self._clock = 0
            self.auto_approve_seconds: float | None = None
            self.webhook_url = ""
            self.webhook_secret = ""
            self.webhooks: list[dict] = []
            self.list_custom_fields = True

    def _now(self) -> int:
        """Strictly increasing seconds: two updates never share an updated_at, so cursors are exact."""
        self._clock = max(self._clock + 1, int(time.time()))
        return self._clock

    def _people(self) -> dict[int, dict]:
        return {p["id"]: p for p in self.owner.requesters + self.owner.agents}

    def change(self, change_id: int) -> dict | None:
        with self._lock:
            record = self.changes.get(change_id)
            return json.loads(json.dumps(record)) if record is not None else None

    # ------------------------------------------------------------------ API

    def handle(self, request: Request, path: str) -> Response | None:
        """The response for a changes API request, or None when the path is not one of ours."""
        if path.rstrip("/") in ("/api/v2/requesters", "/api/v2/agents") and "email" in request.args:
            return self._people_by_email(request, path.rstrip("/").rsplit("/", 1)[1])
        route = re.fullmatch(r"/api/v2/changes(?:/(\d+)(?:/(approvals|notes))?)?/?", path)
        if route is None:
            return None
        item, sub = route.groups()
        method = request.method
        self.owner.stats.incr("changes_requests")
        if item is None:
            if method == "POST":
                return self._create(request)
            if method == "GET":
                return self._list(request)
            return self._not_allowed("GET, POST")
        change_id = int(item)
        if sub == "approvals":
            if method != "GET":
                return self._not_allowed("GET")
            self.owner.stats.incr("approvals_requests")
            with self._lock:
                if change_id not in self.changes:
                    return self._not_found()
                return json_response({"approvals": list(self.approvals.get(change_id, []))})
        if sub == "notes":
            if method != "POST":
                return self._not_allowed("POST")
            return self._add_note(request, change_id)
        if method == "GET":
            self.owner.stats.incr("change_reads")
            record = self.change(change_id)
            return json_response({"change": record}) if record else self._not_found()
        if method == "PUT":
            return self._update(request, change_id)
        return self._not_allowed("GET, PUT")

    @staticmethod
    def _not_found() -> Response:
        return json_response({"description": "Record not found"}, 404)

    @staticmethod
    def _not_allowed(allow: str) -> Response:
        return json_response({"description": "Method not allowed"}, 405, headers={"Allow": allow})

    @staticmethod
    def _body(request: Request) -> dict | Response:
        try:
            body = json.loads(request.get_data(cache=True) or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _invalid([_error("body", "The request body should be a JSON object", "invalid_json")])
        return body

    def _people_by_email(self, request: Request, kind: str) -> Response:
        self.owner.stats.incr("people_lookups")
        email = request.args.get("email", "").strip().lower()
        people = self.owner.requesters if kind == "requesters" else self.owner.agents
        found = [p for p in people if (p.get("primary_email") or p.get("email") or "").lower() == email]
        if kind == "agents":
            found = [{**p, "email": p["primary_email"]} for p in found]
        return json_response({kind: found})

    def _validate(self, body: dict, *, creating: bool) -> list[dict]:
        errors = []
        if creating:
            for name in ("requester_id", "subject"):
                if body.get(name) in (None, ""):
                    errors.append(_error(name, "It should not be blank as this is a mandatory field",
                                         "missing_field"))
            if "approval_status" in body:
                errors.append(_error("approval_status", "Unexpected/invalid field in request", "invalid_field"))
        else:
            for name in set(body) - UPDATABLE:
                errors.append(_error(name, "Unexpected/invalid field in request", "invalid_field"))
        for name, allowed in CODES.items():
            value = body.get(name)
            if value is None:
                continue
            if type(value) is not int:
                errors.append(_error(name, "It should be a/an Integer", "datatype_mismatch"))
            elif value not in allowed and not (name == "status" and value in self.custom_statuses):
                errors.append(_error(name, f"It should be one of these values: "
                                     f"{','.join(str(v) for v in allowed)}", "invalid_value"))
        for name in ID_FIELDS:
            value = body.get(name)
            if value is not None and type(value) is not int:
                errors.append(_error(name, "It should be a/an Integer", "datatype_mismatch"))
        requester = body.get("requester_id")
        if type(requester) is int and requester not in self._people():
            errors.append(_error("requester_id", "There is no contact matching the given requester_id",
                                 "invalid_value"))
        for name in TEXT_FIELDS:
            if body.get(name) is not None and not isinstance(body[name], str):
                errors.append(_error(name, "It should be a/an String", "datatype_mismatch"))
        if "description" in body and "description_html" in body:
            errors.append(_error("description_html", "Send description or description_html, not both",
                                 "invalid_field"))
        times = {}
        for name in ("planned_start_date", "planned_end_date"):
            if body.get(name) is not None:
                times[name] = _parse(body[name])
                if times[name] is None:
                    errors.append(_error(name, "It should be in the 'valid date-time' format", "invalid_value"))
        if times.get("planned_start_date") and times.get("planned_end_date") and \
                times["planned_end_date"] < times["planned_start_date"]:
            errors.append(_error("planned_end_date", "It should be after planned_start_date", "invalid_value"))
        custom = body.get("custom_fields")
        if custom is not None:
            if not isinstance(custom, dict):
                errors.append(_error("custom_fields", "It should be a/an key/value pair", "datatype_mismatch"))
            else:
                for name in custom:
                    if name not in self.custom_fields:
                        errors.append(_error(name, "Unexpected/invalid field in request", "invalid_field"))
        return errors

    def _create(self, request: Request) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        errors = self._validate(body, creating=True)
        if errors:
            return _invalid(errors)
        self.owner.stats.incr("change_creates")
        with self._lock:
            record = self._new_record(body, self._now())
            delay = self.auto_approve_seconds
        if delay is not None:
            timer = threading.Timer(delay, self._auto_approve, args=(record["id"],))
            timer.daemon = True
            with self._lock:
                self._timers.append(timer)
            timer.start()
        self._notify(record["id"], "created")
        return json_response({"change": self.change(record["id"])}, 201)

    def _new_record(self, body: dict, now: int, created: int | None = None) -> dict:
        change_id, self._next_id = self._next_id, self._next_id + 1
        description = body.get("description") or body.get("description_html") or ""
        record = {
            "id": change_id, "requester_id": body.get("requester_id"), "agent_id": body.get("agent_id"),
            "group_id": body.get("group_id"), "subject": body.get("subject"), "description": description,
            "description_text": _text(description),
            "status": body.get("status") or 1, "priority": body.get("priority") or 1,
            "impact": body.get("impact") or 1, "risk": body.get("risk") or 1,
            "change_type": body.get("change_type") or 1, "approval_status": 4,
            "planned_start_date": body.get("planned_start_date"), "planned_end_date": body.get("planned_end_date"),
            "department_id": body.get("department_id"), "category": body.get("category"),
            "sub_category": body.get("sub_category"), "item_category": body.get("item_category"),
            "change_window_id": None, "maintenance_window": {}, "blackout_window": {}, "assets": [],
            "impacted_services": [], "workspace_id": body.get("workspace_id") or 1,
            "custom_fields": {name: (body.get("custom_fields") or {}).get(name) for name in self.custom_fields},
            "created_at": _iso(created if created is not None else now), "updated_at": _iso(now),
        }
        self.changes[change_id] = record
        self.approvals[change_id] = []
        return record

    def _list(self, request: Request) -> Response:
        page, per_page, invalid = self.owner._paging(request)
        if invalid:
            return invalid
        since = request.args.get("updated_since")
        self.owner.stats.incr("change_list_requests")
        if since is not None:
            since_ts = _parse(since)
            if since_ts is None:
                return _invalid([_error("updated_since", "It should be in the 'valid date-time' format",
                                        "invalid_value")])
        workspace = request.args.get("workspace_id")
        with self._lock:
            rows = sorted(self.changes.values(), key=lambda c: c["id"], reverse=True)  # newest first
            if since is None:
                # The quirk: without updated_since the list shows changes created in the last 30 days only.
                floor = time.time() - DEFAULT_WINDOW_DAYS * 86400
                rows = [c for c in rows if _parse(c["created_at"]) >= floor]
            else:
                rows = [c for c in rows if _parse(c["updated_at"]) >= since_ts]
            if workspace not in (None, "", "0"):
                rows = [c for c in rows if str(c["workspace_id"]) == workspace]
            start = (page - 1) * per_page
            selected = json.loads(json.dumps(rows[start : start + per_page]))
            more = len(rows) > start + per_page
            if not self.list_custom_fields:
                for row in selected:
                    del row["custom_fields"]
        response = json_response({"changes": selected})
        if more:
            response.headers["Link"] = self.owner._link(request, page + 1, per_page)
        return response

    def _update(self, request: Request, change_id: int) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        errors = self._validate(body, creating=False)
        if errors:
            return _invalid(errors)
        with self._lock:
            record = self.changes.get(change_id)
            if record is None:
                return self._not_found()
            before = record["status"]
            for name, value in body.items():
                if name == "custom_fields":
                    record["custom_fields"].update(value)
                else:
                    record[name] = value
            if "description" in body:
                record["description_text"] = _text(record["description"] or "")
            if record["status"] in (6, *self.custom_statuses) and before != record["status"]:
                self._cancel_pending(change_id)
            record["updated_at"] = _iso(self._now())
        self._notify(change_id, "updated")
        return json_response({"change": self.change(change_id)})

    def _add_note(self, request: Request, change_id: int) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("body"), str) or not body["body"].strip():
            return _invalid([_error("body", "It should not be blank as this is a mandatory field",
                                    "missing_field")])
        with self._lock:
            if change_id not in self.changes:
                return self._not_found()
            note = {"id": APPROVAL_ID_BASE + 500_000 + sum(len(n) for n in self.notes.values()),
                    "body": body["body"], "body_text": _text(body["body"]),
                    "created_at": _iso(time.time())}
            self.notes.setdefault(change_id, []).append(note)
        return json_response({"note": note}, 201)

    # ------------------------------------------------------------------ CAB actions

    def _row(self, change_id: int, approver: str, status: int, comment: str, now: int) -> dict:
        people = self._people()
        person = next((p for p in people.values() if approver and approver.lower() in (
            p["primary_email"].lower(), f"{p['first_name']} {p['last_name']}".lower())), None)
        record = self.changes[change_id]
        row = {"id": self._next_approval, "approver_id": person["id"] if person else CAB_AGENT_ID,
               "approver_name": f"{person['first_name']} {person['last_name']}" if person else approver or "CAB",
               "approval_type": 2, "level": 1, "user_id": record["requester_id"],
               "user_name": self._name(record["requester_id"]),
               "approval_status": {"id": status, "name": APPROVAL_STATUS[status]}, "delegatee": None,
               "latest_remark": comment or None, "created_at": _iso(now), "updated_at": _iso(now)}
        self._next_approval += 1
        return row

    def _name(self, person_id) -> str:
        person = self._people().get(person_id)
        return f"{person['first_name']} {person['last_name']}" if person else ""

    def _decide(self, change_id: int, decision: int, approver: str, comment: str, now: int) -> None:
        """Answer the first requested row (or a new one, when approval was never requested)."""
        rows = self.approvals[change_id]
        row = next((r for r in rows if r["approval_status"]["id"] == 0), None)
        if row is None:
            row = self._row(change_id, approver, 0, "", now)
            rows.append(row)
        elif approver:
            row.update({k: v for k, v in self._row(change_id, approver, 0, "", now).items()
                        if k in ("approver_id", "approver_name")})
        row["approval_status"] = {"id": decision, "name": APPROVAL_STATUS[decision]}
        row["latest_remark"] = comment or None
        row["updated_at"] = _iso(now)
        record = self.changes[change_id]
        record["approval_status"] = decision
        # Approved: on to Pending Release. Rejected: it stays at Awaiting Approval (UNCONFIRMED).
        if decision == 1:
            record["status"] = 4
        elif record["status"] < 3:
            record["status"] = 3

    def _cancel_pending(self, change_id: int) -> None:
        record = self.changes[change_id]
        if record["approval_status"] in (0, 5):
            record["approval_status"] = 3
            for row in self.approvals[change_id]:
                if row["approval_status"]["id"] == 0:
                    row["approval_status"] = {"id": 3, "name": "cancelled"}

    def act(self, change_id: int, action: str, approver: str = "", comment: str = "") -> dict | None:
        """A CAB member or an agent acting in the UI; returns the updated change (None: no such change)."""
        with self._lock:
            record = self.changes.get(change_id)
            if record is None:
                return None
            now = self._now()
            if action == "request-approval":
                if record["approval_status"] != 0:
                    self.approvals[change_id].append(self._row(change_id, approver, 0, "", now))
                record.update(status=3, approval_status=0)
            elif action == "approve":
                self._decide(change_id, 1, approver, comment, now)
            elif action == "reject":
                self._decide(change_id, 2, approver, comment, now)
            elif action == "implement":
                record["status"] = 5
            elif action == "close":
                record["status"] = 6
                self._cancel_pending(change_id)
            elif action == "cancel":
                record["status"] = 6
                self._cancel_pending(change_id)
                if record["approval_status"] == 4:
                    record["approval_status"] = 3
            else:
                raise ValueError(f"unknown change action {action!r}")
            record["updated_at"] = _iso(now)
        self._notify(change_id, action)
        return self.change(change_id)

    def _auto_approve(self, change_id: int) -> None:
        with self._lock:  # re-entrant: the check and the approval are one step for other threads
            record = self.changes.get(change_id)
            if record is None or record["approval_status"] not in (0, 4, 5) or record["status"] >= 4:
                return
            self.act(change_id, "approve", "CAB (auto-approve)", "Approved automatically by the simulator")

    # ------------------------------------------------------------------ webhooks

    def _notify(self, change_id: int, event: str) -> None:
        """What the admin's Workflow Automator rule ("Trigger Webhook", JSON body, custom header) sends."""
        with self._lock:
            if not self.webhook_secret and not self.webhook_url:
                return
            body = json.dumps({"change_id": str(change_id), "event": event}, separators=(",", ":"))
            headers = {"Content-Type": "application/json"}
            if self.webhook_secret:
                headers[WEBHOOK_HEADER] = self.webhook_secret
            self.webhooks.append({"body": body, "headers": headers})
            url = self.webhook_url
        if url:
            threading.Thread(target=self._deliver, args=(url, body, headers), daemon=True,
                             name="freshservice-webhook").start()

    @staticmethod
    def _deliver(url: str, body: str, headers: dict) -> None:
        try:
            httpx.post(url, content=body.encode(), headers=headers, timeout=5.0)
        except httpx.HTTPError as exc:
            logger.info("webhook delivery failed", extra={"error_type": type(exc).__name__})

    # ------------------------------------------------------------------ control

    def control(self, request: Request, action: str) -> Response | None:
        """`_control/changes...`, `_control/cab`, `_control/webhook(s)`; None for the other actions."""
        if action == "webhooks" and request.method == "GET":
            with self._lock:
                return json_response({"webhooks": list(self.webhooks)})
        if action == "webhooks" and request.method == "DELETE":
            with self._lock:
                self.webhooks.clear()
            return json_response({"webhooks": []})
        if action not in ("changes", "cab", "webhook", "quirks") and not action.startswith("changes/"):
            return None
        try:
            spec = read_json(request) if request.method in ("POST", "PUT") else {}
            if action == "quirks":
                with self._lock:
                    if "list_custom_fields" in spec:
                        self.list_custom_fields = bool(spec["list_custom_fields"])
                    return json_response({"list_custom_fields": self.list_custom_fields})
            if action == "cab":
                with self._lock:
                    if "auto_approve_seconds" in spec:
                        value = spec["auto_approve_seconds"]
                        self.auto_approve_seconds = None if value is None else float(value)
                    return json_response({"auto_approve_seconds": self.auto_approve_seconds})
            if action == "webhook":
                with self._lock:
                    if request.method == "POST":
                        self.webhook_url = str(spec.get("url") or "")
                        self.webhook_secret = str(spec.get("secret") or "")
                    return json_response({"url": self.webhook_url, "secret_set": bool(self.webhook_secret)})
            if action == "changes":
                if request.method == "POST":
                    return json_response({"ids": self.seed(**spec)}, 201)
                with self._lock:
                    return json_response({"changes": [self.change(i) for i in sorted(self.changes)]})
            match = re.fullmatch(r"changes/(\d+)(?:/([a-z-]+))?", action)
            if match is None:
                return json_response({"error": f"unknown control action {action!r}"}, 404)
            change_id, verb = int(match.group(1)), match.group(2)
            if verb is None:
                record = self.change(change_id)
                if record is None:
                    return json_response({"error": "no such change"}, 404)
                with self._lock:
                    return json_response({"change": record, "approvals": list(self.approvals[change_id]),
                                          "notes": list(self.notes.get(change_id, []))})
            if request.method != "POST":
                return json_response({"error": f"{request.method} not allowed"}, 405)
            record = self.act(change_id, verb, str(spec.get("approver") or ""), str(spec.get("comment") or ""))
            if record is None:
                return json_response({"error": "no such change"}, 404)
            return json_response({"change": record})
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            return json_response({"error": str(exc)}, 400)

    def seed(self, count: int = 1, days_ago: float = 0, correlation_id: str = "", subject: str = "") -> list[int]:
        """Changes raised by people (no correlation id), or by Syncplane long ago (`correlation_id`), created
        and last updated `days_ago` days ago."""
        with self._lock:
            requester = (self.owner.requesters + self.owner.agents)[0]["id"]
            ids = []
            for n in range(int(count)):
                when = int(time.time() - float(days_ago) * 86400)
                body = {"requester_id": requester, "subject": subject or f"Manual change {self._next_id}",
                        "custom_fields": {"syncplane_correlation_id": f"{correlation_id}-{n}"
                                          if correlation_id and count > 1 else correlation_id or None}}
                record = self._new_record(body, max(when, 0), created=max(when, 0))
                ids.append(record["id"])
            return ids
