"""Paginator strategies: where the next page starts, and a guard against a server that sends us back.

A connector declares how its vendor pages by choosing a strategy (and, for a quirk, overriding its
`next_token`); the paging loop itself is written once, in `Paginator.pages`:

    pages = OffsetPaginator(page_size=100, vendor="Jira Assets")
    for page in pages.pages(lambda offset: self._search(query, offset, 100)):
        ...  # while this page is handled, pages.current is where the next one starts (pages.finished: none)

Strategies: offset/limit (`OffsetPaginator`), page number (`PageNumberPaginator`), next link in the body or
the Link header (`NextLinkPaginator`), opaque cursor token (`CursorPaginator`: Jira's nextPageToken, an
LDAP paged-results cookie) and Microsoft Graph delta links (`DeltaLinkPaginator`).

The guard: a server that answers a token already read (the same nextPageToken, a Link header that points
back, an offset that does not move forward) would page forever. The run fails at once instead, with a
PermanentError naming the vendor and the token, since retrying would only loop again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

import httpx

from syncplane.integrations.errors import PermanentError

Token = TypeVar("Token", bound=Hashable)
P = TypeVar("P")


class Paginator(Generic[Token]):
    """One pass over a paged list. `current` is what the next request asks for; `advance(page)` reads the
    page just received and moves on, or sets `finished` after the last one. Strategies differ only in
    `next_token`."""

    kind = "page token"  # how the guard's message names the token

    def __init__(self, start: Token | None = None, *, vendor: str):
        self.vendor = vendor
        self.current = start
        self.finished = False
        # Every token read in this pass (one per page, so it stays small): a server may cycle, not only stall.
        self._seen: set[Token] = set() if start is None else {start}

    def next_token(self, page: Any) -> Token | None:
        """Where the page after `page` starts; None when `page` was the last."""
        raise NotImplementedError

    def advance(self, page: Any) -> None:
        if self.finished:
            raise RuntimeError(f"{self.vendor}: the last page was already read")
        token = self.next_token(page)
        if token is None:
            self.finished = True
            return
        self.check(token)
        self._seen.add(token)
        self.current = token

    def check(self, token: Token) -> None:
        """The repeated-token guard."""
        if token in self._seen:
            raise PermanentError(f"{self.vendor} sent the {self.kind} {show(token)} again: paging would read the "
                                 "same pages forever, so the run stops")

    def pages(self, read: Callable[[Token | None], P]) -> Iterator[P]:
        """The paging loop: read the page at `current`, advance past it, hand it over; stop after the last."""
        while not self.finished:
            page = read(self.current)
            self.advance(page)
            yield page


class _Forward(Paginator[int]):
    """Numbered pages (offsets, page numbers) only ever move forward: going back is a repeat as well."""

    def __init__(self, start: int, *, vendor: str, page_size: int | None = None):
        super().__init__(start, vendor=vendor)
        self.page_size = page_size

    def has_more(self, page: Any) -> bool:
        """Default end signal: a short page is the last. Vendors with a better signal override this or
        `next_token`."""
        if self.page_size is None:
            raise NotImplementedError(f"{type(self).__name__} needs a page_size or its own has_more")
        return len(page) >= self.page_size

    def check(self, token: int) -> None:
        super().check(token)
        if token <= self.current:
            raise PermanentError(f"{self.vendor} sent the {self.kind} {token} after {self.current}: paging must "
                                 "move forward, so the run stops")


class OffsetPaginator(_Forward):
    """offset / limit (startAt, sysparm_offset): the next page starts `page_size` further on."""

    kind = "offset"

    def __init__(self, page_size: int, *, vendor: str, start: int = 0):
        super().__init__(start, vendor=vendor, page_size=page_size)

    def next_token(self, page: Any) -> int | None:
        return self.current + self.page_size if self.has_more(page) else None


class PageNumberPaginator(_Forward):
    """page=1, 2, 3...: the next page is the following number while there is more."""

    kind = "page number"

    def __init__(self, start: int = 1, *, vendor: str, page_size: int | None = None):
        super().__init__(start, vendor=vendor, page_size=page_size)

    def next_token(self, page: Any) -> int | None:
        return self.current + 1 if self.has_more(page) else None


class NextLinkPaginator(Paginator[str]):
    """The URL of the next page, from a key of the JSON body (`key`) or else the Link header's rel="next".
    The page is the body (a dict) with a key, the httpx.Response without one."""

    kind = "next link"

    def __init__(self, start: str | None = None, *, vendor: str, key: str | None = None):
        super().__init__(start, vendor=vendor)
        self.key = key

    def next_token(self, page: Any) -> str | None:
        if self.key is not None:
            return page.get(self.key) or None
        return link_header_next(page)


class CursorPaginator(Paginator[Hashable]):
    """An opaque token the server hands out for the next page (Jira's nextPageToken, an LDAP paged-results
    cookie): `page[key]`, empty or absent on the last page."""

    kind = "cursor token"

    def __init__(self, start: Hashable | None = None, *, vendor: str, key: str = "next"):
        super().__init__(start, vendor=vendor)
        self.key = key

    def next_token(self, page: Any) -> Hashable | None:
        return page.get(self.key) or None


class DeltaLinkPaginator(Paginator[str]):
    """A Microsoft Graph delta chain: follow `@odata.nextLink` verbatim until a page carries the
    `@odata.deltaLink` (kept in `delta_link`, where the next incremental run starts). An empty page with a
    nextLink is not the end, and a page with neither link is an error."""

    kind = "next link"

    def __init__(self, start: str, *, vendor: str):
        super().__init__(start, vendor=vendor)
        self.delta_link: str | None = None

    def next_token(self, page: dict) -> str | None:
        next_link = page.get("@odata.nextLink")
        if next_link:
            return next_link
        delta_link = page.get("@odata.deltaLink")
        if not delta_link:
            raise PermanentError(f"{self.vendor}: a delta page has neither a nextLink nor a deltaLink")
        self.delta_link = delta_link
        return None


def link_header_next(response: httpx.Response) -> str | None:
    """The URL of the Link header's rel="next"; None without the header or without a next."""
    if "link" not in response.headers:
        return None
    next_link = response.links.get("next") or {}
    return next_link.get("url") or None


def show(token: Any) -> str:
    """A token as the error message shows it: quoted, and cut when it is long (links, cookies)."""
    text = repr(token)
    return text if len(text) <= 200 else text[:197] + "..."
