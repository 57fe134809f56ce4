"""The findings pages: the list with the security team's filters, one finding with its sources, locations and
history and the decisions (accept a risk, false positive, reopen), the scans, and the report upload form. The
writing is the findings app's own (lifecycle, ingest_scan through the API's upload serializer)."""

import uuid

from django import forms
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, TemplateView

from syncplane.core.roles import OPERATOR
from syncplane.findings import lifecycle
from syncplane.findings.api import ScanUploadSerializer, upload_tools
from syncplane.findings.choices import FindingState, Severity
from syncplane.findings.ingest import ingest_scan, report_records
from syncplane.findings.models import Finding, Scan
from syncplane.integrations.errors import RecordError
from syncplane.integrations.registry import registered_types
from syncplane.web.access import RoleRequiredMixin
from syncplane.web.lists import Filter, ListPage


class FindingListView(ListPage):
    template_name = "web/finding_list.html"
    search_fields = ("vulnerability_id", "package_name", "title", "target__name")
    search_placeholder = "CVE, package, title or target"
    sorts = {"severity": ("severity_rank", "-last_seen_at", "id"), "seen": ("last_seen_at", "id"),
             "vulnerability": ("vulnerability_id", "id"), "first": ("first_seen_at", "id")}
    default_sort = "severity"
    columns = (("severity", "Severity"), ("vulnerability", "Vulnerability"), ("", "Package"), ("", "Fixed in"),
               ("", "Target"), ("", "State"), ("first", "First seen"), ("seen", "Last seen"))

    def get_filters(self):
        return (
            Filter("severity", "Severity", "severity", list(Severity.choices)),
            Filter("state", "State", "state", list(FindingState.choices)),
            Filter("tool", "Tool", "sources__tool", [(t, t) for t in sorted(registered_types())
                                                    if registered_types()[t].record_kind == "finding"]),
            Filter("fixable", "Fix known", "", [("yes", "Yes"), ("no", "No")], apply=_fixable),
            Filter("asset", "Asset id", "", apply=_of_asset),
        )

    def base_queryset(self):
        from django.db.models import Case, IntegerField, Value, When

        ranks = [When(severity=value, then=Value(rank)) for rank, value in enumerate(Severity.values)]
        return Finding.objects.select_related("target").annotate(
            severity_rank=Case(*ranks, default=Value(len(ranks)), output_field=IntegerField()))

    def get_queryset(self):
        query = super().get_queryset()
        return query.distinct() if self.request.GET.get("tool") else query


def _of_asset(query, value: str):
    try:
        return query.filter(asset_id=uuid.UUID(value))
    except ValueError:
        return query.none()


def _fixable(query, value: str):
    return query.exclude(fixed_version="") if value == "yes" else query.filter(fixed_version="")


class DecisionForm(forms.Form):
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    expires_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                     help_text="In UTC. The finding reopens when the decision expires.")


class FindingDetailView(RoleRequiredMixin, DetailView):
    template_name = "web/finding_detail.html"
    context_object_name = "finding"
    queryset = Finding.objects.select_related("target", "asset").prefetch_related("sources__integration", "history")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["decision_form"] = kwargs.get("decision_form") or DecisionForm()
        return context


class FindingDecisionView(RoleRequiredMixin, View):
    """accept / false-positive / reopen (operators), through the findings lifecycle."""

    required_role = OPERATOR
    TO_STATE = {"accept": FindingState.ACCEPTED, "false-positive": FindingState.FALSE_POSITIVE}

    def post(self, request, pk, decision):
        finding = get_object_or_404(Finding, pk=pk)
        actor = request.user.get_username()
        try:
            if decision == "reopen":
                lifecycle.reopen(finding, actor=actor, reason=request.POST.get("reason", "")[:2000])
            elif decision in self.TO_STATE:
                form = DecisionForm(request.POST)
                if not form.is_valid():  # the finding's page again, the form's errors next to its fields
                    page = FindingDetailView()
                    page.setup(request, pk=pk)
                    page.object = page.get_object()
                    context = page.get_context_data(object=page.object, decision_form=form, form_error=True)
                    return page.render_to_response(context, status=400)
                lifecycle.decide(finding, self.TO_STATE[decision], actor=actor, **form.cleaned_data)
            else:
                messages.error(request, f"Unknown decision {decision!r}.")
                return HttpResponseRedirect(reverse("web:finding-detail", args=[pk]))
            messages.success(request, "Recorded.")
        except lifecycle.DecisionError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("web:finding-detail", args=[pk]))


class ScanListView(ListPage):
    template_name = "web/scan_list.html"
    search_fields = ("filename", "uploader", "correlation_id")
    search_placeholder = "File, uploader or correlation id"
    sorts = {"started": ("started_at", "id")}
    default_sort = "-started"
    columns = (("started", "Started"), ("", "Tool"), ("", "From"), ("", "Status"), ("", "Findings"), ("", "New"),
               ("", "Still open"), ("", "Reopened"), ("", "Fixed"))

    def base_queryset(self):
        return Scan.objects.select_related("integration")


class ScanUploadView(RoleRequiredMixin, TemplateView):
    """Upload a scanner report (operators): the API's upload rules, the answer as a message."""

    template_name = "web/scan_upload.html"
    required_role = OPERATOR

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["tools"] = upload_tools()
        return context

    def post(self, request, *args, **kwargs):
        body = ScanUploadSerializer(data={**request.POST.dict(), **request.FILES.dict()})
        if not body.is_valid():
            return self.render_to_response(self.get_context_data(errors=body.errors))
        data = body.validated_data
        upload = data["file"]
        try:
            result = ingest_scan(
                tool=data["tool"], records=report_records(data["tool"], upload, data.get("target")),
                integration=data.get("integration"), uploaded_by=request.user, filename=upload.name or "",
            )
        except (RecordError, UnicodeDecodeError, ValueError) as exc:
            errors = {"file": [f"the report was refused, nothing was written: {exc}"]}
            return self.render_to_response(self.get_context_data(errors=errors))
        messages.success(request, f"Scan #{result.scan_id}: {result.total} findings, {result.new} new, "
                                  f"{result.still_open} still open, {result.reopened} reopened, {result.fixed} fixed.")
        return HttpResponseRedirect(reverse("web:scan-list"))
