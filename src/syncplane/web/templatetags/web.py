import json
from datetime import datetime

from django import template
from django.utils.html import format_html

register = template.Library()


@register.filter
def when(value):
    """A <time> the browser shows in its own time zone (static/web/syncplane.js); "—" when unknown."""
    if not value:
        return "—"
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), value.strftime("%Y-%m-%d %H:%M UTC"))


@register.filter
def show(value):
    """An attribute value as a person reads it: "—" for nothing, lists joined, times as `when`."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, (list, tuple)):
        return "; ".join(str(item) for item in value)
    return value


@register.filter
def as_json(value) -> str:
    """A record as indented JSON, the way its system sent it (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
