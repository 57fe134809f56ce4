"""The pages of the web UI. Each reads what it shows in a fixed number of queries, whatever the data size (the
tests count them), and leaves writing to the same functions the API uses."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import DetailView, TemplateView

from syncplane.core.roles import ADMIN, OPERATOR
from syncplane.directory.models import DirectoryAccount
from syncplane.integrations import health, outbox
from syncplane.integrations.api.serializers import IntegrationSerializer
from syncplane.integrations.choices import AuthType, Category, RunStatus, SyncMode, SystemType, Trigger
from syncplane.integrations.engine import SyncAlreadyRunning, start_sync
from syncplane.integrations.errors import IntegrationError
from syncplane.integrations.evidence import verify_sync_logs
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.registry import build_connector, get_connector_class, registered_types
from syncplane.integrations.tasks import queue_sync
from syncplane.inventory.choices import AssetStatus, AssetType, ComplianceState
from syncplane.inventory.models import CANONICAL_FIELDS, Asset, AssetMerge, AssetSource
from syncplane.web.access import RoleRequiredMixin
from syncplane.web.charts import bar_chart
from syncplane.web.forms import IntegrationForm
from syncplane.web.lists import Filter, ListPage

CHART_RUNS = 30  # runs shown in the duration and records charts
CHART_DAYS = 14  # days shown in the failures chart


class LoginView(auth_views.LoginView):
    template_name = "web/login.html"
    redirect_authenticated_user = True


class DashboardView(RoleRequiredMixin, TemplateView):
    template_name = "web/dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        systems = list(ExternalSystem.objects.live().order_by("name"))
        outbox = health.outbox_figures()
        counts, counted_at = _counts()
        since = timezone.now() - timedelta(days=CHART_DAYS)
        runs = list(
            IntegrationSyncLog.objects.filter(finished_at__isnull=False, dry_run=False)
            .order_by("-finished_at")
            .values("id", "system_name", "status", "duration_ms", "records_read", "finished_at")[:CHART_RUNS]
        )[::-1]
        failures = (
            IntegrationSyncLog.objects.filter(finished_at__gte=since, status=RunStatus.FAILED)
            .annotate(day=TruncDate("finished_at")).values("day").annotate(count=Count("id")).order_by("day")
        )
        by_day = {row["day"]: row["count"] for row in failures}
        days = [(since + timedelta(days=n + 1)).date() for n in range(CHART_DAYS)]
        context.update(
            tiles=[_tile(system, outbox) for system in systems],
            counts=counts, counted_at=counted_at,
            runs=runs,
            duration_chart=bar_chart([(r["id"], (r["duration_ms"] or 0) / 1000) for r in runs],
                                     title="Sync duration (seconds), last runs", bad=_failed_ids(runs)),
            records_chart=bar_chart([(r["id"], r["records_read"]) for r in runs],
                                    title="Records read per run, last runs", bad=_failed_ids(runs)),
            failure_days=[(day, by_day.get(day, 0)) for day in days],
            failures_chart=bar_chart([(day.strftime("%m-%d"), by_day.get(day, 0)) for day in days],
                                     title="Failed runs per day", bad={d.strftime("%m-%d") for d in days}),
        )
        return context


def _failed_ids(runs) -> set:
    return {r["id"] for r in runs if r["status"] == RunStatus.FAILED}


def _tile(system: ExternalSystem, outbox: dict | None = None) -> dict:
    """What a tile or a row shows of an integration beyond its columns: its health as the API reports it,
    the next scheduled run and, for a monitoring sink, its backlog and dead letters."""
    figures = (outbox or {}).get(system.pk, {})
    return {"system": system, "health": health.shown_health(system), "next_run": health.next_scheduled_run(system),
            "backlog": figures.get("backlog", 0), "dead": figures.get("dead", 0)}


COUNTS_CACHE_SECONDS = 30  # the dashboard's counts scan whole tables: fresh enough, not on every view


def _counts() -> tuple[list[tuple[str, int, str]], object]:
    """The dashboard's summary line and when it was counted, kept COUNTS_CACHE_SECONDS in the cache: counting
    100,000 assets and their sources takes longer than the rest of the page."""
    cached = cache.get("web:dashboard:counts")
    if cached is None:
        cached = (_count_everything(), timezone.now())
        cache.set("web:dashboard:counts", cached, COUNTS_CACHE_SECONDS)
    return cached


def _count_everything() -> list[tuple[str, int, str]]:
    """(label, number, link) for the dashboard's summary line."""
    from syncplane.changes.models import ChangeRequest
    from syncplane.changes.states import OPEN_STATES

    assets = Asset.objects.filter(merged_into__isnull=True).aggregate(
        total=Count("id"), orphaned=Count("id", filter=Q(is_orphaned=True)),
        noncompliant=Count("id", filter=Q(compliance_state=ComplianceState.NONCOMPLIANT)),
    )
    return [
        ("Assets", assets["total"], reverse("web:asset-list")),
        ("Non-compliant assets", assets["noncompliant"], reverse("web:asset-list") + "?compliance_state=noncompliant"),
        ("Orphaned assets", assets["orphaned"], reverse("web:asset-list") + "?orphaned=true"),
        ("Live sources", AssetSource.objects.filter(deleted_at__isnull=True).count(), ""),
        ("Directory users", DirectoryAccount.objects.count(), ""),
        ("Open changes", ChangeRequest.objects.filter(state__in=OPEN_STATES).count(), reverse("web:change-list")),
        *_finding_counts(),
    ]


def _finding_counts() -> list[tuple[str, int, str]]:
    from syncplane.findings.choices import FindingState, Severity
    from syncplane.findings.models import Finding

    counts = Finding.objects.filter(state=FindingState.OPEN).aggregate(
        critical=Count("id", filter=Q(severity=Severity.CRITICAL)), high=Count("id", filter=Q(severity=Severity.HIGH)),
    )
    url = reverse("web:finding-list") + "?state=open&severity="
    return [("Open critical findings", counts["critical"], url + "critical"),
            ("Open high findings", counts["high"], url + "high")]


# --- integrations ------------------------------------------------------------------------------------------


class IntegrationListView(ListPage):
    template_name = "web/integration_list.html"
    search_fields = ("name", "base_url")
    search_placeholder = "Name or URL"
    filters = (
        Filter("system_type", "Type", "system_type", list(SystemType.choices)),
        Filter("category", "Category", "category", list(Category.choices)),
        Filter("status", "Last result", "last_sync_status", list(RunStatus.choices)),
        Filter("enabled", "Enabled", "enabled", [("true", "Yes"), ("false", "No")]),
    )
    sorts = {"name": ("name", "id"), "type": ("system_type", "name"), "last": ("last_sync_at", "id")}
    default_sort = "name"
    columns = (("name", "Name"), ("type", "Type"), ("", "Category"), ("", "Health"), ("last", "Last run"),
               ("", "Result"), ("", "Next run"), ("", "Enabled"))

    def base_queryset(self):
        return ExternalSystem.objects.live()

    def get_queryset(self):
        query = super().get_queryset()
        enabled = self.request.GET.get("enabled")
        return query.filter(enabled=enabled == "true") if enabled in ("true", "false") else query

    def get_filters(self):
        return tuple(f for f in self.filters if f.name != "enabled")  # filtered above, as a boolean

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["filters"].append((self.filters[-1], self.request.GET.get("enabled", "")))
        outbox = health.outbox_figures()
        context["rows"] = [_tile(system, outbox) for system in context["object_list"]]
        return context


class IntegrationDetailView(RoleRequiredMixin, DetailView):
    template_name = "web/integration_detail.html"
    context_object_name = "system"

    def get_queryset(self):
        return ExternalSystem.objects.live()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        system = self.object
        connector = get_connector_class(system.system_type)
        context.update(
            connector=describe(connector),
            modes=[mode for mode in SyncMode.values if connector.supports(mode)],
            tile=_tile(system, health.outbox_figures()),
            logs=system.sync_logs.order_by("-queued_at")[:10],
            active=system.sync_logs.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).first(),
            credential_fields=[(name, bool(value)) for name, value in system.credentials.items()],
        )
        return context


class IntegrationTypeListView(RoleRequiredMixin, TemplateView):
    """The first step of the create wizard: the connector catalogue, grouped by category."""

    template_name = "web/integration_types.html"
    required_role = ADMIN

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        by_category: dict[str, list] = {}
        for connector in sorted(registered_types().values(), key=lambda c: c.display_name):
            by_category.setdefault(Category(connector.category).label, []).append(describe(connector))
        context["categories"] = sorted(by_category.items())
        return context


class IntegrationFormView(RoleRequiredMixin, TemplateView):
    """Create (from a connector type) or edit an integration, with the API's validation."""

    template_name = "web/integration_form.html"
    required_role = ADMIN

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.instance = None
        if "pk" in kwargs:
            self.instance = get_object_or_404(ExternalSystem.objects.live(), pk=kwargs["pk"])
            system_type = self.instance.system_type
        else:
            system_type = kwargs["system_type"]
        if system_type not in registered_types():
            raise Http404("no such integration type")
        self.connector = get_connector_class(system_type)
        wanted = request.POST.get("auth_type") or request.GET.get("auth_type")
        default = self.instance.auth_type if self.instance else self.connector.auth_types[0]
        self.auth_type = wanted if wanted in self.connector.auth_types else default

    def form(self, data=None) -> IntegrationForm:
        return IntegrationForm(data, connector=self.connector, auth_type=self.auth_type, instance=self.instance)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", self.form())
        context.update(connector=describe(self.connector), auth_type=self.auth_type, instance=self.instance,
                       auth_types=[(value, AuthType(value).label) for value in self.connector.auth_types])
        return context

    def post(self, request, *args, **kwargs):
        form = self.form(request.POST)
        if form.is_valid():
            body = form.api_body()
            if self.instance is None:
                body["system_type"] = self.connector.system_type
            serializer = IntegrationSerializer(self.instance, data=body, partial=self.instance is not None,
                                               context={"request": request})
            if serializer.is_valid():
                system = serializer.save()
                messages.success(request, f"Saved {system.name}. Test the connection, then try a dry run.")
                return HttpResponseRedirect(reverse("web:integration-detail", args=[system.pk]))
            form.add_api_errors(serializer.errors)
        return self.render_to_response(self.get_context_data(form=form))


class IntegrationTestView(RoleRequiredMixin, View):
    """Test connection (operators): the answer inline (htmx) or as a message on the integration's page."""

    required_role = OPERATOR

    def post(self, request, pk):
        system = get_object_or_404(ExternalSystem.objects.live(), pk=pk)
        try:
            with build_connector(system) as connector:
                result = connector.test_connection()
            ok, message = result.ok, result.message
        except IntegrationError as exc:
            ok, message = False, str(exc)
        if request.htmx:
            return render(request, "web/_connection_result.html", {"ok": ok, "message": message})
        (messages.success if ok else messages.error)(request, f"Connection test: {message}")
        return HttpResponseRedirect(reverse("web:integration-detail", args=[pk]))


class IntegrationEnableView(RoleRequiredMixin, View):
    """Enable or disable (admins)."""

    required_role = ADMIN

    def post(self, request, pk):
        system = get_object_or_404(ExternalSystem.objects.live(), pk=pk)
        serializer = IntegrationSerializer(system, data={"enabled": request.POST.get("enabled") == "1"},
                                           partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        serializer.save()
        messages.success(request, f"{system.name} is {'enabled' if system.enabled else 'disabled'}.")
        return HttpResponseRedirect(reverse("web:integration-detail", args=[pk]))


def describe(connector) -> dict:
    """What the templates show of a connector class (a template would call a class, so never pass one)."""
    return {"system_type": connector.system_type, "display_name": connector.display_name,
            "base_url_help": connector.base_url_help, "record_kind": connector.record_kind}


class IntegrationSyncView(RoleRequiredMixin, View):
    """Sync now (operators): queue the run, then show its progress on the run's page."""

    required_role = OPERATOR

    def post(self, request, pk):
        system = get_object_or_404(ExternalSystem.objects.live(), pk=pk)
        connector = get_connector_class(system.system_type)
        mode = request.POST.get("mode", SyncMode.FULL)
        if mode not in SyncMode.values or not connector.supports(mode):
            messages.error(request, f"{connector.display_name} does not support {mode} syncs.")
            return HttpResponseRedirect(reverse("web:integration-detail", args=[pk]))
        dry_run = request.POST.get("dry_run") == "1"
        try:
            log = start_sync(system, mode=mode, dry_run=dry_run, trigger=Trigger.MANUAL,
                             requested_by=request.user.get_username())
        except SyncAlreadyRunning as exc:
            messages.info(request, "A sync of this integration is already going: here it is.")
            return HttpResponseRedirect(reverse("web:synclog-detail", args=[exc.log.pk]))
        queue_sync(log.pk)
        return HttpResponseRedirect(reverse("web:synclog-detail", args=[log.pk]))


# --- sync logs ---------------------------------------------------------------------------------------------


class SyncLogListView(ListPage):
    template_name = "web/synclog_list.html"
    search_fields = ("system_name", "correlation_id")
    search_placeholder = "Integration or correlation id"
    filters = (
        Filter("status", "Status", "status", list(RunStatus.choices)),
        Filter("mode", "Mode", "mode", list(SyncMode.choices)),
        Filter("system_type", "Type", "system_type", list(SystemType.choices)),
        Filter("integration", "Integration id", "external_system_id"),
        Filter("date", "Queued on (YYYY-MM-DD)", "queued_at__date"),
    )
    sorts = {"queued": ("queued_at", "id"), "integration": ("system_name", "id"), "duration": ("duration_ms", "id")}
    default_sort = "-queued"
    columns = (("queued", "Queued"), ("integration", "Integration"), ("", "Mode"), ("", "Status"),
               ("duration", "Duration"), ("", "Read"), ("", "Created"), ("", "Updated"), ("", "Failed"))

    def base_queryset(self):
        return IntegrationSyncLog.objects.all()

    def get_queryset(self):
        query = self.request.GET
        if query.get("integration") and not query["integration"].isdigit():
            return IntegrationSyncLog.objects.none()
        if query.get("date"):
            try:
                timezone.datetime.fromisoformat(query["date"])
            except ValueError:
                return IntegrationSyncLog.objects.none()
        return super().get_queryset()


class SyncLogDetailView(RoleRequiredMixin, DetailView):
    template_name = "web/synclog_detail.html"
    context_object_name = "log"
    queryset = IntegrationSyncLog.objects.select_related("external_system")
    OUTCOMES_SHOWN = 200

    def get_template_names(self):
        if self.request.htmx and self.request.GET.get("part") == "progress":
            return ["web/_synclog_progress.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        log = self.object
        context["running"] = log.status in (RunStatus.QUEUED, RunStatus.RUNNING)
        if context["running"] or self.request.GET.get("part") == "progress":
            return context
        outcomes = log.outcomes.order_by("id")
        context["failures"] = outcomes.filter(status="failed")[: self.OUTCOMES_SHOWN]
        context["changes"] = outcomes.exclude(status="failed")[: self.OUTCOMES_SHOWN]
        report = verify_sync_logs(log.external_system_id)
        context["evidence"] = report
        return context


# --- inventory ---------------------------------------------------------------------------------------------


class AssetListView(ListPage):
    template_name = "web/asset_list.html"
    search_fields = ("name", "serial_number", "hostname", "asset_tag", "owner_email")
    search_placeholder = "Name, serial, host, tag, owner"
    filters = (
        Filter("status", "Status", "status", list(AssetStatus.choices)),
        Filter("asset_type", "Type", "asset_type", list(AssetType.choices)),
        Filter("compliance_state", "Compliance", "compliance_state", list(ComplianceState.choices)),
        Filter("source", "Source system", "sources__external_system__system_type", list(SystemType.choices)),
        Filter("orphaned", "Orphaned", "is_orphaned", [("true", "Yes"), ("false", "No")]),
    )
    sorts = {"name": ("name", "id"), "updated": ("updated_at", "id"), "seen": ("last_seen_at", "id")}
    default_sort = "name"
    columns = (("name", "Name"), ("", "Type"), ("", "Status"), ("", "Serial"), ("", "Host"),
               ("", "Compliance"), ("", "Assigned to"), ("seen", "Last seen"), ("updated", "Updated"))

    def base_queryset(self):
        # Only the columns the list shows: the JSON ones (attribute_sources, reasons) are the asset page's.
        return Asset.objects.filter(merged_into__isnull=True).only(
            "id", "name", "asset_type", "status", "serial_number", "hostname", "compliance_state", "assigned_to",
            "last_seen_at", "updated_at", "is_orphaned",
        )

    def get_queryset(self):
        query = super().get_queryset()
        if self.request.GET.get("source"):
            query = query.distinct()
        return query

    def get_filters(self):
        orphaned = self.request.GET.get("orphaned")
        return tuple(f for f in self.filters if f.name != "orphaned" or orphaned not in ("true", "false")) + (
            (Filter("orphaned", "Orphaned", "is_orphaned", [(orphaned, orphaned)]),)
            if orphaned in ("true", "false") else ()
        )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # The orphaned select always offers both values, whatever get_filters narrowed for the query.
        context["filters"] = [
            (self.filters[-1], value) if option.name == "orphaned" else (option, value)
            for option, value in context["filters"]
        ]
        if not any(option.name == "orphaned" for option, _ in context["filters"]):
            context["filters"].append((self.filters[-1], ""))
        return context


class AssetDetailView(RoleRequiredMixin, DetailView):
    template_name = "web/asset_detail.html"
    context_object_name = "asset"
    queryset = Asset.objects.all()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        asset = self.object
        sources = list(asset.sources.select_related("external_system", "sighting")
                       .order_by("deleted_at", "first_seen_at"))
        by_id = {str(source.id): source for source in sources}
        context.update(
            attributes=[
                (name.replace("_", " "), getattr(asset, name), by_id.get(asset.attribute_sources.get(name)))
                for name in CANONICAL_FIELDS
            ],
            sources=sources,
            merges=AssetMerge.objects.filter(Q(into=asset) | Q(merged=asset)).select_related("into", "merged"),
            changes=_changes_naming(asset),
            open_findings=list(asset.findings.filter(state="open").values("severity").annotate(count=Count("id"))
                               .order_by("severity")),
            merged_into=asset.merged_into,
        )
        return context


def _changes_naming(asset: Asset):
    from syncplane.changes.models import ChangeRequest

    return ChangeRequest.objects.filter(affected_assets=asset).order_by("-created_at")[:20]


# --- the outbox --------------------------------------------------------------------------------------------


class OutboxListView(ListPage):
    """What Syncplane sends out (change requests, events), with the dead letters and why they failed."""

    template_name = "web/outbox_list.html"
    search_fields = ("subject_id", "idempotency_key", "last_error")
    search_placeholder = "Subject, idempotency key or error"
    filters = (
        Filter("status", "Status", "status", [*OutboxStatus.choices]),
        Filter("kind", "Kind", "kind", [*OutboxKind.choices]),
    )
    sorts = {"created": ("created_at", "id"), "next": ("next_attempt_at", "id")}
    default_sort = "-created"
    columns = (("created", "Created"), ("", "Kind"), ("", "To"), ("", "Subject"), ("", "Status"), ("", "Attempts"),
               ("next", "Next attempt"), ("", "Last error"), ("", ""))

    def base_queryset(self):
        return OutboxMessage.objects.select_related("external_system").defer("payload")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["figures"] = health.summary()["outbox"]
        return context


class OutboxResendView(RoleRequiredMixin, View):
    """Send a dead letter again (admins)."""

    required_role = ADMIN

    def post(self, request, pk):
        get_object_or_404(OutboxMessage, pk=pk)
        try:
            outbox.resend_dead_letter(pk)
            messages.success(request, f"Message #{pk} will be sent again.")
        except outbox.NotADeadLetter as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("web:outbox-list") + "?status=failed")
