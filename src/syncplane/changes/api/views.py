import logging
import secrets

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from syncplane.changes import actions
from syncplane.changes.api import serializers
from syncplane.changes.choices import ChangeState
from syncplane.changes.external import apply_external_changes
from syncplane.changes.models import ChangeRequest, EventSource
from syncplane.changes.states import IllegalTransition
from syncplane.core import roles
from syncplane.core.api import EmptyBodySerializer, loads_json
from syncplane.integrations.choices import Category
from syncplane.integrations.errors import IntegrationError, TransientError
from syncplane.integrations.itsm import ItsmConnector
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.registry import build_connector, get_connector_class
from syncplane.integrations.secrets import resolve_secret
from syncplane.integrations.webhooks import signature_ok

logger = logging.getLogger("syncplane.webhooks")

CONFLICT = OpenApiResponse(description="The state machine does not allow this from the change's state.")


class ChangeRequestFilter(filters.FilterSet):
    class Meta:
        model = ChangeRequest
        fields = ["state", "external_system"]


class ChangeRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                           mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Change requests for the CAB. Viewers read; operators and admins create, edit (drafts), submit, cancel."""

    queryset = ChangeRequest.objects.select_related("requester").prefetch_related("affected_assets")
    serializer_class = serializers.ChangeRequestSerializer
    filterset_class = ChangeRequestFilter
    search_fields = ["title", "external_change_request_id"]
    ordering_fields = ["created_at", "updated_at", "planned_start", "risk_score"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    write_role = roles.OPERATOR

    def perform_create(self, serializer):
        serializer.save(requester=self.request.user)

    @extend_schema(responses={200: serializers.ChangeRequestSerializer, 409: CONFLICT})
    def partial_update(self, request, *args, **kwargs):
        change = self.get_object()
        if change.state != ChangeState.DRAFT:
            return Response({"detail": f"only a draft can be edited; this change is {change.state}"},
                            status=status.HTTP_409_CONFLICT)
        return super().partial_update(request, *args, **kwargs)

    @extend_schema(request=serializers.SubmitSerializer,
                   responses={202: serializers.ChangeRequestSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """Submit to the CAB: the change request is created in the ITSM tool in the background (202)."""
        change = self.get_object()
        body = serializers.SubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(actions.submit, change, user=request.user,
                         external_system=body.validated_data.get("external_system"))

    @extend_schema(request=None, responses={202: serializers.ChangeRequestSerializer, 400: OpenApiResponse(
        description="The change is not a submitted one whose delivery failed.")})
    @action(detail=True, methods=["post"])
    def resubmit(self, request, pk=None):
        """Send a submitted change whose delivery failed (see submission_error) to the ITSM tool again."""
        change = self.get_object()
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        return self._act(actions.resubmit, change, user=request.user)

    @extend_schema(request=serializers.CancelSerializer,
                   responses={202: serializers.ChangeRequestSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel; a submitted change is cancelled in the ITSM tool too (in the background)."""
        change = self.get_object()
        body = serializers.CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(actions.cancel, change, user=request.user, reason=body.validated_data.get("reason", ""))

    def _act(self, operation, change, **kwargs):
        try:
            change = operation(change, **kwargs)
        except IllegalTransition as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except actions.ChangeError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        change = self.get_queryset().get(pk=change.pk)
        return Response(self.get_serializer(change).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=serializers.HistoryEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """Every step of the change in order: state events and approval decisions, as recorded."""
        change = self.get_object()
        change = ChangeRequest.objects.prefetch_related("events", "approvals").get(pk=change.pk)
        entries = [(e.created_at, 1, e.sequence, "event", e) for e in change.events.all()]
        entries += [(a.created_at, 0, a.pk, "approval", a) for a in change.approvals.all()]
        entries.sort(key=lambda entry: entry[:3])
        data = []
        for at, _rank, _order, kind, row in entries:
            item = {"kind": kind, "at": at, "event": None, "approval": None}
            if kind == "event":
                item["event"] = serializers.ChangeEventSerializer(row).data
            else:
                item["approval"] = serializers.ApprovalRecordSerializer(row).data
            data.append(item)
        return Response(serializers.HistoryEntrySerializer(data, many=True).data)


MAX_IDS = 100  # one notification is about a change or a few; more is not a notification


# One answer for every refused notification, so the endpoint does not tell which integration ids exist, which
# are ITSM ones or which have a webhook secret; the log says which it was.
WEBHOOK_REFUSED = {"detail": "missing or invalid webhook signature"}
# Unknown ids are checked against a throwaway secret, so they cost the same work as a wrong signature.
_DECOY_SECRET = secrets.token_hex(32)


class ChangeWebhookView(APIView):
    """Inbound notifications of an ITSM integration. No user: the caller proves itself with the integration's
    webhook secret (an HMAC signature, optionally over a timestamp, or a shared-secret header). The notification
    is a hint: the changes it names are read back from the ITSM tool and applied like a poll, so a duplicate or
    stale one is a no-op."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request={"application/json": {"type": "object"}},
        responses={200: serializers.WebhookResultSerializer,
                   401: OpenApiResponse(description="Refused: a missing, wrong or expired signature, or no live ITSM "
                                                    "integration with a webhook secret under this id (one answer "
                                                    "for all, by design).")},
    )
    def post(self, request, integration_id: int):
        body = request.body  # the raw bytes the signature covers, before any parsing
        system = ExternalSystem.objects.live().filter(pk=integration_id, category=Category.ITSM).first()
        connector_class = _connector_class(system)
        secret, refusal = None, "no live ITSM integration with this id"
        if connector_class is not None:
            secret, refusal = _webhook_secret(system)
        scheme = connector_class.webhook_signature if connector_class is not None else "hmac-sha256"
        signed = signature_ok(scheme, secret or _DECOY_SECRET, body, request.headers)
        if secret is None or not signed:
            logger.warning("webhook refused", extra={"integration_id": integration_id,
                                                     "reason": refusal or "bad, missing or expired signature"})
            return Response(WEBHOOK_REFUSED, status=status.HTTP_401_UNAUTHORIZED)
        try:
            payload = loads_json(body or b"{}")
        except ValueError:
            return Response({"detail": "the body is not JSON"}, status=status.HTTP_400_BAD_REQUEST)
        if not isinstance(payload, dict):
            return Response({"detail": "the body must be a JSON object"}, status=status.HTTP_400_BAD_REQUEST)
        try:
            with build_connector(system) as connector:
                ids = [str(i) for i in connector.webhook_change_ids(payload)][:MAX_IDS]
                externals = connector.get_changes(ids) if ids else []
        except TransientError as exc:
            # The ITSM tool retries a notification that was not accepted: ask it to.
            headers = {"Retry-After": str(int(exc.retry_after or 30))}
            return Response({"detail": f"could not read the changes back: {exc}"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
        except IntegrationError as exc:
            return Response({"detail": f"could not read the changes back: {exc}"}, status=status.HTTP_502_BAD_GATEWAY)
        updated = apply_external_changes(system, externals, source=EventSource.WEBHOOK)
        logger.info("webhook applied", extra={"integration_id": system.pk, "changes": len(ids), "updated": updated})
        return Response({"changes": len(ids), "updated": updated})


def _webhook_secret(system: ExternalSystem) -> tuple[str | None, str]:
    """The integration's webhook secret, or None and why not (for the log, never for the caller)."""
    if not system.webhook_secret:
        return None, "no webhook secret configured"
    try:
        return resolve_secret(system.webhook_secret), ""
    except Exception as exc:  # an unreadable reference: say so in the log, never which value
        logger.error("webhook secret cannot be resolved", extra={"integration_id": system.pk,
                                                                 "error_type": type(exc).__name__})
        return None, "the webhook secret cannot be read"


def _connector_class(system: ExternalSystem | None) -> type[ItsmConnector] | None:
    if system is None:
        return None
    try:
        cls = get_connector_class(system.system_type)
    except KeyError:
        return None
    return cls if issubclass(cls, ItsmConnector) else None
