"""The field mapping editor of an integration: a sample record of the source (fetched by the API's preview code)
beside the canonical fields of the connector's record kind; per field a source path and a pipeline of steps; the
mapped result follows the form as it is typed (htmx, debounced), and Save goes through the API's serializer.

Operators look and try (the sample is a read of the external system, so viewers are refused); admins save. The
sample is kept in the cache for a few minutes, so typing maps it again without asking the source each time."""

import json

from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views import View
from django.views.generic import TemplateView

from syncplane.core.roles import ADMIN, OPERATOR
from syncplane.integrations import field_mapping
from syncplane.integrations.api.serializers import IntegrationSerializer
from syncplane.integrations.api.views import fetch_first_page, preview_sample
from syncplane.integrations.errors import IntegrationError
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.registry import get_connector_class
from syncplane.web.access import RoleRequiredMixin, require_role

SAMPLE_RECORDS = 50  # raw records kept as the sample (the preview's warnings look at all of them)
SAMPLE_SECONDS = 600
MAX_PATHS = 400  # flattened paths shown of one raw record
SOURCE, STEPS = "source__", "steps__"
STEP_TEMPLATES = {  # what "Add step" writes, to be filled in
    "lower": {"op": "lower"}, "upper": {"op": "upper"}, "strip": {"op": "strip"},
    "regex": {"op": "regex", "pattern": "(.*)", "group": 1},
    "replace": {"op": "replace", "old": "", "new": ""},
    "split": {"op": "split", "sep": ",", "index": 0},
    "concat": {"op": "concat", "sources": [], "sep": " "},
    "map": {"op": "map", "values": {}, "fallback": ""},
    "default": {"op": "default", "value": ""},
    "date": {"op": "date", "format": "%Y-%m-%d %H:%M:%S"},
}


class MappingEditor:
    """One integration's editor state: its fields, the form's rules, and the problems found in them."""

    def __init__(self, system: ExternalSystem, data=None):
        self.system = system
        self.record_kind = get_connector_class(system.system_type).record_kind
        self.fields = list(field_mapping.targets(self.record_kind))
        self.errors: dict[str, list[str]] = {}
        self.general_errors: list[str] = []
        self.rows = {name: _row_of(rule) for name, rule in (system.field_mapping or {}).items()}
        if data is not None:
            self.rows = {name: (data.get(SOURCE + name, "").strip(), data.get(STEPS + name, "").strip())
                         for name in self.fields}

    def overrides(self) -> dict:
        """The field mapping the form says; a line that is not JSON becomes an error next to its field."""
        result = {}
        for name, (source, steps_text) in self.rows.items():
            if not source and not steps_text:
                continue
            rule: dict = {"source": source} if source else {}
            steps = []
            for number, line in enumerate(steps_text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    self.add_error(name, f"line {number} is not a JSON object: {exc}")
                    continue
                if not isinstance(item, dict):
                    self.add_error(name, f"line {number} is not a JSON object")
                elif "op" in item:
                    steps.append(item)
                else:  # the shorthand options (transform, map, default, date_format) as one object
                    rule.update(item)
            if steps:
                rule["steps"] = steps
            result[name] = rule
        return result

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def add_problems(self, problems) -> None:
        """Validation messages start with the field they name ("location: step 2 (regex): ...")."""
        for problem in problems if isinstance(problems, list) else [problems]:
            text = str(problem)
            name = text.split(":", 1)[0].strip()
            if name in self.fields:
                self.add_error(name, text.split(":", 1)[1].strip())
            else:
                self.general_errors.append(text)

    def field_rows(self) -> list[dict]:
        return [{"name": name, "source": self.rows.get(name, ("", ""))[0],
                 "steps": self.rows.get(name, ("", ""))[1], "errors": self.errors.get(name, [])}
                for name in self.fields]


def _row_of(rule) -> tuple[str, str]:
    """A saved rule as the form shows it: its source, and its steps one JSON object a line (the shorthand
    options together on one line)."""
    if not isinstance(rule, dict):
        return "", json.dumps(rule)
    shorthand = {key: value for key, value in rule.items() if key not in ("source", "steps")}
    lines = [json.dumps(shorthand)] if shorthand else []
    lines += [json.dumps(step) for step in rule.get("steps") or ()]
    return str(rule.get("source") or ""), "\n".join(lines)


def flatten(raw, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, value as text) of every leaf of a raw record, as a source path reaches it."""
    found: list[tuple[str, str]] = []
    stack = [(prefix, raw)]
    while stack and len(found) < MAX_PATHS:
        path, value = stack.pop()
        if isinstance(value, dict):
            if path and "value" in value:  # {"value", "display_value"}: the path itself yields the value
                found.append((path, field_mapping.source_text({path: value}, path)))
            stack.extend((f"{path}.{key}" if path else str(key), child) for key, child in reversed(value.items()))
        else:
            found.append((path, field_mapping.source_text({path: value}, path)[:300]))
    return found


def _sample(request, system: ExternalSystem, refresh: bool = False) -> dict:
    """The sample records of this integration for this user: from the cache, or fetched now by the preview's
    code (the first page of a full read). {"raws": [...], "total": n, "error": ""}."""
    key = f"web:mapping-sample:{system.pk}:{request.user.pk}"
    sample = None if refresh else cache.get(key)
    if sample is None:
        try:
            page = fetch_first_page(system)
        except IntegrationError as exc:
            return {"raws": [], "total": None, "error": str(exc)}
        sample = {"raws": page.records[:SAMPLE_RECORDS] if page else [], "total": page.total if page else None,
                  "error": ""}
        cache.set(key, sample, SAMPLE_SECONDS)
    return sample


def _chosen(request, sample: dict) -> int:
    try:
        index = int(request.POST.get("record", request.GET.get("record", 0)))
    except ValueError:
        index = 0
    return index if 0 <= index < len(sample["raws"]) else 0


def _result(editor: MappingEditor, sample: dict, index: int) -> dict:
    """The chosen record mapped with the form's field mapping, and the warnings over the sample."""
    overrides = editor.overrides()
    problems = field_mapping.validate(overrides, editor.record_kind)
    if problems or editor.errors or not sample["raws"]:
        editor.add_problems(problems)
        return {"record": None, "warnings": []}
    try:
        preview = preview_sample(editor.system, overrides, sample["raws"], sample["total"],
                                 shown=len(sample["raws"]))
    except IntegrationError as exc:
        editor.general_errors.append(str(exc))
        return {"record": None, "warnings": []}
    record = preview["records"][index]
    mapped = sorted(_flat_mapped(record["mapped"] or {}).items())
    return {"record": {**record, "fields": mapped}, "warnings": preview["warnings"]}


def _flat_mapped(attributes: dict) -> dict:
    """The mapped record as the canonical field names say them (device.location for a nested asset)."""
    kind = attributes.get("kind")
    flat = {}
    for key, value in attributes.items():
        if key == "asset" and isinstance(value, dict):
            flat.update({f"{kind}.{name}": item for name, item in value.items()})
        elif kind and key not in ("kind",):
            flat[f"{kind}.{key}"] = value
        else:
            flat[key] = value
    return flat


def _system(pk: int) -> ExternalSystem:
    system = get_object_or_404(ExternalSystem.objects.live(), pk=pk)
    if not field_mapping.targets(get_connector_class(system.system_type).record_kind):
        raise Http404("this kind of integration has no field mapping")
    return system


class FieldMappingView(RoleRequiredMixin, TemplateView):
    """The editor (operators look and try); its POST saves (admins), with the API's validation."""

    template_name = "web/mapping.html"
    required_role = OPERATOR

    def get_context_data(self, editor: MappingEditor | None = None, **kwargs):
        context = super().get_context_data(**kwargs)
        system = _system(self.kwargs["pk"])
        editor = editor or MappingEditor(system)
        sample = _sample(self.request, system, refresh=self.request.GET.get("refresh") == "1")
        index = _chosen(self.request, sample)
        raws = sample["raws"]
        paths = flatten(raws[index]) if raws else []
        context.update(
            system=system, editor=editor, sample=sample, index=index, paths=paths,
            choices=[(n, _label(raw, n)) for n, raw in enumerate(raws)],
            result=_result(editor, sample, index), ops=list(STEP_TEMPLATES),
            all_paths=sorted({path for raw in raws[:10] for path, _ in flatten(raw)}),
        )
        return context

    def post(self, request, pk):
        require_role(request.user, ADMIN)
        system = _system(pk)
        editor = MappingEditor(system, request.POST)
        overrides = editor.overrides()
        if not editor.errors:
            serializer = IntegrationSerializer(system, data={"field_mapping": overrides}, partial=True,
                                               context={"request": request})
            if serializer.is_valid():
                serializer.save()
                messages.success(request, f"Saved the field mapping of {system.name} ({len(overrides)} fields).")
                return HttpResponseRedirect(reverse("web:integration-mapping", args=[pk]))
            for key, problems in serializer.errors.items():
                if key == "field_mapping":
                    editor.add_problems(problems)
                else:
                    editor.general_errors.extend(f"{key}: {problem}" for problem in problems)
        messages.error(request, "Not saved: see the messages next to the fields.")
        return self.render_to_response(self.get_context_data(editor=editor), status=400)


def _label(raw, index: int) -> str:
    if isinstance(raw, dict):
        for key in ("name", "displayName", "userPrincipalName", "sAMAccountName", "deviceName", "id", "sys_id"):
            text = field_mapping.source_text(raw, key)
            if text:
                return f"{index + 1}: {text[:60]}"
    return f"{index + 1}"


class FieldMappingPreviewView(RoleRequiredMixin, View):
    """The live part: the chosen sample record mapped with the form as it is now (nothing saved)."""

    required_role = OPERATOR

    def post(self, request, pk):
        system = _system(pk)
        editor = MappingEditor(system, request.POST)
        sample = _sample(request, system)
        index = _chosen(request, sample)
        return render(request, "web/mapping_result.html",
                      {"result": _result(editor, sample, index), "editor": editor, "sample": sample})


class FieldMappingStepView(RoleRequiredMixin, View):
    """"Add step": the field's row again, with a step of the chosen op appended to fill in."""

    required_role = OPERATOR

    def post(self, request, pk):
        system = _system(pk)
        name = request.POST.get("field", "")
        op = request.POST.get(f"op__{name}", "")
        editor = MappingEditor(system, request.POST)
        if name not in editor.fields or op not in STEP_TEMPLATES:
            raise Http404("no such field or step")
        source, steps = editor.rows[name]
        editor.rows[name] = (source, "\n".join(filter(None, (steps, json.dumps(STEP_TEMPLATES[op])))))
        row = next(row for row in editor.field_rows() if row["name"] == name)
        return render(request, "web/mapping_row.html", {"row": row, "system": system, "ops": list(STEP_TEMPLATES)})
