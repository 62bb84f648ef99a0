"""Evaluation clips from real faces that ship in installed packages, with known ground truth per frame.

Faces: the character is scikit-image's astronaut (Eileen Collins); other people are matplotlib's
Grace Hopper, insightface's Tom_Hanks_54745.png and the people of insightface's group photo t1.jpg.

Every clip is the character's portrait with a small camera move. Drift clips paste another
person's face over the character's (feathered ellipse, scaled to the character's face box) at
known frames, or morph toward another person by cross-fading the pasted face. Clean clips carry
the usual nuisances: small rotations, lighting changes, JPEG, partial occlusion, a turned/hidden
head. ``truth[i]`` is True when frame i shows someone else, False when it shows the character, and
None when it is ambiguous (the middle of a morph) or the face is hidden.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

W, H = 320, 240
FPS = 12


def insightface_images() -> Path:
    import insightface

    return Path(insightface.__file__).parent / "data" / "images"


@lru_cache(maxsize=1)
def sources() -> dict[str, np.ndarray]:
    """The character's portrait and other people's faces (RGB uint8)."""
    import matplotlib.cbook as cbook
    from skimage import data

    out = {"astronaut": data.astronaut()[:300, 40:440].copy(),
           "hopper": np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")).copy()}
    root = insightface_images()
    out["hanks"] = np.asarray(Image.open(root / "Tom_Hanks_54745.png").convert("RGB")).copy()
    t1 = np.asarray(Image.open(root / "t1.jpg").convert("RGB")).copy()
    # three people of the group photo (face boxes found by dlib's HOG detector), with margin
    for name, (x0, y0, x1, y1) in {"t1a": (65, 284, 169, 388), "t1b": (734, 365, 837, 469), "t1c": (452, 300, 577, 424)}.items():
        m = (x1 - x0) // 2
        out[name] = t1[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m].copy()
    return out


@lru_cache(maxsize=None)
def _face_box(name: str) -> tuple[int, int, int, int]:
    from storyengine.plugins import get_encoder
    from storyengine.settings import Settings

    img = sources()[name] if name != "_base" else base_frame()
    if name == "hanks":  # an aligned 112x112 crop: the face fills it
        return (16, 26, 102, 112)
    dets = get_encoder("dlib-face", Settings()).detect(img)
    if not dets:
        raise RuntimeError(f"no face found in {name}")
    return max(dets, key=lambda d: (d[0][2] - d[0][0]))[0]


@lru_cache(maxsize=1)
def base_frame() -> np.ndarray:
    a = sources()["astronaut"]
    return cv2.resize(a, (W + 40, H + 30), interpolation=cv2.INTER_AREA)


def reference_photos() -> list[np.ndarray]:
    """Three photos of the character, as the registration fixture makes them."""
    a = sources()["astronaut"]
    relit = np.clip(a[10:290, 30:370].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
    return [a, a[:, ::-1].copy(), relit]


def _ellipse_mask(h: int, w: int, feather: float = 0.18) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    return np.clip((1.0 - r) / feather, 0, 1)[..., None]


def paste_face(base: np.ndarray, other: str, alpha: float = 1.0) -> np.ndarray:
    """``base`` with the face of ``other`` blended (``alpha``) over the character's face."""
    if alpha <= 0:
        return base.copy()
    bx0, by0, bx1, by1 = _face_box("_base")
    ox0, oy0, ox1, oy1 = _face_box(other)
    src = sources()[other]
    # cover a little more than the detector's box (forehead, chin)
    pad = lambda x0, y0, x1, y1, H_, W_: (max(0, x0 - (x1 - x0) // 8), max(0, y0 - (y1 - y0) // 5),
                                         min(W_, x1 + (x1 - x0) // 8), min(H_, y1 + (y1 - y0) // 8))
    tx0, ty0, tx1, ty1 = pad(bx0, by0, bx1, by1, *base.shape[:2])
    sx0, sy0, sx1, sy1 = pad(ox0, oy0, ox1, oy1, *src.shape[:2])
    patch = cv2.resize(src[sy0:sy1, sx0:sx1], (tx1 - tx0, ty1 - ty0), interpolation=cv2.INTER_AREA).astype(np.float32)
    region = base[ty0:ty1, tx0:tx1].astype(np.float32)
    # match the patch's mean colour to the region it replaces, so only identity changes
    patch = np.clip(patch - patch.mean(axis=(0, 1)) + region.mean(axis=(0, 1)), 0, 255)
    m = _ellipse_mask(ty1 - ty0, tx1 - tx0) * float(alpha)
    out = base.copy()
    out[ty0:ty1, tx0:tx1] = np.clip(region * (1 - m) + patch * m, 0, 255).astype(np.uint8)
    return out


def _camera(img: np.ndarray, t: float, angle: float = 0.0) -> np.ndarray:
    """A slow pan (and optional rotation in degrees) cropping W×H out of the slightly larger base."""
    dx, dy = 20 + 14 * np.sin(2 * np.pi * t), 15 + 10 * np.cos(2 * np.pi * t)
    M = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), angle, 1.0)
    M[0, 2] -= dx
    M[1, 2] -= dy
    return cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


@dataclass
class EvalClip:
    name: str
    frames: list[np.ndarray]
    truth: list[bool | None]  # True: someone else; False: the character; None: ambiguous / hidden
    kind: str  # swap | morph | clean


def make_clip(kind: str, n: int = 24, *, other: str = "hopper", span: tuple[int, int] = (8, 15), seed: int = 0) -> EvalClip:
    """One evaluation clip of ``n`` frames.

    Kinds: ``swap`` (``other``'s face over frames ``span[0]..span[1]``), ``morph`` (cross-fade toward
    ``other`` over the clip: frames past 60 % are someone else, before 30 % the character),
    ``clean-rotate``, ``clean-light``, ``clean-jpeg``, ``clean-occlude`` (a bar over the mouth and
    chin), ``clean-hidden`` (the face covered by a hand-coloured oval in ``span``: unknown, not drift).
    """
    rng = np.random.default_rng(seed)
    base = base_frame()
    frames, truth = [], []
    bx0, by0, bx1, by1 = _face_box("_base")
    for i in range(n):
        t = i / max(1, n - 1)
        img, angle, tr = base, 0.0, False
        if kind == "swap":
            tr = span[0] <= i <= span[1]
            img = paste_face(base, other) if tr else base
        elif kind == "morph":
            img = paste_face(base, other, alpha=t)
            tr = True if t >= 0.6 else (False if t <= 0.3 else None)
        elif kind == "clean-rotate":
            angle = float(8 * np.sin(2 * np.pi * t))
        elif kind == "clean-light":
            gain = 0.7 + 0.6 * t
            img = np.clip(base.astype(np.float32) * gain + 10 * np.sin(6 * t), 0, 255).astype(np.uint8)
        elif kind == "clean-occlude":
            img = base.copy()
            h = by1 - by0
            img[by0 + int(0.72 * h):by1 + h // 6, bx0 - 5:bx1 + 5] = (40, 60, 90)
        elif kind == "clean-hidden":
            img = base.copy()
            if span[0] <= i <= span[1]:
                cy, cx = (by0 + by1) // 2, (bx0 + bx1) // 2
                cv2.ellipse(img, (cx, cy), ((bx1 - bx0) // 2 + 12, (by1 - by0) // 2 + 16), 0, 0, 360, (200, 160, 140), -1)
                tr = None
        elif kind not in ("clean", "clean-jpeg"):
            raise ValueError(f"unknown clip kind {kind!r}")
        f = _camera(img, t, angle)
        if kind == "clean-jpeg":
            f = _jpeg(f, int(rng.integers(15, 30)))
        frames.append(np.ascontiguousarray(f))
        truth.append(tr)
    return EvalClip(f"{kind}-{other}" if kind in ("swap", "morph") else kind, frames, truth,
                    "clean" if kind.startswith("clean") else kind)


def write_clip(clip: EvalClip, path: Path, crf: int = 16) -> Path:
    from storyengine import media

    path.parent.mkdir(parents=True, exist_ok=True)
    with media.VideoWriter(path, W, H, FPS, crf=crf, preset="veryfast") as w:
        for f in clip.frames:
            w.write(f)
    return path


SUITE = [("swap", "hopper"), ("swap", "hanks"), ("swap", "t1a"), ("swap", "t1b"), ("swap", "t1c"),
         ("morph", "hopper"), ("morph", "t1c"),
         ("clean", ""), ("clean-rotate", ""), ("clean-light", ""), ("clean-jpeg", ""), ("clean-occlude", ""),
         ("clean-hidden", "")]


def suite(n: int = 24) -> list[EvalClip]:
    return [make_clip(k, n, other=o or "hopper") for k, o in SUITE]
