from django.db.models import Q
from rest_framework import serializers

from syncplane.integrations import field_mapping, secrets
from syncplane.integrations.base import CREDENTIAL_FIELDS, is_secret_field
from syncplane.integrations.choices import RecordStatus, SyncMode, SystemType
from syncplane.integrations.errors import ConfigurationError, IntegrationError
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome
from syncplane.integrations.registry import get_connector_class, registered_types


class IntegrationSerializer(serializers.ModelSerializer):
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=False, max_length=10000),
        write_only=True,
        required=False,
        help_text="Credential fields of the auth type. Secret fields accept a reference (env:NAME, file:/path, "
        "vault:path#key) or a plain value, which is stored encrypted. Never returned.",
    )
    credentials_status = serializers.SerializerMethodField(
        help_text="For each credential field: whether it is set and how (env, file, vault, enc). Non-secret "
        "fields (user names, client ids) show their value."
    )
    # Not a URLField: directories are reached over ldap:// and ldaps://; each connector checks its own URLs.
    base_url = serializers.CharField(max_length=500, help_text="Root URL of the external API (or LDAP server).")
    webhook_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=10000,
        help_text="Secret that inbound webhooks (ITSM) are verified with: a reference (env:, file:, vault:) or a "
        "plain value, stored encrypted. Empty clears it. Never returned.",
    )
    webhook_secret_status = serializers.SerializerMethodField(
        help_text="Whether a webhook secret is set and how (env, file, vault, enc)."
    )

    class Meta:
        model = ExternalSystem
        fields = [
            "id", "name", "system_type", "category", "base_url", "auth_type", "credentials",
            "credentials_status", "webhook_secret", "webhook_secret_status", "config", "field_mapping", "enabled",
            "sync_interval_minutes", "last_sync_at",
            "last_sync_status", "last_error", "created_at", "updated_at",
        ]
        read_only_fields = ["category", "last_sync_at", "last_sync_status", "last_error"]

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
        problems = field_mapping.validate(value)
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
                connector.check_base_url(attrs["base_url"])
            except IntegrationError as exc:  # a refused address, a host that does not resolve, a wrong scheme
                raise serializers.ValidationError({"base_url": str(exc)}) from None
        if "config" in attrs or instance is None:
            try:
                attrs["config"] = connector.validated_config(attrs.get("config", {}))
            except ConfigurationError as exc:
                raise serializers.ValidationError({"config": str(exc)}) from None
        if instance is None and "sync_interval_minutes" not in attrs:
            attrs["sync_interval_minutes"] = connector.default_sync_interval_minutes
        attrs["credentials"] = self._credentials(attrs, auth_type, instance)
        attrs["category"] = connector.category
        return attrs

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
            for name, value in given.items():
                if expected[name]:
                    try:
                        kept[name] = secrets.to_reference(value)
                    except ValueError as exc:
                        raise serializers.ValidationError({"credentials": f"{name}: {exc}"}) from None
                else:
                    kept[name] = value
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


class SyncRequestSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=SyncMode.choices, default=SyncMode.FULL)
    dry_run = serializers.BooleanField(default=False)


class SyncAcceptedSerializer(serializers.Serializer):
    sync_log_id = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField()


class SyncLogSerializer(serializers.ModelSerializer):
    external_system = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = IntegrationSyncLog
        fields = [
            "id", "external_system", "system_name", "system_type", "correlation_id", "trigger", "mode", "dry_run",
            "requested_by", "status", "resumed_from", "queued_at", "started_at", "finished_at", "heartbeat_at",
            "duration_ms", "attempts", "pages", "total_expected", "records_read", "records_created",
            "records_updated", "records_unchanged", "records_deleted", "records_failed", "fetch_seconds",
            "map_seconds", "write_seconds", "reconcile_seconds", "error_kind", "error_summary", "previous_hash",
            "hash",
        ]
        read_only_fields = fields


class OutcomeSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRecordOutcome
        fields = ["external_id", "action", "status", "changes", "reason", "raw_payload", "created_at"]
        read_only_fields = fields


DETAIL_ROWS = 200


class SyncLogDetailSerializer(SyncLogSerializer):
    record_errors = serializers.SerializerMethodField(help_text=f"Failed records (the first {DETAIL_ROWS}).")
    changes = serializers.SerializerMethodField(
        help_text=f"Record changes (the first {DETAIL_ROWS}); in a dry run, the planned changes."
    )

    class Meta(SyncLogSerializer.Meta):
        fields = [*SyncLogSerializer.Meta.fields, "record_errors", "changes"]
        read_only_fields = fields

    def get_record_errors(self, obj) -> list[dict]:
        rows = obj.outcomes.filter(status=RecordStatus.FAILED)[:DETAIL_ROWS]
        return OutcomeSerializer(rows, many=True).data

    def get_changes(self, obj) -> list[dict]:
        rows = obj.outcomes.exclude(status=RecordStatus.FAILED).defer("raw_payload")[:DETAIL_ROWS]
        return [
            {"external_id": r.external_id, "action": r.action, "status": r.status, "changes": r.changes}
            for r in rows
        ]


class IntegrationTypeSerializer(serializers.Serializer):
    system_type = serializers.ChoiceField(choices=SystemType.choices)
    display_name = serializers.CharField()
    category = serializers.CharField()
    record_kind = serializers.CharField()
    auth_types = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
    default_sync_interval_minutes = serializers.IntegerField()
    config_schema = serializers.DictField()
    credential_schema = serializers.DictField()


class PreviewRecordSerializer(serializers.Serializer):
    external_id = serializers.CharField(allow_blank=True)
    raw = serializers.DictField()
    mapped = serializers.DictField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class PreviewSerializer(serializers.Serializer):
    total = serializers.IntegerField(allow_null=True, help_text="Records the source announced, when it does.")
    records = PreviewRecordSerializer(many=True)
