"""Stitch accepted takes into an episode: title and end cards, a transition per cut (optionally on
beats), captions, the disclosure label, finishing (grade, LUT, upscale), an ambience or user sound
bed, and a contact sheet.

Frames are streamed: each take is decoded with ``media.iter_frames`` and written with
``media.VideoWriter``; only the frames of one transition overlap are held at a time. When nothing
needs a new picture (hard cuts only, no overlay, no finishing, takes already in the episode's
format) the takes are joined without re-encoding (ffmpeg's concat demuxer, ``-c copy``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from . import audio, captions as _captions, media
from .errors import MediaError
from .finishing import Finisher
from .specs import Caption, EndCard, Grade, Transition
from .transitions import Join, snap_to_beats, starts_of
from .workspace import atomic_path

SAMPLE_RATE = 48000
AUDIO_CUT_XFADE = 0.25  # seconds of equal-power crossfade where the bed changes at a hard cut
EDGE_FADE = 0.5  # seconds of fade from black at the start and to black at the end

Progress = Callable[[int, int], None]

_font = _captions.font


@dataclass
class Segment:
    """One accepted take to place in the episode."""

    path: Path
    start: int = 0
    end: int | None = None
    label: str = ""
    verdict: str = "accept"
    ambience: str | None = None
    reason: str = ""  # shown on the contact sheet for shots left out of the episode
    transition: Transition | None = None  # the cut into this shot (default: the episode's)
    captions: list[Caption] = field(default_factory=list)
    audio: Path | None = None  # a user's sound file under this shot instead of the ambience
    grade: Grade | None = None  # the take's mood grade, applied before the episode's finish
    mood: str = ""


@dataclass
class TimelineEntry:
    """Where one piece (a card or a shot) sits in the episode, in seconds and frames."""

    kind: str  # "title" | "shot" | "end"
    label: str
    start: float
    end: float
    frames: int
    first_frame: int
    path: Path | None = None
    verdict: str = ""
    ambience: str = ""
    transition_in: str = ""  # e.g. "crossfade 0.75s", "cut @ beat 6.5s"


@dataclass
class EpisodeInfo:
    path: Path
    duration: float
    frames: int
    fps: int
    timeline: list[TimelineEntry]
    contact_sheet: Path | None = None
    notes: list[str] = field(default_factory=list)
    reencoded: bool = True  # False when the takes were joined with -c copy
    join: "JoinPlan | None" = None  # the copy-join estimate, when the takes could have been copied

    @property
    def title_only(self) -> bool:
        """True when no shot made it into the episode (every take was rejected)."""
        return not any(e.kind == "shot" for e in self.timeline)


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


@dataclass
class _Item:
    kind: str
    label: str
    frames: int
    ambience: str
    segment: Segment | None = None
    start: int = 0
    size: tuple[int, int] | None = None  # decode-time scale, None = native
    src_size: tuple[int, int] | None = None
    sound: tuple[str, str] = ("ambience", "carriage")  # ("ambience", name) | ("file", path)
    info: dict | None = None  # the take's media.probe() (ffprobe-shaped)
    total: int = 0  # frames in the take


def _frame_count(info: dict, path: Path) -> int:
    v = media.video_stream(info, path)
    n = v.get("nb_frames")
    return int(n) if n and str(n).isdigit() and int(n) > 0 else media.count_frames(path)


def _inspect(seg: Segment, idx: int, fps: int, width: int, height: int, ambience: str, notes: list[str],
             scale_on_decode: bool = True) -> _Item:
    path = Path(seg.path)
    label = seg.label or path.stem
    info = media.probe(path)
    v = media.video_stream(info, path)
    total = _frame_count(info, path)
    src_fps = media.fps_of(v)
    if src_fps and abs(src_fps - fps) > 0.01:
        notes.append(f"shot {label!r}: take is {src_fps:g} fps, episode is {fps} fps; frames are used one for one")
    if seg.start < 0:
        raise ValueError(f"segment {idx} ({label}): start must be >= 0, got {seg.start}")
    end = total if seg.end is None else seg.end
    if end > total:
        notes.append(f"shot {label!r}: end {end} is past the take's {total} frames; kept to {total}")
        end = total
    if end <= seg.start:
        raise ValueError(f"segment {idx} ({label}): keeps no frames (start {seg.start}, end {end}, take has {total})")
    src = (int(v["width"]), int(v["height"]))
    size = None
    if src != (width, height):
        if scale_on_decode:
            size = (width, height)
        notes.append(f"shot {label!r}: scaled from {src[0]}x{src[1]} to {width}x{height}")
    amb = seg.ambience or ambience
    sound = ("file", str(seg.audio)) if seg.audio else ("ambience", amb)
    return _Item("shot", label, end - seg.start, amb, seg, seg.start, size, src, sound, info, total)


def _describe(t: Transition, j: Join | None = None) -> str:
    s = t.type if t.type == "cut" else f"{t.type} {t.duration:g}s"
    if j is not None and j.snapped_to is not None:
        s += f" @ beat {j.snapped_to:g}s"
    return s


# ---------------------------------------------------------------------------
# Title card
# ---------------------------------------------------------------------------


def _background(width: int, height: int) -> np.ndarray:
    """Deep blue-grey vertical gradient with a soft warm glow behind the title; float32 RGB 0..255."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    top, bottom = np.array([24, 27, 40], np.float32), np.array([7, 8, 13], np.float32)
    bg = top * (1 - y) + bottom * y
    r2 = (x * 0.9) ** 2 + ((y - 0.48) * 2.0) ** 2
    bg = bg + np.exp(-r2 * 2.2) * np.array([26, 20, 14], np.float32)
    # A fixed ±0.5 dither keeps the gradient from banding after 8-bit / H.264.
    rng = np.random.default_rng(0)
    bg = bg + rng.uniform(-0.5, 0.5, size=(height, width, 1)).astype(np.float32)
    return np.clip(bg, 0, 255)


def _text_layer(title: str, width: int, height: int, small: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, alpha) float32 of the title: large, centred, with a soft shadow and a thin rule below."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    if not title.strip():
        return np.zeros((height, width, 3), np.float32), np.zeros((height, width, 1), np.float32)
    size = max(8, int(height * (0.1 if small else 0.15)))
    while True:
        font = _font(size, bold=True)
        l, t, r, b = font.getbbox(title)
        if r - l <= width * 0.84 or size <= 8:
            break
        size = int(size * 0.92)
    tw, th = r - l, b - t
    x0 = (width - tw) / 2 - l
    y0 = height * 0.47 - th / 2 - t
    shadow = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).text((x0, y0 + max(1, size // 24)), title, font=font, fill=(0, 0, 0, 170))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1, size // 14)))
    layer = Image.alpha_composite(layer, shadow)
    draw = ImageDraw.Draw(layer)
    draw.text((x0, y0), title, font=font, fill=(242, 236, 224, 255))
    rule_w = min(tw * 0.35, width * 0.3)
    ry = y0 + t + th + max(6, int(size * 0.45))
    draw.rectangle(
        [width / 2 - rule_w / 2, ry, width / 2 + rule_w / 2, ry + max(1, height // 240)], fill=(214, 170, 98, 220)
    )
    arr = np.asarray(layer, dtype=np.float32)
    return arr[..., :3], arr[..., 3:4] / 255.0


def _smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


def title_frames(title: str, n: int, width: int, height: int, fps: int, small: bool = False) -> Iterator[np.ndarray]:
    """A card's ``n`` frames (title, or with ``small`` the end card): the text eases in, holds, and eases out."""
    bg = _background(width, height)
    rgb, alpha = _text_layer(title, width, height, small)
    ramp = max(1.0, min(0.6 * fps, n / 4))
    lead = min(0.15 * fps, n / 10)
    for i in range(n):
        a = _smoothstep((i - lead) / ramp) * _smoothstep((n - 1 - i) / ramp)
        frame = bg * (1 - alpha * a) + rgb * (alpha * a)
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# Frame sources and blending
# ---------------------------------------------------------------------------


def _shot_frames(item: _Item) -> Iterator[np.ndarray]:
    """The kept frames of a take; decoding stops at the trim end."""
    assert item.segment is not None
    stop = item.start + item.frames
    for i, frame in enumerate(media.iter_frames(item.segment.path, size=item.size, max_frames=stop)):
        if i >= item.start:
            yield frame


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    out = a.astype(np.float32) * (1.0 - w) + b.astype(np.float32) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _scale(frame: np.ndarray, g: float) -> np.ndarray:
    if g >= 1.0:
        return frame
    return np.clip(frame.astype(np.float32) * max(g, 0.0) + 0.5, 0, 255).astype(np.uint8)


def _finished_shot(item: _Item, finisher: Finisher | None, fps: int, width: int, height: int) -> Iterator[np.ndarray]:
    """A shot's frames with the take's mood grade, the episode's finish and its captions."""
    seg = item.segment
    assert seg is not None
    caps = [(_captions.caption(c.text, c.position, width, height), c.start,
             c.start + c.duration if c.duration is not None else item.frames / fps) for c in seg.captions]
    for j, frame in enumerate(_shot_frames(item)):
        if finisher is not None:
            frame = finisher(frame, seg.grade)
        elif seg.grade is not None:
            from .finishing import apply_grade

            frame = apply_grade(frame, seg.grade)
        if frame.shape[:2] != (height, width):  # no finisher and a take of another size: scaled on decode
            raise MediaError(f"shot {item.label!r}: frame is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
        t = j / fps
        for overlay, t0, t1 in caps:
            frame = overlay.over(frame, _captions.caption_opacity(t, t0, t1))
        yield frame


# ---------------------------------------------------------------------------
# Audio bed
# ---------------------------------------------------------------------------


def _episode_audio(
    items: list[_Item], joins: list[Join], starts: list[int], total: int, fps: int, seed: int, sr: int
) -> np.ndarray:
    """Sound for the whole episode: one continuous bed per run of equal sources (an ambience or a
    user's file), equal-power crossfaded where the source changes, faded at both ends, at -16 LUFS."""
    n_total = int(round(total / fps * sr))
    runs: list[tuple[str, str]] = [items[0].sound]
    changes: list[tuple[float, float]] = []  # (centre, length) in seconds of each change of source
    for i, j in enumerate(joins):
        if items[i + 1].sound == items[i].sound:
            continue
        end_a = (starts[i] + items[i].frames) / fps
        start_b = starts[i + 1] / fps
        if j.kind == "crossfade" and j.overlap > 0:
            centre, length = (start_b + end_a) / 2, j.overlap / fps
        elif j.kind == "dip-to-black" and (j.fade_in + j.fade_out) > 0:
            centre, length = start_b, (j.fade_in + j.fade_out) / fps
        else:
            centre, length = start_b, AUDIO_CUT_XFADE
        changes.append((centre, length))
        runs.append(items[i + 1].sound)
    bed = np.zeros((n_total, 2), dtype=np.float32)
    for r, (kind, name) in enumerate(runs):
        t0 = changes[r - 1][0] - changes[r - 1][1] / 2 if r > 0 else 0.0
        t1 = changes[r][0] + changes[r][1] / 2 if r < len(changes) else n_total / sr
        s0, s1 = max(0, int(round(t0 * sr))), min(n_total, int(round(t1 * sr)))
        if s1 <= s0:
            continue
        if kind == "file":
            x = audio.load_file(name, (s1 - s0) / sr, sr)[: s1 - s0]
        else:
            run_seed = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
            x = audio.ambience(name, (s1 - s0) / sr, sr, seed=run_seed)[: s1 - s0]
        if r > 0:  # fade in over the crossfade with the previous run
            m = min(int(round(changes[r - 1][1] * sr)), x.shape[0])
            x[:m] *= audio.equal_power_ramps(m)[1].astype(np.float32)[:, None]
        if r < len(changes):
            m = min(int(round(changes[r][1] * sr)), x.shape[0])
            x[x.shape[0] - m :] *= audio.equal_power_ramps(m)[0].astype(np.float32)[:, None]
        bed[s0 : s0 + x.shape[0]] += x
        del x
    dur = n_total / sr
    bed = audio.fade(bed, sr, fade_in=min(0.5, dur / 4), fade_out=min(1.0, dur / 4))
    return audio.normalize(bed, sr, audio.TARGET_LUFS, audio.CEILING_DBFS)


# ---------------------------------------------------------------------------
# Contact sheet
# ---------------------------------------------------------------------------

_VERDICT_COLOURS = {
    "accept": (63, 185, 80),
    "trim": (210, 153, 34),
    "retry": (88, 166, 255),
    "reject": (248, 81, 73),
}
THUMB_W = 320
_CARD_PAD, _CARD_GAP, _CARD_CAP_H, _HEAD_H = 28, 18, 58, 96


def _clock(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def _thumb(frame: np.ndarray, tw: int) -> Image.Image:
    h, w = frame.shape[:2]
    return Image.fromarray(frame).resize((tw, max(1, round(tw * h / w))), Image.LANCZOS)


def ellipsize(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: float) -> str:
    """``text`` shortened with a trailing ``…`` until it fits ``width`` pixels (never below 4 characters)."""
    while draw.textlength(text, font=font) > width and len(text) > 4:
        text = text.rstrip("…")[:-1] + "…"
    return text


class Thumbnails:
    """The contact sheet's pictures, collected while the episode is written: each shot's middle frame
    (by shot number) and the title card's. Both writers pass their frame sources through :meth:`tap`."""

    def __init__(self, items: list[_Item], enabled: bool) -> None:
        self.enabled = enabled
        self.shot_no = {i: n for n, i in enumerate(i for i, it in enumerate(items) if it.kind == "shot")}
        self.shots: dict[int, Image.Image] = {}
        self.title: Image.Image | None = None

    def put(self, i: int, item: _Item, frame: np.ndarray) -> None:
        """Keep ``frame`` as the picture of item ``i``."""
        if item.kind == "shot":
            self.shots[self.shot_no[i]] = _thumb(frame, THUMB_W)
        elif item.kind == "title":
            self.title = _thumb(frame, THUMB_W)

    def tap(self, frames: Iterator[np.ndarray], i: int, item: _Item) -> Iterator[np.ndarray]:
        """``frames`` unchanged, keeping the middle one of item ``i``."""
        mid = item.frames // 2
        for j, f in enumerate(frames):
            if j == mid and self.enabled:
                self.put(i, item, f)
            yield f


@dataclass
class _Grid:
    """Where the cards of a contact sheet go."""

    cols: int
    tw: int
    th: int

    def at(self, k: int) -> tuple[int, int]:
        return (_CARD_PAD + (k % self.cols) * (self.tw + _CARD_GAP),
                _HEAD_H + _CARD_PAD + (k // self.cols) * (self.th + _CARD_CAP_H + _CARD_GAP))


def _verdict_badge(d: ImageDraw.ImageDraw, x: int, y: int, tw: int, th: int, verdict: str) -> None:
    f_badge = _font(12, bold=True)
    text = verdict.upper()
    vw = d.textlength(text, font=f_badge) + 14
    d.rounded_rectangle([x + tw - vw, y + th + 8, x + tw, y + th + 28], radius=9,
                        fill=_VERDICT_COLOURS.get(verdict, (140, 140, 150)))
    d.text((x + tw - vw + 7, y + th + 11), text, font=f_badge, fill=(16, 18, 22))


def _shot_card(sheet: Image.Image, d: ImageDraw.ImageDraw, grid: _Grid, k: int, e: TimelineEntry,
               img: Image.Image | None) -> None:
    x, y = grid.at(k)
    tw, th = grid.tw, grid.th
    if img is not None:
        sheet.paste(img.resize((tw, th)), (x, y))
    d.rectangle([x - 1, y - 1, x + tw, y + th], outline=(60, 64, 76))
    f_badge, f_id = _font(12, bold=True), _font(16, bold=True)
    badge = f"{k + 1}"
    bw = d.textlength(badge, font=f_badge) + 12
    d.rounded_rectangle([x + 6, y + 6, x + 6 + bw, y + 26], radius=4, fill=(0, 0, 0))
    d.text((x + 12, y + 9), badge, font=f_badge, fill=(235, 235, 235))
    d.text((x, y + th + 8), ellipsize(d, e.label, f_id, tw - 90), font=f_id, fill=(236, 236, 240))
    _verdict_badge(d, x, y, tw, th, e.verdict)
    meta = f"{_clock(e.start)}–{_clock(e.end)}  ·  {e.frames} fr  ·  {e.ambience}"
    d.text((x, y + th + 34), meta, font=_font(13), fill=(150, 156, 170))


def _middle_of(path: Path) -> np.ndarray | None:
    try:
        frame = None
        for frame in media.iter_frames(path, max_frames=media.count_frames(path) // 2 + 1):
            pass  # keep the middle frame
        return frame
    except Exception:  # a missing take still gets its card
        return None


def _left_out_card(sheet: Image.Image, d: ImageDraw.ImageDraw, grid: _Grid, k: int, seg: Segment) -> None:
    x, y = grid.at(k)
    tw, th = grid.tw, grid.th
    frame = _middle_of(seg.path)
    if frame is not None:
        img = _thumb(frame, tw).resize((tw, th)).convert("L").convert("RGB")  # grey: not in the episode
        sheet.paste(img, (x, y))
    d.rectangle([x - 1, y - 1, x + tw, y + th], outline=_VERDICT_COLOURS["reject"], width=2)
    f_id, f_small = _font(16, bold=True), _font(13)
    d.text((x, y + th + 8), ellipsize(d, seg.label, f_id, tw - 90), font=f_id, fill=(236, 236, 240))
    _verdict_badge(d, x, y, tw, th, seg.verdict)
    reason = ellipsize(d, "left out: " + (seg.reason or "drifted"), f_small, tw)
    d.text((x, y + th + 34), reason, font=f_small, fill=(150, 156, 170))


def _contact_sheet(path: Path, title: str, info: EpisodeInfo, transitions: str, thumbs: Thumbnails,
                   size: tuple[int, int], left_out: list[Segment] = ()) -> None:
    shots = [e for e in info.timeline if e.kind == "shot"]
    tw = THUMB_W
    th = max(1, round(tw * size[1] / size[0]))
    cards = len(shots) + len(left_out)
    grid = _Grid(max(1, min(4, cards or 1)), tw, th)
    rows = max(1, -(-cards // grid.cols))
    f_title, f_sub = _font(30, bold=True), _font(15)
    sub = (
        f"{len(shots)} shot{'s' if len(shots) != 1 else ''}"
        f"{f' ({len(left_out)} left out)' if left_out else ''}  ·  {_clock(info.duration)}  ·  {info.frames} frames "
        f"@ {info.fps} fps  ·  {size[0]}×{size[1]}  ·  {transitions}"
    )
    pad = _CARD_PAD
    probe_d = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(probe_d.textlength(sub, font=f_sub), probe_d.textlength(title or "", font=f_title))
    W = max(pad * 2 + grid.cols * tw + (grid.cols - 1) * _CARD_GAP, int(text_w) + pad * 2)
    H = _HEAD_H + pad + rows * (th + _CARD_CAP_H) + (rows - 1) * _CARD_GAP + pad
    sheet = Image.new("RGB", (W, H), (17, 19, 24))
    d = ImageDraw.Draw(sheet)
    d.text((pad, pad - 4), title or "Untitled episode", font=f_title, fill=(242, 236, 224))
    d.text((pad, pad + 40), sub, font=f_sub, fill=(150, 156, 170))
    d.line([(pad, _HEAD_H + 4), (W - pad, _HEAD_H + 4)], fill=(48, 52, 62), width=1)
    if not shots:
        x, y = grid.at(0)
        if thumbs.title is not None:
            sheet.paste(thumbs.title.resize((tw, th)), (x, y))
        d.rectangle([x - 1, y - 1, x + tw, y + th], outline=(60, 64, 76))
        d.text((x, y + th + 10), "No accepted shots: title card only", font=_font(16, bold=True),
               fill=_VERDICT_COLOURS["reject"])
    for k, e in enumerate(shots):
        _shot_card(sheet, d, grid, k, e, thumbs.shots.get(k))
    for k, seg in enumerate(left_out, start=len(shots)):
        _left_out_card(sheet, d, grid, k, seg)
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG", optimize=True)


# ---------------------------------------------------------------------------
# Joining without re-encoding
# ---------------------------------------------------------------------------


def _copyable(items: list[_Item], joins: list[Join], fps: int, width: int, height: int, disclosure: str | None,
              finisher: Finisher | None) -> str | None:
    """None when the takes can be joined with ``-c copy``, else the reason they cannot."""
    if disclosure:
        return "the disclosure label is drawn on every frame"
    if any(j.kind != "cut" for j in joins):
        return "a transition blends frames"
    for it in items:
        if it.kind != "shot":
            continue
        seg = it.segment
        assert seg is not None
        if seg.captions:
            return f"shot {it.label!r} has captions"
        if seg.grade is not None and seg.grade != Grade():
            return f"shot {it.label!r} has a mood grade"
        if finisher is not None and not finisher.is_identity(it.src_size or (width, height)):
            return "the episode has finishing (grade, LUT, upscale or sharpening)"
        if it.src_size != (width, height):
            return f"shot {it.label!r} is not {width}x{height}"
        info = it.info or media.probe(seg.path)
        v = media.video_stream(info, seg.path)
        if (v.get("codec_name"), v.get("pix_fmt")) != ("h264", "yuv420p") or abs(media.fps_of(v) - fps) > 0.01:
            return f"shot {it.label!r} is not H.264 yuv420p at {fps} fps"
        if it.start != 0 or it.frames != it.total:
            return f"shot {it.label!r} is trimmed"
        if v.get("time_base") != f"1/{_mp4_timescale(fps)}":
            return f"shot {it.label!r} has time base {v.get('time_base')}, not 1/{_mp4_timescale(fps)}"
    delays = {int(media.video_stream(it.info or {}, "").get("has_b_frames") or 0) for it in items
              if it.kind == "shot" and it.info}
    if len(delays) > 1:
        return "the takes differ in B-frame reorder delay"
    return None


def _mp4_timescale(fps: int) -> int:
    """The MP4 track timescale ffmpeg gives an ``fps`` video (doubled until at least 10000)."""
    ts = int(fps)
    while ts < 10000:
        ts *= 2
    return ts


def _reorder_delay(items: list[_Item]) -> int:
    for it in items:
        if it.kind == "shot" and it.info:
            return int(media.video_stream(it.info, "").get("has_b_frames") or 0)
    return 0


# Cost model of the two ways to write an episode whose takes could be copied, calibrated with
# scripts/bench_stitch.py (2 shared cores, libx264 veryfast; see docs/episodes.md, "Choosing the join").
JOIN_PROCESS_S = 0.11
"""Seconds one extra ffmpeg process costs (start-up, probing its input, pipes)."""
JOIN_PIXEL_S = 3.4e-8
"""Seconds re-encoding costs per pixel of a frame at preset veryfast (decode to RGB + finish + encode)."""
PRESET_COST = {"ultrafast": 0.55, "superfast": 0.65, "veryfast": 1.0, "faster": 1.5, "fast": 1.8,
               "medium": 2.2, "slow": 3.2, "slower": 5.0, "veryslow": 8.0, "placebo": 12.0}
"""Encode cost of each libx264 preset relative to veryfast (decoding to RGB does not change)."""


@dataclass
class JoinPlan:
    """Which items :func:`stitch_episode` copies and what each path is estimated to cost."""

    copy: bool
    copied: list[int]  # indexes into the items of the takes copied as they are
    copied_frames: int
    extra_processes: int  # processes the copy join starts beyond re-encoding (may be negative)
    copy_saves_s: float  # estimated seconds the copy join saves (negative: it costs more)
    reason: str


def plan_join(frames: list[int], kinds: list[str], width: int, height: int, preset: str = "veryfast",
              contact_sheet: bool = True) -> JoinPlan:
    """Decide between the copy join and re-encoding for an episode whose takes could be copied.

    ``frames``/``kinds`` describe the items in order (``title`` | ``shot`` | ``end``). The first and
    last items are always encoded (they carry the fades from and to black), as are the cards; every
    other shot is copied. Copying saves decoding and re-encoding the copied frames
    (``frames × width × height × JOIN_PIXEL_S``, scaled by the preset's encode cost) and the two
    processes that would decode each copied take (a probe and a decoder); it costs one encoder per
    encoded piece beyond the first, the joining process, and one process that decodes the
    contact sheet's thumbnails of the copied takes. The copy join is chosen when it saves time.
    """
    n = len(frames)
    copied = [i for i in range(1, n - 1) if kinds[i] == "shot"]
    copied_frames = sum(frames[i] for i in copied)
    if not copied:
        return JoinPlan(False, [], 0, 0, 0.0, "no take would be copied (the first and last pieces carry the fades)")
    encoded_pieces = n - len(copied)
    extra = (encoded_pieces - 1) + 1 + (1 if contact_sheet else 0) - 2 * len(copied)
    enc = PRESET_COST.get(preset, 2.2)
    per_frame = width * height * JOIN_PIXEL_S * (0.5 + 0.5 * enc)
    thumbs = 0.25 * copied_frames * width * height * JOIN_PIXEL_S if contact_sheet else 0.0  # decode to mid-take
    saves = copied_frames * per_frame - thumbs - extra * JOIN_PROCESS_S
    copy = saves > 0
    why = (f"copying {copied_frames} frames of {len(copied)} take(s) saves ~{saves:.2f} s"
           if copy else f"re-encoding is estimated {-saves:.2f} s faster than copying {copied_frames} frames")
    return JoinPlan(copy, copied, copied_frames, extra, saves, why)


class _PieceWriter:
    """libx264 into MP4, a piece of a copy join: the same time base as the takes (same fps) and the
    same B-frame reorder delay, so the joined timestamps run on without a gap or an overlap."""

    def __init__(self, path: Path, width: int, height: int, fps: int, crf: int, preset: str, delay: int) -> None:
        self.path = path
        bframes = "bframes=0" if delay <= 0 else ("bframes=3:b-pyramid=none" if delay == 1 else "bframes=3:b-pyramid=normal")
        self.cmd = [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-",
                    "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-x264-params", bframes,
                    "-pix_fmt", "yuv420p", "-f", "mp4", str(path)]

    def run(self, frames: Iterator[np.ndarray], n: int, fade_in: int, fade_out: int) -> int:
        proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        written = 0
        try:
            for i, f in enumerate(frames):
                g = min(1.0, (i / fade_in) if fade_in else 1.0, ((n - 1 - i) / fade_out) if fade_out else 1.0)
                proc.stdin.write(np.ascontiguousarray(_scale(f, g)).tobytes())
                written += 1
        except BrokenPipeError:
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            err = proc.stderr.read() if proc.stderr else b""
            rc = proc.wait()
        if rc != 0:
            raise MediaError(f"ffmpeg failed encoding {self.path.name}: {err.decode('utf-8', 'replace')[-600:].strip()}")
        return written


def _middle_frames(paths: list[Path], indexes: list[int], tmpdir: Path) -> list[np.ndarray | None]:
    """Frame ``indexes[k]`` of each ``paths[k]``, all decoded by one ffmpeg process (for thumbnails)."""
    if not paths:
        return []
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    for p in paths:
        cmd += ["-i", str(p)]
    graph, outs = [], []
    for k, idx in enumerate(indexes):
        graph.append(f"[{k}:v:0]trim=end_frame={idx + 1},select='eq(n\\,{idx})'[t{k}]")
        outs += ["-map", f"[t{k}]", "-frames:v", "1", "-c:v", "bmp", "-f", "image2", str(tmpdir / f"thumb{k:03d}.bmp")]
    r = subprocess.run(cmd + ["-filter_complex", ";".join(graph)] + outs, capture_output=True)
    frames: list[np.ndarray | None] = []
    for k in range(len(paths)):
        f = tmpdir / f"thumb{k:03d}.bmp"
        frames.append(np.asarray(Image.open(f).convert("RGB")) if r.returncode == 0 and f.is_file() else None)
    return frames


def _concat_copy(pieces: list[tuple[Path, int]], fps: int, wav: Path, out: Path, tmpdir: Path) -> None:
    """Join the MP4 pieces with ``-c:v copy`` and mux the sound bed as AAC, +faststart, in one ffmpeg.

    The concat demuxer (``auto_convert``) passes each piece through h264_mp4toannexb, so every
    piece carries its own SPS/PPS in-band and pieces from different encodes decode cleanly.
    """
    lst = tmpdir / "pieces.txt"
    lst.write_text("".join(f"file '{p.as_posix()}'\nduration {n / fps:.6f}\n" for p, n in pieces))
    cmd = [media.ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-auto_convert", "1", "-i", str(lst),
           "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "160k",
           "-shortest", "-movflags", "+faststart", "-f", "mp4", str(out)]
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        raise MediaError(f"ffmpeg failed joining {out}: {r.stderr.decode('utf-8', 'replace')[-800:].strip()}")


# ---------------------------------------------------------------------------
# The entry point: options, the timeline layout, two writers
# ---------------------------------------------------------------------------


@dataclass
class StitchOptions:
    """How :func:`stitch_episode` builds an episode.

    Attributes:
        fps, width, height: the episode's delivery format; takes of another size are resampled
            (by ``finisher`` when given: Lanczos + sharpening, else bicubic on decode).
        title: text of the title card; ``title_duration`` its length in seconds (0 = none,
            unless there are no segments, when 2 s are used).
        transition: the default cut between pieces (a segment's ``transition`` overrides it for
            the cut into that segment).
        ambience: the bed under the episode; a segment's own ``ambience`` or ``audio`` overrides it.
        seed: seeds the ambience synthesis.
        crf, preset: libx264 settings.
        contact_sheet: where to write a PNG with one thumbnail per shot, if given.
        left_out: shots left out of the episode, shown greyed on the contact sheet.
        progress: called as ``progress(frames_done, frames_total)`` while writing.
        end_card: a closing card after the last shot.
        beats: marks (seconds) that cuts whose transition has ``on_beat`` snap to (by shortening
            the piece before the cut).
        disclosure: the label drawn in a corner of every frame (None = no label).
        finisher: grade, LUT and resampling applied identically to every shot.
        copy_when_possible: join with ``-c copy`` when nothing needs new pictures and
            :func:`plan_join` estimates it is faster (False: always re-encode).
        join: ``"auto"`` (the above), ``"copy"`` (copy whenever nothing needs new pictures, whatever
            the estimate) or ``"encode"`` (always re-encode).

    Raises:
        ValueError: bad format, an unknown ambience, or a segment that keeps no frames.
        MediaError: ffmpeg could not read a take or write the episode.
    """

    fps: int
    width: int
    height: int
    title: str
    transition: Transition
    title_duration: float = 2.0
    ambience: str = "carriage"
    seed: int = 0
    crf: int = 18
    preset: str = "medium"
    contact_sheet: Path | None = None
    left_out: list[Segment] | None = None
    progress: Progress | None = None
    end_card: EndCard | None = None
    beats: list[float] | None = None
    disclosure: str | None = None
    finisher: Finisher | None = None
    copy_when_possible: bool = True
    join: str = "auto"

    def validate(self, segments: list[Segment]) -> None:
        """ValueError on a bad format, an unknown ambience or join, or a finisher of another size."""
        if self.fps <= 0 or self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"episode format must be positive with even width/height, got {self.width}x{self.height} "
                             f"@ {self.fps} fps")
        for name in [self.ambience] + [s.ambience for s in segments if s.ambience]:
            if name not in audio.AMBIENCES:
                raise ValueError(f"unknown ambience {name!r}; available: {', '.join(sorted(audio.AMBIENCES))}")
        if self.finisher is not None and self.finisher.size != (self.width, self.height):
            raise ValueError(f"finisher delivers {self.finisher.size[0]}x{self.finisher.size[1]}, "
                             f"episode is {self.width}x{self.height}")
        if self.join not in ("auto", "copy", "encode"):
            raise ValueError(f"join must be auto, copy or encode, got {self.join!r}")


@dataclass
class Timeline:
    """The episode laid out: its pieces (cards and kept takes) with their cuts, first frames and fades."""

    items: list[_Item]
    transitions: list[Transition]  # the cut into items[i + 1]
    joins: list[Join]
    starts: list[int]  # first frame of each item in the episode
    total: int  # frames in the episode
    edge: int  # frames of fade from black / to black at the ends
    notes: list[str]

    def entries(self, fps: int) -> list[TimelineEntry]:
        return [
            TimelineEntry(
                kind=it.kind, label=it.label, start=self.starts[i] / fps, end=(self.starts[i] + it.frames) / fps,
                frames=it.frames, first_frame=it.start, path=Path(it.segment.path) if it.segment else None,
                verdict=it.segment.verdict if it.segment else "",
                ambience=it.sound[1] if it.sound[0] == "ambience" else Path(it.sound[1]).name,
                transition_in=_describe(self.transitions[i - 1], self.joins[i - 1]) if i > 0 else "",
            )
            for i, it in enumerate(self.items)
        ]


def lay_out(segments: list[Segment], o: StitchOptions) -> Timeline:
    """Inspect the takes and place the cards and kept takes, with each cut's transition snapped to beats."""
    notes: list[str] = []
    items = [_inspect(s, i, o.fps, o.width, o.height, o.ambience, notes, scale_on_decode=o.finisher is None)
             for i, s in enumerate(segments)]
    n_title = int(round(o.title_duration * o.fps))
    if not items:
        notes.append("no accepted shots: the episode is the title card alone")
        n_title = n_title or int(round(2.0 * o.fps))
    bed_sound = ("ambience", o.ambience)
    if n_title > 0:
        items.insert(0, _Item("title", o.title, n_title, o.ambience, sound=bed_sound))
    if o.end_card is not None and any(it.kind == "shot" for it in items):
        items.append(_Item("end", o.end_card.text, int(round(o.end_card.duration * o.fps)), o.ambience, sound=bed_sound))
    transitions = [
        (items[i + 1].segment.transition if items[i + 1].segment and items[i + 1].segment.transition else o.transition)
        for i in range(len(items) - 1)
    ]
    lengths, joins = snap_to_beats([it.frames for it in items], transitions, o.fps, list(o.beats or []),
                                   [max(1, int(it.frames * 0.6)) for it in items])
    for it, n in zip(items, lengths):
        if n != it.frames:
            notes.append(f"{it.kind} {it.label!r}: shortened by {it.frames - n} frame(s) to cut on a beat")
            it.frames = n
    starts = starts_of(lengths, joins)
    total = starts[-1] + items[-1].frames
    edge = min(int(round(EDGE_FADE * o.fps)), total // 4)
    return Timeline(items, transitions, joins, starts, total, edge, notes)


def _card(it: _Item, o: StitchOptions) -> Iterator[np.ndarray]:
    return title_frames(it.label, it.frames, o.width, o.height, o.fps, small=it.kind == "end")


def _choose_join(tl: Timeline, o: StitchOptions) -> tuple[JoinPlan | None, str | None]:
    """(the copy-join plan when the takes could be copied, why they are re-encoded — None: copy them)."""
    why_not = _copyable(tl.items, tl.joins, o.fps, o.width, o.height, o.disclosure, o.finisher) \
        if o.copy_when_possible and o.join != "encode" else "not asked"
    plan = None
    if why_not is None:
        plan = plan_join([it.frames for it in tl.items], [it.kind for it in tl.items], o.width, o.height, o.preset,
                         o.contact_sheet is not None)
        if not plan.copied:
            why_not = plan.reason
        elif not plan.copy and o.join == "auto":
            why_not = plan.reason
    if plan is not None and why_not is not None:
        tl.notes.append(f"re-encoded although the takes could be copied: {why_not}")
    return plan, why_not


def _write_copy_join(tl: Timeline, o: StitchOptions, plan: JoinPlan, wav: Path, out: Path, tmpdir: Path,
                     thumbs: Thumbnails) -> None:
    """Hard cuts only and untouched takes: encode the cards and the first and last pieces (for the
    fades) as MP4 pieces, and join them with the takes as they are, in one ffmpeg."""
    items, last = tl.items, len(tl.items) - 1
    pieces: list[tuple[Path, int]] = []
    for i, it in enumerate(items):
        if i in plan.copied:
            pieces.append((Path(it.segment.path), it.frames))  # type: ignore[union-attr]
            continue
        src = _card(it, o) if it.kind != "shot" else _shot_frames(it)
        writer = _PieceWriter(tmpdir / f"enc{i:03d}.mp4", o.width, o.height, o.fps, o.crf, o.preset, _reorder_delay(items))
        n = writer.run(thumbs.tap(src, i, it), it.frames, tl.edge if i == 0 else 0, tl.edge if i == last else 0)
        if n != it.frames:
            tl.notes.append(f"{it.kind} {it.label!r}: expected {it.frames} frames, decoded {n}")
        pieces.append((writer.path, n))
    if thumbs.enabled:
        mids = _middle_frames([Path(items[i].segment.path) for i in plan.copied],  # type: ignore[union-attr]
                              [items[i].frames // 2 for i in plan.copied], tmpdir)
        for i, f in zip(plan.copied, mids):
            if f is not None:
                thumbs.put(i, items[i], f)
    with atomic_path(out) as tmp:
        _concat_copy(pieces, o.fps, wav, tmp, tmpdir)
    tl.notes.append(f"joined without re-encoding the takes (-c copy): {plan.reason}")
    if o.progress:
        o.progress(tl.total, tl.total)


class _StreamedWriter:
    """Every picture through one encoder: transitions blended, fades, the disclosure label; only the
    frames a following transition needs are held back."""

    def __init__(self, writer: media.VideoWriter, tl: Timeline, o: StitchOptions) -> None:
        self.writer, self.tl, self.o = writer, tl, o
        self.label = _captions.disclosure_label(o.disclosure, o.width, o.height) if o.disclosure else None
        self.written = 0
        self.pending: list[np.ndarray] = []  # tail of the previous item, to crossfade with this one's head

    def emit(self, frame: np.ndarray) -> None:
        if self.label is not None:
            frame = self.label.over(frame)
        edge, total = self.tl.edge, self.tl.total
        g = min(1.0, self.written / edge, (total - 1 - self.written) / edge) if edge > 0 else 1.0
        self.writer.write(_scale(frame, g))
        self.written += 1
        if self.o.progress and (self.written % max(1, self.o.fps) == 0 or self.written == total):
            self.o.progress(self.written, total)

    def item(self, i: int, item: _Item, source: Iterator[np.ndarray]) -> None:
        """Write item ``i``: its head blended with the held tail of the previous one, its own tail held or faded."""
        joins = self.tl.joins
        left = joins[i - 1] if i > 0 else None
        right = joins[i] if i < len(joins) else None
        hold = right.overlap if right and right.kind == "crossfade" else (right.fade_out if right else 0)
        pending, tail = self.pending, deque()
        j = 0
        for frame in source:
            if left and left.kind == "crossfade" and j < len(pending):
                frame = _mix(pending[j], frame, (j + 1) / (len(pending) + 1))
            elif left and left.kind == "dip-to-black" and j < left.fade_in:
                frame = _scale(frame, j / left.fade_in)
            j += 1
            if hold:
                tail.append(frame)
                if len(tail) > hold:
                    self.emit(tail.popleft())
            else:
                self.emit(frame)
        for leftover in pending[j:]:  # a take shorter than its probe said
            self.emit(leftover)
        self.pending = []
        if j != item.frames:
            self.tl.notes.append(f"{item.kind} {item.label!r}: expected {item.frames} frames, decoded {j}")
        if right and right.kind == "crossfade":
            self.pending = list(tail)
        else:
            for t, frame in enumerate(tail):
                self.emit(_scale(frame, 1.0 - (t + 1) / len(tail)))


def _write_streamed(tl: Timeline, o: StitchOptions, wav: Path, out: Path, thumbs: Thumbnails) -> int:
    """Re-encode the whole episode, streaming; returns the frames written."""
    with atomic_path(out) as tmp, media.VideoWriter(tmp, o.width, o.height, o.fps, crf=o.crf, preset=o.preset,
                                                    audio=wav) as writer:
        w = _StreamedWriter(writer, tl, o)
        for i, item in enumerate(tl.items):
            src = _card(item, o) if item.kind != "shot" else _finished_shot(item, o.finisher, o.fps, o.width, o.height)
            w.item(i, item, thumbs.tap(src, i, item))
    if o.progress and w.written % max(1, o.fps) and w.written != tl.total:
        o.progress(w.written, w.written)
    return w.written


STITCH_TMP_PREFIX = "storyengine-stitch-"
_STARTED = time.time()  # about when this process started: a pid-less stitch folder older than this is stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stitch_dirs(tmp: str | Path | None = None) -> int:
    """Remove ``storyengine-stitch-<pid>-*`` folders of processes that are gone (and pid-less ones from
    older versions made before this process started); return how many. Folders of live processes stay."""
    n = 0
    root = Path(tmp or tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return 0
    for d in entries:
        if not d.name.startswith(STITCH_TMP_PREFIX) or d.is_symlink() or not d.is_dir():
            continue
        m = re.match(re.escape(STITCH_TMP_PREFIX) + r"(\d+)-", d.name)
        try:
            stale = (m is not None and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1)))) or \
                (m is None and d.stat().st_mtime < _STARTED)
        except OSError:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def stitch_episode(segments: list[Segment], out_path: Path, options: StitchOptions | None = None,
                   **kwargs: Any) -> EpisodeInfo:
    """Stitch a title card, the accepted takes and an optional end card into one H.264 + AAC episode, atomically.

    Args:
        segments: the takes in order, each with its kept frame range, and optionally its own
            transition in, captions, sound file and mood grade. May be empty: the episode is then
            the title card alone (``EpisodeInfo.title_only`` is True).
        out_path: the episode mp4; written to a temporary name and renamed, so a failure
            leaves no file and keeps an earlier episode there intact.
        options: a :class:`StitchOptions`, or its fields as keywords (``fps=24, width=640, ...``).

    Raises:
        ValueError: bad format, an unknown ambience, or a segment that keeps no frames.
        MediaError: ffmpeg/ffprobe could not read a take or write the episode.
    """
    if options is not None and kwargs:
        raise TypeError(f"stitch_episode: pass options or keywords, not both (got {', '.join(sorted(kwargs))})")
    o = options if options is not None else StitchOptions(**kwargs)
    o.validate(segments)
    out_path = Path(out_path)
    # 1. Inspect the takes and lay out the timeline; choose how to write it.
    tl = lay_out(segments, o)
    info = EpisodeInfo(out_path, tl.total / o.fps, tl.total, o.fps, tl.entries(o.fps), None, tl.notes)
    plan, why_not = _choose_join(tl, o)
    info.join = plan
    thumbs = Thumbnails(tl.items, enabled=o.contact_sheet is not None)
    with tempfile.TemporaryDirectory(prefix=f"{STITCH_TMP_PREFIX}{os.getpid()}-") as tmpdir:
        # 2. The sound bed, written as WAV for the muxer.
        bed = _episode_audio(tl.items, tl.joins, tl.starts, tl.total, o.fps, o.seed, SAMPLE_RATE)
        wav = audio.write_wav(Path(tmpdir) / "bed.wav", bed, SAMPLE_RATE)
        del bed
        # 3. The pictures: takes copied as they are, or every frame re-encoded.
        if why_not is None:
            assert plan is not None
            _write_copy_join(tl, o, plan, wav, out_path, Path(tmpdir), thumbs)
            info.reencoded = False
        else:
            written = _write_streamed(tl, o, wav, out_path, thumbs)
            if written != tl.total:
                info.frames, info.duration = written, written / o.fps
    # 4. The contact sheet, once the episode exists.
    if o.contact_sheet is not None:
        cuts = sorted({_describe(t) for t in tl.transitions}) or [_describe(o.transition)]
        _contact_sheet(Path(o.contact_sheet), o.title, info, " / ".join(cuts), thumbs, (o.width, o.height),
                       o.left_out or [])
        info.contact_sheet = Path(o.contact_sheet)
    return info
