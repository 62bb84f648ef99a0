"""Episode assembly options, asserted on the encoded file: per-cut transitions, beats, end card,
captions, the disclosure label, a user's sound file, finishing, and joining without re-encoding."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from storyengine import audio, media
from storyengine.finishing import Finisher, write_cube
from storyengine.specs import Caption, EndCard, Finish, Transition
from storyengine.stitch import JOIN_PIXEL_S, JOIN_PROCESS_S, PRESET_COST, Segment, plan_join, stitch_episode

W, H, FPS = 160, 90, 12
RED, BLUE, GREEN, GREY = (200, 30, 30), (30, 30, 200), (30, 180, 30), (110, 110, 110)
FAST = dict(fps=FPS, width=W, height=H, preset="ultrafast")


def _write(path: Path, frames, w=W, h=H) -> Path:
    with media.VideoWriter(path, w, h, FPS, preset="ultrafast", crf=12) as wr:
        for f in frames:
            wr.write(f)
    return path


def solid(c, n, w=W, h=H):
    return (np.full((h, w, 3), c, np.uint8) for _ in range(n))


@pytest.fixture(scope="module")
def takes(tmp_path_factory):
    d = tmp_path_factory.mktemp("takes")
    rng = np.random.default_rng(3)
    tex = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(24)]
    return {
        "red": _write(d / "red.mp4", solid(RED, 24)),
        "blue": _write(d / "blue.mp4", solid(BLUE, 24)),
        "green": _write(d / "green.mp4", solid(GREEN, 24)),
        "grey": _write(d / "grey.mp4", solid(GREY, 24)),
        "tex": _write(d / "tex.mp4", iter(tex)),
        "small_red": _write(d / "small_red.mp4", solid(RED, 12, 80, 46), 80, 46),
    }


def frames_of(path: Path) -> list[np.ndarray]:
    return [f.astype(int) for f in media.iter_frames(path)]


def mean_rgb(f: np.ndarray) -> np.ndarray:
    return f.reshape(-1, 3).mean(0)


def close(f, rgb, tol=10.0) -> bool:
    return bool(np.abs(mean_rgb(f) - np.array(rgb)).max() <= tol)


def pcm_of(path: Path) -> np.ndarray:
    cmd = [media.ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-f", "s16le", "-acodec", "pcm_s16le",
           "-ac", "2", "-ar", "48000", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2").reshape(-1, 2).astype(np.float64) / 32768.0


def test_transition_per_cut_end_card_format_and_blend(takes, tmp_path):
    out = tmp_path / "ep.mp4"
    segs = [Segment(takes["red"], label="a"),
            Segment(takes["blue"], label="b", transition=Transition(type="crossfade", duration=0.5)),
            Segment(takes["green"], label="c", transition=Transition(type="dip-to-black", duration=0.5))]
    info = stitch_episode(segs, out, title="Day 3", title_duration=1.0, transition=Transition(type="cut"),
                          end_card=EndCard(text="See you tomorrow", duration=1.0), **FAST)
    total = 12 + 24 + 24 + 24 + 12 - 6  # one crossfade of 6 frames; a dip has no overlap
    assert info.frames == total == media.count_frames(out)
    p = media.probe(out)
    v = media.video_stream(p)
    a = [s for s in p["streams"] if s["codec_type"] == "audio"]
    assert (v["codec_name"], v["pix_fmt"], media.fps_of(v), v["width"], v["height"]) == ("h264", "yuv420p", FPS, W, H)
    assert a and a[0]["codec_name"] == "aac"
    assert float(p["format"]["duration"]) == pytest.approx(total / FPS, abs=1.5 / FPS)
    assert [(e.kind, e.transition_in) for e in info.timeline] == [
        ("title", ""), ("shot", "cut"), ("shot", "crossfade 0.5s"), ("shot", "dip-to-black 0.5s"), ("end", "cut")]
    fr = frames_of(out)
    assert close(fr[20], RED) and close(fr[40], BLUE) and close(fr[65], GREEN)
    # Crossfade a→b over output frames 30..35 with weights 1/7 … 6/7: each frame is the blend of its neighbours.
    for k, j in enumerate(range(30, 36)):
        w = (k + 1) / 7
        assert close(fr[j], (1 - w) * np.array(RED) + w * np.array(BLUE), tol=8), j
    # Dip b→c: the last blue frame and the first green frame are black.
    assert fr[53].max() <= 12 and fr[54].max() <= 12
    # End card: dark with bright text in the middle of its frames.
    card = fr[78 + 6]
    assert np.percentile(card, 50) < 60 and card.max() > 180


def test_cut_follows_a_beat(takes, tmp_path):
    out = tmp_path / "beat.mp4"
    info = stitch_episode([Segment(takes["red"], label="a"), Segment(takes["blue"], label="b")], out, title="",
                          title_duration=0, transition=Transition(type="cut"), beats=[1.5, 9.0],
                          copy_when_possible=False, **FAST)
    assert info.timeline[1].transition_in == "cut @ beat 1.5s"
    assert info.timeline[1].start == pytest.approx(1.5)
    assert info.frames == 18 + 24 == media.count_frames(out)
    fr = frames_of(out)
    assert close(fr[17], RED) and close(fr[18], BLUE)
    # on_beat: false keeps the cut where the shot ends
    info = stitch_episode([Segment(takes["red"]), Segment(takes["blue"], transition=Transition(type="cut", on_beat=False))],
                          tmp_path / "nobeat.mp4", title="", title_duration=0, transition=Transition(type="cut"),
                          beats=[1.5], copy_when_possible=False, **FAST)
    assert info.frames == 48


def test_captions_and_disclosure_label(takes, tmp_path):
    out = tmp_path / "cap.mp4"
    seg = Segment(takes["grey"], label="a", captions=[Caption(text="Monday, 8:12", position="bottom", start=0.5, duration=1.0)])
    stitch_episode([seg], out, title="", title_duration=0, transition=Transition(type="cut"),
                   disclosure="AI-extended from a still photograph", **FAST)
    fr = frames_of(out)
    bottom = lambda f: f[int(H * 0.6):, :, :]
    top_right = lambda f: f[: int(H * 0.2), W // 2 :, :]
    # caption absent before 0.5 s and after 1.5 s, fully there at 1.0 s: bright text and dark outline
    assert bottom(fr[3]).max() < 140 and bottom(fr[21]).max() < 140
    assert bottom(fr[12]).max() > 220 and bottom(fr[12]).min() < 60
    # the label is on every frame (top right: dark pill with light text), the picture elsewhere is untouched
    for f in (fr[7], fr[12], fr[16]):  # outside the 0.5 s fades at both ends
        assert top_right(f).min() < 80 and top_right(f).max() > 160
        assert close(f[H // 3 : H // 2, : W // 3], GREY, tol=6)
    plain = tmp_path / "plain.mp4"
    stitch_episode([Segment(takes["grey"])], plain, title="", title_duration=0, transition=Transition(type="cut"),
                   copy_when_possible=False, **FAST)
    assert top_right(frames_of(plain)[12]).min() > 90


def test_user_sound_file_under_one_shot(takes, tmp_path):
    sr = 48000
    t = np.arange(int(0.7 * sr)) / sr  # shorter than the shot: it loops
    tone = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t))[:, None], 2, axis=1).astype(np.float32)
    wav = audio.write_wav(tmp_path / "chime.wav", tone, sr)
    out = tmp_path / "snd.mp4"
    stitch_episode([Segment(takes["red"], ambience="room"), Segment(takes["blue"], audio=wav)], out, title="",
                   title_duration=0, transition=Transition(type="cut"), copy_when_possible=False, **FAST)
    pcm = pcm_of(out).mean(1)
    assert audio.loudness(pcm_of(out), sr) == pytest.approx(audio.TARGET_LUFS, abs=1.0)

    def share_440(x):
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
        f = np.fft.rfftfreq(len(x), 1 / sr)
        return spec[(f > 420) & (f < 460)].sum() / spec.sum()

    assert share_440(pcm[int(2.5 * sr): int(3.5 * sr)]) > 0.8  # the user's chime under the second shot
    assert share_440(pcm[int(0.5 * sr): int(1.5 * sr)]) < 0.1  # room tone under the first
    d = np.abs(np.diff(pcm[int(1.8 * sr): int(2.2 * sr)]))
    assert d.max() < 0.2  # the change of source at the cut is crossfaded, not a click


def test_finishing_upscales_and_applies_the_lut_to_every_shot(takes, tmp_path):
    lut = write_cube(tmp_path / "swap.cube", lambda x: x[:, [2, 0, 1]], size=9)  # red → green
    fin = Finisher(Finish(lut="swap.cube", sharpen=0.5, width=320, height=180), (320, 180), lut)
    out = tmp_path / "fin.mp4"
    info = stitch_episode([Segment(takes["small_red"]), Segment(takes["red"])], out, title="Graded", title_duration=0.5,
                          transition=Transition(type="cut"), finisher=fin, fps=FPS, width=320, height=180,
                          preset="ultrafast")
    v = media.video_stream(media.probe(out))
    assert (v["width"], v["height"]) == (320, 180)
    fr = frames_of(out)
    swapped = (RED[2], RED[0], RED[1])
    assert close(fr[6 + 6][20:160, 20:300], swapped) and close(fr[6 + 12 + 12][20:160, 20:300], swapped)
    assert any("scaled from 80x46" in n for n in info.notes)


def test_hard_cuts_join_without_reencoding(takes, tmp_path):
    out = tmp_path / "copy.mp4"
    segs = [Segment(takes["red"]), Segment(takes["tex"]), Segment(takes["blue"])]
    info = stitch_episode(segs, out, title="Copy", title_duration=1.0, transition=Transition(type="cut"), join="copy",
                          contact_sheet=tmp_path / "copy.png", **FAST)
    assert info.reencoded is False and info.join.copied == [1, 2]
    assert media.count_frames(out) == info.frames == 12 + 72
    err = subprocess.run([media.ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True)
    assert err.returncode == 0 and err.stderr == b""
    p = media.probe(out)
    assert [s["codec_name"] for s in p["streams"]] == ["h264", "aac"]
    # the middle take's frames are bit-identical to the take: it was copied, not re-encoded
    fr = list(media.iter_frames(out))
    src = list(media.iter_frames(takes["tex"]))
    assert all((a == b).all() for a, b in zip(fr[36:60], src))
    assert audio.loudness(pcm_of(out), 48000) == pytest.approx(audio.TARGET_LUFS, abs=1.0)
    # any effect (here the disclosure label) takes the streaming path instead
    info = stitch_episode(segs, tmp_path / "enc.mp4", title="Copy", title_duration=1.0, transition=Transition(type="cut"),
                          disclosure="AI-extended from a still photograph", **FAST)
    assert info.reencoded is True and info.frames == 84
    assert (tmp_path / "copy.png").stat().st_size > 0  # thumbnails of the copied take come from one decoder


def test_the_join_follows_the_estimate(takes, tmp_path):
    """The copy join is used exactly when plan_join estimates it saves time; cards, the first and the
    last shot are encoded (fades), the shots between are copied."""
    # The rule itself: saving = copied pixels x per-pixel cost - thumbnail decode - extra processes x start-up.
    p = plan_join([48, 96, 96], ["title", "shot", "shot"], 640, 360, "veryfast")
    per_px = JOIN_PIXEL_S * (0.5 + 0.5 * PRESET_COST["veryfast"]) - 0.25 * JOIN_PIXEL_S
    assert p.copied == [1] and p.copied_frames == 96 and p.extra_processes == 1
    assert p.copy_saves_s == pytest.approx(96 * 640 * 360 * per_px - JOIN_PROCESS_S)
    assert p.copy == (p.copy_saves_s > 0)
    assert plan_join([48, 96], ["title", "shot"], 640, 360).copy is False  # nothing between the fades
    assert plan_join([96, 96], ["shot", "shot"], 640, 360).copied == []
    eight = plan_join([48] + [96] * 8, ["title"] + ["shot"] * 8, 640, 360, "veryfast")
    assert eight.copy and eight.copied == list(range(1, 8)) and eight.extra_processes < 0
    assert plan_join([48, 96, 96, 24], ["title", "shot", "shot", "end"], 640, 360).copied == [1, 2]  # end card fades
    slower = plan_join([48, 96, 96], ["title", "shot", "shot"], 640, 360, "medium")
    assert slower.copy_saves_s > p.copy_saves_s  # a slower preset makes re-encoding dearer
    # stitch_episode does what the estimate says, both ways.
    cases = {"one take copied": [Segment(takes["red"]), Segment(takes["tex"])],
             "five takes copied": [Segment(takes[k]) for k in ("red", "tex", "blue", "green", "grey", "tex")],
             "nothing to copy": [Segment(takes["red"])]}
    seen = set()
    for name, segs in cases.items():
        info = stitch_episode(segs, tmp_path / f"{len(segs)}.mp4", title="Auto", title_duration=1.0,
                              transition=Transition(type="cut"), contact_sheet=tmp_path / f"{len(segs)}.png", **FAST)
        expect = plan_join([12] + [24] * len(segs), ["title"] + ["shot"] * len(segs), W, H, "ultrafast")
        assert info.join == expect, name
        assert info.reencoded is (not expect.copy), name
        assert media.count_frames(tmp_path / f"{len(segs)}.mp4") == info.frames == 12 + 24 * len(segs)
        seen.add(info.reencoded)
        if info.reencoded:
            assert any("re-encoded although the takes could be copied" in n for n in info.notes)
    assert seen == {True, False}
    assert plan_join([12] + [24] * 6, ["title"] + ["shot"] * 6, W, H, "ultrafast").copy  # many small takes: copy
    # copy_when_possible=False (the setting) and join="encode" never copy
    info = stitch_episode(cases["five takes copied"], tmp_path / "enc.mp4", title="Auto", title_duration=1.0,
                          transition=Transition(type="cut"), copy_when_possible=False, **FAST)
    assert info.reencoded is True
