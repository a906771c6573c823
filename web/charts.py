"""Line charts drawn on the server as inline SVG (no chart library, nothing fetched by the browser)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from html import escape

from markupsafe import Markup

W, H = 400, 120  # viewBox; the CSS scales it to the card's width
PAD_L, PAD_R, PAD_T, PAD_B = 34, 6, 8, 18


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.0f}" if v == int(v) else f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.1f}".rstrip("0").rstrip(".") or "0"


def _nice_max(v: float) -> float:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if v <= step:
            return float(step)
    return float(int(v * 1.1) + 1)


def line_chart(title: str, series: list[tuple[str, list[tuple[float, float]]]], since: float, until: float,
               unit: str, tz: tzinfo, y_max: float | None = None, gap_s: float = 300.0) -> Markup:
    """One chart: a polyline per series over [since, until]; a gap longer than gap_s breaks the line."""
    points = [p for _, pts in series for p in pts if since <= p[0] <= until]
    desc = escape(title)
    head = (f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{desc}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{desc}</title>')
    if not points:
        return Markup(head + f'<rect class="frame" x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
                      f'height="{H - PAD_T - PAD_B}"/><text class="empty" x="{(W + PAD_L) / 2}" y="{H / 2}" '
                      'text-anchor="middle">no data yet</text></svg>')
    top = y_max if y_max is not None else _nice_max(max(v for _, v in points) or 1.0)
    span_t = max(1.0, until - since)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def xy(t: float, v: float) -> str:
        x = PAD_L + (t - since) / span_t * pw
        y = PAD_T + ph - max(0.0, min(v, top)) / top * ph
        return f"{x:.1f},{y:.1f}"

    out = [head, f'<rect class="frame" x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}"/>']
    for frac in (0.0, 0.5, 1.0):
        y = PAD_T + ph - frac * ph
        out.append(f'<line class="grid" x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}"/>'
                   f'<text class="axis" x="{PAD_L - 3}" y="{y + 3:.1f}" text-anchor="end">{_fmt(top * frac)}</text>')
    out.append(f'<text class="axis" x="{PAD_L}" y="{H - 4}">'
               f'{datetime.fromtimestamp(since, tz):%H:%M}</text>')
    out.append(f'<text class="axis" x="{(PAD_L + W - PAD_R) / 2:.0f}" y="{H - 4}" text-anchor="middle">'
               f'{datetime.fromtimestamp((since + until) / 2, tz):%H:%M}</text>')
    out.append(f'<text class="axis" x="{W - PAD_R}" y="{H - 4}" text-anchor="end">now</text>')
    out.append(f'<text class="axis unit" x="{PAD_L + 3}" y="{PAD_T + 9}">{escape(unit)}</text>')
    for i, (name, pts) in enumerate(series):
        pts = [p for p in pts if since <= p[0] <= until]
        runs: list[list[tuple[float, float]]] = []
        for t, v in pts:
            if runs and t - runs[-1][-1][0] <= gap_s:
                runs[-1].append((t, v))
            else:
                runs.append([(t, v)])
        for run in runs:
            if len(run) == 1:
                cx, cy = xy(*run[0]).split(",")
                out.append(f'<circle class="s{i % 4}" cx="{cx}" cy="{cy}" r="1.8"><title>{escape(name)}</title></circle>')
            else:
                out.append(f'<polyline class="s{i % 4}" points="{" ".join(xy(t, v) for t, v in run)}">'
                           f'<title>{escape(name)}</title></polyline>')
    out.append("</svg>")
    return Markup("".join(out))
