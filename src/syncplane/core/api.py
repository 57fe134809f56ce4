"""What every API view shares: the error body, the JSON parser, pagination, strict input (the schema's
error answers: core/schema.py). DRF reads its settings' classes from here while defining its views: nothing
here may import rest_framework.views at module level.

Bad input is a 400 that names what is wrong, never a 500 and never silently ignored: a JSON body nested too
deeply, a page beyond what a 64-bit database integer holds, a key or query parameter the endpoint does not
know, a NUL character PostgreSQL cannot store.
"""

import json

from django import forms
from django_filters import rest_framework as filters
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.filters import BaseFilterBackend, OrderingFilter, SearchFilter
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings

from syncplane.core.context import get_correlation_id

MAX_JSON_DEPTH = 32  # configs and field mappings nest three or four levels; vendor payloads a few more
MAX_DB_INT = 2**63 - 1  # the largest id or offset a database integer holds (PostgreSQL bigint, SQLite INTEGER)


def exception_handler(exc, context):
    """DRF's handler, plus the correlation id in every error body so a user can quote it."""
    from rest_framework.views import exception_handler as drf_exception_handler  # views import this module

    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        response.data.setdefault("correlation_id", get_correlation_id())
    return response


# --- parsing ---------------------------------------------------------------------------------------------


def json_depth(value) -> int:
    """How deep a parsed JSON value nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH):
    """json.loads that refuses a document nested deeper than max_depth with ValueError. The C decoder recurses
    once per level, so a body of a few thousand brackets would otherwise raise RecursionError (a 500)."""
    try:
        data = json.loads(text, parse_constant=json_constant_refused)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    if json_depth(data) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return data


def json_constant_refused(name: str):
    raise ValueError(f"{name} is not valid JSON")


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser with a nesting limit (and no NaN or Infinity, which are not JSON)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            return loads_json(stream.read().decode(encoding))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


# --- pagination -------------------------------------------------------------------------------------------

MAX_PAGE_SIZE = 500


def _query_int(request, name: str, *, minimum: int, maximum: int, default: int, clamp: bool = False) -> int:
    """A non-negative integer query parameter; anything else is a 400 naming it. With `clamp`, a page size
    above `maximum` (but within 64 bits) gets `maximum`, as DRF and NetBox do: a script asking for 2,000 rows
    gets pages of 500 and follows `next`, instead of failing."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [f"must be an integer from {minimum} to {maximum}"]}) from None
    if clamp and maximum < value <= MAX_DB_INT:
        return maximum
    if not minimum <= value <= maximum:
        raise ValidationError({name: [f"must be an integer from {minimum} to {maximum}"]})
    return value


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """limit / offset paging that refuses what it cannot honour (a negative offset, a limit of 0, a number
    beyond 64 bits, a non-number) with a 400 instead of quietly answering another page; a limit above
    max_limit gets max_limit."""

    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request):
        return _query_int(request, self.limit_query_param, minimum=1, maximum=self.max_limit,
                          default=self.default_limit, clamp=True)

    def get_offset(self, request):
        return _query_int(request, self.offset_query_param, minimum=0, maximum=MAX_DB_INT - self.max_limit,
                          default=0)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit),
                  self.offset_query_param: (0, MAX_DB_INT - self.max_limit)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


class StrictCursorPagination(CursorPagination):
    """Cursor paging with the same refusal of a page size it cannot honour."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        return _query_int(request, self.page_size_query_param, minimum=1, maximum=self.max_page_size,
                          default=self.page_size, clamp=True)

    def decode_cursor(self, request):
        # DRF answers a cursor it cannot read with 404, as if the list did not exist: it is a bad parameter.
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["not a cursor this list gave out"]}) from None

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


# --- strict input -----------------------------------------------------------------------------------------


class IdFilter(filters.NumberFilter):
    """A filter by a database id: a whole number a database integer holds (a decimal or a 30-digit number is a
    400, not a database error)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_DB_INT)
        super().__init__(*args, **kwargs)


ALWAYS_KNOWN_PARAMETERS = {"format"}


class UnknownQueryParametersFilter(BaseFilterBackend):
    """Refuse query parameters the view does not know (400 naming them): a misspelt filter must not answer
    the whole list as if it had matched. Known: the filterset's filters, search, ordering, paging, format.
    Listed first among the filter backends, so it runs before any of them, on lists and on detail views."""

    def filter_queryset(self, request, queryset, view):
        unknown = sorted(set(request.query_params) - known_query_parameters(request, queryset, view))
        if unknown:
            raise ValidationError({name: ["unknown query parameter"] for name in unknown})
        # PostgreSQL refuses a NUL in any text it is given (a search term too): say so instead of a 500.
        with_nul = sorted(name for name, values in request.query_params.lists() if any("\x00" in v for v in values))
        if with_nul:
            raise ValidationError({name: ["contains a NUL character (%00)"] for name in with_nul})
        return queryset


def known_query_parameters(request, queryset, view) -> set[str]:
    known = set(ALWAYS_KNOWN_PARAMETERS)
    for backend_class in getattr(view, "filter_backends", api_settings.DEFAULT_FILTER_BACKENDS):
        backend = backend_class()
        if isinstance(backend, DjangoFilterBackend):
            filterset_class = backend.get_filterset_class(view, queryset)
            if filterset_class is not None:
                for name, declared in filterset_class.base_filters.items():
                    suffixes = getattr(declared.field_class.widget, "suffixes", None) or [""]
                    known.update(f"{name}_{suffix}" if suffix else name for suffix in suffixes)
        elif isinstance(backend, SearchFilter) and getattr(view, "search_fields", None):
            known.add(backend.search_param)
        elif isinstance(backend, OrderingFilter) and getattr(view, "ordering_fields", None):
            known.add(backend.ordering_param)
    paginator = getattr(view, "paginator", None)
    for attribute in ("limit_query_param", "offset_query_param", "page_query_param", "page_size_query_param",
                      "cursor_query_param"):
        name = getattr(paginator, attribute, None)
        if name:
            known.add(name)
    return known


class StrictFieldsMixin:
    """A serializer that refuses keys it does not know, naming them: {"dryrun": true} must not run a real
    sync. Read-only fields are known (a client may send back what it read); only the top level is checked,
    nested JSON values belong to their own field's validation."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            # The browsable API's HTML form posts its CSRF token beside the fields.
            unknown = sorted(set(data) - set(self.fields) - {"csrfmiddlewaretoken"})
            if unknown:
                expected = ", ".join(name for name, field in self.fields.items() if not field.read_only)
                raise ValidationError({name: [f"unknown field; this endpoint takes {expected or 'no fields'}"]
                                       for name in unknown})
        return super().to_internal_value(data)


class EmptyBodySerializer(StrictFieldsMixin, serializers.Serializer):
    """The body of an action that takes none: any key in it is refused rather than ignored."""


# --- JSON fields ------------------------------------------------------------------------------------------


def nul_problem(value, path: str = "") -> str | None:
    """Where a NUL character hides in a JSON value (PostgreSQL cannot store one in jsonb), or None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            return f"{where or 'value'}: contains a NUL character (\\u0000), which cannot be stored"
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in str(key):
                    return f"{where or 'value'}: a key contains a NUL character (\\u0000), which cannot be stored"
                stack.append((child, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None


class JSONObjectField(serializers.JSONField):
    """A JSON object (never a list, a string or a number), free of NUL characters, nested at most
    MAX_JSON_DEPTH deep. It renders as a JSON text area in the browsable API, whose HTML form cannot
    edit a dictionary field."""

    default_error_messages = {"not_object": "must be a JSON object ({{...}})"}

    def __init__(self, **kwargs):
        kwargs.setdefault("style", {"base_template": "textarea.html", "rows": 6})
        kwargs.setdefault("initial", dict)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        problem = nul_problem(value)
        if problem:
            raise ValidationError(problem)
        if json_depth(value) > MAX_JSON_DEPTH:
            raise ValidationError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        return value
