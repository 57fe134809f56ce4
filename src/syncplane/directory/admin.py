from django.contrib import admin

from syncplane.directory.models import DirectoryAccount, DirectoryGroup


@admin.register(DirectoryAccount)
class DirectoryAccountAdmin(admin.ModelAdmin):
    """Read-only: the directory is the source of truth, a sync overwrites any edit."""

    list_display = ("username", "external_system", "is_active", "removed_at", "user", "last_seen_at")
    list_filter = ("external_system", "is_active")
    search_fields = ("username", "external_id", "dn")
    readonly_fields = [f.name for f in DirectoryAccount._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DirectoryGroup)
class DirectoryGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "external_system", "group", "removed_at", "last_seen_at")
    list_filter = ("external_system",)
    search_fields = ("name", "external_id", "dn")
    readonly_fields = [f.name for f in DirectoryGroup._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
