"""Episode stitching: timeline arithmetic, transitions, audio loudness, atomic output."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyengine import audio, media, stitch
from storyengine.specs import Transition
from storyengine.stitch import Segment, stitch_episode

W, H, FPS = 64, 48, 12
RED, BLUE = (200, 30, 30), (30, 30, 200)
FAST = dict(fps=FPS, width=W, height=H, preset="ultrafast")


def _write(path: Path, frames) -> Path:
    with media.VideoWriter(path, W, H, FPS, preset="ultrafast", crf=12) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.fixture(scope="module")
def takes(tmp_path_factory):
    d = tmp_path_factory.mktemp("takes")
    solid = lambda c, n: (np.full((H, W, 3), c, np.uint8) for _ in range(n))
    ramp = (np.full((H, W, 3), 10 * i, np.uint8) for i in range(24))  # frame i is grey 10*i
    return {
        "red": _write(d / "red.mp4", solid(RED, 24)),
        "blue": _write(d / "blue.mp4", solid(BLUE, 24)),
        "ramp": _write(d / "ramp.mp4", ramp),
    }


def frames_of(path: Path) -> list[np.ndarray]:
    return [f.astype(int) for f in media.iter_frames(path)]  # tiny test files only


def pcm_of(path: Path) -> np.ndarray:
    """Decode the episode's AAC back to float stereo PCM at 48 kHz."""
    cmd = [media.ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-f", "s16le", "-acodec", "pcm_s16le",
           "-ac", "2", "-ar", "48000", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2").reshape(-1, 2).astype(np.float64) / 32768.0


def close(frame: np.ndarray, rgb, tol: float = 10) -> bool:
    return bool(np.abs(frame.reshape(-1, 3).mean(0) - np.array(rgb)).max() <= tol)


def test_crossfade_episode_format_duration_and_blend(takes, tmp_path):
    out, sheet = tmp_path / "ep.mp4", tmp_path / "sheet.png"
    seen = []
    info = stitch_episode(
        [Segment(takes["red"], label="s01"), Segment(takes["blue"], label="s02", verdict="trim")],
        out, title="Day 1 — Monday", title_duration=1.0, transition=Transition(type="crossfade", duration=0.25),
        contact_sheet=sheet, progress=lambda done, total: seen.append((done, total)), **FAST,
    )
    # 12 title + 24 + 24 frames, two 3-frame overlaps.
    total = 12 + 24 + 24 - 3 - 3
    assert info.frames == total and count_ok(out, total)
    assert info.duration == pytest.approx(total / FPS)
    assert seen[-1] == (total, total)
    p = media.probe(out)
    v = media.video_stream(p)
    a = [s for s in p["streams"] if s["codec_type"] == "audio"]
    assert (v["codec_name"], v["pix_fmt"], media.fps_of(v)) == ("h264", "yuv420p", FPS)
    assert a and a[0]["codec_name"] == "aac"
    assert float(p["format"]["duration"]) == pytest.approx(total / FPS, abs=1 / FPS)
    assert [(e.kind, e.label, e.start, e.end) for e in info.timeline] == [
        ("title", "Day 1 — Monday", 0.0, 1.0),
        ("shot", "s01", 9 / FPS, 33 / FPS),
        ("shot", "s02", 30 / FPS, 54 / FPS),
    ]
    fr = frames_of(out)
    assert close(fr[20], RED) and close(fr[40], BLUE)
    # Overlap frames 30, 31, 32 blend red -> blue at 1/4, 1/2, 3/4.
    mid = (np.array(RED) + np.array(BLUE)) / 2
    assert close(fr[31], mid, tol=8)
    assert fr[30][..., 0].mean() > fr[31][..., 0].mean() > fr[32][..., 0].mean()
    # The contact sheet exists and is a real picture.
    img = Image.open(sheet)
    assert img.width >= 2 * 320 and np.asarray(img).std() > 10


def count_ok(path: Path, n: int) -> bool:
    return media.count_frames(path) == n


def test_dip_to_black_reaches_black_without_overlap(takes, tmp_path):
    out = tmp_path / "dip.mp4"
    info = stitch_episode(
        [Segment(takes["red"]), Segment(takes["blue"])], out, title="Dip", title_duration=1.0,
        transition=Transition(type="dip-to-black", duration=0.5), **FAST,
    )
    assert info.frames == 12 + 24 + 24 and count_ok(out, 60)
    fr = frames_of(out)
    assert close(fr[20], RED) and close(fr[45], BLUE)
    assert fr[35].max() <= 12 and fr[36].max() <= 12  # last red frame and first blue frame
    assert 20 < fr[34][..., 0].mean() < 150  # on the way down


def test_trimmed_segments_keep_exactly_their_frames(takes, tmp_path):
    out = tmp_path / "cut.mp4"
    info = stitch_episode(
        [Segment(takes["red"]), Segment(takes["ramp"], start=5, end=15, label="ramp"), Segment(takes["blue"])],
        out, title="", title_duration=0.0, transition=Transition(type="cut"), **FAST,
    )
    assert [e.kind for e in info.timeline] == ["shot", "shot", "shot"]
    assert info.frames == 24 + 10 + 24 and count_ok(out, 58)
    fr = frames_of(out)
    greys = [round(f.mean()) for f in fr[24:34]]
    assert greys == pytest.approx([10 * i for i in range(5, 15)], abs=3)
    assert close(fr[23], RED) and close(fr[34], BLUE)


def test_zero_segments_is_a_title_only_episode(tmp_path):
    out, sheet = tmp_path / "empty.mp4", tmp_path / "empty.png"
    info = stitch_episode([], out, title="Day 2 — Tuesday", title_duration=1.5,
                          transition=Transition(), contact_sheet=sheet, **FAST)
    assert info.title_only and info.notes and "title card" in info.notes[0]
    assert info.frames == 18 and count_ok(out, 18)
    assert [s["codec_name"] for s in media.probe(out)["streams"]] == ["h264", "aac"]
    assert sheet.is_file()
    # No title duration and no shots still gives a watchable card.
    info = stitch_episode([], tmp_path / "e2.mp4", title="X", title_duration=0.0, transition=Transition(), **FAST)
    assert info.frames == 2 * FPS


def test_title_card_has_text_on_a_dark_background(tmp_path):
    frames = list(stitch.title_frames("Day 1 — Monday", 24, 320, 180, FPS))
    mid = frames[12].astype(int)
    assert np.percentile(mid, 50) < 60  # dark
    assert mid.max() > 200  # bright text
    assert frames[0].max() < mid.max()  # text fades in


def test_audio_is_normalised_and_click_free(takes, tmp_path):
    out = tmp_path / "loud.mp4"
    stitch_episode(
        [Segment(takes["red"], ambience="platform"), Segment(takes["blue"])] * 2, out, title="Sound",
        title_duration=1.0, transition=Transition(type="crossfade", duration=0.5), ambience="carriage", **FAST,
    )
    pcm = pcm_of(out)
    assert pcm.shape[0] == pytest.approx(media.count_frames(out) / FPS * 48000, abs=48000 / FPS)
    assert audio.loudness(pcm, 48000) == pytest.approx(-16.0, abs=1.0)
    assert np.abs(pcm).max() <= 10 ** (-0.5 / 20)  # -1 dBFS ceiling, with room for AAC overshoot
    assert np.abs(pcm[:200]).max() < 0.01 and np.abs(pcm[-200:]).max() < 0.01


def test_failure_keeps_the_earlier_episode(takes, tmp_path, monkeypatch):
    out = tmp_path / "ep.mp4"
    stitch_episode([Segment(takes["red"])], out, title="One", title_duration=0.5, transition=Transition(), **FAST)
    before = out.read_bytes()

    def broken(item):
        yield from list(media.iter_frames(item.segment.path))[:5]
        raise RuntimeError("decoder died")

    monkeypatch.setattr(stitch, "_shot_frames", broken)
    with pytest.raises(RuntimeError, match="decoder died"):
        stitch_episode([Segment(takes["blue"])], out, title="Two", title_duration=0.5, transition=Transition(), **FAST)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.mp4"]  # no temp file left behind


def test_failure_before_writing_leaves_no_file(tmp_path):
    out = tmp_path / "none.mp4"
    with pytest.raises(media.MediaError, match="missing.mp4"):
        stitch_episode([Segment(tmp_path / "missing.mp4")], out, title="X", transition=Transition(), **FAST)
    assert not out.exists()


def test_bad_inputs_are_named(takes, tmp_path):
    with pytest.raises(ValueError, match="'subway'"):
        stitch_episode([], tmp_path / "a.mp4", title="X", transition=Transition(), ambience="subway", **FAST)
    with pytest.raises(ValueError, match="keeps no frames"):
        stitch_episode([Segment(takes["red"], start=10, end=10, label="s9")], tmp_path / "b.mp4",
                       title="X", transition=Transition(), **FAST)
    with pytest.raises(ValueError, match="even"):
        stitch_episode([], tmp_path / "c.mp4", title="X", transition=Transition(), fps=FPS, width=63, height=48)
