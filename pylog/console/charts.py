"""The lag chart: an inline SVG drawn on the server (no JavaScript, no
chart library), one horizontal bar per partition, longest lag widest."""
from __future__ import annotations

from markupsafe import Markup, escape

__all__ = ["lag_chart"]

_BAR_H, _GAP, _LABEL_W, _BAR_W, _VALUE_W = 18, 6, 180, 420, 80


def lag_chart(rows) -> Markup:
    """rows: dicts with topic, partition, lag (None: unknown, drawn as 0 and
    labelled "-")."""
    rows = list(rows)
    if not rows:
        return Markup("")
    top = max([r["lag"] or 0 for r in rows] + [1])
    height = len(rows) * (_BAR_H + _GAP) + _GAP
    width = _LABEL_W + _BAR_W + _VALUE_W
    parts = [f'<svg class="lag-chart" role="img" xmlns="http://www.w3.org/2000/svg" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
             f'<title>Lag per partition</title>']
    for i, r in enumerate(rows):
        y = _GAP + i * (_BAR_H + _GAP)
        lag = r["lag"]
        w = 0 if not lag else max(2, round(_BAR_W * lag / top))
        label = escape(f'{r["topic"]}-{r["partition"]}')
        parts.append(
            f'<g class="lag-bar" data-partition="{label}" data-lag="{"" if lag is None else lag}">'
            f'<text x="{_LABEL_W - 8}" y="{y + _BAR_H - 5}" text-anchor="end">{label}</text>'
            f'<rect x="{_LABEL_W}" y="{y}" width="{_BAR_W}" height="{_BAR_H}" class="track"/>'
            f'<rect x="{_LABEL_W}" y="{y}" width="{w}" height="{_BAR_H}" class="bar"/>'
            f'<text x="{_LABEL_W + _BAR_W + 8}" y="{y + _BAR_H - 5}">{"-" if lag is None else lag}</text>'
            f'</g>')
    parts.append("</svg>")
    return Markup("".join(parts))
