from django.contrib.auth import views as auth_views
from django.urls import path

from syncplane.web import changes, directory, findings, mapping, views

app_name = "web"

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="web:login"), name="logout"),
    path("integrations/", views.IntegrationListView.as_view(), name="integration-list"),
    path("integrations/new/", views.IntegrationTypeListView.as_view(), name="integration-types"),
    path("integrations/new/<str:system_type>/", views.IntegrationFormView.as_view(), name="integration-create"),
    path("integrations/<int:pk>/", views.IntegrationDetailView.as_view(), name="integration-detail"),
    path("integrations/<int:pk>/edit/", views.IntegrationFormView.as_view(), name="integration-edit"),
    path("integrations/<int:pk>/test/", views.IntegrationTestView.as_view(), name="integration-test"),
    path("integrations/<int:pk>/enabled/", views.IntegrationEnableView.as_view(), name="integration-enabled"),
    path("integrations/<int:pk>/sync/", views.IntegrationSyncView.as_view(), name="integration-sync"),
    path("integrations/<int:pk>/mapping/", mapping.FieldMappingView.as_view(), name="integration-mapping"),
    path("integrations/<int:pk>/mapping/preview/", mapping.FieldMappingPreviewView.as_view(),
         name="integration-mapping-preview"),
    path("integrations/<int:pk>/mapping/step/", mapping.FieldMappingStepView.as_view(),
         name="integration-mapping-step"),
    path("sync-logs/", views.SyncLogListView.as_view(), name="synclog-list"),
    path("sync-logs/<int:pk>/", views.SyncLogDetailView.as_view(), name="synclog-detail"),
    path("assets/", views.AssetListView.as_view(), name="asset-list"),
    path("assets/<uuid:pk>/", views.AssetDetailView.as_view(), name="asset-detail"),
    path("changes/", changes.ChangeListView.as_view(), name="change-list"),
    path("changes/new/", changes.ChangeFormView.as_view(), name="change-create"),
    path("changes/<int:pk>/", changes.ChangeDetailView.as_view(), name="change-detail"),
    path("changes/<int:pk>/edit/", changes.ChangeFormView.as_view(), name="change-edit"),
    path("changes/<int:pk>/<str:action>/", changes.ChangeActionView.as_view(), name="change-action"),
    path("findings/", findings.FindingListView.as_view(), name="finding-list"),
    path("findings/<uuid:pk>/", findings.FindingDetailView.as_view(), name="finding-detail"),
    path("findings/<uuid:pk>/<str:decision>/", findings.FindingDecisionView.as_view(), name="finding-decision"),
    path("scans/", findings.ScanListView.as_view(), name="scan-list"),
    path("scans/upload/", findings.ScanUploadView.as_view(), name="scan-upload"),
    path("outbox/", views.OutboxListView.as_view(), name="outbox-list"),
    path("outbox/<int:pk>/resend/", views.OutboxResendView.as_view(), name="outbox-resend"),
    path("directory/users/", directory.DirectoryUserListView.as_view(), name="directory-users"),
    path("directory/groups/", directory.DirectoryGroupListView.as_view(), name="directory-groups"),
]

# The main navigation: (section, label, url name). A section is the first part of a page's url name.
NAV = (
    ("dashboard", "Dashboard", "web:dashboard"),
    ("integration", "Integrations", "web:integration-list"),
    ("synclog", "Sync logs", "web:synclog-list"),
    ("asset", "Inventory", "web:asset-list"),
    ("change", "Changes", "web:change-list"),
    ("finding", "Findings", "web:finding-list"),
    ("directory", "Directory", "web:directory-users"),
    ("outbox", "Outbox", "web:outbox-list"),
)
