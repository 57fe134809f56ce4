"""Elasticsearch, written to: events as documents of a data stream through the bulk API (see
shared/api-notes/elastic.md). A monitoring sink: it reads nothing.

Base URL: the cluster's HTTPS endpoint (`https://<host>:9200`, Elastic Cloud's `https://<deployment>...:443`); a
private CA is given with `ca_file` (verification is never switched off).
Auth: an API key, `Authorization: ApiKey <encoded>`, where encoded is base64(id:api_key): the `encoded` field the
create-API-key call returns, or `id:api_key`, which is encoded here (base64 of the key alone is refused when the
integration is saved: Elasticsearch answers it 401). Or Basic. The key needs `create_doc` on the data stream
and `auto_configure` to create it on first write.
Connection test: `GET /` (cluster name and version). A write-only key gets 403 there (no `monitor`): that is
reported as reachable and authenticated, since bad credentials are 401.
Events: `POST /<data_stream>/_bulk` with NDJSON (`application/x-ndjson`, ending with a newline): per event a
`{"create": {"_id": <event id>}}` line and the document line (ECS-shaped: `@timestamp`, `event.id`, `event.kind`,
`event.action` = the event type, `message`, and the envelope under `syncplane`). `create` with the event id as
`_id` makes a re-send harmless: the cluster answers 409 for a document it has, counted as delivered. Data
streams take only `create`.
Results, item by item (the answer is 200 even when items fail; `_index` is the backing index): 201 delivered;
409 already there, delivered; 429 / 5xx that item is handed back for a retry on its own; 400 (mapping or parse
errors) rejected with the reason, never retried; 403 is AuthenticationError (the key may not write there), 404
ConfigurationError (no such data stream and it cannot be created). The whole request: 413 splits the batch in
halves, down to one event (one event still too large is rejected); 429, 5xx and timeouts are retried
(creates with our ids are safe to repeat), then transient; 401/403 AuthenticationError.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import orjson

from syncplane.integrations.auth import ApiKeyHeaderAuth, basic_auth
from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, EventResult
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.errors import AuthenticationError, ConfigurationError, PermanentError, RecordError
from syncplane.integrations.http import HttpClient, ca_file_context, extract_vendor_message
from syncplane.integrations.records import EVENT_TYPES_SCHEMA
from syncplane.integrations.registry import register

DEFAULT_DATA_STREAM = "logs-syncplane.events-default"
ALERT_EVENTS = {"sync.failed", "vulnerability.critical", "integration.unhealthy"}  # ECS event.kind "alert"
RETRY_STATUSES = {429, 500, 502, 503, 504}


def encoded_api_key(value: str) -> str:
    """The header value of an API key given as `encoded` or as `id:api_key`; ConfigurationError otherwise
    (the message never quotes the key)."""
    value = value.strip()
    if ":" in value:
        return base64.b64encode(value.encode()).decode()
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if ":" not in decoded:
        raise ConfigurationError(
            "the API key must be the `encoded` value Elasticsearch returned (base64 of id:api_key) or id:api_key; "
            "the key alone, or its base64, is refused by Elasticsearch"
        )
    return value


def iso_timestamp(envelope: dict) -> str:
    try:
        when = datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise RecordError(f"event {envelope.get('id', '?')}: time is not an ISO-8601 date") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def map_document(envelope: dict) -> dict:
    """An EventEnvelope -> the document indexed in the data stream (pure)."""
    if not isinstance(envelope, dict) or not envelope.get("id") or not envelope.get("type"):
        raise RecordError("event has no id or type")
    subject = envelope.get("subject") or {}
    event_type = envelope["type"]
    return {
        "@timestamp": iso_timestamp(envelope),
        "event": {"id": str(envelope["id"]), "kind": "alert" if event_type in ALERT_EVENTS else "event",
                  "action": event_type, "dataset": "syncplane.events"},
        "message": f"{event_type}: {subject.get('name') or subject.get('id') or 'Syncplane'}",
        "syncplane": {key: envelope.get(key) for key in ("specversion", "correlation_id", "subject", "data")},
    }


def _reason(error) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip(": ")
    return str(error or "")


@register
class ElasticConnector(Connector):
    system_type = SystemType.ELASTIC
    category = Category.MONITORING
    display_name = "Elastic"
    record_kind = RecordKind.EVENT
    auth_types = (AuthType.API_KEY, AuthType.BASIC)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.SEND_EVENTS})
    base_url_help = "The Elasticsearch endpoint, https://<host>:9200 (Elastic Cloud: the deployment's https URL)."
    base_url_example = "https://elastic.example.com:9200"
    owned_path_suffixes = ("/_bulk",)
    max_batch_events = 1000
    max_batch_bytes = 5_000_000  # "a few MB per request"; the cluster's cap (http.max_content_length) is 100mb
    max_event_bytes = 1_000_000
    config_schema = {
        "type": "object",
        "properties": {
            "data_stream": {
                "type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]{0,254}$", "default": DEFAULT_DATA_STREAM,
                "description": "Data stream written to with create (logs-<dataset>-<namespace> matches the "
                "built-in logs-*-* template). A classic index name works too; lowercase, no spaces, :, # or /.",
            },
            "ca_file": {"type": "string", "pattern": r"^(/.*)?$", "default": "",
                        "description": "Absolute path of a PEM CA bundle to verify the cluster's certificate "
                        "with (a self-managed cluster's own CA); empty: the system's CAs."},
            "event_types": EVENT_TYPES_SCHEMA,
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        if context.auth_type == AuthType.API_KEY:
            auth = ApiKeyHeaderAuth("Authorization", "ApiKey " + encoded_api_key(context.credential("api_key")))
        else:
            auth = basic_auth(context.credential("username"), context.credential("password"))
        self.target = quote(self.config["data_stream"], safe="")
        self.client = HttpClient(context.base_url, auth=auth, secrets=context.secret_values(),
                                 verify=ca_file_context(self.config["ca_file"]))

    @classmethod
    def check_credential(cls, auth_type: str, name: str, value: str) -> None:
        if auth_type == AuthType.API_KEY and name == "api_key":
            encoded_api_key(value)

    def test_connection(self) -> ConnectionResult:
        response = self.client.request("GET", "/", expected=(200, 403))
        if response.status_code == 403:
            return ConnectionResult(ok=True, message="Connected to Elasticsearch: the credentials are accepted, but "
                                    "may not read cluster info (no monitor privilege), which writing does not need.",
                                    details={"monitor_privilege": False})
        info = self.client.json(response)
        version = (info.get("version") or {}).get("number", "")
        product = response.headers.get("X-Elastic-Product", "")
        message = f"Connected to Elasticsearch {version} (cluster {info.get('cluster_name', '?')})."
        if product != "Elasticsearch":
            message += " The server does not say it is Elasticsearch (no X-Elastic-Product header)."
        return ConnectionResult(ok=True, message=message, details={
            "version": version, "cluster_name": info.get("cluster_name"), "product": product,
            "data_stream": self.config["data_stream"],
        })

    def send_events(self, events: list[dict]) -> list[EventResult]:
        results: list[EventResult | None] = [None] * len(events)
        items = []  # (position, event id, NDJSON pair)
        for position, envelope in enumerate(events):
            event_id = str(envelope.get("id", "")) if isinstance(envelope, dict) else ""
            try:
                document = orjson.dumps(map_document(envelope))
            except RecordError as exc:
                results[position] = EventResult(event_id, "rejected", reason=str(exc))
                continue
            action = orjson.dumps({"create": {"_id": event_id}})
            items.append((position, event_id, action + b"\n" + document + b"\n"))
        if items:
            self._bulk(items, results)
        return results

    def _bulk(self, items: list[tuple[int, str, bytes]], results: list) -> None:
        response = self._post(b"".join(pair for _, _, pair in items))
        if response.status_code == 413:
            if len(items) == 1:
                position, event_id, _ = items[0]
                results[position] = EventResult(event_id, "rejected", reason="the event alone is larger than the "
                                                "cluster accepts (413, http.max_content_length)")
                return
            half = len(items) // 2
            self._bulk(items[:half], results)
            self._bulk(items[half:], results)
            return
        answered = self.client.json(response).get("items") or []
        if len(answered) != len(items):
            raise PermanentError(f"POST /{self.target}/_bulk answered {len(answered)} items for {len(items)} sent")
        for (position, event_id, _), item in zip(items, answered, strict=True):
            results[position] = self._item_result(event_id, next(iter(item.values()), {}))

    def _post(self, body: bytes) -> httpx.Response:
        path = f"/{self.target}/_bulk"
        try:
            response = self.client.request("POST", path, content=body, expected=(200, 400, 404, 413),
                                           headers={"Content-Type": "application/x-ndjson"}, idempotent=True)
        except AuthenticationError as exc:
            raise AuthenticationError(f"{exc} (check the API key or user, and its privileges: create_doc on "
                                      f"{self.config['data_stream']})", status_code=exc.status_code) from None
        if response.status_code in (400, 404):
            reason = _reason(_error_of(response)) or extract_vendor_message(response)
            error = ConfigurationError if response.status_code == 404 else PermanentError
            raise error(f"POST {path} answered {response.status_code}: {reason}", status_code=response.status_code)
        return response

    def _item_result(self, event_id: str, item: dict) -> EventResult:
        status, reason = item.get("status", 0), _reason(item.get("error"))
        if 200 <= status < 300:
            return EventResult(event_id, "delivered", remote_id=str(item.get("_id", "")))
        if status == 409:  # create of an _id the stream has: an earlier attempt got through
            return EventResult(event_id, "delivered", reason="already indexed", remote_id=str(item.get("_id", "")))
        if status in RETRY_STATUSES:
            return EventResult(event_id, "retry", reason=f"{status} {reason}")
        if status in (401, 403):
            raise AuthenticationError(f"Elasticsearch refused to write to {self.config['data_stream']} ({reason}): "
                                      "the key needs create_doc (and auto_configure) on it", status_code=status)
        if status == 404:
            raise ConfigurationError(f"data_stream: {self.config['data_stream']} does not exist and cannot be created "
                                     f"({reason}): it needs an index template with data_stream, or "
                                     "auto_configure", status_code=status)
        return EventResult(event_id, "rejected", reason=f"{status} {reason}")

    def close(self) -> None:
        self.client.close()


def _error_of(response: httpx.Response):
    try:
        return orjson.loads(response.content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
