"""Finishing: a per-episode grade, a .cube 3D LUT and upscale + sharpen, applied identically to every clip.

A :class:`Finisher` is built once per episode and maps one RGB uint8 frame to another; nothing is
held between frames. Mood presets (per take) are a grade plus a motion strength for the back-end.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from .errors import BackendError, MediaError
from .specs import Finish, Grade

# ---------------------------------------------------------------------------
# Moods: a look and a motion strength per take
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mood:
    grade: Grade
    motion: float  # scales the motion back-end's `sway` (and `push` range); 1 = unchanged


MOODS: dict[str, Mood] = {
    "neutral": Mood(Grade(), 1.0),
    "warm": Mood(Grade(exposure=0.1, contrast=1.05, saturation=1.12, temperature=0.35, tint=0.05), 0.9),
    "distant": Mood(Grade(exposure=-0.15, contrast=0.88, saturation=0.65, temperature=-0.25), 0.6),
    "uneasy": Mood(Grade(exposure=-0.3, contrast=1.22, saturation=0.8, temperature=-0.1, tint=-0.2), 1.6),
}


# Back-ends that bake a take's mood grade into the take file (option ``mood``); the episode must not grade
# those takes again (see episode.assemble).
BAKES_MOOD = frozenset({"motion"})


def mood_baked(backend_id: str) -> bool:
    """True when ``backend_id``'s takes already carry their mood's grade."""
    return backend_id in BAKES_MOOD


def mood_options(mood: str, backend_id: str, options: dict) -> dict:
    """Back-end options for a take in ``mood``: the motion back-end's sway and push scale with the mood,
    and it is told the mood so the take file carries the grade."""
    m = MOODS[mood]
    if backend_id not in BAKES_MOOD:
        return dict(options)
    out = {**options, "mood": mood}
    if m.motion == 1.0:
        return out
    out["sway"] = round(min(4.0, float(options.get("sway", 1.0)) * m.motion), 4)
    lo, hi = options.get("push", (0.04, 0.10))
    out["push"] = [round(min(0.5, lo * m.motion), 4), round(min(0.5, hi * m.motion), 4)]
    return out


# ---------------------------------------------------------------------------
# Grade
# ---------------------------------------------------------------------------


def grade_is_identity(g: Grade) -> bool:
    return g == Grade()


def apply_grade(frame: np.ndarray, g: Grade) -> np.ndarray:
    """Exposure (stops), white balance (temperature/tint), contrast around mid-grey, saturation; uint8 in/out."""
    if grade_is_identity(g):
        return frame
    x = frame.astype(np.float32) / 255.0
    x = x * np.float32(2.0 ** g.exposure)
    wb = np.array([1 + 0.12 * g.temperature + 0.04 * g.tint, 1 - 0.08 * g.tint, 1 - 0.12 * g.temperature + 0.04 * g.tint],
                  np.float32)
    x = x * wb
    if g.contrast != 1.0:
        x = (x - 0.5) * np.float32(g.contrast) + 0.5
    if g.saturation != 1.0:
        luma = x @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        x = luma[..., None] + (x - luma[..., None]) * np.float32(g.saturation)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# .cube LUT
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lut3D:
    """A 3D LUT as a (N, N, N, 3) float32 table indexed [b, g, r] as in the .cube file order (red fastest)."""

    table: np.ndarray
    domain_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    domain_max: tuple[float, float, float] = (1.0, 1.0, 1.0)
    title: str = ""

    @property
    def size(self) -> int:
        return self.table.shape[0]


def load_cube(path: str | Path) -> Lut3D:
    """Parse an Adobe/Resolve .cube 3D LUT; MediaError names the file and the line on anything malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise MediaError(f"cannot read LUT {path}: {e.strerror or e}") from None
    return _parse_cube(text, str(path))


@lru_cache(maxsize=8)
def _load_cube_cached(path: str, mtime: float) -> Lut3D:
    return load_cube(path)


def _parse_cube(text: str, where: str) -> Lut3D:
    size, title = None, ""
    dmin, dmax = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rows: list[tuple[float, float, float]] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head = line.split()[0].upper()
        try:
            if head == "TITLE":
                title = line[5:].strip().strip('"')
            elif head == "LUT_3D_SIZE":
                size = int(line.split()[1])
                if not 2 <= size <= 256:
                    raise ValueError(f"LUT_3D_SIZE {size} is outside 2..256")
            elif head == "LUT_1D_SIZE":
                raise ValueError("1D LUTs are not supported; export a 3D LUT (LUT_3D_SIZE)")
            elif head == "DOMAIN_MIN":
                dmin = tuple(float(v) for v in line.split()[1:4])  # type: ignore[assignment]
            elif head == "DOMAIN_MAX":
                dmax = tuple(float(v) for v in line.split()[1:4])  # type: ignore[assignment]
            elif head[0].isalpha():
                continue  # other keywords (LUT_IN_VIDEO_RANGE …) do not change a full-range table
            else:
                vals = [float(v) for v in line.split()]
                if len(vals) != 3:
                    raise ValueError(f"expected 3 numbers, got {len(vals)}")
                rows.append((vals[0], vals[1], vals[2]))
        except (ValueError, IndexError) as e:
            raise MediaError(f"{where}:{no}: malformed .cube line {raw.strip()!r}: {e}") from None
    if size is None:
        raise MediaError(f"{where}: not a 3D .cube LUT (no LUT_3D_SIZE line)")
    if len(rows) != size ** 3:
        raise MediaError(f"{where}: LUT_3D_SIZE {size} needs {size ** 3} rows, found {len(rows)}")
    if any(hi <= lo for lo, hi in zip(dmin, dmax)):
        raise MediaError(f"{where}: DOMAIN_MAX {dmax} must be above DOMAIN_MIN {dmin}")
    table = np.asarray(rows, np.float32).reshape(size, size, size, 3)  # [b][g][r]: red varies fastest
    return Lut3D(table, dmin, dmax, title)


def apply_lut(frame: np.ndarray, lut: Lut3D, strength: float = 1.0) -> np.ndarray:
    """Trilinear 3D LUT lookup on an RGB uint8 frame, mixed with the original by ``strength``."""
    if strength <= 0:
        return frame
    n = lut.size
    x = frame.astype(np.float32) / 255.0
    lo, hi = np.array(lut.domain_min, np.float32), np.array(lut.domain_max, np.float32)
    p = np.clip((x - lo) / (hi - lo), 0.0, 1.0) * (n - 1)
    i0 = np.minimum(p.astype(np.int32), n - 2)
    f = p - i0
    r0, g0, b0 = i0[..., 0], i0[..., 1], i0[..., 2]
    fr, fg, fb = f[..., 0:1], f[..., 1:2], f[..., 2:3]
    t = lut.table
    c00 = t[b0, g0, r0] * (1 - fr) + t[b0, g0, r0 + 1] * fr
    c01 = t[b0, g0 + 1, r0] * (1 - fr) + t[b0, g0 + 1, r0 + 1] * fr
    c10 = t[b0 + 1, g0, r0] * (1 - fr) + t[b0 + 1, g0, r0 + 1] * fr
    c11 = t[b0 + 1, g0 + 1, r0] * (1 - fr) + t[b0 + 1, g0 + 1, r0 + 1] * fr
    out = (c00 * (1 - fg) + c01 * fg) * (1 - fb) + (c10 * (1 - fg) + c11 * fg) * fb
    if strength < 1.0:
        out = x * (1 - strength) + out * strength
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_cube(path: str | Path, fn: Callable[[np.ndarray], np.ndarray], size: int = 17, title: str = "") -> Path:
    """Write ``fn`` (RGB float [..., 3] in 0..1 → same) as a .cube file; used by tests and docs."""
    g = np.linspace(0.0, 1.0, size, dtype=np.float32)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    rgb = fn(np.stack([r, gg, b], axis=-1).reshape(-1, 3))
    lines = [f'TITLE "{title}"'] if title else []
    lines.append(f"LUT_3D_SIZE {size}")
    lines += [f"{v[0]:.6f} {v[1]:.6f} {v[2]:.6f}" for v in np.clip(rgb, 0, 1)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


# ---------------------------------------------------------------------------
# Upscaling
# ---------------------------------------------------------------------------

Upscaler = Callable[[np.ndarray, tuple[int, int]], np.ndarray]
"""``upscale(frame, (width, height)) -> frame``: a model-based upscaler (e.g. Real-ESRGAN) registered by name."""

UPSCALERS: dict[str, Upscaler] = {}


def register_upscaler(name: str, fn: Upscaler) -> None:
    """Make a model upscaler available to ``finish: {resample: model, upscaler: NAME}``."""
    UPSCALERS[name] = fn


def resize(frame: np.ndarray, size: tuple[int, int], method: str = "lanczos", sharpen: float = 0.0,
           upscaler: str | None = None) -> np.ndarray:
    """Resample to ``size`` (width, height) and unsharp-mask by ``sharpen`` (0 = none)."""
    h, w = frame.shape[:2]
    if method == "model":
        fn = UPSCALERS.get(upscaler or "")
        if fn is None:
            raise BackendError(f"model upscaler {upscaler!r} is not registered (registered: {', '.join(UPSCALERS) or 'none'})")
        out = fn(frame, size)
        if out.shape[:2] != (size[1], size[0]):
            out = np.asarray(Image.fromarray(out).resize(size, Image.LANCZOS))
        img = Image.fromarray(out)
    else:
        img = Image.fromarray(frame)
        if (w, h) != size:
            img = img.resize(size, Image.LANCZOS if method == "lanczos" else Image.BICUBIC)
    if sharpen > 0:
        radius = max(0.6, 0.8 * max(size[0] / w, 1.0))
        img = img.filter(ImageFilter.UnsharpMask(radius=radius, percent=int(round(sharpen * 100)), threshold=2))
    return np.asarray(img)


# ---------------------------------------------------------------------------
# The per-episode finisher
# ---------------------------------------------------------------------------


class Finisher:
    """Grade → LUT → resample + sharpen, the same for every clip of one episode.

    Args:
        finish: the episode's ``Finish`` spec.
        lut_path: the LUT resolved against the spec file (None when ``finish.lut`` is None).
        size: the delivery size (width, height).
    """

    def __init__(self, finish: Finish | None, size: tuple[int, int], lut_path: Path | None = None) -> None:
        self.finish = finish or Finish()
        self.size = size
        self.lut = None
        if lut_path is not None:
            lut_path = Path(lut_path)
            self.lut = _load_cube_cached(str(lut_path), lut_path.stat().st_mtime if lut_path.exists() else 0.0)

    @property
    def colour_is_identity(self) -> bool:
        return self.lut is None and grade_is_identity(self.finish.grade)

    def is_identity(self, source_size: tuple[int, int]) -> bool:
        """True when this finisher would change nothing for frames of ``source_size``."""
        return self.colour_is_identity and source_size == self.size and self.finish.sharpen == 0

    def colour(self, frame: np.ndarray, extra: Grade | None = None) -> np.ndarray:
        """The episode grade (after a take's own mood grade ``extra``) and the LUT."""
        if extra is not None:
            frame = apply_grade(frame, extra)
        frame = apply_grade(frame, self.finish.grade)
        if self.lut is not None:
            frame = apply_lut(frame, self.lut, self.finish.lut_strength)
        return frame

    def scale(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if (w, h) == self.size and self.finish.sharpen == 0:
            return frame
        return resize(frame, self.size, self.finish.resample, self.finish.sharpen, self.finish.upscaler)

    def __call__(self, frame: np.ndarray, extra: Grade | None = None) -> np.ndarray:
        return self.scale(self.colour(frame, extra))
