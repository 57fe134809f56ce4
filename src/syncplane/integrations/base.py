"""The connector contract.

A connector knows one vendor: how to authenticate, how to page, and how to map a vendor record to a
canonical record. It knows nothing of the database: the sync engine streams its pages and does the writing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import jsonschema

from syncplane.integrations.choices import AuthType, Capability, RecordKind
from syncplane.integrations.errors import ConfigurationError

# Which credential fields each auth type needs; `secret` fields are stored only as secret references.
CREDENTIAL_FIELDS: dict[str, dict[str, bool]] = {
    AuthType.BASIC: {"username": False, "password": True},
    AuthType.BEARER: {"token": True},
    AuthType.API_KEY: {"api_key": True},  # how the key travels is the connector's business
    AuthType.OAUTH2_CLIENT_CREDENTIALS: {"client_id": False, "client_secret": True},
    AuthType.OAUTH2_PASSWORD: {"client_id": False, "client_secret": True, "username": False, "password": True},
    AuthType.OAUTH2_CLIENT_ASSERTION: {"client_id": False, "key_id": False, "private_key": True},  # PEM
    AuthType.APPLE_SERVER_TOKEN: {
        "consumer_key": False, "consumer_secret": True, "access_token": True, "access_secret": True,
    },
    AuthType.GOOGLE_SERVICE_ACCOUNT: {"service_account_key": True},  # the key file's JSON
    AuthType.NONE: {},
}


# Bounds of a connector's client-side pace (config `rate_limit_per_second`): a slower pace makes one run last
# days (1e-9 would sleep forever, holding a worker); a faster one paces nothing.
RATE_MIN, RATE_MAX = 0.1, 1000
# An id in a config (a Freshservice group, workspace...): what a 64-bit database integer holds.
MAX_CONFIG_ID = 2**63 - 1


def credential_schema(auth_types: tuple[str, ...]) -> dict:
    """JSON Schema of the credentials, per auth type; secret fields carry "x-secret": true."""
    return {
        auth_type: {
            "type": "object",
            "properties": {
                name: {"type": "string", "minLength": 1, **({"x-secret": True} if secret else {})}
                for name, secret in CREDENTIAL_FIELDS[auth_type].items()
            },
            "required": list(CREDENTIAL_FIELDS[auth_type]),
            "additionalProperties": False,
        }
        for auth_type in auth_types
    }


def is_secret_field(auth_type: str, name: str) -> bool:
    return CREDENTIAL_FIELDS.get(auth_type, {}).get(name, True)


@dataclass
class ConnectorContext:
    """What a connector is given: never a model, so connectors stay free of the database."""

    base_url: str
    auth_type: str
    config: dict
    credentials: dict[str, str]  # field -> secret reference or plain (non-secret) value
    resolve_secret: Callable[[str], str]
    name: str = ""
    # The external ids Syncplane already holds for this integration (an ITSM connector's own changes, by the
    # id stored at create), read when the connector asks; None where the caller has no database (tests).
    known_ids: Callable[[], set[str]] | None = None

    def credential(self, name: str) -> str:
        value = self.credentials.get(name)
        if not value:
            raise ConfigurationError(f"credential '{name}' is not set")
        return self.resolve_secret(value) if is_secret_field(self.auth_type, name) else value

    def secret_values(self) -> list[str]:
        """Resolved secrets, for redaction; resolving them is cheap after the first time."""
        values = []
        for name, ref in self.credentials.items():
            if ref and is_secret_field(self.auth_type, name):
                try:
                    values.append(self.resolve_secret(ref))
                except Exception:  # noqa: S112 - an unresolvable secret cannot leak either
                    continue
        return values


@dataclass
class Page:
    """One page of raw records and where to continue once it is committed."""

    records: list[dict]
    resume: dict | None = None  # None: this was the last page
    cursor: Any = None  # the incremental cursor after this page (greatest change marker seen so far)
    total: int | None = None  # total the source announced, when it does


@dataclass
class MappedRecord:
    external_id: str
    attributes: dict
    raw: dict = field(repr=False, default_factory=dict)
    # Canonical field -> the vendor value no mapping table knew (the field took its fallback, e.g. status
    # "unknown"). The engine counts them per run and names them on the log (`unmapped_summary`).
    unmapped: dict[str, str] = field(default_factory=dict)


@dataclass
class EventResult:
    """What a monitoring sink said about one event of a batch (`Connector.send_events`)."""

    event_id: str
    outcome: str  # "delivered" (also: already there, e.g. Elastic 409) | "retry" | "rejected"
    reason: str = ""  # why it must be retried or was refused, in the sink's words
    retry_after: float | None = None
    remote_id: str = ""  # the sink's own id of a delivered event, always a string (Datadog's are 64-bit)


@dataclass
class MetricPoint:
    """One value of a metric series (`Connector.send_metrics`): a gauge unless `kind` says "count"."""

    name: str  # syncplane.sync.duration_seconds, syncplane.assets ...
    value: float
    timestamp: float  # Unix seconds
    tags: dict[str, str] = field(default_factory=dict)
    kind: str = "gauge"


@dataclass
class ConnectionResult:
    ok: bool
    message: str
    details: dict = field(default_factory=dict)


class Connector:
    system_type: ClassVar[str]
    category: ClassVar[str]
    display_name: ClassVar[str]
    record_kind: ClassVar[str] = RecordKind.ASSET
    auth_types: ClassVar[tuple[str, ...]] = (AuthType.BASIC,)
    capabilities: ClassVar[frozenset[str]] = frozenset({
        Capability.TEST_CONNECTION, Capability.FULL, Capability.DRY_RUN,
    })
    config_schema: ClassVar[dict] = {"type": "object", "properties": {}, "additionalProperties": False}
    default_sync_interval_minutes: ClassVar[int] = 60  # a new integration's schedule, unless one is given
    # Config fields holding a URL the connector calls with the integration's credentials (Jira's
    # assets_api_base, a token endpoint). Like base_url, each is checked by the outbound URL policy when saved,
    # and pointing one at another host needs the secrets entered again.
    url_config_fields: ClassVar[tuple[str, ...]] = ()
    # What base_url is, for the create form and GET /integration-types/, and the path segments the connector
    # appends itself: a base URL that already holds one is refused on save (it would double the path).
    base_url_help: ClassVar[str] = "Root URL of the external API."
    base_url_example: ClassVar[str] = ""
    owned_path_suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: ConnectorContext):
        self.context = context
        self.config = self.validated_config(context.config)

    # --- description -----------------------------------------------------------------------------
    @classmethod
    def describe(cls) -> dict:
        return {
            "system_type": cls.system_type,
            "display_name": cls.display_name,
            "category": cls.category,
            "record_kind": cls.record_kind,
            "auth_types": list(cls.auth_types),
            "capabilities": sorted(cls.capabilities),
            "default_sync_interval_minutes": cls.default_sync_interval_minutes,
            "config_schema": cls.config_schema,
            "credential_schema": credential_schema(cls.auth_types),
        }

    @classmethod
    def validated_config(cls, config: dict | None) -> dict:
        """The config with defaults filled in; raises ConfigurationError naming the field and the reason."""
        config = dict(config or {})
        validator = jsonschema.Draft202012Validator(cls.config_schema)
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
        if errors:
            raise ConfigurationError("; ".join(_describe_schema_error(e) for e in errors))
        for name, prop in cls.config_schema.get("properties", {}).items():
            if name not in config and "default" in prop:
                config[name] = prop["default"]
        return config

    @classmethod
    def check_base_url(cls, url: str) -> None:
        """Refuse a base URL this connector must not call (PolicyViolation) or cannot use. HTTP connectors
        follow the outbound URL policy; a connector with another protocol overrides this."""
        from syncplane.integrations.urls_policy import check_outbound_url

        check_outbound_url(url)

    @classmethod
    def check_base_url_path(cls, url: str) -> None:
        """Refuse (ConfigurationError) a base URL whose path holds a part the connector appends itself, such
        as ServiceNow's /api/now: the message names that part and the URL to use instead."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        lowered = [s.lower() for s in segments]
        for suffix in cls.owned_path_suffixes:
            owned = [s for s in suffix.lower().split("/") if s]
            for start in range(len(segments) - len(owned) + 1):
                if lowered[start:start + len(owned)] == owned:
                    kept = "".join(f"/{s}" for s in segments[:start])
                    fixed = f"{parts.scheme}://{parts.netloc}{kept}"
                    raise ConfigurationError(
                        f"the URL must stop before {suffix}: {cls.display_name} adds that part itself, so "
                        f"calls would go to a doubled path. Use {fixed}"
                    )

    @classmethod
    def check_config_url(cls, field: str, url: str) -> None:
        """Refuse (PolicyViolation, ConfigurationError) a URL-valued config field the connector must not call."""
        from syncplane.integrations.urls_policy import check_outbound_url

        check_outbound_url(url)

    @classmethod
    def credential_destinations(cls, base_url: str, config: dict) -> dict[str, tuple | None]:
        """Where the credentials go: the origin (scheme, host, port) of base_url and of each URL config field."""
        from syncplane.integrations.urls_policy import url_origin

        destinations = {"base_url": url_origin(base_url)}
        for name in cls.url_config_fields:
            destinations[f"config.{name}"] = url_origin((config or {}).get(name) or "")
        return destinations

    @classmethod
    def check_settings(cls, base_url: str, config: dict) -> None:
        """Refuse (ConfigurationError, naming the fields) a base URL and config that contradict each other, such
        as a Datadog base URL of another site than the one chosen. Called when an integration is saved."""

    @classmethod
    def check_credential(cls, auth_type: str, name: str, value: str) -> None:
        """Refuse (ConfigurationError, saying what is wrong without quoting the value) a credential this
        connector cannot use: a private key of the wrong type or curve, a service-account key missing fields.
        Called when an integration is saved, with the value as entered or as its reference resolves."""

    @classmethod
    def supports(cls, capability: str) -> bool:
        return capability in cls.capabilities

    # --- behaviour every connector implements ----------------------------------------------------
    def test_connection(self) -> ConnectionResult:
        raise NotImplementedError

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        """Yield pages. `cursor` is the committed incremental cursor; `resume` a page's resume token."""
        raise NotImplementedError

    def map_record(self, raw: dict) -> MappedRecord:
        """Pure: vendor record -> canonical record. Raises RecordError for a record that cannot be used."""
        raise NotImplementedError

    def still_present(self, external_ids: list[str]) -> set[str]:
        """Which of these ids the external system still has (connectors with the "lookup" capability)."""
        raise NotImplementedError

    def list_ids(self) -> Iterator[str]:
        """Every live record's external id, in the scope `fetch` reads, and nothing else of them (capability
        "list_ids": a source whose incremental reads cannot report deletions, such as LDAP). After a clean
        incremental pass the engine marks the known records missing from this listing deleted."""
        raise NotImplementedError

    def check_password(self, username: str, password: str) -> None:
        """Check a person's password with the system itself (connectors with the "password_sign_in" capability).
        Returns when it is right; raises AuthenticationError when it is wrong (or the system refuses the
        account), IntegrationError when the system cannot tell (unreachable, misconfigured)."""
        raise NotImplementedError

    # --- monitoring sinks (Capability.SEND_EVENTS / SEND_METRICS) -----------------------------------
    # The limits of one call: the outbox hands send_events at most this many events of at most these bytes.
    max_batch_events: ClassVar[int] = 500
    max_batch_bytes: ClassVar[int] = 1_000_000
    max_event_bytes: ClassVar[int] = 64_000  # a larger event is truncated or refused, with the reason recorded

    def send_events(self, events: list[dict]) -> list[EventResult]:
        """Send a batch of EventEnvelopes (records.EventEnvelope) in order, the event id as the idempotency
        key. Returns one EventResult per event. Raises TransientError (429, 5xx, timeout: the whole batch is
        tried again, honouring Retry-After), AuthenticationError (401/403, a revoked token: the sink is
        unhealthy and its retries stop), any other IntegrationError (the whole batch refused for good)."""
        raise NotImplementedError

    def send_metrics(self, points: list[MetricPoint]) -> None:
        """Send metric points; raises as send_events does."""
        raise NotImplementedError

    # --- scanners (Capability.REPORT_UPLOAD) -------------------------------------------------------
    @classmethod
    def parse_report(cls, stream, *, target: dict | None = None) -> Iterator[MappedRecord]:
        """Stream a report file (binary file object) of this tool into finding records (record_kind "finding"),
        in bounded memory. Raises RecordError for a file that is not this tool's report, or is cut short;
        the caller writes nothing from a report that fails. `target` (a FindingTarget), when given, replaces
        what the report says was scanned, in every record (the upload's `target` field)."""
        raise NotImplementedError

    def external_id(self, raw: Any) -> str:
        """The record's id for the error log, when a record fails before it is mapped; "" if unknown."""
        return ""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _describe_schema_error(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "config"
    return f"{where}: {error.message}"


def build_auth(context: ConnectorContext, *, token_url: str | None = None) -> httpx.Auth | None:
    """The httpx auth for the integration's auth type (shared by every HTTP connector)."""
    from syncplane.integrations import auth

    kind = context.auth_type
    if kind == AuthType.BASIC:
        return auth.basic_auth(context.credential("username"), context.credential("password"))
    if kind == AuthType.BEARER:
        return auth.BearerTokenAuth(context.credential("token"))
    if kind in (AuthType.OAUTH2_CLIENT_CREDENTIALS, AuthType.OAUTH2_PASSWORD):
        if not token_url:
            raise ConfigurationError(f"{kind} needs a token URL")
        password_grant = kind == AuthType.OAUTH2_PASSWORD
        return auth.OAuth2Auth(
            token_url,
            context.credential("client_id"),
            context.credential("client_secret"),
            grant="password" if password_grant else "client_credentials",
            username=context.credential("username") if password_grant else None,
            password=context.credential("password") if password_grant else None,
        )
    if kind == AuthType.NONE:
        return None
    raise ConfigurationError(f"auth type {kind!r} is not supported")
