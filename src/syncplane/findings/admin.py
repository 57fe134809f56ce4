from django.contrib import admin

from syncplane.findings.models import Finding, FindingEvent, Scan, Target


class ReadOnlyAdmin(admin.ModelAdmin):
    """Read-only: scans and syncs write findings, people decide through the API (with reason and expiry)."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Finding)
class FindingAdmin(ReadOnlyAdmin):
    list_display = ("vulnerability_id", "package_name", "installed_version", "severity", "state", "target",
                    "last_seen_at")
    list_filter = ("severity", "state")
    search_fields = ("vulnerability_id", "package_name", "title")
    list_select_related = ("target",)


@admin.register(FindingEvent)
class FindingEventAdmin(ReadOnlyAdmin):
    list_display = ("finding", "from_state", "to_state", "actor", "created_at")
    list_filter = ("to_state",)


@admin.register(Scan)
class ScanAdmin(ReadOnlyAdmin):
    list_display = ("id", "tool", "integration", "uploader", "status", "total", "new", "fixed", "started_at")
    list_filter = ("tool", "status")


@admin.register(Target)
class TargetAdmin(ReadOnlyAdmin):
    list_display = ("kind", "name", "ref", "asset")
    list_filter = ("kind",)
    search_fields = ("ref", "name")
