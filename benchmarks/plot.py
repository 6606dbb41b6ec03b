"""A small line chart written with Pillow alone: log-scale x and y, one coloured line per series."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127))
Series = dict[str, list[tuple[float, float]]]  # label -> [(x, y), ...]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks per decade between ``low`` and ``high`` (both > 0)."""
    ticks = []
    for decade in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        ticks += [m * 10**decade for m in (1, 2, 5) if low <= m * 10**decade <= high]
    return ticks


def line_chart(series: Series, path: Path, title: str, x_label: str, y_label: str,
               size: tuple[int, int] = (1000, 600)) -> None:
    """Draw ``series`` (x on a log10 axis) with axes, ticks and a legend, and save a PNG to ``path``."""
    width, height = size
    left, right, top, bottom = 90, 260, 50, 70
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)
    points = [p for values in series.values() for p in values if p[0] > 0 and p[1] > 0 and math.isfinite(p[1])]
    x_lo = math.floor(math.log10(min(p[0] for p in points)) * 2) / 2
    x_hi = math.ceil(math.log10(max(p[0] for p in points)) * 2) / 2
    y_lo = math.floor(math.log10(min(p[1] for p in points)) * 4) / 4
    y_hi = math.ceil(math.log10(max(p[1] for p in points)) * 4) / 4

    def to_px(x: float, y: float) -> tuple[float, float]:
        fx = (math.log10(x) - x_lo) / max(x_hi - x_lo, 1e-9)
        fy = (math.log10(y) - y_lo) / max(y_hi - y_lo, 1e-9)
        return left + fx * (width - left - right), height - bottom - fy * (height - top - bottom)

    for tick in _log_ticks(10**y_lo, 10**y_hi):
        _, py = to_px(10**x_lo, tick)
        draw.line([(left, py), (width - right, py)], fill=(230, 230, 230))
        draw.text((left - 8, py), f"{tick:g}", fill="black", font=small, anchor="rm")
    for tick in _log_ticks(10**x_lo, 10**x_hi):
        px, _ = to_px(tick, 10**y_lo)
        draw.line([(px, top), (px, height - bottom)], fill=(230, 230, 230))
        draw.text((px, height - bottom + 8), f"{tick:g}", fill="black", font=small, anchor="mt")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((width / 2 - right / 2 + left / 2, 20), title, fill="black", font=font, anchor="mm")
    draw.text((left + (width - left - right) / 2, height - 25), x_label, fill="black", font=font, anchor="mm")
    label_image = Image.new("RGB", (height - top - bottom, 24), "white")
    ImageDraw.Draw(label_image).text((label_image.width / 2, 12), y_label, fill="black", font=font, anchor="mm")
    image.paste(label_image.rotate(90, expand=True), (15, top))
    for index, (label, values) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        pixels = [to_px(x, y) for x, y in sorted(values) if x > 0 and y > 0 and math.isfinite(y)]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=3)
        for px, py in pixels:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=color)
        legend_y = top + 10 + index * 24
        draw.line([(width - right + 15, legend_y), (width - right + 45, legend_y)], fill=color, width=3)
        draw.text((width - right + 52, legend_y), label, fill="black", font=small, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    from fcn_deploy.fileio import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def bar_chart(bars: list[tuple[str, float]], path: Path, title: str, x_label: str,
              size: tuple[int, int] = (1000, 420)) -> None:
    """Horizontal bars (label, value) on a linear axis from 0, values printed at the bar ends; saved as a PNG."""
    width, height = size
    left, right, top, bottom = 260, 80, 50, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)
    high = max(value for _, value in bars) * 1.1
    pitch = (height - top - bottom) / max(1, len(bars))
    for index, (label, value) in enumerate(bars):
        y0 = top + index * pitch + pitch * 0.15
        y1 = top + (index + 1) * pitch - pitch * 0.15
        x1 = left + value / high * (width - left - right)
        draw.rectangle([left, y0, x1, y1], fill=(70, 110, 180))
        draw.text((left - 8, (y0 + y1) / 2), label, fill="black", font=small, anchor="rm")
        draw.text((x1 + 6, (y0 + y1) / 2), f"{value:.3g}", fill="black", font=small, anchor="lm")
    draw.line([(left, top), (left, height - bottom)], fill="black")
    draw.text((width / 2, 20), title, fill="black", font=font, anchor="mm")
    draw.text((left + (width - left - right) / 2, height - 25), x_label, fill="black", font=font, anchor="mm")
    image.save(path)
