"""The weight-free default back-end: a portrait animated as the shot's prompt directs, on any CPU.

No trained model: every frame is the still resampled through smooth warps, so it runs anywhere, is
deterministic (same prompt + seed → byte-identical frames) and never invents a face a model could
hallucinate. The prompt is read with a small documented vocabulary (:mod:`.prompt`, docs/motion.md);
``storyengine plan`` shows what it was read as (:meth:`MotionBackend.describe_motion`).

Per shot (once): the still is cover-fitted onto a working canvas, faces are found with dlib's 68
landmarks and rigged (:mod:`.face`), the prompt is scheduled into curves (:mod:`.timeline`), and for a
camera with parallax the subject is matted and the background inpainted (:mod:`.layers`).
Per frame: 1. lids and irises are redrawn in small eye regions of the canvas; 2. the camera transform
plus the face and body displacement (head turn, smile, breath, sway), evaluated on a coarse grid and
upsampled, become one ``cv2.remap``; 3. with parallax a background plate is warped on its own and
composited under the matte; 4. light (drift, passing band, flicker, dims), grain and the take's mood
grade are applied (:mod:`.light`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Iterator

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...errors import BackendError
from ...images import load_rgb
from ...specs import ShotPlan
from ..base import Clip, Progress, VideoBackend
from .face import FaceRig, find_faces, window
from .prompt import FACE_ACTIONS, Reading, read_prompt
from .timeline import Performance, build

_REF_H = 360.0  # pixel amplitudes are given for a 360-px-high frame and scale with the height
_GRID = 4  # the displacement field is evaluated on a grid this many output pixels apart, then upsampled
_SOFTEN = 0.6  # each rejected take multiplies the motion amplitude by this

# option → (min, max): checked before anything else so the error names the option, the value and the range
_RANGES: dict[str, tuple[float, float]] = {
    "push_out": (0.0, 1.0), "pan": (0.0, 0.2), "sway": (0.0, 4.0), "light": (0.0, 0.2), "light_band": (0.0, 1.0),
    "grain": (0.0, 0.1), "overscan": (0.0, 0.5), "amplitude": (0.0, 2.0), "turn_degrees": (0.0, 15.0),
    "blink_ms": (100.0, 300.0), "parallax": (0.0, 0.1), "handheld": (0.0, 4.0),
}


def _ease(t: float) -> float:
    """Cosine ease-in-out on [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _smoothstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def cover_fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale and centre-crop ``rgb`` so it exactly covers ``width``×``height`` (no borders, aspect kept)."""
    h, w = rgb.shape[:2]
    s = max(width / w, height / h)
    # crop first (in source pixels) so the resize only touches what is kept
    cw, ch = min(w, width / s), min(h, height / s)
    x0, y0 = (w - cw) / 2.0, (h - ch) / 2.0
    xi0, yi0 = int(math.floor(x0)), int(math.floor(y0))
    xi1, yi1 = int(math.ceil(x0 + cw)), int(math.ceil(y0 + ch))
    crop = rgb[yi0:yi1, xi0:xi1]
    interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LANCZOS4
    out = cv2.resize(crop, (width, height), interpolation=interp)
    return np.ascontiguousarray(out)


class _Body:
    """A body without a detectable face (the back of a head, a pet): breath and sway on a lower-central region."""

    def __init__(self, x: float, y: float, size: float, H: int) -> None:
        self.x, self.y, self.size = x, y, size
        self.box = (x - 5.0 * size, y - 4.0 * size, x + 5.0 * size, H + 6.0 * size)
        self.margin = 1.0 * size

    def displacement(self, u, v, yaw, pitch, roll, smile, breath, sway):
        f = self.size
        body = np.exp(-(((u - self.x) / (1.8 * f)) ** 2 + ((v - (self.y + 1.3 * f)) / (2.2 * f)) ** 2))
        lean = np.exp(-(((u - self.x) / (2.0 * f)) ** 2 + ((v - self.y) / (3.0 * f)) ** 2))
        return (sway * lean).astype(np.float32), (-breath * body).astype(np.float32)


@lru_cache(maxsize=64)
def _faces_in_still(path: str, mtime_ns: int, width: int, height: int) -> int:
    """How many faces the animator will find in the still at ``path`` framed at ``width``×``height``."""
    return len(find_faces(cover_fit(load_rgb(path, what="still"), width, height)))


class MotionBackend(VideoBackend):
    """Photo motion without a model, directed by the prompt: camera, face, body and light."""

    backend_id: ClassVar[str] = "motion"
    version: ClassVar[str] = "2"
    supports_lora: ClassVar[bool] = False
    supports_reference_images: ClassVar[bool] = False
    reads_prompt: ClassVar[bool] = True
    parallel_processes: ClassVar[bool] = True  # pure CPU, no weights: one copy per core renders shots side by side
    max_characters: ClassVar[int | None] = None
    digital_source_type: ClassVar[str] = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"

    class Options(BaseModel):
        """Sizes of the motion; what moves and when comes from the prompt (the seed fills in what it leaves open)."""

        model_config = ConfigDict(extra="forbid")

        push: tuple[float, float] = Field((0.04, 0.10), description="Zoom of a push / pull over the shot, drawn in [min, max] (0.06 = 6 %).")
        push_out: float = Field(0.2, description="Without a camera word: probability that the camera pulls out instead of pushing in (0–1).")
        pan: float = Field(0.03, description="Largest pan / tilt over the shot, as a fraction of the frame (0–0.2).")
        sway: float = Field(1.0, description="Strength of the body's idle breath and sway (0–4; 1 = about 1 px at 360p).")
        light: float = Field(0.03, description="Largest brightness / white-balance drift over the shot (0–0.2; 0.03 = 3 %).")
        light_band: float = Field(0.5, description="Without a light word: probability of a soft band of light passing (0–1).")
        grain: float = Field(0.006, description="Film-grain standard deviation, as a fraction of full scale (0–0.1).")
        overscan: float = Field(0.04, description="How much bigger than the framed view the working canvas is (0–0.5).")
        detect_faces: bool = Field(True, description="Find faces with dlib (68 landmarks); off: body motion on the lower centre only.")
        amplitude: float = Field(1.0, description="Scales every motion: head turns, gaze, smile, body, camera (0–2). Lowered on a retry after a rejected take.")
        turn_degrees: float = Field(10.0, description="Head turn for 'turns her head' (degrees, 0–15); nods and tilts are 0.6× this.")
        blink_ms: float = Field(150.0, description="Length of a blink in milliseconds (100–300).")
        parallax: float = Field(0.03, description="Background shift against the subject for an orbit, as a fraction of the width (0–0.1).")
        handheld: float = Field(1.5, description="Handheld sway in px at 360p (0–4).")
        mood: str = Field("", description="Mood preset whose grade is baked into the take (set per take from the shot's `moods`).")

        @model_validator(mode="before")
        @classmethod
        def _ranges(cls, data: Any) -> Any:
            if isinstance(data, dict):
                for name, (lo, hi) in _RANGES.items():
                    if name in data and data[name] is not None:
                        v = data[name]
                        try:
                            x = float(v)
                        except (TypeError, ValueError):
                            continue  # pydantic's own type error names it
                        if not lo <= x <= hi or math.isnan(x):
                            raise ValueError(f"option `{name}` = {v!r} is out of range: it must be between {lo:g} and {hi:g}")
            return data

        @field_validator("mood")
        @classmethod
        def _mood(cls, v: str) -> str:
            from ...finishing import MOODS

            if v and v not in MOODS:
                raise ValueError(f"option `mood` = {v!r} is not a mood; available: {', '.join(MOODS)}")
            return v

        @model_validator(mode="after")
        def _push_range(self) -> "MotionBackend.Options":
            lo, hi = self.push
            if not (0.0 <= lo <= hi <= 0.5):
                raise ValueError(f"`push` must be [min, max] with 0 <= min <= max <= 0.5, got {list(self.push)}")
            return self

    # -- what the planner and the retry loop ask --------------------------------------------------------------

    @classmethod
    def read_prompt(cls, prompt: str) -> Reading:
        return read_prompt(prompt)

    @classmethod
    def describe_motion(cls, plan: ShotPlan) -> dict[str, Any]:
        """What the prompt was read as, the words ignored, how contradictions were resolved, and what is skipped.

        Looks for faces in the still (dlib, at the plan's size) so it can say when face motions will be
        skipped; a still that does not exist yet (``still: previous``) is looked at when rendered.
        """
        r = read_prompt(plan.prompt)
        out: dict[str, Any] = {"reads_prompt": True, "read_as": r.summary(), "ignored": list(r.ignored),
                               "negated": list(r.negated), "resolved": list(r.resolved), "faces": None, "skipped": []}
        try:
            opts = cls.Options(**plan.backend_options)
        except Exception:
            opts = cls.Options()
        face_asks = [a.label() for a in r.actions if a.kind in FACE_ACTIONS]
        p = Path(plan.still)
        if plan.continues_from or not p.is_file():
            return out  # the still is the previous shot's last frame: faces are looked for when it renders
        n = _faces_in_still(str(p), p.stat().st_mtime_ns, plan.width, plan.height) if opts.detect_faces else 0
        out["faces"] = n
        if n == 0 and face_asks:  # only worth a warning when the prompt asked the face for something
            out["skipped"] = face_asks
            out["notes"] = [("no face found in the still" if opts.detect_faces else "face detection is off")
                            + ": face motions skipped; camera, light" + (" and body" if plan.characters else "") + " motion only"]
        return out

    def soften(self, options: dict[str, Any], attempt: int) -> tuple[dict[str, Any], str]:
        """Options for a retry after ``attempt`` rejected takes: every motion smaller (× 0.6 per rejection)."""
        if attempt <= 0:
            return dict(options), ""
        base = float(options.get("amplitude", self.options.amplitude))
        new = round(base * _SOFTEN ** attempt, 4)
        turn = float(options.get("turn_degrees", self.options.turn_degrees)) * new
        return ({**options, "amplitude": new},
                f"motion amplitude reduced to {new:.2f} (from {base:.2f}; head turns {turn:.1f}°) after {attempt} rejected take(s)")

    def cache_identity(self, plan: ShotPlan) -> dict[str, Any]:
        """What determines the frames besides the plan: id, version, resolved options, and a layered still's matte."""
        from ...cache import file_sha256
        from .layers import matte_path

        try:
            options: Any = self.options_for(plan).model_dump(mode="json")
        except Exception:  # options are validated at generate time; the key must not fail first
            options = plan.backend_options
        ident = {"backend": self.backend_id, "version": self.version, "options": options}
        m = matte_path(plan.still)
        if m.is_file():
            ident["matte"] = file_sha256(m)
        return ident

    @staticmethod
    def still_for_size(path: str | Path, width: int, height: int) -> np.ndarray:
        """The still at ``path`` (EXIF-transposed RGB) cover-fitted to ``width``×``height``."""
        return cover_fit(load_rgb(path, what="still"), width, height)

    # -- generate ------------------------------------------------------------------------------------------

    def generate(self, plan: ShotPlan, progress: Progress | None = None) -> Clip:
        """Render ``plan`` as a lazily streamed clip; frame 0 is the still's framing (cropped by ``overscan``)."""
        opts = self.options_for(plan)
        W, H, N, fps = plan.width, plan.height, plan.num_frames, plan.fps
        if W < 16 or H < 16 or N < 1:
            raise BackendError(f"motion back-end needs at least 16×16 px and one frame, got {W}×{H} and {N} frames")
        rng = np.random.default_rng(plan.seed)
        amp = opts.amplitude
        amp_px = H / _REF_H  # one "360p pixel" in output pixels
        reading = read_prompt(plan.prompt)

        # 1. Draw the seed's share of the camera (the order of draws is part of the output: keep it stable).
        push = float(rng.uniform(*opts.push))
        pull_out = bool(rng.random() < opts.push_out)
        pan_dir = rng.normal(size=2)
        pan_dir /= max(float(np.hypot(*pan_dir)), 1e-9)
        pan_amt = float(rng.uniform(0.3, 1.0)) * opts.pan
        target_jitter = rng.uniform(-0.5, 0.5, size=2)
        shake_phase = rng.uniform(0.0, 2.0 * math.pi, size=8)
        side = 1.0 if rng.random() < 0.5 else -1.0
        perf = build(reading, N / fps, fps, np.random.default_rng([plan.seed, 1]), turn_degrees=opts.turn_degrees,
                     blink_ms=opts.blink_ms, amplitude=amp)

        # 2. The working canvas: the cover-fitted still at (1 + overscan)× the output size, supersampled so a
        #    push stays sharp when the still has the resolution for it; faces rigged on it.
        still = load_rgb(plan.still, what="still")
        o = opts.overscan
        dens = max(1.0, min(1.0 + opts.push[1], min(still.shape[1] / (W * (1 + o)), still.shape[0] / (H * (1 + o)))))
        Cw, Ch = int(round(W * (1 + o) * dens)), int(round(H * (1 + o) * dens))
        canvas = cover_fit(still, Cw, Ch)
        rigs: list[Any] = find_faces(canvas) if opts.detect_faces else []
        faces = list(rigs)
        if not rigs and plan.characters:
            size = Ch / (3.0 + len(plan.characters))
            rigs = [_Body(Cw * (i + 1) / (len(plan.characters) + 1), Ch * 0.45, size, Ch) for i in range(len(plan.characters))]
        cam = self._camera(reading, opts, perf, W, H, Cw, Ch, dens, o, amp, amp_px, push, pull_out, pan_dir, pan_amt,
                           target_jitter, shake_phase, side, faces)
        from .layers import background_plate, given_matte, subject_matte

        given = given_matte(plan.still, Cw, Ch) if cam.parallax else None  # a layered still's own subject layer
        layered = cam.parallax and (bool(faces) or given is not None)
        matte = plate = None
        if layered:
            matte = given if given is not None else subject_matte(canvas, faces)
            plate = background_plate(canvas, matte) if matte is not None else None
            layered = plate is not None

        from ...finishing import MOODS
        from .light import Light

        quiet_light = reading.camera == "static" and not any(a.kind.startswith(("light", "flicker", "dim", "bright")) for a in reading.actions)
        light = Light(W, H, N, fps, perf, rng, drift=0.0 if quiet_light else opts.light,
                      band=reading.camera == "auto" and bool(rng.random() < opts.light_band),
                      grain=opts.grain, grade=MOODS[opts.mood].grade if opts.mood else None,
                      hold_grain=reading.camera == "static")

        xs = np.arange(W, dtype=np.float32) + 0.5 - W / 2.0
        ys = np.arange(H, dtype=np.float32) + 0.5 - H / 2.0
        gw, gh = max(2, -(-W // _GRID) + 1), max(2, -(-H // _GRID) + 1)
        gx1 = np.linspace(-W / 2.0, W / 2.0, gw, dtype=np.float32)  # the coarse grid's axes (output px from centre)
        gy1 = np.linspace(-H / 2.0, H / 2.0, gh, dtype=np.float32)
        body_unit = amp_px * dens * opts.sway
        edge = None
        if reading.camera == "static":  # a locked-off frame: the subject moves, the frame's edges stay put
            m = 0.08 * H
            ex = np.clip(np.minimum(gx1 + W / 2.0, W / 2.0 - gx1) / m, 0.0, 1.0)
            ey = np.clip(np.minimum(gy1 + H / 2.0, H / 2.0 - gy1) / m, 0.0, 1.0)
            edge = ((ex * ex * (3 - 2 * ex))[None, :] * (ey * ey * (3 - 2 * ey))[:, None]).astype(np.float32)

        meta = {
            "backend": self.backend_id, "version": self.version, "seed": plan.seed,
            "options": opts.model_dump(mode="json"),
            "motion": {
                "read_as": reading.summary(), "ignored": reading.ignored, "resolved": reading.resolved,
                "camera": reading.camera, "faces": len(faces),
                "layers": ("given" if given is not None else "grabcut") if layered else "",
                "blinks": [round(t0 + 0.45 * d, 3) for t0, d in perf.blinks] if faces else [],
                "mood": opts.mood, "graded": bool(opts.mood and light.grade is not None),
                "subjects": [[round(float(f.centre[0]) / dens, 1), round(float(f.centre[1]) / dens, 1), round(f.a / dens, 1)]
                             for f in faces],
            },
        }

        def frames() -> Iterator[np.ndarray]:
            work = canvas.copy()
            dirty: set[tuple[int, int, int, int]] = set()
            for i in range(N):
                t = i / (N - 1) if N > 1 else 0.0
                sec = i / fps
                z, c, zb, cb = cam.at(t, sec)
                k = Cw / (W * (1 + o) * z)  # canvas pixels per output pixel

                # 1. lids and irises, redrawn in the eye regions of the rest canvas
                closure = perf.closure(sec)
                gaze = (perf.gaze_x(sec), perf.gaze_y(sec))
                active = closure > 1e-3 or abs(gaze[0]) > 1e-3 or abs(gaze[1]) > 1e-3
                for f in faces:
                    if active:
                        for roi, mx, my in f.eye_maps(closure, gaze):
                            x0, y0, x1, y1 = roi
                            work[y0:y1, x0:x1] = cv2.remap(canvas, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                            dirty.add(roi)
                if not active and dirty:
                    for x0, y0, x1, y1 in dirty:
                        work[y0:y1, x0:x1] = canvas[y0:y1, x0:x1]
                    dirty.clear()

                # 2. camera + face and body displacement on the coarse grid (backward map by fixed-point iteration)
                gu, gv = gx1 * np.float32(k) + np.float32(c[0]), gy1 * np.float32(k) + np.float32(c[1])
                map_x = np.empty((H, W), np.float32)
                map_y = np.empty((H, W), np.float32)
                map_x[:] = xs * np.float32(k) + np.float32(c[0] - 0.5)
                map_y[:] = (ys * np.float32(k) + np.float32(c[1] - 0.5))[:, None]
                if rigs:
                    yaw, pitch, roll = perf.head(sec)
                    smile = perf.smile(sec)
                    breath, sway = perf.breath(sec) * body_unit, perf.sway(sec) * body_unit
                    dx = np.zeros((gh, gw), np.float32)
                    dy = np.zeros((gh, gw), np.float32)
                    for f in rigs:  # each rig on the part of the grid its box covers
                        x0, y0, x1, y1 = f.box
                        j0, j1 = np.searchsorted(gu, x0), np.searchsorted(gu, x1)
                        i0, i1 = np.searchsorted(gv, y0), np.searchsorted(gv, y1)
                        if j1 <= j0 or i1 <= i0:
                            continue
                        u, v = np.meshgrid(gu[j0:j1], gv[i0:i1])
                        win = window(gu[j0:j1], gv[i0:i1], f.box, f.margin)
                        su, sv = u, v
                        for _ in range(2):  # backward map: the rest point that lands here
                            ddx, ddy = f.displacement(su, sv, yaw, pitch, roll, smile, breath, sway)
                            su, sv = u - ddx * win, v - ddy * win
                        dx[i0:i1, j0:j1] += ddx * win
                        dy[i0:i1, j0:j1] += ddy * win
                    if edge is not None:
                        dx *= edge
                        dy *= edge
                    map_x -= cv2.resize(dx, (W, H), interpolation=cv2.INTER_LINEAR)
                    map_y -= cv2.resize(dy, (W, H), interpolation=cv2.INTER_LINEAR)
                # fixed-point maps: bilinear at 1/32 px, about 4× cheaper than a float cubic remap
                m1, m2 = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
                frame = cv2.remap(work, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

                # 3. with parallax: the background plate on its own camera, the subject over it
                if layered:
                    kb = Cw / (W * (1 + o) * zb)
                    M = np.float32([[kb, 0, cb[0] - 0.5 - kb * W / 2.0], [0, kb, cb[1] - 0.5 - kb * H / 2.0]])
                    bg = cv2.warpAffine(plate, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_REFLECT_101)
                    a = cv2.remap(matte, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[..., None]
                    frame = (bg + (frame.astype(np.float32) - bg) * a)

                # 4. light, grain, the mood's grade
                out = light.apply(frame, i, t)
                if progress is not None:
                    progress(i + 1, N)
                yield out

        return Clip(fps=fps, width=W, height=H, num_frames=N, frames=frames(), meta=meta)

    # -- the camera ----------------------------------------------------------------------------------------

    @staticmethod
    def _camera(reading: Reading, opts, perf: Performance, W, H, Cw, Ch, dens, o, amp, amp_px, push, pull_out,
                pan_dir, pan_amt, target_jitter, shake_phase, side, faces: list[FaceRig]) -> "_Camera":
        """The camera path the prompt asked for (or the seed's gentle push / pull when it asked for none)."""
        c_home = np.array([Cw / 2.0, Ch / 2.0])
        toward = (np.array([float(faces[0].centre[0]), float(faces[0].centre[1])]) - c_home) if faces \
            else target_jitter * np.array([Cw, Ch]) * 0.3
        move, d = reading.camera, reading.camera_direction
        sgn = -1.0 if d in ("left", "up") else (1.0 if d in ("right", "down") else side)
        hand = (opts.handheld if reading.handheld else 0.3 if move == "auto" else 0.0) * amp * amp_px * dens
        guard = 3.0 * dens + 4.0 * amp_px * max(opts.sway, 0.0) * dens + 2.0 * hand
        cam = _Camera(c_home, guard, Cw, Ch, W, H, o, hand, shake_phase, reading.camera_speed)
        if move == "auto":
            p = push * amp
            cam.z0, cam.z1 = (1.0 + p, 1.0) if pull_out else (1.0, 1.0 + p)
            far = c_home + toward * (1.0 - 1.0 / (1.0 + p)) + pan_dir * pan_amt * amp * W * dens
            cam.c0, cam.c1 = (far, c_home) if pull_out else (c_home, far)
        elif move in ("push_in", "pull_out"):
            p = opts.push[1] * amp
            far = c_home + toward * (1.0 - 1.0 / (1.0 + p))
            cam.z0, cam.z1, cam.c0, cam.c1 = (1.0, 1.0 + p, c_home, far) if move == "push_in" else (1.0 + p, 1.0, far, c_home)
            cam.dolly = 0.45  # the background grows less than the subject: a dolly, not a zoom
            cam.parallax = True
        elif move in ("pan", "tilt"):
            p = max(opts.pan, 0.02) * amp
            axis = np.array([W, 0.0]) if move == "pan" else np.array([0.0, H])
            cam.z0 = cam.z1 = 1.0 + p * 1.1
            cam.c0, cam.c1 = c_home - sgn * axis * dens * p / 2.0, c_home + sgn * axis * dens * p / 2.0
        elif move == "orbit":
            p = opts.parallax * amp
            cam.z0 = cam.z1 = 1.0 + 2.2 * p
            cam.c0, cam.c1 = c_home - sgn * np.array([W * dens * p * 0.3, 0.0]), c_home + sgn * np.array([W * dens * p * 0.3, 0.0])
            cam.bg_shift = -sgn * np.array([W * dens * p, 0.0])
            cam.parallax = True
        elif move == "handheld":
            cam.z0 = cam.z1 = 1.0 + 4.0 * hand / (W * dens)
        return cam


class _Camera:
    """Zoom and centre (canvas pixels) over the shot, for the subject and for the background plate."""

    def __init__(self, c_home, guard, Cw, Ch, W, H, o, hand, phase, speed) -> None:
        self.c0 = self.c1 = c_home
        self.z0 = self.z1 = 1.0
        self.guard, self.Cw, self.Ch, self.W, self.H, self.o = guard, Cw, Ch, W, H, o
        self.hand, self.phase, self.speed = hand, phase, speed
        self.dolly = 1.0
        self.bg_shift = np.zeros(2)
        self.parallax = False

    def _clamp(self, c: np.ndarray, z: float) -> np.ndarray:
        k = self.Cw / (self.W * (1 + self.o) * z)
        hw, hh = k * self.W / 2.0 + self.guard, k * self.H / 2.0 + self.guard
        cx = min(max(c[0], hw), self.Cw - hw) if self.Cw > 2 * hw else self.Cw / 2.0
        cy = min(max(c[1], hh), self.Ch - hh) if self.Ch > 2 * hh else self.Ch / 2.0
        return np.array([cx, cy])

    def at(self, t: float, sec: float) -> tuple[float, np.ndarray, float, np.ndarray]:
        q = min(1.0, t / 0.55) if self.speed == "quick" else t
        e = _ease(q)
        z = self.z0 + (self.z1 - self.z0) * e
        c = self.c0 + (self.c1 - self.c0) * _smoothstep(q)
        if self.hand:
            ph = self.phase
            c = c + self.hand * np.array([
                0.55 * math.sin(2 * math.pi * 0.83 * sec + ph[0]) + 0.3 * math.sin(2 * math.pi * 1.9 * sec + ph[1]) + 0.15 * math.sin(2 * math.pi * 0.21 * sec + ph[4]),
                0.55 * math.sin(2 * math.pi * 0.71 * sec + ph[2]) + 0.3 * math.sin(2 * math.pi * 1.6 * sec + ph[3]) + 0.15 * math.sin(2 * math.pi * 0.17 * sec + ph[5]),
            ])
        zb = 1.0 + (z - 1.0) * self.dolly
        cb = c + self.bg_shift * (_smoothstep(q) - 0.5) * 2.0
        return z, self._clamp(c, z), zb, self._clamp(cb, zb)
