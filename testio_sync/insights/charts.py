"""The quality report's charts as standalone SVG documents, drawn by matplotlib.

matplotlib was chosen for the look and the print: vector output that stays
sharp on paper, real threshold bands (``axhspan``), text as SVG text in the
viewer's own sans-serif font (no font to load), and no JavaScript. Figures are built with
``matplotlib.figure.Figure`` (no pyplot, no global backend state), so charts
can be drawn from any thread. Each function returns one SVG document.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from testio_sync.insights.report import HealthThresholds

BUCKET_COLORS = {
    "active_accepted": "#2e7d32",
    "auto_accepted": "#9ccc65",
    "rejected": "#c62828",
    "open": "#78909c",
    "unknown": "#d7ccc8",
}
SEVERITY_COLORS = {
    "critical": "#b71c1c",
    "high": "#ef6c00",
    "low": "#fbc02d",
    "visual": "#5c6bc0",
    "content": "#26a69a",
    "custom": "#8d6e63",
}
BAND_COLORS = {"warning": "#fff3c4", "critical": "#ffd6d6"}
INK = "#263238"
MUTED = "#607d8b"
STYLE = {
    # Text stays text (half the size of glyph paths); the viewer's own sans-serif
    # font draws it, DejaVu Sans (matplotlib's metrics) when present.
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": 9,
    "axes.edgecolor": "#b0bec5",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "svg.hashsalt": "testio-sync",
    "svg.fonttype": "none",
}


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _label(month: str) -> str:
    """``2026-03`` -> ``Mar '26``: short enough for a phone, not mistaken for a day."""
    return f"{MONTHS[int(month[5:7]) - 1]} '{month[2:4]}"


def _tick_months(ax: Any, months: Sequence[str], most: int = 12) -> None:
    step = max(1, -(-len(months) // most))
    ticks = list(range(0, len(months), step))
    ax.set_xticks(ticks, [_label(months[i]) for i in ticks], rotation=45, ha="right")


def monthly_bugs(months: Sequence[Mapping[str, Any]], buckets: Sequence[str]) -> str:
    """Bugs per month, stacked by status bucket."""
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.2, 2.8)
        ax = fig.add_subplot()
        labels = [m["month"] for m in months]
        base = [0] * len(months)
        for bucket in buckets:
            values = [m["bugs_by_status"].get(bucket, 0) for m in months]
            if not any(values):
                continue
            ax.bar(
                range(len(months)),
                values,
                bottom=base,
                color=BUCKET_COLORS.get(bucket, "#bdbdbd"),
                label=bucket.replace("_", " "),
                width=0.8,
            )
            base = [b + v for b, v in zip(base, values, strict=True)]
        _tick_months(ax, labels)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("bugs")
        ax.grid(axis="y", color="#eceff1")
        ax.set_axisbelow(True)
        ax.legend(ncols=5, loc="upper left", bbox_to_anchor=(0, 1.18), frameon=False)
        return _svg(fig)


RATE_TITLES = {
    "active_acceptance_rate": "Active acceptance",
    "rejection_rate": "Rejection",
    "review_rate": "Review",
}


def rate_bands(name: str, thresholds: HealthThresholds) -> list[tuple[float, float, str]]:
    """The warning and critical bands of a rate, as (low, high, health) spans of 0..1."""
    if name == "rejection_rate":
        w, c = thresholds.rejection_warning, thresholds.rejection_critical
        return [(w, c, "warning"), (c, 1.0, "critical")]
    if name == "active_acceptance_rate":
        w, c = thresholds.active_acceptance_warning, thresholds.active_acceptance_critical
    else:
        w, c = thresholds.review_warning, thresholds.review_critical
    return [(c, w, "warning"), (0.0, c, "critical")]


def monthly_rate(
    name: str, months: Sequence[Mapping[str, Any]], thresholds: HealthThresholds
) -> str:
    """One rate per month over its warning and critical bands (months without bugs: gaps)."""
    with matplotlib.rc_context(STYLE):
        fig = _figure(3.6, 2.4)
        ax = fig.add_subplot()
        for low, high, health in rate_bands(name, thresholds):
            ax.axhspan(low, high, color=BAND_COLORS[health], zorder=0, lw=0, label=health)
        values = [m["rates"][name] for m in months]
        xs = range(len(months))
        ys = [float("nan") if v is None else v for v in values]
        ax.plot(xs, ys, color=INK, marker="o", markersize=2.5, lw=1.4, zorder=3)
        ax.set_ylim(0, 1)
        ax.set_xlim(-0.5, max(len(months) - 0.5, 0.5))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        _tick_months(ax, [m["month"] for m in months], most=6)
        ax.set_title(RATE_TITLES[name], loc="left", fontsize=11, color=INK, fontweight="bold")
        return _svg(fig)


def horizontal_bars(
    counts: Mapping[str, int],
    *,
    colors: Mapping[str, str] | None = None,
    notes: Mapping[str, str] | None = None,
    xlabel: str = "bugs",
) -> str:
    """One bar per key, largest on top, with an optional note after each bar."""
    items = list(counts.items())
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.2, 0.45 + 0.28 * max(len(items), 1))
        ax = fig.add_subplot()
        labels = [_short(k) for k, _ in items][::-1]
        values = [v for _, v in items][::-1]
        palette = [(colors or {}).get(k, "#546e7a") for k, _ in items][::-1]
        bars = ax.barh(range(len(items)), values, color=palette, height=0.7)
        ax.set_yticks(range(len(items)), labels)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        top = max(values, default=0) or 1
        ax.set_xlim(0, top * (1.32 if notes else 1.12))
        for bar, (key, value) in zip(bars, reversed(items), strict=True):
            text = f"{value:,}" + (f" · {notes[key]}" if notes and key in notes else "")
            ax.text(
                bar.get_width() + top * 0.01,
                bar.get_y() + bar.get_height() / 2,
                text,
                va="center",
                fontsize=8,
                color=MUTED,
            )
        return _svg(fig)


def _short(text: str, width: int = 34) -> str:
    text = text.replace("_", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
