"""Stitch accepted takes into an episode: title card, transitions, ambience bed, contact sheet.

Frames are streamed: each take is decoded with ``media.iter_frames`` and written with
``media.VideoWriter``; only the frames of one transition overlap are held at a time.
"""

from __future__ import annotations

import tempfile
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from . import audio, media
from .specs import Transition
from .workspace import atomic_path

SAMPLE_RATE = 48000
AUDIO_CUT_XFADE = 0.25  # seconds of equal-power crossfade where the bed changes at a hard cut
EDGE_FADE = 0.5  # seconds of fade from black at the start and to black at the end

Progress = Callable[[int, int], None]


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


@dataclass
class TimelineEntry:
    """Where one piece (the title card or a shot) sits in the episode, in seconds and frames."""

    kind: str  # "title" | "shot"
    label: str
    start: float
    end: float
    frames: int
    first_frame: int
    path: Path | None = None
    verdict: str = ""
    ambience: str = ""


@dataclass
class EpisodeInfo:
    path: Path
    duration: float
    frames: int
    fps: int
    timeline: list[TimelineEntry]
    contact_sheet: Path | None = None
    notes: list[str] = field(default_factory=list)

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


@dataclass
class _Join:
    kind: str  # cut | crossfade | dip-to-black
    overlap: int = 0  # crossfade frames shared by both sides
    fade_out: int = 0  # dip: frames of the left item fading to black
    fade_in: int = 0  # dip: frames of the right item fading from black


def _frame_count(info: dict, path: Path) -> int:
    v = media.video_stream(info, path)
    n = v.get("nb_frames")
    return int(n) if n and str(n).isdigit() and int(n) > 0 else media.count_frames(path)


def _inspect(seg: Segment, idx: int, fps: int, width: int, height: int, ambience: str, notes: list[str]) -> _Item:
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
    size = None
    if (int(v["width"]), int(v["height"])) != (width, height):
        size = (width, height)
        notes.append(f"shot {label!r}: scaled from {v['width']}x{v['height']} to {width}x{height}")
    return _Item("shot", label, end - seg.start, seg.ambience or ambience, seg, seg.start, size)


def _plan_joins(items: list[_Item], transition: Transition, fps: int) -> list[_Join]:
    """One join between each pair of items, clamped so no item gives more frames than it has."""
    joins = []
    for i in range(len(items) - 1):
        a, b = items[i], items[i + 1]
        # An item joined on both sides may give each side at most half its frames.
        cap_a = a.frames if i == 0 else a.frames // 2
        cap_b = b.frames if i + 1 == len(items) - 1 else b.frames // 2
        if transition.type == "crossfade":
            k = min(int(round(transition.duration * fps)), cap_a, cap_b)
            joins.append(_Join("crossfade", overlap=max(k, 0)))
        elif transition.type == "dip-to-black":
            half = int(round(transition.duration * fps / 2))
            joins.append(_Join("dip-to-black", fade_out=min(half, cap_a), fade_in=min(half, cap_b)))
        else:
            joins.append(_Join("cut"))
    return joins


# ---------------------------------------------------------------------------
# Title card
# ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib's bundled fonts; Pillow's scalable default as a fallback."""
    try:
        import matplotlib

        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
    except Exception:  # pragma: no cover - matplotlib is a dependency
        return ImageFont.load_default(size=size)


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


def _text_layer(title: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, alpha) float32 of the title: large, centred, with a soft shadow and a thin rule below."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    if not title.strip():
        return np.zeros((height, width, 3), np.float32), np.zeros((height, width, 1), np.float32)
    size = max(8, int(height * 0.15))
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


def title_frames(title: str, n: int, width: int, height: int, fps: int) -> Iterator[np.ndarray]:
    """The title card's ``n`` frames: the text eases in, holds, and eases out over the background."""
    bg = _background(width, height)
    rgb, alpha = _text_layer(title, width, height)
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


# ---------------------------------------------------------------------------
# Audio bed
# ---------------------------------------------------------------------------


def _episode_audio(
    items: list[_Item], joins: list[_Join], starts: list[int], total: int, fps: int, seed: int, sr: int
) -> np.ndarray:
    """Ambience for the whole episode: one continuous bed per run of equal ambiences,
    equal-power crossfaded where the ambience changes, faded at both ends, at -16 LUFS."""
    n_total = int(round(total / fps * sr))
    # Runs of equal ambience, with the centre and length (seconds) of the crossfade at each change.
    runs: list[list] = [[items[0].ambience]]
    changes: list[tuple[float, float]] = []
    for i, j in enumerate(joins):
        if items[i + 1].ambience == items[i].ambience:
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
        runs.append([items[i + 1].ambience])
    bed = np.zeros((n_total, 2), dtype=np.float32)
    for r, (name,) in enumerate(runs):
        t0 = changes[r - 1][0] - changes[r - 1][1] / 2 if r > 0 else 0.0
        t1 = changes[r][0] + changes[r][1] / 2 if r < len(changes) else n_total / sr
        s0, s1 = max(0, int(round(t0 * sr))), min(n_total, int(round(t1 * sr)))
        if s1 <= s0:
            continue
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


def _clock(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def _thumb(frame: np.ndarray, tw: int) -> Image.Image:
    h, w = frame.shape[:2]
    return Image.fromarray(frame).resize((tw, max(1, round(tw * h / w))), Image.LANCZOS)


def _contact_sheet(
    path: Path,
    title: str,
    info: EpisodeInfo,
    transition: Transition,
    thumbs: dict[int, Image.Image],
    title_thumb: Image.Image | None,
    size: tuple[int, int],
    left_out: list[Segment] = (),
) -> None:
    shots = [e for e in info.timeline if e.kind == "shot"]
    tw = 320
    th = max(1, round(tw * size[1] / size[0]))
    cards = len(shots) + len(left_out)
    cols = max(1, min(4, cards or 1))
    pad, gap, cap_h, head_h = 28, 18, 58, 96
    rows = max(1, -(-cards // cols))
    f_title, f_sub = _font(30, bold=True), _font(15)
    f_id, f_small, f_badge = _font(16, bold=True), _font(13), _font(12, bold=True)
    trans = transition.type if transition.type == "cut" else f"{transition.type} {transition.duration:g}s"
    sub = (
        f"{len(shots)} shot{'s' if len(shots) != 1 else ''}"
        f"{f' ({len(left_out)} left out)' if left_out else ''}  ·  {_clock(info.duration)}  ·  {info.frames} frames "
        f"@ {info.fps} fps  ·  {size[0]}×{size[1]}  ·  {trans}"
    )
    probe_d = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(probe_d.textlength(sub, font=f_sub), probe_d.textlength(title or "", font=f_title))
    W = max(pad * 2 + cols * tw + (cols - 1) * gap, int(text_w) + pad * 2)
    H = head_h + pad + rows * (th + cap_h) + (rows - 1) * gap + pad
    sheet = Image.new("RGB", (W, H), (17, 19, 24))
    d = ImageDraw.Draw(sheet)
    d.text((pad, pad - 4), title or "Untitled episode", font=f_title, fill=(242, 236, 224))
    d.text((pad, pad + 40), sub, font=f_sub, fill=(150, 156, 170))
    d.line([(pad, head_h + 4), (W - pad, head_h + 4)], fill=(48, 52, 62), width=1)
    y_grid = head_h + pad
    if not shots:
        x, y = pad, y_grid
        if title_thumb is not None:
            sheet.paste(title_thumb.resize((tw, th)), (x, y))
        d.rectangle([x - 1, y - 1, x + tw, y + th], outline=(60, 64, 76))
        d.text((x, y + th + 10), "No accepted shots: title card only", font=f_id, fill=_VERDICT_COLOURS["reject"])
    for k, e in enumerate(shots):
        x = pad + (k % cols) * (tw + gap)
        y = y_grid + (k // cols) * (th + cap_h + gap)
        img = thumbs.get(k)
        if img is not None:
            sheet.paste(img.resize((tw, th)), (x, y))
        d.rectangle([x - 1, y - 1, x + tw, y + th], outline=(60, 64, 76))
        badge = f"{k + 1}"
        bw = d.textlength(badge, font=f_badge) + 12
        d.rounded_rectangle([x + 6, y + 6, x + 6 + bw, y + 26], radius=4, fill=(0, 0, 0))
        d.text((x + 12, y + 9), badge, font=f_badge, fill=(235, 235, 235))
        label = e.label
        while d.textlength(label, font=f_id) > tw - 90 and len(label) > 4:
            label = label.rstrip("…")[:-1] + "…"
        d.text((x, y + th + 8), label, font=f_id, fill=(236, 236, 240))
        colour = _VERDICT_COLOURS.get(e.verdict, (140, 140, 150))
        vw = d.textlength(e.verdict.upper(), font=f_badge) + 14
        d.rounded_rectangle([x + tw - vw, y + th + 8, x + tw, y + th + 28], radius=9, fill=colour)
        d.text((x + tw - vw + 7, y + th + 11), e.verdict.upper(), font=f_badge, fill=(16, 18, 22))
        meta = f"{_clock(e.start)}–{_clock(e.end)}  ·  {e.frames} fr  ·  {e.ambience}"
        d.text((x, y + th + 34), meta, font=f_small, fill=(150, 156, 170))
    for k, seg in enumerate(left_out, start=len(shots)):
        x = pad + (k % cols) * (tw + gap)
        y = y_grid + (k // cols) * (th + cap_h + gap)
        try:
            frame = None
            for frame in media.iter_frames(seg.path, max_frames=media.count_frames(seg.path) // 2 + 1):
                pass  # keep the middle frame
        except Exception:  # a missing take still gets its card
            frame = None
        if frame is not None:
            img = _thumb(frame, tw).resize((tw, th)).convert("L").convert("RGB")  # grey: not in the episode
            sheet.paste(img, (x, y))
        d.rectangle([x - 1, y - 1, x + tw, y + th], outline=_VERDICT_COLOURS["reject"], width=2)
        label = seg.label
        while d.textlength(label, font=f_id) > tw - 90 and len(label) > 4:
            label = label.rstrip("…")[:-1] + "…"
        d.text((x, y + th + 8), label, font=f_id, fill=(236, 236, 240))
        verdict = seg.verdict.upper()
        vw = d.textlength(verdict, font=f_badge) + 14
        d.rounded_rectangle([x + tw - vw, y + th + 8, x + tw, y + th + 28], radius=9, fill=_VERDICT_COLOURS.get(seg.verdict, (140, 140, 150)))
        d.text((x + tw - vw + 7, y + th + 11), verdict, font=f_badge, fill=(16, 18, 22))
        reason = "left out: " + (seg.reason or "drifted")
        while d.textlength(reason, font=f_small) > tw and len(reason) > 4:
            reason = reason.rstrip("…")[:-1] + "…"
        d.text((x, y + th + 34), reason, font=f_small, fill=(150, 156, 170))
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG", optimize=True)


# ---------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------


def stitch_episode(
    segments: list[Segment],
    out_path: Path,
    *,
    fps: int,
    width: int,
    height: int,
    title: str,
    title_duration: float = 2.0,
    transition: Transition,
    ambience: str = "carriage",
    seed: int = 0,
    crf: int = 18,
    preset: str = "medium",
    contact_sheet: Path | None = None,
    left_out: list[Segment] | None = None,
    progress: Progress | None = None,
) -> EpisodeInfo:
    """Stitch a title card and the accepted takes into one H.264 + AAC episode, atomically.

    Args:
        segments: the takes in order, each with its kept frame range. May be empty: the
            episode is then the title card alone (``EpisodeInfo.title_only`` is True).
        out_path: the episode mp4; written to a temporary name and renamed, so a failure
            leaves no file and keeps an earlier episode there intact.
        fps, width, height: the episode's format; takes of another size are scaled.
        title: text of the title card; ``title_duration`` its length in seconds (0 = none,
            unless there are no segments, when 2 s are used).
        transition: how the title hands over to the first shot and each shot to the next.
        ambience: the bed under the episode; a segment's own ``ambience`` overrides it.
        seed: seeds the ambience synthesis.
        crf, preset: libx264 settings.
        contact_sheet: where to write a PNG with one thumbnail per shot, if given.
        progress: called as ``progress(frames_done, frames_total)`` while writing.

    Raises:
        ValueError: bad format, an unknown ambience, or a segment that keeps no frames.
        MediaError: ffmpeg/ffprobe could not read a take or write the episode.
    """
    if fps <= 0 or width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"episode format must be positive with even width/height, got {width}x{height} @ {fps} fps")
    names = [ambience] + [s.ambience for s in segments if s.ambience]
    for name in names:
        if name not in audio.AMBIENCES:
            raise ValueError(f"unknown ambience {name!r}; available: {', '.join(sorted(audio.AMBIENCES))}")
    out_path = Path(out_path)
    notes: list[str] = []

    # 1. Inspect the takes and lay out the timeline.
    items = [_inspect(s, i, fps, width, height, ambience, notes) for i, s in enumerate(segments)]
    n_title = int(round(title_duration * fps))
    if not items:
        notes.append("no accepted shots: the episode is the title card alone")
        n_title = n_title or int(round(2.0 * fps))
    if n_title > 0:
        items.insert(0, _Item("title", title, n_title, ambience))
    joins = _plan_joins(items, transition, fps)
    starts = [0]
    for i, j in enumerate(joins):
        starts.append(starts[-1] + items[i].frames - j.overlap)
    total = starts[-1] + items[-1].frames
    edge = min(int(round(EDGE_FADE * fps)), total // 4)
    timeline = [
        TimelineEntry(
            kind=it.kind,
            label=it.label,
            start=starts[i] / fps,
            end=(starts[i] + it.frames) / fps,
            frames=it.frames,
            first_frame=it.start,
            path=Path(it.segment.path) if it.segment else None,
            verdict=it.segment.verdict if it.segment else "",
            ambience=it.ambience,
        )
        for i, it in enumerate(items)
    ]
    info = EpisodeInfo(out_path, total / fps, total, fps, timeline, None, notes)

    thumbs: dict[int, Image.Image] = {}
    title_thumb: Image.Image | None = None
    with tempfile.TemporaryDirectory(prefix="storyengine-stitch-") as tmpdir:
        # 2. The ambience bed, written as WAV for the muxer.
        wav = audio.write_wav(
            Path(tmpdir) / "bed.wav", _episode_audio(items, joins, starts, total, fps, seed, SAMPLE_RATE), SAMPLE_RATE
        )

        # 3. Stream the pictures: hold back only the frames a following transition needs.
        with atomic_path(out_path) as tmp, media.VideoWriter(
            tmp, width, height, fps, crf=crf, preset=preset, audio=wav
        ) as writer:
            written = 0

            def emit(frame: np.ndarray) -> None:
                nonlocal written
                g = min(1.0, written / edge, (total - 1 - written) / edge) if edge > 0 else 1.0
                writer.write(_scale(frame, g))
                written += 1
                if progress and (written % max(1, fps) == 0 or written == total):
                    progress(written, total)

            pending: list[np.ndarray] = []  # tail of the previous item, to crossfade with this one's head
            shot_no = 0
            for i, item in enumerate(items):
                left = joins[i - 1] if i > 0 else None
                right = joins[i] if i < len(joins) else None
                hold = right.overlap if right and right.kind == "crossfade" else (right.fade_out if right else 0)
                source = (
                    title_frames(item.label, item.frames, width, height, fps)
                    if item.kind == "title"
                    else _shot_frames(item)
                )
                tail: deque[np.ndarray] = deque()
                mid = item.frames // 2
                j = 0
                for frame in source:
                    if j == mid:
                        if item.kind == "shot":
                            thumbs[shot_no] = _thumb(frame, 320)
                        else:
                            title_thumb = _thumb(frame, 320)
                    if left and left.kind == "crossfade" and j < len(pending):
                        frame = _mix(pending[j], frame, (j + 1) / (len(pending) + 1))
                    elif left and left.kind == "dip-to-black" and j < left.fade_in:
                        frame = _scale(frame, j / left.fade_in)
                    j += 1
                    if hold:
                        tail.append(frame)
                        if len(tail) > hold:
                            emit(tail.popleft())
                    else:
                        emit(frame)
                for leftover in pending[j:]:  # a take shorter than its probe said
                    emit(leftover)
                pending = []
                if j != item.frames:
                    notes.append(f"{item.kind} {item.label!r}: expected {item.frames} frames, decoded {j}")
                if right and right.kind == "crossfade":
                    pending = list(tail)
                else:
                    m = len(tail)
                    for t, frame in enumerate(tail):
                        emit(_scale(frame, 1.0 - (t + 1) / m))
                if item.kind == "shot":
                    shot_no += 1
            if written != total:
                info.frames, info.duration = written, written / fps
        if progress and written % max(1, fps) and written != total:
            progress(written, written)

    # 4. The contact sheet, once the episode exists.
    if contact_sheet is not None:
        _contact_sheet(Path(contact_sheet), title, info, transition, thumbs, title_thumb, (width, height),
                       left_out or [])
        info.contact_sheet = Path(contact_sheet)
    return info
