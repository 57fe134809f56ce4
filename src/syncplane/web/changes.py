"""The change pages: list, create and edit drafts, submit to an ITSM integration, cancel, send again after a
refusal, and the history as a timeline. The writing goes through the API's serializer and the changes app's
actions, as the API's does: one set of rules."""

from django import forms
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, TemplateView

from syncplane.changes import actions
from syncplane.changes.api.serializers import ChangeRequestSerializer
from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeRequest
from syncplane.changes.states import IllegalTransition
from syncplane.core.roles import OPERATOR
from syncplane.integrations.choices import Category
from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.identity import serial_key
from syncplane.inventory.models import Asset
from syncplane.web.access import RoleRequiredMixin
from syncplane.web.lists import Filter, ListPage

MAX_AFFECTED = 200


class ChangeForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)
    risk_score = forms.IntegerField(min_value=0, max_value=100, initial=0,
                                    help_text="0 (none) to 100 (highest); each ITSM tool gets its own risk codes.")
    planned_start = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                        help_text="In UTC.")
    planned_end = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                      help_text="In UTC; after the planned start.")
    affected_assets = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Asset names or serial numbers, one per line.",
    )
    external_system = forms.ModelChoiceField(
        queryset=ExternalSystem.objects.none(), required=False, label="ITSM integration",
        help_text="Where the change goes when it is submitted.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["external_system"].queryset = ExternalSystem.objects.live().filter(category=Category.ITSM)

    def clean_affected_assets(self):
        names = [line.strip() for line in self.cleaned_data["affected_assets"].splitlines() if line.strip()]
        if len(names) > MAX_AFFECTED:
            raise forms.ValidationError(f"at most {MAX_AFFECTED} assets")
        serials = {serial_key(name) for name in names} - {""}
        found = Asset.objects.filter(merged_into__isnull=True, name__in=names).values_list("pk", "name")
        by_serial = Asset.objects.filter(merged_into__isnull=True, serial_number__in=serials)
        ids = {pk for pk, _ in found} | set(by_serial.values_list("pk", flat=True))
        known = {name for _, name in found} | set(by_serial.values_list("serial_number", flat=True))
        unknown = [name for name in names if name not in known and serial_key(name) not in known]
        if unknown:
            raise forms.ValidationError(f"no asset is called {', '.join(unknown[:5])}")
        return sorted(ids, key=str)

    def api_body(self) -> dict:
        data = self.cleaned_data
        body = {name: data[name] for name in ("title", "description", "risk_score", "planned_start", "planned_end")}
        body["affected_assets"] = [str(pk) for pk in data["affected_assets"]]
        body["external_system"] = data["external_system"].pk if data["external_system"] else None
        return body


class ChangeListView(ListPage):
    template_name = "web/change_list.html"
    search_fields = ("title", "external_change_request_id", "correlation_id")
    search_placeholder = "Title, CHG number or correlation id"
    filters = (Filter("state", "State", "state", list(ChangeState.choices)),)
    sorts = {"created": ("created_at", "id"), "title": ("title", "id"), "risk": ("risk_score", "id"),
             "start": ("planned_start", "id")}
    default_sort = "-created"
    columns = (("created", "Created"), ("title", "Title"), ("", "State"), ("risk", "Risk"), ("start", "Planned start"),
               ("", "ITSM"), ("", "Requester"))

    def base_queryset(self):
        return ChangeRequest.objects.select_related("external_system", "requester")


class ChangeFormView(RoleRequiredMixin, TemplateView):
    """Create a change, or edit a draft (operators)."""

    template_name = "web/change_form.html"
    required_role = OPERATOR

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.change = get_object_or_404(ChangeRequest, pk=kwargs["pk"]) if "pk" in kwargs else None

    def initial(self) -> dict:
        change = self.change
        if change is None:
            return {}
        return {
            "title": change.title, "description": change.description, "risk_score": change.risk_score,
            "planned_start": change.planned_start, "planned_end": change.planned_end,
            "external_system": change.external_system_id,
            "affected_assets": "\n".join(a.name or a.serial_number for a in change.affected_assets.all()),
        }

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", ChangeForm(initial=self.initial()))
        context["change"] = self.change
        return context

    def get(self, request, *args, **kwargs):
        if self.change is not None and self.change.state != ChangeState.DRAFT:
            messages.error(request, f"Only a draft can be edited; this change is {self.change.get_state_display()}.")
            return HttpResponseRedirect(reverse("web:change-detail", args=[self.change.pk]))
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        if self.change is not None and self.change.state != ChangeState.DRAFT:
            return self.get(request, *args, **kwargs)
        form = ChangeForm(request.POST)
        if form.is_valid():
            serializer = ChangeRequestSerializer(self.change, data=form.api_body(), partial=self.change is not None,
                                                 context={"request": request})
            if serializer.is_valid():
                change = serializer.save(**({} if self.change else {"requester": request.user}))
                messages.success(request, f"Saved the draft {change.title!r}.")
                return HttpResponseRedirect(reverse("web:change-detail", args=[change.pk]))
            for field, errors in serializer.errors.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, str(error))
        return self.render_to_response(self.get_context_data(form=form))


class ChangeDetailView(RoleRequiredMixin, DetailView):
    template_name = "web/change_detail.html"
    context_object_name = "change"
    queryset = ChangeRequest.objects.select_related("external_system", "requester").prefetch_related(
        "affected_assets", "events", "approvals"
    )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        change = self.object
        entries = [(e.created_at, 1, e.sequence, "event", e) for e in change.events.all()]
        entries += [(a.created_at, 0, a.pk, "approval", a) for a in change.approvals.all()]
        context["timeline"] = [(kind, row) for *_, kind, row in sorted(entries, key=lambda entry: entry[:3])]
        context["itsm_systems"] = ExternalSystem.objects.live().filter(category=Category.ITSM)
        context["editable"] = change.state == ChangeState.DRAFT
        context["cancellable"] = change.state not in (ChangeState.CANCELLED, ChangeState.COMPLETED,
                                                      ChangeState.REJECTED)
        return context


class ChangeActionView(RoleRequiredMixin, View):
    """submit / resubmit / cancel (operators), through changes.actions as the API does."""

    required_role = OPERATOR

    def post(self, request, pk, action):
        change = get_object_or_404(ChangeRequest, pk=pk)
        try:
            if action == "submit":
                system = None
                if request.POST.get("external_system"):
                    system = get_object_or_404(ExternalSystem.objects.live(), pk=request.POST["external_system"])
                actions.submit(change, user=request.user, external_system=system)
                messages.success(request, "Submitted: the change request is being created in the ITSM tool.")
            elif action == "resubmit":
                actions.resubmit(change, user=request.user)
                messages.success(request, "Sent again to the ITSM tool.")
            elif action == "cancel":
                actions.cancel(change, user=request.user, reason=request.POST.get("reason", "")[:1000])
                messages.success(request, "Cancelled.")
            else:
                messages.error(request, f"Unknown action {action!r}.")
        except (IllegalTransition, actions.ChangeError) as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("web:change-detail", args=[pk]))
