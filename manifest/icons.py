#!/usr/bin/env python3
"""Draws the Teams app icons (color.png 192x192, outline.png 32x32) with the standard library only.

The glyph is a speech bubble with a check mark: a bot that gets things done in a conversation. The colour
icon is the white bubble on the accent colour with the check in the accent colour; the outline icon is the
same bubble in pure white on a transparent background with the check cut out, as Teams requires.

Run from the repository root after changing accent_color in manifest/app.toml:
    python3 manifest/icons.py
"""

import math
import re
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPERSAMPLE = 4


def accent_rgb():
    text = (HERE / "app.toml").read_text(encoding="utf-8")
    match = re.search(r'^accent_color\s*=\s*"#([0-9a-fA-F]{6})"', text, re.MULTILINE)
    if not match:
        raise SystemExit("manifest/app.toml has no accent_color = \"#RRGGBB\"")
    value = match.group(1)
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


def in_rounded_rect(x, y, left, top, right, bottom, radius):
    cx = min(max(x, left + radius), right - radius)
    cy = min(max(y, top + radius), bottom - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2 and left <= x <= right and top <= y <= bottom


def in_triangle(x, y, a, b, c):
    def side(p, q):
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return (s1 >= 0 and s2 >= 0 and s3 >= 0) or (s1 <= 0 and s2 <= 0 and s3 <= 0)


def near_segment(x, y, p, q, half_width):
    px, py = q[0] - p[0], q[1] - p[1]
    t = ((x - p[0]) * px + (y - p[1]) * py) / (px * px + py * py)
    t = min(max(t, 0.0), 1.0)
    return math.hypot(x - (p[0] + t * px), y - (p[1] + t * py)) <= half_width


# Glyph coordinates: x and y in [-1, 1], y pointing down.
CHECK = [(-0.46, -0.20), (-0.12, 0.12), (0.48, -0.44)]


def in_bubble(x, y):
    return in_rounded_rect(x, y, -1.0, -0.82, 1.0, 0.45, 0.32) or in_triangle(
        x, y, (-0.62, 0.30), (-0.08, 0.30), (-0.70, 0.98)
    )


def in_check(x, y):
    return near_segment(x, y, CHECK[0], CHECK[1], 0.13) or near_segment(x, y, CHECK[1], CHECK[2], 0.13)


def coverage(size, glyph_size, inside):
    """Fraction of each pixel inside the glyph, sampled SUPERSAMPLE^2 times per pixel."""
    scale = glyph_size / 2.0
    # The glyph spans y in [-0.82, 0.98]; centre that span vertically.
    y_shift = (0.98 - 0.82) / 2.0
    rows = []
    for py in range(size):
        row = []
        for px in range(size):
            hits = 0
            for sy in range(SUPERSAMPLE):
                for sx in range(SUPERSAMPLE):
                    gx = (px + (sx + 0.5) / SUPERSAMPLE - size / 2.0) / scale
                    gy = (py + (sy + 0.5) / SUPERSAMPLE - size / 2.0) / scale + y_shift
                    hits += inside(gx, gy)
            row.append(hits / SUPERSAMPLE**2)
        rows.append(row)
    return rows


def png(path, width, height, color_type, rows):
    """rows: bytes per row, already in the colour type's channel order (filter byte added here)."""
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(data)


def main():
    accent = accent_rgb()

    size = 192
    white = coverage(size, 112, lambda x, y: in_bubble(x, y) and not in_check(x, y))
    rows = []
    for row in white:
        out = bytearray()
        for w in row:
            out += bytes(round(a + (255 - a) * w) for a in accent)
        rows.append(bytes(out))
    png(HERE / "color.png", size, size, 2, rows)

    size = 32
    alpha = coverage(size, 28, lambda x, y: in_bubble(x, y) and not in_check(x, y))
    rows = []
    for row in alpha:
        out = bytearray()
        for a in row:
            out += bytes((255, 255, 255, round(255 * a)))
        rows.append(bytes(out))
    png(HERE / "outline.png", size, size, 6, rows)


if __name__ == "__main__":
    main()
