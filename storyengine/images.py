"""Loading photos and stills safely, and the small measurements registration gates use."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PhotoRejected

MAX_PIXELS = 80_000_000  # decompression-bomb bound (Pillow's default is ~89 M)


def load_rgb(path: str | Path, *, what: str = "photo") -> np.ndarray:
    """Read an image as RGB uint8, EXIF orientation applied; CMYK, 16-bit, alpha, palette and grey converted.

    Raises PhotoRejected naming the file and the reason when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise PhotoRejected(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise PhotoRejected(f"{path}: unreadable {what}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise PhotoRejected(f"{path}: {what} too large: {w}x{h} = {w * h} pixels (limit {MAX_PIXELS})")
                im.load()
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PhotoRejected(f"{path}: {what} too large (decompression bomb): {e}") from None
    except UnidentifiedImageError:
        raise PhotoRejected(f"{path}: not an image (Pillow cannot identify it)") from None
    except OSError as e:
        raise PhotoRejected(f"{path}: unreadable {what}: {e}") from None


def to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to RGB uint8 (alpha composited on white, 16-bit scaled down)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian on a grey image scaled to 256 px on its long side (higher = sharper)."""
    import cv2

    g = gray.astype(np.float32)
    s = 256.0 / max(g.shape)
    if s < 1.0:
        g = cv2.resize(g, (max(1, round(g.shape[1] * s)), max(1, round(g.shape[0] * s))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_32F).var())


def grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def phash(rgb: np.ndarray) -> str:
    """64-bit DCT perceptual hash (hex)."""
    import cv2

    g = cv2.resize(grey(rgb), (32, 32), interpolation=cv2.INTER_AREA)
    d = cv2.dct(g)[:8, :8]
    bits = (d > np.median(d[1:].ravel())).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")
