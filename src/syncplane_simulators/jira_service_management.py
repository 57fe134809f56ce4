"""Jira Service Management (Cloud) change requests, served by the Jira simulator's site (see
shared/api-notes/jira-service-management.md).

A real site answers Assets discovery and the issue APIs from one base URL, so `JiraAssetsSimulator` (mounted at
`/jira`) hands these paths to `JiraServiceManagementSimulator`, with its Basic / PAT check, fault injector and
stats:

- `POST /rest/api/3/issue` (v3: `description` must be ADF, required fields answered 400 with the platform error
  body `{"errorMessages": [], "errors": {"<field>": "..."}}`) -> 201 `{id, key, self}`;
- `GET /rest/api/3/issue/{idOrKey}` (`fields=` honoured), `GET|POST /rest/api/3/issue/{idOrKey}/transitions`
  (204 on success, 400 when the transition is not available from the current status);
- `GET|POST /rest/api/3/search/jql` with `nextPageToken` paging and the JQL subset Syncplane needs:
  `labels = "x"`, `labels in (...)`, `id in (...)`, `key = X`, `project = X`, `updated >=|>|<=|< "yyyy-MM-dd HH:mm"`
  (read as UTC), AND, `ORDER BY updated|created|id [ASC|DESC]`; a missing id in `id in (...)` is a 400, as Jira
  does for keys (UNCONFIRMED for numeric ids);
- `GET /rest/api/3/field`, `GET /rest/api/3/myself`;
- `GET /rest/servicedeskapi/request/{idOrKey}/approval` (start / limit / isLastPage), `.../approval/{approvalId}`,
  and `POST .../approval/{approvalId}` `{"decision": "approve"|"decline"}` (only by an assigned approver).

The change workflow is the ITSM template's: Planning (new) -> Awaiting approval -> Awaiting implementation ->
Implementing -> Completed (done), with Declined and Canceled also in category done. The template's automation
requests CAB approval on creation (set `request_approval_on_create` false to leave new changes in Planning, the
quirk of reading a change before automation ran). Approvals are kept per issue and also shown in the approvals
custom field, so one search page carries them.

Control endpoints (`/jira/_control/...`): `changes` (list), `changes/{id}/{approve,reject,implement,close,cancel}`
(body: approver, comment), `cab` `{"auto_approve_seconds": N}`, `webhook` `{"url", "secret", "signature"}`,
`webhooks` (GET: the notifications built so far; DELETE clears), `jsm-config` (`request_approval_on_create`,
`max_results`, `field_names` {custom field id: name}).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

from .base import FaultInjector, Stats, json_response, read_json

logger = logging.getLogger("syncplane_simulators.jsm")

PROJECT_KEY = "ITSM"
PROJECT_ID = "10000"
ISSUE_TYPE = {"id": "10005", "name": "Change"}
FIRST_ISSUE_ID = 10001

# Site-specific custom field ids (deliberately not the note's example ids: the connector must discover them),
# named as JSM names its change fields; `field_names` renames them per test (older sites say "Planned start").
FIELD_CHANGE_TYPE = "customfield_10021"
FIELD_RISK = "customfield_10022"
FIELD_PLANNED_START = "customfield_10023"
FIELD_PLANNED_END = "customfield_10024"
FIELD_APPROVALS = "customfield_10025"
CUSTOM_FIELDS = {
    FIELD_CHANGE_TYPE: ("Change type", {"type": "option", "custom": "com.atlassian.jira.plugin.system."
                                        "customfieldtypes:select"}, ("Standard", "Normal", "Emergency")),
    FIELD_RISK: ("Change risk", {"type": "option", "custom": "com.atlassian.jira.plugin.system."
                                 "customfieldtypes:select"}, ("Low", "Medium", "High", "Critical")),
    FIELD_PLANNED_START: ("Change start date", {"type": "datetime", "custom": "com.atlassian.jira.plugin.system."
                                            "customfieldtypes:datetime"}, None),
    FIELD_PLANNED_END: ("Change completion date", {"type": "datetime", "custom": "com.atlassian.jira.plugin.system."
                                        "customfieldtypes:datetime"}, None),
    FIELD_APPROVALS: ("Approvals", {"type": "sd-approvals", "custom": "com.atlassian.servicedesk.approvals-plugin:"
                                    "sd-approvals"}, None),
}
SYSTEM_FIELDS = ("summary", "description", "status", "resolution", "labels", "project", "issuetype", "created",
                 "updated", "reporter", "comment")

CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
# The ITSM change template's statuses: name -> (id, category)
STATUSES = {
    "Planning": ("10100", "new"),
    "Awaiting approval": ("10101", "indeterminate"),
    "Awaiting implementation": ("10102", "indeterminate"),
    "Implementing": ("10103", "indeterminate"),
    "Completed": ("10104", "done"),
    "Declined": ("10105", "done"),
    "Canceled": ("10106", "done"),
}
RESOLUTIONS = {"Done": "10000", "Won't Do": "10001", "Declined": "10002"}
# status -> {transition name: (id, target status)}
TRANSITIONS = {
    "Planning": {"Request approval": ("11", "Awaiting approval"), "Cancel": ("91", "Canceled")},
    "Awaiting approval": {"Cancel": ("91", "Canceled")},
    "Awaiting implementation": {"Implement": ("21", "Implementing"), "Cancel": ("91", "Canceled")},
    "Implementing": {"Complete": ("31", "Completed")},
}
RESOLUTION_OF = {"Completed": "Done", "Declined": "Declined", "Canceled": "Won't Do"}

CAB_MEMBERS = (
    ("5b10ac8d82e05b22cc7d4ef5", "Zoë Ødegård", "zoe.odegard@acme.example"),
    ("5b10ac8d82e05b22cc7d4ef6", "Jürgen Müller", "juergen.mueller@acme.example"),
)
SYNCPLANE_ACCOUNT = ("5c2f1e0a9b3d4e5f6a7b8c9d", "Syncplane integration")

ADF_ERROR = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
_CONTROL_ACTIONS = ("approve", "reject", "implement", "close", "cancel")


def error_body(*messages: str, errors: dict | None = None) -> dict:
    return {"errorMessages": list(messages), "errors": errors or {}}


def jira_time(ms: int) -> str:
    """Platform date form: "2024-06-01T14:05:31.120+0000" (offset without a colon)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+0000"


def sd_date(ms: int) -> dict:
    """servicedeskapi's date object."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    friendly = time.strftime("%d/%b/%y %I:%M %p", time.gmtime(ms // 1000))
    return {"iso8601": iso + "+0000", "jira": jira_time(ms), "friendly": friendly, "epochMillis": ms}


def _parse_jira_time(value) -> int | None:
    if not isinstance(value, str):
        return None
    for form in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(value, form)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    return None


def is_adf(value) -> bool:
    return (isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1
            and isinstance(value.get("content"), list))


# ---------------------------------------------------------------------------------------------- JQL


class JQLError(ValueError):
    pass


_CLAUSE = re.compile(
    r'^\s*(?P<field>[A-Za-z]+)\s*(?P<op>>=|<=|!=|=|>|<|\bin\b)\s*(?P<value>\((?:[^()"]|"[^"]*")*\)|"[^"]*"|[^\s()"]+)\s*$',
    re.I,
)
_ORDER_BY = re.compile(r"\s+order\s+by\s+(?P<order>.+)$", re.I)
_JQL_DATE = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


def _values(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("("):
        items = re.findall(r'"([^"]*)"|([^,\s()"]+)', text[1:-1])
        return [a or b for a, b in items]
    return [text[1:-1] if text.startswith('"') else text]


def _jql_date(text: str) -> int:
    for form in _JQL_DATE:
        try:
            return int(datetime.strptime(text, form).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    raise JQLError(f"Date value '{text}' for field 'updated' is invalid. Valid formats include: "
                   "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd'")


class JQL:
    """The subset of JQL Syncplane uses: clauses joined by AND, and ORDER BY."""

    def __init__(self, text: str):
        self.text = text
        self.order: list[tuple[str, bool]] = []
        match = _ORDER_BY.search(" " + text)
        where = (" " + text)[: match.start()] if match else text
        if match:
            for part in match.group("order").split(","):
                words = part.split()
                if not words or words[0].lower() not in ("updated", "created", "id", "key") or len(words) > 2:
                    raise JQLError(f"Error in the JQL Query: cannot order by '{part.strip()}'")
                desc = len(words) == 2 and words[1].lower() == "desc"
                self.order.append(("id" if words[0].lower() == "key" else words[0].lower(), desc))
        self.clauses: list[tuple[str, str, list[str]]] = []
        if where.strip():
            for part in re.split(r"\s+AND\s+", where.strip(), flags=re.I):
                clause = _CLAUSE.match(part)
                if not clause:
                    raise JQLError(f"Error in the JQL Query: the clause '{part.strip()}' is not understood")
                field, op = clause.group("field").lower(), clause.group("op").lower()
                if field not in ("labels", "id", "issue", "key", "issuekey", "project", "updated", "created"):
                    raise JQLError(f"Field '{clause.group('field')}' does not exist or you do not have "
                                   "permission to view it.")
                self.clauses.append((field, op, _values(clause.group("value"))))

    def wanted_ids(self) -> list[str]:
        """The ids an `id in (...)` clause names (each must exist, as for keys)."""
        return [v for field, op, values in self.clauses if field in ("id", "issue") for v in values]

    def matches(self, issue: dict) -> bool:
        for field, op, values in self.clauses:
            if field == "labels":
                have = {label.lower() for label in issue["fields"]["labels"]}
                hit = any(v.lower() in have for v in values)
                if (op == "!=") == hit:
                    return False
            elif field in ("id", "issue", "key", "issuekey"):
                hit = issue["id"] in values or issue["key"].upper() in {v.upper() for v in values}
                if (op == "!=") == hit:
                    return False
            elif field == "project":
                if (issue["key"].split("-")[0].upper() == values[0].upper()) == (op == "!="):
                    return False
            else:
                limit = _jql_date(values[0])
                at = issue["_updated_ms" if field == "updated" else "_created_ms"]
                ok = {"=": at == limit, "!=": at != limit, ">": at > limit, ">=": at >= limit, "<": at < limit,
                      "<=": at <= limit}.get(op)
                if ok is None:
                    raise JQLError(f"Error in the JQL Query: operator '{op}' is not supported for dates")
                if not ok:
                    return False
        return True

    def sort(self, issues: list[dict]) -> list[dict]:
        issues = sorted(issues, key=lambda i: int(i["id"]))
        for field, desc in reversed(self.order):
            key = {"updated": "_updated_ms", "created": "_created_ms"}.get(field)
            issues.sort(key=(lambda i, k=key: i[k]) if key else (lambda i: int(i["id"])), reverse=desc)
        return issues


# ---------------------------------------------------------------------------------------------- simulator


class JiraServiceManagementSimulator:
    """The JSM / platform issue API of the Jira site; `JiraAssetsSimulator` delegates to it."""

    def __init__(self, *, authenticate: Callable[[Request], bool], faults: FaultInjector | None = None,
                 stats: Stats | None = None, email: str = "syncplane@acme.example"):
        self.authenticate = authenticate
        self.faults = faults or FaultInjector()
        self.stats = stats or Stats()
        self.email = email
        self._lock = threading.RLock()
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        with self._lock:
            for timer in getattr(self, "_timers", ()):
                timer.cancel()  # a pending auto-approval must not hit a new change that reuses the id
            self._issues: dict[str, dict] = {}  # id -> issue (fields as the API shows them, plus _private keys)
            self._approvals: dict[str, list[dict]] = {}  # issue id -> approvals, oldest first
            self._next_number = 1
            self._next_approval = 1
            self._clock = 0
            self.auto_approve_seconds: float | None = None
            self.request_approval_on_create = True
            self.max_results = 100
            self.webhook_url = ""
            self.webhook_secret = ""
            self.webhook_signature = "hmac-sha256"
            self.webhooks: list[dict] = []
            self._timers: list[threading.Timer] = []
            self.field_names: dict[str, str] = {}  # custom field id -> the name this site gives it

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    def _now(self) -> int:
        """Epoch ms, strictly increasing: every change has its own `updated`."""
        self._clock = max(self._clock + 1, int(time.time() * 1000))
        return self._clock

    def changes(self) -> list[dict]:
        with self._lock:
            return [self._public(issue) for issue in sorted(self._issues.values(), key=lambda i: int(i["id"]))]

    def issue(self, id_or_key: str) -> dict | None:
        with self._lock:
            found = self._find(id_or_key)
            return self._public(found) if found else None

    def _find(self, id_or_key: str) -> dict | None:
        if id_or_key in self._issues:
            return self._issues[id_or_key]
        for issue in self._issues.values():
            if issue["key"].upper() == str(id_or_key).upper():
                return issue
        return None

    # ------------------------------------------------------------------ routing

    @staticmethod
    def serves(path: str) -> bool:
        return path.startswith("/rest/api/3/") or path.startswith("/rest/servicedeskapi/request")

    @staticmethod
    def controls(action: str) -> bool:
        return action.split("/")[0] in ("changes", "cab", "webhook", "webhooks", "jsm-config")

    def dispatch(self, request: Request, site: str) -> Response:
        self.stats.incr("jsm_requests")
        if not self.authenticate(request):
            self.stats.incr("auth_failures")
            # Jira Cloud answers a bad API token with 401 and (often) no useful body.
            return Response(b"", status=401, headers={"WWW-Authenticate": 'Basic realm="protected-area"'})
        path = request.path.rstrip("/")
        try:
            if path == "/rest/api/3/issue":
                return self._only(request, "POST") or self._create(request, site)
            match = re.fullmatch(r"/rest/api/3/issue/([^/]+)(/transitions)?", path)
            if match:
                if match.group(2):
                    return self._transitions(request, match.group(1))
                return self._only(request, "GET") or self._get_issue(request, match.group(1), site)
            if path == "/rest/api/3/search/jql":
                return self._only(request, "GET", "POST") or self._search(request, site)
            if path == "/rest/api/3/field":
                self.stats.incr("field_requests")
                return self._only(request, "GET") or json_response(self._fields())
            if path == "/rest/api/3/myself":
                return json_response({"accountId": SYNCPLANE_ACCOUNT[0], "displayName": SYNCPLANE_ACCOUNT[1],
                                      "emailAddress": self.email, "active": True, "timeZone": "UTC",
                                      "accountType": "atlassian"})
            match = re.fullmatch(r"/rest/servicedeskapi/request/([^/]+)/approval(?:/([^/]+))?", path)
            if match:
                return self._approval_api(request, match.group(1), match.group(2), site)
        except JQLError as exc:
            self.stats.incr("jql_errors")
            return json_response(error_body(str(exc)), 400)
        return json_response(error_body("null for uri: " + request.url), 404)

    @staticmethod
    def _only(request: Request, *methods: str) -> Response | None:
        if request.method in methods:
            return None
        return json_response(error_body("Method Not Allowed"), 405, headers={"Allow": ", ".join(methods)})

    # ------------------------------------------------------------------ platform API

    def _fields(self) -> list[dict]:
        out = [{"id": name, "key": name, "name": name.capitalize(), "custom": False, "orderable": True,
                "navigable": True, "searchable": True, "clauseNames": [name]} for name in SYSTEM_FIELDS]
        for field_id, (default_name, schema, _options) in CUSTOM_FIELDS.items():
            name = self.field_names.get(field_id, default_name)
            number = field_id.rsplit("_", 1)[1]
            out.append({"id": field_id, "key": field_id, "name": name, "custom": True, "orderable": True,
                        "navigable": True, "searchable": True,
                        "clauseNames": [f"cf[{number}]", name],
                        "schema": {**schema, "customId": int(number)}})
        return out

    def _create(self, request: Request, site: str) -> Response:
        self.stats.incr("creates")
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return json_response(error_body("Unexpected character: the request body is not valid JSON"), 400)
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return json_response(error_body("The request body has no fields object."), 400)
        errors = {}
        project = fields.get("project") if isinstance(fields.get("project"), dict) else {}
        if project.get("key", "").upper() != PROJECT_KEY and project.get("id") != PROJECT_ID:
            errors["project"] = "valid project is required"
        issuetype = fields.get("issuetype") if isinstance(fields.get("issuetype"), dict) else {}
        if issuetype.get("name") != ISSUE_TYPE["name"] and issuetype.get("id") != ISSUE_TYPE["id"]:
            errors["issuetype"] = "valid issue type is required"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        if "description" in fields and fields["description"] is not None and not is_adf(fields["description"]):
            errors["description"] = ADF_ERROR
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(not isinstance(x, str) or not x or " " in x for x in labels):
            errors["labels"] = "The label must not contain spaces."
        for field_id, (name, _schema, options) in CUSTOM_FIELDS.items():
            if field_id not in fields or field_id == FIELD_APPROVALS:
                if field_id == FIELD_APPROVALS and field_id in fields:
                    errors[field_id] = f"Field '{field_id}' cannot be set. It is not on the appropriate screen, " \
                                       "or unknown."
                continue
            value = fields[field_id]
            if options is not None:
                chosen = value.get("value") if isinstance(value, dict) else None
                if chosen not in options:
                    errors[field_id] = f"Specify a valid 'id' or 'name' for {name}"
            elif _parse_jira_time(value) is None:
                errors[field_id] = f"{name}: invalid date format. Please enter the date in the format " \
                                   "\"yyyy-MM-dd'T'HH:mm:ss.SSSZ\"."
        unknown = [k for k in fields if k.startswith("customfield_") and k not in CUSTOM_FIELDS]
        for field_id in unknown:
            errors[field_id] = f"Field '{field_id}' cannot be set. It is not on the appropriate screen, or unknown."
        if errors:
            self.stats.incr("create_errors")
            return json_response(error_body(errors=errors), 400)
        with self._lock:
            now = self._now()
            issue_id = str(FIRST_ISSUE_ID + self._next_number - 1)
            key = f"{PROJECT_KEY}-{self._next_number}"
            self._next_number += 1
            issue = {
                "id": issue_id, "key": key, "_created_ms": now, "_updated_ms": now, "_comments": [],
                "_status": "Planning", "_resolution": None,
                "fields": {
                    "summary": summary.strip(), "description": fields.get("description"),
                    "labels": list(dict.fromkeys(labels)), "issuetype": dict(ISSUE_TYPE),
                    "project": {"id": PROJECT_ID, "key": PROJECT_KEY, "name": "IT Service Management"},
                    "reporter": {"accountId": SYNCPLANE_ACCOUNT[0], "displayName": SYNCPLANE_ACCOUNT[1]},
                    **{f: fields[f] for f in CUSTOM_FIELDS if f in fields and f != FIELD_APPROVALS},
                },
            }
            self._issues[issue_id] = issue
            self._approvals[issue_id] = []
            self._notify(issue, "jira:issue_created", site)
            if self.request_approval_on_create:
                self._move(issue, "Awaiting approval", site)
            self._schedule_auto_approve(issue_id, site)
        return json_response({"id": issue_id, "key": key, "self": f"{site}/rest/api/3/issue/{issue_id}"}, 201)

    def _public(self, issue: dict, site: str = "", wanted: set[str] | None = None) -> dict:
        status_id, category = STATUSES[issue["_status"]]
        resolution = issue["_resolution"]
        fields = {
            **issue["fields"],
            "created": jira_time(issue["_created_ms"]),
            "updated": jira_time(issue["_updated_ms"]),
            "status": {"self": f"{site}/rest/api/3/status/{status_id}", "id": status_id, "name": issue["_status"],
                       "description": "", "statusCategory": {"self": f"{site}/rest/api/3/statuscategory/"
                                                             f"{CATEGORIES[category]['id']}", **CATEGORIES[category]}},
            "resolution": {"id": RESOLUTIONS[resolution], "name": resolution} if resolution else None,
            "comment": {"comments": list(issue["_comments"]), "total": len(issue["_comments"]), "startAt": 0,
                        "maxResults": len(issue["_comments"])},
            FIELD_APPROVALS: [self._approval_json(issue["id"], a, site) for a in self._approvals[issue["id"]]],
        }
        if wanted is not None and "*all" not in wanted:
            fields = {k: v for k, v in fields.items() if k in wanted}
        return {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
                "id": issue["id"], "self": f"{site}/rest/api/3/issue/{issue['id']}", "key": issue["key"],
                "fields": fields}

    @staticmethod
    def _wanted_fields(value) -> set[str] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else str(value).split(",")
        wanted = {str(v).strip() for v in items if str(v).strip()}
        return None if not wanted or "*all" in wanted or "*navigable" in wanted else wanted

    def _get_issue(self, request: Request, id_or_key: str, site: str) -> Response:
        self.stats.incr("issue_reads")
        with self._lock:
            issue = self._find(id_or_key)
            if issue is None:
                # Quirk 7: missing and not permitted look the same.
                return json_response(error_body("Issue does not exist or you do not have permission to see it."),
                                     404)
            return json_response(self._public(issue, site, self._wanted_fields(request.args.get("fields"))))

    def _transitions(self, request: Request, id_or_key: str) -> Response:
        with self._lock:
            issue = self._find(id_or_key)
            if issue is None:
                return json_response(error_body("Issue does not exist or you do not have permission to see it."),
                                     404)
            available = TRANSITIONS.get(issue["_status"], {})
            if request.method == "GET":
                return json_response({"expand": "transitions", "transitions": [
                    {"id": tid, "name": name, "hasScreen": False, "isGlobal": False, "isInitial": False,
                     "isAvailable": True, "isConditional": False, "isLooped": False,
                     "to": {"id": STATUSES[target][0], "name": target,
                            "statusCategory": CATEGORIES[STATUSES[target][1]]}}
                    for name, (tid, target) in available.items()]})
            if request.method != "POST":
                return json_response(error_body("Method Not Allowed"), 405, headers={"Allow": "GET, POST"})
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                return json_response(error_body("The request body is not valid JSON"), 400)
            wanted = str(((body or {}).get("transition") or {}).get("id", ""))
            target = next((t for tid, t in available.values() if tid == wanted), None)
            if target is None:
                return json_response(error_body(f"Transition id '{wanted}' is not valid for this issue."), 400)
            for item in ((body.get("update") or {}).get("comment") or []):
                comment = (item or {}).get("add", {}).get("body")
                if comment is not None and not is_adf(comment):
                    return json_response(error_body(errors={"comment": ADF_ERROR}), 400)
                if comment is not None:
                    self._comment(issue, comment)
            site = request.host_url.rstrip("/") + request.script_root
            self._move(issue, target, site)
            return Response(status=204)

    def _search(self, request: Request, site: str) -> Response:
        self.stats.incr("search_requests")
        if request.method == "POST":
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                return json_response(error_body("The request body is not valid JSON"), 400)
            if not isinstance(body, dict):
                return json_response(error_body("The request body is not a JSON object"), 400)
        else:
            body = {k: request.args.get(k) for k in ("jql", "nextPageToken", "maxResults", "fields")}
        text = body.get("jql") or ""
        try:
            size = int(body.get("maxResults") or 50)
        except (TypeError, ValueError):
            return json_response(error_body("maxResults must be a number"), 400)
        size = max(1, min(size, self.max_results))
        query = JQL(text)
        token = body.get("nextPageToken")
        start = 0
        if token:
            try:
                digest, offset = base64.urlsafe_b64decode(str(token).encode()).decode().split(":")
                start = int(offset)
            except (ValueError, UnicodeDecodeError):
                return json_response(error_body("The nextPageToken is invalid."), 400)
            if digest != _digest(text):
                return json_response(error_body("The nextPageToken does not belong to this JQL query."), 400)
        with self._lock:
            missing = [v for v in query.wanted_ids() if self._find(v) is None]
            if missing:
                return json_response(error_body(
                    f"An issue with key '{missing[0]}' does not exist for field 'id'."), 400)
            matches = query.sort([i for i in self._issues.values() if query.matches(i)])
            page = matches[start:start + size]
            wanted = self._wanted_fields(body.get("fields")) or {"summary", "status", "updated"}
            issues = [self._public(i, site, wanted) for i in page]
        answer = {"issues": issues, "isLast": start + len(page) >= len(matches)}
        if not answer["isLast"]:
            answer["nextPageToken"] = base64.urlsafe_b64encode(f"{_digest(text)}:{start + len(page)}".encode()
                                                               ).decode()
        return json_response(answer)

    # ------------------------------------------------------------------ servicedeskapi approvals

    def _approval_json(self, issue_id: str, approval: dict, site: str) -> dict:
        out = {
            "id": approval["id"], "name": approval["name"], "finalDecision": approval["finalDecision"],
            "canAnswerApproval": False,
            "approvers": [{"approver": {"accountId": a["accountId"], "displayName": a["displayName"],
                                        "emailAddress": a["emailAddress"], "active": True},
                           "approverDecision": a["decision"]} for a in approval["approvers"]],
            "createdDate": sd_date(approval["created_ms"]),
            "_links": {"self": f"{site}/rest/servicedeskapi/request/{issue_id}/approval/{approval['id']}"},
        }
        if approval.get("completed_ms"):
            out["completedDate"] = sd_date(approval["completed_ms"])
        return out

    def _approval_api(self, request: Request, id_or_key: str, approval_id: str | None, site: str) -> Response:
        self.stats.incr("approval_requests")
        with self._lock:
            issue = self._find(id_or_key)
            if issue is None:
                return json_response({"errorMessage": "The request could not be found or you do not have "
                                                      "permission to see it.",
                                      "i18nErrorMessage": {"i18nKey": "sd.request.error.not.found",
                                                           "parameters": []}}, 404)
            approvals = self._approvals[issue["id"]]
            if approval_id is None:
                if request.method != "GET":
                    return json_response({"errorMessage": "Method Not Allowed"}, 405, headers={"Allow": "GET"})
                start = max(_int(request.args.get("start"), 0), 0)
                limit = max(1, min(_int(request.args.get("limit"), 50), 50))
                values = [self._approval_json(issue["id"], a, site) for a in approvals[start:start + limit]]
                return json_response({"size": len(values), "start": start, "limit": limit,
                                      "isLastPage": start + len(values) >= len(approvals), "values": values,
                                      "_links": {"base": f"{site}/rest/servicedeskapi", "context": ""}})
            approval = next((a for a in approvals if a["id"] == approval_id), None)
            if approval is None:
                return json_response({"errorMessage": f"The approval {approval_id} does not exist.",
                                      "i18nErrorMessage": {"i18nKey": "sd.approval.error.not.found",
                                                           "parameters": [approval_id]}}, 404)
            if request.method == "GET":
                return json_response(self._approval_json(issue["id"], approval, site))
            if request.method != "POST":
                return json_response({"errorMessage": "Method Not Allowed"}, 405, headers={"Allow": "GET, POST"})
            # Only an assigned approver may answer; the integration user is not one.
            if not any(a["emailAddress"] == self.email for a in approval["approvers"]):
                return json_response({"errorMessage": "You are not an approver of this request.",
                                      "i18nErrorMessage": {"i18nKey": "sd.approval.error.not.approver",
                                                           "parameters": []}}, 403)
            if approval["finalDecision"] != "pending":
                return json_response({"errorMessage": "This approval has already been decided.",
                                      "i18nErrorMessage": {"i18nKey": "sd.approval.error.decided",
                                                           "parameters": []}}, 400)
            decision = (read_json(request) or {}).get("decision")
            if decision not in ("approve", "decline"):
                return json_response({"errorMessage": "The decision must be approve or decline."}, 400)
            self._decide(issue, "approved" if decision == "approve" else "declined", self.email, "", site)
            return json_response(self._approval_json(issue["id"], approval, site))

    # ------------------------------------------------------------------ workflow

    def _move(self, issue: dict, status: str, site: str) -> None:
        """Change status the way the workflow does; entering Awaiting approval opens a CAB approval."""
        issue["_status"] = status
        issue["_resolution"] = RESOLUTION_OF.get(status)
        if status == "Awaiting approval" and not any(a["finalDecision"] == "pending"
                                                     for a in self._approvals[issue["id"]]):
            approval_id = str(self._next_approval)
            self._next_approval += 1
            self._approvals[issue["id"]].append({
                "id": approval_id, "name": "Change approval", "finalDecision": "pending",
                "created_ms": self._now(), "completed_ms": None,
                "approvers": [{"accountId": a, "displayName": n, "emailAddress": e, "decision": "pending"}
                              for a, n, e in CAB_MEMBERS],
            })
        issue["_updated_ms"] = self._now()
        self._notify(issue, "jira:issue_updated", site)

    def _comment(self, issue: dict, body: dict, author: tuple[str, str] = SYNCPLANE_ACCOUNT) -> None:
        now = self._now()
        issue["_comments"].append({"id": str(20000 + sum(len(i["_comments"]) for i in self._issues.values())),
                                   "author": {"accountId": author[0], "displayName": author[1]},
                                   "body": body, "created": jira_time(now), "updated": jira_time(now)})

    def _approver(self, approval: dict, who: str) -> dict:
        who = (who or "").strip()
        for approver in approval["approvers"]:
            if who in ("", approver["emailAddress"], approver["displayName"], approver["accountId"]):
                return approver
        account = "5b10ac8d" + hashlib.blake2b(who.encode(), digest_size=8).hexdigest()
        approver = {"accountId": account, "displayName": who.split("@")[0] if "@" in who else who,
                    "emailAddress": who if "@" in who else "", "decision": "pending"}
        approval["approvers"].append(approver)
        return approver

    def _decide(self, issue: dict, decision: str, who: str, comment: str, site: str) -> None:
        approval = next((a for a in self._approvals[issue["id"]] if a["finalDecision"] == "pending"), None)
        if approval is None:
            raise ConflictError(f"{issue['key']} has no pending approval (status {issue['_status']})")
        approver = self._approver(approval, who)
        approver["decision"] = decision
        approval["finalDecision"] = decision
        approval["completed_ms"] = self._now()
        if comment:
            self._comment(issue, _adf(comment), (approver["accountId"], approver["displayName"]))
        self._move(issue, "Awaiting implementation" if decision == "approved" else "Declined", site)

    def act(self, issue_id: str, action: str, approver: str = "", comment: str = "", site: str = "") -> dict:
        """A CAB member's or implementer's action (control endpoints, the auto-approver)."""
        with self._lock:
            issue = self._find(issue_id)
            if issue is None:
                raise KeyError(f"no change {issue_id}")
            status = issue["_status"]
            if action in ("approve", "reject"):
                self._decide(issue, "approved" if action == "approve" else "declined", approver, comment, site)
            elif action == "implement":
                if status != "Awaiting implementation":
                    raise ConflictError(f"{issue['key']} cannot be implemented from {status}")
                self._move(issue, "Implementing", site)
            elif action == "close":
                if status not in ("Implementing", "Awaiting implementation"):
                    raise ConflictError(f"{issue['key']} cannot be completed from {status}")
                self._move(issue, "Completed", site)
            elif action == "cancel":
                if STATUSES[status][1] == "done":
                    raise ConflictError(f"{issue['key']} is already {status}")
                if comment:
                    self._comment(issue, _adf(comment))
                self._move(issue, "Canceled", site)
            else:
                raise KeyError(f"unknown action {action}")
            return self._public(issue, site)

    def _schedule_auto_approve(self, issue_id: str, site: str) -> None:
        seconds = self.auto_approve_seconds
        if seconds is None:
            return
        if seconds <= 0:
            self._auto_approve(issue_id, site)
            return
        timer = threading.Timer(seconds, self._auto_approve, args=(issue_id, site))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _auto_approve(self, issue_id: str, site: str) -> None:
        with self._lock:
            issue = self._issues.get(issue_id)
            if issue is None or not any(a["finalDecision"] == "pending" for a in self._approvals[issue_id]):
                return
            self._decide(issue, "approved", CAB_MEMBERS[0][2], "Approved by the CAB (simulated).", site)

    # ------------------------------------------------------------------ webhooks

    def _notify(self, issue: dict, event: str, site: str) -> None:
        """The admin webhook's notification (`X-Hub-Signature: sha256=<hex>` when a secret is set)."""
        if not (self.webhook_url or self.webhook_secret):
            return
        public = self._public(issue, site)
        payload = {
            "timestamp": issue["_updated_ms"],
            "webhookEvent": event,
            "issue_event_type_name": "issue_created" if event == "jira:issue_created" else "issue_generic",
            "user": {"accountId": SYNCPLANE_ACCOUNT[0], "displayName": SYNCPLANE_ACCOUNT[1]},
            "issue": {"id": public["id"], "key": public["key"], "self": public["self"],
                      "fields": {k: public["fields"][k] for k in ("summary", "status", "updated", "labels")}},
            "changelog": {"id": str(issue["_updated_ms"]),
                          "items": [{"field": "status", "fieldtype": "jira", "toString": issue["_status"]}]},
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        headers = {"Content-Type": "application/json", "User-Agent": "Atlassian Webhook HTTP Client"}
        if self.webhook_secret:
            if self.webhook_signature == "shared-secret":
                headers["X-Syncplane-Webhook-Secret"] = self.webhook_secret
            else:
                digest = hmac.new(self.webhook_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
                headers["X-Hub-Signature"] = f"sha256={digest}"
        self.webhooks.append({"body": body, "headers": headers})
        if self.webhook_url:
            threading.Thread(target=_deliver, args=(self.webhook_url, body, headers), daemon=True,
                             name="jsm-webhook").start()

    # ------------------------------------------------------------------ control endpoints

    def control(self, request: Request, action: str) -> Response:
        site = request.host_url.rstrip("/") + request.script_root
        try:
            spec = read_json(request) if request.method in ("POST", "PUT") else {}
            parts = action.split("/")
            if parts[0] == "changes":
                if len(parts) == 1 and request.method == "GET":
                    return json_response({"changes": self.changes()})
                if len(parts) == 3 and parts[2] in _CONTROL_ACTIONS and request.method == "POST":
                    issue = self.act(parts[1], parts[2], approver=str(spec.get("approver") or ""),
                                     comment=str(spec.get("comment") or ""), site=site)
                    return json_response(issue)
                if len(parts) == 2 and request.method == "GET":
                    issue = self.issue(parts[1])
                    return json_response(issue) if issue else json_response({"error": "no such change"}, 404)
            elif parts[0] == "cab" and request.method == "POST":
                seconds = spec.get("auto_approve_seconds")
                with self._lock:
                    self.auto_approve_seconds = None if seconds is None else float(seconds)
                return json_response({"auto_approve_seconds": self.auto_approve_seconds})
            elif parts[0] == "webhook" and request.method == "POST":
                signature = spec.get("signature", "hmac-sha256")
                if signature not in ("hmac-sha256", "shared-secret"):
                    raise ValueError("signature must be hmac-sha256 or shared-secret")
                with self._lock:
                    self.webhook_url = str(spec.get("url") or "")
                    self.webhook_secret = str(spec.get("secret") or "")
                    self.webhook_signature = signature
                return json_response({"url": self.webhook_url, "signature": signature,
                                      "secret_set": bool(self.webhook_secret)})
            elif parts[0] == "webhooks" and request.method == "GET":
                with self._lock:
                    return json_response({"webhooks": list(self.webhooks)})
            elif parts[0] in ("webhooks", "webhook") and request.method == "DELETE":
                with self._lock:
                    self.webhooks.clear()
                return json_response({"webhooks": []})
            elif parts[0] == "jsm-config" and request.method == "POST":
                with self._lock:
                    for key in ("request_approval_on_create", "max_results", "field_names"):
                        if key in spec:
                            setattr(self, key, spec[key])
                return json_response({"request_approval_on_create": self.request_approval_on_create,
                                      "max_results": self.max_results, "field_names": self.field_names})
        except ConflictError as exc:
            return json_response({"error": str(exc)}, 409)
        except KeyError as exc:
            return json_response({"error": str(exc).strip("'\"")}, 404)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"error": f"{request.method} not allowed on {action}"}, 405)


class ConflictError(Exception):
    pass


def _adf(text: str) -> dict:
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in text.splitlines() if line]}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def _int(value, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _deliver(url: str, body: str, headers: dict) -> None:
    try:
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - a test or demo target
            answer.read()
    except Exception as exc:  # noqa: BLE001 - a webhook target that is down is the receiver's problem
        logger.warning("webhook delivery to %s failed: %s", url, exc.__class__.__name__)
