"""Pieces every simulator shares: fault injection, JSON responses and the prefix dispatcher.

Simulators are plain WSGI apps (werkzeug, no Django) so they can be served by a threaded test server in a
background thread, or by `manage.py simulate` for a demo, on real HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

JSON_UTF8 = "application/json;charset=UTF-8"

FAULT_KINDS = ("status", "slow", "malformed", "hibernate")


def json_response(body, status: int = 200, headers: dict | None = None, content_type: str = JSON_UTF8) -> Response:
    # ensure_ascii=False: vendors send UTF-8 as is ("Jürgen"), and clients must decode it as such.
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(data, status=status, headers=headers, content_type=content_type)


def read_json(request: Request) -> dict:
    """The JSON object of a control request; an empty body is an empty object."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


class KeptTexts:
    """Records rendered as JSON text, kept by a key that names their version, the oldest dropped beyond `limit`
    (0 keeps none): a second pass over the same data then costs a simulator almost nothing, so a benchmark
    measures the client, not the rendering."""

    def __init__(self, limit: int):
        self.limit = limit
        self._texts: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        return self._texts.get(key) if self.limit > 0 else None

    def keep(self, key: tuple, text: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            self._texts[key] = text
            while len(self._texts) > self.limit:
                del self._texts[next(iter(self._texts))]

    def clear(self) -> None:
        with self._lock:
            self._texts.clear()


@dataclass
class Fault:
    """One planned misbehaviour.

    kind:
      - "status": answer `status` (429, 500, 502, 503, 504...) instead of serving the request;
      - "slow": sleep `delay` seconds, then serve normally (a client timeout below `delay` sees a timeout);
      - "malformed": serve normally, but break the records with index in `indices` (see each simulator);
      - "hibernate": answer 200 with an HTML page, as a sleeping developer instance does.
    count: how many requests it applies to (None = until cleared). For "malformed" a request counts only
    when it actually carried one of the broken records.
    path: apply only to requests whose path contains this substring (None = every API request).
    """

    kind: str
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0
    count: int | None = 1
    path: str | None = None
    indices: tuple[int, ...] = ()
    malformation: str = "mixed"
    fired: int = 0

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "count": self.count,
            "path": self.path,
            "indices": list(self.indices),
            "malformation": self.malformation,
            "fired": self.fired,
        }


class FaultInjector:
    """A queue of faults; a simulator consults it once per API request (never for control requests)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        kind: str = "status",
        *,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        count: int | None = 1,
        path: str | None = None,
        indices: Iterable[int] = (),
        malformation: str = "mixed",
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        if status is None:
            status = 200 if kind in ("slow", "malformed", "hibernate") else 503
        if kind == "status" and status == 429 and retry_after is None:
            retry_after = 1  # a rate limit without Retry-After would be a different (rarer) scenario
        fault = Fault(
            kind=kind,
            status=int(status),
            retry_after=retry_after,
            delay=float(delay),
            count=count,
            path=path,
            indices=tuple(int(i) for i in indices),
            malformation=malformation,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_from_json(self, spec: dict) -> Fault:
        allowed = {"kind", "status", "retry_after", "delay", "count", "path", "indices", "malformation"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        spec = dict(spec)
        return self.add(spec.pop("kind", "status"), **spec)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def control(self, method: str, spec: dict):
        """The `_control/faults` endpoint every simulator offers: GET lists, POST adds one fault or
        {"faults": [...]}, DELETE clears."""
        if method == "DELETE":
            self.clear()
            return json_response({"faults": []})
        if method == "POST":
            specs = spec["faults"] if "faults" in spec else [spec]
            added = [self.add_from_json(item).as_dict() for item in specs]
            return json_response({"added": added, "faults": [f.as_dict() for f in self.list()]}, 201)
        return json_response({"faults": [f.as_dict() for f in self.list()]})

    def take(self, path: str) -> Fault | None:
        """The first request-level fault (status, slow, hibernate) that matches `path`, consumed once."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != "malformed" and (fault.path is None or fault.path in path):
                    self._consume(fault)
                    return fault
        return None

    def malformed(self, path: str) -> list[Fault]:
        """Active malformed-record faults for `path`; call `consume()` for those that changed a response."""
        with self._lock:
            return [f for f in self._faults if f.kind == "malformed" and (f.path is None or f.path in path)]

    def consume(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._consume(fault)

    def _consume(self, fault: Fault) -> None:
        fault.fired += 1
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)


class Stats:
    """Thread-safe counters, readable as a plain dict (`stats["token_requests"]`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def incr(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def get(self, key: str, default: int = 0) -> int:
        with self._lock:
            return self._counts.get(key, default)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def __repr__(self) -> str:
        return f"Stats({self.as_dict()!r})"


WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class PrefixDispatcher:
    """Mounts each simulator under a path prefix (`/servicenow`, `/vault`, ...).

    The prefix moves from PATH_INFO to SCRIPT_NAME, so an app sees its own paths (`/api/now/table/...`) and
    can still build absolute URLs (Link headers, reference links) that include the prefix.
    """

    def __init__(self, mounts: dict[str, WSGIApp]):
        self.mounts = {"/" + prefix.strip("/"): app for prefix, app in mounts.items()}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        for prefix, app in self.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return app(environ, start_response)
        if path == "/":
            body = {"simulators": sorted(self.mounts)}
            return json_response(body)(environ, start_response)
        body = {"error": f"no simulator mounted at {path!r}", "simulators": sorted(self.mounts)}
        return json_response(body, status=404)(environ, start_response)


class SimulatorApp:
    """The request prologue every simulator shares, as a WSGI app.

    `_control/...` requests go to `control(request, action)` and are counted apart from API requests; every
    API request is counted, then meets the fault injector, and what survives goes to `serve(request)`. A
    simulator answers an injected status in its vendor's shape (`fault_response`) and may spend a budget
    before faults apply (`handle`, as Freshservice's credits do).
    """

    faults: FaultInjector
    stats: Stats
    hibernate_page = "<html><body>Service unavailable</body></html>"

    def __call__(self, environ, start_response):
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_control/"):
            self.stats.incr("control_requests")
            return self.control(request, path[len("/_control/"):].strip("/"))
        self.stats.incr("requests")
        return self.handle(request)

    def handle(self, request: Request) -> Response:
        return self.injected_fault(request) or self.serve(request)

    def injected_fault(self, request: Request) -> Response | None:
        """The response of a request-level fault planned for this request, or None to serve it (after a
        "slow" fault's sleep)."""
        fault = self.faults.take(request.path)
        if fault is None:
            return None
        self.stats.incr("faults_fired")
        if fault.delay:
            time.sleep(fault.delay)
        if fault.kind == "status":
            return self.fault_response(fault)
        if fault.kind == "hibernate":
            return Response(self.hibernate_page, status=200, content_type="text/html;charset=UTF-8")
        return None

    def control(self, request: Request, action: str) -> Response:
        """The control endpoints every data simulator has (faults, state, reset); its own come from
        `control_action`, which answers None for an action it does not know."""
        try:
            spec = read_json(request) if request.method in ("POST", "PUT") else {}
            if action == "faults":
                return self.faults.control(request.method, spec)
            if request.method == "GET" and action == "state":
                return json_response(self.state())
            if request.method != "POST":
                return json_response({"error": f"{request.method} not allowed on {action}"}, 405)
            if action == "reset":
                self.reset()
                return json_response(self.state())
            answer = self.control_action(action, spec)
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            return json_response({"error": str(exc)}, 400)
        if answer is None:
            return json_response({"error": f"unknown control action {action!r}"}, 404)
        return answer

    def control_action(self, action: str, spec: dict) -> Response | None:
        return None

    def state(self) -> dict:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    # The defects a "malformed" fault gives records, in the order "mixed" cycles through them.
    malformations: tuple[str, ...] = ()

    def malformed_for(self, request: Request, indices) -> dict[int, str]:
        """Record index -> malformation, for the malformed faults that hit this response's records."""
        broken: dict[int, str] = {}
        wanted = set(indices)
        for fault in self.faults.malformed(request.path):
            hit = False
            for position, i in enumerate(fault.indices or (0,)):
                if i in wanted:
                    # "mixed" cycles through the defects in the order the indices were given.
                    broken[i] = (self.malformations[position % len(self.malformations)]
                                 if fault.malformation == "mixed" else fault.malformation)
                    hit = True
            if hit:
                self.faults.consume(fault)
                self.stats.incr("faults_fired")
        return broken

    def serve(self, request: Request) -> Response:
        raise NotImplementedError

    def fault_response(self, fault: Fault) -> Response:
        return json_response({"error": f"simulated failure ({fault.status})"}, fault.status,
                             headers={"Retry-After": str(fault.retry_after)} if fault.retry_after is not None
                             else None)
