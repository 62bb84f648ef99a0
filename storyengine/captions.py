"""Text over pictures: per-shot captions and the AI disclosure label.

Each overlay is drawn once (Pillow, DejaVu Sans) as a premultiplied RGB + alpha layer at the frame
size and composited onto frames with an opacity, so captions can ease in and out cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEFAULT_DISCLOSURE = "AI-extended from a still photograph"
CAPTION_FADE = 0.2  # seconds a caption takes to appear and to go


@lru_cache(maxsize=8)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib's bundled fonts; Pillow's scalable default as a fallback."""
    try:
        import matplotlib

        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
    except Exception:  # pragma: no cover - matplotlib is a dependency
        return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class Overlay:
    """A drawn overlay: ``rgb`` (float32, premultiplied) and ``alpha`` (float32, H×W×1), cropped to its box."""

    rgb: np.ndarray
    alpha: np.ndarray
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the frame

    def over(self, frame: np.ndarray, opacity: float = 1.0) -> np.ndarray:
        """``frame`` with this overlay composited at ``opacity`` (a new array; the input is not changed)."""
        if opacity <= 0 or self.box[2] <= self.box[0]:
            return frame
        x0, y0, x1, y1 = self.box
        out = frame.copy()
        region = out[y0:y1, x0:x1].astype(np.float32)
        a = self.alpha * np.float32(opacity)
        region = region * (1 - a) + self.rgb * np.float32(opacity)
        out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        return out


def _fit(text: str, size: int, max_w: float, bold: bool) -> tuple[ImageFont.FreeTypeFont, str]:
    while True:
        f = font(size, bold)
        if f.getlength(text) <= max_w or size <= 8:
            return f, text
        size = max(8, int(size * 0.9))


def _wrap(text: str, f: ImageFont.FreeTypeFont, max_w: float) -> list[str]:
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        cur = ""
        for word in para.split():
            trial = f"{cur} {word}".strip()
            if f.getlength(trial) <= max_w or not cur:
                cur = trial
            else:
                lines.append(cur)
                cur = word
        lines.append(cur)
    return lines


def _crop(layer: Image.Image, width: int, height: int) -> Overlay:
    arr = np.asarray(layer, dtype=np.float32)
    alpha = arr[..., 3:4] / 255.0
    ys, xs = np.nonzero(alpha[..., 0] > 0)
    if ys.size == 0:
        return Overlay(np.zeros((0, 0, 3), np.float32), np.zeros((0, 0, 1), np.float32), (0, 0, 0, 0))
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    return Overlay((arr[y0:y1, x0:x1, :3] * alpha[y0:y1, x0:x1]).copy(), alpha[y0:y1, x0:x1].copy(), (x0, y0, x1, y1))


@lru_cache(maxsize=64)
def caption(text: str, position: str, width: int, height: int) -> Overlay:
    """A subtitle-style caption: white text with a soft dark outline/shadow, wrapped to 84 % of the width."""
    size = max(10, int(height * 0.058))
    f = font(size)
    max_w = width * 0.84
    lines = _wrap(text, f, max_w)
    while len(lines) > 3 and size > 8:  # keep it to three lines
        size = max(8, int(size * 0.9))
        f = font(size)
        lines = _wrap(text, f, max_w)
    line_h = int(size * 1.28)
    block_h = line_h * len(lines)
    margin = max(6, int(height * 0.075))
    if position == "top":
        y = margin
    elif position == "center":
        y = (height - block_h) // 2
    else:
        y = height - margin - block_h
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    shadow = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    sd, d = ImageDraw.Draw(shadow), ImageDraw.Draw(layer)
    stroke = max(1, size // 12)
    for k, line in enumerate(lines):
        x = (width - f.getlength(line)) / 2
        yy = y + k * line_h
        sd.text((x, yy + max(1, size // 16)), line, font=f, fill=(0, 0, 0, 200), stroke_width=stroke + 1,
                stroke_fill=(0, 0, 0, 200))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1, size // 8)))
    layer = Image.alpha_composite(layer, shadow)
    d = ImageDraw.Draw(layer)
    for k, line in enumerate(lines):
        x = (width - f.getlength(line)) / 2
        d.text((x, y + k * line_h), line, font=f, fill=(250, 248, 240, 255), stroke_width=stroke,
               stroke_fill=(12, 12, 16, 235))
    return _crop(layer, width, height)


@lru_cache(maxsize=8)
def disclosure_label(text: str, width: int, height: int) -> Overlay:
    """The disclosure label: small text on a translucent dark pill in the top-right corner."""
    size = max(8, int(height * 0.032))
    f, text = _fit(text, size, width * 0.6, bold=False)
    size = f.size
    tw = f.getlength(text)
    l, t, r, b = f.getbbox(text)
    pad_x, pad_y = max(4, size // 2), max(2, size // 3)
    margin = max(4, int(height * 0.03))
    x1 = width - margin
    x0 = int(x1 - tw - 2 * pad_x)
    y0 = margin
    y1 = int(y0 + (b - t) + 2 * pad_y)
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    d.rounded_rectangle([x0, y0, x1, y1], radius=(y1 - y0) // 2, fill=(10, 10, 14, 150))
    d.text((x0 + pad_x, y0 + pad_y - t), text, font=f, fill=(236, 236, 236, 230))
    return _crop(layer, width, height)


def caption_opacity(t: float, start: float, end: float, fade: float = CAPTION_FADE) -> float:
    """Opacity of a caption shown over [start, end) seconds at time ``t``: eased in and out."""
    if t < start or t >= end:
        return 0.0
    f = min(fade, (end - start) / 3)
    if f <= 0:
        return 1.0
    return float(min(1.0, (t - start) / f, (end - t) / f))
