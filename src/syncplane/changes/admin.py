from django.contrib import admin

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest
from syncplane.integrations.models import OutboxMessage


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ChangeEventInline(ReadOnlyInline):
    model = ChangeEvent
    fields = ["sequence", "event_type", "from_state", "to_state", "actor", "source", "detail", "created_at"]
    readonly_fields = fields


class ApprovalRecordInline(ReadOnlyInline):
    model = ApprovalRecord
    fields = ["external_id", "approver", "decision", "comment", "decided_at", "source"]
    readonly_fields = fields


@admin.register(ChangeRequest)
class ChangeRequestAdmin(admin.ModelAdmin):
    list_display = ["title", "state", "risk_score", "external_system", "external_change_request_id", "created_at"]
    list_filter = ["state", "external_system"]
    search_fields = ["title", "external_change_request_id", "correlation_id"]
    # The state moves only through the state machine (API actions, polls, webhooks), never by hand.
    readonly_fields = ["state", "requester", "correlation_id", "external_key", "external_change_request_id",
                       "external_url", "submission_error", "external_updated_at", "created_at", "updated_at"]
    inlines = [ChangeEventInline, ApprovalRecordInline]

    # Only a draft can be edited, here as in the API: a submitted change says what the CAB and the ITSM tool
    # were given, and an edit here would record no event. The model and the database refuse it too.
    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.state != ChangeState.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.state != ChangeState.DRAFT:
            return False
        return super().has_delete_permission(request, obj)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Read-only: the outbox is written by the change rules and drained by the workers."""

    list_display = ["id", "kind", "external_system", "subject_id", "status", "attempts", "next_attempt_at",
                    "delivered_at"]
    list_filter = ["status", "kind", "external_system"]
    search_fields = ["idempotency_key", "subject_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
