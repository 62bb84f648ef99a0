"""Subject and background as layers: a GrabCut matte seeded by the face landmarks, and an inpainted plate.

Used when the camera moves with parallax (orbit, push-in / pull-out as a dolly): the subject layer and
the background plate are warped with different camera transforms and composited with the matte, and
what the subject uncovers is the inpainted plate. Computed once per shot at a reduced size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .face import FaceRig

_WORK = 256  # GrabCut and inpainting run on a copy whose longer side is this many pixels


def matte_path(still: str | Path) -> Path:
    """Where a layered still keeps its subject layer: ``<stem>.matte.png`` next to it (grey, 255 = subject)."""
    p = Path(still)
    return p.with_name(p.stem + ".matte.png")


def given_matte(still: str | Path, width: int, height: int) -> np.ndarray | None:
    """The still's own subject layer cover-fitted like the still (float32 0..1), or None when it has none."""
    p = matte_path(still)
    if not p.is_file():
        return None
    from PIL import Image

    from . import cover_fit

    with Image.open(p) as im:
        m = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return np.clip(cover_fit(m, width, height), 0.0, 1.0).astype(np.float32)


def subject_matte(canvas: np.ndarray, faces: list[FaceRig]) -> np.ndarray | None:
    """A soft matte (float32 0..1, canvas size) of the people whose faces are in ``faces``; None without faces."""
    if not faces:
        return None
    H, W = canvas.shape[:2]
    s = min(1.0, _WORK / max(H, W))
    sw, sh = max(8, round(W * s)), max(8, round(H * s))
    small = cv2.resize(canvas, (sw, sh), interpolation=cv2.INTER_AREA)
    mask = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    for f in faces:  # probable subject: the head with its hair, widening to the shoulders below the chin
        cx, cy = f.centre * s
        a, b = f.a * s, f.b * s
        poly = np.array([[cx - 2.0 * a, cy - 1.9 * b], [cx + 2.0 * a, cy - 1.9 * b], [cx + 2.2 * a, cy + 1.3 * b],
                         [cx + 5.0 * a, cy + 2.2 * b], [cx + 5.0 * a, sh + 1], [cx - 5.0 * a, sh + 1],
                         [cx - 5.0 * a, cy + 2.2 * b], [cx - 2.2 * a, cy + 1.3 * b]], np.int32)
        cv2.fillPoly(mask, [poly], cv2.GC_PR_FGD)
    for f in faces:  # certainly subject: the face itself and the neck under it
        cx, cy = f.centre * s
        a, b = f.a * s, f.b * s
        cv2.ellipse(mask, (int(cx), int(cy)), (max(1, int(0.75 * a)), max(1, int(0.9 * b))), 0, 0, 360, cv2.GC_FGD, -1)
        cv2.rectangle(mask, (int(cx - 0.35 * a), int(cy)), (int(cx + 0.35 * a), int(min(sh - 1, cy + 1.8 * b))), cv2.GC_FGD, -1)
    if (mask == cv2.GC_BGD).sum() < 16 or (mask == cv2.GC_PR_FGD).sum() < 16:
        hard = (mask != cv2.GC_BGD).astype(np.float32)
    else:
        cv2.setRNGSeed(0)  # GrabCut's GMM initialisation: fixed, so the matte is deterministic
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        hard = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 1.0, 0.0).astype(np.float32)
    # keep the components that touch a face; close small holes; a generous, feathered edge (hair)
    n, labels = cv2.connectedComponents((hard > 0.5).astype(np.uint8))
    keep = np.zeros_like(hard)
    for f in faces:
        cx, cy = (f.centre * s).astype(int)
        lab = labels[min(sh - 1, max(0, cy)), min(sw - 1, max(0, cx))]
        if lab:
            keep[labels == lab] = 1.0
    if keep.max() == 0:
        keep = hard
    keep = cv2.morphologyEx(keep, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    keep = cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    matte = cv2.resize(keep, (W, H), interpolation=cv2.INTER_LINEAR)
    matte = cv2.GaussianBlur(matte, (0, 0), max(1.0, 0.8 / s))
    return np.clip(matte, 0.0, 1.0).astype(np.float32)


def background_plate(canvas: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """``canvas`` with the subject removed: inpainted (Telea) at a reduced size, sharp where it was background."""
    H, W = canvas.shape[:2]
    s = min(1.0, _WORK / max(H, W))
    sw, sh = max(8, round(W * s)), max(8, round(H * s))
    small = cv2.resize(canvas, (sw, sh), interpolation=cv2.INTER_AREA)
    hole = (cv2.resize(matte, (sw, sh), interpolation=cv2.INTER_AREA) > 0.02).astype(np.uint8)
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    filled = cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 1.2)
    big = cv2.resize(filled, (W, H), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    # the inpainted fill wherever the (dilated) hole was: the subject's outline must not stay on the plate
    hole_big = cv2.resize(hole.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    keep = 1.0 - np.clip(cv2.GaussianBlur(hole_big, (0, 0), 1.0 / s) * 2.0, 0.0, 1.0)
    out = canvas.astype(np.float32) * keep[..., None] + big * (1.0 - keep[..., None])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
