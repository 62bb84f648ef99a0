"""Full-mode observation: find faces (or subjects) in every frame without a full detection per frame.

A full-frame detection runs every ``detect_stride`` frames (and whenever a track is lost).
Between them each face is *tracked by local re-detection*: the encoder's own detector runs only
on a window around the face's last box (a few ms instead of a full frame). If the detector does
not fire there, the face is turned away or hidden in that frame: it is unknown, not drifted, and
the next frame gets a full detection. An identity vector is recomputed only when the face crop
changed since the last embedded crop; a near-identical crop reuses the last vector ("reused").

Encoders without ``detect``/``embed_box`` (appearance encoders that search windows) are embedded
per scored frame, reusing the previous result when the whole frame is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .encoders.base import Detection, Encoder

Box = tuple[int, int, int, int]
REUSE_TOL = 3.0  # mean absolute difference (0-255) of a 32x32 grey crop under which a vector is reused
ROI_MARGIN = 0.5  # the tracking window extends the last box by this fraction of its size on every side


@dataclass
class Observation:
    """One face/subject found in one frame, and how it was found."""

    box: Box
    vector: np.ndarray
    source: str  # detected | tracked | reused


@dataclass
class _Track:
    box: Box
    crop: np.ndarray  # the grey crop the vector was computed from
    vector: np.ndarray


def _grey_crop(frame: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    c = frame[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)]
    g = cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def can_track(encoder: Encoder) -> bool:
    return callable(getattr(encoder, "detect", None)) and callable(getattr(encoder, "embed_box", None)) \
        and getattr(encoder, "modality", "") == "face"


@dataclass
class FaceTracker:
    """Stateful per-clip observer for one face encoder (feed frames in order)."""

    encoder: Any
    detect_stride: int = 8
    reuse_tol: float = REUSE_TOL
    tracks: list[_Track] = field(default_factory=list)
    since_detect: int = 10**9
    stats: dict[str, int] = field(default_factory=lambda: {"detect": 0, "roi": 0, "embed": 0, "reuse": 0})

    def _embed(self, frame: np.ndarray, box: Box, prev: _Track | None, source: str) -> tuple[Observation, _Track]:
        # the pixels where the vector was computed, looked at again: unchanged (and the detector's box only
        # jittered) means the same vector; box jitter alone must not force a recomputation
        if prev is not None and _iou(box, prev.box) > 0.8 and min(
                float(np.abs(_grey_crop(frame, prev.box) - prev.crop).mean()),
                float(np.abs(_grey_crop(frame, box) - prev.crop).mean())) < self.reuse_tol:
            self.stats["reuse"] += 1
            return Observation(box, prev.vector, "reused"), _Track(prev.box, prev.crop, prev.vector)
        crop = _grey_crop(frame, box)
        self.stats["embed"] += 1
        v = self.encoder.embed_box(frame, box)
        return Observation(box, v, source), _Track(box, crop, v)

    def observe(self, frame: np.ndarray) -> list[Observation]:
        h, w = frame.shape[:2]
        if not self.tracks or self.since_detect + 1 >= self.detect_stride:
            return self._full(frame)
        self.since_detect += 1
        out, tracks = [], []
        for t in self.tracks:
            x0, y0, x1, y1 = t.box
            mx, my = int((x1 - x0) * ROI_MARGIN), int((y1 - y0) * ROI_MARGIN)
            rx0, ry0, rx1, ry1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
            self.stats["roi"] += 1
            found = self.encoder.detect(np.ascontiguousarray(frame[ry0:ry1, rx0:rx1]))
            boxes = [(b[0] + rx0, b[1] + ry0, b[2] + rx0, b[3] + ry0) for b, _ in found]
            if not boxes:
                continue  # turned away or hidden here: unknown in this frame, re-detect next frame
            box = max(boxes, key=lambda b: _iou(b, t.box))
            if _iou(box, t.box) < 0.2:
                continue
            obs, nt = self._embed(frame, box, t, "tracked")
            out.append(obs)
            tracks.append(nt)
        if len(tracks) < len(self.tracks):
            self.since_detect = 10**9  # a track was lost: full detection on the next frame
        self.tracks = tracks
        return out

    def _full(self, frame: np.ndarray) -> list[Observation]:
        self.stats["detect"] += 1
        self.since_detect = 0
        out, tracks = [], []
        for box, _ in self.encoder.detect(np.ascontiguousarray(frame)):
            prev = max(self.tracks, key=lambda t: _iou(t.box, box), default=None)
            prev = prev if prev is not None and _iou(prev.box, box) > 0.5 else None
            obs, nt = self._embed(frame, tuple(int(v) for v in box), prev, "detected")
            out.append(obs)
            tracks.append(nt)
        self.tracks = tracks
        return out


@dataclass
class FrameObserver:
    """Per-frame embed() for encoders that cannot be tracked; an unchanged frame reuses the last result."""

    encoder: Any
    reuse_tol: float = 0.5
    _last: np.ndarray | None = None
    _obs: list[Observation] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"detect": 0, "reuse": 0})

    def observe(self, frame: np.ndarray) -> list[Observation]:
        small = cv2.resize(frame, (64, max(1, round(64 * frame.shape[0] / frame.shape[1]))), interpolation=cv2.INTER_AREA).astype(np.float32)
        if self._last is not None and self._last.shape == small.shape and float(np.abs(small - self._last).mean()) < self.reuse_tol:
            self.stats["reuse"] += 1
            return [Observation(o.box, o.vector, "reused") for o in self._obs]
        self.stats["detect"] += 1
        dets: list[Detection] = self.encoder.embed(frame)
        self._last, self._obs = small, [Observation(tuple(int(v) for v in d.box), d.vector, "detected") for d in dets]
        return list(self._obs)
