"""appearance: the WEAK FALLBACK encoder for non-face characters (pets, objects, drawn characters).

Used only when no CLIP weights are available. It compares colour and fine texture, nothing
else: it cannot tell two grey cats apart, and a change of costume or lighting moves it a lot.
Treat its verdicts as "looks roughly alike", never as identity.

Descriptor of a region (the registered subject box, or a candidate window of a frame):

* colour: joint HSV histogram, 16 hue × 4 saturation × 4 value bins (256), soft-binned (each
  pixel votes for its 8 nearest bin centres, so ±25 % brightness moves weight between value
  bins smoothly) and centre-weighted with a Gaussian mask (σ = 0.3 × side) so the subject
  counts more than the background corners;
* texture: histogram of rotation-invariant uniform LBP codes (8 neighbours of the 3×3
  neighbourhood, "riu2" mapping, 10 bins), same mask;
* each histogram sums to 1, is square-rooted (Hellinger) and weighted (colour 0.85, texture
  0.53, squares summing to 1), then concatenated: cosine = 0.72·BC(colour) + 0.28·BC(texture),
  BC being the Bhattacharyya coefficient.

Every region is resampled so that its area is about 48×48 pixels before the histograms are
taken, so texture is compared at the same scale whether the subject is large or small. For a
frame this is done once per window scale (a 4-level pyramid), and each of the 27 windows of
``windows.candidate_windows`` is then one weighted ``bincount``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar

import cv2
import numpy as np

from ..errors import EncoderError
from .base import Detection, Encoder
from .windows import SCALES, Box, candidate_windows, clip_box

CANON = 56  # regions are resampled to about CANON×CANON pixels
H_BINS, S_BINS, V_BINS = 16, 4, 4
COLOUR_BINS = H_BINS * S_BINS * V_BINS
LBP_BINS = 10
W_COLOUR, W_TEXTURE = 0.85, math.sqrt(1 - 0.85**2)


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


def colour_votes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft joint-HSV binning: (bins, weights), each 8×H×W, for the 2×2×2 neighbouring bin centres.

    Every pixel votes for its 8 nearest (hue, sat, value) bin centres with trilinear weights
    (hue circular), so a small hue or brightness shift moves weight smoothly between bins
    instead of flipping whole pixels to another bin.
    """
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)  # H 0..179, S and V 0..255
    hq = hsv[..., 0] * (H_BINS / 180.0) - 0.5
    h0 = np.floor(hq)
    ha = hq - h0
    h0 = h0.astype(np.int64)
    corners = []
    for q, n in ((hsv[..., 1] * (S_BINS / 256.0) - 0.5, S_BINS), (hsv[..., 2] * (V_BINS / 256.0) - 0.5, V_BINS)):
        lo = np.clip(np.floor(q), 0, n - 1).astype(np.int64)
        a = np.clip(q - lo, 0.0, 1.0)
        corners.append(((lo, 1.0 - a), (np.minimum(lo + 1, n - 1), a)))
    bins, weights = [], []
    for hi, hw in ((h0 % H_BINS, 1.0 - ha), ((h0 + 1) % H_BINS, ha)):
        for si, sw in corners[0]:
            for vi, vw in corners[1]:
                bins.append((hi * S_BINS + si) * V_BINS + vi)
                weights.append(hw * sw * vw)
    return np.stack(bins), np.stack(weights)


@lru_cache(maxsize=64)
def centre_mask(h: int, w: int) -> np.ndarray:
    """Separable Gaussian weights, σ = 0.3 × side, peak 1 at the centre (h×w)."""
    gy = np.exp(-0.5 * ((np.arange(h) - (h - 1) / 2) / (0.3 * h)) ** 2)
    gx = np.exp(-0.5 * ((np.arange(w) - (w - 1) / 2) / (0.3 * w)) ** 2)
    return np.outer(gy, gx)


def _descriptor(bins: np.ndarray, weights: np.ndarray, texture: np.ndarray) -> np.ndarray:
    m = centre_mask(*texture.shape)
    hc = np.bincount(bins.ravel(), weights=(weights * m).ravel(), minlength=COLOUR_BINS)
    ht = np.bincount(texture.ravel(), weights=m.ravel(), minlength=LBP_BINS)
    v = np.concatenate([W_COLOUR * np.sqrt(hc / hc.sum()), W_TEXTURE * np.sqrt(ht / ht.sum())])
    return (v / np.linalg.norm(v)).astype(np.float32)


def _labels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bins, weights = colour_votes(rgb)
    return bins, weights, lbp_labels(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def _resample(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Shrink (or enlarge) ``rgb`` by ``factor`` (>1 shrinks) with area / linear interpolation."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    if size == (w, h):
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR)


class AppearanceEncoder(Encoder):
    name: ClassVar[str] = "appearance"
    version: ClassVar[str] = "1"
    licence: ClassVar[str] = "Apache-2.0 (storyengine)"
    dim: ClassVar[int] = COLOUR_BINS + LBP_BINS
    modality: ClassVar[str] = "appearance"
    # Measured on skimage.data photos (scikit-image 0.26), whole-photo descriptors:
    #   chelsea (cat) vs its horizontal flip 1.00, brightness ×0.75 0.89, ×1.25 0.92 (×0.6: 0.75,
    #   too dark to count as the same shot), JPEG q=30 1.00, 0.6× resize 1.00, 80 % crops at the
    #   4 corners 0.99-1.00;
    #   chelsea vs coffee 0.70, astronaut 0.72, rocket 0.40, immunohistochemistry 0.79 (brown
    #   tones too), colorwheel 0.28, hubble_deep_field 0.34; all 21 pairs of these 7 photos:
    #   mean 0.44, max 0.79.
    # same_bound sits between the worst same-subject variant (0.89) and the closest different
    # photo (0.79): a margin of 0.1 only — it separates close colour schemes poorly (weak fallback).
    same_bound: ClassVar[float] = 0.85
    different_mean: ClassVar[float] = 0.44

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
        return _descriptor(*_labels(_resample(crop, factor)))

    def embed(self, image: np.ndarray) -> list[Detection]:
        """One Detection per candidate window (whole frame first).

        ``score`` is 1.0: windows are candidates, not detections; the checker ranks them by cosine.
        """
        image = self._check(image)
        h, w = image.shape[:2]
        boxes = candidate_windows(w, h, self.scales)
        # Group windows by pyramid level: the whole frame alone, then one level per scale.
        factors: dict[Box, float] = {boxes[0]: math.sqrt(w * h) / CANON}
        for b in boxes[1:]:
            factors[b] = max(1e-6, (b[2] - b[0]) / CANON)
        levels: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        out = []
        for b in boxes:
            f = factors[b]
            if f not in levels:
                levels[f] = _labels(_resample(image, f))
            bins, weights, texture = levels[f]
            lh, lw = texture.shape
            # Window in level coordinates; never empty.
            x0 = min(lw - 1, int(round(b[0] / f)))
            y0 = min(lh - 1, int(round(b[1] / f)))
            x1 = max(x0 + 1, min(lw, int(round(b[2] / f))))
            y1 = max(y0 + 1, min(lh, int(round(b[3] / f))))
            vec = _descriptor(bins[:, y0:y1, x0:x1], weights[:, y0:y1, x0:x1], texture[y0:y1, x0:x1])
            out.append(Detection(box=b, vector=vec, score=1.0))
        return out
