"""The pure-Python PNG is a valid image with the expected size and the series drawn."""

from __future__ import annotations

import struct
import zlib

import pytest

from mindstream.bench.font import GLYPHS, HEIGHT, WIDTH, glyph
from mindstream.bench.plot import Canvas, Series, encode_png, latency_chart

pytestmark = pytest.mark.unit


def decode(png: bytes) -> tuple[int, int, list[bytes]]:
    """Minimal PNG reader for filter-0 RGB images (what encode_png writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", data[:10])
            assert (depth, color) == (8, 2)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(r[0] == 0 for r in rows)
    return width, height, [r[1:] for r in rows]


def test_encode_png_round_trips_pixels() -> None:
    canvas = Canvas(4, 3)
    canvas.set(1, 2, (10, 20, 30))
    canvas.set(99, 99, (1, 1, 1))  # off canvas: ignored
    width, height, rows = decode(encode_png(canvas))
    assert (width, height) == (4, 3)
    assert rows[2][3:6] == bytes([10, 20, 30])
    assert rows[0][:3] == bytes([255, 255, 255])


def test_line_and_text_light_pixels() -> None:
    canvas = Canvas(40, 20)
    canvas.line(0, 0, 39, 0, (0, 0, 0))
    assert canvas.get(20, 0) == (0, 0, 0)
    end = canvas.text(0, 5, "A1", (9, 9, 9))
    assert end == 2 * (WIDTH + 1)
    assert canvas.get(0, 5 + 6) == (9, 9, 9)  # the A's left leg, bottom row


def test_dashed_line_has_gaps() -> None:
    canvas = Canvas(30, 1)
    canvas.line(0, 0, 29, 0, (0, 0, 0), dash=5)
    assert canvas.get(2, 0) == (0, 0, 0)
    assert canvas.get(7, 0) == (255, 255, 255)


def test_font_covers_what_labels_use() -> None:
    for ch in "0123456789abcdefghijklmnopqrstuvwxyz.,:/()-_%=<>+?":
        assert glyph(ch), ch
    assert glyph(" ") == ()
    assert glyph("~") == GLYPHS["?"]
    assert all(0 <= x < WIDTH and 0 <= y < HEIGHT for cells in GLYPHS.values() for x, y in cells)


def test_chart_draws_every_series_color() -> None:
    red = (200, 10, 10)
    png = latency_chart([Series("p99 x1", red, [(10, 5.0), (100, 50.0), (200, 900.0)])],
                        title="t", bound_ms=250, width=400, height=300)
    width, height, rows = decode(png)
    assert (width, height) == (400, 300)
    assert any(bytes(red) in row for row in rows)


def test_chart_without_data_still_renders() -> None:
    _, _, rows = decode(latency_chart([], title="empty"))
    assert rows


def test_canvas_refuses_no_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        Canvas(0, 5)
