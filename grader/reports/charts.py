"""Chart geometry for the reports: Python computes coordinates, templates draw the SVG."""

from __future__ import annotations

import dataclasses

WIDTH, HEIGHT, PAD = 320, 220, 32
COLOURS = ("#1f6feb", "#d1242f", "#2da44e", "#8250df")


@dataclasses.dataclass(frozen=True)
class Line:
    label: str
    points: str  # "x,y x,y ..." for <polyline>
    colour: str
    dashed: bool = False


@dataclasses.dataclass(frozen=True)
class LineChart:
    title: str
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[float, str], ...]  # (y, label)
    x_ticks: tuple[tuple[float, str], ...]
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def line_chart(title: str, series: dict[str, list[float]], threshold: float | None = None, unit_range: bool = False) -> LineChart | None:
    """Curves over epochs; `unit_range` fixes the y axis to [0, 1] (accuracies)."""
    series = {name: values for name, values in series.items() if values}
    if not series:
        return None
    values = [v for vs in series.values() for v in vs] + ([threshold] if threshold is not None else [])
    low, high = (0.0, 1.0) if unit_range else (min(0.0, min(values)), max(values) or 1.0)
    epochs = max(len(vs) for vs in series.values())

    def x(index: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (index / max(1, epochs - 1))

    # The legend gets its own band above the plot, so it never covers a curve.
    top = 22 + 11 * (len(series) + (threshold is not None))

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - PAD - top) * ((value - low) / ((high - low) or 1.0))

    lines = [
        Line(name, " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs)), COLOURS[n % len(COLOURS)])
        for n, (name, vs) in enumerate(series.items())
    ]
    if threshold is not None:
        lines.append(Line(f"threshold {threshold:.2f}", f"{x(0):.1f},{y(threshold):.1f} {x(epochs - 1):.1f},{y(threshold):.1f}", "#6e7781", True))
    y_ticks = tuple((y(low + (high - low) * k / 4), f"{low + (high - low) * k / 4:.2f}") for k in range(5))
    x_ticks = tuple((x(i), str(i + 1)) for i in range(epochs))
    return LineChart(title, tuple(lines), y_ticks, x_ticks)


@dataclasses.dataclass(frozen=True)
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    count: int


@dataclasses.dataclass(frozen=True)
class BarChart:
    title: str
    bars: tuple[Bar, ...]
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def histogram(title: str, scores: list[float], max_score: float, bins: int = 10) -> BarChart:
    """How many submissions scored in each tenth of the points."""
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, int(bins * score / max_score)) if max_score else 0] += 1
    tallest = max(counts) or 1
    step = (WIDTH - 2 * PAD) / bins
    bars = []
    for index, count in enumerate(counts):
        height = (HEIGHT - 2 * PAD) * count / tallest
        label = f"{max_score * index / bins:.0f}-{max_score * (index + 1) / bins:.0f}"
        bars.append(Bar(label, PAD + index * step + 2, HEIGHT - PAD - height, step - 4, height, count))
    return BarChart(title, tuple(bars))
