"""Frames per second of the motion back-end against ffmpeg encoding the same frames, and memory vs shot length.

    PYTHONPATH=. python scripts/bench_motion.py [--frames 96]

Renders the issue's prompt on scikit-image's NASA portrait at 640×360 and 1280×720, timing the animator
alone (frames consumed, not written), then ffmpeg (libx264, the take's settings) encoding the same
frames from memory. The ratio is animator fps / encoder fps: above 1, the animator is not the bottleneck.
Memory: peak RSS growth while rendering N and 4N frames (flat: the clip streams).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storyengine import media  # noqa: E402
from storyengine.backends.motion import MotionBackend  # noqa: E402
from storyengine.specs import CharacterRef, ShotPlan  # noqa: E402

PROMPT = "static camera. she blinks twice, then slowly turns her head to the left and smiles"


def plan(still: str, w: int, h: int, n: int, prompt: str = PROMPT) -> ShotPlan:
    return ShotPlan(series="bench", episode_id="e", shot_id="s", index=0, still=still,
                    characters=[CharacterRef(handle="mara", name="Mara", kind="person")], prompt=prompt, seed=1,
                    fps=24, width=w, height=h, num_frames=n, duration=n / 24, min_frames=1, backend="motion")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=96)
    args = ap.parse_args()
    from skimage import data

    tmp = Path(tempfile.mkdtemp())
    still = tmp / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:300, 40:440])).save(still)
    print(f"cpus: {os.cpu_count()}  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}  frames: {args.frames}")
    print(f"{'size':>10} {'setup s':>8} {'animator fps':>13} {'ffmpeg fps':>11} {'ratio':>6}  {'x real time (24 fps)':>20}")
    for w, h in [(640, 360), (1280, 720)]:
        t0 = time.perf_counter()
        clip = MotionBackend().generate(plan(str(still), w, h, args.frames))
        it = iter(clip.frames)
        first = next(it)  # per-shot setup (landmarks, rig) happens before the first frame
        t1 = time.perf_counter()
        frames = [first] + list(it)
        t2 = time.perf_counter()
        anim_fps = (len(frames) - 1) / (t2 - t1)
        t3 = time.perf_counter()
        with media.VideoWriter(tmp / f"{w}.mp4", w, h, 24, crf=18, preset="veryfast") as wr:
            for f in frames:
                wr.write(f)
        enc_fps = len(frames) / (time.perf_counter() - t3)
        print(f"{w}x{h:<5} {t1 - t0:8.2f} {anim_fps:13.1f} {enc_fps:11.1f} {anim_fps / enc_fps:6.2f}  {anim_fps / 24:20.2f}")
        del frames
    # memory: consume without keeping frames; RSS growth must not scale with the shot's length
    for n in (args.frames, 4 * args.frames):
        before = rss_mb()
        peak = before
        for i, _ in enumerate(MotionBackend().generate(plan(str(still), 640, 360, n)).frames):
            if i % 16 == 0:
                peak = max(peak, rss_mb())
        print(f"memory: {n:4d} frames at 640x360 -> RSS growth {peak - before:6.1f} MB")


if __name__ == "__main__":
    main()
