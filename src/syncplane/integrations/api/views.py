
from django.db import transaction
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.reverse import reverse

from syncplane.core import roles
from syncplane.core.api import EmptyBodySerializer
from syncplane.integrations import field_mapping, health, outbox
from syncplane.integrations.api import serializers
from syncplane.integrations.choices import RecordAction, RecordKind, RecordStatus, Trigger
from syncplane.integrations.engine import (
    SyncAlreadyFinished,
    SyncAlreadyRunning,
    map_with_overrides,
    request_cancel,
    start_sync,
)
from syncplane.integrations.errors import IntegrationError, RecordError
from syncplane.integrations.models import (
    ExternalSystem,
    IntegrationSyncLog,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SyncRecordOutcome,
)
from syncplane.integrations.registry import build_connector, get_connector_class, registered_types
from syncplane.integrations.sinks import sink_for
from syncplane.integrations.tasks import queue_sync


class IntegrationFilter(filters.FilterSet):
    class Meta:
        model = ExternalSystem
        fields = ["system_type", "category", "enabled", "last_sync_status"]


class IntegrationViewSet(viewsets.ModelViewSet):
    """Integrations: admins manage them; operators test and sync them; viewers read them."""

    queryset = health.with_outbox_counts(ExternalSystem.objects.live())
    serializer_class = serializers.IntegrationSerializer
    filterset_class = IntegrationFilter
    search_fields = ["name", "base_url"]
    ordering_fields = ["name", "created_at", "last_sync_at"]
    action_roles = {"test": roles.OPERATOR, "sync": roles.OPERATOR, "preview": roles.OPERATOR}

    def perform_update(self, serializer):
        was_enabled = serializer.instance.enabled
        with transaction.atomic():
            system = serializer.save()
            health.admin_saved(system, was_enabled=was_enabled)

    def perform_destroy(self, instance):
        # Its sync logs and asset sources are evidence: keep them, retire the integration.
        instance.archived_at = timezone.now()
        instance.enabled = False
        instance.save(update_fields=["archived_at", "enabled", "updated_at"])

    @extend_schema(request=None, responses=serializers.ConnectionTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Try the connection: authenticate and read one record. A failure is an answer, not an error."""
        system = self.get_object()
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        try:
            with build_connector(system) as connector:
                result = connector.test_connection()
        except IntegrationError as exc:
            return Response({"ok": False, "message": str(exc), "error_kind": exc.kind})
        return Response({"ok": result.ok, "message": result.message, "details": result.details})

    @extend_schema(
        request=serializers.SyncRequestSerializer,
        responses={
            202: serializers.SyncAcceptedSerializer,
            409: OpenApiResponse(description="A sync of this integration is already queued or running."),
        },
    )
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Queue a sync. Answers 202 with the sync log to watch, or 409 while one is already going."""
        system = self.get_object()
        body = serializers.SyncRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        mode, dry_run = body.validated_data["mode"], body.validated_data["dry_run"]
        connector = get_connector_class(system.system_type)
        if connector.record_kind == RecordKind.EVENT:
            return Response({"detail": f"{connector.display_name} is a monitoring sink: Syncplane sends it events "
                             "and metrics and reads nothing from it, so there is nothing to sync"},
                            status=status.HTTP_400_BAD_REQUEST)
        if not connector.supports(mode):
            return Response({"mode": [f"{connector.display_name} does not support {mode} syncs"]},
                            status=status.HTTP_400_BAD_REQUEST)
        try:
            log = start_sync(system, mode=mode, dry_run=dry_run, trigger=Trigger.MANUAL,
                             requested_by=request.user.get_username())
        except SyncAlreadyRunning as exc:
            return Response({"detail": str(exc), "sync_log_id": exc.log.pk}, status=status.HTTP_409_CONFLICT)
        queue_sync(log.pk)
        url = reverse("integration-sync-log-detail", args=[log.pk], request=request)
        return Response({"sync_log_id": log.pk, "status": log.status, "url": url},
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=serializers.PreviewRequestSerializer, responses=serializers.PreviewSerializer)
    @action(detail=True, methods=["post"])
    def preview(self, request, pk=None):
        """Fetch the first page and show each raw record beside its mapping (with the integration's field
        mapping, or the `field_mapping` of the body, tried without saving it), with warnings about field mapping
        rules that do nothing or drop records on that page. Writes nothing."""
        system = self.get_object()
        record_kind = get_connector_class(system.system_type).record_kind
        body = serializers.PreviewRequestSerializer(data=request.data, context={"record_kind": record_kind})
        body.is_valid(raise_exception=True)
        overrides = body.validated_data.get("field_mapping", system.field_mapping)
        try:
            page = fetch_first_page(system)
            return Response(preview_sample(system, overrides, page.records if page else [],
                                           page.total if page else None))
        except IntegrationError as exc:
            return Response({"detail": str(exc), "error_kind": exc.kind}, status=status.HTTP_502_BAD_GATEWAY)

    @extend_schema(responses=serializers.SyncLogSerializer(many=True))
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        """The sync history of this integration, newest first."""
        system = self.get_object()
        page = self.paginate_queryset(IntegrationSyncLog.objects.filter(external_system=system))
        return self.get_paginated_response(serializers.SyncLogSerializer(page, many=True).data)


PREVIEW_RECORDS = 20


def fetch_first_page(system: ExternalSystem):
    """The first page of a full read (None when the source has none): the preview's sample."""
    with build_connector(system) as connector:
        return next(iter(connector.fetch("full")), None)


def preview_sample(system: ExternalSystem, overrides, raws: list, total=None, shown: int = PREVIEW_RECORDS) -> dict:
    """The first `shown` raw records beside their mapping with `overrides` (validated as the sync would: assets,
    changes, directory and finding records each by their sink), and the field mapping's warnings on all of
    `raws`. No request to the external system; ConfigurationError for a field mapping that is not valid."""
    connector = build_connector(system)
    mapping = field_mapping.compile_mapping(overrides, connector.record_kind)
    validate = sink_for(connector.record_kind, system.pk).validate
    records = [_preview(connector, mapping, validate, raw) for raw in raws[:shown]]
    kind_of = None if connector.record_kind == RecordKind.ASSET else _kind_of(connector)
    warnings = field_mapping.page_warnings(mapping, raws, connector.record_kind, kind_of)
    return {"total": total, "records": records, "warnings": warnings}


def _kind_of(connector):
    """What kind of record (user, group, device, finding...) the connector makes of a raw record."""
    def kind(raw):
        try:
            return connector.map_record(raw).attributes.get("kind")
        except RecordError:
            return None
    return kind


def _preview(connector, overrides, validate, raw) -> dict:
    try:
        record = map_with_overrides(connector, overrides, raw)
        validate(record)
    except RecordError as exc:
        return {"external_id": connector.external_id(raw), "raw": raw, "mapped": None, "error": str(exc)}
    return {"external_id": record.external_id, "raw": raw, "mapped": record.attributes, "error": None}


class SyncLogFilter(filters.FilterSet):
    class Meta:
        model = IntegrationSyncLog
        fields = ["external_system", "status", "mode", "dry_run", "trigger"]


class OutcomeFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=RecordStatus.choices)
    action = filters.ChoiceFilter(choices=RecordAction.choices)
    external_id = filters.CharFilter()

    class Meta:
        model = SyncRecordOutcome
        fields = ["status", "action", "external_id"]


class IntegrationSyncLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Sync logs: the immutable evidence of every run. Read-only by design; operators may cancel a run that
    has not finished."""

    queryset = IntegrationSyncLog.objects.all()
    filterset_class = SyncLogFilter
    ordering_fields = ["queued_at", "finished_at"]
    action_roles = {"cancel": roles.OPERATOR}

    def get_serializer_class(self):
        if self.action == "retrieve":
            return serializers.SyncLogDetailSerializer
        return serializers.SyncLogSerializer

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(serializers.SyncLogSerializer, description="A queued run, cancelled at once."),
            202: OpenApiResponse(serializers.SyncLogSerializer,
                                 description="A running run: its worker stops it at its next page."),
            409: OpenApiResponse(description="The run has already finished."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running sync. A queued one ends `cancelled` at once; a running one when its worker
        commits its next page (or while it waits), keeping its checkpoint for the next run to resume from."""
        log = self.get_object()
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        try:
            log = request_cancel(log.pk, requested_by=request.user.get_username())
        except SyncAlreadyFinished as exc:
            return Response({"detail": str(exc), "status": exc.log.status}, status=status.HTTP_409_CONFLICT)
        answer = status.HTTP_200_OK if log.is_finished else status.HTTP_202_ACCEPTED
        return Response(serializers.SyncLogSerializer(log, context={"request": request}).data, status=answer)


class SyncLogOutcomesView(generics.ListAPIView):
    """Every record outcome of a run (created, updated, deleted, failed with raw payload and reason; in a dry
    run the planned changes), oldest first, paged, filtered by status, action or external_id."""

    serializer_class = serializers.RecordOutcomeSerializer
    filterset_class = OutcomeFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no log id
            return SyncRecordOutcome.objects.none()
        log = get_object_or_404(IntegrationSyncLog.objects.only("pk"), pk=self.kwargs["log_id"])
        return SyncRecordOutcome.objects.filter(sync_log=log).order_by("id")


class IntegrationTypesViewSet(viewsets.ViewSet):
    """The connectors this server has: what their create body takes (base_url, enabled, sync_interval_minutes),
    and the JSON Schemas of their config and credentials."""

    @extend_schema(responses=serializers.IntegrationTypeSerializer(many=True))
    def list(self, request):
        return Response([serializers.describe_type(cls) for cls in registered_types().values()])


class OutboxFilter(filters.FilterSet):
    status = filters.ChoiceFilter(
        choices=[*OutboxStatus.choices, ("dead", "Dead letters (failed for good)")], method="filter_status",
        help_text="pending, delivered, failed; dead is the same as failed.",
    )
    kind = filters.ChoiceFilter(choices=OutboxKind.choices)
    integration = filters.NumberFilter(field_name="external_system_id")

    class Meta:
        model = OutboxMessage
        fields = ["status", "kind", "integration"]

    def filter_status(self, queryset, name, value):
        return queryset.filter(status=OutboxStatus.FAILED if value == "dead" else value)


class OutboxMessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The outbox: what Syncplane sends out (change requests, events), newest first. Dead letters
    (?status=dead) show why they failed; admins may send one again."""

    queryset = OutboxMessage.objects.select_related("external_system").order_by("-id")
    serializer_class = serializers.OutboxMessageSerializer
    filterset_class = OutboxFilter
    ordering_fields = ["id", "created_at", "next_attempt_at"]
    action_roles = {"resend": roles.ADMIN}

    @extend_schema(
        request=None,
        responses={
            202: serializers.OutboxMessageSerializer,
            409: OpenApiResponse(description="The message is not a dead letter."),
        },
    )
    @action(detail=True, methods=["post"])
    def resend(self, request, pk=None):
        """Send a dead letter again, its attempts counted afresh and its idempotency key unchanged (a delivery
        that did get through is not repeated). An event goes out with its sink's next batch, before newer ones."""
        message = self.get_object()
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        try:
            message = outbox.resend_dead_letter(message.pk)
        except outbox.NotADeadLetter as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(message).data, status=status.HTTP_202_ACCEPTED)


class HealthView(generics.GenericAPIView):
    """Every integration's health, last success, failures in a row and next scheduled run, with the outbox's
    backlog and dead letters. For any role."""

    serializer_class = serializers.HealthSummarySerializer
    filter_backends = []
    pagination_class = None

    def get(self, request):
        return Response(health.summary())
