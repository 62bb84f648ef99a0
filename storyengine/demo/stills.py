"""Procedural stills for the demo: a subway carriage drawn in code, with cut-out characters composited in.

Nothing is downloaded or committed: the carriage is drawn with numpy/OpenCV and the characters come from
public-domain images that ship inside installed packages (see :func:`demo_sources`).

How a still is made (:func:`compose_still`):

1. the carriage is drawn at twice the output size (flat wall → perspective warp, ceiling, floor, poles),
   with the light of the hour: cool daylight through the windows in the morning, warm interior lamps and a
   dark tunnel with streaking lights in the evening; it is softened as if by a shallow depth of field;
2. each character is cut from its photo with GrabCut (rectangle + hint boxes, fixed iterations, fixed RNG
   seed), its mask feathered and its edge colours pulled from inside the subject (no halo);
3. the cut-outs are exposure-matched, lit from the scene's light side, wrapped with background light,
   shadowed softly onto the wall, and composited at the framing's scale;
4. the whole frame gets one grade (white balance of the hour, vignette, fine grain), so subject and
   scene share the same light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)

FRAMINGS: dict[str, dict[str, float]] = {
    # face: dlib-box height as a fraction of the frame height; x: where the face centre sits (fraction of
    # the width, mirrored by the seed); top: lowest dlib-box top as a fraction of the height (raised when the
    # hair would touch the frame); blur: the background's depth-of-field blur (sigma, fraction of the height).
    "close": {"face": 0.40, "x": 0.40, "top": 0.22, "blur": 0.020},
    "medium": {"face": 0.33, "x": 0.36, "top": 0.24, "blur": 0.015},
    "wide": {"face": 0.31, "x": 0.30, "top": 0.27, "blur": 0.010},
}
MIN_FACE_AT_360 = 110  # px of dlib face box in a 360-px-high still (dlib's HOG without upsampling needs ~80)

_LIGHT = {
    # white balance of the whole frame, and the cut-out's exposure target (mean luma of the subject)
    "morning": {"tint": (0.94, 1.0, 1.08), "subject_luma": 0.50},
    "evening": {"tint": (1.07, 1.0, 0.87), "subject_luma": 0.44},
}


@dataclass(frozen=True)
class Source:
    """A photo to cut a character from.

    ``box`` is the GrabCut rectangle (outside it is background), ``exclude`` boxes are certainly background
    (a flag behind the subject), ``include`` boxes certainly subject (a dark collar), ``face`` is the dlib face box in the photo (sets the scale a framing uses).
    """

    name: str
    image: np.ndarray = field(repr=False)
    box: Box
    face: Box | None = None
    exclude: tuple[Box, ...] = ()
    include: tuple[Box, ...] = ()
    kind: Literal["person", "pet"] = "person"
    credit: str = ""


# -- sources -----------------------------------------------------------------------------------------------


def demo_sources() -> dict[str, Source]:
    """The demo's three characters, from public-domain images bundled with installed packages.

    - ``person``: NASA portrait of astronaut Eileen Collins (``skimage.data.astronaut()``), without the
      flag and the shuttle model;
    - ``pet``: Chelsea the cat (``skimage.data.chelsea()``);
    - ``impostor``: Rear Admiral Grace Hopper, US Navy photo (matplotlib's sample ``grace_hopper.jpg``).
    """
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        hopper = np.asarray(im.convert("RGB")).copy()
    return {
        "person": Source(
            "eileen", data.astronaut(), box=(20, 6, 372, 512), face=(175, 76, 265, 166),
            exclude=((0, 0, 96, 235), (0, 235, 34, 512), (352, 0, 512, 300)),
            include=((190, 160, 255, 200), (140, 205, 300, 290), (70, 290, 265, 512)),
            credit="NASA portrait of Eileen Collins (public domain), via scikit-image",
        ),
        "pet": Source(
            "chelsea", data.chelsea(), box=(0, 0, 418, 300), face=(120, 60, 330, 270), kind="pet",
            exclude=((400, 80, 451, 300),),
            credit="Chelsea the cat (public domain), via scikit-image",
        ),
        "impostor": Source(
            "grace", hopper, box=(10, 16, 506, 600), face=(175, 134, 370, 330),
            exclude=((0, 0, 150, 340), (0, 340, 92, 385), (150, 0, 172, 60), (150, 300, 178, 338), (378, 0, 512, 318), (470, 318, 512, 385)),
            include=((205, 75, 340, 320), (60, 440, 490, 600)),
            credit="US Navy photo of Grace Hopper (public domain), via matplotlib",
        ),
    }


def source_from_array(name: str, image: np.ndarray, kind: Literal["person", "pet"] = "person") -> Source:
    """A :class:`Source` for any photo: GrabCut box = the photo minus a 3 % margin, face found by dlib."""
    h, w = image.shape[:2]
    mx, my = max(1, round(w * 0.03)), max(1, round(h * 0.03))
    face = None
    if kind == "person":
        import dlib

        rects = dlib.get_frontal_face_detector()(image, 1)
        if rects:
            r = max(rects, key=lambda r: r.width())
            face = (r.left(), r.top(), r.right(), r.bottom())
    return Source(name, image, box=(mx, my, w - mx, h), face=face, kind=kind)


# -- cut-outs ----------------------------------------------------------------------------------------------


def cutout(src: Source, *, iterations: int = 5, work_px: int = 384) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``src`` from its background: ``(rgb float32 0..1, alpha float32 0..1)`` at the photo's size.

    GrabCut runs on a copy at most ``work_px`` on its long side with ``cv2.setRNGSeed(0)`` (deterministic);
    the mask is upsampled, feathered (intermediate alpha on a few pixels of edge) and the colours near the
    edge are replaced by colours pulled from inside the subject, so no photo background bleeds in (no halo).
    """
    return _cutout_cached(src.name, src.image.tobytes(), src.image.shape, src.box, src.face, src.exclude, src.include, iterations, work_px)


@lru_cache(maxsize=8)
def _cutout_cached(name, raw, shape, box, face, exclude, include, iterations, work_px):
    img = np.frombuffer(raw, np.uint8).reshape(shape)
    h, w = shape[:2]
    s = min(1.0, work_px / max(h, w))
    sw, sh = max(8, round(w * s)), max(8, round(h * s))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA) if s < 1.0 else img.copy()

    def sc(b: Box) -> Box:
        return (int(b[0] * s), int(b[1] * s), int(math.ceil(b[2] * s)), int(math.ceil(b[3] * s)))

    # 1. Initial mask: background outside the box and in the hint boxes, probable foreground inside,
    #    certain foreground on the face core (keeps the face whole whatever the background looks like).
    mask = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    x0, y0, x1, y1 = sc(box)
    mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
    for b in exclude:
        bx0, by0, bx1, by1 = sc(b)
        mask[by0:by1, bx0:bx1] = cv2.GC_BGD
    if face is not None:
        fx0, fy0, fx1, fy1 = sc(face)
        fw, fh = fx1 - fx0, fy1 - fy0
        mask[fy0 + fh // 5: fy1 - fh // 8, fx0 + fw // 5: fx1 - fw // 5] = cv2.GC_FGD
    for b in include:
        bx0, by0, bx1, by1 = sc(b)
        mask[by0:by1, bx0:bx1] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    hard = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 1.0, 0.0).astype(np.float32)

    # 2. Clean: keep the largest blob, fill holes, smooth the outline (GrabCut edges are jagged).
    hard8 = (hard * 255).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard8, connectivity=8)
    if n > 1:
        keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        hard8 = np.where(labels == keep, 255, 0).astype(np.uint8)
    inv = cv2.bitwise_not(hard8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    for i in range(1, n):  # holes = background blobs that do not touch the border
        x, y, bw, bh, _ = stats[i]
        if x > 0 and y > 0 and x + bw < sw and y + bh < sh:
            hard8[labels == i] = 255
    k = max(3, int(round(sw / 96)) | 1)
    hard8 = cv2.morphologyEx(hard8, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    soft = cv2.GaussianBlur(hard8.astype(np.float32) / 255.0, (0, 0), sw / 220.0)

    # 3. Back to full size; pull the edge in by a pixel and feather.
    alpha = cv2.resize(soft, (w, h), interpolation=cv2.INTER_CUBIC)
    alpha = np.clip((alpha - 0.5) * 2.2 + 0.5, 0.0, 1.0)  # re-sharpen the upsampled ramp to ~2–3 px
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
    alpha = np.clip((alpha - 0.12) / 0.88, 0.0, 1.0)  # erode: the outermost ring held background colour
    rgb = img.astype(np.float32) / 255.0

    # 4. Edge colours from inside: a normalised blur of the colours where alpha is (nearly) 1.
    core = (alpha > 0.97).astype(np.float32)
    pulled = np.zeros_like(rgb)
    weight = np.zeros_like(core)
    for sigma in (2.0, 6.0, 18.0):  # coarse-to-fine fill so wide gaps get a colour too
        num = cv2.GaussianBlur(rgb * core[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(core, (0, 0), sigma)
        fill = num / np.maximum(den, 1e-6)[..., None]
        take = (weight < 1e-3) & (den > 1e-3)
        pulled[take] = fill[take]
        weight[take] = 1.0
    rgb = np.where(core[..., None] > 0, rgb, pulled)
    return rgb, alpha


# -- the carriage ------------------------------------------------------------------------------------------


def _motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    length = max(1, int(length))
    return cv2.blur(img, (length, 1), borderType=cv2.BORDER_REFLECT)


def _outside(wl: int, hl: int, tod: str, rng: np.random.Generator) -> np.ndarray:
    """What the windows show, in flat-wall pixels: a blurred city by day, a tunnel with light streaks by night."""
    y = np.linspace(0.0, 1.0, hl, dtype=np.float32)[:, None]
    if tod == "morning":
        sky = (0.78 + 0.30 * y)[..., None] * np.array([0.80, 0.90, 1.0], np.float32)
        img = np.broadcast_to(sky, (hl, wl, 3)).copy()
        x = 0
        while x < wl:  # building blocks, lighter toward the horizon (haze)
            bw = int(rng.uniform(0.04, 0.16) * wl)
            top = rng.uniform(0.15, 0.6)
            shade = rng.uniform(0.35, 0.75)
            col = np.array([shade * 0.95, shade * 0.93, shade * 0.92], np.float32)
            img[int(top * hl):, x:x + bw] = img[int(top * hl):, x:x + bw] * 0.15 + col * 0.85
            for wy in np.arange(top + 0.06, 1.0, 0.09):  # rows of windows catching the sun
                img[int(wy * hl):int(wy * hl) + max(1, hl // 40), x + bw // 8:x + bw - bw // 8] += 0.12
            x += bw + int(rng.uniform(0.0, 0.03) * wl)
        img[int(0.82 * hl):] = img[int(0.82 * hl):] * 0.5 + 0.2  # a wall racing past at the bottom
        img = _motion_blur(img, wl * 0.06)
        img = cv2.GaussianBlur(img, (0, 0), hl * 0.012)
        return np.clip(img * 1.15, 0, 1.3)
    base = (0.035 + 0.03 * (1 - np.abs(y - 0.5) * 2))[..., None] * np.array([0.9, 0.85, 1.0], np.float32)
    img = np.broadcast_to(base, (hl, wl, 3)).copy()
    for _ in range(int(rng.integers(3, 6))):  # cables along the tunnel wall
        yy = int(rng.uniform(0.15, 0.9) * hl)
        img[yy:yy + max(1, hl // 120)] += 0.04
    streaks = np.zeros((hl, wl, 3), np.float32)
    for _ in range(int(rng.integers(10, 18))):
        yy = int(rng.uniform(0.1, 0.9) * hl)
        x0 = int(rng.uniform(0, wl))
        ln = int(rng.uniform(0.05, 0.3) * wl)
        warm = rng.random() < 0.65
        col = np.array([1.0, 0.72, 0.38] if warm else [0.85, 0.92, 1.0], np.float32) * rng.uniform(0.6, 1.0)
        th = max(1, int(hl * rng.uniform(0.006, 0.014)))
        streaks[yy:yy + th, x0:x0 + ln] = col
    streaks = cv2.GaussianBlur(_motion_blur(streaks, wl * 0.03), (0, 0), max(1.0, hl * 0.006))
    glow = cv2.GaussianBlur(streaks, (0, 0), hl * 0.04)
    return np.clip(img + streaks * 1.6 + glow * 0.8, 0, 1)


def _moquette(wl: int, hl: int, rng: np.random.Generator, tod: str) -> np.ndarray:
    """Seat fabric: a small repeating pattern in the operator's colours."""
    palettes = [((0.12, 0.22, 0.45), (0.80, 0.35, 0.20)), ((0.45, 0.10, 0.14), (0.95, 0.70, 0.25)), ((0.10, 0.32, 0.30), (0.85, 0.80, 0.40))]
    base, accent = (np.array(c, np.float32) for c in palettes[int(rng.integers(len(palettes)))])
    yy, xx = np.mgrid[0:hl, 0:wl].astype(np.float32)
    p = max(6.0, hl / 9.0)
    pat = ((np.sin(xx / p * 2 * math.pi) * np.sin(yy / p * 2 * math.pi)) > 0.55).astype(np.float32)
    pat = cv2.GaussianBlur(pat, (0, 0), 0.8)
    return base * (1 - pat[..., None] * 0.7) + accent * pat[..., None] * 0.7


def _wall(wl: int, hl: int, tod: str, rng: np.random.Generator) -> np.ndarray:
    """The far wall, flat (x along the carriage, y top to bottom), float RGB 0..1."""
    v = np.linspace(0.0, 1.0, hl, dtype=np.float32)
    wall_col = np.array([0.66, 0.66, 0.62], np.float32)
    img = np.broadcast_to(wall_col, (hl, wl, 3)).copy()
    Y = lambda f: int(round(f * hl))  # noqa: E731

    # advertising band: cards with a few "lines of text"
    x = int(rng.uniform(0, 0.1) * wl)
    while x < wl:
        cw = int(rng.uniform(0.18, 0.3) * wl)
        col = np.array(rng.choice([[0.85, 0.3, 0.25], [0.2, 0.45, 0.75], [0.95, 0.8, 0.3], [0.3, 0.65, 0.45], [0.92, 0.9, 0.88]]), np.float32)
        img[Y(0.015):Y(0.095), x:x + cw] = col
        for k in range(3):
            ty = Y(0.03 + 0.02 * k)
            img[ty:ty + max(1, Y(0.008)), x + cw // 10: x + cw // 10 + int(cw * rng.uniform(0.3, 0.7))] = col * 0.35
        img[Y(0.015):Y(0.095), x + cw - max(1, wl // 400): x + cw] = 0.5
        x += cw + int(0.01 * wl)
    img[Y(0.095):Y(0.12)] = wall_col * 0.9
    img[Y(0.118):Y(0.124)] = 0.55

    # windows: rounded rectangles in a dark rubber frame
    win_top, win_bot = Y(0.14), Y(0.50)
    outside = _outside(wl, win_bot - win_top, tod, rng)
    pillar = int(0.09 * wl * (hl / wl) * 3.0)
    ww = int(rng.uniform(1.1, 1.5) * (win_bot - win_top))
    x = int(rng.uniform(-0.5, 0.0) * ww)
    win_mask = np.zeros((hl, wl), np.float32)
    r = max(2, (win_bot - win_top) // 7)
    while x < wl:
        cv2.rectangle(win_mask, (x + r, win_top), (x + ww - r, win_bot), 1.0, -1)
        cv2.rectangle(win_mask, (x, win_top + r), (x + ww, win_bot - r), 1.0, -1)
        for cx, cy in ((x + r, win_top + r), (x + ww - r, win_top + r), (x + r, win_bot - r), (x + ww - r, win_bot - r)):
            cv2.circle(win_mask, (cx, cy), r, 1.0, -1)
        x += ww + pillar
    frame_mask = cv2.dilate(win_mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, hl // 60),) * 2))
    img = img * (1 - frame_mask[..., None]) + np.array([0.16, 0.16, 0.17], np.float32) * frame_mask[..., None]
    glass = np.zeros_like(img)
    glass[win_top:win_bot] = outside
    if tod == "evening":  # the lit interior reflected faintly in the dark glass
        refl = np.exp(-((v[win_top:win_bot] - 0.2) / 0.08) ** 2)[:, None, None] * np.array([0.22, 0.18, 0.12], np.float32)
        glass[win_top:win_bot] += refl
    img = img * (1 - win_mask[..., None]) + glass * win_mask[..., None]

    # below the windows: panel, seat back (moquette), seat edge, shadow under the seat
    img[Y(0.52):Y(0.60)] = wall_col * 0.92
    img[Y(0.595):Y(0.60)] = 0.45
    seat = _moquette(wl, Y(0.82) - Y(0.60), rng, tod)
    seat = seat * 0.75 + _luma(seat)[..., None] * 0.25
    seat_w = int(0.16 * wl * hl / wl * 2.2)
    u = (np.arange(wl) % seat_w) / seat_w  # each seat back is a cushion: lit centre, darker seams
    cushion = (0.72 + 0.28 * np.sin(np.pi * u) ** 0.6).astype(np.float32)[None, :, None]
    shade = np.linspace(1.05, 0.75, seat.shape[0], dtype=np.float32)[:, None, None]
    img[Y(0.60):Y(0.82)] = seat * shade * cushion
    img[Y(0.82):Y(0.90)] = seat[: Y(0.90) - Y(0.82)] * 0.45 * cushion  # seat front, facing down-ish
    img[Y(0.82):Y(0.83)] = seat[:1] * 1.2
    img[Y(0.90):] = np.array([0.08, 0.08, 0.09], np.float32)
    # seat dividers
    x = int(rng.uniform(0.0, 0.3) * wl)
    while x < wl:
        img[Y(0.58):Y(0.90), x:x + max(2, wl // 300)] = 0.3
        x += int(0.35 * wl)
    # light on the wall: daylight from the windows behind the camera, or lamps from above
    if tod == "morning":
        light = 0.9 + 0.15 * np.sin(np.linspace(0, math.pi, hl))[:, None]
    else:
        light = (1.15 - 0.55 * v)[:, None]
    return np.clip(img * light[..., None] if light.ndim == 2 else img * light, 0, 1)


def _pole(img: np.ndarray, x: float, y0: float, y1: float, width: float, env: np.ndarray) -> None:
    """A brushed-steel pole: a vertical cylinder reflecting the scene's light, with a soft specular streak."""
    h, w = img.shape[:2]
    xa, xb = int(math.floor(x - width / 2 - 2)), int(math.ceil(x + width / 2 + 2))
    xa, xb = max(0, xa), min(w, xb)
    if xb <= xa:
        return
    u = (np.arange(xa, xb, dtype=np.float32) + 0.5 - x) / (width / 2)
    cover = np.clip((1.0 - np.abs(u)) * width / 2, 0, 1)  # a soft one-pixel edge
    nx = np.clip(u, -1, 1)
    diffuse = np.sqrt(np.clip(1 - nx ** 2, 0, 1))
    spec = np.exp(-((nx + 0.35) / 0.12) ** 2) + 0.5 * np.exp(-((nx - 0.55) / 0.1) ** 2)
    col = env[None, :] * (0.35 + 0.45 * diffuse[:, None]) + spec[:, None] * np.array([1.0, 1.0, 1.0], np.float32) * 0.7
    ya, yb = max(0, int(y0)), min(h, int(y1))
    seg = img[ya:yb, xa:xb]
    seg[:] = seg * (1 - cover[None, :, None]) + col[None] * cover[None, :, None]


def _carriage(w: int, h: int, tod: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """The empty carriage at ``w``×``h`` (float RGB 0..1), receding toward ``side`` (+1 right, -1 left)."""
    # 1. The far wall as a flat strip, then a homography puts it in perspective.
    hl = h
    wl = int(w * 1.6)
    flat = _wall(wl, hl, tod, rng)
    near_top, near_bot = 0.10 * h, 0.86 * h
    far_top, far_bot = 0.17 * h, 0.76 * h
    xn, xf = (-0.02 * w, 1.02 * w) if side > 0 else (1.02 * w, -0.02 * w)
    src = np.float32([[0, 0], [wl, 0], [wl, hl], [0, hl]])
    dst = np.float32([[xn, near_top], [xf, far_top], [xf, far_bot], [xn, near_bot]])
    if side < 0:
        src = np.float32([[wl, 0], [0, 0], [0, hl], [wl, hl]])
    H = cv2.getPerspectiveTransform(src, dst)

    # 2. Ceiling and floor fill the rest (drawn first, the wall is warped over them).
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    if tod == "morning":
        ceil_col, floor_col = np.array([0.86, 0.87, 0.88], np.float32), np.array([0.42, 0.42, 0.43], np.float32)
    else:
        ceil_col, floor_col = np.array([0.80, 0.76, 0.70], np.float32), np.array([0.30, 0.28, 0.27], np.float32)
    img = np.where(yy < 0.5, ceil_col * (0.8 + 0.4 * yy), floor_col * (1.1 - 0.4 * (yy - 0.5)))
    img = np.broadcast_to(img, (h, w, 3)).astype(np.float32).copy()
    speck = rng.random((h // 2 + 1, w // 2 + 1)).astype(np.float32)
    speck = cv2.resize(speck, (w, h), interpolation=cv2.INTER_NEAREST)
    img[h // 2:] *= (0.94 + 0.08 * speck[h // 2:])[..., None]
    warped = cv2.warpPerspective(flat, H, (w, h), flags=cv2.INTER_AREA | cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))
    inside = warped[..., 0] >= 0
    img[inside] = warped[inside]

    # 3. The ceiling lamp strip, converging with the wall, and its glow.
    lamp = np.zeros((h, w), np.float32)
    ln, lf = (0.02 * h, 0.065 * h), (0.10 * h, 0.125 * h)
    poly = np.int32([[xn, ln[0]], [xf, lf[0]], [xf, lf[1]], [xn, ln[1]]])
    cv2.fillConvexPoly(lamp, poly, 1.0, lineType=cv2.LINE_AA)
    lamp_col = np.array([1.0, 1.0, 1.0] if tod == "morning" else [1.0, 0.9, 0.72], np.float32)
    glow = cv2.GaussianBlur(lamp, (0, 0), h * 0.05)
    img = img * (1 - lamp[..., None]) + lamp[..., None] * lamp_col * 1.1 + glow[..., None] * lamp_col * (0.25 if tod == "morning" else 0.45)

    # 4. Handrail along the wall just under the ceiling, and two vertical poles in the aisle.
    rail = np.zeros((h, w), np.float32)
    t_near, t_far = 0.145 * h, 0.205 * h
    cv2.line(rail, (int(xn), int(t_near)), (int(xf), int(t_far)), 1.0, max(2, int(h * 0.012)), lineType=cv2.LINE_AA)
    env = np.array([0.80, 0.82, 0.86] if tod == "morning" else [0.85, 0.72, 0.55], np.float32)
    img = img * (1 - rail[..., None]) + rail[..., None] * env * 0.8
    for fx in (rng.uniform(0.08, 0.16), rng.uniform(0.62, 0.74)):
        px = (fx if side > 0 else 1.0 - fx) * w
        depth = px / w if side > 0 else 1.0 - px / w  # further along the carriage: thinner
        _pole(img, px, 0, h, w * (0.02 - 0.008 * depth), env)
    return np.clip(img, 0, 1.5)


# -- composition -------------------------------------------------------------------------------------------


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _place(rgb: np.ndarray, alpha: np.ndarray, scale: float, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    h, w = alpha.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LANCZOS4
    rgb = np.clip(cv2.resize(rgb, size, interpolation=interp), 0, 1)
    alpha = np.clip(cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR), 0, 1)
    if flip:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return rgb, alpha


def _paste(canvas_shape, rgb, alpha, x0: int, y0: int):
    """The layer and its alpha at canvas size, with (x0, y0) the layer's top-left (may be off-canvas)."""
    H, W = canvas_shape[:2]
    h, w = alpha.shape
    L = np.zeros((H, W, 3), np.float32)
    A = np.zeros((H, W), np.float32)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx1 > cx0 and cy1 > cy0:
        L[cy0:cy1, cx0:cx1] = rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        A[cy0:cy1, cx0:cx1] = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return L, A


def _composite(scene: np.ndarray, L: np.ndarray, A: np.ndarray, tod: str, light_side: int) -> np.ndarray:
    """Light a cut-out layer like the scene and composite it: exposure, key direction, shadow, light wrap."""
    H, W = A.shape
    m = A > 0.5
    if not m.any():
        return scene
    # exposure: bring the subject's mean luma toward the hour's target (gently)
    gain = float(np.clip(_LIGHT[tod]["subject_luma"] / max(float(_luma(L)[m].mean()), 1e-3), 0.8, 1.25))
    L = L * gain
    # key light: brighter toward the light side (windows by day), from above by night
    xx = np.linspace(-1.0, 1.0, W, dtype=np.float32)[None, :]
    yy = np.linspace(-1.0, 1.0, H, dtype=np.float32)[:, None]
    if tod == "morning":
        key = 1.0 + 0.07 * xx * light_side - 0.03 * yy
        cool = np.array([0.98, 1.0, 1.03], np.float32)
    else:
        key = 1.0 - 0.09 * yy + 0.03 * xx * light_side
        cool = np.array([1.03, 1.0, 0.96], np.float32)
    L = L * key[..., None] * cool
    # soft shadow on the wall behind, offset away from the light
    sh = cv2.GaussianBlur(A, (0, 0), W * 0.02)
    M = np.float32([[1, 0, -light_side * W * 0.025], [0, 1, H * 0.02]])
    sh = cv2.warpAffine(sh, M, (W, H), borderMode=cv2.BORDER_REPLICATE)
    scene = scene * (1 - 0.28 * sh[..., None])
    # light wrap: the blurred background bleeds a little over the subject's edge
    bg_blur = cv2.GaussianBlur(scene, (0, 0), W * 0.012)
    edge = np.clip(1.0 - cv2.GaussianBlur(A, (0, 0), W * 0.006), 0, 1) * A
    L = L * (1 - 0.45 * edge[..., None]) + bg_blur * 0.45 * edge[..., None]
    return scene * (1 - A[..., None]) + L * A[..., None]


def compose_still(
    out_path: str | Path | None,
    *,
    people: list[Source],
    pet: Source | None = None,
    time_of_day: Literal["morning", "evening"] = "morning",
    framing: Literal["close", "medium", "wide"] = "medium",
    seed: int = 0,
    size: tuple[int, int] = (640, 360),
    return_image: bool = False,
    return_matte: bool = False,
) -> dict:
    """Draw a subway carriage and composite ``people`` (and ``pet``) into it; write a PNG to ``out_path``.

    Args:
        out_path: where the PNG goes (None: write nothing, e.g. with ``return_image``).
        people: cut-out sources, nearest last; each needs a ``face`` box (see :func:`source_from_array`).
        pet: an optional animal, placed in the lower corner opposite the first person.
        time_of_day: "morning" (cool daylight through the windows) or "evening" (warm lamps, dark tunnel).
        framing: "close" (head and shoulders), "medium", or "wide" (more carriage); faces are never smaller
            than 110 px in a 360-px-high still (scaled with the height), so dlib's HOG finds them.
        seed: varies the carriage (adverts, seat fabric, windows, poles, side) and mirrors the layout.
        size: (width, height) in pixels, both even.

    Returns:
        ``{"path", "size", "time_of_day", "framing", "seed", "subjects": [{"name", "kind", "box", "face"}],
        "credits"}`` with boxes in still pixels (x0, y0, x1, y1); plus ``"image"`` (RGB uint8) when
        ``return_image``; plus ``"matte"`` (uint8, 255 = a subject) when ``return_matte``: the layer the motion
        back-end uses as given (saved next to the still as ``<stem>.matte.png``). Raises ValueError naming
        the bad argument.
    """
    W, H = size
    if W % 2 or H % 2 or W < 64 or H < 64:
        raise ValueError(f"`size` must be even and at least 64×64, got {W}×{H}")
    if time_of_day not in _LIGHT:
        raise ValueError(f"`time_of_day` must be one of {sorted(_LIGHT)}, got {time_of_day!r}")
    if framing not in FRAMINGS:
        raise ValueError(f"`framing` must be one of {sorted(FRAMINGS)}, got {framing!r}")
    for p in people:
        if p.face is None:
            raise ValueError(f"person source {p.name!r} has no face box; build it with source_from_array()")
    rng = np.random.default_rng(seed)
    side = 1 if rng.random() < 0.5 else -1  # +1: the carriage recedes to the right, the person stands left
    fr = FRAMINGS[framing]

    # 1. The carriage, drawn at 2× and brought down (anti-aliased), then a shallow depth of field.
    big = _carriage(W * 2, H * 2, time_of_day, rng, side)
    scene = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)
    scene = cv2.GaussianBlur(scene, (0, 0), H * fr["blur"])

    subjects: list[dict] = []
    matte = np.zeros((H, W), np.float32)  # every subject's alpha: the still's subject layer
    light_side = side  # the windows' light falls from the receding side's opposite, roughly
    # 2. The pet: a foreground close-up at the edge away from the person, its photo's top, bottom and cut
    #    side laid against the still's own edges (the cat photo is cropped on three sides); drawn last.
    pet_layer = None
    if pet is not None:
        rgb, alpha = cutout(pet)
        scale = H * 1.02 / pet.image.shape[0]
        flip = side < 0  # the photo is cut on its left: that side goes against the frame's edge
        rgb, alpha = _place(rgb, alpha, scale, flip)
        pw = alpha.shape[1]
        hide = int(pw * (0.30 if framing != "close" else 0.38))
        x0 = -hide if side > 0 else W - pw + hide
        pet_layer = (rgb, alpha, x0, H - alpha.shape[0])

    # 3. People, furthest first; each sized by its face and anchored to the frame's bottom edge.
    n = len(people)
    for i, p in enumerate(people):
        fx0, fy0, fx1, fy1 = p.face  # type: ignore[misc]
        face_h = max(fr["face"] * H, MIN_FACE_AT_360 * H / 360.0) * (1.0 + 0.06 * i)
        scale = face_h / (fy1 - fy0)
        flip = side < 0
        rgb, alpha = cutout(p)
        rgb, alpha = _place(rgb, alpha, scale, flip)
        cxf = ((fx0 + fx1) / 2.0) * scale
        if flip:
            cxf = alpha.shape[1] - cxf
        if n == 1:
            x_face = (0.68 if pet is not None else fr["x"]) * W
        else:
            x_face = W * (0.28 + 0.44 * i / (n - 1))
        if side < 0:
            x_face = W - x_face
        x0 = int(round(x_face - cxf))
        rows = np.nonzero(alpha.max(axis=1) > 0.5)[0]
        head_above = (fy0 * scale - rows[0]) if len(rows) else 0.0
        face_top = min(max(fr["top"] * H, 0.05 * H + head_above), H - face_h * 1.6)
        y0 = int(round(face_top - fy0 * scale))
        # never leave a gap under a subject whose photo is cut at the bottom
        y0 = max(y0, H - alpha.shape[0])
        L, A = _paste(scene.shape, rgb, alpha, x0, y0)
        scene = _composite(scene, L, A, time_of_day, light_side)
        matte = np.maximum(matte, A)
        face_box = [x0 + int(round(cxf - (fx1 - fx0) * scale / 2)), y0 + int(round(fy0 * scale)),
                    x0 + int(round(cxf + (fx1 - fx0) * scale / 2)), y0 + int(round(fy1 * scale))]
        subjects.append({"name": p.name, "kind": p.kind, "box": _box_of(A), "face": face_box})

    if pet is not None and pet_layer is not None:  # nearest to the camera: drawn last
        rgb, alpha, x0, y0 = pet_layer
        L, A = _paste(scene.shape, rgb, alpha, x0, y0)
        scene = _composite(scene, L, A, time_of_day, light_side)
        matte = np.maximum(matte, A)
        subjects.append({"name": pet.name, "kind": pet.kind, "box": _box_of(A), "face": None})

    # 4. One grade for everything: white balance of the hour, a little bloom, vignette, fine grain.
    img = scene * np.array(_LIGHT[time_of_day]["tint"], np.float32)
    hi = np.clip(_luma(img) - 0.85, 0, None)
    img = img + cv2.GaussianBlur(hi, (0, 0), H * 0.02)[..., None] * np.array(_LIGHT[time_of_day]["tint"], np.float32) * 0.6
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rr = ((xx / W - 0.5) ** 2 * 1.2 + (yy / H - 0.5) ** 2 * 1.6)
    img = img * (1.0 - 0.45 * rr)[..., None]
    img = img + rng.normal(0.0, 0.008, size=(H, W, 1)).astype(np.float32)
    img = np.clip(img, 0.0, 1.0)
    img = img + 0.35 * img * (1 - img) * (img - 0.45) * 2.0  # a gentle filmic S-curve
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    meta: dict = {
        "path": str(out_path) if out_path is not None else None,
        "size": [W, H], "time_of_day": time_of_day, "framing": framing, "seed": seed,
        "subjects": subjects,
        "credits": [s.credit for s in ([pet] if pet else []) + list(people) if s.credit],
    }
    if out_path is not None:
        from PIL import Image

        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(out_path, optimize=True)
    if return_image:
        meta["image"] = out
    if return_matte:
        meta["matte"] = (np.clip(matte, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return meta


def _box_of(A: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(A > 0.5)
    if not len(xs):
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
