"""The weight-free photo-motion back-end: a still brought to life by a camera move, a breath and drifting light.

No trained model: every frame is the still resampled through a smooth, eased warp, so it runs anywhere,
is deterministic (same seed → byte-identical frames) and never invents pixels a model could hallucinate.
The motion is meant to read as "a weight shift, a breath, the smallest turn of the head":

1. an eased camera push toward the subject plus a small pan (subpixel, cubic resampling, never a border);
2. a low-frequency displacement field on each subject: breath (~0.2–0.3 Hz, ≤ 1–2 px), lateral sway and a
   tiny head turn, computed on a coarse grid and upsampled (smooth by construction, cannot tear);
3. light drift: a few percent of brightness / white balance over the shot, sometimes a soft band of light
   passing across the frame (a carriage passing station lights), plus optional fine film grain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import BackendError
from ..images import load_rgb
from ..specs import ShotPlan
from .base import Clip, Progress, VideoBackend

_REF_H = 360.0  # pixel amplitudes below are given for a 360-px-high frame and scale with the height
_GRID = 8  # the subject displacement and the light band are computed on a grid this many times coarser


def _ease(t: float) -> float:
    """Cosine ease-in-out on [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _smoothstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def cover_fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale and centre-crop ``rgb`` so it exactly covers ``width``×``height`` (no borders, aspect kept)."""
    h, w = rgb.shape[:2]
    s = max(width / w, height / h)
    # crop first (in source pixels) so the resize only touches what is kept
    cw, ch = min(w, width / s), min(h, height / s)
    x0, y0 = (w - cw) / 2.0, (h - ch) / 2.0
    xi0, yi0 = int(math.floor(x0)), int(math.floor(y0))
    xi1, yi1 = int(math.ceil(x0 + cw)), int(math.ceil(y0 + ch))
    crop = rgb[yi0:yi1, xi0:xi1]
    interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LANCZOS4
    out = cv2.resize(crop, (width, height), interpolation=interp)
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class _Subject:
    """A subject region in canvas pixels: face centre and face size (a proxy for the body's scale)."""

    x: float
    y: float
    size: float


class MotionBackend(VideoBackend):
    """Photo motion without a model: eased camera push/pan, subject breath and sway, light drift."""

    backend_id: ClassVar[str] = "motion"
    version: ClassVar[str] = "1"
    supports_lora: ClassVar[bool] = False
    supports_reference_images: ClassVar[bool] = False
    max_characters: ClassVar[int | None] = None
    digital_source_type: ClassVar[str] = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"

    class Options(BaseModel):
        """Ranges the per-shot motion is drawn from (``numpy.random.default_rng(plan.seed)``)."""

        model_config = ConfigDict(extra="forbid")

        push: tuple[float, float] = Field((0.04, 0.10), description="Zoom over the shot, drawn in [min, max] (0.06 = 6 %).")
        push_out: float = Field(0.2, ge=0.0, le=1.0, description="Probability that the camera pulls out instead of pushing in.")
        pan: float = Field(0.03, ge=0.0, le=0.2, description="Largest pan over the shot, as a fraction of the frame width.")
        sway: float = Field(1.0, ge=0.0, le=4.0, description="Strength of the subject's breath, sway and head turn (1 = about 1.5 px at 360p).")
        light: float = Field(0.03, ge=0.0, le=0.2, description="Largest brightness / white-balance drift over the shot (0.03 = 3 %).")
        light_band: float = Field(0.5, ge=0.0, le=1.0, description="Probability of a soft band of light passing across the frame.")
        grain: float = Field(0.006, ge=0.0, le=0.1, description="Film-grain standard deviation, as a fraction of full scale (0 = none).")
        overscan: float = Field(0.04, ge=0.0, le=0.5, description="How much bigger than the framed view the working canvas is (room to pan).")
        detect_faces: bool = Field(True, description="Centre the sway on faces found by dlib's HOG detector; else on the lower-central region.")

        @model_validator(mode="after")
        def _push_range(self) -> "MotionBackend.Options":
            lo, hi = self.push
            if not (0.0 <= lo <= hi <= 0.5):
                raise ValueError(f"`push` must be [min, max] with 0 <= min <= max <= 0.5, got {list(self.push)}")
            return self

    # -- helpers -------------------------------------------------------------------------------------------

    @staticmethod
    def still_for_size(path: str | Path, width: int, height: int) -> np.ndarray:
        """The still at ``path`` (EXIF-transposed RGB) cover-fitted to ``width``×``height``."""
        return cover_fit(load_rgb(path, what="still"), width, height)

    @staticmethod
    def _find_subjects(canvas: np.ndarray, n_characters: int, detect: bool) -> list[_Subject]:
        """Faces found by dlib's HOG detector (cheap, deterministic); else ``n_characters`` lower-central regions."""
        h, w = canvas.shape[:2]
        if n_characters <= 0:
            return []
        if detect:
            try:
                import dlib

                scale = min(1.0, 720.0 / max(h, w))
                small = canvas if scale == 1.0 else cv2.resize(canvas, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
                rects = dlib.get_frontal_face_detector()(small, 1 if min(small.shape[:2]) < 400 else 0)
                faces = [
                    _Subject((r.left() + r.right()) / 2 / scale, (r.top() + r.bottom()) / 2 / scale, (r.width() + r.height()) / 2 / scale)
                    for r in rects
                ]
                if faces:
                    faces.sort(key=lambda f: -f.size)
                    return faces[: max(n_characters, 1)]
            except ImportError:  # pragma: no cover - dlib is a dependency; the fallback still moves
                pass
        size = h / (3.0 + n_characters)
        return [_Subject(w * (i + 1) / (n_characters + 1), h * 0.45, size) for i in range(n_characters)]

    # -- generate ------------------------------------------------------------------------------------------

    def generate(self, plan: ShotPlan, progress: Progress | None = None) -> Clip:
        """Render ``plan`` as a lazily streamed clip; frame 0 is the still's framing (cropped by ``overscan``)."""
        opts = self.options_for(plan)
        W, H, N, fps = plan.width, plan.height, plan.num_frames, plan.fps
        if W < 16 or H < 16 or N < 1:
            raise BackendError(f"motion back-end needs at least 16×16 px and one frame, got {W}×{H} and {N} frames")
        rng = np.random.default_rng(plan.seed)
        amp_px = H / _REF_H  # 1 "360p pixel" in output pixels

        # 1. Draw the shot's motion (the order of draws is part of the output: keep it stable).
        push = float(rng.uniform(*opts.push))
        pull_out = bool(rng.random() < opts.push_out)
        pan_dir = rng.normal(size=2)
        pan_dir /= max(float(np.hypot(*pan_dir)), 1e-9)
        pan_amt = float(rng.uniform(0.3, 1.0)) * opts.pan
        target_jitter = rng.uniform(-0.5, 0.5, size=2)
        breath_hz = float(rng.uniform(0.2, 0.3))
        sway_hz = float(rng.uniform(0.07, 0.14))
        phases = rng.uniform(0.0, 2.0 * math.pi, size=4)
        breath_amp = float(rng.uniform(0.8, 1.2)) * 1.2 * opts.sway
        sway_amp = float(rng.uniform(0.6, 1.0)) * 1.5 * opts.sway * (1 if rng.random() < 0.5 else -1)
        turn_amp = float(rng.uniform(0.5, 1.0)) * 1.0 * opts.sway * (1 if rng.random() < 0.5 else -1)
        turn_at = float(rng.uniform(0.2, 0.6))
        light_dir = rng.normal(size=3)
        light_dir = light_dir / max(float(np.abs(light_dir).max()), 1e-9)
        light_amt = float(rng.uniform(0.4, 1.0)) * opts.light
        has_band = bool(rng.random() < opts.light_band)
        band_amp = float(rng.uniform(0.025, 0.05)) * (opts.light / 0.03 if opts.light else 0.0)
        band_slope = float(rng.uniform(-0.6, 0.6))
        band_width = float(rng.uniform(0.12, 0.25))
        band_span = sorted(rng.uniform(0.0, 1.0, size=2))
        band_reverse = bool(rng.random() < 0.5)
        shake_phase = rng.uniform(0.0, 2.0 * math.pi, size=4)
        grain_seed = int(rng.integers(0, 2**31 - 1))

        # 2. The working canvas: the cover-fitted still at (1 + overscan)× the output size, supersampled so the
        #    push stays sharp when the still has the resolution for it.
        still = load_rgb(plan.still, what="still")
        o = opts.overscan
        dens = max(1.0, min(1.0 + opts.push[1], min(still.shape[1] / (W * (1 + o)), still.shape[0] / (H * (1 + o)))))
        Cw, Ch = int(round(W * (1 + o) * dens)), int(round(H * (1 + o) * dens))
        canvas = cover_fit(still, Cw, Ch)
        subjects = self._find_subjects(canvas, len(plan.characters), opts.detect_faces)

        # The camera: zoom z (1 = the framed view), view centre (cx, cy) in canvas pixels.
        z0, z1 = (1.0 + push, 1.0) if pull_out else (1.0, 1.0 + push)
        c_home = np.array([Cw / 2.0, Ch / 2.0])
        if subjects:  # push gently toward the main face
            s0 = subjects[0]
            toward = np.array([s0.x, s0.y]) - c_home
        else:
            toward = target_jitter * np.array([Cw, Ch]) * 0.3
        z_max = 1.0 + push
        guard = 3.0 * dens + 4.0 * amp_px * max(opts.sway, 0.0) * dens  # cubic kernel + largest displacement
        offset = toward * (1.0 - 1.0 / z_max) + pan_dir * pan_amt * W * dens
        room = np.array([Cw, Ch]) * (1.0 - 1.0 / ((1 + o) * z_max)) / 2.0 - guard  # free travel at the tightest zoom
        offset = np.clip(offset, -np.maximum(room, 0.0) * 0.9, np.maximum(room, 0.0) * 0.9)
        c_far = c_home + offset
        c_start, c_end = (c_far, c_home) if pull_out else (c_home, c_far)

        # Output grid (pixel centres, relative to the output centre), and the coarse grid for the fields.
        xs = (np.arange(W, dtype=np.float32) + 0.5 - W / 2.0)
        ys = (np.arange(H, dtype=np.float32) + 0.5 - H / 2.0)
        gw, gh = max(2, W // _GRID + 1), max(2, H // _GRID + 1)
        gx = np.linspace(-W / 2.0, W / 2.0, gw, dtype=np.float32)[None, :].repeat(gh, 0)
        gy = np.linspace(-H / 2.0, H / 2.0, gh, dtype=np.float32)[:, None].repeat(gw, 1)
        gxn, gyn = gx / W + 0.5, gy / H + 0.5  # normalised output coordinates for the light band

        grain_amp = opts.grain * 255.0
        grain_tile = None
        if grain_amp > 0:
            g = np.random.default_rng(grain_seed).standard_normal((H + 32, W + 32), dtype=np.float32)
            # slightly soft grain (film, not sensor noise)
            grain_tile = cv2.GaussianBlur(g, (0, 0), 0.6) * np.float32(grain_amp / 0.62)

        meta = {
            "backend": self.backend_id, "version": self.version, "seed": plan.seed,
            "options": opts.model_dump(mode="json"),
            "motion": {
                "push": round(push, 4), "pull_out": pull_out, "pan": round(pan_amt, 4), "breath_hz": round(breath_hz, 3),
                "light": round(light_amt, 4), "light_band": has_band,
                "subjects": [[round(s.x / dens, 1), round(s.y / dens, 1), round(s.size / dens, 1)] for s in subjects],
            },
        }

        def frames() -> Iterator[np.ndarray]:
            grain_rng = np.random.default_rng(grain_seed + 1)
            for i in range(N):
                t = i / (N - 1) if N > 1 else 0.0
                sec = i / fps
                e = _ease(t)
                z = z0 + (z1 - z0) * e
                c = c_start + (c_end - c_start) * _smoothstep(t)
                # a breath of handheld drift (≤ 0.3 px), two slow incommensurate sines per axis
                c = c + dens * amp_px * 0.3 * np.array([
                    math.sin(2 * math.pi * 0.11 * sec + shake_phase[0]) * 0.6 + math.sin(2 * math.pi * 0.037 * sec + shake_phase[1]) * 0.4,
                    math.sin(2 * math.pi * 0.09 * sec + shake_phase[2]) * 0.6 + math.sin(2 * math.pi * 0.029 * sec + shake_phase[3]) * 0.4,
                ])
                k = Cw / (W * (1 + o) * z)  # canvas pixels per output pixel
                half_w, half_h = k * W / 2.0, k * H / 2.0
                cx = min(max(c[0], half_w + guard), Cw - half_w - guard) if Cw - 2 * (half_w + guard) > 0 else Cw / 2.0
                cy = min(max(c[1], half_h + guard), Ch - half_h - guard) if Ch - 2 * (half_h + guard) > 0 else Ch / 2.0

                # subject displacement (canvas pixels) on the coarse grid, at where each grid point lands
                u, v = gx * k + cx, gy * k + cy
                dx = np.zeros_like(u)
                dy = np.zeros_like(u)
                if subjects:
                    b = breath_amp * (0.5 - 0.5 * math.cos(2 * math.pi * breath_hz * sec + phases[0]))
                    sw = sway_amp * math.sin(2 * math.pi * sway_hz * sec + phases[1]) * (0.3 + 0.7 * e)
                    tu = turn_amp * _smoothstep((t - turn_at) / 0.35)
                    nod = 0.25 * turn_amp * math.sin(2 * math.pi * 0.17 * sec + phases[2])
                    unit = amp_px * dens
                    for s in subjects:
                        f = s.size
                        body = np.exp(-(((u - s.x) / (1.8 * f)) ** 2 + ((v - (s.y + 1.3 * f)) / (2.2 * f)) ** 2))
                        lean = np.exp(-(((u - s.x) / (2.0 * f)) ** 2 + ((v - s.y) / (3.0 * f)) ** 2))
                        head = np.exp(-(((u - s.x) / (0.8 * f)) ** 2 + ((v - s.y) / (0.9 * f)) ** 2))
                        dy -= (b * body + nod * head) * unit
                        dx += (sw * lean + tu * head) * unit
                map_x = np.empty((H, W), np.float32)
                map_y = np.empty((H, W), np.float32)
                map_x[:] = xs * np.float32(k) + np.float32(cx - 0.5)
                map_y[:] = (ys * np.float32(k) + np.float32(cy - 0.5))[:, None]
                if subjects:
                    map_x -= cv2.resize(dx, (W, H), interpolation=cv2.INTER_LINEAR)
                    map_y -= cv2.resize(dy, (W, H), interpolation=cv2.INTER_LINEAR)
                frame = cv2.remap(canvas, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)

                # light: global drift per channel, an optional passing band, grain
                le = _smoothstep(t)
                gains = (1.0 + light_amt * le * light_dir).astype(np.float32)
                out = frame.astype(np.float32)
                if has_band and band_span[0] - 0.3 < t < band_span[1] + 0.3 and band_amp > 0:
                    p = (t - band_span[0] + 0.3) / (band_span[1] - band_span[0] + 0.6)
                    pos = (1.0 - p if band_reverse else p) * 1.8 - 0.4
                    band = band_amp * np.exp(-(((gxn + band_slope * (gyn - 0.5)) - pos) / band_width) ** 2)
                    gain_map = cv2.resize(1.0 + band, (W, H), interpolation=cv2.INTER_LINEAR)
                    out *= gain_map[..., None]
                out *= gains
                if grain_tile is not None:
                    ox, oy = grain_rng.integers(0, 33, size=2)
                    out += grain_tile[oy:oy + H, ox:ox + W, None]
                np.clip(out, 0.0, 255.0, out=out)
                if progress is not None:
                    progress(i + 1, N)
                yield (out + 0.5).astype(np.uint8)

        return Clip(fps=fps, width=W, height=H, num_frames=N, frames=frames(), meta=meta)
