"""Splunk HTTP Event Collector, written to (see shared/api-notes/splunk-hec.md). A monitoring sink: it reads
nothing.

Base URL: the HEC input, `https://<host>:8088` (Splunk Cloud: `https://http-inputs-<stack>.splunkcloud.com`);
not the management port 8089. A server with Splunk's self-signed certificate is verified with `ca_file`.
Auth: `Authorization: Splunk <token>` (auth type api_key, the HEC token as the key; never `?token=`).
Connection test: `GET /services/collector/health` (code 17, no token needed), then an empty
`POST /services/collector/event`, which checks the token without indexing anything: code 5 "No data" means
the token is good, codes 1-4 that it is not. A server that answers the empty POST otherwise is reported as
reachable with the token unchecked.
Events: one POST to `/services/collector/event` per batch, event objects one per line (not a JSON array): the
EventEnvelope as `event`, `time` in epoch seconds, index / sourcetype / source / host from the config (an empty
index is the token's default), and the event id, type and correlation id as indexed `fields` (strings), so a
search finds a duplicate by `event_id`. HEC indexes a request whole or not at all.
Indexer acknowledgement (optional, `indexer_acknowledgement`): every request carries the integration's channel
(`X-Splunk-Request-Channel`, a GUID), the answer an `ackId` for the whole batch, and
`POST /services/collector/ack?channel=` is polled every `ack_poll_seconds` until it says true; a batch not
acknowledged within `ack_timeout_seconds` is handed back for a retry (which may index it twice, as Splunk
warns). Without acknowledgement, 200 means received.
Errors (HEC's `code`): 1-4 (401/403, token disabled, missing, malformed or unknown) are AuthenticationError;
7 (index not allowed for the token), 10/11/14 (acknowledgement on at the token but not here, or the reverse)
are ConfigurationError naming the field; 8, 9 and 18-20 (500/503) and 429/502/504 from a load balancer are
transient (503 "Server is busy" is retried within the request: nothing was indexed); other 400s refuse the
batch for good.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime

import httpx
import orjson

from syncplane.integrations.auth import BearerTokenAuth
from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, EventResult
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.errors import AuthenticationError, ConfigurationError, PermanentError, RecordError
from syncplane.integrations.http import HttpClient, ca_file_context
from syncplane.integrations.records import EVENT_TYPES_SCHEMA
from syncplane.integrations.registry import register

EVENT, ACK, HEALTH = "/services/collector/event", "/services/collector/ack", "/services/collector/health"
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TOKEN_CODES = {  # HEC code -> what is wrong with the token (all AuthenticationError)
    1: "the HEC token is disabled", 2: "no HEC token was sent",
    3: "the Authorization header is malformed (it must be 'Splunk <token>')", 4: "the HEC token is not valid",
}
CONFIG_CODES = {  # HEC code -> (config field, what to do)
    7: ("index", "index {index} is not allowed for this token: add it to the token's indexes or choose another"),
    10: ("indexer_acknowledgement", "the token has indexer acknowledgement on: turn indexer_acknowledgement on"),
    11: ("channel", "the channel is not a GUID"),
    14: ("indexer_acknowledgement", "the token has indexer acknowledgement off: turn indexer_acknowledgement off"),
    16: ("api_key", "query-string authorization is not enabled"),
}


def event_epoch(envelope: dict) -> float:
    try:
        return datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        raise RecordError(f"event {envelope.get('id', '?')}: time is not an ISO-8601 date") from None


def map_event(envelope: dict, config: dict) -> dict:
    """An EventEnvelope -> one HEC event object (pure)."""
    if not isinstance(envelope, dict) or not envelope.get("id") or not envelope.get("type"):
        raise RecordError("event has no id or type")
    fields = {"event_id": str(envelope["id"]), "event_type": str(envelope["type"]),
              "correlation_id": str(envelope.get("correlation_id") or "")}
    hec = {
        "time": round(event_epoch(envelope), 3),
        "event": envelope,
        "fields": {name: value for name, value in fields.items() if value},
        "source": config["source"],
        "sourcetype": config["sourcetype"],
    }
    for name in ("index", "host"):
        if config.get(name):
            hec[name] = config[name]
    return hec


def hec_reply(response: httpx.Response) -> tuple[int | None, str]:
    """HEC's (code, text) from an answer; (None, "") when the body is not HEC's."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    return body.get("code"), str(body.get("text", ""))


@register
class SplunkHecConnector(Connector):
    system_type = SystemType.SPLUNK_HEC
    category = Category.MONITORING
    display_name = "Splunk HEC"
    record_kind = RecordKind.EVENT
    auth_types = (AuthType.API_KEY,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.SEND_EVENTS})
    base_url_help = ("The HTTP Event Collector input: https://<host>:8088 (Splunk Cloud: "
                     "https://http-inputs-<stack>.splunkcloud.com), without /services/collector.")
    base_url_example = "https://splunk.example.com:8088"
    owned_path_suffixes = ("/services/collector",)
    # Splunk's own exporters stay far below max_content_length with 1 MiB and ~500 events a request.
    max_batch_events = 500
    max_batch_bytes = 1_000_000
    max_event_bytes = 100_000
    config_schema = {
        "type": "object",
        "properties": {
            "index": {"type": "string", "pattern": r"^([a-z0-9][a-z0-9_-]{0,79})?$", "default": "",
                      "description": "Index to write to; it must be in the token's allowed indexes. Empty: the "
                      "token's default index."},
            "sourcetype": {"type": "string", "pattern": r"^[^\s]{1,100}$", "default": "syncplane:event",
                           "description": "Sourcetype of the events."},
            "source": {"type": "string", "pattern": r"^[^\s]{1,200}$", "default": "syncplane",
                       "description": "Source of the events."},
            "host": {"type": "string", "maxLength": 255, "pattern": r"^[^\s]*$", "default": "",
                     "description": "Host field of the events; empty: the sender's, as HEC sees it."},
            "indexer_acknowledgement": {"type": "boolean", "default": False,
                                        "description": "Wait until Splunk says each batch is indexed (the "
                                        "token must have indexer acknowledgement on)."},
            "channel": {"type": "string", "pattern": f"({GUID_PATTERN})|^$", "default": "",
                        "description": "The data channel (a GUID) for indexer acknowledgement; empty: a new one "
                        "each time a worker starts."},
            "ack_poll_seconds": {"type": "number", "minimum": 0.05, "maximum": 60, "default": 10,
                                 "description": "How often the acknowledgement is asked for (Splunk: 10 s)."},
            "ack_timeout_seconds": {"type": "number", "minimum": 1, "maximum": 900, "default": 300,
                                    "description": "A batch not acknowledged by then is sent again."},
            "ca_file": {"type": "string", "pattern": r"^(/.*)?$", "default": "",
                        "description": "Absolute path of a PEM CA bundle to verify the HEC certificate with "
                        "(Splunk's default certificate is self-signed); empty: the system's CAs."},
            "event_types": EVENT_TYPES_SCHEMA,
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        self.channel = self.config["channel"] or str(uuid.uuid4())
        self.sleep = time.sleep  # tests replace it
        self.client = HttpClient(
            context.base_url, auth=BearerTokenAuth(context.credential("api_key"), scheme="Splunk"),
            secrets=context.secret_values(), verify=ca_file_context(self.config["ca_file"]),
            sleep=lambda s: self.sleep(s),
        )

    # --- requests -----------------------------------------------------------------------------------------

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.config["indexer_acknowledgement"]:
            headers["X-Splunk-Request-Channel"] = self.channel
        return headers

    def _post(self, path: str, content: bytes, **kwargs) -> httpx.Response:
        response = self.client.request("POST", path, content=content, headers=self._headers(),
                                       expected=(200, 400, 401, 403), **kwargs)
        if response.status_code != 200:
            self._raise_for_code(path, response)
        return response

    def _raise_for_code(self, path: str, response: httpx.Response) -> None:
        code, text = hec_reply(response)
        said = f"POST {path} answered {response.status_code} (HEC code {code}: {text})"
        if code in TOKEN_CODES or response.status_code in (401, 403):
            raise AuthenticationError(f"{said}: {TOKEN_CODES.get(code, 'the token was refused')}",
                                      status_code=response.status_code)
        if code in CONFIG_CODES:
            field, advice = CONFIG_CODES[code]
            index = self.config["index"] or "(the token's default)"
            raise ConfigurationError(f"{field}: {advice.format(index=index)} ({said})",
                                     status_code=response.status_code)
        raise PermanentError(f"{said}: the batch was refused", status_code=response.status_code)

    # --- the contract -------------------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        health = self.client.get(HEALTH)
        _code, health_text = hec_reply(health)
        probe = self.client.request("POST", EVENT, content=b"", headers=self._headers(),
                                    expected=range(200, 600), idempotent=True)
        code, _text = hec_reply(probe)
        if code == 5:
            message = f"Connected to Splunk HEC ({health_text or 'healthy'}); the token is accepted."
        elif code in TOKEN_CODES or code in CONFIG_CODES:
            self._raise_for_code(EVENT, probe)
        else:
            message = f"Connected to Splunk HEC ({health_text or 'healthy'}); the token could not be checked."
        return ConnectionResult(ok=True, message=message, details={
            "health": health_text, "token_checked": code == 5,
            "indexer_acknowledgement": self.config["indexer_acknowledgement"],
        })

    def send_events(self, events: list[dict]) -> list[EventResult]:
        results: list[EventResult | None] = []
        lines, sent = [], []
        for envelope in events:
            event_id = str(envelope.get("id", "")) if isinstance(envelope, dict) else ""
            try:
                lines.append(orjson.dumps(map_event(envelope, self.config)))
            except RecordError as exc:
                results.append(EventResult(event_id, "rejected", reason=str(exc)))
                continue
            results.append(None)
            sent.append((len(results) - 1, event_id))
        if sent:
            outcome, reason = self._deliver(b"\n".join(lines))
            for position, event_id in sent:
                results[position] = EventResult(event_id, outcome, reason=reason)
        return results

    def _deliver(self, body: bytes) -> tuple[str, str]:
        response = self._post(EVENT, body)
        if not self.config["indexer_acknowledgement"]:
            return "delivered", ""
        ack_id = orjson.loads(response.content).get("ackId")
        if ack_id is None:
            raise ConfigurationError("indexer_acknowledgement: HEC answered without an ackId: the token has "
                                     "indexer acknowledgement off; turn indexer_acknowledgement off")
        if self._acknowledged(ack_id):
            return "delivered", ""
        return "retry", f"not acknowledged as indexed within {self.config['ack_timeout_seconds']:g} s (ackId {ack_id})"

    def _acknowledged(self, ack_id: int) -> bool:
        poll = self.config["ack_poll_seconds"]
        for attempt in range(max(1, math.ceil(self.config["ack_timeout_seconds"] / poll))):
            if attempt:
                self.sleep(poll)
            response = self._post(ACK, orjson.dumps({"acks": [ack_id]}), params={"channel": self.channel},
                                  idempotent=True)
            if orjson.loads(response.content).get("acks", {}).get(str(ack_id)) is True:
                return True
        return False

    def close(self) -> None:
        self.client.close()
