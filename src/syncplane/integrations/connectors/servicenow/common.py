"""What the ServiceNow connectors share: one instance, one Table API (see shared/api-notes/servicenow-*.md).

Auth: Basic, or OAuth 2.0 against the instance's own /oauth_token.do (password or client-credentials grant).
Paging: sysparm_limit / sysparm_offset, following the Link header's rel="next" verbatim; X-Total-Count is
the fallback stop signal when the header is suppressed. Short pages are normal (ACLs apply after the limit).
Values: every value is a string ("" means empty), or {"display_value", "value"} with sysparm_display_value=all;
dates are raw UTC "YYYY-MM-DD HH:MM:SS".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx

from syncplane.integrations.base import ConnectorContext, build_auth
from syncplane.integrations.choices import AuthType
from syncplane.integrations.errors import PermanentError, RecordError
from syncplane.integrations.http import HttpClient
from syncplane.integrations.paging import OffsetPaginator

VENDOR = "ServiceNow"
AUTH_TYPES = (AuthType.BASIC, AuthType.OAUTH2_PASSWORD, AuthType.OAUTH2_CLIENT_CREDENTIALS)
ORDER = "ORDERBYsys_updated_on^ORDERBYsys_id"
LOOKUP_BATCH = 100  # sys_ids per `sys_idIN` lookup: keeps the URL well under common limits
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
BASE_URL_HELP = "The instance URL, nothing after the host: the connector adds /api/now/... and /oauth_token.do."
BASE_URL_EXAMPLE = "https://acme.service-now.com"
OWNED_PATH_SUFFIXES = ("/api/now", "/oauth_token.do")
_INSTANCE_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def table_api_client(context: ConnectorContext, config: dict) -> HttpClient:
    """An HttpClient on the instance, authenticated as the integration's auth type says."""
    base = context.base_url.rstrip("/")
    return HttpClient(
        base,
        auth=build_auth(context, token_url=f"{base}/oauth_token.do"),
        timeout=config["timeout_seconds"],
        rate_limit_per_second=config["rate_limit_per_second"],
        secrets=context.secret_values(),
    )


class TableApiPaginator(OffsetPaginator):
    """sysparm_offset, from rel="next" of the Link header when the header is there, else from X-Total-Count.
    A page is `(records, response)`."""

    def __init__(self, page_size: int):
        super().__init__(page_size, vendor=VENDOR)

    def next_token(self, page: tuple[list, httpx.Response]) -> int | None:
        response = page[1]
        if "link" in response.headers:
            next_link = response.links.get("next")
            if not next_link:
                return None
            offsets = parse_qs(urlsplit(next_link["url"]).query).get("sysparm_offset", [])
            if not offsets or not offsets[0].lstrip("-").isdigit():
                raise PermanentError("ServiceNow: the Link header's next page has no sysparm_offset")
            return int(offsets[0])
        count = total(response)
        if count is None:
            raise PermanentError("the answer has neither a Link header nor X-Total-Count: cannot page")
        following = self.current + self.page_size
        return following if following < count else None


def total(response: httpx.Response) -> int | None:
    """X-Total-Count, when the instance sends it."""
    count = response.headers.get("X-Total-Count", "")
    return int(count) if re.fullmatch(r"\d+", count) else None


def value(raw: dict, name: str) -> str:
    """The raw value of a field, whatever shape sysparm_display_value gave it; "" means empty."""
    field = raw.get(name, "")
    if type(field) is dict:  # noqa: E721 - exact type checks: this runs ~20 times per record
        field = field.get("value", "")
    if type(field) is str:  # noqa: E721
        return field.strip()
    if field is None:
        return ""
    raise RecordError(f"field {name} is not a string: {type(field).__name__}")


def parse_instance_date(text: str, name: str) -> datetime | None:
    """A raw instance date (UTC, "YYYY-MM-DD HH:MM:SS"). fromisoformat is ~20x faster than strptime."""
    if not text:
        return None
    try:
        if not _INSTANCE_DATE.fullmatch(text):
            raise ValueError
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(f"field {name} is not a date in {DATE_FORMAT} form: {text[:40]!r}") from None
