from datetime import datetime

from django.db.models import Count, Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from syncplane.core.api import JSONObjectField, StrictFieldsMixin
from syncplane.integrations import field_mapping, health, secrets
from syncplane.integrations.base import CREDENTIAL_FIELDS, is_secret_field
from syncplane.integrations.choices import ErrorKind, RecordKind, RecordStatus, RunStatus, SyncMode, SystemType
from syncplane.integrations.errors import ConfigurationError, IntegrationError
from syncplane.integrations.models import (
    ExternalSystem,
    IntegrationSyncLog,
    OutboxMessage,
    OutboxStatus,
    SyncRecordOutcome,
)
from syncplane.integrations.registry import get_connector_class, registered_types

# The schedule's spacing: at most a week. The beat job looks every 5 minutes, so 0 (and anything below 5)
# means "at every look". Whether the schedule syncs an integration at all is `enabled` and `scheduled`.
MAX_SYNC_INTERVAL_MINUTES = 7 * 24 * 60
SYNC_INTERVAL_HELP = (
    f"Minutes between scheduled syncs, 0 to {MAX_SYNC_INTERVAL_MINUTES} (a week). The schedule looks every 5 "
    "minutes: 0 syncs at every look. Default: the connector's default_sync_interval_minutes."
)
ENABLED_HELP = ("Off: the schedule leaves this integration alone, whatever `scheduled` says; syncs asked for by "
                "hand still run.")


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class CredentialsField(JSONObjectField):
    """Credential fields by name, each a non-empty string (a JSON text area in the browsable API's form)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        bad = sorted(name for name, item in value.items() if not isinstance(item, str) or not item.strip()
                     or len(item) > 10000)
        if bad:
            raise serializers.ValidationError(f"{', '.join(bad)}: must be a non-empty string (10000 at most)")
        return value


@extend_schema_field({"type": "object", "additionalProperties": True})
class ObjectField(JSONObjectField):
    """A JSON object: config, field_mapping."""


class IntegrationSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    credentials = CredentialsField(
        write_only=True,
        required=False,
        help_text="Credential fields of the auth type. Secret fields accept a reference (env:NAME, file:/path, "
        "vault:path#key) or a plain value, which is stored encrypted. Never returned.",
    )
    config = ObjectField(required=False, help_text="Settings of the connector: its config_schema in "
                         "GET /api/v1/integration-types/. Omitted settings take their defaults.")
    field_mapping = ObjectField(
        required=False,
        help_text="Overrides of the connector's default mapping: canonical field -> {source, steps: [{op, ...}]} "
        "(or the shorthand transform, map, default, date_format). See docs/runbooks/integration-setup.md.",
    )
    enabled = serializers.BooleanField(required=False, help_text=ENABLED_HELP)
    last_sync_status = serializers.ChoiceField(choices=RunStatus.choices, allow_blank=True, read_only=True,
                                               help_text="Empty until the first run finishes.")
    sync_interval_minutes = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_SYNC_INTERVAL_MINUTES, help_text=SYNC_INTERVAL_HELP
    )
    credentials_status = serializers.SerializerMethodField(
        help_text="For each credential field: whether it is set and how (env, file, vault, enc). Non-secret "
        "fields (user names, client ids) show their value."
    )
    # Not a URLField: directories are reached over ldap:// and ldaps://; each connector checks its own URLs.
    base_url = serializers.CharField(
        max_length=500, help_text="Root URL of the external API (or LDAP server), without the API path the "
        "connector adds itself: each type's base_url in GET /api/v1/integration-types/ says which part.",
    )
    webhook_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=10000,
        help_text="Secret that inbound webhooks (ITSM) are verified with: a reference (env:, file:, vault:) or a "
        "plain value, stored encrypted. Empty clears it. Never returned.",
    )
    webhook_secret_status = serializers.SerializerMethodField(
        help_text="Whether a webhook secret is set and how (env, file, vault, enc)."
    )
    health = serializers.SerializerMethodField(
        help_text="healthy, degraded (a failure or two in a row, a partial run, dead-lettered events), failing "
        "(failures in a row, or a sink whose credentials are refused) or disabled. See docs/events.md."
    )
    auto_disable_after = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1000,
        help_text="Disable the integration after this many failures in a row (runs, or deliveries for a sink); "
        "null (the default): never. Emits integration.unhealthy.",
    )
    next_scheduled_run = serializers.SerializerMethodField(
        help_text="When the schedule syncs it next (the first look of the beat from then on); null when it does "
        "not (disabled, not scheduled, or a monitoring sink)."
    )
    delivery_paused = serializers.SerializerMethodField(
        help_text="A monitoring sink that refused its credentials: its events wait until an admin saves it."
    )
    outbox_backlog = serializers.SerializerMethodField(help_text="Events waiting to be sent to this sink.")
    outbox_dead_letters = serializers.SerializerMethodField(
        help_text="Events that failed for good (GET /api/v1/outbox/?status=dead&integration=ID)."
    )

    class Meta:
        model = ExternalSystem
        fields = [
            "id", "name", "system_type", "category", "base_url", "auth_type", "credentials",
            "credentials_status", "webhook_secret", "webhook_secret_status", "config", "field_mapping", "enabled",
            "scheduled", "sync_interval_minutes", "last_sync_at",
            "last_sync_status", "last_error", "health", "consecutive_failures", "last_success_at",
            "next_scheduled_run", "auto_disable_after", "disabled_reason", "delivery_paused", "outbox_backlog",
            "outbox_dead_letters", "created_at", "updated_at",
        ]
        read_only_fields = ["category", "last_sync_at", "last_sync_status", "last_error", "consecutive_failures",
                            "last_success_at", "disabled_reason"]

    def get_health(self, obj) -> str:
        return health.shown_health(obj)

    def get_next_scheduled_run(self, obj) -> datetime | None:
        return health.next_scheduled_run(obj)

    def get_delivery_paused(self, obj) -> bool:
        return obj.delivery_paused_at is not None

    def get_outbox_backlog(self, obj) -> int:
        return getattr(obj, "outbox_backlog", None) or 0

    def get_outbox_dead_letters(self, obj) -> int:
        return getattr(obj, "outbox_dead_letters", None) or 0

    def get_credentials_status(self, obj) -> dict:
        status = {}
        for name, value in (obj.credentials or {}).items():
            if is_secret_field(obj.auth_type, name):
                status[name] = {"set": bool(value), "source": value.split(":", 1)[0] if value else None}
            else:
                status[name] = {"set": bool(value), "value": value}
        return status

    def get_webhook_secret_status(self, obj) -> dict:
        value = obj.webhook_secret
        return {"set": bool(value), "source": value.split(":", 1)[0] if value else None}

    def validate_webhook_secret(self, value):
        if not value:
            return ""
        try:
            return secrets.to_reference(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_system_type(self, value):
        if value not in registered_types():
            available = ", ".join(registered_types()) or "none"
            raise serializers.ValidationError(f"no connector for {value!r} yet; available: {available}")
        return value

    def validate_base_url(self, value):
        return value.strip().rstrip("/")

    def validate_name(self, value):
        clash = ExternalSystem.objects.live().filter(name=value)
        if self.instance is not None:
            clash = clash.filter(~Q(pk=self.instance.pk))
        if clash.exists():
            raise serializers.ValidationError("an integration with this name already exists")
        return value

    def validate_field_mapping(self, value):
        # The fields a mapping may set are those of the connector's records (assets, directory, findings).
        system_type = self.instance.system_type if self.instance else self.initial_data.get("system_type")
        connector = registered_types().get(system_type) if isinstance(system_type, str) else None
        problems = field_mapping.validate(value, connector.record_kind if connector else RecordKind.ASSET)
        if problems:
            raise serializers.ValidationError(problems)
        return value

    def validate(self, attrs):
        instance = self.instance
        system_type = attrs.get("system_type", instance.system_type if instance else None)
        if instance is not None and system_type != instance.system_type:
            raise serializers.ValidationError({"system_type": "cannot be changed; create a new integration"})
        connector = get_connector_class(system_type)
        auth_type = attrs.get("auth_type", instance.auth_type if instance else connector.auth_types[0])
        if auth_type not in connector.auth_types:
            raise serializers.ValidationError(
                {"auth_type": f"{connector.display_name} supports {', '.join(connector.auth_types)}"}
            )
        attrs["auth_type"] = auth_type
        if "base_url" in attrs:
            try:
                connector.check_base_url_path(attrs["base_url"])
                connector.check_base_url(attrs["base_url"])
            except IntegrationError as exc:  # a refused address, a host that does not resolve, a wrong scheme
                raise serializers.ValidationError({"base_url": str(exc)}) from None
        if "config" in attrs or instance is None:
            try:
                attrs["config"] = connector.validated_config(attrs.get("config", {}))
            except ConfigurationError as exc:
                raise serializers.ValidationError({"config": str(exc)}) from None
        if "config" in attrs:
            self._check_config_urls(connector, attrs["config"])
        if "config" in attrs or "base_url" in attrs:
            try:
                connector.check_settings(attrs.get("base_url", instance.base_url if instance else ""),
                                         attrs.get("config", instance.config if instance else {}))
            except ConfigurationError as exc:
                raise serializers.ValidationError({"config": str(exc)}) from None
        if instance is None and "sync_interval_minutes" not in attrs:
            attrs["sync_interval_minutes"] = connector.default_sync_interval_minutes
        if instance is not None:
            self._check_secrets_follow(connector, attrs, instance, auth_type)
        attrs["credentials"] = self._credentials(attrs, auth_type, instance)
        attrs["category"] = connector.category
        return attrs

    @staticmethod
    def _check_config_urls(connector, config: dict) -> None:
        """Every URL-valued config field passes the outbound URL policy now, not only when a sync runs."""
        properties = connector.config_schema.get("properties", {})
        for name in connector.url_config_fields:
            value = config.get(name)
            if not value or value == properties.get(name, {}).get("default"):
                continue  # empty means "derived from base_url"; the default is the vendor's own host
            try:
                connector.check_config_url(name, value)
            except IntegrationError as exc:
                raise serializers.ValidationError({"config": f"{name}: {exc}"}) from None

    @staticmethod
    def _check_secrets_follow(connector, attrs, instance, auth_type) -> None:
        """Stored secrets are never sent to a new host: pointing base_url (or a URL config field the credentials
        go to) at another scheme, host or port needs every secret credential field in the same request."""
        before = connector.credential_destinations(instance.base_url, instance.config)
        after = connector.credential_destinations(attrs.get("base_url", instance.base_url),
                                                  attrs.get("config", instance.config))
        moved = [name for name in after if after[name] != before.get(name)]
        if not moved:
            return
        given = attrs.get("credentials") or {}
        missing = [name for name, secret in CREDENTIAL_FIELDS[auth_type].items() if secret and name not in given]
        if missing:
            raise serializers.ValidationError({"credentials": (
                f"{', '.join(moved)} now point{'s' if len(moved) == 1 else ''} at another host: enter "
                f"{', '.join(missing)} again in the same request (stored secrets are never sent to a new host)"
            )})

    @staticmethod
    def _check_credential(connector, auth_type: str, name: str, stored: str, *, secret: bool) -> None:
        """The connector's own check of a value just entered (a key's type, a key file's fields). A reference
        that cannot be read yet (a Vault that is down, a file to be created) is checked at the first sync."""
        try:
            value = secrets.resolve_secret(stored) if secret else stored
        except IntegrationError:
            return
        try:
            connector.check_credential(auth_type, name, value)
        except ConfigurationError as exc:
            raise serializers.ValidationError({"credentials": f"{name}: {exc}"}) from None

    def _credentials(self, attrs, auth_type, instance) -> dict:
        given = attrs.get("credentials")
        expected = CREDENTIAL_FIELDS[auth_type]
        # Switching auth type drops the old fields; otherwise fields not sent are kept as they were.
        kept = dict(instance.credentials) if instance and instance.auth_type == auth_type else {}
        if given is not None:
            unknown = set(given) - set(expected)
            if unknown:
                raise serializers.ValidationError(
                    {"credentials": f"unknown fields for {auth_type}: {', '.join(sorted(unknown))}; "
                     f"expected {', '.join(expected) or 'none'}"}
                )
            connector = get_connector_class(attrs.get("system_type") or instance.system_type)
            for name, value in given.items():
                if expected[name]:
                    try:
                        kept[name] = secrets.to_reference(value)
                    except ValueError as exc:
                        raise serializers.ValidationError({"credentials": f"{name}: {exc}"}) from None
                else:
                    kept[name] = value
                self._check_credential(connector, auth_type, name, kept[name], secret=expected[name])
        missing = [name for name in expected if not kept.get(name)]
        if missing:
            raise serializers.ValidationError(
                {"credentials": f"{auth_type} needs {', '.join(missing)}"}
            )
        return kept


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    error_kind = serializers.CharField(required=False)
    details = serializers.DictField(required=False)


class SyncRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    mode = serializers.ChoiceField(choices=SyncMode.choices, default=SyncMode.FULL)
    dry_run = serializers.BooleanField(default=False)


class SyncAcceptedSerializer(serializers.Serializer):
    sync_log_id = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField()


class SyncLogSerializer(serializers.ModelSerializer):
    external_system = serializers.PrimaryKeyRelatedField(read_only=True)
    error_kind = serializers.ChoiceField(choices=ErrorKind.choices, allow_blank=True, read_only=True,
                                         help_text="Empty unless the run failed.")

    class Meta:
        model = IntegrationSyncLog
        fields = [
            "id", "external_system", "system_name", "system_type", "correlation_id", "trigger", "mode", "dry_run",
            "requested_by", "status", "resumed_from", "queued_at", "started_at", "finished_at", "heartbeat_at",
            "duration_ms", "attempts", "pages", "total_expected", "records_read", "records_created",
            "records_updated", "records_unchanged", "records_deleted", "records_failed", "fetch_seconds",
            "map_seconds", "write_seconds", "reconcile_seconds", "error_kind", "error_summary",
            "cancel_requested_at", "cancel_requested_by", "previous_hash", "hash",
        ]
        read_only_fields = fields


class OutcomeSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRecordOutcome
        fields = ["external_id", "action", "status", "changes", "reason", "raw_payload", "created_at"]
        read_only_fields = fields


DETAIL_ROWS = 200


class SyncLogDetailSerializer(SyncLogSerializer):
    record_errors = serializers.SerializerMethodField(
        help_text=f"Failed records (the first {DETAIL_ROWS}; all of them: the outcomes endpoint)."
    )
    record_errors_total = serializers.SerializerMethodField(help_text="How many records failed in this run.")
    record_errors_truncated = serializers.SerializerMethodField(
        help_text=f"True when record_errors shows only the first {DETAIL_ROWS} of record_errors_total."
    )
    changes = serializers.SerializerMethodField(
        help_text=f"Record changes (the first {DETAIL_ROWS}); in a dry run, the planned changes."
    )
    changes_total = serializers.SerializerMethodField(help_text="How many record changes the run has.")
    changes_truncated = serializers.SerializerMethodField(
        help_text=f"True when changes shows only the first {DETAIL_ROWS} of changes_total."
    )
    outcomes_url = serializers.SerializerMethodField(
        help_text="Every record outcome of the run, paged and filterable (?status=failed&action=update)."
    )

    class Meta(SyncLogSerializer.Meta):
        fields = [*SyncLogSerializer.Meta.fields, "record_errors", "record_errors_total", "record_errors_truncated",
                  "changes", "changes_total", "changes_truncated", "outcomes_url"]
        read_only_fields = fields

    def _totals(self, obj) -> dict:
        if getattr(obj, "_outcome_totals", None) is None:  # one aggregate query for the four fields
            obj._outcome_totals = obj.outcomes.aggregate(
                failed=Count("id", filter=Q(status=RecordStatus.FAILED)),
                changes=Count("id", filter=~Q(status=RecordStatus.FAILED)),
            )
        return obj._outcome_totals

    def get_record_errors(self, obj) -> list[dict]:
        rows = obj.outcomes.filter(status=RecordStatus.FAILED)[:DETAIL_ROWS]
        return OutcomeSerializer(rows, many=True).data

    def get_record_errors_total(self, obj) -> int:
        return self._totals(obj)["failed"]

    def get_record_errors_truncated(self, obj) -> bool:
        return self._totals(obj)["failed"] > DETAIL_ROWS

    def get_changes(self, obj) -> list[dict]:
        rows = obj.outcomes.exclude(status=RecordStatus.FAILED).defer("raw_payload")[:DETAIL_ROWS]
        return ChangeRowSerializer(rows, many=True).data

    def get_changes_total(self, obj) -> int:
        return self._totals(obj)["changes"]

    def get_changes_truncated(self, obj) -> bool:
        return self._totals(obj)["changes"] > DETAIL_ROWS

    def get_outcomes_url(self, obj) -> str:
        return reverse("integration-sync-log-outcomes", args=[obj.pk], request=self.context.get("request"))


class ChangeRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRecordOutcome
        fields = ["external_id", "action", "status", "changes"]
        read_only_fields = fields


class BaseUrlDescriptionSerializer(serializers.Serializer):
    description = serializers.CharField(help_text="What the URL is for this connector, and what to leave out.")
    example = serializers.CharField(allow_blank=True)
    refused_path_parts = serializers.ListField(
        child=serializers.CharField(), help_text="Path parts the connector adds itself: a base URL holding one "
        "is refused, since every call would go to a doubled path."
    )


class SettingDescriptionSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    default = serializers.JSONField()
    minimum = serializers.IntegerField(required=False)
    maximum = serializers.IntegerField(required=False)


class IntegrationTypeSerializer(serializers.Serializer):
    system_type = serializers.ChoiceField(choices=SystemType.choices)
    display_name = serializers.CharField()
    category = serializers.CharField()
    record_kind = serializers.CharField()
    auth_types = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
    default_sync_interval_minutes = serializers.IntegerField()
    base_url = BaseUrlDescriptionSerializer(help_text="The create body's base_url, for this connector.")
    enabled = SettingDescriptionSerializer(help_text="The create body's enabled.")
    scheduled = SettingDescriptionSerializer(help_text="The create body's scheduled.")
    sync_interval_minutes = SettingDescriptionSerializer(help_text="The create body's sync_interval_minutes.")
    config_schema = serializers.DictField()
    credential_schema = serializers.DictField()


def describe_type(connector) -> dict:
    """A connector's description plus the parts of the create body that are not its config or credentials."""
    return {
        **connector.describe(),
        "base_url": {
            "description": connector.base_url_help,
            "example": connector.base_url_example,
            "refused_path_parts": list(connector.owned_path_suffixes),
        },
        "enabled": {"type": "boolean", "description": ENABLED_HELP, "default": True},
        "scheduled": {"type": "boolean", "description": ExternalSystem._meta.get_field("scheduled").help_text,
                      "default": False},
        "sync_interval_minutes": {
            "type": "integer", "description": SYNC_INTERVAL_HELP, "minimum": 0,
            "maximum": MAX_SYNC_INTERVAL_MINUTES, "default": connector.default_sync_interval_minutes,
        },
    }


class PreviewRecordSerializer(serializers.Serializer):
    external_id = serializers.CharField(allow_blank=True)
    raw = serializers.JSONField()
    mapped = serializers.DictField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class PreviewWarningSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The canonical attribute of the field mapping concerned.")
    problem = serializers.ChoiceField(choices=["source_missing", "map_unmatched", "date_format", "records_fail"])
    message = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    total = serializers.IntegerField(allow_null=True, help_text="Records the source announced, when it does.")
    records = PreviewRecordSerializer(many=True)
    warnings = PreviewWarningSerializer(
        many=True, help_text="Field mapping rules that did nothing or dropped records on this page, per field."
    )


class PreviewRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    field_mapping = ObjectField(
        required=False,
        help_text="A field mapping to try instead of the saved one, validated as on save; nothing is saved.",
    )

    def validate_field_mapping(self, value):
        problems = field_mapping.validate(value, self.context["record_kind"])
        if problems:
            raise serializers.ValidationError(problems)
        return value


class RecordOutcomeSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRecordOutcome
        fields = ["id", "external_id", "action", "status", "changes", "reason", "raw_payload", "created_at"]
        read_only_fields = fields


class OutboxMessageSerializer(serializers.ModelSerializer):
    integration = serializers.PrimaryKeyRelatedField(source="external_system", read_only=True)
    integration_name = serializers.CharField(source="external_system.name", read_only=True)
    dead_letter = serializers.SerializerMethodField(
        help_text="Failed for good: last_error says why; an admin may resend it (POST .../resend/)."
    )

    class Meta:
        model = OutboxMessage
        fields = [
            "id", "kind", "integration", "integration_name", "subject_type", "subject_id", "status", "dead_letter",
            "attempts", "next_attempt_at", "last_error", "created_at", "delivered_at", "idempotency_key",
            "payload",
        ]
        read_only_fields = fields

    def get_dead_letter(self, obj) -> bool:
        return obj.status == OutboxStatus.FAILED


class HealthSummarySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "failing"], help_text="failing when any integration is.")
    integrations = serializers.ListField(child=serializers.DictField())
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Integrations per health.")
    outbox = serializers.DictField(help_text="Events waiting (backlog), dead letters, age of the oldest waiting.")
