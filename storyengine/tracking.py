"""Full-mode observation: find faces (or subjects) in every frame without a full detection per frame.

A full-frame detection runs every ``detect_stride`` frames (and whenever a track is lost).
Between them each face is *tracked by local re-detection*: the encoder's own detector runs only
on a window around the face's last box (a few ms instead of a full frame). If the detector does
not fire there, the face is turned away or hidden in that frame: it is unknown, not drifted, and
the next frame gets a full detection.

Identity vectors (the expensive part: ~100 ms per face for dlib's ResNet) are computed only when
the face changed. Each found face is aligned the way the descriptor sees it (5 landmarks → the
150x150 chip), and its small grey signature is compared with the signature of the *last frame
that was actually embedded* for that track — not the previous frame, so a slow morph accumulates
until it crosses the threshold. Under ``reuse_tol`` (mean absolute difference, 0–1) the vector is
reused (``source="reused"``); a fresh embedding is forced at least every ``refresh_every``
frames regardless. The embeddings that remain are computed in batches of up to ``batch`` chips
(one forward pass), streaming: observations whose vector is pending are filled in when their
batch runs, at the latest on :meth:`FaceTracker.flush`. Batches run in a second thread
(``EMBED_THREAD``). dlib's descriptor holds the GIL, so for encoders that offer it
(``descriptor_worker``: dlib-face) that thread hands each batch to a persistent worker *process*
(:mod:`storyengine.encoders.descriptor_worker`, ``EMBED_WORKER``) and waits on its pipe with the GIL
released: the descriptors run on the second core while this thread decodes, detects and aligns.

A frame whose full detection found no face is remembered as a small grey picture; in the next
frames only the 8x8-pixel cells of the 64 px wide grey frame that changed by ``EMPTY_TOL`` or
more, compared with that frame (so a slow change accumulates), are searched (grown by
``EMPTY_MARGIN`` cells; counted as ``empty_region``), and a frame where no cell changed is not
searched at all (``empty_skip``); a full detection runs at least every ``detect_stride`` frames
anyway. Never detect twice on an unchanged picture: a take with no detectable face costs one full
detection (with dlib's upsampled retry) per ``detect_stride`` frames and small searches where
something moved, instead of a full detection per frame.

Encoders with ``detect``/``embed_box`` but no ``align``/``embed_chips`` use a grey crop of the box
as the signature and are embedded one face at a time. Encoders without ``detect``/``embed_box``
(appearance encoders that search windows) are embedded per scored frame, reusing the previous
result when the whole frame is unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .encoders.base import Detection, Encoder

Box = tuple[int, int, int, int]
# Calibration (scripts/bench_checker.py, scripts/eval_checker.py, tests/test_consistency.py): the
# signature difference of the same face between frames (pan, rotation, JPEG, landmark jitter) is
# 0.003-0.03; a pasted face of someone else is 0.16-0.25; a morph adds ~0.007 per frame of 24.
REUSE_TOL = 0.02  # mean absolute difference (0-1) of 32x32 grey aligned chips under which a vector is reused
REFRESH_EVERY = 16  # a fresh embedding at least every this many frames per face, whatever the chips say (8 until
# speed pass 2: 16 halves the descriptors of a steady face; bench_checker agreement unchanged (0.0046, the same 13
# frames, 8 embeddings instead of 15), eval_checker full mode unchanged (59/60 and 60/60 flagged, 0/230 rejected))
EMBED_BATCH = 8  # chips per batched forward pass
WORKER_BATCH = 2  # ...when the descriptor worker computes them: small batches keep it busy while frames go on
# (a batched pass costs ~the same per chip; a big last batch would be waited for at the end of the clip)
MAX_IN_FLIGHT = 32  # chips handed to the embedding thread and not yet resolved (memory: ~67 kB each)
EMBED_THREAD = True  # batches run in a second thread, overlapping the detector (which releases the GIL)
EMBED_WORKER = True  # ...and that thread sends them to the descriptor worker process when the encoder has one
# (also off with STORYENGINE_DESCRIPTOR_WORKER=0)
_RESOLVE = threading.Lock()  # attach/resolve of pending embeddings across the two threads
SIG_SIZE = 32
CROP_REUSE_TOL = 3.0 / 255  # the grey-crop fallback (encoders without align): the previous, stricter rule
EMPTY_TOL = 6 / 255  # an 8x8 cell of the 64-wide grey frame (0-1) whose mean |difference| from the last frame
# where a full detection found nobody reaches this has changed: only the changed cells (grown by EMPTY_MARGIN
# cells) are searched, with the detector's own retry; a frame with no changed cell is not searched at all, and
# one whose changed part covers 60 % of it or more gets a full detection. A 60 px face appearing changes its
# cells by 19-32/255. The demo's blurred impostor takes (96 frames; the passing light changes whole frames):
# 32-33 full detections instead of 96, 55-61 frames not searched, 2-9 searched in part, 3.7x faster.
EMPTY_MARGIN = 1
EMPTY_W, EMPTY_CELL = 64, 8
ROI_MARGIN = 0.5  # the tracking window extends the last box by this fraction of its size on every side
ROI_FACE_PX = 110  # a tracked face is looked for in its window scaled so the face is about this high (dlib's
# HOG window is 80 px: a 240 px face found at 110 px costs ~1/5 of the pixels; the box is scaled back and the
# 5 landmarks that align the chip are found at full size, so the vector is the same)


@dataclass
class Observation:
    """One face/subject found in one frame, and how it was found."""

    box: Box
    vector: np.ndarray
    source: str  # detected | tracked | reused


@dataclass
class _Embedding:
    """One vector, computed now or pending in the current batch, and the observations that share it."""

    vector: np.ndarray | None = None
    chip: np.ndarray | None = None  # held only while pending
    waiting: list[Observation] = field(default_factory=list)

    def attach(self, obs: Observation) -> None:
        with _RESOLVE:  # a batch may resolve in the embedding thread meanwhile
            if self.vector is not None:
                obs.vector = self.vector
            else:
                self.waiting.append(obs)

    def resolve(self, v: np.ndarray) -> None:
        with _RESOLVE:
            self.vector, self.chip = v, None
            for o in self.waiting:
                o.vector = v
            self.waiting = []


@dataclass
class _Track:
    box: Box  # where the face is now (the tracking window and the association follow it)
    sig: np.ndarray  # signature of the last *embedded* frame of this face (not the previous frame)
    emb: _Embedding
    age: int  # frames since that embedding
    at: Box  # the box the embedded chip was aligned in


def chip_signature(chip: np.ndarray) -> np.ndarray:
    """Small grey version (0-1) of an aligned face chip or a face's box crop: what reuse decisions compare."""
    g = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (SIG_SIZE, SIG_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _crop(frame: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return frame[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean()) if a.shape == b.shape else float("inf")


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def can_track(encoder: Encoder) -> bool:
    return callable(getattr(encoder, "detect", None)) and callable(getattr(encoder, "embed_box", None)) \
        and getattr(encoder, "modality", "") == "face"


def can_batch(encoder: Encoder) -> bool:
    return callable(getattr(encoder, "align", None)) and callable(getattr(encoder, "embed_chips", None))


@dataclass
class FaceTracker:
    """Stateful per-clip observer for one face encoder (feed frames in order, then :meth:`flush`)."""

    encoder: Any
    detect_stride: int = 8
    reuse_tol: float | None = None  # None: REUSE_TOL for aligned chips, CROP_REUSE_TOL for grey crops
    refresh_every: int | None = None  # None: REFRESH_EVERY (read when the tracker is made)
    batch: int | None = None  # None: EMBED_BATCH (at most WORKER_BATCH with the descriptor worker)
    tracks: list[_Track] = field(default_factory=list)
    since_detect: int = 10**9
    stats: dict[str, int] = field(default_factory=lambda: {"detect": 0, "roi": 0, "embed": 0, "reuse": 0, "batches": 0,
                                                            "empty_skip": 0,
                                                                                  "empty_region": 0})
    _empty: np.ndarray | None = None  # small grey picture of the last fully detected frame that had no face
    _empty_age: int = 0  # frames since it
    _pending: list[_Embedding] = field(default_factory=list)
    _pool: Any = None  # the embedding thread (EMBED_THREAD), made on the first batch
    _futures: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._aligned = can_batch(self.encoder)
        if self.reuse_tol is None:
            self.reuse_tol = REUSE_TOL if self._aligned else CROP_REUSE_TOL
        self.refresh_every = max(1, self.refresh_every if self.refresh_every is not None else REFRESH_EVERY)
        explicit = self.batch is not None
        self.batch = max(1, self.batch if self.batch is not None else EMBED_BATCH)
        self._remote = False
        if self._aligned and EMBED_THREAD and EMBED_WORKER and getattr(self.encoder, "descriptor_worker", False):
            from .encoders import descriptor_worker

            self._remote = descriptor_worker.available()
            if self._remote:
                self.batch = self.batch if explicit else min(self.batch, WORKER_BATCH)
                descriptor_worker.prestart()  # the model loads on the other core while the first frames are decoded

    def _embed(self, frame: np.ndarray, box: Box, prev: _Track | None, source: str) -> tuple[Observation, _Track]:
        obs = Observation(box, None, source)  # type: ignore[arg-type]  # vector filled in now or by the batch
        if self._aligned:
            chip = self.encoder.align(frame, box)
            sig = chip_signature(chip)
            if prev is not None and prev.age + 1 < self.refresh_every and (
                    _mad(sig, prev.sig) < self.reuse_tol
                    # the detector's box only jittered (landmarks follow the box): look again where the vector was computed
                    or (box != prev.at and _iou(box, prev.at) > 0.8
                        and _mad(chip_signature(self.encoder.align(frame, prev.at)), prev.sig) < self.reuse_tol)):
                obs.source = "reused"
                self.stats["reuse"] += 1
                prev.emb.attach(obs)
                return obs, _Track(box, prev.sig, prev.emb, prev.age + 1, prev.at)
            emb = _Embedding(chip=chip)
            emb.attach(obs)
            self._pending.append(emb)
            self.stats["embed"] += 1
            if len(self._pending) >= self.batch:
                self._submit()
            return obs, _Track(box, sig, emb, 0, box)
        # grey-crop fallback: the crop where the vector was computed, looked at again (box jitter alone must
        # not force a recomputation)
        if prev is not None and prev.age + 1 < self.refresh_every and _iou(box, prev.at) > 0.8 and min(
                _mad(chip_signature(_crop(frame, prev.at)), prev.sig), _mad(chip_signature(_crop(frame, box)), prev.sig)) < self.reuse_tol:
            obs.source = "reused"
            self.stats["reuse"] += 1
            prev.emb.attach(obs)
            return obs, _Track(prev.at, prev.sig, prev.emb, prev.age + 1, prev.at)
        self.stats["embed"] += 1
        emb = _Embedding(vector=self.encoder.embed_box(frame, box))
        emb.attach(obs)
        return obs, _Track(box, chip_signature(_crop(frame, box)), emb, 0, box)

    def _submit(self) -> None:
        """Embed the pending chips (one batch): in the embedding thread when ``EMBED_THREAD``, else now.

        dlib's descriptor holds the GIL but its detector releases it, so a batch computed in a
        second thread overlaps with the detection of the next frames (the second core).
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.stats["batches"] += 1

        chips = [e.chip for e in pending]

        def run() -> None:
            vs = self.encoder.embed_chips(chips, worker=True) if self._remote else self.encoder.embed_chips(chips)
            for e, v in zip(pending, vs):
                e.resolve(v)

        if not EMBED_THREAD:
            run()
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storyengine-embed")
        self._futures.append((self._pool.submit(run), len(chips)))
        while self._futures and (self._futures[0][0].done() or sum(n for _, n in self._futures) > max(MAX_IN_FLIGHT, self.batch)):
            self._futures.pop(0)[0].result()  # memory stays bounded: at most MAX_IN_FLIGHT chips queued

    def flush(self) -> None:
        """Compute the pending embeddings and wait for every batch: each observation then holds its vector."""
        self._submit()
        futures, self._futures = self._futures, []
        try:
            for f, _ in futures:
                f.result()  # re-raises an embedding error here
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def observe(self, frame: np.ndarray) -> list[Observation]:
        """Observations of one frame; with batching their vectors may be filled in later (by :meth:`flush`)."""
        h, w = frame.shape[:2]
        if not self.tracks and self._empty is not None and self._empty_age + 1 < self.detect_stride:
            region = _changed_region(_empty_sig(frame), self._empty, w, h)
            if region is None or (region[2] - region[0]) * (region[3] - region[1]) < 0.6 * w * h:
                self._empty_age += 1
                if region is None:
                    self.stats["empty_skip"] += 1
                    return []  # the same picture in which the last full detection found nobody
                # only the part that changed can hold a face the last full detection did not see
                x0, y0, x1, y1 = region
                self.stats["empty_region"] += 1
                found = self.encoder.detect(np.ascontiguousarray(frame[y0:y1, x0:x1]))
                return self._start(frame, [(b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0) for b, _ in found]) if found else []
        if not self.tracks or self.since_detect + 1 >= self.detect_stride:
            return self._full(frame)
        self.since_detect += 1
        out, tracks = [], []
        for t in self.tracks:
            x0, y0, x1, y1 = t.box
            mx, my = int((x1 - x0) * ROI_MARGIN), int((y1 - y0) * ROI_MARGIN)
            rx0, ry0, rx1, ry1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
            self.stats["roi"] += 1
            boxes = self._detect_roi(frame[ry0:ry1, rx0:rx1], y1 - y0, rx0, ry0)
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

    def _detect_roi(self, roi: np.ndarray, face_h: int, rx0: int, ry0: int) -> list[Box]:
        """Faces in a tracking window (frame coordinates), found at a smaller scale when the face is large."""
        scale = ROI_FACE_PX / max(1, face_h)
        if scale < 0.8:
            small = cv2.resize(roi, (max(1, round(roi.shape[1] * scale)), max(1, round(roi.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
            found = self.encoder.detect(np.ascontiguousarray(small))
            if found:
                return [(int(b[0] / scale) + rx0, int(b[1] / scale) + ry0, int(b[2] / scale) + rx0, int(b[3] / scale) + ry0)
                        for b, _ in found]
        found = self.encoder.detect(np.ascontiguousarray(roi))  # at full size: small faces, or none found scaled down
        return [(b[0] + rx0, b[1] + ry0, b[2] + rx0, b[3] + ry0) for b, _ in found]

    def _full(self, frame: np.ndarray) -> list[Observation]:
        self.stats["detect"] += 1
        return self._start(frame, [box for box, _ in self.encoder.detect(np.ascontiguousarray(frame))])

    def _start(self, frame: np.ndarray, boxes: list[Box]) -> list[Observation]:
        """Observations and new tracks from the faces a (full or changed-region) detection found."""
        self.since_detect = 0
        out, tracks = [], []
        for box in boxes:
            prev = max(self.tracks, key=lambda t: _iou(t.box, box), default=None)
            prev = prev if prev is not None and _iou(prev.box, box) > 0.5 else None
            obs, nt = self._embed(frame, tuple(int(v) for v in box), prev, "detected")
            out.append(obs)
            tracks.append(nt)
        self.tracks = tracks
        self._empty, self._empty_age = (None, 0) if tracks else (_empty_sig(frame), 0)
        return out


def _empty_sig(frame: np.ndarray) -> np.ndarray:
    """The 64 px wide grey picture an empty-frame skip compares (0-1)."""
    h, w = frame.shape[:2]
    g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(g, (EMPTY_W, max(EMPTY_CELL, round(EMPTY_W * h / w))), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _changed_region(a: np.ndarray, b: np.ndarray, w: int, h: int) -> Box | None:
    """The part of a w x h frame whose 8x8 cells (of the small pictures ``a``, ``b``) changed by ``EMPTY_TOL`` or
    more, grown by ``EMPTY_MARGIN`` cells on every side; None when no cell changed (inf-safe: the whole frame)."""
    if a.shape != b.shape:
        return (0, 0, w, h)
    d = np.abs(a - b)
    ch, cw = max(1, d.shape[0] // EMPTY_CELL), max(1, d.shape[1] // EMPTY_CELL)
    cells = cv2.resize(d, (cw, ch), interpolation=cv2.INTER_AREA) >= EMPTY_TOL
    if not cells.any():
        return None
    ys, xs = np.nonzero(cells)
    sx, sy = w / cw, h / ch
    return (max(0, int((xs.min() - EMPTY_MARGIN) * sx)), max(0, int((ys.min() - EMPTY_MARGIN) * sy)),
            min(w, int(np.ceil((xs.max() + 1 + EMPTY_MARGIN) * sx))), min(h, int(np.ceil((ys.max() + 1 + EMPTY_MARGIN) * sy))))


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

    def flush(self) -> None:
        """Nothing is deferred here (the FaceTracker interface)."""


WINDOW_SIG_W = 160  # window signatures are cut from a grey copy of the frame this wide
WINDOW_SIG = 12  # ... and resized to this many pixels square
WINDOW_TOL = 1.0  # mean absolute grey difference (0-255) under which a window's vector is reused


@dataclass
class WindowObserver:
    """Full mode for window encoders (``windows`` + ``embed(image, only=...)``: the appearance fallback).

    Such an encoder describes a fixed grid of candidate windows per frame (27 at 640x360) and the
    checker keeps the one that matches the character best. Most windows do not change between
    frames (the subject breathes, blinks, turns its head in a part of the frame), so each window
    keeps the vector computed on the last frame it was described in, with a small grey signature of
    it; a window is described again when its signature differs from that one by ``reuse_tol``
    grey levels or more (so a slow change accumulates until it crosses), and at least every
    ``refresh_every`` frames. Only the changed windows are described (``embed(frame, only=...)``).
    Measured against describing every window of every frame on the demo's cat takes (640x360): 2.6-3.2x
    faster, best-window similarity within 0.0007, the same minima (tests/test_checker_speed.py checks
    the same drifted frames on a cat swapped for another animal).
    """

    encoder: Any
    reuse_tol: float = WINDOW_TOL
    refresh_every: int | None = None  # None: REFRESH_EVERY
    _cache: dict[Box, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict)  # box → (sig, vector, age)
    _size: tuple[int, int] | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"detect": 0, "reuse": 0, "windows": 0, "window_reuse": 0})

    def __post_init__(self) -> None:
        self.refresh_every = max(1, self.refresh_every if self.refresh_every is not None else REFRESH_EVERY)

    def observe(self, frame: np.ndarray) -> list[Observation]:
        h, w = frame.shape[:2]
        if self._size != (w, h):
            self._cache, self._size = {}, (w, h)
        boxes = self.encoder.windows(w, h)
        k = WINDOW_SIG_W / w
        grey = cv2.resize(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY),
                          (WINDOW_SIG_W, max(1, round(h * k))), interpolation=cv2.INTER_AREA).astype(np.float32)
        sigs, changed = {}, []
        for b in boxes:
            x0, y0 = int(b[0] * k), int(b[1] * k)
            x1, y1 = max(x0 + 1, int(round(b[2] * k))), max(y0 + 1, int(round(b[3] * k)))
            sig = cv2.resize(grey[y0:y1, x0:x1], (WINDOW_SIG, WINDOW_SIG), interpolation=cv2.INTER_AREA)
            sigs[b] = sig
            old = self._cache.get(b)
            if old is None or old[2] + 1 >= self.refresh_every or float(np.abs(sig - old[0]).mean()) >= self.reuse_tol:
                changed.append(b)
        fresh = {tuple(int(v) for v in d.box): d.vector for d in self.encoder.embed(frame, only=changed)} if changed else {}
        out = []
        for b in boxes:
            if b in fresh:
                self._cache[b] = (sigs[b], fresh[b], 0)
                out.append(Observation(b, fresh[b], "detected"))
            else:
                sig, v, age = self._cache[b]
                self._cache[b] = (sig, v, age + 1)
                out.append(Observation(b, v, "reused"))
        self.stats["detect" if changed else "reuse"] += 1
        self.stats["windows"] += len(fresh)
        self.stats["window_reuse"] += len(boxes) - len(fresh)
        return out

    def flush(self) -> None:
        """Nothing is deferred here (the FaceTracker interface)."""

