"""appearance: the WEAK FALLBACK encoder for non-face characters (pets, objects, drawn characters).

Used only when no CLIP weights are available. It compares colour distribution, colour layout and
fine texture, nothing else: it cannot tell two grey cats apart, and a change of costume moves it a
lot. Treat its verdicts as "looks roughly alike", never as identity.

Version 2 (issue 15) is built to survive the light changing — brighter, dimmer, warmer, cooler —
which version 1's HSV histogram did not (the demo cat needed a lamp-lit registration photo).
Descriptor of a region (the registered subject box, or a candidate window of a frame),
resampled to about CANON×CANON pixels first so texture is compared at one scale (:func:`describe`):

* colour, made colour-constant: each channel divided by its subject-weighted mean (grey world:
  any gain per channel of the light cancels), then a soft 12×12 histogram of chromaticity (r, g); dark pixels
  vote less (their chromaticity is noise);
* layout: the same chromaticities as a coarse 6×6 histogram per quadrant (where the colours are);
* absolute chromaticity (no grey world, weight 0.4): invariant to the light's brightness only — it
  keeps a grey-brown cat apart from a grey scene that grey world makes alike;
* intensity: histogram of log(I / mean I) — the light's gain cancels, the subject's contrast stays;
* texture: rotation-invariant uniform LBP ("riu2", 10 bins) at radius 1 and 2, and a histogram of
  log gradient magnitude relative to its mean;
* every vote is weighted by a subject mask: a centre Gaussian (σ = 0.3 × side) times a saliency
  term (pixels unlike the region's border colour count up to 2×);
* each histogram sums to 1, is square-rooted (Hellinger) and weighted (``W_PARTS``), then all are
  concatenated and L2-normalised.

For a frame the texture maps are computed once per pyramid level (4 levels) and shared by the
level's windows of ``windows.candidate_windows`` (27 at 640×360).
Measured robustness and discrimination: scripts/eval_appearance.py, table in docs/encoders.md.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar, Collection

import cv2
import numpy as np

from ..errors import EncoderError
from .base import Detection, Encoder
from .windows import SCALES, Box, candidate_windows, clip_box

CANON = 56  # regions are resampled to about CANON×CANON pixels
LBP_BINS = 10


def _riu2_table() -> np.ndarray:
    """Map an 8-bit LBP code to its rotation-invariant uniform label: ones-count if ≤2 transitions, else 9."""
    table = np.empty(256, np.int64)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        table[code] = sum(bits) if transitions <= 2 else 9
    return table


RIU2 = _riu2_table()
# (dy, dx) of the 8 neighbours, in circular order.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def lbp_labels(gray: np.ndarray) -> np.ndarray:
    """riu2 LBP labels (0..9) of a uint8 image, 3×3 neighbourhood, edges replicated."""
    g = gray.astype(np.int16)
    p = np.pad(g, 1, mode="edge")
    h, w = g.shape
    code = np.zeros((h, w), np.uint8)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        code |= (p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] >= g).astype(np.uint8) << bit
    return RIU2[code]


@lru_cache(maxsize=64)
def centre_mask(h: int, w: int) -> np.ndarray:
    """Separable Gaussian weights, σ = 0.3 × side, peak 1 at the centre (h×w)."""
    gy = np.exp(-0.5 * ((np.arange(h) - (h - 1) / 2) / (0.3 * h)) ** 2)
    gx = np.exp(-0.5 * ((np.arange(w) - (w - 1) / 2) / (0.3 * w)) ** 2)
    return np.outer(gy, gx)


def _resample(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Shrink (or enlarge) ``rgb`` by ``factor`` (>1 shrinks) with area / linear interpolation."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    if size == (w, h):
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR)


# ---------------------------------------------------------------- version 2: colour-constant + texture
CHROMA_BINS = 12  # per chromaticity axis (r, g) over [CHROMA_LO, CHROMA_HI)
CHROMA_LO, CHROMA_HI = 0.0, 0.72
INTENSITY_BINS = 8  # log relative intensity over [-1.6, 1.2)
GRAD_BINS = 8  # log relative gradient magnitude over [-3, 2)
LAYOUT_BINS = 6  # per chromaticity axis, per quadrant (the layout part: where the colours are)
W_PARTS = {"chroma": 0.55, "intensity": 0.2, "lbp1": 0.45, "lbp2": 0.45, "grad": 0.35, "layout": 0.5, "absolute": 0.4}
_NORM = math.sqrt(sum(w * w for w in W_PARTS.values()))
DIM2 = 2 * CHROMA_BINS * CHROMA_BINS + INTENSITY_BINS + 2 * LBP_BINS + GRAD_BINS + 4 * LAYOUT_BINS * LAYOUT_BINS


def lbp_labels_r2(gray: np.ndarray) -> np.ndarray:
    """riu2 LBP labels at radius 2 (8 neighbours on the 5×5 ring's corners and edge midpoints)."""
    g = gray.astype(np.int16)
    p = np.pad(g, 2, mode="edge")
    h, w = g.shape
    code = np.zeros((h, w), np.uint8)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        code |= (p[2 + 2 * dy:2 + 2 * dy + h, 2 + 2 * dx:2 + 2 * dx + w] >= g).astype(np.uint8) << bit
    return RIU2[code]


def _soft2d(r: np.ndarray, g: np.ndarray, w: np.ndarray, n: int = CHROMA_BINS, group: np.ndarray | None = None,
            groups: int = 1) -> np.ndarray:
    """Bilinear-soft 2-D histogram of chromaticities (r, g) with weights ``w``, ``n`` bins per axis
    (one histogram per ``group`` label 0..groups-1, concatenated), in one ``bincount``."""
    scale = n / (CHROMA_HI - CHROMA_LO)
    qr, qg = (r - CHROMA_LO) * scale - 0.5, (g - CHROMA_LO) * scale - 0.5
    r0, g0 = np.floor(qr), np.floor(qg)
    ar, ag = qr - r0, qg - g0
    ri = np.clip(np.stack([r0, r0 + 1]), 0, n - 1).astype(np.int64)  # (2, ...)
    gi = np.clip(np.stack([g0, g0 + 1]), 0, n - 1).astype(np.int64)
    wr, wg = np.stack([1 - ar, ar]), np.stack([1 - ag, ag])
    idx = ri[:, None] * n + gi[None, :]  # (2, 2, ...)
    if group is not None:
        idx = idx + group * (n * n)
    wt = wr[:, None] * wg[None, :] * w
    return np.bincount(idx.ravel(), weights=wt.ravel(), minlength=groups * n * n)


@lru_cache(maxsize=64)
def _quadrants(h: int, w: int) -> np.ndarray:
    """Quadrant label (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of every pixel of an h×w region."""
    return (np.arange(h)[:, None] >= h // 2).astype(np.int64) * 2 + (np.arange(w)[None, :] >= w // 2)


def _hist1d(x: np.ndarray, lo: float, hi: float, n: int, w: np.ndarray) -> np.ndarray:
    i = np.clip(((x - lo) * (n / (hi - lo))).astype(np.int64), 0, n - 1)
    return np.bincount(i.ravel(), weights=w.ravel(), minlength=n)


def maps(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel maps of an image that do not depend on the region (shared by a pyramid level's windows)."""
    f = rgb.astype(np.float32) + 1.0
    grey = f.mean(axis=2)
    sa = f.sum(axis=2)
    g8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {"f": f, "grey": grey, "loggrey": np.log(grey), "ar": f[..., 0] / sa, "ag": f[..., 1] / sa,
            "lbp1": lbp_labels(g8), "lbp2": lbp_labels_r2(g8), "loggrad": np.log(_grad(grey) + 1e-3)}


def describe(rgb: np.ndarray | None = None, mp: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Version-2 descriptor of a region (RGB uint8, about CANON×CANON), invariant to light and white balance.

    * colour: grey-world normalisation (each channel divided by its subject-weighted mean, so a
      gain per channel — brighter, dimmer, warmer, cooler light — cancels), then a soft 2-D
      histogram of chromaticity r = R/(R+G+B), g = G/(R+G+B); dark pixels, whose chromaticity is
      noise, vote with less weight;
    * intensity: histogram of log(I / mean I): the light's gain cancels, the subject's contrast stays;
    * texture: riu2 LBP histograms at radius 1 and 2 (monotonic in light, rotation-invariant) and a
      histogram of log gradient magnitude relative to its mean (gain-invariant);
    * layout (quadrant chromaticities) and absolute chromaticity (no grey world: brightness-invariant only);
    * each histogram sums to 1, is square-rooted (Hellinger) and weighted (W_PARTS).

    The weights of every vote are the subject mask: a centre-weighted Gaussian times a saliency
    term (pixels unlike the region's border count up to 2× more), so background corners matter less.
    """
    mp = mp if mp is not None else maps(rgb)
    f, grey = mp["f"], mp["grey"]
    h, w = grey.shape
    # subject mask: centre weighting × distance from the border colour
    fm = f.reshape(-1, 3).mean(axis=0)
    border = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])
    dist = np.linalg.norm((f - np.median(border, axis=0)) / fm, axis=2)
    m = centre_mask(h, w) * (1.0 + np.clip(dist / (np.percentile(dist, 90) + 1e-6), 0.0, 1.0))
    msum = m.sum()
    # colour: grey world, then chromaticity
    means = (f * m[..., None]).sum(axis=(0, 1)) / msum  # the subject's grey world
    c = f / means
    s = c.sum(axis=2)
    gmean = float((grey * m).sum() / msum)
    wc = m * np.clip(grey * (4.0 / gmean), 0.0, 1.0)  # dark pixels (under a quarter of the mean): little weight
    cr, cg = c[..., 0] / s, c[..., 1] / s
    # grey-world chromaticity (group 0) and absolute chromaticity (group 1: no grey world, invariant to the
    # light's brightness only — it keeps a grey-brown cat apart from a grey scene that grey world makes alike)
    both = _soft2d(np.stack([cr, mp["ar"]]), np.stack([cg, mp["ag"]]), np.stack([wc, wc]), CHROMA_BINS,
                   np.array([0, 1]).reshape(2, 1, 1), 2)
    hc, ha = both[:CHROMA_BINS ** 2], both[CHROMA_BINS ** 2:]
    # layout: coarse chromaticity histograms of the four quadrants, each normalised on its own
    hl = _soft2d(cr, cg, wc, LAYOUT_BINS, _quadrants(h, w), 4).reshape(4, -1)
    hl = (hl / np.maximum(hl.sum(axis=1, keepdims=True), 1e-9)).ravel()
    # intensity and gradients relative to their (subject-weighted) means
    hi = _hist1d(mp["loggrey"] - np.log(gmean), -1.6, 1.2, INTENSITY_BINS, m)
    lgr = mp["loggrad"]
    hg = _hist1d(lgr - np.log(float((np.exp(lgr) * m).sum() / msum)), -3.0, 2.0, GRAD_BINS, m)  # region-relative
    h1 = np.bincount(mp["lbp1"].ravel(), weights=m.ravel(), minlength=LBP_BINS)
    h2 = np.bincount(mp["lbp2"].ravel(), weights=m.ravel(), minlength=LBP_BINS)
    parts = []
    for name, hist in (("chroma", hc), ("intensity", hi), ("lbp1", h1), ("lbp2", h2), ("grad", hg), ("layout", hl),
                       ("absolute", ha)):
        t = hist.sum()
        parts.append((W_PARTS[name] / _NORM) * np.sqrt(hist / t if t > 0 else hist))
    v = np.concatenate(parts)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


def _grad(grey: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


class AppearanceEncoder(Encoder):
    name: ClassVar[str] = "appearance"
    version: ClassVar[str] = "2"  # 2: colour-constant chromaticity, relative intensity, 2-radius LBP, gradients, subject mask
    licence: ClassVar[str] = "Apache-2.0 (storyengine)"
    dim: ClassVar[int] = DIM2
    modality: ClassVar[str] = "appearance"
    # Measured by scripts/eval_appearance.py on 11 package-shipped subjects (scikit-image, matplotlib)
    # × 15 variants each (relit ×0.55/×1.5, gamma 0.6/1.6, warm/cool white balance, a dim warm lamp,
    # 80 % crops, ±15° rotations, mirror, JPEG 30, half scale): see docs/encoders.md for the table.
    same_bound: ClassVar[float] = 0.90
    different_mean: ClassVar[float] = 0.70

    def __init__(self, scales: tuple[float, ...] = SCALES) -> None:
        self.scales = tuple(scales)

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise EncoderError(f"appearance expects an RGB uint8 HxWx3 image, got {got}")
        return np.ascontiguousarray(image)

    def embed_region(self, image: np.ndarray, box: Box) -> np.ndarray:
        """Descriptor of ``box`` (x0, y0, x1, y1) of ``image``, e.g. a registration photo's subject box."""
        image = self._check(image)
        h, w = image.shape[:2]
        try:
            x0, y0, x1, y1 = clip_box(box, w, h)
        except ValueError as e:
            raise EncoderError(str(e)) from None
        crop = image[y0:y1, x0:x1]
        factor = math.sqrt((x1 - x0) * (y1 - y0)) / CANON
        return describe(_resample(crop, factor))

    def windows(self, width: int, height: int) -> list[Box]:
        """The candidate windows :meth:`embed` describes for a frame of this size, in its order."""
        return candidate_windows(width, height, self.scales)

    def embed(self, image: np.ndarray, only: Collection[Box] | None = None) -> list[Detection]:
        """One Detection per candidate window (whole frame first); ``only``: just these windows (same order).

        ``score`` is 1.0: windows are candidates, not detections; the checker ranks them by cosine.
        A window's vector does not depend on which other windows are described with it.
        """
        image = self._check(image)
        h, w = image.shape[:2]
        boxes = candidate_windows(w, h, self.scales)
        if only is not None:
            keep = set(only)
            boxes = [b for b in boxes if b in keep]
        # Group windows by pyramid level: the whole frame alone, then one level per scale.
        whole = (0, 0, w, h)
        factors: dict[Box, float] = {b: (math.sqrt(w * h) / CANON if b == whole else max(1e-6, (b[2] - b[0]) / CANON))
                                     for b in boxes}
        levels: dict[float, tuple[np.ndarray, ...]] = {}
        out = []
        for b in boxes:
            f = factors[b]
            if f not in levels:  # per-pixel maps once per pyramid level, shared by its windows
                levels[f] = maps(_resample(image, f))
            mp = levels[f]
            lh, lw = mp["grey"].shape
            # Window in level coordinates; never empty.
            x0 = min(lw - 1, int(round(b[0] / f)))
            y0 = min(lh - 1, int(round(b[1] / f)))
            x1 = max(x0 + 1, min(lw, int(round(b[2] / f))))
            y1 = max(y0 + 1, min(lh, int(round(b[3] / f))))
            vec = describe(mp={k: a[y0:y1, x0:x1] for k, a in mp.items()})
            out.append(Detection(box=b, vector=vec, score=1.0))
        return out
