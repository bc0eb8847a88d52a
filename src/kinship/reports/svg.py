"""Tiny inline-SVG charts for the reports: axes with ticks and labels, lines, steps, histograms, a legend.

No plotting library: each chart is one `<svg role="img">` string with a `<title>` and a
`<desc>`, drawn in data coordinates mapped through an `Axis` (linear, or any monotone
transform such as probit). Every series has a colour AND a dash pattern AND a marker, so
no line is told apart by colour alone; the legend shows all three.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from .page import PALETTE, esc

#: Dash patterns (SVG stroke-dasharray) by name.
DASHES = {"solid": "", "dashed": "7 4", "dotted": "2 3", "dashdot": "8 3 2 3"}
MARKERS = ("circle", "square", "triangle", "diamond", "none")

Point = tuple[float, float]


@dataclass(frozen=True)
class Style:
    colour: str = PALETTE["blue"]
    dash: str = "solid"
    marker: str = "circle"
    width: float = 2.0


@dataclass
class Series:
    """A named line: points in data coordinates; `step` draws a post-step (value holds until the next x)."""

    label: str
    points: Sequence[Point]
    style: Style = field(default_factory=Style)
    step: bool = False
    #: How many markers to spread along the line (all points when it has fewer).
    markers: int = 8


@dataclass(frozen=True)
class Axis:
    label: str
    lo: float
    hi: float
    ticks: Sequence[tuple[float, str]] = ()
    transform: Callable[[float], float] = float

    def unit(self, value: float) -> float:
        """`value` as a share of the axis length, 0 at lo, 1 at hi (clamped)."""
        t_lo, t_hi, t = self.transform(self.lo), self.transform(self.hi), self.transform(value)
        return min(1.0, max(0.0, (t - t_lo) / (t_hi - t_lo)))


def linear_axis(label: str, lo: float, hi: float, step: float, fmt: str = "{:g}") -> Axis:
    count = int(round((hi - lo) / step))
    ticks = [(lo + i * step, fmt.format(round(lo + i * step, 10))) for i in range(count + 1)]
    return Axis(label, lo, hi, ticks)


_NORMAL = NormalDist()


def probit(p: float, floor: float = 1e-4) -> float:
    return _NORMAL.inv_cdf(min(1 - floor, max(floor, p)))


def probit_axis(label: str, lo: float = 0.002, hi: float = 0.8) -> Axis:
    """A normal-deviate (probit) scale for error rates, as DET plots use; rates shown in percent."""
    marks = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 0.95)
    ticks = [(m, f"{m * 100:g}%") for m in marks if lo <= m <= hi]
    return Axis(label, lo, hi, ticks, transform=probit)


@dataclass(frozen=True)
class Frame:
    width: int = 360
    height: int = 280
    left: int = 52
    right: int = 12
    top: int = 12
    bottom: int = 44

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


def _f(value: float) -> str:
    return f"{value:.1f}"


class Chart:
    """One chart being drawn: add series, bars, reference lines, then `render()`."""

    def __init__(self, title: str, desc: str, x: Axis, y: Axis, frame: Frame | None = None) -> None:
        self.title, self.desc, self.x, self.y = title, desc, x, y
        self.frame = frame or Frame()
        self._parts: list[str] = []
        self._legend: list[tuple[str, Style, bool]] = []

    def px(self, x: float, y: float) -> tuple[float, float]:
        f = self.frame
        return f.left + self.x.unit(x) * f.plot_w, f.top + (1 - self.y.unit(y)) * f.plot_h

    def reference(self, points: Sequence[Point], label: str | None = None) -> None:
        """A thin grey dotted guide (chance diagonal, perfect calibration, LR = 1)."""
        coords = " ".join(f"{_f(a)},{_f(b)}" for a, b in (self.px(*p) for p in points))
        self._parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{PALETTE["grey"]}" stroke-width="1" '
            'stroke-dasharray="1 3" />'
        )
        if label:
            self._legend.append((label, Style(PALETTE["grey"], "dotted", "none", 1.0), False))

    def line(self, series: Series) -> None:
        pts = list(series.points)
        if series.step:
            stepped: list[Point] = []
            for i, (a, b) in enumerate(pts):
                if i:
                    stepped.append((a, pts[i - 1][1]))
                stepped.append((a, b))
            drawn = stepped
        else:
            drawn = pts
        style = series.style
        coords = " ".join(f"{_f(a)},{_f(b)}" for a, b in (self.px(*p) for p in drawn))
        dash = DASHES[style.dash]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        self._parts.append(
            f'<polyline class="series" data-label="{esc(series.label)}" points="{coords}" fill="none" '
            f'stroke="{style.colour}" stroke-width="{style.width}"{dash_attr} stroke-linejoin="round" />'
        )
        if style.marker != "none" and pts:
            count = min(series.markers, len(pts))
            picks = sorted({round(i * (len(pts) - 1) / max(1, count - 1)) for i in range(count)})
            for i in picks:
                self._parts.append(_marker(style, *self.px(*pts[i])))
        self._legend.append((series.label, style, True))

    def bars(self, label: str, edges: Sequence[float], counts: Sequence[float], style: Style) -> None:
        """A histogram as an outlined step shape (no fill hides another): one bar per bin."""
        if not counts:
            return
        pts: list[Point] = [(edges[0], 0.0)]
        for i, c in enumerate(counts):
            pts += [(edges[i], c), (edges[i + 1], c)]
        pts.append((edges[-1], 0.0))
        coords = " ".join(f"{_f(a)},{_f(b)}" for a, b in (self.px(*p) for p in pts))
        dash = DASHES[style.dash]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        self._parts.append(
            f'<polyline class="bars" data-label="{esc(label)}" points="{coords}" fill="{style.colour}" '
            f'fill-opacity="0.15" stroke="{style.colour}" stroke-width="{style.width}"{dash_attr} />'
        )
        for i, c in enumerate(counts):
            if c:
                self._parts.append(_marker(style, *self.px((edges[i] + edges[i + 1]) / 2, c)))
        self._legend.append((label, style, True))

    def _axes(self) -> str:
        f = self.frame
        x0, y0, x1, y1 = f.left, f.top + f.plot_h, f.left + f.plot_w, f.top
        out = [f'<rect x="{x0}" y="{y1}" width="{_f(f.plot_w)}" height="{_f(f.plot_h)}" fill="none" stroke="#999" />']
        for value, text in self.x.ticks:
            px = f.left + self.x.unit(value) * f.plot_w
            out.append(f'<line x1="{_f(px)}" y1="{y0}" x2="{_f(px)}" y2="{y0 + 4}" stroke="#555" />')
            out.append(f'<line x1="{_f(px)}" y1="{y1}" x2="{_f(px)}" y2="{y0}" stroke="#eee" />')
            out.append(f'<text x="{_f(px)}" y="{y0 + 15}" text-anchor="middle">{esc(text)}</text>')
        for value, text in self.y.ticks:
            py = f.top + (1 - self.y.unit(value)) * f.plot_h
            out.append(f'<line x1="{x0 - 4}" y1="{_f(py)}" x2="{x0}" y2="{_f(py)}" stroke="#555" />')
            out.append(f'<line x1="{x0}" y1="{_f(py)}" x2="{x1}" y2="{_f(py)}" stroke="#eee" />')
            out.append(f'<text x="{x0 - 6}" y="{_f(py + 4)}" text-anchor="end">{esc(text)}</text>')
        out.append(
            f'<text x="{_f(f.left + f.plot_w / 2)}" y="{f.height - 6}" text-anchor="middle">{esc(self.x.label)}</text>'
        )
        cy = f.top + f.plot_h / 2
        out.append(
            f'<text x="12" y="{_f(cy)}" text-anchor="middle" transform="rotate(-90 12 {_f(cy)})">'
            f"{esc(self.y.label)}</text>"
        )
        return "\n".join(out)

    def _legend_svg(self) -> tuple[str, int]:
        f = self.frame
        rows = []
        for i, (label, style, _) in enumerate(self._legend):
            y = f.height + 14 + i * 16
            dash = DASHES[style.dash]
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            rows.append(
                f'<line x1="{f.left}" y1="{y}" x2="{f.left + 34}" y2="{y}" stroke="{style.colour}" '
                f'stroke-width="{style.width}"{dash_attr} />'
            )
            if style.marker != "none":
                rows.append(_marker(style, f.left + 17, y))
            rows.append(f'<text x="{f.left + 42}" y="{y + 4}">{esc(label)}</text>')
        extra = 8 + 16 * len(self._legend) if self._legend else 0
        return '<g class="legend">' + "\n".join(rows) + "</g>", extra

    def render(self) -> str:
        f = self.frame
        legend, extra = self._legend_svg()
        height = f.height + extra
        ident = "c" + hashlib.sha1(f"{self.title}\n{self.desc}".encode()).hexdigest()[:10]
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{f.width}" height="{height}" '
            f'viewBox="0 0 {f.width} {height}" aria-labelledby="{ident}-t {ident}-d">'
            f'<title id="{ident}-t">{esc(self.title)}</title><desc id="{ident}-d">{esc(self.desc)}</desc>\n'
            f"{self._axes()}\n" + "\n".join(self._parts) + f"\n{legend}\n</svg>"
        )


def _marker(style: Style, x: float, y: float, r: float = 3.5) -> str:
    c = style.colour
    if style.marker == "circle":
        return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{r}" fill="{c}" />'
    if style.marker == "square":
        return f'<rect x="{_f(x - r)}" y="{_f(y - r)}" width="{2 * r}" height="{2 * r}" fill="{c}" />'
    if style.marker == "triangle":
        pts = f"{_f(x)},{_f(y - r * 1.2)} {_f(x - r)},{_f(y + r * 0.8)} {_f(x + r)},{_f(y + r * 0.8)}"
        return f'<polygon points="{pts}" fill="none" stroke="{c}" stroke-width="1.5" />'
    if style.marker == "diamond":
        pts = f"{_f(x)},{_f(y - r * 1.3)} {_f(x + r)},{_f(y)} {_f(x)},{_f(y + r * 1.3)} {_f(x - r)},{_f(y)}"
        return f'<polygon points="{pts}" fill="#fff" stroke="{c}" stroke-width="1.5" />'
    return ""


def nice_range(lo: float, hi: float, ticks: int = 6) -> tuple[float, float, float]:
    """A rounded [lo, hi] and tick step covering the data, for a linear axis."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        lo, hi = (lo - 1, lo + 1) if math.isfinite(lo) else (0.0, 1.0)
    raw = (hi - lo) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step
