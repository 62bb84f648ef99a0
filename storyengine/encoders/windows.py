"""Candidate subject windows for encoders that are not detectors (clip, appearance).

Such an encoder embeds a fixed set of windows per frame and returns each as a Detection; the
checker keeps the window that best matches the character. The set is fixed (not learned) so
results are reproducible and the cost per frame is known in advance:

* the whole frame;
* square windows whose side is 100 %, 70 % and 45 % of the frame's short side — a subject that
  fills the shot, a medium shot, a small subject (a pet across the room) — placed on an evenly
  spaced grid with neighbours overlapping by at least 25 % of the side (step ≤ 0.75·side), the
  first and last windows touching the frame edges.

For 640×360 that is 1 + 3 + 8 + 15 = 27 windows (1280×720: the same 27, the grid depends on
the aspect ratio only). Squares suit both consumers: CLIP's input is square and the appearance
histograms are centre-weighted.
"""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]

SCALES: tuple[float, ...] = (1.0, 0.7, 0.45)
STEP: float = 0.75


def _starts(length: int, side: int, step: float) -> list[int]:
    if side >= length:
        return [0]
    n = math.ceil((length - side) / (step * side)) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def candidate_windows(width: int, height: int, scales: tuple[float, ...] = SCALES, step: float = STEP) -> list[Box]:
    """Whole frame first, then square windows per scale in row-major order, as (x0, y0, x1, y1)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    boxes: list[Box] = [(0, 0, width, height)]
    short = min(width, height)
    for s in scales:
        side = max(1, round(s * short))
        for y in _starts(height, side, step):
            for x in _starts(width, side, step):
                box = (x, y, x + side, y + side)
                if box not in boxes:
                    boxes.append(box)
    return boxes


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Box, width: int, height: int) -> Box:
    """Clamp ``box`` to the frame; raise ValueError when nothing is left."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {tuple(box)} lies outside the {width}x{height} image")
    return x0, y0, x1, y1
