"""Freshservice v2 assets API simulator (see shared/api-notes/freshservice-cmdb.md).

What it imitates: `/api/v2/assets` (list with `page`/`per_page` <= 100 and a Link rel="next" header that is
absent on the last page; `include=type_fields`; `filter="..."` with 30 records per page, 40 pages at most and
no Link header; `trashed=true`), `/api/v2/assets/{display_id}`, the reference lists (`asset_types` with parent
types, `products`, `departments`, `locations`, `requesters`, `agents`), Basic auth with the API key as the
user name, type_fields keys suffixed with the id of the type that defines each field, 64-bit ids, and the
per-minute, account-wide rate limit: `X-Ratelimit-*` headers on every answer (errors too), credits per call
(3 with include=type_fields) and 429 + Retry-After once the minute's credits are spent.

How it stays small at any size: asset `i` is a pure function of `(seed, i, version of i)`; list order (by id,
i.e. creation order) follows from the index. Only changes live in memory: touched versions and times, deleted
and added indices.

Devices overlap with ServiceNow's: asset `i` is ServiceNow's device `i` for the first `overlap` share of the
indices (with the serial typed differently now and then), and a device of its own after that.
"""

from __future__ import annotations

import base64
import bisect
import calendar
import hashlib
import hmac
import math
import random
import re
import threading
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .devices import MAKES, PLACEHOLDER_SERIALS, SITES, device_hash, device_identity
from .freshservice_itsm import FreshserviceChangesSimulator

DEFAULT_API_KEY = "demo-freshservice-key"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
FILTER_PER_PAGE = 30
FILTER_MAX_PAGES = 40
DISTINCT_DEVICES = 1_000_000  # device index offset of the assets ServiceNow does not know

BASE_TIME = calendar.timegm((2024, 1, 8, 6, 0, 0))
MAX_STEP = 3 * 3600  # the base assets' updated_at spread over up to a year, one every STEP seconds

ID_BASE = 21_000_460_000  # asset ids: 64-bit, above 2**31, as on real accounts
HARDWARE, COMPUTER, MOBILE_DEVICES = 21000855267, 21000855272, 21000855281
ASSET_TYPES = (  # (id, name, parent id)
    (HARDWARE, "Hardware", None),
    (COMPUTER, "Computer", HARDWARE),
    (21000855304, "Laptop", COMPUTER),
    (21000855305, "Desktop", COMPUTER),
    (21000855306, "Server", COMPUTER),
    (21000855307, "Virtual Machine", COMPUTER),
    (21000855308, "Developer Workstation", 21000855304),  # custom: a Laptop by its parent
    (MOBILE_DEVICES, "Mobile Devices", HARDWARE),
    (21000855309, "Tablet", MOBILE_DEVICES),
    (21000855310, "Mobile Phone", MOBILE_DEVICES),
    (21000855311, "Network", HARDWARE),
    (21000855312, "Switch", 21000855311),
    (21000855313, "Printer", HARDWARE),
    (21000855314, "Software", None),
    (21000855315, "Consumable", None),
)
_LEAF_FOR_KIND = {"laptop": 21000855304, "desktop": 21000855305, "server": 21000855306,
                  "virtual_machine": 21000855307, "tablet": 21000855309}
ASSET_STATES = ("In Use",) * 20 + ("In Stock",) * 3 + ("In Repair", "Retired", "Missing", "In Transit")
DEPARTMENTS = ("IT", "Finance", "Sales", "Engineering", "Human Resources", "Marketing", "Operations", "Legal")
LOCATIONS = {"BER": "Berlin HQ", "MUC": "München Office", "FRA": "Frankfurt Data Center", "HAM": "Hamburg Office",
             "LON": "London Office", "PAR": "Paris Office", "AMS": "Amsterdam Office", "NYC": "New York Office"}
FIRST_NAMES = ("Jürgen", "Anna", "Sören", "Zoë", "José", "Ingrid", "Łukasz", "Marie", "Ömer", "Chloé", "Thomas",
               "Priya", "Björn", "Aoife", "Kenji", "Sarah")
LAST_NAMES = ("Müller", "Schmidt", "Weiß", "García", "Nowak", "Dubois", "Öztürk", "Jensen", "Smith", "Rossi",
              "Yamamoto", "Andersson", "Becker", "Patel")
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "ë": "e", "ł": "l", "ç": "c"})
MALFORMATIONS = ("missing_display_id", "bad_date", "non_string")
_FILTER_TERM = re.compile(r"^\s*([a-z_]+)\s*:\s*(>|<)?\s*(?:'([^']*)'|(\d+))\s*$")


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def error_body(description: str, errors: list | None = None) -> dict:
    body: dict = {"description": description}
    if errors is not None:
        body["errors"] = errors
    return body


def _ref_id(seed: int, kind: str, key: str, base: int) -> int:
    digest = hashlib.blake2b(f"{kind}|{key}".encode(), key=seed.to_bytes(8, "big", signed=True), digest_size=4)
    return base + int.from_bytes(digest.digest(), "big") % 1_000_000


class FreshserviceSimulator(SimulatorApp):
    """A WSGI app; mount it under `/freshservice` (`SimulatorServer(extra_apps={"/freshservice": sim})`)."""

    malformations = MALFORMATIONS

    def __init__(
        self,
        records: int = 2000,
        seed: int = 42,
        *,
        api_key: str = DEFAULT_API_KEY,
        overlap: float = 0.6,
        rate_limit_per_minute: int = 100_000,
        rate_limit_window: float = 60.0,
        users: int = 200,
    ):
        if records < 0 or records >= 1 << 31:
            raise ValueError("records must be between 0 and 2**31 - 1")
        if not 0.0 <= overlap <= 1.0:
            raise ValueError("overlap must be between 0 and 1")
        self.base_records = records
        self.step = max(1, min(MAX_STEP, 365 * 86400 // max(records, 1)))
        self.seed = seed
        self.api_key = api_key
        self.overlap = overlap
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rate_limit_window = rate_limit_window
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.RLock()
        self._build_reference_data(users)
        # The same account serves changes (simulators/freshservice_itsm.py), behind this auth and budget.
        self.itsm = FreshserviceChangesSimulator(self)
        self.reset()

    # ------------------------------------------------------------------ reference data (fixed size)

    def _build_reference_data(self, users: int) -> None:
        seed = self.seed
        rng = random.Random(seed)
        self.asset_types = [
            {"id": tid, "name": name, "description": None, "parent_asset_type_id": parent, "visible": True,
             "created_at": "2019-03-01T10:00:00Z", "updated_at": "2019-03-01T10:00:00Z"}
            for tid, name, parent in ASSET_TYPES
        ]
        self.departments = [{"id": _ref_id(seed, "department", d, 21000040000), "name": d, "description": None,
                             "head_user_id": None, "prime_user_id": None, "domains": [], "custom_fields": {}}
                            for d in DEPARTMENTS]
        self.locations = [{"id": _ref_id(seed, "location", code, 21000030000), "name": name,
                           "parent_location_id": None, "primary_contact_id": None, "address": {"city": name}}
                          for code, name in LOCATIONS.items()]
        self._location_by_site = {code: loc["id"] for code, loc in zip(LOCATIONS, self.locations, strict=True)}
        self.products = []
        self._product_by_model: dict[tuple[str, str], int] = {}
        for make, (_oui, models) in MAKES.items():
            for kind, names in models.items():
                for model in names:
                    pid = _ref_id(seed, "product", f"{make}|{model}", 21000056000)
                    self._product_by_model[(make, model)] = pid
                    self.products.append({"id": pid, "name": model, "manufacturer": make,
                                          "asset_type_id": _LEAF_FOR_KIND[kind], "status": "In Production"})
        self.requesters, self.agents = [], []
        names = [(f, la) for f in FIRST_NAMES for la in LAST_NAMES]
        for n, (first, last) in enumerate(rng.sample(names, min(users, len(names)))):
            email = f"{first.lower().translate(_ASCII)}.{last.lower().translate(_ASCII)}@acme.example"
            person = {"id": 21_000_418_000 + n * 17, "first_name": first,
                      "last_name": last, "primary_email": email, "active": True}
            # A few owners are agents: user_id then points at /agents, not /requesters.
            (self.agents if n % 25 == 0 else self.requesters).append(person)
        self._owners = [p["id"] for p in self.requesters + self.agents]
        self._emails = {p["id"]: p["primary_email"] for p in self.requesters + self.agents}

    # ------------------------------------------------------------------ identity of the base set

    def asset_id_for(self, i: int) -> int:
        """The internal 64-bit `id` of asset `i` (creation order = id order)."""
        return ID_BASE + i * 7

    def display_id_for(self, i: int) -> int:
        """The `display_id` of asset `i` (what URLs and people use; the connector's external id)."""
        return i + 1

    def index_for_display_id(self, display_id: int) -> int:
        return display_id - 1

    def device_index(self, i: int) -> int:
        """ServiceNow's device `i` for the first `overlap` share of the assets, a device of its own after."""
        return i if i < int(self.overlap * self.base_records) else DISTINCT_DEVICES + i

    # ------------------------------------------------------------------ changes made during a run

    def reset(self) -> None:
        """Back to the generated data set: no changes, no faults, zero stats, a fresh rate-limit window."""
        with self._lock:
            self._versions: dict[int, int] = {}
            self._updated: dict[int, int] = {}
            self._deleted: list[int] = []  # sorted
            self._deleted_set: set[int] = set()
            self._states: dict[int, str] = {}  # asset index -> an asset_state an admin added ("On Loan")
            self._added = 0
            self._clock = BASE_TIME + self.base_records * self.step
            self._mutations = 0
            self._window_start = time.monotonic()
            self._window_used = 0
        self.itsm.reset()
        self.faults.clear()
        self.stats.reset()

    @property
    def total(self) -> int:
        return self.base_records + self._added

    @property
    def record_count(self) -> int:
        with self._lock:
            return self.total - len(self._deleted)

    def _is_live(self, i: int) -> bool:
        return 0 <= i < self.total and i not in self._deleted_set

    def _pick(self, count: int | None, indices) -> list[int]:
        if indices is not None:
            return [i for i in dict.fromkeys(int(x) for x in indices) if self._is_live(i)]
        count = min(int(count or 0), self.record_count)
        rng = random.Random(f"{self.seed}:fs:{self._mutations}")
        if count * 2 > self.total:
            return sorted(rng.sample([i for i in range(self.total) if i not in self._deleted_set], count))
        picked: set[int] = set()
        while len(picked) < count:  # sparse picks without listing a large data set
            i = rng.randrange(self.total)
            if i not in self._deleted_set:
                picked.add(i)
        return sorted(picked)

    def touch(self, count: int | None = None, indices=None) -> list[str]:
        """Update assets (new os_version, later updated_at); returns their display ids (external ids)."""
        with self._lock:
            batch = self._pick(count, indices)
            self._clock = max(self._clock + 1, int(time.time()))
            for i in batch:
                self._versions[i] = self._versions.get(i, 0) + 1
                self._updated[i] = self._clock
            self._mutations += 1
            return [str(self.display_id_for(i)) for i in batch]

    def set_state(self, indices, state: str) -> list[str]:
        """Give assets an asset_state (asset states are an admin-editable list: "On Loan"), as an update."""
        with self._lock:
            batch = self._pick(None, indices)
            self._states.update(dict.fromkeys(batch, state))
        return self.touch(indices=batch)

    def delete(self, count: int | None = None, indices=None) -> list[str]:
        """Delete (trash) assets; returns their display ids."""
        with self._lock:
            batch = self._pick(count, indices)
            for i in batch:
                bisect.insort(self._deleted, i)
                self._deleted_set.add(i)
            self._mutations += 1
            return [str(self.display_id_for(i)) for i in batch]

    def add(self, count: int = 1) -> list[str]:
        """Create assets after start; returns their display ids."""
        with self._lock:
            start = self.total
            self._added += count
            self._clock = max(self._clock + 1, int(time.time()))
            for i in range(start, start + count):
                self._updated[i] = self._clock
            self._mutations += 1
            return [str(self.display_id_for(i)) for i in range(start, start + count)]

    def inject_fault(self, kind: str = "status", **options):
        """See `base.Fault`: `inject_fault("status", status=429, retry_after=2)`,
        `inject_fault("malformed", indices=[3, 17])` (asset indices), `inject_fault("slow", delay=3)`."""
        return self.faults.add(kind, **options)

    def clear_faults(self) -> None:
        self.faults.clear()

    def state(self) -> dict:
        with self._lock:
            return {
                "records": self.record_count,
                "base_records": self.base_records,
                "added": self._added,
                "touched": len(self._versions),
                "deleted": len(self._deleted),
                "seed": self.seed,
                "overlap": self.overlap,
                "rate_limit": {"per_minute": self.rate_limit_per_minute, "window": self.rate_limit_window,
                               "used": self._window_used},
                "faults": [f.as_dict() for f in self.faults.list()],
                "stats": self.stats.as_dict(),
            }

    # ------------------------------------------------------------------ asset generation

    def record(self, i: int) -> dict:
        with self._lock:
            version, updated = self._versions.get(i, 0), self._updated.get(i)
        return self._generate(i, version, updated)

    def serial_for(self, i: int) -> str:
        return self.record(i)["type_fields"][f"serial_number_{HARDWARE}"] or ""

    def _serial(self, i: int, h: bytes) -> str:
        dev = device_identity(self.seed, self.device_index(i))
        serial = dev.serial
        if i < int(self.overlap * self.base_records) and not dev.serial_is_placeholder:
            # Typed in by hand or imported from a spreadsheet: the same serial, spelled differently.
            if h[0] < 25:
                serial = serial.lower()
            elif h[0] < 45:
                serial = f" {serial} "
            elif h[0] < 50:
                serial = PLACEHOLDER_SERIALS[h[1] % len(PLACEHOLDER_SERIALS)]
        if i % 101 == 57 and i > 0:
            # The same laptop recorded twice: the previous asset's serial, in another case.
            other = device_identity(self.seed, self.device_index(i - 1)).serial
            if other not in PLACEHOLDER_SERIALS:
                serial = other.swapcase() + " "
        return serial

    def _generate(self, i: int, version: int, updated: int | None) -> dict:
        dev = device_identity(self.seed, self.device_index(i))
        h = device_hash(self.seed, i, b"freshservice")
        leaf = _LEAF_FOR_KIND[dev.kind]
        if dev.kind == "laptop" and h[2] < 12:
            leaf = 21000855308  # the custom "Developer Workstation" child of Laptop
        updated_ts = updated if updated is not None else BASE_TIME + i * self.step
        created_ts = (BASE_TIME if i < self.base_records else updated_ts) - 86400 - h[3] * 1000
        os_version = dev.os_version + (f".{version}" if version else "")
        hw = f"_{HARDWARE}"
        fields = {
            f"product{hw}": self._product_by_model.get((dev.manufacturer, dev.model)) if h[4] >= 8 else None,
            f"vendor{hw}": None,
            f"cost{hw}": None if h[5] < 128 else float(500 + h[5] * 7),
            f"asset_state{hw}": self._states.get(i) or (
                ASSET_STATES[h[6] % len(ASSET_STATES)] if h[7] >= 5 else None),
            f"serial_number{hw}": self._serial(i, h) if h[8] >= 6 else None,
            f"acquisition_date{hw}": iso(created_ts),
            f"warranty_expiry_date{hw}": None,
        }
        mac = dev.mac if h[9] >= 12 else None
        if mac and h[10] < 40:
            mac = mac.upper().replace(":", "-")  # typed in the Windows way
        if dev.kind == "tablet":
            mob = f"_{MOBILE_DEVICES}"
            fields |= {f"os{mob}": dev.os, f"os_version{mob}": os_version, f"imei_number{mob}": None,
                       f"mac_address{mob}": mac}
        else:
            cp = f"_{COMPUTER}"
            fields |= {
                f"os{cp}": dev.os if h[11] >= 5 else None,
                f"os_version{cp}": os_version if h[11] >= 5 else None,
                f"memory{cp}": 16 if dev.kind in ("laptop", "desktop") else 64,
                f"hostname{cp}": dev.hostname + (f".{dev.site.lower()}.acme.example" if dev.kind in (
                    "server", "virtual_machine") and h[12] < 128 else ""),
                f"computer_ip_address{cp}": (f"10.{SITES.index(dev.site) * 16 + (i >> 16) % 16}."
                                             f"{(i >> 8) & 255}.{i & 255}") if h[13] >= 30 else None,
                f"mac_address{cp}": mac,
                f"last_login_by{cp}": None,
            }
        fields |= {"depreciation_id": None, "salvage": None}
        is_server = dev.kind in ("server", "virtual_machine")
        return {
            "id": self.asset_id_for(i),
            "display_id": self.display_id_for(i),
            "name": dev.name,
            "description": None,
            "asset_type_id": leaf,
            "asset_tag": f"ASSET-{self.display_id_for(i)}" if h[14] >= 20 else None,
            "impact": ("low", "medium", "high")[h[15] % 3],
            "author_type": "User" if h[16] < 200 else "Discovery Agent",
            "usage_type": "loaner" if h[17] < 10 else "permanent",
            "user_id": self._owners[int.from_bytes(h[18:20], "big") % len(self._owners)]
            if h[20] < (40 if is_server else 220) else None,
            "department_id": self.departments[h[21] % len(self.departments)]["id"] if h[22] >= 40 else None,
            "location_id": self._location_by_site[dev.site] if h[23] >= 13 else None,
            "agent_id": None,
            "group_id": None,
            "assigned_on": iso(created_ts + 600),
            "created_at": iso(created_ts),
            "updated_at": iso(updated_ts),
            "end_of_life": None,
            "type_fields": fields,
        }

    @staticmethod
    def _break(raw: dict, malformation: str) -> None:
        if malformation == "missing_display_id":
            raw.pop("display_id", None)
        elif malformation == "bad_date":
            raw["updated_at"] = "18/05/2024 09:01"
        elif malformation == "non_string":
            raw["name"] = 5
            raw["type_fields"] = ["not", "an", "object"]

    # ------------------------------------------------------------------ selecting assets

    def _live_at(self, position: int) -> int | None:
        """The index of the live asset at 0-based `position` in id order (deleted ones skipped)."""
        deleted = self._deleted
        i = position
        while True:
            shifted = position + bisect.bisect_right(deleted, i)
            if shifted == i:
                break
            i = shifted
        return i if i < self.total else None

    def _updated_ts(self, i: int) -> int:
        return self._updated.get(i, BASE_TIME + i * self.step)

    def _filtered(self, terms: list[tuple[str, str, str]], limit: int) -> list[int]:
        """Live indices matching every term, in id order, at most `limit` of them."""
        out: list[int] = []
        after = None
        for name, op, value in terms:
            if name == "updated_at" and op == ">":
                # Day granularity: after that whole (UTC) day.
                day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
                after = max(after or 0, int(day.timestamp()) + 86400)
        if after is not None:
            # Base assets get newer with their index: start where they reach the date; touched ones anywhere
            # before that, which all come first in id order.
            first = min(self.total, max(0, math.ceil((after - BASE_TIME) / self.step)))
            candidates = sorted(i for i, ts in self._updated.items() if ts >= after and i < first)
            extra = range(first, self.total)
        else:
            candidates, extra = [], range(self.total)
        for source in (candidates, extra):
            for i in source:
                if len(out) >= limit:
                    return out
                if not self._is_live(i) or (after is not None and self._updated_ts(i) < after):
                    continue
                if self._matches(i, [t for t in terms if t[0] != "updated_at"]):
                    out.append(i)
        return out

    def _matches(self, i: int, terms) -> bool:
        if not terms:
            return True
        raw = self._generate(i, self._versions.get(i, 0), self._updated.get(i))
        fields = {k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k: v
                  for k, v in raw["type_fields"].items()}
        for name, _op, value in terms:
            actual = raw.get(name, fields.get(name))
            if str(actual) != value:
                return False
        return True

    # ------------------------------------------------------------------ HTTP

    hibernate_page = "<html><body>Maintenance</body></html>"

    def handle(self, request: Request) -> Response:
        # Credits are spent before anything else, failed calls included: the budget is the account's.
        credits = 3 if "type_fields" in request.args.get("include", "") else 1
        limited = self._spend(credits)
        if limited is not None:
            self.stats.incr("rate_limited")
            return self._with_limits(json_response(error_body("You have exceeded the limit of requests per minute"),
                                                   429, headers={"Retry-After": str(limited)}), credits)
        return self._with_limits(self.injected_fault(request) or self.serve(request), credits)

    def _spend(self, credits: int) -> int | None:
        """Take the call's credits from this minute's budget (failed calls count too); when it is spent,
        the seconds until the window resets."""
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.rate_limit_window:
                self._window_start, self._window_used = now, 0
            if self._window_used + credits > self.rate_limit_per_minute:
                return max(1, math.ceil(self.rate_limit_window - (now - self._window_start)))
            self._window_used += credits
            return None

    def _with_limits(self, response: Response, credits: int) -> Response:
        with self._lock:
            remaining = max(0, self.rate_limit_per_minute - self._window_used)
        response.headers["X-Ratelimit-Total"] = str(self.rate_limit_per_minute)
        response.headers["X-Ratelimit-Remaining"] = str(remaining)
        response.headers["X-Ratelimit-Used-CurrentRequest"] = str(credits)
        return response

    def fault_response(self, fault) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        reason = Response(status=fault.status).status.split(" ", 1)[-1]
        return json_response(error_body(reason), fault.status, headers=headers)

    def serve(self, request: Request) -> Response:
        path = request.path
        if not self._authenticated(request):
            self.stats.incr("auth_failures")
            # UNCONFIRMED body; the Freshworks products answer 401 with {"code", "message"}.
            return json_response({"code": "invalid_credentials",
                                  "message": "You have to be logged in to perform this action."}, 401,
                                 headers={"WWW-Authenticate": 'Basic realm="Helpdesk"'})
        handled = self.itsm.handle(request, path)
        if handled is not None:
            return handled
        if request.method not in ("GET", "HEAD"):
            return json_response(error_body("Method not allowed: this simulator is read-only"), 405,
                                 headers={"Allow": "GET"})
        route = re.fullmatch(r"/api/v2/(assets|asset_types|products|departments|locations|requesters|agents)"
                             r"(?:/(\d+))?/?", path)
        if route is None:
            return json_response(error_body("Resource not found"), 404)
        kind, item = route.groups()
        self.stats.incr(f"{kind}_requests")
        if kind == "assets":
            return self._one_asset(request, int(item)) if item else self._assets(request)
        items = {"asset_types": self.asset_types, "products": self.products, "departments": self.departments,
                 "locations": self.locations, "requesters": self.requesters, "agents": self.agents}[kind]
        if item:
            found = [x for x in items if x["id"] == int(item)]
            if not found:
                return json_response(error_body("Record not found"), 404)
            return json_response({kind[:-1]: found[0]})
        page, per_page, invalid = self._paging(request)
        if invalid:
            return invalid
        start = (page - 1) * per_page
        response = json_response({kind: items[start : start + per_page]})
        if start + per_page < len(items):
            response.headers["Link"] = self._link(request, page + 1, per_page)
        return response

    def _authenticated(self, request: Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, _password = base64.b64decode(credentials).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), self.api_key.encode())  # any password: "X" by convention

    def _paging(self, request: Request) -> tuple[int, int, Response | None]:
        args = request.args
        errors = []
        page = per_page = 0
        try:
            page = int(args.get("page", "1"))
            if page < 1:
                raise ValueError
        except ValueError:
            errors.append({"field": "page", "message": "It should be a positive number", "code": "invalid_value"})
        try:
            per_page = int(args.get("per_page", str(DEFAULT_PER_PAGE)))
            if not 1 <= per_page <= MAX_PER_PAGE:
                raise ValueError
        except ValueError:
            errors.append({"field": "per_page", "message": f"It should be between 1 and {MAX_PER_PAGE}",
                           "code": "invalid_value"})
        if errors:
            return 0, 0, json_response(error_body("Validation failed", errors), 400)
        return page, per_page, None

    def _link(self, request: Request, page: int, per_page: int) -> str:
        params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "per_page")]
        query = urlencode([*params, ("page", str(page)), ("per_page", str(per_page))], quote_via=quote)
        return f'<{request.base_url}?{query}>; rel="next"'

    def _body(self, request: Request, indices: list[int], key: str = "assets") -> Response:
        include = "type_fields" in request.args.get("include", "").split(",")
        broken = self.malformed_for(request, indices)
        with self._lock:
            rows = [self._generate(i, self._versions.get(i, 0), self._updated.get(i)) for i in indices]
        for i, raw in zip(indices, rows, strict=True):
            if not include:
                raw.pop("type_fields")
            if i in broken:
                self._break(raw, broken[i])
        return json_response({key: rows[0]} if key == "asset" else {key: rows})

    def _one_asset(self, request: Request, display_id: int) -> Response:
        i = self.index_for_display_id(display_id)
        with self._lock:
            live = self._is_live(i)
        if not live:
            return json_response(error_body("Record not found"), 404)
        return self._body(request, [i], key="asset")

    def _assets(self, request: Request) -> Response:
        args = request.args
        if args.get("trashed", "").lower() == "true":
            page, per_page, invalid = self._paging(request)
            if invalid:
                return invalid
            with self._lock:
                trashed = self._deleted[(page - 1) * per_page : page * per_page + 1]
            response = self._body(request, trashed[:per_page])
            if len(trashed) > per_page:
                response.headers["Link"] = self._link(request, page + 1, per_page)
            return response
        if "filter" in args:
            return self._filter(request, args["filter"])
        page, per_page, invalid = self._paging(request)
        if invalid:
            return invalid
        with self._lock:
            start = (page - 1) * per_page
            indices = []
            i = self._live_at(start)
            while i is not None and len(indices) < per_page + 1:
                if i not in self._deleted_set:
                    indices.append(i)
                i = i + 1 if i + 1 < self.total else None
        response = self._body(request, indices[:per_page])
        if len(indices) > per_page:
            response.headers["Link"] = self._link(request, page + 1, per_page)
        return response

    def _filter(self, request: Request, text: str) -> Response:
        """`filter="updated_at:>'2024-05-17' AND asset_type_id:21000855304"`: 30 per page, 40 pages, no Link."""
        def invalid(message: str) -> Response:
            return json_response(error_body("Validation failed", [
                {"field": "filter", "message": message, "code": "invalid_value"}]), 400)

        text = text.strip()
        if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
            return invalid("The query should be enclosed in double quotes")
        terms = []
        for part in re.split(r"\s+AND\s+", text[1:-1]):
            term = _FILTER_TERM.match(part)
            if term is None:
                return invalid(f"Invalid query term: {part[:60]}")
            name, op, quoted, number = term.groups()
            if name == "updated_at":
                if op != ">" or quoted is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", quoted):
                    return invalid("updated_at takes >'YYYY-MM-DD' in this simulator")
            terms.append((name, op or "", quoted if quoted is not None else number))
        try:
            page = int(request.args.get("page", "1"))
        except ValueError:
            page = 0
        if not 1 <= page <= FILTER_MAX_PAGES:
            return invalid(f"page should be between 1 and {FILTER_MAX_PAGES}")
        self.stats.incr("filter_requests")
        with self._lock:
            matches = self._filtered(terms, page * FILTER_PER_PAGE)
        return self._body(request, matches[(page - 1) * FILTER_PER_PAGE : page * FILTER_PER_PAGE])

    # ------------------------------------------------------------------ control endpoints (tests, demo)

    def control(self, request: Request, action: str) -> Response:
        handled = self.itsm.control(request, action)
        if handled is not None:
            return handled
        return super().control(request, action)

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action in ("touch", "delete"):
            method = self.touch if action == "touch" else self.delete
            return json_response({"display_ids": method(count=spec.get("count"), indices=spec.get("indices"))})
        if action == "add":
            return json_response({"display_ids": self.add(int(spec.get("count", 1)))})
        if action == "config":
            for key in ("api_key", "rate_limit_per_minute", "rate_limit_window"):
                if key in spec:
                    setattr(self, key, spec[key])
            return json_response(self.state()["rate_limit"])
        return None
