"""Benchmark episode assembly against one hand-written ffmpeg xfade/acrossfade command, same clips, same run.

    .venv/bin/python scripts/bench_stitch.py [--width 640 --height 360 --seconds 4 --preset veryfast]

Prints (1) the time storyengine's stitch_episode takes for a subway-diary day (2 s title card, a
morning and an evening shot, 0.75 s crossfades, ambience bed at -16 LUFS, disclosure label) and for
the same day with hard cuts only (joined with -c copy); (2) the time one ffmpeg command with xfade +
acrossfade takes on the same clips (title card pre-rendered, audio already on each clip, so it does
less work than stitch_episode); and (3) peak memory (RSS, this process and its ffmpeg children) for
stitching 1 vs 7 episodes, each measured in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from storyengine import audio, media
from storyengine.specs import Transition
from storyengine.stitch import Segment, stitch_episode, title_frames

DISCLOSURE = "AI-extended from a still photograph"


def make_clips(d: Path, w: int, h: int, fps: int, seconds: float, n: int = 2) -> list[Path]:
    """Clips that move (a panned photo with grain), like the motion back-end's takes."""
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    out = []
    rng = np.random.default_rng(0)
    for k in range(n):
        im = np.asarray(Image.fromarray(photos[k % 3]).resize((w + 64, h + 36))).astype(np.int16)
        p = d / f"clip{k}.mp4"
        frames = int(seconds * fps)
        with media.VideoWriter(p, w, h, fps, crf=12, preset="veryfast") as wr:
            for i in range(frames):
                o = i * 64 // frames
                f = im[18 : 18 + h, o : o + w] + rng.integers(-4, 5, (h, w, 1), dtype=np.int16)
                wr.write(np.clip(f, 0, 255).astype(np.uint8))
        out.append(p)
    return out


def stitch_once(clips: list[Path], out: Path, a: argparse.Namespace, cuts: bool = False) -> float:
    t0 = time.perf_counter()
    stitch_episode([Segment(c, label=c.stem) for c in clips], out, fps=a.fps, width=a.width, height=a.height,
                   title="Day 1 — Monday", title_duration=2.0,
                   transition=Transition(type="cut") if cuts else Transition(type="crossfade", duration=0.75),
                   ambience="carriage", crf=18, preset=a.preset, disclosure=None if cuts else DISCLOSURE)
    return time.perf_counter() - t0


def ffmpeg_baseline(clips: list[Path], d: Path, a: argparse.Namespace) -> float:
    """Title card + clips with their own audio, joined by one ffmpeg xfade/acrossfade filter graph."""
    # Inputs the hand-written command needs: a title card file and clips carrying audio (not timed).
    title = d / "title.mp4"
    bed = audio.write_wav(d / "title.wav", audio.ambience("carriage", 2.0, 48000, seed=1), 48000)
    with media.VideoWriter(title, a.width, a.height, a.fps, crf=12, preset="veryfast", audio=bed) as w:
        for f in title_frames("Day 1 — Monday", 2 * a.fps, a.width, a.height, a.fps):
            w.write(f)
    inputs = [title]
    for k, c in enumerate(clips):
        wav = audio.write_wav(d / f"a{k}.wav", audio.ambience("carriage", a.seconds, 48000, seed=k + 2), 48000)
        withaudio = d / f"clip{k}_a.mp4"
        subprocess.run([media.ffmpeg_exe(), "-v", "error", "-y", "-i", str(c), "-i", str(wav), "-c:v", "copy",
                        "-c:a", "aac", "-shortest", str(withaudio)], check=True)
        inputs.append(withaudio)
    durs = [2.0] + [a.seconds] * len(clips)
    x = 0.75
    vf, af = [], []
    last_v, last_a, offset = "[0:v]", "[0:a]", 0.0
    for i in range(1, len(inputs)):
        offset += durs[i - 1] - x
        vf.append(f"{last_v}[{i}:v]xfade=transition=fade:duration={x}:offset={offset:.3f}[v{i}]")
        af.append(f"{last_a}[{i}:a]acrossfade=d={x}[a{i}]")
        last_v, last_a = f"[v{i}]", f"[a{i}]"
    graph = ";".join(vf + af + [f"{last_v}format=yuv420p[vout]", f"{last_a}loudnorm=I=-16:TP=-1[aout]"])
    cmd = [media.ffmpeg_exe(), "-v", "error", "-y"]
    for p in inputs:
        cmd += ["-i", str(p)]
    cmd += ["-filter_complex", graph, "-map", "[vout]", "-map", "[aout]", "-c:v", "libx264", "-preset", a.preset,
            "-crf", "18", "-c:a", "aac", "-ar", "48000", "-movflags", "+faststart", str(d / "baseline.mp4")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def child(a: argparse.Namespace) -> None:
    """Stitch ``a.episodes`` episodes one after another (as render_series does); print peak RSS."""
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        clips = make_clips(d, a.width, a.height, a.fps, a.seconds)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for e in range(a.episodes):
            stitch_once(clips, d / f"ep{e}.mp4", a)
        print(json.dumps({"episodes": a.episodes, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "rss_before_stitch_mb": base / 1024,
                          "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.episodes:
        return child(a)
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        clips = make_clips(d, a.width, a.height, a.fps, a.seconds)
        ours = min(stitch_once(clips, d / "ours.mp4", a) for _ in range(a.repeat))
        cuts = min(stitch_once(clips, d / "cuts.mp4", a, cuts=True) for _ in range(a.repeat))
        base = min(ffmpeg_baseline(clips, d, a) for _ in range(a.repeat))
        n_ours = media.count_frames(d / "ours.mp4")
        n_base = media.count_frames(d / "baseline.mp4")
    print(f"clips: 2 x {a.seconds:g} s at {a.width}x{a.height} {a.fps} fps, title 2 s, preset {a.preset}; best of {a.repeat}")
    print(f"stitch_episode, crossfades + label + ambience : {ours:6.2f} s  ({n_ours} frames)")
    print(f"stitch_episode, hard cuts (-c copy join)      : {cuts:6.2f} s")
    print(f"ffmpeg xfade + acrossfade + loudnorm (1 cmd)  : {base:6.2f} s  ({n_base} frames)")
    print(f"ratio stitch / ffmpeg                         : {ours / base:6.2f}x   (cuts: {cuts / base:.2f}x)")
    for n in (1, 7):
        r = subprocess.run([sys.executable, __file__, "--episodes", str(n), "--width", str(a.width), "--height",
                            str(a.height), "--fps", str(a.fps), "--seconds", str(a.seconds), "--preset", a.preset],
                           capture_output=True, text=True, check=True)
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"peak memory, {n} episode(s): python {m['peak_rss_mb']:.0f} MB "
              f"(before stitching {m['rss_before_stitch_mb']:.0f} MB), largest ffmpeg child {m['peak_child_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
