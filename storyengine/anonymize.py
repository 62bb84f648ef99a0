"""Bystanders: make every face that was not cast unrecognisable, in every frame of a take.

Applied to a freshly generated take before it is signed, cached and checked
(:func:`storyengine.shots.write_take`). How, per take:

1. **Keyframes.** Every ``stride`` frames (and on the last frame) the face encoder's detector runs
   on the whole frame (in a second thread, ``DETECT_THREAD``, while the back-end makes the next
   frames). A face followed from the previous keyframe whose aligned chip looks the same
   (``REUSE_STEP``, ``REUSE_DRIFT``; a kept face at most ``refresh`` keyframes) keeps its identity; every other
   face is embedded (one batched forward pass). dlib's descriptor (~100 ms a face) is the cost this saves.
2. **Assignment.** Faces are assigned to the shot's kept characters with the checker's own
   Hungarian assignment (:func:`storyengine.consistency._assign`, one face per character) and
   scored against their registered vectors. A face is *kept* only when it is assigned *confidently*:
   its similarity reaches the character's bound, and no other face in the frame comes within
   ``cohort_margin`` of it for that character (a look-alike in the crowd makes both uncertain).
   Every other face is a bystander. A face that was assigned but not confidently is anonymised
   too, and its similarity is handed to the checker as drift for that character
   (:func:`checker_scores`): blurring never hides drift from the checker.
3. **Tracking.** Frames between keyframes are buffered (at most ``stride``); each face is followed
   from one keyframe to the next (box overlap), its box interpolated in between, a face that
   appears is anonymised back to the previous keyframe, and one the detector misses is held at
   its last box for ``hold`` more keyframes, so a face is covered in every frame it is visible.
4. **Anonymisation.** The face's box, padded, is pixelated and blurred, and blended in through a
   feathered elliptical mask (no hard edge). Kept faces are subtracted from that mask (a character
   overlapping a bystander is never touched): their padded box is exactly 0 in the mask.

The report (:class:`AnonymizeReport`) says how many bystander faces were anonymised and in which
frames; it goes into the take's cache entry, its C2PA manifest and the checker's findings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from .consistency import Reference, _assign
from .encoders.base import l2n
from .tracking import Observation, _crop, _iou, _mad, can_batch, chip_signature

VERSION = 2  # part of the take cache key: bump when the anonymised pixels change for the same inputs
# A followed face keeps its identity from one keyframe to the next (no new embedding) only while its aligned chip
# looks the same (tracking.chip_signature, mean absolute difference 0-1). Calibration on the 2-day demo's six takes
# (each face found in every frame and aligned): the same face from one keyframe to the next (6 frames) 0.004-0.042, from
# the keyframe it was last embedded in up to 0.10 (a slow zoom over 4 s); a different person in its place
# 0.126-0.235 (Grace Hopper vs the planted impostor 0.126, the character vs the impostor 0.20).
REUSE_STEP = 0.06  # vs the previous keyframe's chip: above it, the face is embedded and assigned again
REUSE_DRIFT = 0.10  # vs the chip of its last embedding (a slow change accumulates until it crosses this)
DETECT_THREAD = True  # keyframe detection runs in a second thread (dlib's detector releases the GIL) while
# the back-end generates the next frames; False: in line (same faces, same pixels)
_DETECT_LOCK = threading.Lock()  # the shared bystander detector (_dlib) runs one frame at a time: dlib's detectors
# are not documented as safe for concurrent calls, and takes may be written from several threads
MODES = ("none", "bystanders", "all-but")
METHODS = ("pixelate", "blur")
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class AnonymizeOptions:
    stride: int = 6  # a full detection every this many frames; faces interpolated in between
    method: str = "pixelate"  # pixelate (then blur) | blur
    pad: float = 0.30  # the anonymised region extends the face box by this fraction on every side
    feather: float = 0.12  # width of the soft edge, as a fraction of the padded box's size
    keep_pad: float = 0.12  # a kept face's untouchable region: its box padded by this fraction
    hold: int = 1  # keyframes a face missed by the detector stays anonymised at its last box
    cohort_margin: float = 0.02  # another face this close to a character's best match makes it uncertain
    refresh: int = 12  # a followed kept face is embedded and assigned again at least every this many keyframes
    # (every followed face whenever its chip changed: REUSE_STEP, REUSE_DRIFT)
    detect_height: int = 360  # the detector upsamples a frame until it is this high (720: smaller faces, ~10x cost)

    def key(self) -> dict[str, Any]:
        return {"version": VERSION, **self.__dict__}


# ---------------------------------------------------------------- masks and pixels
def face_mask(shape: tuple[int, int], box: Box, keep: list[Box], opts: AnonymizeOptions) -> tuple[np.ndarray, Box]:
    """The feathered mask (0-1, float32) of one bystander face over its region; returns (mask, region).

    The region is ``box`` padded by ``opts.pad`` plus room for the feather (clipped to the frame); the
    mask is an ellipse over the padded box, fully 1 over the face's own ellipse and softened outwards over
    ``opts.feather`` of its size, times (1 - each kept face's soft mask), and exactly 0 over every kept
    face's box padded by ``opts.keep_pad``. The soft parts are computed at a quarter of the resolution
    (they are smooth anyway) and brought up with linear interpolation.
    """
    h, w = shape
    x0, y0, x1, y1 = box
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    px, py = int(round(bw * opts.pad)), int(round(bh * opts.pad))
    f = max(2.0, opts.feather * max(bw + 2 * px, bh + 2 * py))
    rx0, ry0 = max(0, x0 - px - int(2 * f)), max(0, y0 - py - int(2 * f))
    rx1, ry1 = min(w, x1 + px + int(2 * f)), min(h, y1 + py + int(2 * f))
    if rx1 <= rx0 or ry1 <= ry0:
        return np.zeros((0, 0), np.float32), (rx0, ry0, rx0, ry0)
    rw, rh = rx1 - rx0, ry1 - ry0
    q = 4 if min(rw, rh) >= 64 else 1  # work at 1/q resolution

    def ellipse(ax: float, ay: float) -> np.ndarray:
        m = np.zeros((max(1, rh // q), max(1, rw // q)), np.float32)
        cv2.ellipse(m, (int(round(((x0 + x1) / 2 - rx0) / q)), int(round(((y0 + y1) / 2 - ry0) / q))),
                    (max(1, int(ax / q)), max(1, int(ay / q))), 0, 0, 360, 1.0, -1)
        return m

    soft = cv2.GaussianBlur(ellipse(bw / 2 + px, bh / 2 + py), (0, 0), max(0.5, f / 2 / q))
    m = np.maximum(soft, ellipse(bw / 2, bh / 2))
    m = cv2.resize(m, (rw, rh), interpolation=cv2.INTER_LINEAR) if q > 1 else m
    for k in keep:
        kx0, ky0, kx1, ky1 = k
        kpx, kpy = int(round((kx1 - kx0) * opts.keep_pad)), int(round((ky1 - ky0) * opts.keep_pad))
        hx0, hy0, hx1, hy1 = kx0 - kpx - rx0, ky0 - kpy - ry0, kx1 + kpx - rx0, ky1 + kpy - ry0
        if hx1 <= 0 or hy1 <= 0 or hx0 >= rw or hy0 >= rh:
            continue
        kf = max(2.0, opts.feather * max(kx1 - kx0, ky1 - ky0))
        grown = np.zeros((max(1, rh // q), max(1, rw // q)), np.float32)
        cv2.rectangle(grown, (int((hx0 - kf) / q), int((hy0 - kf) / q)), (int((hx1 + kf) / q), int((hy1 + kf) / q)), 1.0, -1)
        ks = cv2.GaussianBlur(grown, (0, 0), max(0.5, kf / 2 / q))
        ks = cv2.resize(ks, (rw, rh), interpolation=cv2.INTER_LINEAR) if q > 1 else ks
        m = m * (1.0 - np.clip(ks, 0.0, 1.0))
        m[max(0, hy0):max(0, hy1), max(0, hx0):max(0, hx1)] = 0.0  # the kept face itself: exactly untouched
    return m, (rx0, ry0, rx1, ry1)


def obscure(region: np.ndarray, face_w: int, method: str) -> np.ndarray:
    """The unrecognisable version of a region: brought down to 4 blocks across the face, smoothed, and
    brought back up (``pixelate``: nearest-neighbour blocks, then blurred; ``blur``: bilinear).

    Calibrated on insightface's t1.jpg with dlib's descriptor (tests/test_anonymize.py): a face so
    treated is 0.81-0.88 similar to its original (different people in that photo: 0.81-0.90; the
    same-person rule is 0.91), and in 5 of 6 faces closer to someone else's face than to its own.
    A lighter blur (sigma = width / 10) left faces at 0.89, too close to call.
    """
    h, w = region.shape[:2]
    block = max(2, face_w // 4)
    small = cv2.resize(region, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    if method == "pixelate":  # the blocks drawn at a quarter of the size (where the blur runs), not full size
        s4 = cv2.resize(small, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_NEAREST)
        s4 = _gauss(s4, max(0.5, face_w / 3 / 4))
        return cv2.resize(s4, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(_gauss(small, 0.8), (w, h), interpolation=cv2.INTER_LINEAR)


def _gauss(img: np.ndarray, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur(img, (0, 0), sigma)`` of a uint8 image (the same 6-sigma kernel and reflected border) as
    one separable filter: OpenCV's bit-exact uint8 path costs ~2-4 ms for the ~40-tap kernels of a face here,
    this ~0.2 ms (values within 1 of it; 2 on a region smaller than the kernel)."""
    k = cv2.getGaussianKernel(int(round(sigma * 6 + 1)) | 1, sigma)
    return cv2.sepFilter2D(img, -1, k, k, borderType=cv2.BORDER_REFLECT_101)


def apply(frame: np.ndarray, faces: list[Box], keep: list[Box], opts: AnonymizeOptions) -> np.ndarray:
    """``frame`` with every box in ``faces`` anonymised (kept boxes untouched); a new array when anything changed."""
    if not faces:
        return frame
    out = frame.copy()
    for box in faces:
        m, (rx0, ry0, rx1, ry1) = face_mask(frame.shape[:2], box, keep, opts)
        if m.size == 0 or not m.any():
            continue
        roi = out[ry0:ry1, rx0:rx1]
        anon = obscure(roi, box[2] - box[0], opts.method)
        # roi * (1 - m) + anon * m, rounded, in one pass over the region only (where m is 0, exactly roi)
        out[ry0:ry1, rx0:rx1] = cv2.blendLinear(anon, np.ascontiguousarray(roi), m, 1.0 - m)
    return out


# ---------------------------------------------------------------- report
@dataclass
class AnonymizeReport:
    mode: str
    encoder: str = ""  # the face encoder that found and assigned the faces
    faces: int = 0  # distinct bystander faces (tracks) anonymised
    frames: list[int] = field(default_factory=list)  # frame indices where at least one face was anonymised
    kept: list[str] = field(default_factory=list)  # characters / consenting faces seen and left untouched
    uncertain: dict[str, dict[int, float]] = field(default_factory=dict)  # handle -> frame -> similarity

    def ranges(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for i in self.frames:
            if out and i == out[-1][1] + 1:
                out[-1] = (out[-1][0], i)
            else:
                out.append((i, i))
        return out

    def summary(self) -> str:
        if not self.faces:
            return "anonymised no bystander face (none found)"
        where = ", ".join(f"{a}–{b}" if a != b else f"{a}" for a, b in self.ranges())
        return f"anonymised {self.faces} bystander face(s) in frames {where}"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "encoder": self.encoder, "faces": self.faces, "frames": [list(r) for r in self.ranges()],
                "frame_count": len(self.frames), "kept": sorted(set(self.kept)),
                "uncertain": {h: {str(i): s for i, s in v.items()} for h, v in self.uncertain.items()},
                "summary": self.summary()}


# ---------------------------------------------------------------- the anonymiser
@dataclass
class _Face:
    box: Box
    track: int
    keep: str | None  # the kept handle, None for a bystander
    missed: int = 0
    uncertain: tuple[str, float] | None = None  # (handle, similarity) when assigned but not confidently
    vector: np.ndarray | None = None
    age: int = 0  # keyframes since this face was last embedded and assigned
    sig: np.ndarray | None = None  # chip signature in this keyframe
    sig0: np.ndarray | None = None  # chip signature where it was last embedded


class Anonymizer:
    """Stream a take's frames through :meth:`run`; read :attr:`report` afterwards.

    Args:
        encoder: a face encoder with ``detect`` (and ``align``/``embed_chips`` or ``embed_box``).
        keep: references of the faces to leave untouched (the shot's kept characters under this
            encoder, plus consenting faces from ``keep_faces``).
        opts: strides, strength and feather.
        mode: recorded in the report.
        detector: what finds the faces (default ``encoder``); :func:`for_take` passes :class:`SmallFaces`,
            since bystanders are often small and far away.
    """

    def __init__(self, encoder: Any, keep: list[Reference], opts: AnonymizeOptions | None = None, mode: str = "bystanders",
                 detector: Any = None):
        self.encoder, self.keep, self.opts = encoder, keep, opts or AnonymizeOptions()
        self.detector = detector or encoder
        self.report = AnonymizeReport(mode, getattr(encoder, "name", ""))
        self._tracks = 0
        self._seen: dict[int, np.ndarray] = {}  # bystander track -> its first vector
        self.work = {"detections": 0, "embedded": 0, "reused": 0}  # keyframe detections; faces embedded / not

    # -- keyframes
    def _vectors(self, frame: np.ndarray, boxes: list[Box], chips: list[np.ndarray | None] | None = None) -> list[np.ndarray]:
        if not boxes:
            return []
        if can_batch(self.encoder):
            chips = chips or [None] * len(boxes)
            return list(self.encoder.embed_chips([c if c is not None else self.encoder.align(frame, b)
                                                  for b, c in zip(boxes, chips)]))
        return [self.encoder.embed_box(frame, b) for b in boxes]

    def _signature(self, frame: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray | None]:
        """(signature, aligned chip) of a face: its aligned chip when the encoder aligns, else a grey crop."""
        if can_batch(self.encoder):
            chip = self.encoder.align(frame, box)
            return chip_signature(chip), chip
        return chip_signature(_crop(frame, box)), None

    def classify(self, frame: np.ndarray, faces: list[_Face], claimed: set[str] = frozenset(),
                 chips: list[np.ndarray | None] | None = None) -> None:
        """Embed ``faces`` (their aligned ``chips`` when known) and assign them to the kept references not
        ``claimed`` already (in place)."""
        vecs = self._vectors(frame, [f.box for f in faces], chips)
        self.work["embedded"] += len(vecs)
        obs = [Observation(f.box, l2n(v), "detected") for f, v in zip(faces, vecs)]
        keep = [r for r in self.keep if r.handle not in claimed]
        assigned = _assign(keep, obs, largest=False) if keep and obs else {}
        by_obs = {id(o): (h, s) for h, (s, o) in assigned.items()}
        refs = {r.handle: r for r in keep}
        for f, o in zip(faces, obs):
            f.vector, f.age, f.sig0 = o.vector, 0, f.sig
            h, s = by_obs.get(id(o), (None, None))
            if h is None:
                continue
            r = refs[h]
            rivals = [r.similarity(x.vector) for x in obs if x is not o]
            if s >= r.bound and all(s - x >= self.opts.cohort_margin for x in rivals):
                f.keep = h
            else:
                f.uncertain = (h, round(float(s), 5))

    def detect(self, frame: np.ndarray) -> list[tuple[Box, float]]:
        self.work["detections"] += 1
        with _DETECT_LOCK:
            return self.detector.detect(np.ascontiguousarray(frame))

    def keyframe(self, frame: np.ndarray, prev: list[_Face], found: list[tuple[Box, float]] | None = None) -> list[_Face]:
        """Every face of a keyframe: found (``found``: the detector's answer on ``frame`` when already known),
        linked to the previous keyframe's faces (box overlap), identified (a followed face keeps its identity
        while its aligned chip looks the same, REUSE_STEP and REUSE_DRIFT, for at most ``refresh`` keyframes;
        the rest are embedded and assigned), plus the faces the detector missed, held for ``hold`` keyframes."""
        found = self.detect(frame) if found is None else found
        cur = [_Face(tuple(int(v) for v in b), -1, None) for b, _ in found]
        pairs = sorted(((_iou(_grow(p.box, 0.5), _grow(c.box, 0.5)), i, j) for i, p in enumerate(prev)
                        for j, c in enumerate(cur)), reverse=True)
        used_p: set[int] = set()
        linked: dict[int, int] = {}
        for iou, i, j in pairs:
            if iou >= 0.1 and i not in used_p and j not in linked:
                used_p.add(i)
                linked[j] = i
        fresh, chips = [], []
        for j, c in enumerate(cur):
            p = prev[linked[j]] if j in linked else None
            c.sig, chip = self._signature(frame, c.box)
            # the cap is for kept faces (left untouched on the strength of an old embedding); an anonymised face
            # stays anonymised whatever its vector, and is embedded again when its chip changes
            capped = p is not None and p.keep is not None and p.age + 1 >= self.opts.refresh
            if p is not None and p.missed == 0 and not capped and p.sig is not None \
                    and p.sig0 is not None and _mad(c.sig, p.sig) < REUSE_STEP and _mad(c.sig, p.sig0) < REUSE_DRIFT:
                c.keep, c.uncertain, c.vector, c.age, c.sig0 = p.keep, p.uncertain, p.vector, p.age + 1, p.sig0
                self.work["reused"] += 1
            else:
                fresh.append(c)
                chips.append(chip)
        fresh_ids = {id(c) for c in fresh}
        self.classify(frame, fresh, {c.keep for c in cur if c.keep is not None and id(c) not in fresh_ids}, chips)
        for j, c in enumerate(cur):  # linked faces first: their tracks are taken in this frame
            if j in linked:
                c.track = prev[linked[j]].track
        for j, c in enumerate(cur):
            if j not in linked:  # two faces in one frame are two people, however alike their vectors
                c.track = self._identity(c, taken={f.track for f in cur if f.track >= 0})
        held = [_Face(p.box, p.track, p.keep, p.missed + 1, p.uncertain, p.vector, p.age, p.sig, p.sig0) for i, p in enumerate(prev)
                if i not in used_p and p.keep is None and p.missed < self.opts.hold]
        return cur + held

    def _identity(self, face: _Face, taken: set[int] = frozenset()) -> int:
        """A new track's id: that of a bystander seen before in this take when the vectors say it is the same
        person (it was lost for a while), else a new one; so ``faces`` counts people, not track breaks. Tracks
        in ``taken`` belong to other faces of the same frame and are never reused."""
        if face.keep is None and face.vector is not None:
            bound = getattr(self.encoder, "same_bound", 1.0)
            best = max(((t, v) for t, v in self._seen.items() if t not in taken),
                       key=lambda kv: float(kv[1] @ face.vector), default=None)
            if best is not None and float(best[1] @ face.vector) >= bound:
                return best[0]
        self._tracks += 1
        if face.keep is None and face.vector is not None:
            self._seen[self._tracks - 1] = face.vector
        return self._tracks - 1

    # -- frames
    def _emit(self, index: int, frame: np.ndarray, faces: list[_Face], seen: set[int]) -> np.ndarray:
        bys = [f for f in faces if f.keep is None]
        keep = [f.box for f in faces if f.keep is not None]
        self.report.kept.extend(f.keep for f in faces if f.keep is not None)
        if bys:
            self.report.frames.append(index)
            seen.update(f.track for f in bys)
            for f in bys:
                if f.uncertain is not None:
                    self.report.uncertain.setdefault(f.uncertain[0], {})[index] = f.uncertain[1]
        return apply(frame, [f.box for f in bys], keep, self.opts)

    def _between(self, a: list[_Face], b: list[_Face], t: float) -> list[_Face]:
        """Faces at fraction ``t`` of the way from keyframe ``a`` to keyframe ``b``."""
        bt = {f.track: f for f in b}
        at = {f.track: f for f in a}
        out = []
        for f in a:
            g = bt.get(f.track)
            if g is None:
                out.append(f)  # left or lost: held where it was last seen (padded)
            else:
                box = tuple(int(round(p + (q - p) * t)) for p, q in zip(f.box, g.box))
                # the union with a little slack: a face moves between keyframes, never a straight line. Kept
                # in between only when kept at both ends: a face that stopped (or started) being the
                # character changed somewhere in this span, so the whole span is anonymised
                keep = f.keep if g.keep == f.keep else None
                out.append(_Face(_grow(box, 0.1), f.track, keep, 0, f.uncertain or g.uncertain))
        out += [g for g in b if g.track not in at]  # appeared: covered back to the previous keyframe
        return out

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The anonymised frames, in order.

        Every ``stride``-th frame (and the last) is a keyframe. Its detection is started as soon as it arrives
        (in a second thread with ``DETECT_THREAD``) and its faces are identified when the *next* keyframe
        arrives, so the detector runs while the back-end makes the frames in between; the frames of a span
        are anonymised once both of its keyframes are known. At most ``2 * stride + 1`` frames are held.
        """
        stride = max(1, self.opts.stride)
        seen: set[int] = set()
        pool = None
        if DETECT_THREAD:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(1, thread_name_prefix="anonymize-detect")
        prev: list[_Face] | None = None  # faces of the last identified keyframe, which is held[0]
        held: list[tuple[int, np.ndarray]] = []  # frames not yet emitted, from the last identified keyframe on
        waiting: tuple[int, np.ndarray, Any] | None = None  # the keyframe whose detection runs, not identified yet

        def start(i: int, frame: np.ndarray) -> tuple[int, np.ndarray, Any]:
            return i, frame, pool.submit(self.detect, frame) if pool is not None else self.detect(frame)

        def identify(key: tuple[int, np.ndarray, Any]) -> Iterator[np.ndarray]:
            nonlocal prev, held
            i, frame, found = key
            faces = self.keyframe(frame, prev or [], found.result() if pool is not None else found)
            if prev is not None:
                span = [f for j, f in held if j < i]
                yield from self._flush(span, held[0][0], prev, faces, i - held[0][0], seen)
                held = [(j, f) for j, f in held if j >= i]
            prev = faces

        try:
            last = -1
            for i, frame in enumerate(frames):
                held.append((i, frame))
                last = i
                if i % stride:
                    continue
                key = start(i, frame)
                if waiting is not None:
                    yield from identify(waiting)
                waiting = key
            if waiting is not None:
                if last != waiting[0]:  # the last frame is a keyframe too
                    key = start(last, held[-1][1])
                    yield from identify(waiting)
                    waiting = key
                yield from identify(waiting)
                yield self._emit(held[0][0], held[0][1], prev or [], seen)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.report.faces = len(seen)

    def _flush(self, buf: list[np.ndarray], base: int, a: list[_Face], b: list[_Face], span: int,
               seen: set[int]) -> Iterator[np.ndarray]:
        for k, frame in enumerate(buf):
            faces = a if k == 0 else self._between(a, b, k / span)
            yield self._emit(base + k, frame, faces, seen)


def _grow(box: Box, frac: float) -> Box:
    x0, y0, x1, y1 = box
    dx, dy = int(round((x1 - x0) * frac / 2)), int(round((y1 - y0) * frac / 2))
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


# ---------------------------------------------------------------- from a plan
def _dlib(small: bool = False, target: int = 360) -> Any:
    """dlib's face encoder; ``small``: the bystander detector (:class:`SmallFaces` for ``target``)."""
    from .encoders.dlib_face import DlibFaceEncoder

    key = (small, target if small else 0)
    if key not in _DLIB:
        _DLIB[key] = SmallFaces(target) if small else DlibFaceEncoder()
    return _DLIB[key]


_DLIB: dict[tuple[bool, int], Any] = {}


class SmallFaces:
    """dlib's HOG detector, upsampled until the frame is at least ``target`` px high (its window is 80 px:
    faces from ~22 % of the height at 360, ~11 % at 720), faces from 20 px. 360 costs ~50 ms a detection
    at 640x360 here; 720 (setting ``anonymize_small_faces``) about ten times that."""

    name, version, modality = "dlib-face", "resnet_v1", "face"

    def __init__(self, target: int = 360) -> None:
        self.target = target
        self._by_up: dict[int, Any] = {}

    def _enc(self, up: int) -> Any:
        from .encoders.dlib_face import DlibFaceEncoder

        if up not in self._by_up:
            self._by_up[up] = DlibFaceEncoder(upsample=up, min_face=20)
        return self._by_up[up]

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        h, up = image.shape[0], 0
        while h * 2 ** up < self.target * 0.97 and up < 3:
            up += 1
        return self._enc(up).detect(image)

    def embed(self, image: np.ndarray) -> list[Any]:
        """Detections with vectors (tests and benchmarks look with the same eyes)."""
        from .encoders.base import Detection

        enc = self._enc(0)
        found = self.detect(image)
        vecs = enc.embed_chips([enc.align(image, b) for b, _ in found])
        return [Detection(box=b, vector=v, score=sc) for (b, sc), v in zip(found, vecs)]

    def __getattr__(self, item: str) -> Any:  # same_bound, different_mean, align, embed_box, ...
        return getattr(self._enc(0), item)


def faces_in_still(still: Any) -> list[Box]:
    """The faces dlib finds in a still (path or RGB array), left to right: what ``keep_faces`` indices count."""
    if not isinstance(still, np.ndarray):
        from .images import load_rgb

        still = load_rgb(still, what="still")
    return sorted((tuple(int(v) for v in b) for b, _ in _dlib(small=True).detect(still)), key=lambda b: (b[0], b[1]))


def match_face(found: list[Box], item: int | list[int]) -> Box | None:
    """The face ``item`` names (an index into ``found``, or a box overlapping one by IoU >= 0.3), else None."""
    if isinstance(item, int):
        return found[item] if item < len(found) else None
    best = max(found, key=lambda b: _iou(b, tuple(item)), default=None)
    return best if best is not None and _iou(best, tuple(item)) >= 0.3 else None


def options_from(settings: Any) -> AnonymizeOptions:
    method = getattr(settings, "anonymize_method", "pixelate")
    if method not in METHODS:
        from .errors import StoryEngineError

        raise StoryEngineError(f"setting 'anonymize_method' must be one of {', '.join(METHODS)} but is {method!r}")
    return AnonymizeOptions(stride=max(1, int(getattr(settings, "anonymize_stride", 6))), method=method,
                            detect_height=720 if getattr(settings, "anonymize_small_faces", False) else 360)


def kept_handles(plan: Any) -> set[str]:
    """The shot's characters left recognisable: all of them (bystanders), or those listed in all-but."""
    shot = {c.handle for c in plan.characters}
    return shot & set(plan.anonymize_keep) if plan.anonymize == "all-but" else shot


def key_inputs(plan: Any, settings: Any) -> dict[str, Any] | None:
    """What about anonymisation changes a take's frames (None when it is off): part of the take cache key."""
    if plan.anonymize == "none":
        return None
    return {"mode": plan.anonymize, "keep": sorted(kept_handles(plan)), "keep_faces": [list(b) for b in plan.keep_faces],
            "options": options_from(settings).key(), "encoders": list(getattr(settings, "person_encoders", ()))}


def for_take(plan: Any, refs: list[Reference], settings: Any) -> Anonymizer | None:
    """The anonymiser of a take of ``plan`` (None when ``anonymize: none``); ``refs`` are the shot's references."""
    if plan.anonymize == "none":
        return None
    from .tracking import can_track

    keep = [r for r in refs if r.handle in kept_handles(plan) and can_track(r.encoder)]
    enc = keep[0].encoder if keep else _dlib()
    keep = [r for r in keep if r.encoder.key() == enc.key()]
    if plan.keep_faces:
        from .images import load_rgb

        still = load_rgb(plan.still, what="still")
        floor = (enc.same_bound + enc.different_mean) / 2.0  # one photo: more likely this face than anyone else
        for k, box in enumerate(plan.keep_faces):
            v = l2n(enc.embed_box(still, tuple(box)))
            keep.append(Reference(f"keep_faces[{k}]", enc, v[None], v, floor, "keep_faces (one still)"))
    opts = options_from(settings)
    return Anonymizer(enc, keep, opts, plan.anonymize, detector=_dlib(small=True, target=opts.detect_height))


def uncertain_as_drift(scores: list[Any], report: dict[str, Any], refs: list[Reference]) -> tuple[list[Any], int]:
    """Checker scores where a character was *not found* because its uncertain face was anonymised, replaced by
    that face's similarity (drifted when below the bound); returns (scores, how many were replaced).

    ``report`` is :meth:`AnonymizeReport.to_dict`; only scores of the encoder that assigned the faces change.
    """
    bounds = {(r.handle, r.encoder.name): r.bound for r in refs}
    uncertain = report.get("uncertain") or {}
    out, n = [], 0
    for s in scores:
        sim = (uncertain.get(s.character) or {}).get(str(s.index))
        if s.similarity is None and sim is not None and s.encoder == report.get("encoder") and (s.character, s.encoder) in bounds:
            s = s.model_copy(update={"similarity": sim, "drifted": sim < bounds[(s.character, s.encoder)]})
            n += 1
        out.append(s)
    return out, n


def checked_with(res: Any, report: dict[str, Any] | None, refs: list[Reference], min_frames: int, settings: Any) -> tuple[Any, list[Any]]:
    """The checker's (verdict, scores) on an anonymised take: uncertain faces count as drift
    (:func:`uncertain_as_drift`, decided again with the checker's own rules) and the anonymisation
    is a finding of its own. Without a report, the check result as it is."""
    if not report:
        return res.verdict, res.scores
    from .consistency import SAMPLED_FRAMES, decide

    scores, changed = uncertain_as_drift(res.scores, report, refs)
    verdict = res.verdict
    if changed:
        v = res.verdict
        stride = max(1, settings.check_stride) if v.mode == "full" else max(1, -(-(res.num_frames - 1) // max(1, SAMPLED_FRAMES - 1)))
        verdict = decide(scores, refs, num_frames=res.num_frames, min_frames=min_frames, fps=res.fps, stride=stride,
                         unknown_run_limit=settings.unknown_run_limit, mode=v.mode, flicker=v.flicker)
    return verdict.model_copy(update={"findings": [*verdict.findings, report["summary"]]}), scores
