from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter

from syncplane.changes.api.views import ChangeRequestViewSet, ChangeWebhookView
from syncplane.core.auth_views import TokenView
from syncplane.core.permissions import RolePermission
from syncplane.core.views import health
from syncplane.directory.api import DirectoryAccountViewSet, DirectoryGroupViewSet
from syncplane.findings.api import FindingViewSet, ScanViewSet
from syncplane.integrations.api.views import (
    HealthView,
    IntegrationSyncLogViewSet,
    IntegrationTypesViewSet,
    IntegrationViewSet,
    OutboxMessageViewSet,
    SyncLogOutcomesView,
)
from syncplane.integrations.metrics import metrics_view
from syncplane.inventory.api import AssetViewSet


class DocsAccess:
    """The schema and the docs page: anyone's when SYNCPLANE_API_DOCS_PUBLIC is on (the demo), else any role's."""

    def get_permissions(self):
        return [AllowAny()] if settings.SYNCPLANE_API_DOCS_PUBLIC else [RolePermission()]


class ApiSchemaView(DocsAccess, SpectacularAPIView):
    pass


class ApiDocsView(DocsAccess, SpectacularSwaggerView):
    """The Swagger page. OPTIONS answers the allowed methods: DRF's metadata cannot go through the page's HTML
    template renderer (it answered 500)."""

    def options(self, request, *args, **kwargs):
        return HttpResponse(headers={"Allow": ", ".join(self.allowed_methods)})


router = DefaultRouter()
router.register("integrations", IntegrationViewSet, basename="integration")
router.register("integration-sync-logs", IntegrationSyncLogViewSet, basename="integration-sync-log")
router.register("integration-types", IntegrationTypesViewSet, basename="integration-types")
router.register("assets", AssetViewSet, basename="asset")
router.register("directory/users", DirectoryAccountViewSet, basename="directory-user")
router.register("directory/groups", DirectoryGroupViewSet, basename="directory-group")
router.register("changes", ChangeRequestViewSet, basename="change")
router.register("findings", FindingViewSet, basename="finding")
router.register("scans", ScanViewSet, basename="scan")
router.register("outbox", OutboxMessageViewSet, basename="outbox-message")

urlpatterns = [
    # POST signs in (throttled, with a lockout), DELETE revokes the caller's token; the project's parsers.
    path("api/v1/auth/token/", TokenView.as_view(), name="auth-token"),
    path("api/v1/webhooks/<int:integration_id>/", ChangeWebhookView.as_view(), name="integration-webhook"),
    path("api/v1/integration-sync-logs/<int:log_id>/outcomes/", SyncLogOutcomesView.as_view(),
         name="integration-sync-log-outcomes"),
    path("api/v1/health/", HealthView.as_view(), name="integration-health"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", ApiSchemaView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
    # Prometheus: its own access rule (a bearer token or allowed networks), not the API's roles.
    path("metrics", metrics_view, name="metrics"),
    path("", include("syncplane.web.urls")),  # the web UI: / is its dashboard
]
