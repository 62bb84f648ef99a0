"""Face performance from dlib's 68 landmarks: a generic 3D head turned in small angles, lids, gaze, smile, breath.

Everything here works in *canvas* pixels (the working copy of the still) and is computed once per shot
(:func:`find_faces`, :class:`FaceRig`); per frame only cheap array arithmetic on a coarse grid remains.

- Head turns (yaw / pitch / roll of a few degrees): the face is given a generic 3D shape fitted to its
  landmarks (a soft ellipsoid over the head, a ridge for the nose); each point is rotated in 3D and
  projected back orthographically. The displacement falls off smoothly beyond the head's outline into
  hair, neck and background (weight 1 inside, 0 at 1.5 head radii), and its depth term has zero slope
  at the outline, so the warp cannot fold, tear or leave a seam.
- Blinks close the upper lid over the eye: the lid skin above the eye is stretched down to a closing
  line (the lashes travel with it) while the eyeball below keeps its place; no vertical squash.
- Gaze moves the iris inside the eye opening; a smile pulls the mouth corners out and up (a relax
  lets them settle in and down); a breath lifts shoulders and chest, the head riding on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # left / right as seen in the frame
MAX_DEGREES = 20.0


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    from ...encoders.dlib_face import models_dir

    path = models_dir() / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():  # pragma: no cover - shipped by face-recognition-models
        raise FileNotFoundError(f"dlib 68-point landmark model missing: {path} (reinstall face-recognition-models)")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def detect_landmarks(rgb: np.ndarray, max_faces: int = 4) -> list[np.ndarray]:
    """68×2 landmark arrays (x, y in ``rgb`` pixels) of the largest frontal faces, largest first."""
    dlib, detector, predictor = _dlib_models()
    h, w = rgb.shape[:2]
    scale = min(1.0, 720.0 / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    small = np.ascontiguousarray(small)
    rects = detector(small, 1 if min(small.shape[:2]) < 400 else 0)
    rects = sorted(rects, key=lambda r: -r.width() * r.height())[:max_faces]
    img = np.ascontiguousarray(rgb)
    out = []
    for r in rects:
        big = dlib.rectangle(int(r.left() / scale), int(r.top() / scale), int(r.right() / scale), int(r.bottom() / scale))
        shape = predictor(img, big)
        out.append(np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32))
    return out


def eye_aspect_ratio(pts: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (Soukupová & Čech): ~0.25–0.35 open, < 0.15 closed."""
    def ear(e: np.ndarray) -> float:
        return float((np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2.0 * np.linalg.norm(e[0] - e[3]) + 1e-9))
    return 0.5 * (ear(pts[LEFT_EYE]) + ear(pts[RIGHT_EYE]))


def head_yaw(pts: np.ndarray) -> float:
    """Nose-tip offset from the eyes' midpoint along the eye line, over the inter-ocular distance (+: right)."""
    le, re_ = pts[LEFT_EYE].mean(0), pts[RIGHT_EYE].mean(0)
    axis = re_ - le
    iod = float(np.linalg.norm(axis)) + 1e-9
    return float(np.dot(pts[30] - (le + re_) / 2.0, axis / iod) / iod)


def mouth_width(pts: np.ndarray) -> float:
    """Mouth-corner distance over the inter-ocular distance."""
    iod = float(np.linalg.norm(pts[RIGHT_EYE].mean(0) - pts[LEFT_EYE].mean(0))) + 1e-9
    return float(np.linalg.norm(pts[54] - pts[48]) / iod)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def window(u: np.ndarray, v: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """1 inside ``box`` shrunk by ``margin``, easing to 0 at its edges (so a field cut to the box has no seam)."""
    x0, y0, x1, y1 = box
    return (_smoothstep((u - x0) / margin)[None, :] * _smoothstep((x1 - u) / margin)[None, :]
            * _smoothstep((v - y0) / margin)[:, None] * _smoothstep((y1 - v) / margin)[:, None]).astype(np.float32)


@dataclass
class _Eye:
    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 in canvas pixels
    cx: float
    cy: float
    ex: np.ndarray  # unit vector along the eye (corner to corner)
    ey: np.ndarray  # unit vector down, perpendicular
    x: np.ndarray  # ROI pixel coordinates in the eye's frame
    y: np.ndarray
    y_up: np.ndarray
    y_lo: np.ndarray
    y_top: np.ndarray
    y_c: np.ndarray
    inside: np.ndarray
    hw: float
    height: float


class FaceRig:
    """One face's precomputed geometry and its displacement fields."""

    def __init__(self, pts: np.ndarray, canvas_shape: tuple[int, int]) -> None:
        self.pts = pts.astype(np.float32)
        H, W = canvas_shape[:2]
        le, re_ = pts[LEFT_EYE].mean(0), pts[RIGHT_EYE].mean(0)
        axis = re_ - le
        self.iod = float(np.linalg.norm(axis))
        self.roll0 = math.atan2(float(axis[1]), float(axis[0]))
        c, s = math.cos(self.roll0), math.sin(self.roll0)
        self.ex, self.ey = np.array([c, s], np.float32), np.array([-s, c], np.float32)
        eye_mid = (le + re_) / 2.0
        chin = pts[8]
        jaw_w = float(np.linalg.norm(pts[16] - pts[0]))
        down = float(np.dot(chin - eye_mid, self.ey))  # eyes to chin
        self.a = 0.5 * jaw_w * 1.12  # head half-width (cheeks and a little hair)
        self.b = down * 1.08  # head half-height, centred on the eyes' line: forehead and hair above, chin below
        self.centre = eye_mid.astype(np.float32)
        self.depth = 0.9 * self.a
        nose_tip, bridge = pts[30], pts[27]
        self.nose = self._local(np.array([nose_tip[0]]), np.array([(bridge[1] + nose_tip[1]) / 2]))
        self.nose_sx = 0.32 * self.iod
        self.nose_sy = 0.5 * float(np.linalg.norm(nose_tip - bridge)) + 0.15 * self.iod
        self.nose_z = 0.32 * self.iod
        self.chin = self._local(np.array([chin[0]]), np.array([chin[1]]))
        self.mouth_c = (pts[48] + pts[54]) / 2.0
        self.mouth_w = float(np.linalg.norm(pts[54] - pts[48]))
        self.corners = [pts[48].astype(np.float32), pts[54].astype(np.float32)]
        self.eyes = [self._eye(pts[LEFT_EYE], W, H), self._eye(pts[RIGHT_EYE], W, H)]
        # where the fields act (canvas px); :func:`window` brings them to zero smoothly at its edges
        cx, cy = float(self.centre[0]), float(self.centre[1])
        self.box = (cx - 5.0 * self.a, cy - 3.5 * self.b, cx + 5.0 * self.a, float(H) + 8.0 * self.b)
        self.margin = 1.2 * self.a

    # -- geometry -------------------------------------------------------------------------------------------

    def _local(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du, dv = u - np.float32(self.centre[0]), v - np.float32(self.centre[1])
        e0, e1, f0, f1 = (np.float32(x) for x in (*self.ex, *self.ey))
        return du * e0 + dv * e1, du * f0 + dv * f1

    def _eye(self, e: np.ndarray, W: int, H: int) -> _Eye:
        ex = (e[3] - e[0]) / (np.linalg.norm(e[3] - e[0]) + 1e-9)
        ey = np.array([-ex[1], ex[0]], np.float32)
        centre = (e[0] + e[3]) / 2.0
        hw = float(np.linalg.norm(e[3] - e[0])) / 2.0
        loc = lambda p: (float(np.dot(p - centre, ex)), float(np.dot(p - centre, ey)))  # noqa: E731
        h_up = max(1.0, -(loc(e[1])[1] + loc(e[2])[1]) / 2.0)
        h_lo = max(1.0, (loc(e[4])[1] + loc(e[5])[1]) / 2.0)
        height = h_up + h_lo
        pad_x, top, bottom = 0.45 * hw + 2, h_up + 1.9 * height + 3, h_lo + 0.6 * height + 3
        corners = [centre + sx * ex + sy * ey for sx in (-hw - pad_x, hw + pad_x) for sy in (-top, bottom)]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        x0, y0 = max(0, int(math.floor(min(xs)))), max(0, int(math.floor(min(ys))))
        x1, y1 = min(W, int(math.ceil(max(xs))) + 1), min(H, int(math.ceil(max(ys))) + 1)
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        x = (gx - centre[0]) * ex[0] + (gy - centre[1]) * ex[1]
        y = (gx - centre[0]) * ey[0] + (gy - centre[1]) * ey[1]
        u = x / hw
        prof = np.clip(1.0 - u * u, 0.0, 1.0)
        y_up, y_lo = -h_up * prof, h_lo * prof
        y_top = y_up - 1.8 * height * np.sqrt(prof)
        y_c = y_up + 0.95 * (y_lo - y_up)
        return _Eye((x0, y0, x1, y1), float(centre[0]), float(centre[1]), ex.astype(np.float32), ey, x, y,
                    y_up, y_lo, y_top, y_c, (np.abs(u) < 1.0), hw, height)

    # -- per-frame -------------------------------------------------------------------------------------------

    def eye_maps(self, closure: float, gaze: tuple[float, float]) -> list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]]:
        """Per eye: (roi, map_x, map_y) sampling the rest canvas for lids at ``closure`` and iris at ``gaze``."""
        out = []
        gx, gy = gaze
        for e in self.eyes:
            c = min(1.0, max(0.0, closure) + 0.3 * max(gy, 0.0))
            y_l = e.y_up + c * (e.y_c - e.y_up)
            ys = e.y.copy()
            xs = e.x.copy()
            # the iris and the white below the lid: moved with the gaze, fading to nothing at the lids' lines
            w_in = (np.clip((e.y_lo - e.y) / 2.0, 0.0, 1.0) * np.clip((e.y - y_l) / 1.5 + 1.0, 0.0, 1.0)
                    * np.clip(1.0 - (e.x / e.hw) ** 2, 0.0, 1.0) ** 2)
            xs -= np.float32(0.3 * e.hw * gx) * w_in
            ys -= np.float32(0.18 * e.height * gy) * w_in
            if c > 0.0:
                # the lash line (a thin band above the upper lid's landmarks) travels down unstretched; the lid
                # skin above it stretches to follow
                lash = 0.22 * e.height * np.sqrt(np.clip(1.0 - (e.x / e.hw) ** 2, 0.0, 1.0))
                lid = (e.y >= e.y_top) & (e.y < y_l) & e.inside
                in_lash = e.y >= y_l - lash
                span = np.maximum(y_l - lash - e.y_top, 1e-3)
                stretched = e.y_top + (e.y - e.y_top) * (e.y_up - lash - e.y_top) / span
                moved = np.where(in_lash, e.y - (y_l - e.y_up), stretched)
                ys = np.where(lid, moved, ys)
                xs = np.where(lid, e.x, xs)
            mx = e.cx + xs * e.ex[0] + ys * e.ey[0]
            my = e.cy + xs * e.ex[1] + ys * e.ey[1]
            out.append((e.roi, mx.astype(np.float32), my.astype(np.float32)))
        return out

    def displacement(self, u: np.ndarray, v: np.ndarray, yaw: float, pitch: float, roll: float, smile: float,
                     breath: float, sway: float) -> tuple[np.ndarray, np.ndarray]:
        """Forward displacement (canvas px) of rest points ``(u, v)``: head turn in degrees, smile in [-1, 1],
        breath (upward px of the chest) and sway (sideways px of the upper body)."""
        # beyond ~20 degrees a 2D warp of one photo folds (the far cheek would have to vanish): cap it
        yaw, pitch, roll = (max(-MAX_DEGREES, min(MAX_DEGREES, a)) for a in (yaw, pitch, roll))
        x, y = self._local(u, v)
        ny = y / self.b
        r2 = (x / self.a) ** 2 + ny ** 2
        z = self.depth * np.clip(1.0 - r2, 0.0, 1.0) ** 2
        z = z + self.nose_z * np.exp(-((x - self.nose[0]) / self.nose_sx) ** 2 - ((y - self.nose[1]) / self.nose_sy) ** 2)
        w = 1.0 - _smoothstep((np.sqrt(r2) - 0.95) / 0.55)
        dx = np.zeros_like(x)
        dy = np.zeros_like(y)
        if yaw:
            t = math.radians(yaw)
            dx += (x * (math.cos(t) - 1.0) + z * math.sin(t)) * w
        if pitch:
            t = math.radians(pitch)
            dy += ((y - self.chin[1]) * (math.cos(t) - 1.0) + z * math.sin(t)) * w
        if roll:  # about the chin: the head leans on the neck
            t = math.radians(roll)
            px, py = x - self.chin[0], y - self.chin[1]
            dx += (px * (math.cos(t) - 1.0) - py * math.sin(t)) * w
            dy += (px * math.sin(t) + py * (math.cos(t) - 1.0)) * w
        if breath or sway:
            body = np.exp(-(x / (1.7 * self.a)) ** 2 - ((y - 2.4 * self.b) / (1.5 * self.b)) ** 2)
            lift = np.maximum(body, 0.45 * w)  # the head rides on the shoulders
            dy -= breath * lift
            lean = np.exp(-(x / (2.4 * self.a)) ** 2 - ((y - 1.8 * self.b) / (3.2 * self.b)) ** 2)
            dx += sway * np.maximum(lean, 0.8 * w * lean.max())
        # back to canvas axes
        cu = dx * self.ex[0] + dy * self.ey[0]
        cv = dx * self.ex[1] + dy * self.ey[1]
        if smile:
            out_k, up_k = (0.09, 0.05) if smile > 0 else (0.04, 0.05)
            s2 = 2.0 * (0.33 * self.mouth_w) ** 2
            up = -self.ey
            for corner in self.corners:
                outward = (corner - self.mouth_c) / (np.linalg.norm(corner - self.mouth_c) + 1e-9)
                g = np.exp(-((u - corner[0]) ** 2 + (v - corner[1]) ** 2) / s2) * (smile * self.mouth_w)
                cu += g * (out_k * outward[0] + up_k * up[0])
                cv += g * (out_k * outward[1] + up_k * up[1])
        return cu.astype(np.float32), cv.astype(np.float32)


def find_faces(canvas: np.ndarray, max_faces: int = 4) -> list[FaceRig]:
    """Rigs for the faces dlib finds in ``canvas`` (largest first); [] when none (or dlib is missing)."""
    try:
        pts = detect_landmarks(canvas, max_faces)
    except ImportError:  # pragma: no cover - dlib is a dependency
        return []
    return [FaceRig(p, canvas.shape) for p in pts]
