"""The leak timeline as an inline SVG bar chart: drawn here, so the page needs no script or network."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 20, 56
COLOURS = {"confirmed": "#b91c1c", "log_only": "#f59e0b", "views": "#1d4ed8"}


def _nice_max(value: int) -> tuple[int, int]:
    """The axis top (a multiple of the tick step) and the step, for at most about five ticks."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 5:
            return max(step, step * -(-value // step)), step
    step = 10 ** len(str(value // 5))
    return step * -(-value // step), step


def _unit(minutes: int) -> str:
    return "hour" if minutes == 60 else f"{minutes} minutes"


def timeline_svg(rows: list[dict[str, Any]], minutes: int = 60) -> str:
    """Stacked bars of leaked deliveries per bucket (confirmed by pixels / log only), views as a thin bar."""
    if not rows:
        return ('<svg id="timeline-chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="60" role="img" '
                'aria-label="No leaked deliveries"><text x="10" y="35" font-size="14">No leaked deliveries.</text></svg>' % WIDTH)
    top, step = _nice_max(max(max(r["deliveries"], r["views"]) for r in rows))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(rows)
    bar = max(1.0, slot * 0.7)
    y = lambda v: TOP + plot_h - plot_h * v / top  # noqa: E731
    parts = [f'<svg id="timeline-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="100%" style="max-width:{WIDTH}px" role="img" font-family="sans-serif" '
             f'aria-label="Leaked deliveries per {_unit(minutes)}, {len(rows)} bars">']
    for tick in range(0, top + 1, step):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end" fill="#374151">{tick}</text>')
    label_every = max(1, round(len(rows) / 12))
    for i, r in enumerate(rows):
        x = LEFT + i * slot + (slot - bar) / 2
        hour = r["start"][11:16]
        title = escape(f"{r['start'][:16].replace('T', ' ')} UTC: {r['deliveries']} leaked deliveries "
                       f"({r['confirmed']} confirmed, {r['log_only']} log only), {r['views']} viewed")
        base = r["confirmed"]
        parts.append(f'<g class="bar"><title>{title}</title>')
        if r["confirmed"]:
            parts.append(f'<rect x="{x:.1f}" y="{y(base):.1f}" width="{bar:.1f}" height="{y(0) - y(base):.1f}" fill="{COLOURS["confirmed"]}"/>')
        if r["log_only"]:
            parts.append(f'<rect x="{x:.1f}" y="{y(base + r["log_only"]):.1f}" width="{bar:.1f}" '
                         f'height="{y(base) - y(base + r["log_only"]):.1f}" fill="{COLOURS["log_only"]}"/>')
        if r["views"]:
            vx = x + bar * 0.35
            parts.append(f'<rect x="{vx:.1f}" y="{y(r["views"]):.1f}" width="{max(1.0, bar * 0.3):.1f}" '
                         f'height="{y(0) - y(r["views"]):.1f}" fill="{COLOURS["views"]}"/>')
        parts.append("</g>")
        if i % label_every == 0:
            cx = LEFT + i * slot + slot / 2
            parts.append(f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" text-anchor="middle" fill="#374151">{hour}</text>')
            if i == 0 or r["start"][:10] != rows[i - label_every]["start"][:10]:
                parts.append(f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 30}" font-size="10" text-anchor="middle" fill="#6b7280">{r["start"][:10]}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#111827"/>')
    lx = LEFT
    for key, label in (("confirmed", "confirmed by image"), ("log_only", "log only"), ("views", "viewed")):
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 16}" width="12" height="12" fill="{COLOURS[key]}"/>'
                     f'<text x="{lx + 16}" y="{HEIGHT - 6}" font-size="12" fill="#111827">{label}</text>')
        lx += 150
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" font-size="11" text-anchor="end" fill="#6b7280">leaked deliveries per {_unit(minutes)} (UTC)</text>')
    parts.append("</svg>")
    return "".join(parts)
