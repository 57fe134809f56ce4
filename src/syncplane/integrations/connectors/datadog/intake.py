"""Datadog, written to: events through the v1 events API, metrics through the v2 series API (see
shared/api-notes/datadog.md). A monitoring sink: it reads nothing.

Site and base URL: the config names the site (datadoghq.com, datadoghq.eu, us3.datadoghq.com, ...); its API
host is `api.` + the site. The base URL is that API URL, or the URL of a proxy (or the simulator) in front of
it. A base URL on a Datadog domain must be the chosen site's API host: the UI host (`app.datadoghq.eu`), a bare
site or another site's API host is refused when the integration is saved, naming the URL to use, because a key
of one site gets 403 from every other.
Auth: the API key in `DD-API-KEY` on every request (auth type api_key); no application key is needed or sent.
Connection test: `GET /api/v1/validate` (200 `{"valid": true}`, 403 for a key of another site).
Events: one `POST /api/v1/events` per event (the API takes one), several in flight at once
(`parallel_requests`); the Syncplane event id is the `aggregation_key` and a tag, so the same event sent twice
can be found and grouped. Datadog answers 202 with 64-bit event ids: `id_str` is kept (EventResult.remote_id),
never a float. `text` is cut to 4000 characters here (the official client refuses longer text);
`date_happened` is epoch seconds, and an event older than Datadog accepts (18 hours) is dated now, its own time
in the text.
Metrics: `POST /api/v2/series`, points grouped into one series per name, kind and tag set; `type` is an
integer (3 gauge, 1 count with `interval`), timestamps whole seconds, a host goes in `resources`. Points more
than an hour old are dropped here with a log line (Datadog drops them silently). Requests are split to stay
under 512,000 bytes, and split again on a 413.
Errors: 429 waits `X-RateLimit-Reset` seconds (Datadog sends no Retry-After; Retry-After is honoured if a
proxy adds one), at most MAX_INLINE_WAIT in a row, then the event is handed back for a later retry with that
wait; 403 is AuthenticationError (a key of another site, or revoked); 400 rejects that event or payload;
5xx and timeouts are transient.
"""

from __future__ import annotations

import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import orjson

from syncplane.integrations.auth import ApiKeyHeaderAuth
from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, EventResult, MetricPoint
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentError,
    RecordError,
    TransientError,
)
from syncplane.integrations.http import HttpClient, extract_vendor_message, parse_retry_after
from syncplane.integrations.records import EVENT_TYPES_SCHEMA
from syncplane.integrations.registry import register

logger = logging.getLogger("syncplane.connectors.datadog")

# Site setting -> its name in Datadog's docs. The API host is "api." + the site.
SITES = {
    "datadoghq.com": "US1", "us3.datadoghq.com": "US3", "us5.datadoghq.com": "US5", "datadoghq.eu": "EU1",
    "ap1.datadoghq.com": "AP1", "ap2.datadoghq.com": "AP2", "uk1.datadoghq.com": "UK1",
    "ddog-gov.com": "US1-FED", "us2.ddog-gov.com": "US2-FED",
}
DATADOG_DOMAINS = ("datadoghq.com", "datadoghq.eu", "ddog-gov.com")
EVENTS, SERIES, VALIDATE = "/api/v1/events", "/api/v2/series", "/api/v1/validate"
MAX_PAYLOAD_BYTES = 512_000  # v2 series, on the wire
TEXT_MAX = 4000
EVENT_MAX_AGE = 18 * 3600  # the shorter of the documented windows for date_happened
POINT_MAX_AGE = 3600  # older metric points are dropped by Datadog
MAX_INLINE_WAIT = 30.0  # seconds a rate-limited request waits here before handing the event back
RATE_LIMIT_ATTEMPTS = 3
METRIC_TYPES = {"count": 1, "rate": 2, "gauge": 3}
ALERT_TYPES = {
    "sync.completed": "success", "sync.failed": "error",
    "change.submitted": "info", "change.approved": "info", "change.rejected": "warning",
    "change.implemented": "success", "change.cancelled": "info",
    "integration.unhealthy": "error", "integration.recovered": "success",
    "vulnerability.critical": "error",
}
_METRIC_CHARACTER = re.compile(r"[^A-Za-z0-9_.]")


def api_url(site: str) -> str:
    return f"https://api.{site}"


def _datadog_host(host: str) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in DATADOG_DOMAINS)


def event_epoch(envelope: dict) -> float:
    try:
        return datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        raise RecordError(f"event {envelope.get('id', '?')}: time is not an ISO-8601 date") from None


def event_text(envelope: dict, note: str = "") -> str:
    """What a person reads in the event stream: the subject, the data as `key: value` lines, the ids."""
    subject = envelope.get("subject") or {}
    lines = [f"{subject.get('type', 'subject')}: {subject.get('name') or subject.get('id', '')}"]
    lines += [f"{key}: {value}" for key, value in (envelope.get("data") or {}).items()]
    lines += [f"event id: {envelope['id']}", f"correlation id: {envelope.get('correlation_id', '')}"]
    if note:
        lines.append(note)
    text = "\n".join(lines)
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"


def map_event(envelope: dict, *, tags: tuple[str, ...] | list[str] = (), host: str = "",
              now: float | None = None) -> dict:
    """An EventEnvelope -> the body of POST /api/v1/events (pure; `now` for the recency rule)."""
    if not isinstance(envelope, dict) or not envelope.get("id") or not envelope.get("type"):
        raise RecordError("event has no id or type")
    now = time.time() if now is None else now
    happened, note = event_epoch(envelope), ""
    if happened < now - EVENT_MAX_AGE:  # Datadog refuses older dates: date it now, keep its own time visible
        happened, note = now, f"happened at: {envelope['time']}"
    subject = envelope.get("subject") or {}
    event_type = envelope["type"]
    body = {
        "title": f"{event_type}: {subject.get('name') or subject.get('id') or 'Syncplane'}",
        "text": event_text(envelope, note),
        "alert_type": ALERT_TYPES.get(event_type, "info"),
        "aggregation_key": str(envelope["id"])[:100],
        "source_type_name": "my_apps",
        "date_happened": int(happened),
        "tags": [f"event_type:{event_type}", f"syncplane_event_id:{envelope['id']}",
                 *([_tag(subject["type"], subject.get("name") or subject.get("id"))] if subject.get("type") else []),
                 *tags],
    }
    if host:
        body["host"] = host
    return body


def _tag(key: str, value) -> str:
    return "_".join(f"{key}:{value}".split())  # Datadog turns spaces in tags into underscores anyway


def metric_name(name: str) -> str:
    """Datadog's rule: a letter first, then letters, digits, _ and . (anything else becomes _), 200 at most."""
    cleaned = _METRIC_CHARACTER.sub("_", name)[:200]
    if not cleaned[:1].isalpha():
        raise PermanentError(f"metric name {name!r} must start with a letter")
    return cleaned


def map_series(points: list[MetricPoint], *, tags: tuple[str, ...] | list[str] = (), host: str = "",
               interval: int = 60, now: float | None = None) -> list[dict]:
    """Metric points -> v2 series, one per (name, kind, tag set), points in the order given (pure). Points older
    than Datadog keeps are left out."""
    now = time.time() if now is None else now
    series: dict[tuple, dict] = {}
    for point in points:
        if point.kind not in METRIC_TYPES:
            raise PermanentError(f"metric {point.name}: kind {point.kind!r} is not one of {sorted(METRIC_TYPES)}")
        if point.timestamp < now - POINT_MAX_AGE:
            logger.info("metric point dropped: older than an hour", extra={"metric": point.name})
            continue
        point_tags = sorted(f"{k}:{v}" for k, v in point.tags.items()) + list(tags)
        key = (point.name, point.kind, tuple(point_tags))
        entry = series.get(key)
        if entry is None:
            entry = series[key] = {"metric": metric_name(point.name), "type": METRIC_TYPES[point.kind],
                                   "points": [], "tags": point_tags}
            if point.kind != "gauge":
                entry["interval"] = interval
            if host:
                entry["resources"] = [{"name": host, "type": "host"}]
        entry["points"].append({"timestamp": int(point.timestamp), "value": point.value})
    return list(series.values())


def rate_limit_wait(headers) -> float | None:
    """Seconds until the rate-limit window resets: X-RateLimit-Reset, else a proxy's Retry-After."""
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset))
        except ValueError:
            pass
    return parse_retry_after(headers.get("Retry-After"))


@register
class DatadogConnector(Connector):
    system_type = SystemType.DATADOG
    category = Category.MONITORING
    display_name = "Datadog"
    record_kind = RecordKind.EVENT
    auth_types = (AuthType.API_KEY,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.SEND_EVENTS, Capability.SEND_METRICS})
    base_url_help = ("The API URL of your Datadog site: https://api.<site> (https://api.datadoghq.eu for site "
                     "datadoghq.eu), or the URL of a proxy in front of it. Not the app.* address of the web UI.")
    base_url_example = "https://api.datadoghq.com"
    owned_path_suffixes = ("/api",)
    max_batch_events = 500
    max_batch_bytes = 1_000_000
    max_event_bytes = 16_000  # the text is cut to 4000 characters; the rest is title and tags
    config_schema = {
        "type": "object",
        "properties": {
            "site": {"enum": list(SITES), "default": "datadoghq.com",
                     "description": "Your Datadog site, as in the web UI's address (datadoghq.eu for EU1, "
                     "us3.datadoghq.com for US3, ddog-gov.com for US1-FED). The base URL must be its API host."},
            "tags": {"type": "array", "items": {"type": "string", "pattern": r"^[^\s,]{1,200}$"}, "default": [],
                     "maxItems": 50, "description": "Tags (key:value) added to every event and metric series."},
            "host": {"type": "string", "maxLength": 255, "pattern": r"^[^\s]*$", "default": "",
                     "description": "Host name attached to events and, as a resource, to metric series."},
            "parallel_requests": {"type": "integer", "minimum": 1, "maximum": 16, "default": 4,
                                  "description": "Events sent at once (the API takes one event per request); "
                                  "1 keeps the exact order."},
            "count_interval_seconds": {"type": "integer", "minimum": 1, "maximum": 86400, "default": 60,
                                       "description": "Interval of count metrics (the v2 `interval`)."},
            "event_types": EVENT_TYPES_SCHEMA,
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        base_url = (context.base_url or api_url(self.config["site"])).rstrip("/")
        self.check_settings(base_url, self.config)
        self.sleep = time.sleep  # tests replace it to see the waits
        self.client = HttpClient(base_url, auth=ApiKeyHeaderAuth("DD-API-KEY", context.credential("api_key")),
                                 secrets=context.secret_values(), max_attempts=3, sleep=lambda s: self.sleep(s))
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def check_base_url(cls, url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        if _datadog_host(host) and not host.startswith("api."):
            site = host.removeprefix("app.")
            hint = f": the API of site {site} is {api_url(site)}" if site in SITES else ""
            raise ConfigurationError(f"{host} is not a Datadog API host{hint} (the API host is api.<site>)")
        super().check_base_url(url)

    @classmethod
    def check_settings(cls, base_url: str, config: dict) -> None:
        site = (config or {}).get("site") or "datadoghq.com"
        host = (urlsplit(base_url or "").hostname or "").lower()
        if _datadog_host(host) and host != f"api.{site}":
            own = host.removeprefix("api.")
            other = f"it is the API of site {own}" if own in SITES else "it is no site's API host"
            raise ConfigurationError(
                f"site: the base URL {host} does not match site {site} ({other}); a key of one site is refused "
                f"by every other. Use {api_url(site)}" + (f", or choose site {own}" if own in SITES else "")
            )

    # --- requests -----------------------------------------------------------------------------------------

    def _post(self, path: str, body: dict) -> httpx.Response:
        """POST JSON; a 429 waits the rate-limit reset here a few times, then raises TransientError with it."""
        content = orjson.dumps(body)
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            response = self._request("POST", path, content)
            if response.status_code != 429:
                return response
            wait = rate_limit_wait(response.headers)
            bucket = response.headers.get("X-RateLimit-Name", "")
            if wait is None:
                wait = random.uniform(0, 2**attempt)  # no hint: backoff with jitter
            if wait > MAX_INLINE_WAIT or attempt == RATE_LIMIT_ATTEMPTS:
                raise TransientError(f"POST {path} answered 429: rate limited" + (f" ({bucket})" if bucket else ""),
                                     status_code=429, retry_after=wait)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, method: str, path: str, content: bytes | None = None) -> httpx.Response:
        try:
            return self.client.request(method, path, content=content, expected=(200, 202, 400, 413, 429),
                                       headers={"Content-Type": "application/json"} if content else None)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{exc} (an API key of another Datadog site, or a revoked one: this integration's site is "
                f"{self.config['site']})", status_code=exc.status_code,
            ) from None

    # --- the contract -------------------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        response = self._request("GET", VALIDATE)
        if response.status_code == 429:
            raise TransientError("GET /api/v1/validate answered 429: rate limited", status_code=429,
                                 retry_after=rate_limit_wait(response.headers))
        if response.status_code != 200 or not self.client.json(response).get("valid"):
            raise PermanentError(f"GET /api/v1/validate answered {response.status_code}: "
                                 f"{extract_vendor_message(response) or 'the key is not valid'}")
        site = self.config["site"]
        return ConnectionResult(ok=True, message=f"Connected to Datadog {SITES[site]} ({site}): the API key is valid.",
                                details={"site": site, "api_url": str(self.client.base_url)})

    def send_events(self, events: list[dict]) -> list[EventResult]:
        if self.config["parallel_requests"] == 1 or len(events) < 2:
            return [self._send_event(event) for event in events]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config["parallel_requests"], thread_name_prefix="datadog")
        return list(self._pool.map(self._send_event, events))  # in order; an AuthenticationError propagates

    def _send_event(self, envelope: dict) -> EventResult:
        event_id = str(envelope.get("id", "")) if isinstance(envelope, dict) else ""
        try:
            body = map_event(envelope, tags=self.config["tags"], host=self.config["host"])
            response = self._post(EVENTS, body)
        except RecordError as exc:
            return EventResult(event_id, "rejected", reason=str(exc))
        except TransientError as exc:
            return EventResult(event_id, "retry", reason=str(exc), retry_after=exc.retry_after)
        if response.status_code in (200, 202):
            event = self.client.json(response).get("event") or {}
            remote = event.get("id_str") or ("" if event.get("id") is None else str(event["id"]))
            return EventResult(event_id, "delivered", remote_id=remote)
        reason = extract_vendor_message(response) or "refused"
        return EventResult(event_id, "rejected", reason=f"Datadog answered {response.status_code}: {reason}")

    def send_metrics(self, points: list[MetricPoint]) -> None:
        series = map_series(points, tags=self.config["tags"], host=self.config["host"],
                            interval=self.config["count_interval_seconds"])
        for chunk in _chunks_by_size(series, MAX_PAYLOAD_BYTES - 1024):
            self._send_series(chunk)

    def _send_series(self, series: list[dict]) -> None:
        response = self._post(SERIES, {"series": series})
        if response.status_code == 413 and len(series) > 1:  # never resend an oversized body as it is
            half = len(series) // 2
            self._send_series(series[:half])
            self._send_series(series[half:])
            return
        if response.status_code == 413:
            raise PermanentError(f"metric {series[0]['metric']}: one series is larger than Datadog accepts (413)")
        if response.status_code == 400:
            raise PermanentError(f"POST {SERIES} answered 400: {extract_vendor_message(response)}")
        warnings = self.client.json(response).get("errors") or []
        if warnings:
            logger.warning("Datadog accepted the series with errors: %s", "; ".join(map(str, warnings))[:500])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()


def _chunks_by_size(series: list[dict], limit: int) -> list[list[dict]]:
    """Consecutive groups of series whose JSON body stays under `limit` bytes."""
    chunks, current, size = [], [], len(b'{"series":[]}')
    for entry in series:
        entry_size = len(orjson.dumps(entry)) + 1
        if current and size + entry_size > limit:
            chunks.append(current)
            current, size = [], len(b'{"series":[]}')
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks
