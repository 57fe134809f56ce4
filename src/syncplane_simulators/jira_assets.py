"""Jira Assets (formerly Insight) simulator, Cloud and Data Center (see shared/api-notes/jira-assets.md).

What it imitates, mounted under `/jira`:
- the site host's workspace discovery, `GET /rest/servicedeskapi/assets/workspace`;
- the Cloud Assets API, `/jsm/assets/workspace/{workspaceId}/v1/...`: `POST object/aql` (startAt / maxResults /
  isLast / total, a server-side cap on maxResults, the historical "isLast at maxResults >= 1000" bug),
  `POST object/aql/totalcount`, `GET object/{id}`, `GET objectschema/list`, `GET objectschema/{id}/objecttypes/flat`
  and `GET objecttype/{id}/attributes`; Basic auth with an Atlassian e-mail and API token;
- the Data Center API, `/rest/assets/1.0/...` (and the older `/rest/insight/1.0/...`): `GET aql/objects` with 1-based
  `page` / `resultPerPage`, numeric ids, locale-formatted dates with the instant in `timestamp`; Basic or a
  personal access token (Bearer);
- attributes identified only by `objectTypeAttributeId`, with ids that differ per object type; status, reference
  and user values; missing attribute vs empty value list; AQL errors as 400 with a Jira-style body;
  rate limiting (429 + Retry-After), 5xx, slow answers and malformed objects on request.

Data: object `i` is a pure function of `(seed, i, version of i)`; nothing is materialised up front. Device `i` is
ServiceNow's device `i` for the first `overlap` share of the indices (with the serial spelled differently now and
then), a device no other simulator knows after that. Touches, deletions and faults live in a small overlay.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from werkzeug.wrappers import Request, Response

from .base import JSON_UTF8, FaultInjector, KeptTexts, SimulatorApp, Stats, json_response, read_json
from .devices import MAKES, PLACEHOLDER_SERIALS, device_hash, device_identity
from .jira_service_management import JiraServiceManagementSimulator

DEFAULT_EMAIL = "syncplane@acme.example"
DEFAULT_API_TOKEN = "demo-jira-token"
DEFAULT_PAT = "demo-jira-pat"
DEFAULT_WORKSPACE_ID = "a1b2c3d4-e5f6-47a8-9b0c-1d2e3f405162"

SCHEMA_ID = "3"
SCHEMA_KEY = "ITAM"
OBJECT_ID_BASE = 1001  # object i has id OBJECT_ID_BASE + i
DISTINCT_DEVICE_OFFSET = 1_000_000  # devices past the overlap: indices no other simulator uses
BASE_TIME_MS = calendar.timegm((2024, 1, 8, 6, 0, 0)) * 1000
STEP_MS = 20_000  # object i was last updated at BASE_TIME + i * 20 s (plus a few milliseconds)

# device kind -> (object type id, object type name)
OBJECT_TYPES = {
    "laptop": ("31", "Laptop"),
    "desktop": ("32", "Desktop"),
    "server": ("33", "Server"),
    "virtual_machine": ("34", "Virtual Machine"),
    "tablet": ("35", "Tablet"),
}
TYPE_BY_ID = {tid: name for tid, name in OBJECT_TYPES.values()}
TYPE_IDS = {name: tid for tid, name in OBJECT_TYPES.values()}
REFERENCE_TYPES = {"40": "Manufacturer", "41": "Location"}

# (name, type, defaultType id or None, referenceObjectTypeId): type 0 Default, 1 Object, 2 User, 7 Status
_ATTRIBUTES = {
    "Key": (0, 0, None),
    "Name": (0, 0, None),
    "Created": (0, 6, None),
    "Updated": (0, 6, None),
    "Serial Number": (0, 0, None),
    "Asset Tag": (0, 0, None),
    "Status": (7, None, None),
    "Manufacturer": (1, None, "40"),
    "Model": (0, 0, None),
    "Hostname": (0, 0, None),
    "FQDN": (0, 0, None),
    "IP Address": (0, 0, None),
    "MAC Address": (0, 0, None),
    "Operating System": (0, 0, None),
    "OS Version": (0, 0, None),
    "Owner": (2, None, None),
    "Owner Email": (0, 8, None),
    "Location": (1, None, "41"),
    "Department": (0, 10, None),
    "Last Seen": (0, 6, None),
}
_DEFAULT_TYPE_NAMES = {0: "Text", 6: "DateTime", 8: "Email", 10: "Select"}
_END_USER = ("Serial Number", "Asset Tag", "Status", "Manufacturer", "Model", "Hostname", "MAC Address",
             "Operating System", "OS Version", "Owner", "Owner Email", "Location", "Department", "Last Seen")
_DATA_CENTRE = ("Serial Number", "Status", "Hostname", "FQDN", "IP Address", "MAC Address", "Manufacturer", "Model",
                "Operating System", "OS Version", "Location", "Department", "Last Seen")
# Each type lists its attributes in its own order, so the ids of "Serial Number" differ per type.
TYPE_ATTRIBUTES = {
    "31": ("Key", "Name", *_END_USER, "Created", "Updated"),
    "32": ("Key", "Name", "Status", *[a for a in _END_USER if a != "Status"], "Created", "Updated"),
    "33": ("Key", "Name", *_DATA_CENTRE, "Created", "Updated"),
    "34": ("Key", "Name", "Hostname", *[a for a in _DATA_CENTRE if a != "Hostname"], "Created", "Updated"),
    "35": ("Key", "Name", "Owner", "Owner Email", *[a for a in _END_USER if a not in ("Owner", "Owner Email")],
           "Created", "Updated"),
}

# (id, name, category): category 0 inactive, 1 active, 2 pending; picked from one random byte
STATUSES = (
    ("1", "In Use", 1), ("2", "In Stock", 2), ("3", "In Repair", 2), ("4", "Retired", 0),
    ("5", "Disposed", 0), ("6", "Lost", 0),
)
_STATUS_BY_BYTE = tuple(STATUSES[0 if b < 200 else 1 if b < 222 else 2 if b < 232 else 3 if b < 244
                                 else 4 if b < 250 else 5] for b in range(256))
LOCATIONS = {
    "BER": "Berlin HQ", "MUC": "München Office", "FRA": "Frankfurt Data Center", "HAM": "Hamburg Office",
    "LON": "London Office", "PAR": "Paris Office", "AMS": "Amsterdam Office", "NYC": "New York Office",
}
DEPARTMENTS = ("IT", "Finance", "Sales", "Engineering", "Human Resources", "Marketing", "Operations", "Legal")
_FIRST = ("Jürgen", "Anna", "Sören", "Zoë", "José", "Ingrid", "Marie", "Thomas", "Priya", "Kenji", "Sarah", "Henrik")
_LAST = ("Müller", "Schmidt", "García", "Nowak", "Dubois", "Jensen", "Smith", "Rossi", "Patel", "Becker")
_ASCII = str.maketrans({"ü": "ue", "ö": "oe", "ë": "e", "é": "e", "í": "i"})

MALFORMATIONS = ("missing_id", "bad_date", "bad_values")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_CLOUD_ROUTE = re.compile(r"/jsm/assets/workspace/([^/]+)/v1(/.*)")
_DC_ROUTE = re.compile(r"/rest/(?:assets|insight)/1\.0(/.*)")


def iso_ms(ms: int) -> str:
    """Cloud's object date form: ISO-8601 UTC with milliseconds, "2024-05-18T07:01:44.512Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def locale_date(ms: int) -> str:
    """Data Center's (and displayValue's) locale form, "18/May/24 7:01 AM"."""
    t = time.gmtime(ms // 1000)
    hour = t.tm_hour % 12 or 12
    noon = "AM" if t.tm_hour < 12 else "PM"
    return f"{t.tm_mday}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year % 100:02d} {hour}:{t.tm_min:02d} {noon}"


def error_body(*messages: str, errors: dict | None = None) -> dict:
    return {"errorMessages": list(messages), "errors": errors or {}}


# ---------------------------------------------------------------------------------------------- AQL


class AQLError(ValueError):
    pass


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|>=|<=|=|<|>|\(|\)|,)|(?P<word>[^\s()=!<>,"]+))')
_ORDER = re.compile(r'^(?P<q>.*?)\s+order\s+by\s+(?P<attr>"[^"]+"|\S+)(?:\s+(?P<dir>asc|desc))?\s*$', re.I | re.S)
SPECIAL = ("objectType", "objectTypeId", "objectSchemaId", "objectId", "Key", "Label", "Name", "Created", "Updated")
_DATE_FORMS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y/%m/%d %H:%M", "%Y/%m/%d")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise AQLError(f"unexpected character at position {pos}: {text[pos:pos + 10]!r}")
        pos = match.end()
        if match.group("str") is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", match.group("str")[1:-1])))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        else:
            out.append(("word", match.group("word")))
    return out


def parse_aql_date(value: str) -> int:
    """Epoch ms of an AQL date literal (UTC in this simulator)."""
    for form in _DATE_FORMS:
        try:
            return calendar.timegm(time.strptime(value, form)) * 1000
        except ValueError:
            continue
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise AQLError(f'"{value}" is not a valid date; use "yyyy-MM-dd HH:mm"') from None


class AQL:
    """A parsed AQL query: a predicate over (simulator, index) and an optional order."""

    def __init__(self, text: str, known_attributes):
        self.text = text
        self.known = set(known_attributes)
        match = _ORDER.match(text)
        self.order: tuple[str, bool] | None = None
        if match:
            text = match.group("q")
            self.order = (match.group("attr").strip('"'), (match.group("dir") or "asc").lower() == "desc")
            if self.order[0] not in self.known and self.order[0] not in SPECIAL:
                raise AQLError(f"order by: there is no attribute named {self.order[0]}")
        self._toks = _tokens(text)
        self._pos = 0
        self.ids: set[str] | None = None  # set when the query is only `objectId in (...)` / `objectId = n`
        self.predicate = self._or() if self._toks else (lambda view: True)
        if self._pos != len(self._toks):
            raise AQLError(f"unexpected {self._toks[self._pos][1]!r}")

    def _peek(self, kind=None, value=None):
        if self._pos >= len(self._toks):
            return None
        tok = self._toks[self._pos]
        if kind and tok[0] != kind:
            return None
        if value and tok[1].lower() != value.lower():
            return None
        return tok

    def _next(self):
        if self._pos >= len(self._toks):
            raise AQLError("the query ends too early")
        self._pos += 1
        return self._toks[self._pos - 1]

    def _or(self):
        parts = [self._and()]
        while self._peek("word", "or"):
            self._next()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda view: any(p(view) for p in parts))

    def _and(self):
        parts = [self._term()]
        while self._peek("word", "and"):
            self._next()
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else (lambda view: all(p(view) for p in parts))

    def _value(self) -> str:
        kind, value = self._next()
        if kind == "op":
            raise AQLError(f"expected a value, found {value!r}")
        return value

    def _term(self):
        if self._peek("op", "("):
            self._next()
            inner = self._or()
            if not self._peek("op", ")"):
                raise AQLError("missing closing parenthesis")
            self._next()
            return inner
        kind, attr = self._next()
        if kind == "op":
            raise AQLError(f"expected an attribute name, found {attr!r}")
        if attr not in SPECIAL and attr not in self.known:
            raise AQLError(f"there is no attribute named {attr}")
        negate = False
        if self._peek("word", "not"):
            self._next()
            negate = True
            if not self._peek("word", "in"):
                raise AQLError("expected IN after NOT")
        if self._peek("word", "in"):
            self._next()
            if not self._peek("op", "("):
                raise AQLError("expected ( after IN")
            self._next()
            values = [self._value()]
            while self._peek("op", ","):
                self._next()
                values.append(self._value())
            if not self._peek("op", ")"):
                raise AQLError("missing ) after the IN list")
            self._next()
            if attr == "objectId" and not negate and len(self._toks) == self._pos and self._pos == len(values) * 2 + 3:
                self.ids = set(values)
            wanted = {v.lower() for v in values}
            return lambda view: any(v.lower() in wanted for v in view.values(attr)) != negate
        kind, op = self._next()
        if kind != "op" or op not in ("=", "==", "!=", ">", ">=", "<", "<="):
            raise AQLError(f"unknown operator {op!r} after {attr}")
        operand = self._value()
        if attr in ("Created", "Updated"):
            limit = parse_aql_date(operand)
            compare: Callable[[int], bool] = {
                "=": lambda t: t == limit, "==": lambda t: t == limit, "!=": lambda t: t != limit,
                ">": lambda t: t > limit, ">=": lambda t: t >= limit, "<": lambda t: t < limit,
                "<=": lambda t: t <= limit,
            }[op]
            return lambda view: compare(view.instant(attr))
        if attr == "objectId" and op in ("=", "==") and len(self._toks) == 3:
            self.ids = {operand}
        if op in ("=", "!="):
            low = operand.lower()
            return lambda view: any(v.lower() == low for v in view.values(attr)) != (op == "!=")
        if op == "==":
            return lambda view: operand in view.values(attr)
        raise AQLError(f"operator {op} is only supported for dates in this simulator")


class ObjectView:
    """What an AQL predicate sees of object i: cheap facts first, the full object only when needed."""

    def __init__(self, sim: JiraAssetsSimulator, i: int):
        self.sim, self.i = sim, i
        self._full = None

    def instant(self, attr: str) -> int:
        return self.sim.updated_ms(self.i) if attr == "Updated" else self.sim.created_ms(self.i)

    def values(self, attr: str) -> list[str]:
        sim, i = self.sim, self.i
        if attr == "objectType":
            return [sim.object_type(i)[1]]
        if attr == "objectTypeId":
            return [sim.object_type(i)[0]]
        if attr == "objectSchemaId":
            return [SCHEMA_ID]
        if attr == "objectId":
            return [sim.object_id_for(i)]
        if attr == "Key":
            return [f"{SCHEMA_KEY}-{sim.object_id_for(i)}"]
        if attr in ("Label", "Name"):
            return [sim.device(i).name]
        if self._full is None:
            self._full = sim.object_values(i)
        return self._full.get(attr, [])


# ---------------------------------------------------------------------------------------------- simulator


class JiraAssetsSimulator(SimulatorApp):
    """A WSGI app; mount it under `/jira` (SimulatorServer(extra_apps={"/jira": JiraAssetsSimulator()}))."""

    malformations = MALFORMATIONS

    def __init__(
        self,
        records: int = 2000,
        seed: int = 42,
        *,
        overlap: float = 0.6,
        email: str = DEFAULT_EMAIL,
        api_token: str = DEFAULT_API_TOKEN,
        pat: str = DEFAULT_PAT,
        workspace_id: str = DEFAULT_WORKSPACE_ID,
        max_page_size: int = 500,
        type_attributes_in_search: bool = True,
        islast_bug: bool = True,
        cache_records: int = 20_000,
    ):
        if records < 0 or not 0 <= overlap <= 1:
            raise ValueError("records must be >= 0 and overlap between 0 and 1")
        self.base_records = records
        self.seed = seed
        self.overlap = overlap
        self.shared = int(records * overlap)
        self.email = email
        self.api_token = api_token
        self.pat = pat
        self.workspace_id = workspace_id
        self.max_page_size = max_page_size
        self.type_attributes_in_search = type_attributes_in_search
        self.islast_bug = islast_bug
        self.kept_objects = KeptTexts(cache_records)  # searched objects, by (index, version, updated, site, workspace)
        self.assets_enabled = True  # False: the site has no Assets workspace (not Premium)
        self.permitted = True  # False: the user has no Assets permission (403)
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.RLock()
        self._users = self._build_users()
        self._emails = {account: email for account, _name, email in self._users}
        # The same site serves JSM change requests (simulators/jira_service_management.py).
        self.service_management = JiraServiceManagementSimulator(
            authenticate=lambda request: self._authenticated(request, True), faults=self.faults, stats=self.stats,
            email=email)
        self.reset()

    # ------------------------------------------------------------------ state and overlay

    def reset(self) -> None:
        """Back to the generated data set: no touches, no deletions, no faults, zero stats."""
        with self._lock:
            self._versions: dict[int, int] = {}
            self._updated: dict[int, int] = {}  # index -> updated (epoch ms) after a touch
            self._deleted: set[int] = set()
            self._clock = self._base_updated(max(self.base_records - 1, 0))
            self._mutations = 0
            self._cache: OrderedDict[tuple, list[int]] = OrderedDict()
            self.kept_objects.clear()
            self.assets_enabled = True
            self.permitted = True
        self.service_management.reset()
        self.faults.clear()
        self.stats.reset()

    @property
    def record_count(self) -> int:
        with self._lock:
            return self.base_records - len(self._deleted)

    def _is_live(self, i: int) -> bool:
        return 0 <= i < self.base_records and i not in self._deleted

    def _pick(self, count: int | None, indices) -> list[int]:
        if indices is not None:
            return [i for i in dict.fromkeys(int(x) for x in indices) if self._is_live(i)]
        live = [i for i in range(self.base_records) if i not in self._deleted]
        rng = random.Random(f"jira:{self.seed}:{self._mutations}")
        return sorted(rng.sample(live, min(int(count or 0), len(live))))

    def _changed(self) -> None:
        self._mutations += 1
        self._cache.clear()

    def touch(self, count: int | None = None, indices=None) -> list[str]:
        """Update objects (new OS version, later `updated`); returns their object ids."""
        with self._lock:
            batch = self._pick(count, indices)
            self._clock = max(self._clock + 1000, int(time.time() * 1000))
            for i in batch:
                self._versions[i] = self._versions.get(i, 0) + 1
                self._updated[i] = self._clock
            self._changed()
            return [self.object_id_for(i) for i in batch]

    def delete(self, count: int | None = None, indices=None) -> list[str]:
        """Delete objects; returns their object ids."""
        with self._lock:
            batch = self._pick(count, indices)
            self._deleted.update(batch)
            self._changed()
            return [self.object_id_for(i) for i in batch]

    def inject_fault(self, kind: str = "status", **options):
        """See `base.Fault`: `inject_fault("status", status=429, retry_after=1)`, `inject_fault("malformed",
        indices=[3], malformation="bad_date")` (missing_id, bad_date, bad_values, or mixed)."""
        return self.faults.add(kind, **options)

    def clear_faults(self) -> None:
        self.faults.clear()

    def state(self) -> dict:
        with self._lock:
            return {
                "records": self.record_count,
                "base_records": self.base_records,
                "shared_with_servicenow": self.shared,
                "touched": len(self._versions),
                "deleted": len(self._deleted),
                "seed": self.seed,
                "workspace_id": self.workspace_id,
                "assets_enabled": self.assets_enabled,
                "permitted": self.permitted,
                "faults": [f.as_dict() for f in self.faults.list()],
                "stats": self.stats.as_dict(),
            }

    # ------------------------------------------------------------------ identity

    def object_id_for(self, i: int) -> str:
        return str(OBJECT_ID_BASE + i)

    def index_for(self, object_id) -> int | None:
        try:
            i = int(str(object_id)) - OBJECT_ID_BASE
        except ValueError:
            return None
        return i if 0 <= i < self.base_records else None

    def device_index(self, i: int) -> int:
        """ServiceNow's device i for the shared share of the indices, an unshared device after it."""
        return i if i < self.shared else DISTINCT_DEVICE_OFFSET + i

    def device(self, i: int):
        return device_identity(self.seed, self.device_index(i))

    def object_type(self, i: int) -> tuple[str, str]:
        return OBJECT_TYPES[self.device(i).kind]

    def _base_updated(self, i: int) -> int:
        return BASE_TIME_MS + i * STEP_MS + device_hash(self.seed, i, b"jira-ms")[0] * 3

    def updated_ms(self, i: int) -> int:
        return self._updated.get(i) or self._base_updated(i)

    def created_ms(self, i: int) -> int:
        return self._base_updated(i) - 86_400_000 - device_hash(self.seed, i, b"jira-ms")[1] * 600_000

    @staticmethod
    def attribute_id(type_id: str, name: str) -> str:
        return str(int(type_id) * 100 + TYPE_ATTRIBUTES[type_id].index(name) + 1)

    def _build_users(self) -> list[tuple[str, str, str]]:
        rng = random.Random(self.seed)
        users = []
        for first, last in rng.sample([(f, la) for f in _FIRST for la in _LAST], 60):
            account = hashlib.blake2b(f"{first}{last}".encode(), digest_size=12).hexdigest()
            email = f"{first.lower().translate(_ASCII)}.{last.lower().translate(_ASCII)}@acme.example"
            users.append((f"5b10ac8d{account}", f"{first} {last}", email))
        return users

    def serial_for(self, i: int) -> str:
        return (self.object_values(i).get("Serial Number") or [""])[0]

    # ------------------------------------------------------------------ generation

    def _generate(self, i: int) -> dict[str, list[dict]]:
        """Attribute name -> list of value objects (Cloud shapes), as object i is now."""
        dev = self.device(i)
        h = device_hash(self.seed, i, b"jira")
        version = self._versions.get(i, 0)
        is_server = dev.kind in ("server", "virtual_machine")
        updated, created = self.updated_ms(i), self.created_ms(i)

        def text(value: str) -> list[dict]:
            return [{"value": value, "displayValue": value, "searchValue": value, "referencedType": False}]

        def when(ms: int) -> list[dict]:
            return [{"value": iso_ms(ms), "displayValue": locale_date(ms), "searchValue": iso_ms(ms),
                     "referencedType": False}]

        serial = dev.serial
        if i < self.shared and serial not in PLACEHOLDER_SERIALS:
            # The same device typed into Assets by hand: other case, stray blanks, or nothing useful at all.
            if h[0] < 20:
                serial = serial.lower()
            elif h[0] < 32:
                serial = f" {serial} "
            elif h[0] < 36 and not serial.startswith("VMware-"):
                serial = PLACEHOLDER_SERIALS[h[1] % len(PLACEHOLDER_SERIALS)]
        status = _STATUS_BY_BYTE[h[2]]
        mac = dev.mac if h[3] % 3 else dev.mac.upper().replace(":", "-")  # both spellings occur in imports
        os_version = dev.os_version
        if version:
            head, _, last = os_version.rpartition(".")
            os_version = f"{head}.{int(last) + version}" if head and last.isdigit() else f"{os_version}.{version}"
        user = self._users[int.from_bytes(h[4:6], "big") % len(self._users)]
        make_id = 5000 + list(MAKES).index(dev.manufacturer)
        site_id = 6000 + list(LOCATIONS).index(dev.site)
        values: dict[str, list[dict]] = {
            "Key": text(f"{SCHEMA_KEY}-{self.object_id_for(i)}"),
            "Name": text(dev.name),
            "Created": when(created),
            "Updated": when(updated),
            "Serial Number": text(serial) if serial and not (is_server and h[7] < 5) else [],
            "Asset Tag": text(f"ITAM-TAG-{(i * 7919 + 104729) % 1_000_000:06d}") if h[8] >= 40 else [],
            "Status": [{"status": {"id": status[0], "name": status[1], "category": status[2]},
                        "displayValue": status[1], "searchValue": status[0], "referencedType": False}],
            "Manufacturer": [{"referencedObject": {"id": str(make_id), "objectKey": f"{SCHEMA_KEY}-{make_id}",
                                                   "label": dev.manufacturer,
                                                   "objectType": {"id": "40", "name": "Manufacturer"}},
                              "displayValue": dev.manufacturer, "searchValue": f"{SCHEMA_KEY}-{make_id}",
                              "referencedType": True}] if h[9] >= 8 else [],
            "Model": text(dev.model),
            "Hostname": text(dev.hostname),
            "FQDN": text(f"{dev.hostname}.{dev.site.lower()}.acme.example") if is_server or h[10] < 150 else [],
            "IP Address": text(f"10.{40 + i % 8}.{(i >> 8) & 255}.{i & 255}") if is_server or h[11] < 190 else [],
            "MAC Address": text(mac) if h[12] >= 10 else [],
            "Operating System": text(dev.os) if h[13] >= 5 else [],
            "OS Version": text(os_version) if h[13] >= 5 else [],
            "Owner": [{"user": {"displayName": user[1], "key": user[0], "name": "", "isDeleted": False,
                                "avatarUrl": "https://avatar-management.example/default.png"},
                       "value": user[0], "displayValue": user[1], "searchValue": user[0],
                       "referencedType": False}] if h[14] < 225 else [],
            "Owner Email": text(user[2]) if h[14] < 225 and h[15] >= 40 else [],
            "Location": [{"referencedObject": {"id": str(site_id), "objectKey": f"{SCHEMA_KEY}-{site_id}",
                                               "label": LOCATIONS[dev.site],
                                               "objectType": {"id": "41", "name": "Location"}},
                          "displayValue": LOCATIONS[dev.site], "searchValue": f"{SCHEMA_KEY}-{site_id}",
                          "referencedType": True}] if h[16] >= 13 else [],
            "Department": text(DEPARTMENTS[h[17] % len(DEPARTMENTS)]) if h[18] >= 38 else [],
            "Last Seen": when(updated - int.from_bytes(h[19:21], "big") * 1000) if h[21] >= 30 else [],
        }
        return values

    def object_values(self, i: int) -> dict[str, list[str]]:
        """Attribute name -> display values (what AQL compares attribute values with)."""
        return {name: [v.get("displayValue", "") for v in vals] for name, vals in self._generate(i).items()}

    def type_attributes(self, type_id: str, *, data_center: bool = False) -> list[dict]:
        out = []
        for position, name in enumerate(TYPE_ATTRIBUTES[type_id]):
            kind, default, ref = _ATTRIBUTES[name]
            attr = {
                "workspaceId": self.workspace_id,
                "globalId": f"{self.workspace_id}:{self.attribute_id(type_id, name)}",
                "id": self.attribute_id(type_id, name),
                "objectType": {"id": type_id, "name": TYPE_BY_ID[type_id]},
                "name": name,
                "label": name == "Name",
                "type": kind,
                "editable": name not in ("Key", "Created", "Updated"),
                "system": name in ("Key", "Created", "Updated"),
                "sortable": True,
                "summable": False,
                "indexed": True,
                "minimumCardinality": 1 if name in ("Key", "Name") else 0,
                "maximumCardinality": 1,
                "removable": name not in ("Key", "Name", "Created", "Updated"),
                "hidden": False,
                "includeChildObjectTypes": False,
                "uniqueAttribute": name == "Key",
                "options": "",
                "position": position,
            }
            if default is not None:
                attr["defaultType"] = {"id": default, "name": _DEFAULT_TYPE_NAMES[default]}
            if ref is not None:
                attr["referenceObjectTypeId"] = ref
                attr["referenceObjectType"] = {"id": ref, "name": REFERENCE_TYPES[ref]}
                attr["referenceType"] = {"id": "1", "name": "Reference"}
            if data_center:
                attr["id"] = int(attr["id"])
                attr.pop("workspaceId")
                attr.pop("globalId")
            out.append(attr)
        return out

    def build_object(self, i: int, site: str, *, data_center: bool = False, malformation: str | None = None) -> dict:
        type_id, type_name = self.object_type(i)
        oid = self.object_id_for(i)
        values = self._generate(i)
        updated, created = self.updated_ms(i), self.created_ms(i)
        attributes = []
        for k, name in enumerate(TYPE_ATTRIBUTES[type_id]):
            vals = values.get(name, [])
            if not vals and k % 2:
                continue  # a value never set: no attribute at all (elsewhere: an empty list)
            if data_center:
                for v in vals:
                    if "user" in v:
                        email = self._emails.get(v["value"], "")
                        v["user"] = {**v["user"], "emailAddress": email}  # DC exposes the e-mail
            attribute = {"id": str(int(oid) * 100 + k), "objectTypeAttributeId": self.attribute_id(type_id, name),
                         "objectAttributeValues": vals, "objectId": oid}
            if data_center:
                attribute = {**attribute, "id": int(attribute["id"]),
                             "objectTypeAttributeId": int(attribute["objectTypeAttributeId"]), "objectId": int(oid)}
            else:
                attribute = {"workspaceId": self.workspace_id,
                             "globalId": f"{self.workspace_id}:{attribute['id']}", **attribute}
            attributes.append(attribute)
        dev = self.device(i)
        obj = {
            "workspaceId": self.workspace_id,
            "globalId": f"{self.workspace_id}:{oid}",
            "id": oid,
            "label": dev.name,
            "objectKey": f"{SCHEMA_KEY}-{oid}",
            "avatar": {"objectId": oid},
            "objectType": {"workspaceId": self.workspace_id, "globalId": f"{self.workspace_id}:{type_id}",
                           "id": type_id, "name": type_name, "type": 0, "description": "", "position": 0,
                           "objectCount": 0, "objectSchemaId": SCHEMA_ID, "inherited": False,
                           "abstractObjectType": False, "parentObjectTypeInherited": False},
            "created": iso_ms(created),
            "updated": iso_ms(updated),
            "hasAvatar": False,
            "attributes": attributes,
            "_links": {"self": f"{site}/jira/servicedesk/assets/object/{oid}"},
        }
        if data_center:
            obj = {**obj, "id": int(oid), "created": locale_date(created), "updated": locale_date(updated),
                   "timestamp": updated,
                   "objectType": {**obj["objectType"], "id": int(type_id), "objectSchemaId": int(SCHEMA_ID)},
                   "_links": {"self": f"{site}/secure/insight/assets/{SCHEMA_KEY}-{oid}"}}
            for key in ("workspaceId", "globalId"):
                obj.pop(key)
                obj["objectType"].pop(key)
        if malformation == "missing_id":
            obj.pop("id")
        elif malformation == "bad_date":
            obj["updated"] = "not-a-date"
            obj.pop("timestamp", None)
        elif malformation == "bad_values":
            obj["attributes"][0]["objectAttributeValues"] = "oops"
        return obj

    # ------------------------------------------------------------------ selection

    def _known_attributes(self) -> set[str]:
        return set(_ATTRIBUTES)

    def select(self, aql: AQL) -> list[int]:
        """Indices of the live objects matching the query, in the query's order (id order without one)."""
        with self._lock:
            if aql.ids is not None:
                found = {self.index_for(v) for v in aql.ids} - {None}
                return sorted(i for i in found if self._is_live(i))
            key = (aql.text, self._mutations)
            matches = self._cache.get(key)
            if matches is not None:
                return matches
            matches = [i for i in range(self.base_records)
                       if i not in self._deleted and aql.predicate(ObjectView(self, i))]
            if aql.order is not None:
                attr, descending = aql.order
                if attr in ("Updated", "Created"):
                    by = self.updated_ms if attr == "Updated" else self.created_ms
                    matches.sort(key=lambda i: (by(i), i), reverse=descending)
                elif attr not in ("objectId", "Key"):
                    matches.sort(key=lambda i: (ObjectView(self, i).values(attr) or [""])[0].lower(),
                                 reverse=descending)
                elif descending:
                    matches.reverse()
            self._cache[key] = matches
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
            return matches

    # ------------------------------------------------------------------ HTTP

    def control(self, request: Request, action: str) -> Response:
        if self.service_management.controls(action):
            return self.service_management.control(request, action)
        return super().control(request, action)

    def serve(self, request: Request) -> Response:
        path = request.path
        site = request.host_url.rstrip("/") + request.script_root
        if self.service_management.serves(path):
            return self.service_management.dispatch(request, site)
        if path.rstrip("/") == "/rest/servicedeskapi/assets/workspace":
            return self._guarded(request, False, lambda: self._workspaces(request, site))
        route = _CLOUD_ROUTE.fullmatch(path)
        if route:
            workspace, rest = route.groups()
            return self._guarded(request, False, lambda: self._cloud(request, workspace, rest.rstrip("/"), site))
        route = _DC_ROUTE.fullmatch(path)
        if route:
            return self._guarded(request, True, lambda: self._data_center(request, route.group(1).rstrip("/"), site))
        return json_response(error_body("null for uri: " + request.url), 404)

    def _guarded(self, request: Request, data_center: bool, handler) -> Response:
        if not self._authenticated(request, data_center):
            self.stats.incr("auth_failures")
            return json_response(
                error_body("You are not authenticated. Authentication required to perform this operation."),
                401, headers={"WWW-Authenticate": 'Basic realm="protected-area"'},
            )
        if not self.permitted:
            return json_response(error_body("You do not have permission to access Assets in this workspace."), 403)
        try:
            return handler()
        except AQLError as exc:
            self.stats.incr("aql_errors")
            return json_response(error_body(f"AQL: {exc}", errors={"iql": f"AQL: {exc}"}), 400)

    def _authenticated(self, request: Request, data_center: bool) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, secret = base64.b64decode(credentials).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user.encode(), self.email.encode()) and hmac.compare_digest(
                secret.encode(), self.api_token.encode())
        if scheme.lower() == "bearer" and data_center:
            return hmac.compare_digest(credentials.strip().encode(), self.pat.encode())
        return False

    def fault_response(self, fault) -> Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.status == 429:
            headers["X-RateLimit-Limit"] = "1000"
            headers["X-RateLimit-Remaining"] = "0"
            body = error_body("Rate limit exceeded. Try again later.")
        elif fault.status >= 500:
            body = error_body("Simulated transient failure; retry with backoff")
        else:
            body = error_body(Response(status=fault.status).status.split(" ", 1)[-1])
        return json_response(body, fault.status, headers=headers)

    def _workspaces(self, request: Request, site: str) -> Response:
        values = [{"workspaceId": self.workspace_id}] if self.assets_enabled else []
        start = _int(request.args.get("start"), 0)
        limit = _int(request.args.get("limit"), 50)
        return json_response({"size": len(values[start:start + limit]), "start": start, "limit": limit,
                              "isLastPage": True, "_links": {"base": f"{site}/rest/servicedeskapi", "context": ""},
                              "values": values[start:start + limit]})

    def _objects(self, request: Request, page: list[int], site: str, data_center: bool) -> list[dict]:
        broken = self.malformed_for(request, page)
        return [self.build_object(i, site, data_center=data_center, malformation=broken.get(i)) for i in page]

    def _page_type_attributes(self, page: list[int], data_center: bool) -> list[dict]:
        seen = dict.fromkeys(self.object_type(i)[0] for i in page)
        return [a for tid in seen for a in self.type_attributes(tid, data_center=data_center)]

    def _cloud(self, request: Request, workspace: str, rest: str, site: str) -> Response:
        if workspace != self.workspace_id or not self.assets_enabled:
            return json_response(error_body(f"Workspace {workspace} does not exist or is not accessible."), 404)
        self.stats.incr("assets_requests")
        if rest == "/object/aql":
            if request.method != "POST":
                return json_response(error_body("Method Not Allowed"), 405, headers={"Allow": "POST"})
            return self._aql_search(request, site)
        if rest == "/object/aql/totalcount":
            if request.method != "POST":
                return json_response(error_body("Method Not Allowed"), 405, headers={"Allow": "POST"})
            return json_response({"totalCount": len(self.select(self._aql_of(request)))})
        if request.method != "GET":
            return json_response(error_body("Method Not Allowed"), 405, headers={"Allow": "GET"})
        return self._reads(request, rest, site, data_center=False)

    def _aql_of(self, request: Request) -> AQL:
        try:
            body = read_json(request)
        except ValueError:
            raise AQLError("the request body is not a JSON object") from None
        text = body.get("qlQuery", body.get("iql"))
        if not isinstance(text, str):
            raise AQLError("qlQuery is required")
        self.stats.incr("aql_queries")
        return AQL(text, self._known_attributes())

    def _aql_search(self, request: Request, site: str) -> Response:
        aql = self._aql_of(request)
        start = max(_int(request.args.get("startAt"), 0), 0)
        asked = _int(request.args.get("maxResults"), 25)
        size = max(1, min(asked, self.max_page_size))  # the server may return fewer than asked
        include = request.args.get("includeAttributes", "true").lower() != "false"
        matches = self.select(aql)
        page = matches[start:start + size]
        is_last = start + len(page) >= len(matches) or (self.islast_bug and asked >= 1000)
        body = {"startAt": start, "maxResults": size, "total": len(matches), "isLast": is_last}
        if include and self.type_attributes_in_search:
            body["objectTypeAttributes"] = self._page_type_attributes(page, data_center=False)
        if not include:
            body["values"] = [{**obj, "attributes": []} for obj in self._objects(request, page, site, False)]
            return json_response(body)
        head = json_response(body).get_data(as_text=True)
        return Response(f'{head[:-1]},"values":{self._rendered_objects(request, page, site)}}}',
                        content_type=JSON_UTF8)

    def _rendered_objects(self, request: Request, page: list[int], site: str) -> str:
        """The page's Cloud objects as a JSON array, each rendered once for its version (malformed ones never
        kept)."""
        broken = self.malformed_for(request, page)
        rendered = []
        for i in page:
            with self._lock:
                key = (i, self._versions.get(i, 0), self._updated.get(i), site, self.workspace_id)
            text = None if i in broken else self.kept_objects.get(key)
            if text is None:
                text = json_response(self.build_object(i, site, malformation=broken.get(i))).get_data(as_text=True)
                if i not in broken:
                    self.kept_objects.keep(key, text)
            rendered.append(text)
        return "[" + ",".join(rendered) + "]"

    def _reads(self, request: Request, rest: str, site: str, data_center: bool) -> Response:
        match = re.fullmatch(r"/object/(\d+)", rest)
        if match:
            i = self.index_for(match.group(1))
            if i is None or not self._is_live(i):
                return json_response(error_body(f"The object with id {match.group(1)} was not found."), 404)
            obj = self.build_object(i, site, data_center=data_center)
            by_id = {str(a["id"]): a for a in self.type_attributes(self.object_type(i)[0], data_center=data_center)}
            for attribute in obj["attributes"]:  # single reads embed the attribute definition
                definition = by_id[str(attribute["objectTypeAttributeId"])]
                attribute["objectTypeAttribute"] = {k: definition[k] for k in ("id", "name", "type", "position")}
            return json_response(obj)
        match = re.fullmatch(r"/objecttype/(\d+)/attributes", rest)
        if match:
            if match.group(1) not in TYPE_BY_ID:
                return json_response(error_body(f"No object type with id {match.group(1)}"), 404)
            self.stats.incr("attribute_requests")
            return json_response(self.type_attributes(match.group(1), data_center=data_center))
        if rest == "/objectschema/list":
            schema = {"id": SCHEMA_ID, "name": "IT Asset Management", "objectSchemaKey": SCHEMA_KEY,
                      "status": "Ok", "description": "Hardware", "objectCount": self.record_count,
                      "objectTypeCount": len(OBJECT_TYPES) + len(REFERENCE_TYPES)}
            if data_center:
                return json_response({"objectschemas": [{**schema, "id": int(SCHEMA_ID)}]})
            return json_response({"startAt": 0, "maxResults": 25, "total": 1, "isLast": True, "values": [schema]})
        match = re.fullmatch(r"/objectschema/(\d+)/objecttypes(/flat)?", rest)
        if match:
            if match.group(1) != SCHEMA_ID:
                return json_response(error_body(f"No object schema with id {match.group(1)}"), 404)
            types = [{"id": tid, "name": name, "objectSchemaId": SCHEMA_ID, "abstractObjectType": False}
                     for tid, name in [*TYPE_BY_ID.items(), *REFERENCE_TYPES.items()]]
            return json_response(types)
        return json_response(error_body("null for uri: " + request.url), 404)

    def _data_center(self, request: Request, rest: str, site: str) -> Response:
        self.stats.incr("assets_requests")
        if request.method != "GET":
            return json_response(error_body("Method Not Allowed"), 405, headers={"Allow": "GET"})
        if rest != "/aql/objects":
            return self._reads(request, rest, site, data_center=True)
        text = request.args.get("qlQuery", request.args.get("iql"))
        if text is None:
            raise AQLError("qlQuery is required")
        self.stats.incr("aql_queries")
        aql = AQL(text, self._known_attributes())
        page_number = max(_int(request.args.get("page"), 1), 1)  # 1-based
        per_page = max(1, min(_int(request.args.get("resultPerPage"), 25), self.max_page_size))
        matches = self.select(aql)
        start = (page_number - 1) * per_page
        page = matches[start:start + per_page]
        include = request.args.get("includeAttributes", "true").lower() != "false"
        entries = self._objects(request, page, site, data_center=True)
        if not include:
            for obj in entries:
                obj["attributes"] = []
        return json_response({
            "objectEntries": entries,
            "objectTypeAttributes": self._page_type_attributes(page, data_center=True) if include else [],
            "totalFilterCount": len(matches),
            "startIndex": start,
            "toIndex": start + len(page),
            "pageObjectSize": per_page,
            "pageNumber": page_number,
            "pageSize": -(-len(matches) // per_page),  # the number of pages, despite its name
            "orderWay": "ASC",
            "iql": text,
            "qlQuery": text,
            "conversion": False,
        })

    # ------------------------------------------------------------------ control endpoints (tests, demo)

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action in ("touch", "delete"):
            method = self.touch if action == "touch" else self.delete
            return json_response({"object_ids": method(count=spec.get("count"), indices=spec.get("indices"))})
        if action == "config":
            for key in ("assets_enabled", "permitted", "type_attributes_in_search", "max_page_size"):
                if key in spec:
                    setattr(self, key, spec[key])
            return json_response(self.state())
        return None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default

