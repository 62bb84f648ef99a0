"""Benchmark episode assembly against hand-written ffmpeg commands, same clips, same run.

    .venv/bin/python scripts/bench_stitch.py [--width 640 --height 360 --seconds 4 --preset veryfast --shots 2 8]

For a subway-diary day of 2 shots and a longer episode of 8 (2 s title card, 4 s shots, ambience
bed at -16 LUFS, contact sheet) prints the time storyengine's stitch_episode takes
(1) with 0.75 s crossfades and the disclosure label (always re-encoded), and with hard cuts only,
(2) re-encoded, (3) joined with -c copy, (4) as the rule in stitch.plan_join chooses (with its
estimate next to the measured saving); then the hand-written baselines on the same clips (title
card pre-rendered, audio already on each clip, so they do less work than stitch_episode): one
ffmpeg xfade + acrossfade + loudnorm command, and one concat-filter + loudnorm command. From the
two episodes it fits the two constants of the join estimate (JOIN_PIXEL_S, JOIN_PROCESS_S).
Last, peak memory (RSS, this process and its ffmpeg children) for stitching 1 vs 7 episodes,
each measured in a fresh subprocess.
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

from storyengine import audio, media, stitch
from storyengine.specs import Transition
from storyengine.stitch import Segment, stitch_episode, title_frames

DISCLOSURE = "AI-extended from a still photograph"


def make_clips(d: Path, w: int, h: int, fps: int, seconds: float, n: int = 2) -> list[Path]:
    """Clips that move (a panned photo with grain), like the motion back-end's takes (veryfast, crf 12)."""
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
                o = (i + 7 * k) * 64 // (frames + 7 * n)
                f = im[18 : 18 + h, o : o + w] + rng.integers(-4, 5, (h, w, 1), dtype=np.int16)
                wr.write(np.clip(f, 0, 255).astype(np.uint8))
        out.append(p)
    return out


def stitch_once(clips: list[Path], out: Path, a: argparse.Namespace, cuts: bool = False, join: str = "auto"):
    t0 = time.perf_counter()
    info = stitch_episode([Segment(c, label=c.stem) for c in clips], out, fps=a.fps, width=a.width, height=a.height,
                          title="Day 1 — Monday", title_duration=2.0,
                          transition=Transition(type="cut") if cuts else Transition(type="crossfade", duration=0.75),
                          ambience="carriage", crf=18, preset=a.preset, disclosure=None if cuts else DISCLOSURE,
                          contact_sheet=out.with_suffix(".png"), join=join)
    return time.perf_counter() - t0, info


def _baseline_inputs(clips: list[Path], d: Path, a: argparse.Namespace) -> list[Path]:
    """What the hand-written commands need: a title card file and clips carrying audio (not timed)."""
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
    return inputs


def ffmpeg_baseline(inputs: list[Path], d: Path, a: argparse.Namespace, cuts: bool = False) -> float:
    """Title card + clips with their own audio, joined by one ffmpeg filter graph: xfade/acrossfade,
    or (``cuts``) the concat filter; loudnorm to -16 LUFS; libx264 at the same preset and crf."""
    durs = [2.0] + [a.seconds] * (len(inputs) - 1)
    x = 0.75
    vf, af = [], []
    if cuts:
        n = len(inputs)
        graph = "".join(f"[{i}:v][{i}:a]" for i in range(n)) + f"concat=n={n}:v=1:a=1[cv][ca];" \
            "[cv]format=yuv420p[vout];[ca]loudnorm=I=-16:TP=-1[aout]"
    else:
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


def episode(n: int, a: argparse.Namespace) -> dict:
    """Every path and baseline on one episode of ``n`` shots; best of ``a.repeat`` each."""
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        clips = make_clips(d, a.width, a.height, a.fps, a.seconds, n)
        best = lambda f: min(f() for _ in range(a.repeat))  # noqa: E731
        r = {"shots": n}
        r["xfade"] = best(lambda: stitch_once(clips, d / "ours.mp4", a)[0])
        r["encode"] = best(lambda: stitch_once(clips, d / "enc.mp4", a, cuts=True, join="encode")[0])
        r["copy"] = best(lambda: stitch_once(clips, d / "copy.mp4", a, cuts=True, join="copy")[0])
        t, info = stitch_once(clips, d / "auto.mp4", a, cuts=True)
        r["auto"] = min(t, stitch_once(clips, d / "auto.mp4", a, cuts=True)[0]) if a.repeat > 1 else t
        r["plan"] = info.join
        r["chosen"] = "copy" if not info.reencoded else "encode"
        inputs = _baseline_inputs(clips, d, a)
        r["ff_xfade"] = best(lambda: ffmpeg_baseline(inputs, d, a))
        r["ff_concat"] = best(lambda: ffmpeg_baseline(inputs, d, a, cuts=True))
        r["frames"] = media.count_frames(d / "copy.mp4")
    return r


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
    ap.add_argument("--shots", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument("--episodes", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.episodes:
        return child(a)
    print(f"clips: {a.seconds:g} s at {a.width}x{a.height} {a.fps} fps, title 2 s, preset {a.preset}; best of {a.repeat}")
    rows = []
    for n in a.shots:
        r = episode(n, a)
        rows.append(r)
        p = r["plan"]
        print(f"--- {n} shots ({r['frames']} frames with hard cuts)")
        print(f"stitch_episode, crossfades + label + ambience   : {r['xfade']:6.2f} s")
        print(f"stitch_episode, hard cuts, re-encoded           : {r['encode']:6.2f} s")
        print(f"stitch_episode, hard cuts, -c copy join         : {r['copy']:6.2f} s   "
              f"(copies {p.copied_frames} frames of {len(p.copied)} takes)")
        print(f"stitch_episode, hard cuts, rule chose {r['chosen']:<6}    : {r['auto']:6.2f} s   "
              f"(estimated copy saving {p.copy_saves_s:+.2f} s, measured {r['encode'] - r['copy']:+.2f} s)")
        print(f"ffmpeg xfade + acrossfade + loudnorm (1 cmd)    : {r['ff_xfade']:6.2f} s   "
              f"(ratio crossfades {r['xfade'] / r['ff_xfade']:.2f}x)")
        print(f"ffmpeg concat filter + loudnorm (1 cmd)         : {r['ff_concat']:6.2f} s   "
              f"(ratio hard cuts, chosen path {r['auto'] / r['ff_concat']:.2f}x)")
    if len(rows) >= 2:
        # Fit saving = k * X - p * Y over the episodes (X: pixel-frames the copy saves, Y: extra processes).
        X, Y, S = [], [], []
        for r in rows:
            pl = r["plan"]
            enc = stitch.PRESET_COST.get(a.preset, 2.2)
            X.append(pl.copied_frames * a.width * a.height * (0.5 + 0.5 * enc - 0.25))
            Y.append(-pl.extra_processes)
            S.append(r["encode"] - r["copy"])
        (k, p), *_ = np.linalg.lstsq(np.array([X, Y], float).T, np.array(S), rcond=None)
        print(f"fitted JOIN_PIXEL_S = {k:.2e} s, JOIN_PROCESS_S = {p:.3f} s   "
              f"(in use: {stitch.JOIN_PIXEL_S:.2e}, {stitch.JOIN_PROCESS_S:.3f})")
    if a.no_memory:
        return
    for n in (1, 7):
        r = subprocess.run([sys.executable, __file__, "--episodes", str(n), "--width", str(a.width), "--height",
                            str(a.height), "--fps", str(a.fps), "--seconds", str(a.seconds), "--preset", a.preset],
                           capture_output=True, text=True, check=True)
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"peak memory, {n} episode(s): python {m['peak_rss_mb']:.0f} MB "
              f"(before stitching {m['rss_before_stitch_mb']:.0f} MB), largest ffmpeg child {m['peak_child_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
