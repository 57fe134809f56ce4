from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import DefaultRouter

from syncplane.changes.api.views import ChangeRequestViewSet, ChangeWebhookView
from syncplane.core.views import health
from syncplane.directory.api import DirectoryAccountViewSet, DirectoryGroupViewSet
from syncplane.integrations.api.views import (
    IntegrationSyncLogViewSet,
    IntegrationTypesView,
    IntegrationViewSet,
)
from syncplane.inventory.api import AssetViewSet

router = DefaultRouter()
router.register("integrations", IntegrationViewSet, basename="integration")
router.register("integration-sync-logs", IntegrationSyncLogViewSet, basename="integration-sync-log")
router.register("assets", AssetViewSet, basename="asset")
router.register("directory/users", DirectoryAccountViewSet, basename="directory-user")
router.register("directory/groups", DirectoryGroupViewSet, basename="directory-group")
router.register("changes", ChangeRequestViewSet, basename="change")

urlpatterns = [
    path("api/v1/integration-types/", IntegrationTypesView.as_view(), name="integration-types"),
    path("api/v1/auth/token/", ObtainAuthToken.as_view(), name="auth-token"),
    path("api/v1/webhooks/<int:integration_id>/", ChangeWebhookView.as_view(), name="integration-webhook"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
]
