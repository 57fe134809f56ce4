from syncplane.web.access import abilities


def web(request):
    """`can` (what the user may do) and `section` (where the navigation says you are) for every page."""
    user = getattr(request, "user", None)
    match = getattr(request, "resolver_match", None)
    section = (match.url_name or "").split("-", 1)[0] if match and match.namespace == "web" else ""
    section = {"scan": "finding"}.get(section, section)  # pages that belong under another section
    from syncplane.web.urls import NAV

    return {"can": abilities(user) if user is not None else {}, "section": section, "nav": NAV}
