"""The directory pages: users and groups as the identity syncs left them, each user's Syncplane role and the
directory groups (and role mapping entries) that granted it."""

from django.contrib.auth.models import Group
from django.db.models import Count, Prefetch

from syncplane.directory.api import DirectoryAccountSerializer, DirectoryGroupSerializer
from syncplane.directory.models import DirectoryAccount, DirectoryGroup
from syncplane.integrations.choices import Category
from syncplane.integrations.models import ExternalSystem
from syncplane.web.lists import Filter, ListPage


def _identity_integrations() -> list[tuple[str, str]]:
    return [(str(pk), name) for pk, name in
            ExternalSystem.objects.live().filter(category=Category.IDENTITY).values_list("pk", "name")]


class DirectoryUserListView(ListPage):
    template_name = "web/directory_users.html"
    search_fields = ("username", "external_id", "dn")
    search_placeholder = "User name, id or DN"
    sorts = {"username": ("username", "id"), "seen": ("last_seen_at", "id")}
    default_sort = "username"
    columns = (("username", "User"), ("", "Integration"), ("", "Enabled"), ("", "Role"),
               ("", "Granted by (group → role)"), ("seen", "Last seen"))

    def get_filters(self):
        return (Filter("integration", "Integration", "external_system_id", _identity_integrations()),
                Filter("active", "Enabled", "is_active", [("True", "Yes"), ("False", "No")]))

    def base_queryset(self):
        return DirectoryAccount.objects.select_related("external_system", "user").prefetch_related(
            Prefetch("user__groups", queryset=Group.objects.prefetch_related("directory_groups")))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        rows = []
        for account in context["object_list"]:
            data = DirectoryAccountSerializer(account).data
            mapping = {str(k).lower(): v for k, v in (account.external_system.config.get("role_mapping") or {}).items()}
            grants = [(name, mapping.get(name.lower(), "")) for name in data["groups"]]
            rows.append({"account": account, "role": data["role"], "grants": grants})
        context["rows"] = rows
        return context


class DirectoryGroupListView(ListPage):
    template_name = "web/directory_groups.html"
    search_fields = ("name", "external_id", "dn")
    search_placeholder = "Group name, id or DN"
    sorts = {"name": ("name", "id"), "seen": ("last_seen_at", "id")}
    default_sort = "name"
    columns = (("name", "Group"), ("", "Integration"), ("", "Members"), ("", "Role it grants"),
               ("seen", "Last seen"))

    def get_filters(self):
        return (Filter("integration", "Integration", "external_system_id", _identity_integrations()),)

    def base_queryset(self):
        return DirectoryGroup.objects.select_related("external_system", "group").annotate(
            member_count=Count("group__user", distinct=True))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["rows"] = [{"group": group, "role": DirectoryGroupSerializer(group).data["role"]}
                           for group in context["object_list"]]
        return context
