from django_filters import rest_framework as filters
from rest_framework import mixins, serializers, viewsets

from syncplane.core.api import IdFilter, StrictCursorPagination
from syncplane.inventory.models import CANONICAL_FIELDS, Asset, AssetSource


class AssetSourceSerializer(serializers.ModelSerializer):
    external_system_name = serializers.CharField(source="external_system.name", read_only=True)
    system_type = serializers.CharField(source="external_system.system_type", read_only=True)

    class Meta:
        model = AssetSource
        fields = [
            "id", "external_system", "external_system_name", "system_type", "external_id", "attributes",
            "raw_payload", "fingerprint", "first_seen_at", "last_seen_at", "deleted_at",
        ]
        read_only_fields = fields


class AssetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Asset
        fields = ["id", *CANONICAL_FIELDS, "is_orphaned", "merged_into", "created_at", "updated_at"]
        read_only_fields = fields


class AssetDetailSerializer(AssetSerializer):
    attributes = serializers.SerializerMethodField(
        help_text="For each attribute: its value and the source it came from."
    )
    sources = AssetSourceSerializer(many=True, read_only=True)

    class Meta(AssetSerializer.Meta):
        fields = [*AssetSerializer.Meta.fields, "attributes", "sources"]
        read_only_fields = fields

    def get_attributes(self, obj) -> dict:
        data = AssetSerializer(obj).data
        return {
            name: {"value": data[name], "source": obj.attribute_sources.get(name)} for name in CANONICAL_FIELDS
        }


class AssetFilter(filters.FilterSet):
    source_system = IdFilter(field_name="sources__external_system", distinct=True,
                             label="Has a source in this integration (id)")
    source_external_id = filters.CharFilter(field_name="sources__external_id", distinct=True,
                                            label="Has a source with this external id (the vendor's own id)")
    serial_number = filters.CharFilter(lookup_expr="iexact")
    hostname = filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Asset
        fields = ["asset_type", "status", "compliance_state", "manufacturer", "is_orphaned", "serial_number",
                  "hostname"]


class AssetCursorPagination(StrictCursorPagination):
    ordering = ("name", "id")
    page_size = 50


class AssetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The reconciled inventory. Written only by syncs."""

    queryset = Asset.objects.all()
    filterset_class = AssetFilter
    pagination_class = AssetCursorPagination
    search_fields = ["name", "serial_number", "hostname", "fqdn", "asset_tag", "ip_address", "owner_email"]
    ordering_fields = None  # cursor pagination keeps its own order

    def get_queryset(self):
        if self.action == "retrieve":  # a merged asset stays reachable by its id, pointing at the survivor
            return Asset.objects.prefetch_related("sources__external_system")
        return Asset.objects.filter(merged_into__isnull=True)

    def get_serializer_class(self):
        return AssetDetailSerializer if self.action == "retrieve" else AssetSerializer
