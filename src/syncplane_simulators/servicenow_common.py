"""What both halves of the ServiceNow simulator share: the Table API's time forms, error body and query language."""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

DISPLAY_ZONE = ZoneInfo("Europe/Berlin")
DISPLAY_FORMAT = "%d.%m.%Y %H:%M:%S"

_QUERY_TERM = re.compile(
    r"^([a-z0-9_.]+)(ISNOTEMPTY|ISEMPTY|STARTSWITH|ENDSWITH|NOT LIKE|LIKE|NOT IN|IN|>=|<=|!=|>|<|=)(.*)$",
    re.S,
)


def raw_time(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def display_of_raw_time(value: str) -> str:
    """Display form ("dd.MM.yyyy HH:mm:ss", Berlin time) of a raw UTC date; a non-date is shown as it is."""
    if len(value) != 19 or value[13] != ":":
        return value
    # Zones shift whole hours: only the date and hour change, minutes and seconds are copied.
    return _display_hour(value[:13]) + value[13:]


@lru_cache(maxsize=16384)
def _display_hour(date_and_hour: str) -> str:
    try:
        utc = datetime.strptime(date_and_hour, "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return date_and_hour
    return utc.astimezone(DISPLAY_ZONE).strftime("%d.%m.%Y %H")


def parse_raw_time(value: str) -> int | None:
    try:
        return calendar.timegm(time.strptime(value, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None


def error_body(message: str, detail: str | None) -> dict:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


@dataclass
class Query:
    """A parsed sysparm_query: AND of clauses, each clause an OR of (field, operator, value) terms."""

    clauses: list[list[tuple[str, str, str]]]
    order: list[tuple[str, bool]]  # (field, descending)

    def key(self) -> tuple:
        return tuple(tuple(c) for c in self.clauses), tuple(self.order)


def parse_query(text: str, known_fields) -> Query:
    clauses: list[list[tuple[str, str, str]]] = []
    order: list[tuple[str, bool]] = []
    for part in text.split("^") if text else ():
        if part.startswith("NQ"):
            break  # new-query unions are not simulated; the first query alone is answered
        if part.startswith("ORDERBYDESC"):
            if part[11:] in known_fields:
                order.append((part[11:], True))
            continue
        if part.startswith("ORDERBY"):
            if part[7:] in known_fields:
                order.append((part[7:], False))
            continue
        is_or = part.startswith("OR")
        term = _QUERY_TERM.match(part[2:] if is_or else part)
        if not term or term.group(1) not in known_fields:
            continue  # the real API silently drops a part it cannot use: the result gets wider, not empty
        if is_or and clauses:
            clauses[-1].append(term.groups())
        else:
            clauses.append([term.groups()])
    return Query(clauses, order)


def term_matches(value, op: str, operand: str) -> bool:
    if not isinstance(value, str):
        value = str(value)
    if op == "=":
        return value == operand
    if op == "!=":
        return value != operand
    if op == ">=":
        return value >= operand
    if op == ">":
        return value > operand
    if op == "<=":
        return value <= operand
    if op == "<":
        return value < operand
    if op == "STARTSWITH":
        return value.startswith(operand)
    if op == "ENDSWITH":
        return value.endswith(operand)
    if op == "LIKE":
        return operand in value
    if op == "NOT LIKE":
        return operand not in value
    if op == "IN":
        return value in operand.split(",")
    if op == "NOT IN":
        return value not in operand.split(",")
    if op == "ISEMPTY":
        return value == ""
    if op == "ISNOTEMPTY":
        return value != ""
    return True


def int_arg(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
