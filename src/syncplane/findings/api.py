"""The findings API: findings (list, detail, summary, decisions) and scans (list, detail, report upload).

Reading needs the viewer role; uploading a report and deciding about a finding (accept the risk, mark a false
positive, reopen) need operator or admin. Every read first lets lapsed decisions expire (findings/lifecycle.py).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db.models import Count, Exists, OuterRef
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from syncplane.core import roles
from syncplane.core.api import IdFilter, StrictCursorPagination, StrictFieldsMixin
from syncplane.findings import lifecycle
from syncplane.findings.choices import SEVERITY_ORDER, FindingState, Severity, TargetKind
from syncplane.findings.ingest import ingest_scan, report_records
from syncplane.findings.models import Finding, FindingEvent, FindingSource, Scan, Target
from syncplane.integrations.choices import Capability
from syncplane.integrations.errors import RecordError
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.registry import registered_types

# --- serializers ------------------------------------------------------------------------------------------


class TargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Target
        fields = ["id", "kind", "ref", "name", "asset"]
        read_only_fields = fields


class FindingSerializer(serializers.ModelSerializer):
    target = TargetSerializer(read_only=True)
    tools = serializers.SerializerMethodField(help_text="The tools that report it (present or not).")

    class Meta:
        model = Finding
        fields = [
            "id", "target", "asset", "vulnerability_id", "aliases", "title", "package_name", "package_type",
            "installed_version", "fixed_version", "purl", "severity", "cvss_score", "cvss_vector", "locations",
            "tools", "state", "state_reason", "state_expires_at", "state_changed_at", "state_changed_by",
            "correlation_id", "first_seen_at", "last_seen_at", "fixed_at",
        ]
        read_only_fields = fields

    def get_tools(self, obj) -> list[str]:
        return sorted({source.tool for source in obj.sources.all()})


class FindingSourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = FindingSource
        fields = ["id", "tool", "integration", "present", "attributes", "first_seen_at", "last_seen_at"]
        read_only_fields = fields


class FindingEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = FindingEvent
        fields = ["id", "from_state", "to_state", "actor", "reason", "expires_at", "correlation_id", "created_at"]
        read_only_fields = fields


class FindingDetailSerializer(FindingSerializer):
    sources = FindingSourceSerializer(many=True, read_only=True)
    history = FindingEventSerializer(many=True, read_only=True)

    class Meta(FindingSerializer.Meta):
        fields = [*FindingSerializer.Meta.fields, "sources", "history"]
        read_only_fields = fields


class DecisionSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(max_length=4000, help_text="Why: kept in the finding's history.")
    expires_at = serializers.DateTimeField(help_text="When the decision lapses and the finding is reviewed again.")


class ReopenSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(max_length=4000, required=False, allow_blank=True)


class SummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_severity = serializers.DictField(child=serializers.IntegerField(), help_text="Open findings per severity.")
    by_state = serializers.DictField(child=serializers.IntegerField())
    by_severity_and_state = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))


class ScanSerializer(serializers.ModelSerializer):
    targets = TargetSerializer(many=True, read_only=True)

    class Meta:
        model = Scan
        fields = ["id", "tool", "integration", "uploader", "filename", "targets", "status", "total", "new",
                  "still_open", "reopened", "fixed", "correlation_id", "started_at", "finished_at"]
        read_only_fields = fields


def upload_tools() -> list[str]:
    return [name for name, cls in registered_types().items() if cls.supports(Capability.REPORT_UPLOAD)]


class ScanUploadSerializer(StrictFieldsMixin, serializers.Serializer):
    file = serializers.FileField(help_text="The tool's JSON report (e.g. trivy image --format json).")
    tool = serializers.CharField(max_length=40, help_text="The tool that wrote it: trivy, grype, snyk...")
    target = serializers.CharField(
        required=False, max_length=600,
        help_text='What was scanned; it replaces what the report says (a report without a target, a file-system '
                  'scan of a machine): "<kind>:<ref>" with kind image, repository or asset (e.g. '
                  '"repository:github.com/acme/shop", "asset:web01" for the inventory machine web01), or a JSON '
                  'object {"kind", "ref", "name"}.',
    )
    integration = serializers.PrimaryKeyRelatedField(
        queryset=ExternalSystem.objects.live(), required=False,
        help_text="The scanner integration (id) the findings belong to; without it they are uploads'.",
    )

    def validate_tool(self, value):
        tools = upload_tools()
        if value not in tools:
            raise serializers.ValidationError(f"not a tool whose reports can be uploaded; one of: {', '.join(tools)}")
        return value

    def validate_target(self, value):
        if value.lstrip().startswith("{"):
            try:
                target = json.loads(value)
            except ValueError:
                raise serializers.ValidationError("not a JSON object") from None
        else:
            kind, _, ref = value.partition(":")
            target = {"kind": kind, "ref": ref, "name": ref}
        if not isinstance(target, dict) or target.get("kind") not in TargetKind.values \
                or not isinstance(target.get("ref"), str) or not target["ref"].strip():
            raise serializers.ValidationError(f'must be "<kind>:<ref>", kind one of {", ".join(TargetKind.values)}')
        target = {key: target[key].strip() for key in ("kind", "ref", "name") if isinstance(target.get(key), str)}
        if target["kind"] == TargetKind.ASSET:
            # A machine, by its host name (as a scanner integration's configured host): the inventory asset is
            # found by it, the short name or the FQDN.
            host = target["ref"].lower()
            target["ref"] = host
            target["asset"] = {"hostname": host.split(".", 1)[0], **({"fqdn": host} if "." in host else {})}
        return target

    def validate_file(self, value):
        limit = settings.SYNCPLANE_MAX_REPORT_BYTES
        if value.size > limit:
            raise serializers.ValidationError(f"the report is {value.size} bytes, more than the {limit} allowed "
                                              "(SYNCPLANE_MAX_REPORT_BYTES)")
        return value

    def validate(self, attrs):
        integration = attrs.get("integration")
        if integration is not None and integration.system_type != attrs["tool"]:
            raise serializers.ValidationError({"integration": f"is a {integration.system_type} integration, "
                                                              f"not {attrs['tool']}"})
        return attrs


# --- filters ----------------------------------------------------------------------------------------------


class FindingFilter(filters.FilterSet):
    severity = filters.MultipleChoiceFilter(choices=Severity.choices)
    state = filters.MultipleChoiceFilter(choices=FindingState.choices)
    tool = filters.CharFilter(method="filter_tool", max_length=40, label="Reported by this tool")
    asset = filters.UUIDFilter(field_name="asset", label="On this inventory asset (id)")
    target = IdFilter(field_name="target", label="On this target (id)")
    target_kind = filters.ChoiceFilter(field_name="target__kind", choices=TargetKind.choices)
    vulnerability_id = filters.CharFilter(method="filter_vulnerability", max_length=128,
                                          label="This vulnerability id (CVE, GHSA...), also among the aliases")
    package = filters.CharFilter(field_name="package_name", lookup_expr="iexact", max_length=255)
    fixable = filters.BooleanFilter(method="filter_fixable", label="A fixed version is known")

    class Meta:
        model = Finding
        fields = ["severity", "state", "tool", "asset", "target", "target_kind", "vulnerability_id", "package",
                  "fixable"]

    def filter_tool(self, queryset, name, value):
        return queryset.filter(Exists(FindingSource.objects.filter(finding=OuterRef("pk"), tool=value)))

    def filter_vulnerability(self, queryset, name, value):
        # Aliases are a JSON list: matched as text, which works the same on SQLite and PostgreSQL.
        return queryset.filter(vulnerability_id__iexact=value) | queryset.filter(aliases__icontains=f'"{value}"')

    def filter_fixable(self, queryset, name, value):
        return queryset.exclude(fixed_version="") if value else queryset.filter(fixed_version="")


class ScanFilter(filters.FilterSet):
    integration = IdFilter(field_name="integration")

    class Meta:
        model = Scan
        fields = ["tool", "status", "integration"]


# --- views ------------------------------------------------------------------------------------------------


class FindingCursorPagination(StrictCursorPagination):
    ordering = ("-first_seen_at", "id")
    page_size = 50


class ExpireDecisionsOnRead:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        lifecycle.expire_decisions()


DECISION_REFUSED = OpenApiResponse(description="The decision is not possible (no reason, no future expiry, the "
                                               "finding's state).")


class FindingViewSet(ExpireDecisionsOnRead, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     viewsets.GenericViewSet):
    """Vulnerability findings, de-duplicated across tools. Written by scans and syncs; people decide."""

    filterset_class = FindingFilter
    pagination_class = FindingCursorPagination
    search_fields = ["vulnerability_id", "package_name", "title", "target__name"]
    ordering_fields = None  # cursor pagination keeps its own order
    action_roles = {"accept": roles.OPERATOR, "false_positive": roles.OPERATOR, "reopen": roles.OPERATOR}

    def get_queryset(self):
        queryset = Finding.objects.select_related("target").prefetch_related("sources")
        if self.action == "retrieve":
            return queryset.prefetch_related("history")
        return queryset

    def get_serializer_class(self):
        return FindingDetailSerializer if self.action == "retrieve" else FindingSerializer

    @extend_schema(responses=SummarySerializer)
    @action(detail=False, methods=["get"])
    def summary(self, request):
        """Counts by severity and state: overall, or of the findings the filters select (e.g. ?asset=<id>)."""
        queryset = self.filter_queryset(Finding.objects.all())
        by_severity = {severity: 0 for severity in SEVERITY_ORDER}
        by_state = {state: 0 for state in FindingState.values}
        both = {severity: {state: 0 for state in FindingState.values} for severity in SEVERITY_ORDER}
        for row in queryset.order_by().values("severity", "state").annotate(n=Count("id")):
            both[row["severity"]][row["state"]] = row["n"]
            by_state[row["state"]] += row["n"]
            if row["state"] == FindingState.OPEN:
                by_severity[row["severity"]] += row["n"]
        data = {"total": sum(by_state.values()), "by_severity": by_severity, "by_state": by_state,
                "by_severity_and_state": both}
        return Response(SummarySerializer(data).data)

    @extend_schema(request=DecisionSerializer, responses={200: FindingDetailSerializer, 400: DECISION_REFUSED})
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        """Accept the risk until an expiry, with a reason (operator or admin)."""
        return self._decide(request, FindingState.ACCEPTED)

    @extend_schema(request=DecisionSerializer, responses={200: FindingDetailSerializer, 400: DECISION_REFUSED})
    @action(detail=True, methods=["post"], url_path="false-positive")
    def false_positive(self, request, pk=None):
        """Mark a false positive until an expiry, with a reason (operator or admin)."""
        return self._decide(request, FindingState.FALSE_POSITIVE)

    @extend_schema(request=ReopenSerializer, responses={200: FindingDetailSerializer, 400: DECISION_REFUSED})
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        """Take back an acceptance or a false-positive mark: open if a tool still reports it, else fixed."""
        finding = self.get_object()
        body = ReopenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(lifecycle.reopen, finding, actor=request.user.get_username(),
                         reason=body.validated_data.get("reason", ""))

    def _decide(self, request, to_state: str):
        finding = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(lifecycle.decide, finding, to_state, actor=request.user.get_username(),
                         **body.validated_data)

    def _act(self, operation, *args, **kwargs):
        try:
            finding = operation(*args, **kwargs)
        except lifecycle.DecisionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        finding = self.get_queryset().prefetch_related("history").get(pk=finding.pk)
        return Response(FindingDetailSerializer(finding).data)


class ScanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  viewsets.GenericViewSet):
    """Scans: uploaded reports and the findings part of security integrations' syncs. CI pipelines POST their
    reports here (multipart; operator or admin)."""

    queryset = Scan.objects.prefetch_related("targets")
    serializer_class = ScanSerializer
    filterset_class = ScanFilter
    write_role = roles.OPERATOR
    parser_classes = [MultiPartParser]  # Django streams a large file to a temporary file

    @extend_schema(
        request={"multipart/form-data": ScanUploadSerializer},
        responses={201: ScanSerializer,
                   400: OpenApiResponse(description="A bad, truncated or wrong tool's report (nothing was written), "
                                                    "or a bad field: the reason is named.")},
    )
    def create(self, request, *args, **kwargs):
        """Upload a scanner report: its findings are de-duplicated into the findings, a complete scan fixes what
        it no longer reports. All or nothing: a file that cannot be read to its end changes nothing."""
        body = ScanUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        upload = data["file"]
        try:
            result = ingest_scan(
                tool=data["tool"], records=report_records(data["tool"], upload, data.get("target")),
                integration=data.get("integration"), uploaded_by=request.user, filename=upload.name or "",
            )
        except (RecordError, UnicodeDecodeError, ValueError) as exc:
            return Response({"file": [f"the report was refused, nothing was written: {exc}"]},
                            status=status.HTTP_400_BAD_REQUEST)
        scan = self.get_queryset().get(pk=result.scan_id)
        return Response(ScanSerializer(scan).data, status=status.HTTP_201_CREATED)
