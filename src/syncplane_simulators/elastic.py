"""Elasticsearch simulator: cluster info and the bulk API into data streams (see shared/api-notes/elastic.md).

What it imitates (mount it at `/elastic`; the connector's base URL is `<simulator>/elastic`, as `https://host:9200`):
- Auth: `Authorization: ApiKey base64(id:api_key)` or Basic. Anything else (base64 of the key alone, Bearer,
  no header) is 401 with `WWW-Authenticate` and a `security_exception` body. A key carries privileges: the
  index patterns it may write (`create_doc`) and whether it may read cluster info (`monitor`). The default key
  writes `logs-syncplane*` / `logs-itgov*` only and has no `monitor`, so `GET /` answers it 403 as a real
  write-only key gets; user `elastic` (password `changeme`) may do everything.
- Every answer carries `X-Elastic-Product: Elasticsearch` (what clients check since 7.14).
- `GET /`: cluster info, version 8.15.3.
- `POST /_bulk` and `POST /<target>/_bulk`: NDJSON action/source line pairs (`create`, `index`, `update` with
  `{"doc": ...}`, `delete` without a source line) that must end with a newline (400
  `illegal_argument_exception` otherwise); `application/x-ndjson` or `application/json`, or the
  compatibility media types on both Content-Type and Accept (one alone, or a version above 8, is 400). A body
  longer than `max_content_length` answers 413. The answer is 200 with `errors` and one item per action in
  request order, each with its own status: 201 created; 409 `version_conflict_engine_exception` for a
  `create` whose `_id` exists (the dedup that makes delivery exactly once); 400 for an `index` action on a
  data stream, a document without `@timestamp` in a data stream or a bad index name; 403 for an index the key
  may not write; 404 `index_not_found_exception` when a classic index is missing and auto-create is off.
  Names `logs-*-*` and `metrics-*-*` are data streams (the built-in templates); item `_index` is the backing
  index (`.ds-<stream>-<date>-000001`), not the name sent.
- Faults: whole-request faults through `/_control/faults` (429 `es_rejected_execution_exception`, 503...);
  item faults by `_id` through `/_control/item-faults` (`{"id", "status", "count"}`: 429, 500, 503 or 400
  `document_parsing_exception`); `/_control/config` sets `max_content_length` and `auto_create_index`;
  `/_control/api-keys` adds a key (`{"id", "api_key", "indices", "monitor"}`) and answers its `encoded` form.
- What it indexed: `GET /_control/received` (intake.py: each created document's `_id`, in order) and
  `GET /_control/documents?index=<name>` (that stream's or index's documents).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import threading
import time
import uuid
from dataclasses import dataclass

import orjson
from werkzeug.wrappers import Request, Response

from .base import FaultInjector, SimulatorApp, Stats, json_response
from .intake import ReceivedEvents

DEFAULT_API_KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
DEFAULT_API_KEY = "ui2lp2axTNmsyakw9tvNnw"
DEFAULT_ENCODED_KEY = base64.b64encode(f"{DEFAULT_API_KEY_ID}:{DEFAULT_API_KEY}".encode()).decode()
DEFAULT_USER, DEFAULT_PASSWORD = "elastic", "changeme"
VERSION = "8.15.3"
MAX_CONTENT_LENGTH = 100 * 1024 * 1024  # http.max_content_length, 100mb
DATA_STREAM_PATTERNS = ("logs-*-*", "metrics-*-*")
ACTIONS = ("create", "index", "update", "delete")
BAD_NAME_CHARS = set('\\/*?"<>|, #:')
PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}
ITEM_ERRORS = {
    429: ("es_rejected_execution_exception", "rejected execution of coordinating operation"),
    500: ("exception", "simulated internal failure"),
    503: ("unavailable_shards_exception", "primary shard is not active"),
    400: ("document_parsing_exception", "[1:42] failed to parse field [syncplane.data] of type [long]"),
}


@dataclass
class ApiKey:
    key: str
    indices: tuple[str, ...]
    monitor: bool


@dataclass
class Principal:
    name: str
    indices: tuple[str, ...]
    monitor: bool


def es_error(status: int, kind: str, reason: str, headers: dict | None = None, **extra) -> Response:
    cause = {"type": kind, "reason": reason, **extra}
    return json_response({"error": {"root_cause": [cause], **cause}, "status": status}, status,
                         headers={**PRODUCT_HEADER, **(headers or {})})


def bad_index_name(name: str) -> str | None:
    """Why `name` cannot be an index or data stream name, or None."""
    if not name or name in (".", ".."):
        return "must not be empty, '.' or '..'"
    if name != name.lower():
        return "must be lowercase"
    if name[0] in "-_+":
        return "must not start with '_', '-', or '+'"
    if BAD_NAME_CHARS & set(name):
        return 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]'
    if len(name.encode()) > 255:
        return "index name is too long"
    return None


class ElasticSimulator(SimulatorApp):
    """A WSGI app; mount it under `/elastic`."""

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
            self.api_keys = {DEFAULT_API_KEY_ID: ApiKey(DEFAULT_API_KEY, ("logs-syncplane*", "logs-itgov*"), False)}
            self.users = {DEFAULT_USER: DEFAULT_PASSWORD}
            self.indices: dict[str, dict[str, dict]] = {}  # data stream or index -> _id -> document
            self.item_faults: list[dict] = []
            self.max_content_length = MAX_CONTENT_LENGTH
            self.auto_create_index = True
            self.conflicts = 0

    def state(self) -> dict:
        with self._lock:
            indices = {name: len(docs) for name, docs in self.indices.items()}
        return {"indices": indices, "conflicts": self.conflicts, "duplicates": self.received.duplicates,
                "stats": self.stats.as_dict()}

    def documents(self, name: str) -> dict[str, dict]:
        with self._lock:
            return dict(self.indices.get(name, {}))

    def control(self, request: Request, action: str) -> Response:
        if request.method == "GET" and action == "received":
            return json_response(self.received.summary(request.args.get("limit", 100, type=int)))
        if request.method == "GET" and action == "documents":
            return json_response({"documents": self.documents(request.args.get("index", ""))})
        if request.method == "DELETE" and action == "item-faults":
            with self._lock:
                self.item_faults.clear()
            return json_response({"item_faults": []})
        return super().control(request, action)

    def control_action(self, action: str, spec: dict) -> Response | None:
        if action == "item-faults":
            added = []
            for item in spec.get("faults", [spec]):
                status = int(item.get("status", 429))
                if status not in ITEM_ERRORS:
                    raise ValueError(f"item fault status must be one of {sorted(ITEM_ERRORS)}")
                added.append({"id": str(item["id"]), "status": status, "count": int(item.get("count", 1))})
            with self._lock:
                self.item_faults.extend(added)
                return json_response({"item_faults": list(self.item_faults)}, 201)
        if action == "config":
            with self._lock:
                self.max_content_length = int(spec.get("max_content_length", self.max_content_length))
                self.auto_create_index = bool(spec.get("auto_create_index", self.auto_create_index))
                return json_response({"max_content_length": self.max_content_length,
                                      "auto_create_index": self.auto_create_index})
        if action == "api-keys":
            key_id, key = str(spec.get("id") or uuid.uuid4().hex[:20]), str(spec.get("api_key") or uuid.uuid4().hex)
            with self._lock:
                self.api_keys[key_id] = ApiKey(key, tuple(spec.get("indices", ["*"])), bool(spec.get("monitor")))
            encoded = base64.b64encode(f"{key_id}:{key}".encode()).decode()
            return json_response({"id": key_id, "api_key": key, "encoded": encoded}, 201)
        return None

    # --- the API --------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        principal = self._authenticate(request.headers.get("Authorization", ""))
        if principal is None:
            self.stats.incr("unauthorized")
            challenge = 'ApiKey, Basic realm="security", charset="UTF-8"'
            return es_error(401, "security_exception", "unable to authenticate with provided credentials and "
                            "anonymous access is not allowed for this request", {"WWW-Authenticate": challenge})
        request.environ["sim.principal"] = principal
        return super().handle(request)

    def _authenticate(self, header: str) -> Principal | None:
        scheme, _, value = header.partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, secret = decoded.partition(":")
        if not sep:
            return None
        if scheme == "ApiKey":
            key = self.api_keys.get(name)
            if key is not None and key.key == secret:
                return Principal(f"API key id [{name}]", key.indices, key.monitor)
        elif scheme == "Basic" and self.users.get(name) == secret:
            return Principal(f"user [{name}]", ("*",), True)
        return None

    def fault_response(self, fault) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        if fault.status == 429:
            return es_error(429, "es_rejected_execution_exception", "rejected execution of coordinating "
                            "operation [coordinating_and_primary_bytes=0]", headers)
        if fault.status == 413:
            return Response(b"", status=413, headers=PRODUCT_HEADER)
        return es_error(fault.status, "unavailable_shards_exception" if fault.status == 503 else "exception",
                        f"simulated failure ({fault.status})", headers)

    def serve(self, request: Request) -> Response:
        principal: Principal = request.environ["sim.principal"]
        path = request.path.rstrip("/") or "/"
        if request.method in ("GET", "HEAD") and path == "/":
            if not principal.monitor:
                return es_error(403, "security_exception",
                                f"action [cluster:monitor/main] is unauthorized for {principal.name}")
            return json_response(self._info(), headers=PRODUCT_HEADER)
        parts = path.strip("/").split("/")
        if request.method in ("POST", "PUT") and parts[-1] == "_bulk" and len(parts) <= 2:
            return self._bulk(request, principal, parts[0] if len(parts) == 2 else None)
        return es_error(400 if request.method in ("POST", "PUT") else 405, "illegal_argument_exception",
                        f"unsupported request [{request.method} {path}] in this simulator")

    @staticmethod
    def _info() -> dict:
        return {"name": "es-sim-01", "cluster_name": "syncplane-simulator", "cluster_uuid": "Jt3nQk0sR8mYw5x1bVv2cA",
                "version": {"number": VERSION, "build_flavor": "default", "lucene_version": "9.11.1",
                            "minimum_wire_compatibility_version": "7.17.0",
                            "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "You Know, for Search"}

    def _media_type_problem(self, request: Request) -> str | None:
        content_type = request.headers.get("Content-Type", "").lower()
        accept = request.headers.get("Accept", "").lower()
        if "compatible-with" in content_type or "compatible-with" in accept:
            if "compatible-with" not in content_type or "compatible-with" not in accept:
                return "A compatible version is required on both Content-Type and Accept headers"
            version = content_type.rsplit("compatible-with=", 1)[1].strip(' ;"')
            if not version.isdigit() or not 7 <= int(version) <= 8:
                return f"Content-Type version must be either version 8 or 7, but found {version}"
            return None
        if content_type.split(";")[0].strip() not in ("application/x-ndjson", "application/json"):
            return f"Content-Type header [{content_type}] is not supported"
        return None

    def _bulk(self, request: Request, principal: Principal, target: str | None) -> Response:
        if request.content_length and request.content_length > self.max_content_length:
            return Response(b"", status=413, headers=PRODUCT_HEADER)
        problem = self._media_type_problem(request)
        if problem:
            return es_error(400, "media_type_header_exception", problem)
        if target is not None and bad_index_name(target):
            return es_error(400, "invalid_index_name_exception",
                            f"Invalid index name [{target}], {bad_index_name(target)}", index=target)
        raw = request.get_data(cache=False)
        if len(raw) > self.max_content_length:
            return Response(b"", status=413, headers=PRODUCT_HEADER)
        if not raw.endswith(b"\n"):
            return es_error(400, "illegal_argument_exception",
                            "The bulk request must be terminated by a newline [\\n]")
        try:
            operations = list(_operations(raw.split(b"\n")[:-1], target))
        except ValueError as exc:
            return es_error(400, "illegal_argument_exception", str(exc))
        started = time.monotonic()
        items = [self._item(principal, *operation) for operation in operations]
        self.stats.incr("bulk_items", len(items))
        errors = any(next(iter(item.values()))["status"] >= 300 for item in items)
        took = int((time.monotonic() - started) * 1000)
        return json_response({"took": took, "errors": errors, "items": items}, headers=PRODUCT_HEADER)

    def _item(self, principal: Principal, action: str, index: str, doc_id: str | None, source: dict | None) -> dict:
        def answer(status: int, **extra) -> dict:
            return {action: {"_index": backing, "_id": doc_id, "status": status, **extra}}

        def failed(status: int, kind: str, reason: str) -> dict:
            return answer(status, error={"type": kind, "reason": reason, "index": index})

        backing = index
        problem = bad_index_name(index)
        if problem:
            return failed(400, "invalid_index_name_exception", f"Invalid index name [{index}], {problem}")
        if not any(fnmatch.fnmatchcase(index, pattern) for pattern in principal.indices):
            return failed(403, "security_exception", f"action [indices:data/write/bulk[s]] is unauthorized for "
                          f"{principal.name} on indices [{index}]")
        data_stream = any(fnmatch.fnmatchcase(index, pattern) for pattern in DATA_STREAM_PATTERNS)
        if data_stream:
            backing = f".ds-{index}-{time.strftime('%Y.%m.%d', time.gmtime())}-000001"
            if action not in ("create", "delete"):
                return failed(400, "illegal_argument_exception", f"only write ops with an op_type of create are "
                              f"allowed in data streams, got [{action}]")
            if action == "create" and "@timestamp" not in source:
                return failed(400, "document_parsing_exception",
                              "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing")
        fault = self._item_fault(doc_id)
        if fault:
            self.stats.incr("item_faults_fired")
            return failed(fault, *ITEM_ERRORS[fault])
        with self._lock:
            documents = self.indices.get(index)
            if documents is None:
                if not (data_stream or self.auto_create_index) or action in ("update", "delete"):
                    return failed(404, "index_not_found_exception", f"no such index [{index}]")
                documents = self.indices[index] = {}
            doc_id = doc_id or uuid.uuid4().hex[:20]
            existing = documents.get(doc_id)
            if action == "create" and existing is not None:
                self.conflicts += 1
                return failed(409, "version_conflict_engine_exception",
                              f"[{doc_id}]: version conflict, document already exists (current version [1])")
            if action == "delete":
                if documents.pop(doc_id, None) is None:
                    return answer(404, result="not_found")
                return answer(200, result="deleted")
            if action == "update":
                if existing is None:
                    return failed(404, "document_missing_exception", f"[{doc_id}]: document missing")
                documents[doc_id] = {**existing, **source.get("doc", {})}
                return answer(200, result="updated", _version=2)
            documents[doc_id] = source
        self.received.add(doc_id, source)
        result = "updated" if existing is not None else "created"
        return answer(200 if existing is not None else 201, result=result, _version=1,
                      _shards={"total": 2, "successful": 1, "failed": 0})

    def _item_fault(self, doc_id: str | None) -> int | None:
        with self._lock:
            for fault in self.item_faults:
                if fault["id"] == doc_id:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.item_faults.remove(fault)
                    return fault["status"]
        return None


def _operations(lines: list[bytes], target: str | None):
    """(action, index, _id, source) per action line; ValueError for a body the bulk API refuses whole."""
    position = 0
    while position < len(lines):
        if not lines[position].strip():
            position += 1
            continue
        try:
            header = orjson.loads(lines[position])
        except orjson.JSONDecodeError:
            raise ValueError(f"Malformed action/metadata line [{position + 1}], expected START_OBJECT") from None
        if not isinstance(header, dict) or len(header) != 1 or next(iter(header)) not in ACTIONS:
            raise ValueError(f"Malformed action/metadata line [{position + 1}], expected one of {list(ACTIONS)}")
        action, meta = next(iter(header.items()))
        index = (meta or {}).get("_index") or target
        if not index:
            raise ValueError("Validation Failed: 1: index is missing;")
        doc_id = (meta or {}).get("_id")
        source = None
        if action != "delete":
            position += 1
            if position >= len(lines):
                raise ValueError(f"The bulk request must be terminated by a newline [\\n] (action line {position})")
            try:
                source = orjson.loads(lines[position])
            except orjson.JSONDecodeError:
                raise ValueError(f"Malformed source line [{position + 1}]: not one JSON object") from None
            if not isinstance(source, dict):
                raise ValueError(f"Malformed source line [{position + 1}]: not one JSON object")
        yield action, index, None if doc_id is None else str(doc_id), source
        position += 1
