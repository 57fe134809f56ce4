from rest_framework import serializers

from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest
from syncplane.core.api import StrictFieldsMixin
from syncplane.integrations.choices import Category
from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.models import Asset


class ChangeRequestSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    external_system = serializers.PrimaryKeyRelatedField(
        queryset=ExternalSystem.objects.live().filter(category=Category.ITSM), required=False, allow_null=True,
        help_text="The ITSM integration (id) to submit the change to.",
    )
    affected_assets = serializers.PrimaryKeyRelatedField(
        queryset=Asset.objects.all(), many=True, required=False, help_text="Ids of the assets the change touches."
    )
    # Not a URLField in the answer: it is empty until the ITSM tool has the change.
    external_url = serializers.CharField(read_only=True, help_text="The change in the ITSM tool, once created.")

    class Meta:
        model = ChangeRequest
        fields = [
            "id", "title", "description", "risk_score", "planned_start", "planned_end", "affected_assets",
            "requester", "state", "external_system", "external_change_request_id", "external_key", "external_url",
            "correlation_id", "submission_error", "external_updated_at", "created_at", "updated_at",
        ]
        read_only_fields = [
            "requester", "state", "external_change_request_id", "external_key", "external_url", "correlation_id",
            "submission_error", "external_updated_at", "created_at", "updated_at",
        ]
        # The (external_system, external_key) constraint concerns fields only the outbox and syncs write; DRF
        # would otherwise turn it into a validator that makes external_system required.
        validators = []

    def validate(self, attrs):
        start = attrs.get("planned_start", getattr(self.instance, "planned_start", None))
        end = attrs.get("planned_end", getattr(self.instance, "planned_end", None))
        if start and end and end <= start:
            raise serializers.ValidationError({"planned_end": "must be after the planned start"})
        return attrs


class SubmitSerializer(StrictFieldsMixin, serializers.Serializer):
    external_system = serializers.PrimaryKeyRelatedField(
        queryset=ExternalSystem.objects.live().filter(category=Category.ITSM), required=False,
        help_text="The ITSM integration to submit to, when the change does not name one yet.",
    )


class CancelSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class ChangeEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChangeEvent
        fields = ["sequence", "event_type", "from_state", "to_state", "actor", "source", "detail", "correlation_id",
                  "created_at"]
        read_only_fields = fields


class ApprovalRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApprovalRecord
        fields = ["external_id", "approver", "decision", "comment", "decided_at", "source", "created_at"]
        read_only_fields = fields


class HistoryEntrySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["event", "approval"])
    at = serializers.DateTimeField()
    event = ChangeEventSerializer(required=False, allow_null=True)
    approval = ApprovalRecordSerializer(required=False, allow_null=True)


class WebhookResultSerializer(serializers.Serializer):
    changes = serializers.IntegerField(help_text="Changes the notification was about.")
    updated = serializers.IntegerField(help_text="Changes that moved or learned something.")
