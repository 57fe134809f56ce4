"""Paginator strategies (integrations/paging.py): each strategy on its own, the repeated-token guard, and the
guard end to end: a server that sends a page token back fails the sync with a clear error instead of hanging."""

import re
from urllib.parse import parse_qs

import httpx
import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.freshservice.common import LinkedPages
from syncplane.integrations.connectors.jira import service_management as jsm
from syncplane.integrations.connectors.servicenow.common import TableApiPaginator
from syncplane.integrations.errors import PermanentError
from syncplane.integrations.paging import (
    CursorPaginator,
    DeltaLinkPaginator,
    NextLinkPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
    link_header_next,
)
from tests.integrations.httpserver import Reply, ScriptedServer

ITEMS = list(range(10))


def response(headers: dict | None = None, url: str = "https://api.example/items") -> httpx.Response:
    return httpx.Response(200, headers=headers or {}, request=httpx.Request("GET", url))


def link(url: str, rel: str = "next") -> dict:
    return {"Link": f'<{url}>; rel="{rel}"'}


def read_all(paginator: Paginator, read) -> tuple[list, list]:
    """(pages, tokens each page was read at)."""
    asked = []

    def reading(token):
        asked.append(token)
        return read(token)

    return list(paginator.pages(reading)), asked


# --- offset / limit --------------------------------------------------------------------------------------


def test_offset_pages_until_a_short_page():
    pages, asked = read_all(OffsetPaginator(3, vendor="Vendor"), lambda offset: ITEMS[offset : offset + 3])
    assert asked == [0, 3, 6, 9]
    assert [item for page in pages for item in page] == ITEMS


def test_offset_while_a_page_is_handled_current_is_where_the_next_starts():
    paginator = OffsetPaginator(4, vendor="Vendor", start=4)
    seen = [(page, paginator.current, paginator.finished)
            for page in paginator.pages(lambda offset: ITEMS[offset : offset + 4])]
    assert seen == [([4, 5, 6, 7], 8, False), ([8, 9], 8, True)]


def test_a_full_last_page_costs_one_empty_read_by_default():
    _, asked = read_all(OffsetPaginator(5, vendor="Vendor"), lambda offset: ITEMS[offset : offset + 5])
    assert asked == [0, 5, 10]


class StuckOffsets(OffsetPaginator):
    def __init__(self, answers):
        super().__init__(2, vendor="Stuck Corp")
        self.answers = iter(answers)

    def next_token(self, page):
        return next(self.answers)


def test_an_offset_that_repeats_fails_naming_the_vendor_and_the_offset():
    with pytest.raises(PermanentError, match=r"^Stuck Corp sent the offset 2 again") as caught:
        read_all(StuckOffsets([2, 4, 2]), lambda offset: ["x", "y"])
    assert "forever" in str(caught.value)


def test_an_offset_that_goes_back_fails_too():
    paginator = StuckOffsets([5, 3])
    with pytest.raises(PermanentError, match="Stuck Corp sent the offset 3 after 5: paging must move forward"):
        read_all(paginator, lambda offset: ["x", "y"])
    assert paginator.current == 5


# --- page number -----------------------------------------------------------------------------------------


def test_page_numbers_count_up_from_one_until_a_short_page():
    pages, asked = read_all(PageNumberPaginator(vendor="Vendor", page_size=4),
                            lambda n: ITEMS[(n - 1) * 4 : n * 4])
    assert asked == [1, 2, 3] and pages[-1] == [8, 9]


def test_page_numbers_can_start_later_as_a_resumed_run_does():
    _, asked = read_all(PageNumberPaginator(3, vendor="Vendor", page_size=4), lambda n: ITEMS[(n - 1) * 4 : n * 4])
    assert asked == [3]


def test_page_numbers_from_the_link_header_and_their_guard():
    def page(n):
        following = {1: 2, 2: 3, 3: 2}[n]
        return ["x"], response(link(f"https://fs.example/api/v2/assets?page={following}&per_page=1"))

    with pytest.raises(PermanentError, match="Freshservice sent the page number 2 again"):
        read_all(LinkedPages(), page)
    pages, asked = read_all(LinkedPages(), lambda n: (["x"], response(link(f"https://fs.example/a?page={n + 1}")
                                                                       if n < 3 else {})))
    assert asked == [1, 2, 3] and len(pages) == 3


# --- next link -------------------------------------------------------------------------------------------


def test_next_link_from_the_link_header():
    chain = {None: "https://api.example/items?page=2", "https://api.example/items?page=2": None}
    pages, asked = read_all(NextLinkPaginator(vendor="Vendor"),
                            lambda url: response(link(chain[url]) if chain[url] else {"Link": '<x>; rel="prev"'}))
    assert asked == [None, "https://api.example/items?page=2"]


def test_next_link_from_the_body():
    bodies = {"/items": {"next": "/items?after=b"}, "/items?after=b": {"next": ""}}
    _, asked = read_all(NextLinkPaginator("/items", vendor="Vendor", key="next"), bodies.__getitem__)
    assert asked == ["/items", "/items?after=b"]


def test_a_next_link_cycle_fails_naming_the_link():
    bodies = {"/a": {"next": "/b"}, "/b": {"next": "/c"}, "/c": {"next": "/b"}}
    with pytest.raises(PermanentError, match=re.escape("Vendor sent the next link '/b' again")):
        read_all(NextLinkPaginator("/a", vendor="Vendor", key="next"), bodies.__getitem__)


def test_link_header_next():
    assert link_header_next(response(link("https://x.example/?page=2"))) == "https://x.example/?page=2"
    assert link_header_next(response(link("https://x.example/?page=1", rel="prev"))) is None
    assert link_header_next(response()) is None


# --- cursor token ----------------------------------------------------------------------------------------


def test_cursor_tokens_until_none_or_empty():
    tokens = {None: "t1", "t1": "t2", "t2": ""}
    pages, asked = read_all(CursorPaginator(vendor="Vendor"), lambda token: {"next": tokens[token]})
    assert asked == [None, "t1", "t2"] and len(pages) == 3


def test_a_repeated_cursor_token_fails_naming_it():
    with pytest.raises(PermanentError, match="Jira sent the cursor token 'same' again"):
        read_all(CursorPaginator(vendor="Jira"), lambda token: {"next": "same"})


def test_an_ldap_cookie_is_a_cursor_token_too():
    cookies = {None: b"\x01\x00", b"\x01\x00": b"\x02\x00", b"\x02\x00": b"\x01\x00"}
    with pytest.raises(PermanentError, match=re.escape("Active Directory sent the cursor token b'\\x01\\x00' again")):
        read_all(CursorPaginator(vendor="Active Directory", key="cookie"), lambda c: {"cookie": cookies[c]})


def test_a_long_token_is_cut_in_the_message():
    token = "x" * 5000
    with pytest.raises(PermanentError) as caught:
        read_all(CursorPaginator(vendor="Vendor"), lambda _: {"next": token})
    assert len(str(caught.value)) < 400 and "xxx..." in str(caught.value)


# --- delta link ------------------------------------------------------------------------------------------


def test_a_delta_chain_follows_next_links_through_empty_pages_to_the_delta_link():
    bodies = {
        "/users/delta": {"value": [1], "@odata.nextLink": "https://graph/users/delta?$skiptoken=a"},
        "https://graph/users/delta?$skiptoken=a": {"value": [], "@odata.nextLink": "https://graph/x?$skiptoken=b"},
        "https://graph/x?$skiptoken=b": {"value": [2], "@odata.deltaLink": "https://graph/x?$deltatoken=c"},
    }
    chain = DeltaLinkPaginator("/users/delta", vendor="Entra ID")
    pages, asked = read_all(chain, bodies.__getitem__)
    assert [p["value"] for p in pages] == [[1], [], [2]]
    assert chain.finished and chain.delta_link == "https://graph/x?$deltatoken=c"


def test_a_delta_page_without_either_link_is_an_error():
    with pytest.raises(PermanentError, match="neither a nextLink nor a deltaLink"):
        read_all(DeltaLinkPaginator("/users/delta", vendor="Entra ID"), lambda url: {"value": []})


def test_a_delta_next_link_that_repeats_fails():
    with pytest.raises(PermanentError, match=re.escape("Entra ID sent the next link '/users/delta' again")):
        read_all(DeltaLinkPaginator("/users/delta", vendor="Entra ID"),
                 lambda url: {"value": [], "@odata.nextLink": "/users/delta"})


# --- the table API's own end signal ----------------------------------------------------------------------


def test_servicenow_follows_the_link_header_else_x_total_count():
    with_link = response(link("https://sn.example/api/now/v2/table/t?sysparm_offset=7&sysparm_limit=7"))
    paginator = TableApiPaginator(7)
    paginator.advance(([], with_link))
    assert paginator.current == 7
    paginator.advance(([], response({"X-Total-Count": "20"})))
    assert paginator.current == 14
    paginator.advance(([], response({"X-Total-Count": "20"})))
    assert paginator.finished


def test_servicenow_link_back_to_the_first_page_fails():
    back = response(link("https://sn.example/api/now/v2/table/t?sysparm_offset=0&sysparm_limit=5"))
    with pytest.raises(PermanentError, match="ServiceNow sent the offset 0 again"):
        TableApiPaginator(5).advance(([], back))


def test_advancing_past_the_last_page_is_a_bug():
    paginator = CursorPaginator(vendor="Vendor")
    paginator.advance({"next": None})
    with pytest.raises(RuntimeError):
        paginator.advance({"next": "t"})


# --- end to end ------------------------------------------------------------------------------------------


class LinksBackAfterTwoPages:
    """WSGI middleware in front of the ServiceNow simulator: from the third page on, the Link header's next
    points back at the second page, as a misbehaving instance (or proxy) would."""

    def __init__(self, app):
        self.app = app
        self.table_requests = 0

    def __call__(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        offset = int(query.get("sysparm_offset", ["0"])[0])
        limit = int(query.get("sysparm_limit", ["0"])[0] or 0)
        if "/table/" in environ.get("PATH_INFO", ""):
            self.table_requests += 1

        def rewriting(status, headers, exc_info=None):
            if limit and offset >= 2 * limit:
                headers = [(name, re.sub(r"sysparm_offset=\d+([^>]*>;\s*rel=\"next\")",
                                         rf"sysparm_offset={limit}\1", value) if name.lower() == "link" else value)
                           for name, value in headers]
            return start_response(status, headers, exc_info)

        return self.app(environ, rewriting)


@pytest.mark.django_db
def test_a_simulator_that_links_back_fails_the_sync_with_a_clear_error(simulator):
    from syncplane.integrations.choices import AuthType, ErrorKind, RunStatus, SystemType
    from syncplane.integrations.engine import run_sync, start_sync
    from syncplane.integrations.models import ExternalSystem
    from syncplane.integrations.secrets import to_reference

    looping = LinksBackAfterTwoPages(simulator.servicenow)
    simulator.app.mounts["/looping"] = looping
    system = ExternalSystem.objects.create(
        name="ServiceNow that links back", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
        base_url=f"{simulator.url}/looping", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": 20},
    )
    log = run_sync(start_sync(system).pk)
    assert log.status == RunStatus.FAILED
    assert log.error_kind == ErrorKind.PERMANENT
    assert "ServiceNow sent the offset 20 again" in log.error_summary
    assert looping.table_requests == 3  # pages at 0, 20 and 40; the link back to 20 is never followed
    assert log.pages == 2  # the pages before the loop are committed, as with any failure after them


def test_a_search_that_repeats_its_next_page_token_stops_at_the_second_page():
    jsm._field_cache.clear()
    server = ScriptedServer().start()
    try:
        server.script(jsm.FIELDS, Reply(json=[{"id": "customfield_10010", "name": "Approvals", "custom": True}]))
        issue = {"id": "10001", "key": "ITSM-1", "fields": {"updated": "2024-06-01T10:00:00.000+0000"}}
        server.script(jsm.SEARCH, Reply(json={"issues": [issue], "nextPageToken": "CAEaAggD", "isLast": False}))
        context = ConnectorContext(base_url=server.url, auth_type="bearer", config={"rate_limit_per_second": 1000},
                                   credentials={"token": "t"}, resolve_secret=lambda ref: ref)
        with jsm.JiraServiceManagementConnector(context) as connector:
            pages = connector.fetch("full")
            assert len(next(pages).records) == 1
            with pytest.raises(PermanentError, match="Jira Service Management sent the cursor token 'CAEaAggD' again"):
                next(pages)
        assert len(server.requests_to(jsm.SEARCH)) == 2
    finally:
        server.stop()
        jsm._field_cache.clear()
