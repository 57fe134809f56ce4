"""Bar charts drawn on the server as SVG: no chart library to vendor, nothing to run in the browser, and every
chart has its numbers in a table next to it for screen readers and copying."""

from django.utils.html import format_html, format_html_join

WIDTH, HEIGHT, PAD = 600, 160, 24
MAX_BAR = 40  # a few runs draw a few slim bars, not one block across the chart


def bar_chart(points: list[tuple[object, float]], *, title: str, bad: set | frozenset = frozenset()) -> str:
    """An SVG bar per (label, value); labels in `bad` are drawn in the failure colour."""
    if not points:
        return format_html('<p class="muted">{}: no data yet.</p>', title)
    top = max(value for _, value in points) or 1
    step = (WIDTH - PAD) / len(points)
    bars = []
    for index, (label, value) in enumerate(points):
        height = (HEIGHT - 2 * PAD) * value / top
        bars.append((
            "bar bad" if label in bad and value else "bar",
            f"{PAD + index * step:.1f}", f"{HEIGHT - PAD - height:.1f}", f"{min(max(step - 2, 1), MAX_BAR):.1f}",
            f"{height:.1f}",
            label, f"{value:g}",
        ))
    return format_html(
        '<svg viewBox="0 0 {} {}" role="img" aria-label="{}"><text x="{}" y="14">{} (max {})</text>{}'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#8c959f"/></svg>',
        WIDTH, HEIGHT, title, PAD, title, f"{top:g}",
        format_html_join(
            "", '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>', bars
        ),
        PAD, HEIGHT - PAD, WIDTH, HEIGHT - PAD,
    )
