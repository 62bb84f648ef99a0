"""Light on the frame: a slow drift of exposure and white balance, a passing band, flicker, dimming, grain and
the take's mood grade, applied to each warped frame in one float pass."""

from __future__ import annotations

import cv2
import numpy as np

from ...finishing import apply_grade
from ...specs import Grade
from .timeline import Performance


def _ss(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


class Light:
    """Per-shot light: everything drawn up front from ``rng``; :meth:`apply` maps a warped frame to the output."""

    def __init__(self, W: int, H: int, n: int, fps: int, perf: Performance, rng: np.random.Generator, *,
                 drift: float, band: bool, grain: float, grade: Grade | None, grid: int = 8,
                 hold_grain: bool = False) -> None:
        self.W, self.H, self.fps, self.perf = W, H, fps, perf
        d = rng.normal(size=3)
        self.drift_dir = (d / max(float(np.abs(d).max()), 1e-9)).astype(np.float32)
        self.drift = float(rng.uniform(0.4, 1.0)) * drift
        self.band_amp = float(rng.uniform(0.025, 0.05)) * (1.6 if perf.light_pass else 1.0)
        self.band_slope = float(rng.uniform(-0.6, 0.6))
        self.band_width = float(rng.uniform(0.12, 0.25))
        span = sorted(rng.uniform(0.0, 1.0, size=2))
        self.band_reverse = bool(rng.random() < 0.5)
        T = max(perf.duration, 1e-3)
        if perf.light_pass:
            self.band_span = (perf.light_pass[0] / T, perf.light_pass[1] / T)
        else:
            self.band_span = (float(span[0]), float(span[1])) if band else None
        grain_seed = int(rng.integers(0, 2**31 - 1))
        flick = rng.random(max(n, 1) + 8)
        # flicker: short dips toward a dimmer level (a failing tube), smoothed over ~2 frames
        dips = np.where(flick < 0.35, 1.0 - flick / 0.35, 0.0).astype(np.float32)
        self.flicker = np.convolve(dips, [0.25, 0.5, 0.25], mode="same") * 0.16
        gw, gh = max(2, W // grid + 1), max(2, H // grid + 1)
        self.gxn = np.linspace(0.0, 1.0, gw, dtype=np.float32)[None, :].repeat(gh, 0)
        self.gyn = np.linspace(0.0, 1.0, gh, dtype=np.float32)[:, None].repeat(gw, 1)
        self.grade = grade if grade is not None and grade != Grade() else None
        self.grain_tile = None
        self.grain_rng = np.random.default_rng(grain_seed + 1)
        self.hold_grain = hold_grain  # a locked-off camera holds its grain too: nothing but the subject moves
        if grain > 0:
            g = np.random.default_rng(grain_seed).standard_normal((H + 32, W + 32), dtype=np.float32)
            self.grain_tile = cv2.GaussianBlur(g, (0, 0), 0.6) * np.float32(grain * 255.0 / 0.62)
            q = np.round(self.grain_tile)
            # the fast path's integer grain as two saturating uint8 steps (add the positive, subtract the negative)
            self.grain_pos = np.repeat(np.clip(q, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            self.grain_neg = np.repeat(np.clip(-q, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    def gains(self, i: int, t: float) -> np.ndarray:
        """Per-channel multiplier at frame ``i`` (time fraction ``t``)."""
        p = self.perf
        sec = t * p.duration
        g = 1.0 + self.drift * _ss(t) * self.drift_dir
        g = g * (1.0 + p.gain(sec))
        if p.flicker and p.flicker[0] <= sec <= p.flicker[1]:
            g = g * (1.0 - float(self.flicker[i]))
        return g.astype(np.float32)

    def band(self, t: float) -> np.ndarray | None:
        if self.band_span is None or self.band_amp <= 0:
            return None
        a, b = self.band_span
        if not (a - 0.3 < t < b + 0.3):
            return None
        q = (t - a + 0.3) / (b - a + 0.6)
        pos = (1.0 - q if self.band_reverse else q) * 1.8 - 0.4
        band = self.band_amp * np.exp(-(((self.gxn + self.band_slope * (self.gyn - 0.5)) - pos) / self.band_width) ** 2)
        return cv2.resize(1.0 + band, (self.W, self.H), interpolation=cv2.INTER_LINEAR)

    def apply(self, frame: np.ndarray, i: int, t: float) -> np.ndarray:
        """``frame`` (uint8, or float32 from a composite) lit, grained and graded; uint8 out."""
        bm = self.band(t)
        gains = self.gains(i, t)
        if self.grain_tile is not None:
            ox, oy = (16, 16) if self.hold_grain else self.grain_rng.integers(0, 33, size=2)
        if bm is None and frame.dtype == np.uint8:
            # the common case without a band: per-channel gains as a lookup table, grain added in int16
            lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * gains[None, :] + 0.5, 0, 255).astype(np.uint8)
            img = cv2.LUT(frame, lut.reshape(256, 1, 3))
            if self.grain_tile is not None:
                img = cv2.subtract(cv2.add(img, self.grain_pos[oy:oy + self.H, ox:ox + self.W]),
                                   self.grain_neg[oy:oy + self.H, ox:ox + self.W])
        else:
            out = frame.astype(np.float32)
            if bm is not None:
                out *= bm[..., None]
            out *= gains
            if self.grain_tile is not None:
                out += self.grain_tile[oy:oy + self.H, ox:ox + self.W, None]
            np.clip(out, 0.0, 255.0, out=out)
            img = (out + 0.5).astype(np.uint8)
        return apply_grade(img, self.grade) if self.grade is not None else img
