"""ServiceNow Table API simulator for the CMDB computer classes (see shared/api-notes/servicenow-cmdb.md).

What it imitates: `/api/now/table/{table}` and `/api/now/v2/table/{table}` (list and single record), Basic
and OAuth (`/oauth_token.do`) authentication, the three `sysparm_display_value` shapes, `X-Total-Count` and
`Link` paging, encoded queries, ACL-hidden rows that make short pages, rate limiting, 5xx, hibernation.

How it stays small at any size: record `i` is a pure function of `(seed, i, version of i)`. The base data
set is never materialised; its order (sys_updated_on, then sys_id) follows from the index, so a page or an
incremental query is index arithmetic. Only the changes made during a run live in memory (an overlay):
touched records (moved to the end, with a newer sys_updated_on), deleted records and records added later.
"""

from __future__ import annotations

import base64
import bisect
import calendar
import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring as _enc  # C-accelerated, keeps UTF-8
from urllib.parse import quote, urlencode

from werkzeug.wrappers import Request, Response

from .base import JSON_UTF8, FaultInjector, KeptTexts, SimulatorApp, Stats, json_response
from .devices import MAKES, PLACEHOLDER_SERIALS, SITES, device_hash, device_identity, mix32, unmix32
from .servicenow_common import (
    Query,
    display_of_raw_time,
    error_body,
    int_arg,
    parse_query,
    parse_raw_time,
    raw_time,
    term_matches,
)
from .servicenow_itsm import ServiceNowItsm

DEFAULT_USERNAME = "syncplane.integration"
DEFAULT_PASSWORD = "demo-password"
DEFAULT_CLIENT_ID = "syncplane-client"
DEFAULT_CLIENT_SECRET = "demo-client-secret"

DEFAULT_LIMIT = 10000

# The base data set: groups of GROUP consecutive records share one sys_updated_on second (so the sys_id
# tie-break in ORDERBYsys_updated_on^ORDERBYsys_id matters), one group every STEP seconds from BASE_TIME.
BASE_TIME = calendar.timegm((2024, 1, 8, 6, 0, 0))
GROUP = 3
STEP = 20

# The integration user's display format: deliberately neither UTC nor ISO, as on many real instances.

CLASS_LABELS = {
    "cmdb_ci_computer": "Computer",
    "cmdb_ci_server": "Server",
    "cmdb_ci_win_server": "Windows Server",
    "cmdb_ci_linux_server": "Linux Server",
    "cmdb_ci_esx_server": "ESX Server",
}
_SERVER_CLASSES = frozenset(CLASS_LABELS) - {"cmdb_ci_computer"}
# Table -> classes its rows may have (None: every class, the table is a superclass of all we generate).
TABLE_CLASSES: dict[str, frozenset[str] | None] = {
    "cmdb_ci": None,
    "cmdb_ci_hardware": None,
    "cmdb_ci_computer": None,
    "cmdb_ci_server": _SERVER_CLASSES,
    "cmdb_ci_win_server": frozenset({"cmdb_ci_win_server"}),
    "cmdb_ci_linux_server": frozenset({"cmdb_ci_linux_server"}),
    "cmdb_ci_esx_server": frozenset({"cmdb_ci_esx_server"}),
}

INSTALL_STATUS = {
    "1": "Installed",
    "2": "On Order",
    "3": "In Maintenance",
    "4": "Pending Install",
    "5": "Pending Repair",
    "6": "In Stock",
    "7": "Retired",
    "8": "Stolen",
    "100": "Absent",
}
OPERATIONAL_STATUS = {
    "1": "Operational",
    "2": "Non-Operational",
    "3": "Repair in Progress",
    "4": "DR Standby",
    "5": "Ready",
    "6": "Retired",
}
CHOICES = {
    "install_status": INSTALL_STATUS,
    "operational_status": OPERATIONAL_STATUS,
    "sys_class_name": CLASS_LABELS,
}

# Reference field -> referenced table
REFERENCES = {
    "assigned_to": "sys_user",
    "location": "cmn_location",
    "department": "cmn_department",
    "manufacturer": "core_company",
    "model_id": "cmdb_model",
}
DATE_FIELDS = ("last_discovered", "sys_created_on", "sys_updated_on")

# Every field a record has, in the order of the note's recommended request profile.
FIELDS = (
    "sys_id",
    "name",
    "sys_class_name",
    "serial_number",
    "asset_tag",
    "manufacturer",
    "model_id",
    "host_name",
    "fqdn",
    "ip_address",
    "mac_address",
    "os",
    "os_version",
    "assigned_to",
    "assigned_to.email",
    "location",
    "department",
    "install_status",
    "operational_status",
    "virtual",
    "form_factor",
    "last_discovered",
    "sys_created_on",
    "sys_updated_on",
)
# Without sysparm_fields the real API returns the table's own columns, never dot-walked ones.
DEFAULT_FIELDS = tuple(f for f in FIELDS if "." not in f)

_INSTALL_STATUS_BY_BYTE = tuple(  # mostly Installed, a few of every other code (one random byte -> code)
    "1"
    if b < 210
    else "6"
    if b < 222
    else "7"
    if b < 232
    else "3"
    if b < 237
    else "2"
    if b < 241
    else "4"
    if b < 245
    else "5"
    if b < 248
    else "8"
    if b < 250
    else "100"
    for b in range(256)
)
_OPERATIONAL_FOR_INSTALL = {"7": "6", "3": "3", "5": "3", "2": "5", "4": "5", "6": "5", "8": "2", "100": "2"}

MALFORMATIONS = ("missing_sys_id", "bad_date", "non_string")

_FIRST_NAMES = (
    "Jürgen",
    "Anna",
    "Sören",
    "Zoë",
    "José",
    "Ingrid",
    "Łukasz",
    "Marie",
    "Ömer",
    "Chloé",
    "Thomas",
    "Priya",
    "Björn",
    "Aoife",
    "Matthias",
    "Ève",
    "Kenji",
    "Sarah",
    "François",
    "Henrik",
)
_LAST_NAMES = (
    "Müller",
    "Schmidt",
    "Weiß",
    "García",
    "Nowak",
    "O'Brien",
    "Dubois",
    "Öztürk",
    "Jensen",
    "Smith",
    "Kovačević",
    "Rossi",
    "Yamamoto",
    "Andersson",
    "Lefèvre",
    "Becker",
    "Fischer",
    "Patel",
)
_DEPARTMENTS = (
    "IT",
    "Finance",
    "Sales",
    "Engineering",
    "Human Resources",
    "Marketing",
    "Operations",
    "Legal",
)
_LOCATIONS = {
    "BER": "Berlin HQ",
    "MUC": "München Office",
    "FRA": "Frankfurt Data Center",
    "HAM": "Hamburg Office",
    "LON": "London Office",
    "PAR": "Paris Office",
    "AMS": "Amsterdam Office",
    "NYC": "New York Office",
}
_ASCII = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "ß": "ss",
        "é": "e",
        "è": "e",
        "ë": "e",
        "ø": "o",
        "ł": "l",
        "č": "c",
        "'": "",
        " ": "",
    }
)

_HIBERNATING_PAGE = (
    "<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head><body>"
    "<h1>Your instance is hibernating</h1><p>Developer instances hibernate when not in use. "
    "Sign in to the developer portal to wake it up.</p></body></html>"
)


def reference_sys_id(seed: int, table: str, key: str) -> str:
    """Stable sys_id of a referenced record (user, location, company...) named `key`."""
    digest = hashlib.blake2b(
        key.encode("utf-8"),
        key=seed.to_bytes(8, "big", signed=True),
        person=table.encode()[:16],
        digest_size=16,
    )
    return digest.hexdigest()


class RecordEncoder:
    """Writes records as JSON text, in the shape `sysparm_display_value` and `sysparm_exclude_reference_link` ask.

    Built by hand rather than with json.dumps of nested dicts: with display_value=all a page of 1000 records is
    25,000 small objects, and building then encoding them was about four times slower (measured), which made a
    100k-record full sync take tens of seconds. Each field gets its rendering decided once per response.
    """

    # Fields with few distinct values: their JSON fragment is computed once per response.
    _REPEATING = frozenset([*REFERENCES, *CHOICES, "virtual", "form_factor", "os", "os_version"])

    def __init__(self, display_value, fields, mode: str, links: bool, instance: str):
        self._display_value = display_value
        self._mode = mode
        self._links = links
        self._instance = instance
        self._fragments: dict[tuple[str, object], str] = {}
        # (field, '"field":', plan): "plain" = the value itself, "pair" = the value twice (display == raw),
        # "date" = raw and display date, "other" = looked up (and cached when the field repeats).
        self._plan = []
        for field in fields:
            if field in self._REPEATING or (mode == "false" and field in REFERENCES):
                plan = "other"
            elif field in DATE_FIELDS and mode != "false":
                plan = "date"
            else:
                plan = {"false": "plain", "true": "plain", "all": "pair"}[mode]
            self._plan.append((field, _enc(field) + ":", plan))

    def encode(self, raw: dict) -> str:
        parts = []
        for field, key, plan in self._plan:
            value = raw.get(field, _MISSING)
            if value is _MISSING:
                continue
            if type(value) is not str:  # a deliberately malformed record
                text = json.dumps(value)
                parts.append(key + (f'{{"display_value":{text},"value":{text}}}' if self._mode == "all" else text))
            elif plan == "plain":
                parts.append(key + _enc(value))
            elif plan == "pair":
                encoded = _enc(value)
                parts.append(f'{key}{{"display_value":{encoded},"value":{encoded}}}')
            elif plan == "date":
                shown = _enc(display_of_raw_time(value))
                parts.append(
                    key + (shown if self._mode == "true" else f'{{"display_value":{shown},"value":{_enc(value)}}}')
                )
            else:
                fragment = self._fragments.get((field, value))
                if fragment is None:
                    fragment = self._fragment(field, value)
                    if field in self._REPEATING:
                        self._fragments[(field, value)] = fragment
                parts.append(key + fragment)
        return "{" + ",".join(parts) + "}"

    def _fragment(self, field: str, value: str) -> str:
        table = REFERENCES.get(field)
        link = _enc(f"{self._instance}/api/now/table/{table}/{value}") if table and self._links and value else None
        if self._mode == "false":
            return f'{{"link":{link},"value":{_enc(value)}}}' if link else _enc(value)
        display = self._display_value(field, value)
        if self._mode == "true":
            return _enc(display)
        encoded = _enc(value)
        shown = encoded if display == value else _enc(display)
        if link:
            return f'{{"display_value":{shown},"link":{link},"value":{encoded}}}'
        return f'{{"display_value":{shown},"value":{encoded}}}'


_MISSING = object()


@dataclass
class Token:
    access_token: str
    principal: str
    refresh_token: str | None
    expires_at: float


class ServiceNowSimulator(SimulatorApp):
    """A WSGI app; mount it under a prefix (`/servicenow`) with `PrefixDispatcher`."""

    malformations = MALFORMATIONS

    def __init__(
        self,
        records: int = 2000,
        seed: int = 42,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: int = 1799,
        client_credentials_enabled: bool = True,
        cache_records: int = 20_000,
    ):
        if records < 0 or records >= 1 << 32:
            raise ValueError("records must be between 0 and 2**32 - 1")
        self.base_records = records
        self.seed = seed
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.client_credentials_enabled = client_credentials_enabled
        self.clock = time.monotonic  # token expiry clock; tests may replace it
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.RLock()
        self._auth_lock = threading.Lock()
        self._group_order = lru_cache(maxsize=4096)(self._compute_group_order)
        self.kept_rows = KeptTexts(cache_records)  # encoded rows, by (index, version, overlay time, shape)
        self._build_reference_tables()
        # The change tables of the same instance (servicenow_itsm.py).
        self.itsm = ServiceNowItsm(self, seed=seed)
        self.reset()

    # ------------------------------------------------------------------ reference data (fixed size)

    def _build_reference_tables(self) -> None:
        """Users, locations, departments, companies and models: small fixed pools, whatever the CI count."""
        seed = self.seed
        rng = random.Random(seed)
        self._users: list[tuple[str, str, str]] = []  # (sys_id, display name, email)
        for first, last in rng.sample([(f, la) for f in _FIRST_NAMES for la in _LAST_NAMES], 300):
            name = f"{first} {last}"
            email = f"{first.lower().translate(_ASCII)}.{last.lower().translate(_ASCII)}@acme.example"
            if rng.random() < 0.02:
                email = ""  # service accounts and contractors without a mailbox
            self._users.append((reference_sys_id(seed, "sys_user", name), name, email))
        self._locations = {site: (reference_sys_id(seed, "cmn_location", site), _LOCATIONS[site]) for site in SITES}
        self._departments = [(reference_sys_id(seed, "cmn_department", d), d) for d in _DEPARTMENTS]
        self._companies = {make: reference_sys_id(seed, "core_company", make) for make in MAKES}
        self._models = {
            (make, model): reference_sys_id(seed, "cmdb_model", f"{make}|{model}")
            for make, (_oui, models) in MAKES.items()
            for kind_models in models.values()
            for model in kind_models
        }
        self._display: dict[str, str] = {}  # sys_id of any referenced record -> its display value
        for sys_id, name, _email in self._users:
            self._display[sys_id] = name
        for sys_id, name in [*self._locations.values(), *self._departments]:
            self._display[sys_id] = name
        self._display.update({sys_id: make for make, sys_id in self._companies.items()})
        self._display.update({sys_id: model for (_make, model), sys_id in self._models.items()})

    # ------------------------------------------------------------------ identity and order of the base set

    def sys_id_for(self, i: int) -> str:
        """The sys_id of record `i`: 24 hash digits, then 8 digits from which the index can be recovered."""
        return device_hash(self.seed, i, b"servicenow").hex()[:24] + f"{mix32(i, self.seed):08x}"

    def index_for(self, sys_id: str) -> int | None:
        """Index of the record with this sys_id (live or not), or None if no record ever had it."""
        if len(sys_id) != 32:
            return None
        try:
            i = unmix32(int(sys_id[24:], 16), self.seed)
        except ValueError:
            return None
        if i >= self.base_records + self._added or self.sys_id_for(i) != sys_id:
            return None
        return i

    def base_updated(self, i: int) -> int:
        return BASE_TIME + (i // GROUP) * STEP

    def _compute_group_order(self, g: int) -> tuple[int, ...]:
        members = range(g * GROUP, min(g * GROUP + GROUP, self.base_records))
        return tuple(sorted(members, key=self.sys_id_for))

    def _index_at(self, position: int) -> int:
        return self._group_order(position // GROUP)[position % GROUP]

    def _position_of(self, i: int) -> int:
        g = i // GROUP
        return g * GROUP + self._group_order(g).index(i)

    def _first_position_at_or_after(self, ts: int) -> int:
        groups = -((BASE_TIME - ts) // STEP)  # ceil((ts - BASE_TIME) / STEP)
        return min(max(groups, 0) * GROUP, self.base_records)

    # ------------------------------------------------------------------ overlay: changes made during a run

    def reset(self) -> None:
        """Back to the generated data set: no changes, no faults, no hidden rows, no tokens, zero stats."""
        with self._lock:
            self._versions: dict[int, int] = {}
            self._updated: dict[int, int] = {}  # overlay index -> its sys_updated_on (epoch seconds)
            self._overlay: list[int] = []  # touched/added indices in (sys_updated_on, sys_id) order
            self._overlay_ts: list[int] = []  # parallel to _overlay, for bisect
            self._removed: list[int] = []  # sorted base positions no longer in the base sequence
            self._removed_set: set[int] = set()
            self._deleted: set[int] = set()
            self._added = 0
            self._clock = self.base_updated(max(self.base_records - 1, 0))
            self._mutations = 0
            self._query_cache: OrderedDict[tuple, array] = OrderedDict()
            self.hidden_every: int | None = None
            self.hidden_indices: set[int] = set()
        with self._auth_lock:
            self._tokens: dict[str, Token] = {}
            self._current: dict[str, str] = {}  # principal -> current access token
            self._refresh_tokens: dict[str, str] = {}  # refresh token -> principal
        self.faults.clear()
        self.stats.reset()
        self.itsm.reset()

    @property
    def record_count(self) -> int:
        """Live records (what a full sync should end up with)."""
        with self._lock:
            return self.base_records + self._added - len(self._deleted)

    def _is_live(self, i: int) -> bool:
        return 0 <= i < self.base_records + self._added and i not in self._deleted

    def _pick(self, count: int | None, indices) -> list[int]:
        if indices is not None:
            return [i for i in dict.fromkeys(int(x) for x in indices) if self._is_live(i)]
        total = self.base_records + self._added
        count = min(int(count or 0), self.record_count)
        # Deterministic per mutation step, spread over the whole set (not just its head).
        rng = random.Random(f"{self.seed}:{self._mutations}")
        if count * 2 > total:
            live = [i for i in range(total) if i not in self._deleted]
            return sorted(rng.sample(live, count))
        picked: set[int] = set()
        while len(picked) < count:
            i = rng.randrange(total)
            if i not in self._deleted:
                picked.add(i)
        return sorted(picked)

    def _unlink(self, i: int) -> None:
        """Take a live record out of the ordered sequence (before it moves or disappears)."""
        if i in self._updated:
            k = self._overlay.index(i)
            del self._overlay[k]
            del self._overlay_ts[k]
            del self._updated[i]
        else:
            position = self._position_of(i)
            bisect.insort(self._removed, position)
            self._removed_set.add(position)

    def _append(self, batch: list[int]) -> int:
        """Put records at the end of the order with a new sys_updated_on, later than everything so far."""
        self._clock = max(self._clock + 1, int(time.time()))
        for i in sorted(batch, key=self.sys_id_for):
            self._overlay.append(i)
            self._overlay_ts.append(self._clock)
            self._updated[i] = self._clock
        return self._clock

    def _changed(self) -> None:
        self._mutations += 1
        self._query_cache.clear()

    def touch(self, count: int | None = None, indices=None) -> list[str]:
        """Update records (new os_version, later sys_updated_on); returns their sys_ids in order."""
        with self._lock:
            batch = self._pick(count, indices)
            for i in batch:
                self._unlink(i)
                self._versions[i] = self._versions.get(i, 0) + 1
            self._append(batch)
            self._changed()
            return [self.sys_id_for(i) for i in batch]

    def delete(self, count: int | None = None, indices=None) -> list[str]:
        """Delete records; returns their sys_ids."""
        with self._lock:
            batch = self._pick(count, indices)
            for i in batch:
                self._unlink(i)
                self._deleted.add(i)
            self._changed()
            return [self.sys_id_for(i) for i in batch]

    def add(self, count: int = 1) -> list[str]:
        """Create new records after start (indices from the base size up); returns their sys_ids."""
        with self._lock:
            start = self.base_records + self._added
            if start + count >= 1 << 32:
                raise ValueError("too many records")
            batch = list(range(start, start + count))
            self._added += count
            self._append(batch)
            self._changed()
            return [self.sys_id_for(i) for i in batch]

    def set_hidden(self, every: int | None = None, indices=()) -> None:
        """Rows the integration user may not read (ACL): counted in X-Total-Count, never returned.

        `every=997` hides records 996, 1993, ...; `indices` hides exactly those. Both empty: nothing hidden.
        """
        if every is not None and every < 1:
            raise ValueError("every must be >= 1")
        with self._lock:
            self.hidden_every = every
            self.hidden_indices = {int(i) for i in indices}

    def is_hidden(self, i: int) -> bool:
        every = self.hidden_every
        return i in self.hidden_indices or (every is not None and (i + 1) % every == 0)

    def inject_fault(self, kind: str = "status", **options):
        """See `base.Fault`; e.g. `inject_fault("status", status=429, retry_after=2)`,
        `inject_fault("malformed", indices=[3, 17], count=None)`, `inject_fault("slow", delay=3)`."""
        return self.faults.add(kind, **options)

    def clear_faults(self) -> None:
        self.faults.clear()

    def expire_all_tokens(self, include_refresh_tokens: bool = False) -> None:
        """Make every access token (and optionally every refresh token) invalid, as if time had passed."""
        with self._auth_lock:
            for token in self._tokens.values():
                token.expires_at = float("-inf")
            if include_refresh_tokens:
                self._refresh_tokens.clear()

    def state(self) -> dict:
        with self._lock:
            return {
                "records": self.record_count,
                "base_records": self.base_records,
                "added": self._added,
                "touched": len(self._versions),
                "deleted": len(self._deleted),
                "seed": self.seed,
                "hidden": {"every": self.hidden_every, "indices": sorted(self.hidden_indices)},
                "faults": [f.as_dict() for f in self.faults.list()],
                "stats": self.stats.as_dict(),
            }

    # ------------------------------------------------------------------ record generation

    def serial_for(self, i: int) -> str:
        return self.record(i)["serial_number"]

    def record(self, i: int) -> dict:
        """Raw values of record `i` as they are now."""
        with self._lock:
            version = self._versions.get(i, 0)
            updated = self._updated.get(i)
        return self._generate(i, version, updated)

    def display_value(self, field: str, value: str) -> str:
        """What `sysparm_display_value=true` shows for a raw value."""
        if field in REFERENCES:
            return self._display.get(value, "")
        if field in CHOICES:
            return CHOICES[field].get(value, value)
        if field in DATE_FIELDS:
            return display_of_raw_time(value)
        return value

    def _generate(self, i: int, version: int, updated: int | None) -> dict:
        dev = device_identity(self.seed, i)
        h = device_hash(self.seed, i, b"servicenow")
        is_server = dev.kind in ("server", "virtual_machine")
        base_ts = self.base_updated(i) if i < self.base_records else None
        updated_ts = updated if updated is not None else base_ts

        if not is_server:
            cls = "cmdb_ci_computer"
        elif dev.os == "VMware ESXi":
            cls = "cmdb_ci_esx_server"
        elif h[0] < 26:
            cls = "cmdb_ci_server"  # discovered but never classified further
        elif dev.os.startswith("Windows"):
            cls = "cmdb_ci_win_server"
        else:
            cls = "cmdb_ci_linux_server"

        serial = dev.serial
        if i % 97 == 41:
            # A second CI for the previous device, typed in by hand: same serial, other case or spacing.
            other = device_identity(self.seed, i - 1).serial
            if other not in PLACEHOLDER_SERIALS:
                serial = (other.lower(), other + " ", " " + other.lower())[h[1] % 3]
        elif is_server and h[1] < 5:
            serial = ""

        user = self._users[int.from_bytes(h[2:4], "big") % len(self._users)]
        has_user = h[4] < (38 if is_server else 225)
        location_id = self._locations[dev.site][0] if h[5] >= 13 else ""
        department_id = ""
        if is_server:
            department_id = self._departments[0][0] if h[6] < 100 else ""
        elif h[6] >= 38:
            department_id = self._departments[h[7] % len(self._departments)][0]

        install_status = _INSTALL_STATUS_BY_BYTE[h[8]]
        operational_status = _OPERATIONAL_FOR_INSTALL.get(install_status) or ("1" if h[9] < 245 else "2")

        os_version = dev.os_version
        if version:
            head, _, last = os_version.rpartition(".")
            os_version = f"{head}.{int(last) + version}" if head and last.isdigit() else f"{os_version}.{version}"

        if updated is not None and version:
            last_discovered = updated_ts  # the touch came from a discovery run
        elif h[10] < 30:
            last_discovered = None  # entered by hand, never discovered
        else:
            last_discovered = updated_ts - int.from_bytes(h[11:13], "big") % (3 * 86400)
        created = base_ts - 86400 - int.from_bytes(h[13:15], "big") * 400 if base_ts is not None else updated_ts

        make_id = self._companies[dev.manufacturer] if h[15] >= 8 else ""
        model_id = self._models[(dev.manufacturer, dev.model)] if h[16] >= 8 else ""
        fqdn = f"{dev.hostname}.{dev.site.lower()}.acme.example" if is_server or h[17] < 180 else ""
        ip = ""
        if is_server or h[18] < 190:
            ip = f"10.{SITES.index(dev.site) * 16 + (i >> 16) % 16}.{(i >> 8) & 255}.{i & 255}"

        raw = {
            "sys_id": h[:12].hex() + f"{mix32(i, self.seed):08x}",
            "name": dev.name,
            "sys_class_name": cls,
            "serial_number": serial,
            "asset_tag": f"P{(i * 7919 + 104729) % 1_000_000:06d}" if not is_server and h[19] >= 50 else "",
            "manufacturer": make_id,
            "model_id": model_id,
            "host_name": dev.hostname,
            "fqdn": fqdn,
            "ip_address": ip,
            "mac_address": dev.mac if h[20] >= 10 else "",
            "os": dev.os if h[21] >= 5 else "",
            "os_version": os_version if h[21] >= 5 else "",
            "assigned_to": user[0] if has_user else "",
            "assigned_to.email": user[2] if has_user else "",
            "location": location_id,
            "department": department_id,
            "install_status": install_status,
            "operational_status": operational_status,
            "virtual": "true" if dev.kind == "virtual_machine" else "false",
            "form_factor": dev.kind if not is_server and h[22] >= 25 else "",
            "last_discovered": raw_time(last_discovered) if last_discovered is not None else "",
            "sys_created_on": raw_time(created),
            "sys_updated_on": raw_time(updated_ts),
        }
        return raw

    @staticmethod
    def _break(raw: dict, malformation: str) -> None:
        """Damage a generated record the way a broken import or a customised instance does. Besides the
        MALFORMATIONS that "mixed" cycles through, two are asked for by name: "nul_character" and
        "overlong_value", values the API's shape allows but a database may refuse."""
        if malformation == "missing_sys_id":
            raw.pop("sys_id", None)
        elif malformation == "bad_date":
            raw["sys_updated_on"] = "not-a-date"
        elif malformation == "non_string":
            # JSON types the real API never sends: a number, a boolean and a null.
            raw["install_status"] = 1
            raw["virtual"] = True
            raw["name"] = None
        elif malformation == "nul_character":
            # A NUL (\u0000 in the JSON) pasted into text fields: PostgreSQL keeps it neither in text nor in jsonb.
            raw["name"] += "\x00"
            raw["os_version"] = "10.0\x00.19045"
        elif malformation == "overlong_value":
            # A serial number longer than any CMDB column (a pasted log line), with a NUL in it too.
            raw["serial_number"] = "SN\x00" + "0123456789" * 30

    # ------------------------------------------------------------------ selecting rows

    def _select(self, table_classes, query: Query, offset: int, limit: int) -> tuple[int, list[tuple]]:
        """(total matching rows, [(index, version, overlay sys_updated_on)] of the page)."""
        # The connector's queries (ORDERBYsys_updated_on^ORDERBYsys_id, optionally after sys_updated_on>=)
        # are answered by index arithmetic, anything else by a cached scan. No ORDERBY: the canonical order.
        canonical = query.order in (
            [],
            [("sys_updated_on", False)],
            [("sys_updated_on", False), ("sys_id", False)],
        )
        since = self._since(query.clauses)
        by_id = self._sys_ids_in(query.clauses)
        with self._lock:
            if by_id is not None and table_classes is None:
                live = sorted({i for i in map(self.index_for, by_id) if i is not None and self._is_live(i)},
                              key=self._position_in_order)
                total, page = len(live), live[offset : offset + limit]
            elif canonical and table_classes is None and since is not None:
                total, page = self._select_in_order(since, offset, limit)
            else:
                total, page = self._select_by_scan(table_classes, query, offset, limit)
            return total, [(i, self._versions.get(i, 0), self._updated.get(i)) for i in page]

    @staticmethod
    def _sys_ids_in(clauses) -> list[str] | None:
        """For a query that is only `sys_idIN a,b,c` (a lookup by id): the ids, else None."""
        if len(clauses) == 1 and len(clauses[0]) == 1 and clauses[0][0][:2] == ("sys_id", "IN"):
            return clauses[0][0][2].split(",")
        return None

    def _position_in_order(self, i: int) -> tuple:
        updated = self._updated.get(i)
        return (0, self._position_of(i)) if updated is None else (1, updated, i)

    @staticmethod
    def _since(clauses) -> int | None:
        """For queries made only of `sys_updated_on>=`/`>` terms: the first second they accept, else None."""
        since = 0
        for clause in clauses:
            if len(clause) != 1 or clause[0][0] != "sys_updated_on" or clause[0][1] not in (">=", ">"):
                return None
            ts = parse_raw_time(clause[0][2])
            if ts is None:
                return None
            since = max(since, ts + (1 if clause[0][1] == ">" else 0))
        return since

    def _select_in_order(self, since: int, offset: int, limit: int) -> tuple[int, list[int]]:
        """Canonical order without a scan: base positions from `since` minus removed ones, then overlay."""
        n = self.base_records
        start = self._first_position_at_or_after(since)
        removed = self._removed
        base_live = (n - start) - (len(removed) - bisect.bisect_left(removed, start))
        overlay_start = bisect.bisect_left(self._overlay_ts, since)
        total = base_live + len(self._overlay) - overlay_start
        page: list[int] = []
        if offset < base_live:
            position = self._nth_live_position(start, offset)
            while position < n and len(page) < limit:
                if position not in self._removed_set:
                    page.append(self._index_at(position))
                position += 1
            overlay_offset = 0
        else:
            overlay_offset = offset - base_live
        k = overlay_start + overlay_offset
        while len(page) < limit and k < len(self._overlay):
            page.append(self._overlay[k])
            k += 1
        return total, page

    def _nth_live_position(self, start: int, n: int) -> int:
        """The n-th (0-based) base position >= start that was not removed; converges in a few bisects."""
        lo = bisect.bisect_left(self._removed, start)
        position = start + n
        while True:
            shifted = start + n + (bisect.bisect_right(self._removed, position) - lo)
            if shifted == position:
                return position
            position = shifted

    def _select_by_scan(self, table_classes, query: Query, offset: int, limit: int) -> tuple[int, list[int]]:
        """Any other query: one O(N) pass, cached until the data changes, then pages are slices."""
        key = (table_classes, query.key())
        matches = self._query_cache.get(key)
        if matches is None:
            total, order = self._select_in_order(0, 0, self.base_records + self._added)
            rows = []
            for i in order:
                raw = self._generate(i, self._versions.get(i, 0), self._updated.get(i))
                if table_classes is not None and raw["sys_class_name"] not in table_classes:
                    continue
                if all(any(term_matches(raw[f], op, v) for f, op, v in clause) for clause in query.clauses):
                    rows.append((i, [raw[f] for f, _ in query.order]))
            # Stable sorts from the last key to the first give a multi-key order with mixed directions.
            for k in reversed(range(len(query.order))):
                rows.sort(key=lambda row, k=k: row[1][k], reverse=query.order[k][1])
            matches = array("Q", (i for i, _ in rows))
            self._query_cache[key] = matches
            while len(self._query_cache) > 8:
                self._query_cache.popitem(last=False)
        return len(matches), list(matches[offset : offset + limit])

    # ------------------------------------------------------------------ HTTP

    hibernate_page = _HIBERNATING_PAGE

    def control(self, request: Request, action: str) -> Response:
        if self.itsm.serves_control(action):
            return self.itsm.control(request, action)
        return super().control(request, action)

    def serve(self, request: Request) -> Response:
        path = request.path
        if path == "/oauth_token.do":
            return self._token(request)
        route = re.fullmatch(r"/api/now/(?:(v[12])/)?table/([^/]+)(?:/([^/]+))?/?", path)
        if route is None:
            return json_response(error_body("Requested URI does not represent any resource", None), 400)
        if route.group(2) in self.itsm.tables:
            return self.itsm.dispatch(request, *route.groups())
        if request.method not in ("GET", "HEAD"):
            body = error_body(
                "Method not Supported",
                f"HTTP method {request.method} is not supported by this simulator; the integration is read-only",
            )
            return json_response(body, 405, headers={"Allow": "GET"})
        if not self._authenticated(request):
            self.stats.incr("auth_failures")
            return json_response(
                error_body("User Not Authenticated", "Required to provide Auth information"),
                401,
                headers={"WWW-Authenticate": 'Basic realm="Service-now"'},
            )
        version, table, sys_id = route.groups()
        if table not in TABLE_CLASSES:
            return json_response(error_body(f"Invalid table {table}", None), 400)
        self.stats.incr("table_requests")
        if sys_id is not None:
            return self._get_one(request, table, sys_id)
        return self._list(request, version, table)

    def fault_response(self, fault) -> Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.status == 429:
            headers["X-RateLimit-Limit"] = "1000"
            headers["X-RateLimit-Reset"] = str(int(time.time()) + (fault.retry_after or 0))
            headers["X-RateLimit-Rule"] = "d8e2a6f5c0a80164004f6b42d3c14d27"
            body = error_body("Rate limit exceeded", "Rate limit of 1000 requests per hour for Table API exceeded")
        elif fault.status >= 500:
            reason = {
                500: "Internal Server Error",
                502: "Bad Gateway",
                503: "Service Unavailable",
                504: "Gateway Timeout",
            }.get(fault.status, "Server Error")
            body = error_body(reason, "Simulated transient failure; retry with backoff")
        else:
            body = error_body(Response(status=fault.status).status.split(" ", 1)[-1], "Simulated failure")
        return json_response(body, fault.status, headers=headers)

    # ------------------------------------------------------------------ authentication

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user.encode(), self.username.encode()) and hmac.compare_digest(
                password.encode(), self.password.encode()
            )
        if scheme.lower() == "bearer":
            with self._auth_lock:
                token = self._tokens.get(credentials.strip())
                return token is not None and token.expires_at > self.clock()
        return False

    def _token(self, request: Request) -> Response:
        self.stats.incr("token_requests")
        if request.method != "POST":
            return json_response({"error": "invalid_request", "error_description": "POST required"}, 405)
        if request.mimetype != "application/x-www-form-urlencoded":
            # The vendor documents form-urlencoded only; a JSON body does not work.
            return json_response(
                {
                    "error": "invalid_request",
                    "error_description": "Content-Type must be application/x-www-form-urlencoded",
                },
                400,
            )
        form = request.form
        grant = form.get("grant_type", "")
        if not (
            hmac.compare_digest(form.get("client_id", "").encode(), self.client_id.encode())
            and hmac.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode())
        ):
            return self._token_denied("invalid_client", "Client authentication failed")
        if grant == "password":
            if not (
                hmac.compare_digest(form.get("username", "").encode(), self.username.encode())
                and hmac.compare_digest(form.get("password", "").encode(), self.password.encode())
            ):
                return self._token_denied("access_denied", "Invalid user credentials")
            return self._issue("user:" + self.username, with_refresh=True, grant=grant)
        if grant == "refresh_token":
            with self._auth_lock:
                principal = self._refresh_tokens.get(form.get("refresh_token", ""))
            if principal is None:
                return self._token_denied("invalid_grant", "Refresh token is invalid or expired")
            return self._issue(principal, with_refresh=False, grant=grant)
        if grant == "client_credentials":
            if not self.client_credentials_enabled:
                return self._token_denied(
                    "access_denied",
                    "Client credentials grant is not enabled "
                    "(glide.oauth.inbound.client.credential.grant_type.enabled)",
                )
            return self._issue("client:" + self.client_id, with_refresh=False, grant=grant)
        return json_response(
            {"error": "unsupported_grant_type", "error_description": f"Unsupported grant type {grant!r}"}, 400
        )

    def _token_denied(self, error: str, description: str) -> Response:
        self.stats.incr("token_denied")
        return json_response({"error": error, "error_description": description}, 401)

    def _issue(self, principal: str, with_refresh: bool, grant: str) -> Response:
        now = self.clock()
        with self._auth_lock:
            current = self._tokens.get(self._current.get(principal, ""))
            if current is not None and current.expires_at > now:
                # Documented behaviour: asking again while a token is valid returns that same token.
                self.stats.incr("token_reuses")
                token = current
            else:
                # The password grant starts a new refresh token; a refresh keeps the one it was given.
                refresh = current.refresh_token if current is not None else None
                if with_refresh:
                    refresh = "sn-rt-" + secrets.token_urlsafe(48)
                    self._refresh_tokens[refresh] = principal
                token = Token("sn-at-" + secrets.token_urlsafe(48), principal, refresh, now + self.token_lifetime)
                self._tokens[token.access_token] = token
                self._current[principal] = token.access_token
                self.stats.incr("token_grants")
                self.stats.incr(f"grant_{grant}")
        body = {
            "access_token": token.access_token,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": max(round(token.expires_at - now), 0),
        }
        if with_refresh and token.refresh_token:
            body["refresh_token"] = token.refresh_token
        return json_response(body)

    # ------------------------------------------------------------------ table API

    def _params(self, request: Request) -> tuple:
        """(fields, display mode, include reference links, instance URL) as the request asks."""
        args = request.args
        fields = [f.strip() for f in args.get("sysparm_fields", "").split(",") if f.strip() in FIELDS]
        mode = args.get("sysparm_display_value", "false").lower()
        return (
            fields or DEFAULT_FIELDS,
            mode if mode in ("true", "all") else "false",
            args.get("sysparm_exclude_reference_link", "false").lower() != "true",
            request.host_url.rstrip("/") + request.script_root,
        )

    def _body(self, request: Request, page, params, single: bool = False) -> Response:
        """The JSON response for the page's records ((index, version, overlay time) triples)."""
        broken = self.malformed_for(request, [i for i, _, _ in page])
        encoder = RecordEncoder(self.display_value, *params)
        shape = (tuple(params[0]), *params[1:])
        rows = []
        for i, version, updated in page:
            key = (i, version, updated, shape)
            row = self.kept_rows.get(key) if i not in broken else None
            if row is None:
                raw = self._generate(i, version, updated)
                if i in broken:
                    self._break(raw, broken[i])
                row = encoder.encode(raw)
                if i not in broken:
                    self.kept_rows.keep(key, row)
            rows.append(row)
        result = rows[0] if single else "[" + ",".join(rows) + "]"
        return Response('{"result":' + result + "}", content_type=JSON_UTF8)

    def _get_one(self, request: Request, table: str, sys_id: str) -> Response:
        i = self.index_for(sys_id)
        with self._lock:
            found = i is not None and self._is_live(i) and not self.is_hidden(i)
            page = [(i, self._versions.get(i, 0), self._updated.get(i))] if found else []
        classes = TABLE_CLASSES[table]
        if page and classes is not None and self._generate(*page[0])["sys_class_name"] not in classes:
            page = []
        if not page:
            body = error_body("No Record found", "Record doesn't exist or ACL restricts the record retrieval")
            return json_response(body, 404)
        return self._body(request, page, self._params(request), single=True)

    def _list(self, request: Request, version: str | None, table: str) -> Response:
        args = request.args
        params = self._params(request)
        limit = int_arg(args.get("sysparm_limit"), DEFAULT_LIMIT)
        if limit <= 0:
            limit = DEFAULT_LIMIT
        offset = max(int_arg(args.get("sysparm_offset"), 0), 0)
        query = parse_query(args.get("sysparm_query", ""), FIELDS)
        total, page = self._select(TABLE_CLASSES[table], query, offset, limit)
        # ACL filtering happens after the limit: hidden rows leave holes in the page, not in the count.
        visible = [row for row in page if not self.is_hidden(row[0])]
        headers = {}
        if args.get("sysparm_no_count", "false").lower() != "true":
            headers["X-Total-Count"] = str(total)
        if args.get("sysparm_suppress_pagination_header", "false").lower() != "true":
            headers["Link"] = self._link_header(request, offset, limit, total)
        if version is None and offset >= total:
            # The unversioned (v1) API answers "no rows" with 404; v2 answers 200 and an empty list.
            body = error_body(
                "No Record found", "Records matching query not found. Check query parameter or offered values"
            )
            return json_response(body, 404, headers=headers)
        response = self._body(request, visible, params)
        response.headers.update(headers)
        return response

    def _link_header(self, request: Request, offset: int, limit: int, total: int) -> str:
        base = request.base_url
        params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("sysparm_offset", "sysparm_limit")]

        def url(at: int) -> str:
            query = urlencode([*params, ("sysparm_limit", str(limit)), ("sysparm_offset", str(at))], quote_via=quote)
            return f"<{base}?{query}>"

        last = max((total - 1) // limit, 0) * limit
        # A real capture shows `prev` with a negative offset on the first page; clients must cope.
        links = [f'{url(0)};rel="first"', f'{url(offset - limit)};rel="prev"']
        if offset + limit < total:
            links.append(f'{url(offset + limit)};rel="next"')
        links.append(f'{url(last)};rel="last"')
        return ",".join(links)

    # ------------------------------------------------------------------ control endpoints (tests, demo)

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action in ("touch", "delete"):
            method = self.touch if action == "touch" else self.delete
            return json_response({"sys_ids": method(count=spec.get("count"), indices=spec.get("indices"))})
        if action == "add":
            return json_response({"sys_ids": self.add(int(spec.get("count", 1)))})
        if action == "hidden":
            self.set_hidden(every=spec.get("every"), indices=spec.get("indices", ()))
            return json_response(self.state()["hidden"])
        if action == "expire_tokens":
            self.expire_all_tokens(bool(spec.get("include_refresh_tokens", False)))
            return json_response({"expired": True})
        if action == "config":
            for key in (
                "username",
                "password",
                "client_id",
                "client_secret",
                "token_lifetime",
                "client_credentials_enabled",
            ):
                if key in spec:
                    setattr(self, key, spec[key])
            return json_response(
                {
                    "client_credentials_enabled": self.client_credentials_enabled,
                    "token_lifetime": self.token_lifetime,
                }
            )
        return None
