"""One way to list things: search, filters, sorting and pages from the query string, so every list page has a
stable, shareable URL (`?q=...&status=failed&sort=-started&page=2`)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.utils.functional import cached_property
from django.views.generic import ListView

from syncplane.web.access import RoleRequiredMixin

PAGE_SIZE = 50
COUNT_CAP = 10_000  # a list counts this far and no further: "more than 10,000" tells a person to narrow it


class CappedPaginator(Paginator):
    """Pages whose count stops at COUNT_CAP + 1: counting every row of a filtered list of 100,000 costs more
    than showing its page, and past 200 pages a person searches instead."""

    @cached_property
    def cap(self) -> int:
        return COUNT_CAP

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


@dataclass(frozen=True)
class Filter:
    """A select box of the list: `?name=value` narrows the list with `lookup=value`."""

    name: str
    label: str
    lookup: str
    choices: list[tuple[str, str]] = field(default_factory=list)  # (value, label); [] = free text
    apply: Callable[[QuerySet, str], QuerySet] | None = None  # instead of the lookup, for what no column says


class ListPage(RoleRequiredMixin, ListView):
    paginate_by = PAGE_SIZE
    paginator_class = CappedPaginator
    search_fields: tuple[str, ...] = ()  # icontains on each, OR-ed
    search_placeholder = "Search"
    filters: tuple[Filter, ...] = ()
    sorts: dict[str, tuple[str, ...]] = {}  # ?sort=key (or -key) -> order_by
    default_sort = ""
    columns: tuple[tuple[str, str], ...] = ()  # (sort key or "", header) in display order

    def base_queryset(self) -> QuerySet:
        raise NotImplementedError

    def get_filters(self) -> tuple[Filter, ...]:
        return self.filters

    def get_queryset(self):
        query = self.base_queryset()
        params = self.request.GET
        text = params.get("q", "").strip()
        if text and self.search_fields:
            query = query.filter(reduce(or_, (Q(**{f"{name}__icontains": text}) for name in self.search_fields)))
        for option in self.get_filters():
            value = params.get(option.name, "")
            if value and (not option.choices or value in {v for v, _ in option.choices}):
                query = option.apply(query, value) if option.apply else query.filter(**{option.lookup: value})
        return query.order_by(*self.ordering_of(params.get("sort", "")))

    def ordering_of(self, sort: str) -> tuple[str, ...]:
        key = sort.lstrip("-")
        if key not in self.sorts:
            sort, key = self.default_sort, self.default_sort.lstrip("-")
        order = self.sorts[key]
        if sort.startswith("-"):
            order = tuple(name[1:] if name.startswith("-") else f"-{name}" for name in order)
        return order

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        params = self.request.GET
        sort = params.get("sort", "") if params.get("sort", "").lstrip("-") in self.sorts else self.default_sort
        kept = params.copy()
        kept.pop("page", None)
        context.update(
            query=params.get("q", ""),
            search_enabled=bool(self.search_fields),
            search_placeholder=self.search_placeholder,
            filters=[(option, params.get(option.name, "")) for option in self.get_filters()],
            headers=[_header(key, label, sort, kept) for key, label in self.columns],
            page_query=kept.urlencode(),
        )
        return context


def _header(key: str, label: str, sort: str, params) -> dict:
    """A column header: a link that sorts by it (and flips the direction when it already does)."""
    if not key:
        return {"label": label}
    current = sort.lstrip("-") == key
    descending = current and sort.startswith("-")
    query = params.copy()
    query["sort"] = key if descending or not current else f"-{key}"
    return {
        "label": label, "url": f"?{query.urlencode()}",
        "aria_sort": ("descending" if descending else "ascending") if current else "none",
    }
