"""Read-only API of what the directories told Syncplane: accounts (with their user's groups and role) and
groups (with their member count and the role their integration maps them to). Viewer and up."""

from django.contrib.auth.models import Group
from django.db.models import Count, Prefetch
from django_filters import rest_framework as filters
from rest_framework import mixins, serializers, viewsets

from syncplane.core import roles
from syncplane.directory.models import DirectoryAccount, DirectoryGroup

_RANK = {role: rank for rank, role in enumerate(roles.ROLES, start=1)}


def _role_from_groups(user) -> str | None:
    """core.roles.role_of, from the prefetched groups instead of one query per user."""
    if user is None or not user.is_active:
        return None
    if user.is_superuser:
        return roles.ADMIN
    names = [g.name for g in user.groups.all() if g.name in _RANK]
    return max(names, key=_RANK.__getitem__) if names else None


class DirectoryAccountSerializer(serializers.ModelSerializer):
    integration_name = serializers.CharField(source="external_system.name", read_only=True)
    system_type = serializers.CharField(source="external_system.system_type", read_only=True)
    user_is_active = serializers.SerializerMethodField(help_text="Whether the Syncplane user may sign in.")
    groups = serializers.SerializerMethodField(help_text="Names of this directory's groups the user is in "
                                                         "(nested memberships included).")
    role = serializers.SerializerMethodField(help_text="The user's Syncplane role (admin, operator, viewer).")

    class Meta:
        model = DirectoryAccount
        fields = ["id", "external_system", "integration_name", "system_type", "external_id", "username", "dn",
                  "is_active", "user", "user_is_active", "groups", "role", "first_seen_at", "last_seen_at",
                  "removed_at"]
        read_only_fields = fields

    def get_user_is_active(self, obj) -> bool:
        return bool(obj.user and obj.user.is_active)

    def get_groups(self, obj) -> list[str]:
        if obj.user is None:
            return []
        return sorted(d.name for g in obj.user.groups.all() for d in g.directory_groups.all()
                      if d.external_system_id == obj.external_system_id and d.removed_at is None)

    def get_role(self, obj) -> str | None:
        return _role_from_groups(obj.user)


class DirectoryGroupSerializer(serializers.ModelSerializer):
    integration_name = serializers.CharField(source="external_system.name", read_only=True)
    django_group = serializers.CharField(source="group.name", read_only=True, default=None)
    member_count = serializers.IntegerField(read_only=True, help_text="Users in the group, nesting expanded.")
    role = serializers.SerializerMethodField(help_text="The role the integration's role_mapping gives members.")

    class Meta:
        model = DirectoryGroup
        fields = ["id", "external_system", "integration_name", "external_id", "name", "dn", "django_group",
                  "member_count", "role", "first_seen_at", "last_seen_at", "removed_at"]
        read_only_fields = fields

    def get_role(self, obj) -> str | None:
        mapping = {str(k).lower(): v for k, v in (obj.external_system.config.get("role_mapping") or {}).items()}
        found = [mapping[k] for k in (obj.name.lower(), obj.external_id.lower()) if mapping.get(k) in _RANK]
        return max(found, key=_RANK.__getitem__) if found and obj.removed_at is None else None


class DirectoryAccountFilter(filters.FilterSet):
    class Meta:
        model = DirectoryAccount
        fields = ["external_system", "is_active", "username"]


class DirectoryAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Directory accounts: written only by identity syncs."""

    queryset = DirectoryAccount.objects.select_related("external_system", "user").prefetch_related(
        Prefetch("user__groups", queryset=Group.objects.prefetch_related("directory_groups"))
    ).order_by("username", "id")
    serializer_class = DirectoryAccountSerializer
    filterset_class = DirectoryAccountFilter
    search_fields = ["username", "external_id", "dn"]
    ordering_fields = ["username", "last_seen_at"]


class DirectoryGroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Directory groups: written only by identity syncs."""

    queryset = DirectoryGroup.objects.select_related("external_system", "group").annotate(
        member_count=Count("group__user", distinct=True)
    ).order_by("name", "id")
    serializer_class = DirectoryGroupSerializer
    filterset_fields = ["external_system"]
    search_fields = ["name", "external_id", "dn"]
    ordering_fields = ["name", "last_seen_at"]
