"""Frames per second of the checker's full mode against a naive per-frame detect+embed loop, same clip, same run.

The clip: the astronaut with a slow camera move and a face swap in the middle (tests/evalclips.py),
at 640x480 by default. Both loops decode the same file; the naive loop runs dlib's full-frame
detector and the descriptor on every frame; full mode detects every ``--detect-stride`` frames,
tracks by local re-detection in between and reuses vectors of unchanged face crops.

    .venv/bin/python scripts/bench_checker.py [--frames 96] [--width 640] [--detect-stride 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import evalclips as E  # noqa: E402

from storyengine import media  # noqa: E402
from storyengine.consistency import Reference, check, derive_bound  # noqa: E402
from storyengine.encoders.base import l2n  # noqa: E402
from storyengine.plugins import get_encoder  # noqa: E402
from storyengine.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--detect-stride", type=int, default=8)
    args = ap.parse_args()
    enc = get_encoder("dlib-face")
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    b, src = derive_bound(enc, vecs)
    ref = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), b, src)
    h = args.width * 3 // 4 // 2 * 2
    clip = E.make_clip("swap", args.frames, other="hopper", span=(args.frames // 2, args.frames // 2 + args.frames // 8))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        with media.VideoWriter(path, args.width, h, E.FPS, crf=18, preset="veryfast") as w:
            for f in clip.frames:
                w.write(cv2.resize(f, (args.width, h), interpolation=cv2.INTER_CUBIC))
        # 1. naive: full-frame detection and an embedding for every face of every frame
        t0 = time.perf_counter()
        naive = []
        for f in media.iter_frames(path):
            dets = enc.embed(f)
            naive.append(max((ref.similarity(d.vector) for d in dets), default=None))
        t_naive = time.perf_counter() - t0
        # 2. full mode
        t0 = time.perf_counter()
        res = check(path, [ref], settings=Settings(check_mode="full", detect_stride=args.detect_stride))
        t_full = time.perf_counter() - t0
        # 3. sampled mode, for scale
        t0 = time.perf_counter()
        check(path, [ref], settings=Settings(check_mode="sampled"))
        t_sampled = time.perf_counter() - t0
    n = len(naive)
    full = {s.index: s.similarity for s in res.scores}
    diffs = [abs(full[i] - naive[i]) for i in range(n) if full.get(i) is not None and naive[i] is not None]
    naive_flags = [i for i in range(n) if naive[i] is not None and naive[i] < b]
    full_flags = sorted(s.index for s in res.scores if s.drifted)
    print(f"clip: {n} frames {args.width}x{h}, face swap at frames {clip.truth.index(True)}–{n - 1 - clip.truth[::-1].index(True)}")
    print(f"naive detect+embed per frame: {n / t_naive:6.1f} frames/s ({t_naive:.2f} s)")
    print(f"full mode (detect every {args.detect_stride}, track, reuse): {n / t_full:6.1f} frames/s ({t_full:.2f} s)  "
          f"speed-up {t_naive / t_full:.2f}x; work: {res.stats}")
    print(f"sampled mode (16 frames): {t_sampled:.2f} s for the clip")
    print(f"agreement: max |full - naive| similarity {max(diffs):.4f} over {len(diffs)} frames; "
          f"same drifted frames: {full_flags == naive_flags} ({len(full_flags)} flagged)")


if __name__ == "__main__":
    main()
