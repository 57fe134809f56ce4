"""Datadog intake simulator: the API key check, events (v1) and metric series (v2) (see
shared/api-notes/datadog.md).

What it imitates, under one site's API host (mount it at `/datadog`, point the connector's base URL there):
- `DD-API-KEY` on every request; a missing or unknown key (a key of another site too) answers 403
  `{"errors": ["Forbidden"]}`. An application key is not needed and is counted when sent
  (`state()["application_key_seen"]`), so a test can show the connector never sends one.
- `GET /api/v1/validate`: 200 `{"valid": true}`.
- `POST /api/v1/events`: one event per request; `title` and `text` required, `alert_type` and `priority`
  from their enums, `date_happened` an integer of epoch seconds that is recent (milliseconds are refused),
  `aggregation_key` at most 100 characters, `tags` a list of strings; `text` beyond 4000 characters is cut
  silently, as the API does. 202 `{"status": "ok", "event": {"id": <int64>, "id_str": ...}}` with ids above
  2**53, so a client that parses them as floats loses digits.
- `POST /api/v2/series`: `{"series": [...]}` with `type` an integer 0-3 (a string such as "gauge" is the v1
  spelling: 400), `points` of `{"timestamp": int seconds, "value": number}`, `resources`, `tags`; a point more
  than 10 minutes ahead or 1 hour old is dropped silently. `Content-Encoding` gzip or deflate (zlib) is
  decompressed; a body over 512,000 bytes on the wire or 5,242,880 decompressed answers 413. 202 `{"errors": []}`.
- Faults (`/_control/faults`): an injected 429 carries Datadog's rate-limit headers (`X-RateLimit-Limit`,
  `-Period`, `-Remaining`, `-Reset`, `-Name`), the wait in `X-RateLimit-Reset` and no Retry-After (Datadog
  does not document one); 413, 5xx answer `{"errors": [...]}`.
- What it accepted: `GET /_control/received` (intake.py: the Syncplane event ids, taken from the
  aggregation key, in arrival order) and `GET /_control/series` (the accepted series, last 1000).
"""

from __future__ import annotations

import gzip
import itertools
import re
import threading
import time
import zlib
from collections import deque

import orjson
from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .intake import ReceivedEvents

DEFAULT_API_KEY = "demo-datadog-api-key"
DEFAULT_SITE = "datadoghq.com"
MAX_WIRE_BYTES = 512_000
MAX_DECOMPRESSED_BYTES = 5_242_880
EVENT_TEXT_MAX = 4000
AGGREGATION_KEY_MAX = 100
EVENT_MAX_AGE = 18 * 3600  # the shorter of the documented windows
ALERT_TYPES = {"error", "warning", "info", "success", "user_update", "recommendation", "snapshot"}
PRIORITIES = {"normal", "low"}
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,199}$")
FIRST_EVENT_ID = 2**62 + 7  # far above 2**53: a float cannot hold these ids


class DatadogSimulator(SimulatorApp):
    """A WSGI app; mount it under `/datadog`."""

    def __init__(self, *, api_keys: tuple[str, ...] = (DEFAULT_API_KEY,), site: str = DEFAULT_SITE):
        self.api_keys = set(api_keys)
        self.site = site
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.faults.clear()
        self.stats.reset()
        self.received = ReceivedEvents()
        self.series: deque = deque(maxlen=1000)
        with self._lock:
            self._ids = itertools.count(FIRST_EVENT_ID)
            self.points_accepted = 0
            self.points_dropped = 0
            self.application_key_seen = 0

    def state(self) -> dict:
        return {
            "site": self.site,
            "events": len(self.received),
            "duplicates": self.received.duplicates,
            "points_accepted": self.points_accepted,
            "points_dropped": self.points_dropped,
            "application_key_seen": self.application_key_seen,
            "stats": self.stats.as_dict(),
        }

    def control(self, request: Request, action: str) -> Response:
        if request.method == "GET" and action == "received":
            return json_response(self.received.summary(request.args.get("limit", 100, type=int)))
        if request.method == "GET" and action == "series":
            return json_response({"series": list(self.series), "points_dropped": self.points_dropped})
        return super().control(request, action)

    # --- the API --------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        # Authentication comes before anything else, faults included: a bad key is a 403 whatever the load.
        if request.headers.get("DD-APPLICATION-KEY"):
            with self._lock:
                self.application_key_seen += 1
        if request.headers.get("DD-API-KEY") not in self.api_keys:
            self.stats.incr("forbidden")
            return _errors(403, "Forbidden")
        return super().handle(request)

    def serve(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/api/v1/validate"):
            return json_response({"valid": True})
        if route == ("POST", "/api/v1/events"):
            return self._event(request)
        if route == ("POST", "/api/v2/series"):
            return self._series(request)
        return _errors(404, "Not found")

    def fault_response(self, fault) -> Response:
        if fault.status == 429:
            reset = fault.retry_after if fault.retry_after is not None else 1
            return _errors(429, "Too many requests", headers={
                "X-RateLimit-Limit": "1000", "X-RateLimit-Period": "60", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset), "X-RateLimit-Name": "events_submission",
            })
        if fault.status == 413:
            return _errors(413, "Payload too large")
        return _errors(fault.status, f"simulated failure ({fault.status})")

    def _body(self, request: Request) -> tuple[object | None, Response | None]:
        raw = request.get_data(cache=False)
        if len(raw) > MAX_WIRE_BYTES:
            return None, _errors(413, "Payload too large")
        encoding = request.headers.get("Content-Encoding", "").lower()
        try:
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding == "deflate":
                raw = zlib.decompress(raw)
            elif encoding:
                return None, _errors(415, f"Unsupported Content-Encoding {encoding}")
        except (OSError, zlib.error, EOFError):
            return None, _errors(400, "Payload could not be decompressed")
        if len(raw) > MAX_DECOMPRESSED_BYTES:
            return None, _errors(413, "Payload too large")
        try:
            return orjson.loads(raw), None
        except orjson.JSONDecodeError:
            return None, _errors(400, "Payload is not in the expected format: invalid JSON")

    def _event(self, request: Request) -> Response:
        body, error = self._body(request)
        if error:
            return error
        problems = _event_problems(body)
        if problems:
            return _errors(400, *problems)
        with self._lock:
            event_id = next(self._ids)
        text = body["text"][:EVENT_TEXT_MAX]
        stored = {**body, "text": text, "id": event_id}
        self.received.add(str(body.get("aggregation_key") or event_id), stored)
        return json_response({"status": "ok", "event": {
            "id": event_id, "id_str": str(event_id), "title": body["title"], "text": text,
            "date_happened": body.get("date_happened") or int(time.time()), "tags": body.get("tags", []),
            "priority": body.get("priority"), "url": f"https://app.{self.site}/event/event?id={event_id}",
        }}, 202)

    def _series(self, request: Request) -> Response:
        body, error = self._body(request)
        if error:
            return error
        if not isinstance(body, dict) or not isinstance(body.get("series"), list):
            return _errors(400, "Payload is not in the expected format: series is required")
        problems = [p for i, s in enumerate(body["series"]) for p in _series_problems(i, s)]
        if problems:
            return _errors(400, *problems[:10])
        now = time.time()
        accepted = dropped = 0
        for series in body["series"]:
            kept = [p for p in series["points"] if now - 3600 <= p["timestamp"] <= now + 600]
            dropped += len(series["points"]) - len(kept)
            accepted += len(kept)
            if kept:
                self.series.append({**series, "points": kept})
        with self._lock:
            self.points_accepted += accepted
            self.points_dropped += dropped
        return json_response({"errors": []}, 202)


def _errors(status: int, *messages: str, headers: dict | None = None) -> Response:
    return json_response({"errors": list(messages)}, status, headers=headers)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _event_problems(body) -> list[str]:
    if not isinstance(body, dict):
        return ["Payload is not in the expected format: an event object is required"]
    problems = [f"{name} is required" for name in ("title", "text")
                if not isinstance(body.get(name), str) or not body[name]]
    if body.get("alert_type") is not None and body["alert_type"] not in ALERT_TYPES:
        problems.append(f"alert_type {body['alert_type']!r} is not one of {sorted(ALERT_TYPES)}")
    if body.get("priority") is not None and body["priority"] not in PRIORITIES:
        problems.append(f"priority {body['priority']!r} is not one of {sorted(PRIORITIES)}")
    key = body.get("aggregation_key")
    if key is not None and (not isinstance(key, str) or len(key) > AGGREGATION_KEY_MAX):
        problems.append("aggregation_key must be a string of at most 100 characters")
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        problems.append("tags must be a list of strings")
    when = body.get("date_happened")
    if when is not None:
        now = time.time()
        if not _is_int(when):
            problems.append("date_happened must be an integer (epoch seconds)")
        elif not now - EVENT_MAX_AGE <= when <= now + 600:
            problems.append("date_happened is out of range: epoch seconds within the last 18 hours")
    return problems


def _series_problems(index: int, series) -> list[str]:
    where = f"series[{index}]"
    if not isinstance(series, dict):
        return [f"{where} must be an object"]
    problems = []
    if not isinstance(series.get("metric"), str) or not METRIC_NAME.match(series["metric"]):
        problems.append(f"{where}.metric must start with a letter and hold letters, digits, _ and . only")
    kind = series.get("type", 0)
    if not _is_int(kind) or not 0 <= kind <= 3:
        problems.append(f"{where}.type must be an integer 0-3 (0 unspecified, 1 count, 2 rate, 3 gauge)")
    points = series.get("points")
    if not isinstance(points, list) or not points:
        problems.append(f"{where}.points is required")
    else:
        for point in points:
            if not (isinstance(point, dict) and _is_int(point.get("timestamp"))
                    and isinstance(point.get("value"), int | float) and not isinstance(point["value"], bool)):
                problems.append(f"{where}.points: each point is {{timestamp: int seconds, value: number}}")
                break
    if series.get("interval") is not None and not _is_int(series["interval"]):
        problems.append(f"{where}.interval must be an integer of seconds")
    tags = series.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(f"{where}.tags must be a list of strings")
    return problems
