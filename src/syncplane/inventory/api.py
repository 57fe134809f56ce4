from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.settings import api_settings

from syncplane.core.api import IdFilter, StrictCursorPagination
from syncplane.inventory.assignment import assigned_users, handle_of
from syncplane.inventory.choices import AssetStatus, AssetType, ComplianceState
from syncplane.inventory.models import CANONICAL_FIELDS, Asset, AssetSource


class AssetSourceSerializer(serializers.ModelSerializer):
    external_system_name = serializers.CharField(source="external_system.name", read_only=True)
    system_type = serializers.CharField(source="external_system.system_type", read_only=True)
    last_seen_at = serializers.DateTimeField(source="seen_at", read_only=True,
                                             help_text="When a sync last read this record.")

    class Meta:
        model = AssetSource
        fields = [
            "id", "external_system", "external_system_name", "system_type", "external_id", "attributes",
            "raw_payload", "fingerprint", "first_seen_at", "last_seen_at", "deleted_at",
        ]
        read_only_fields = fields


class ComplianceSourceSerializer(serializers.Serializer):
    source = serializers.UUIDField(help_text="The asset source (AssetSource id).")
    external_system = serializers.IntegerField(help_text="The integration's id.")
    external_system_name = serializers.CharField()
    system_type = serializers.CharField()


class AssignedUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField(help_text="The user's full name, else the user name.")
    is_active = serializers.BooleanField(help_text="False when the directory has deactivated the user.")


@dataclass
class PageLinks:
    """What a page of assets shows beyond its own columns, read for the whole page at once (one query each,
    whatever the page size): the integration each compliance_state came from, and the users assets are
    assigned to."""

    systems: dict[str, dict] = field(default_factory=dict)  # source id -> ComplianceSourceSerializer data
    users: dict[str, dict] = field(default_factory=dict)  # handle -> AssignedUserSerializer data

    @classmethod
    def read(cls, assets: list[Asset]) -> "PageLinks":
        links = cls()
        source_ids = {a.attribute_sources.get("compliance_state") for a in assets} - {None}
        if source_ids:
            rows = AssetSource.objects.filter(id__in=source_ids).values_list(
                "id", "external_system_id", "external_system__name", "external_system__system_type"
            )
            links.systems = {
                str(source): {"source": str(source), "external_system": system, "external_system_name": name,
                              "system_type": system_type}
                for source, system, name, system_type in rows
            }
        users = assigned_users({handle_of(a.assigned_to) for a in assets})
        links.users = {
            handle: {"id": user.pk, "username": user.get_username(),
                     "display_name": user.get_full_name() or user.get_username(), "is_active": user.is_active}
            for handle, user in users.items()
        }
        return links


class AssetListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        assets = list(data.all() if hasattr(data, "all") else data)
        self.child.links = PageLinks.read(assets)
        return super().to_representation(assets)


class AssetSerializer(serializers.ModelSerializer):
    compliance_source = serializers.SerializerMethodField(
        help_text="The integration compliance_state (and its reasons and time) came from; null when none says."
    )
    assigned_user = serializers.SerializerMethodField(
        help_text="The Syncplane user assigned_to names (user name = lower-cased UPN, else e-mail); null when "
        "none matches."
    )

    class Meta:
        model = Asset
        fields = ["id", *CANONICAL_FIELDS, "compliance_source", "assigned_user", "is_orphaned", "merged_into",
                  "created_at", "updated_at"]
        read_only_fields = fields
        list_serializer_class = AssetListSerializer

    links: PageLinks | None = None

    def to_representation(self, instance):
        if not isinstance(self.parent, AssetListSerializer):  # one asset on its own (the detail): its own page
            self.links = PageLinks.read([instance])
        return super().to_representation(instance)

    @extend_schema_field(ComplianceSourceSerializer(allow_null=True))
    def get_compliance_source(self, obj) -> dict | None:
        return self.links.systems.get(obj.attribute_sources.get("compliance_state"))

    @extend_schema_field(AssignedUserSerializer(allow_null=True))
    def get_assigned_user(self, obj) -> dict | None:
        return self.links.users.get(handle_of(obj.assigned_to))


class SourceComplianceSerializer(serializers.Serializer):
    """One source's own compliance verdict: where MDMs disagree, the detail shows each."""

    source = serializers.UUIDField()
    external_system = serializers.IntegerField()
    external_system_name = serializers.CharField()
    system_type = serializers.CharField()
    external_id = serializers.CharField()
    compliance_state = serializers.CharField()
    compliance_reasons = serializers.ListField(child=serializers.CharField())
    compliance_checked_at = serializers.DateTimeField(allow_null=True)
    chosen = serializers.BooleanField(help_text="The asset's compliance_state is this source's.")


def source_compliance(asset: Asset) -> list[dict]:
    """Every live source's compliance, from the prefetched sources: the chosen one first, then by integration."""
    chosen = asset.attribute_sources.get("compliance_state")
    views = []
    for source in asset.sources.all():
        state = source.attributes.get("compliance_state")
        if source.deleted_at is not None or not state:
            continue
        checked = source.attributes.get("compliance_checked_at")
        views.append({
            "source": source.id, "external_system": source.external_system_id,
            "external_system_name": source.external_system.name,
            "system_type": source.external_system.system_type, "external_id": source.external_id,
            "compliance_state": state, "compliance_reasons": source.attributes.get("compliance_reasons") or [],
            "compliance_checked_at": datetime.fromisoformat(checked) if checked else None,
            "chosen": str(source.id) == chosen,
        })
    views.sort(key=lambda v: (not v["chosen"], v["external_system_name"], v["external_id"]))
    return views


class AssetDetailSerializer(AssetSerializer):
    attributes = serializers.SerializerMethodField(
        help_text="For each attribute: its value and the source it came from."
    )
    compliance_by_source = serializers.SerializerMethodField(
        help_text="Each live source's own compliance (state, reasons, when checked), the chosen one first."
    )
    sources = AssetSourceSerializer(many=True, read_only=True)
    open_findings = serializers.SerializerMethodField(
        help_text="Open vulnerability findings on this asset per severity (the list: /api/v1/findings/?asset=<id>)."
    )

    class Meta(AssetSerializer.Meta):
        fields = [*AssetSerializer.Meta.fields, "attributes", "compliance_by_source", "sources", "open_findings"]
        read_only_fields = fields

    def get_open_findings(self, obj) -> dict[str, int]:
        # The findings app's reverse relation (Finding.asset): inventory does not import that app.
        from django.db.models import Count

        rows = obj.findings.filter(state="open").order_by().values_list("severity").annotate(n=Count("pk"))
        return dict(rows)

    def get_attributes(self, obj) -> dict:
        shown = {}
        for name in CANONICAL_FIELDS:
            value = getattr(obj, name)
            shown[name] = {"value": None if value is None else self.fields[name].to_representation(value),
                           "source": obj.attribute_sources.get(name)}
        return shown

    @extend_schema_field(SourceComplianceSerializer(many=True))
    def get_compliance_by_source(self, obj) -> list:
        return SourceComplianceSerializer(source_compliance(obj), many=True).data


class NamedChoiceFilter(filters.ChoiceFilter):
    """A choice filter whose refusal lists the values it takes (the form's own message names only the bad one)."""

    def __init__(self, *args, choices, **kwargs):
        allowed = ", ".join(value for value, _label in choices)
        kwargs.setdefault("error_messages", {"invalid_choice": f"%(value)s is not one of: {allowed}"})
        super().__init__(*args, choices=choices, **kwargs)


class AssetFilter(filters.FilterSet):
    asset_type = NamedChoiceFilter(choices=AssetType.choices)
    status = NamedChoiceFilter(choices=AssetStatus.choices)
    compliance_state = NamedChoiceFilter(choices=ComplianceState.choices)
    assigned_to = filters.CharFilter(lookup_expr="iexact", label="Assigned to this UPN or e-mail (any case)")
    source_system = IdFilter(field_name="sources__external_system", distinct=True,
                             label="Has a source in this integration (id)")
    source_external_id = filters.CharFilter(field_name="sources__external_id", distinct=True,
                                            label="Has a source with this external id (the vendor's own id)")
    serial_number = filters.CharFilter(lookup_expr="iexact")
    hostname = filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Asset
        fields = ["asset_type", "status", "compliance_state", "manufacturer", "is_orphaned", "serial_number",
                  "hostname", "assigned_to"]


# How many live assets, in id order, a search page first reads to find its matches (see _search_page).
SEARCH_WINDOW = 5_000


class AssetCursorPagination(StrictCursorPagination):
    ordering = ("name", "id")
    page_size = 50

    def get_ordering(self, request, queryset, view):
        # A search is answered in id order (random, so matches are spread evenly through it), not name order:
        # a common word matches a large part of a big inventory, its matches can sit together anywhere in the
        # name order, and ordering them by name means reading them all (seconds at 1,000,000 assets).
        return ("id",) if _searching(request) else self.ordering

    def paginate_queryset(self, queryset, request, view=None):
        if _searching(request):
            queryset = queryset.filter(pk__in=self._search_page(queryset, request))
        return super().paginate_queryset(queryset, request, view)

    def _search_page(self, queryset, request) -> list:
        """The ids of the matches the page can show (and the one after it), found without leaving the plan to
        the database's guess of how common the term is: a wrong guess either walks every row in id order for a
        rare term or sorts every match of a common one. First the next SEARCH_WINDOW live assets in id order are
        checked (`_matches_among`): a term in 1% of the assets or more fills the page there. Otherwise the term is
        rare, and all its further matches are few enough to fetch unordered (the trigram indexes on PostgreSQL)
        and sort."""
        offset, backwards, position = self.decode_cursor(request) or (0, False, None)
        wanted = offset + self.get_page_size(request) + 1
        after = {} if position is None else {"id__lt" if backwards else "id__gt": position}
        live = Asset.objects.filter(merged_into__isnull=True, **after).order_by("-id" if backwards else "id")
        hits = _matches_among(queryset, live[:SEARCH_WINDOW])
        if len(hits) < wanted:
            window_end = live.values_list("id", flat=True)[SEARCH_WINDOW - 1:SEARCH_WINDOW].first()
            if window_end is not None:
                beyond = {"id__lt" if backwards else "id__gt": window_end}
                hits += queryset.filter(**beyond).order_by().values_list("id", flat=True)
        return sorted(hits, reverse=backwards)[:wanted]


def _matches_among(queryset, rows) -> list:
    """The ids of `queryset`'s assets among `rows` (a sliced query of assets), in one query that reads those rows
    and tests each: `rows` stands in for the asset table as a derived table of the same name, and a database
    never pushes a condition into a subquery with a LIMIT, so the search cannot be planned as an index scan of
    the whole table (for a term it wrongly takes for rare, the trigram indexes: 50 ms at 1,000,000 assets)."""
    table = connection.ops.quote_name(Asset._meta.db_table)
    rows_sql, rows_params = rows.query.sql_with_params()
    matches_sql, matches_params = queryset.order_by().values_list("id", flat=True).query.sql_with_params()
    select, found, rest = matches_sql.partition(f" FROM {table}")
    if not found or "%s" in select:
        raise ValueError(f"not a query of assets with a parameterless select: {matches_sql[:200]}")
    with connection.cursor() as cursor:
        cursor.execute(f"{select} FROM ({rows_sql}) {table}{rest}", (*rows_params, *matches_params))
        return [Asset._meta.pk.to_python(row[0]) for row in cursor.fetchall()]


def _searching(request) -> bool:
    return bool(request.query_params.get(api_settings.SEARCH_PARAM, "").strip())


class AssetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The reconciled inventory. Written only by syncs.

    The list is in name order; a `search` answers in a stable order of ids instead (fast at any size, see
    docs/performance.md), while filters keep the name order.
    """

    queryset = Asset.objects.all()
    filterset_class = AssetFilter
    pagination_class = AssetCursorPagination
    search_fields = ["name", "serial_number", "hostname", "fqdn", "asset_tag", "ip_address", "owner_email",
                     "assigned_to"]
    ordering_fields = None  # cursor pagination keeps its own order

    def get_queryset(self):
        if self.action == "retrieve":  # a merged asset stays reachable by its id, pointing at the survivor
            return Asset.objects.prefetch_related(
                Prefetch("sources", queryset=AssetSource.objects.select_related("external_system", "sighting"))
            )
        return Asset.objects.filter(merged_into__isnull=True)

    def get_serializer_class(self):
        return AssetDetailSerializer if self.action == "retrieve" else AssetSerializer
