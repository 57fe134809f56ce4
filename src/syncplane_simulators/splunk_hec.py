"""Splunk HTTP Event Collector simulator (see shared/api-notes/splunk-hec.md).

What it imitates (mount it at `/splunk`: the connector's base URL is `<simulator>/splunk`, as `https://host:8088`):
- `Authorization: Splunk <token>`: no header is code 2 (401), another scheme (Bearer, Basic) code 3 (401), an
  unknown token code 4 (403), a disabled one code 1 (403). A token has an index allow-list and a default index,
  and may have indexer acknowledgement on (`useACK`).
- `POST /services/collector/event` (also `/event/1.0` and the bare `/services/collector`): event objects one
  after another in the body (newlines between them or not), NOT a JSON array. Each needs a non-empty `event`
  (code 12 missing, 13 blank), `time` a number of epoch seconds, `fields` a flat object of strings or lists of
  strings (code 15), an `index` in the token's allow-list (code 7). An empty body is code 5; anything that is
  not an object is code 6 with `invalid-event-number`. A request is indexed whole or not at all.
  200 `{"text": "Success", "code": 0}`, plus `"ackId"` when the token has acknowledgement on.
- Indexer acknowledgement: such a token needs `X-Splunk-Request-Channel` (or `?channel=`) on every event
  request (code 10 missing, 11 not a GUID); `POST /services/collector/ack?channel=<GUID>` with `{"acks": [..]}`
  answers `{"acks": {"0": true}}` once an id is indexed (after `ack_after_polls` queries, set with
  `/_control/ack`), then forgets it; on a token without acknowledgement it is code 14.
- `GET /services/collector/health`: 200 code 17, no token needed.
- Faults (`/_control/faults`) answer in HEC's shape: 503 code 9 "Server is busy" (code 18 on the health path),
  500 code 8, 429 from a load balancer in front, with Retry-After.
- What it indexed: `GET /_control/received` (intake.py; ids from the event's `fields.event_id`, else the
  event's `id`), with index, sourcetype, source and host of each event. `POST /_control/tokens` adds or
  changes a token (`{"token", "indexes", "default_index", "ack", "disabled"}`).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass

import orjson
from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .intake import ReceivedEvents

DEFAULT_TOKEN = "5a1e3c07-2b9d-4f6e-8c41-0d7b9e2f6a13"
ACK_TOKEN = "c2f4e6a8-1b3d-4c5e-9f70-a1b2c3d4e5f6"  # the same inputs, indexer acknowledgement on
DEFAULT_INDEXES = ("main", "itgov")
EVENT_PATHS = ("/services/collector/event", "/services/collector/event/1.0", "/services/collector")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

MESSAGES = {
    0: (200, "Success"), 1: (403, "Token disabled"), 2: (401, "Token is required"),
    3: (401, "Invalid authorization"), 4: (403, "Invalid token"), 5: (400, "No data"),
    6: (400, "Invalid data format"), 7: (400, "Incorrect index"), 8: (500, "Internal server error"),
    9: (503, "Server is busy"), 10: (400, "Data channel is missing"), 11: (400, "Invalid data channel"),
    12: (400, "Event field is required"), 13: (400, "Event field cannot be blank"), 14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"), 17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
}


@dataclass
class Token:
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    default_index: str = "main"
    ack: bool = False
    disabled: bool = False


def hec(code: int, headers: dict | None = None, **extra) -> Response:
    status, text = MESSAGES[code]
    return json_response({"text": text, "code": code, **extra}, status, headers=headers)


class HecError(Exception):
    def __init__(self, code: int, **extra):
        super().__init__(code)
        self.code = code
        self.extra = extra


class SplunkHecSimulator(SimulatorApp):
    """A WSGI app; mount it under `/splunk`."""

    def __init__(self) -> None:
        self.faults = FaultInjector()
        self.stats = Stats()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.faults.clear()
        self.stats.reset()
        self.received = ReceivedEvents()
        with self._lock:
            self.tokens = {DEFAULT_TOKEN: Token(), ACK_TOKEN: Token(ack=True)}
            self.ack_after_polls = 0
            self._next_ack: dict[str, int] = {}
            self._pending: dict[str, dict[int, int]] = {}  # channel -> ackId -> queries still answered false

    def state(self) -> dict:
        with self._lock:
            pending = sum(len(acks) for acks in self._pending.values())
        return {"events": len(self.received), "duplicates": self.received.duplicates, "pending_acks": pending,
                "stats": self.stats.as_dict()}

    def control(self, request: Request, action: str) -> Response:
        if request.method == "GET" and action == "received":
            return json_response(self.received.summary(request.args.get("limit", 100, type=int)))
        return super().control(request, action)

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action == "tokens":
            token = Token(indexes=tuple(spec.get("indexes", DEFAULT_INDEXES)),
                          default_index=spec.get("default_index", "main"), ack=bool(spec.get("ack", False)),
                          disabled=bool(spec.get("disabled", False)))
            with self._lock:
                self.tokens[str(spec["token"])] = token
            return json_response({"token": spec["token"], "ack": token.ack, "disabled": token.disabled})
        if action == "ack":
            self.ack_after_polls = int(spec.get("after_polls", 0))
            return json_response({"ack_after_polls": self.ack_after_polls})
        return None

    # --- the API --------------------------------------------------------------------------------------------

    def fault_response(self, fault) -> Response:
        if fault.status == 503:
            return hec(18 if fault.path and "health" in fault.path else 9)
        if fault.status == 500:
            return hec(8)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return json_response({"text": f"simulated failure ({fault.status})", "code": 8}, fault.status,
                             headers=headers)

    def serve(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if request.method == "GET" and path in ("/services/collector/health", "/services/collector/health/1.0"):
            return hec(17)
        if request.method != "POST" or path not in (*EVENT_PATHS, "/services/collector/ack"):
            return json_response({"text": "The requested URL was not found on this server.", "code": 404}, 404)
        try:
            token = self._token(request)
            if path == "/services/collector/ack":
                return self._ack(request, token)
            return self._events(request, token)
        except HecError as exc:
            return hec(exc.code, **exc.extra)

    def _token(self, request: Request) -> Token:
        header = request.headers.get("Authorization", "")
        if not header:
            raise HecError(2)
        scheme, _, value = header.partition(" ")
        if scheme != "Splunk" or not value.strip():
            raise HecError(3)
        token = self.tokens.get(value.strip())
        if token is None:
            raise HecError(4)
        if token.disabled:
            raise HecError(1)
        return token

    def _channel(self, request: Request, token: Token) -> str | None:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.args.get("channel")
        if channel is None:
            if token.ack:
                raise HecError(10)
            return None
        if not GUID.match(channel):
            raise HecError(11)
        return channel

    def _events(self, request: Request, token: Token) -> Response:
        channel = self._channel(request, token)
        raw = request.get_data(cache=False)
        if not raw.strip():
            raise HecError(5)
        events = [self._checked(number, event, token) for number, event in enumerate(parse_concatenated(raw))]
        for event in events:
            fields = event.get("fields") or {}
            body = event["event"]
            event_id = fields.get("event_id") or (body.get("id") if isinstance(body, dict) else None)
            self.received.add(str(event_id or ""), event)
        self.stats.incr("events", len(events))
        if not token.ack:
            return hec(0)
        with self._lock:
            ack_id = self._next_ack.get(channel, 0)
            self._next_ack[channel] = ack_id + 1
            self._pending.setdefault(channel, {})[ack_id] = self.ack_after_polls
        return hec(0, ackId=ack_id)

    @staticmethod
    def _checked(number: int, event, token: Token) -> dict:
        if not isinstance(event, dict):
            raise HecError(6, **{"invalid-event-number": number})
        if "event" not in event:
            raise HecError(12, **{"invalid-event-number": number})
        if event["event"] in ("", {}, [], None):
            raise HecError(13, **{"invalid-event-number": number})
        when = event.get("time")
        if when is not None and (isinstance(when, bool) or not isinstance(when, int | float)):
            raise HecError(6, **{"invalid-event-number": number})
        fields = event.get("fields")
        if fields is not None and not (isinstance(fields, dict) and all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
            for v in fields.values()
        )):
            raise HecError(15, **{"invalid-event-number": number})
        index = event.get("index") or token.default_index
        if index not in token.indexes:
            raise HecError(7, **{"invalid-event-number": number})
        return {**event, "index": index}

    def _ack(self, request: Request, token: Token) -> Response:
        if not token.ack:
            raise HecError(14)
        channel = self._channel(request, token)
        try:
            wanted = orjson.loads(request.get_data(cache=False))["acks"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise HecError(6) from None
        answer = {}
        with self._lock:
            pending = self._pending.get(channel, {})
            for ack_id in wanted:
                polls_left = pending.get(ack_id)
                if polls_left is None or polls_left > 0:
                    if polls_left is not None:
                        pending[ack_id] = polls_left - 1
                    answer[str(ack_id)] = False
                else:
                    del pending[ack_id]  # once true, an ack id is forgotten
                    answer[str(ack_id)] = True
        return json_response({"acks": answer})


def parse_concatenated(raw: bytes) -> list:
    """Event objects one after another: one per line is the fast path, anything else (several on a line, one
    spread over lines) is read object by object as HEC does."""
    try:
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    except orjson.JSONDecodeError:
        pass
    text, position, decoder, values = raw.decode("utf-8", "replace"), 0, json.JSONDecoder(), []
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return values
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            raise HecError(6, **{"invalid-event-number": len(values)}) from None
        values.append(value)
