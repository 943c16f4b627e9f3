"""A tiny PNG line chart in pure Python (zlib + struct): latency percentiles vs offered load.

The bench must run on a bare install, so it draws its own plot instead of
requiring matplotlib: an RGB canvas, lines, a 5x7 font, and a PNG encoder.
The y axis is logarithmic, because latency past saturation grows by orders
of magnitude and the interesting part is the knee.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from mindstream.bench.font import HEIGHT, WIDTH, glyph

__all__ = ["Canvas", "Series", "encode_png", "latency_chart"]

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (30, 30, 30)
GREY: Color = (200, 200, 200)
RED: Color = (200, 40, 40)


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        if width < 1 or height < 1:
            raise ValueError("a canvas needs a positive size")
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(color)

    def get(self, x: int, y: int) -> Color:
        i = (y * self.width + x) * 3
        return self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]

    def line(self, x0: float, y0: float, x1: float, y1: float, color: Color, *, width: int = 1,
             dash: int = 0) -> None:
        """A straight line; ``dash`` > 0 draws ``dash`` pixels on, ``dash`` off."""
        steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0))))
        half = width // 2
        for i in range(steps + 1):
            if dash and (i // dash) % 2:
                continue
            x = round(x0 + (x1 - x0) * i / steps)
            y = round(y0 + (y1 - y0) * i / steps)
            for dx in range(-half, width - half):
                for dy in range(-half, width - half):
                    self.set(x + dx, y + dy, color)

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> int:
        """Draw ``text`` with its top-left at (x, y); returns the x after the last glyph."""
        for ch in text:
            for gx, gy in glyph(ch):
                for sx in range(scale):
                    for sy in range(scale):
                        self.set(x + gx * scale + sx, y + gy * scale + sy, color)
            x += (WIDTH + 1) * scale
        return x

    @staticmethod
    def text_width(text: str, scale: int = 1) -> int:
        return len(text) * (WIDTH + 1) * scale


def encode_png(canvas: Canvas) -> bytes:
    """An 8-bit RGB PNG of ``canvas``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    stride = canvas.width * 3
    raw = b"".join(b"\x00" + bytes(canvas.pixels[y * stride:(y + 1) * stride])
                   for y in range(canvas.height))
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


@dataclass(frozen=True)
class Series:
    label: str
    color: Color
    points: Sequence[tuple[float, float]]  # (offered runs/s, latency ms)
    dash: int = 0


def _nice_step(span: float) -> float:
    raw = span / 6
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def latency_chart(series: Sequence[Series], *, title: str, bound_ms: float | None = None,
                  width: int = 900, height: int = 560) -> bytes:
    """PNG bytes: each series as a line with point markers; log-scale latency axis."""
    canvas = Canvas(width, height)
    left, right, top, bottom = 80, width - 190, 50, height - 60
    points = [p for s in series for p in s.points if p[1] > 0 and math.isfinite(p[1])]
    x_max = max([p[0] for p in points] + [1.0]) * 1.05
    y_values = [p[1] for p in points] + ([bound_ms] if bound_ms else [])
    lo = 10 ** math.floor(math.log10(max(min(y_values, default=1.0), 0.1)))
    hi = 10 ** math.ceil(math.log10(max(max(y_values, default=10.0), lo * 10)))

    def px(x: float) -> float:
        return left + (right - left) * x / x_max

    def py(y: float) -> float:
        y = min(max(y, lo), hi)
        return bottom - (bottom - top) * (math.log10(y) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    canvas.text(left, 18, title, scale=2)
    decade = lo
    while decade <= hi * 1.0001:
        y = round(py(decade))
        canvas.line(left, y, right, y, GREY)
        label = f"{decade:g}"
        canvas.text(left - 8 - Canvas.text_width(label), y - HEIGHT // 2, label)
        decade *= 10
    step = _nice_step(x_max)
    tick = 0.0
    while tick <= x_max:
        x = round(px(tick))
        canvas.line(x, top, x, bottom, GREY)
        label = f"{tick:g}"
        canvas.text(x - Canvas.text_width(label) // 2, bottom + 8, label)
        tick += step
    canvas.line(left, bottom, right, bottom, BLACK)
    canvas.line(left, top, left, bottom, BLACK)
    x_label = "offered load (runs/s)"
    canvas.text((left + right) // 2 - Canvas.text_width(x_label) // 2, bottom + 28, x_label)
    canvas.text(8, top - 16, "latency (ms, log)")
    if bound_ms:
        y = round(py(bound_ms))
        canvas.line(left, y, right, y, RED, dash=6)
        label = f"p99 bound {bound_ms:g}"
        canvas.text(right - Canvas.text_width(label), y - 12, label, RED)
    legend_y = top
    for s in series:
        ordered = sorted(p for p in s.points if p[1] > 0 and math.isfinite(p[1]))
        for (x0, y0), (x1, y1) in itertools.pairwise(ordered):
            canvas.line(px(x0), py(y0), px(x1), py(y1), s.color, width=2, dash=s.dash)
        for load, latency in ordered:
            cx, cy = round(px(load)), round(py(latency))
            for dx in range(-2, 3):
                for dy in range(-2, 3):
                    canvas.set(cx + dx, cy + dy, s.color)
        canvas.line(right + 15, legend_y + 3, right + 40, legend_y + 3, s.color, width=2, dash=s.dash)
        canvas.text(right + 46, legend_y, s.label)
        legend_y += 16
    return encode_png(canvas)
