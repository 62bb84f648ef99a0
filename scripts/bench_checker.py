"""Frames per second of the checker's full mode against a naive per-frame detect+embed loop, same clip, same run.

The clip: the astronaut with a slow camera move and a face swap in the middle (tests/evalclips.py),
at 640x480 by default. Every loop decodes the same file:

* naive — dlib's full-frame detector and the descriptor on every frame;
* full, no reuse — full mode with every face embedded one at a time (what full mode did before
  chip reuse and batching: detection every ``--detect-stride`` frames, tracking in between);
* full — full mode as shipped: tracking, a vector reused while the aligned face chip matches the
  last embedded one (fresh at least every ``REFRESH_EVERY`` frames), the rest embedded in batches
  in a second thread that hands them to the descriptor worker process (both cores: dlib's descriptor
  holds the GIL); also timed with the worker off (the thread computes them) and with the thread off.

It checks that full mode agrees with the naive loop: similarities within ``--tol`` and the same
frames flagged as drifted (exit status 1 otherwise).

    .venv/bin/python scripts/bench_checker.py [--frames 96] [--width 640] [--detect-stride 8] [--tol 0.02] [--refresh-every 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import evalclips as E  # noqa: E402

from storyengine import media, tracking  # noqa: E402
from storyengine.consistency import Reference, check, derive_bound  # noqa: E402
from storyengine.encoders.base import l2n  # noqa: E402
from storyengine.plugins import get_encoder  # noqa: E402
from storyengine.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--detect-stride", type=int, default=8)
    ap.add_argument("--tol", type=float, default=0.02, help="largest |full - naive| similarity accepted")
    ap.add_argument("--reuse-tol", type=float, default=tracking.REUSE_TOL, help="chip difference under which a vector is reused")
    ap.add_argument("--refresh-every", type=int, default=tracking.REFRESH_EVERY, help="a fresh vector at least every N frames")
    args = ap.parse_args()
    tracking.REUSE_TOL, tracking.REFRESH_EVERY = args.reuse_tol, args.refresh_every
    enc = get_encoder("dlib-face", Settings())
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    b, src = derive_bound(enc, vecs)
    ref = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), b, src)
    h = args.width * 3 // 4 // 2 * 2
    clip = E.make_clip("swap", args.frames, other="hopper", span=(args.frames // 2, args.frames // 2 + args.frames // 8))
    settings = Settings(check_mode="full", detect_stride=args.detect_stride)
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
        # 2. full mode without reuse or batching (every tracked face embedded, one at a time)
        saved = tracking.REFRESH_EVERY, tracking.EMBED_BATCH
        tracking.REFRESH_EVERY, tracking.EMBED_BATCH, tracking.EMBED_WORKER = 1, 1, False
        t0 = time.perf_counter()
        base = check(path, [ref], settings=settings)
        t_base = time.perf_counter() - t0
        tracking.REFRESH_EVERY, tracking.EMBED_BATCH = saved
        # 3. full mode as shipped, first with the embedding thread off (one core for everything), then with the
        # thread computing the descriptors itself (no worker process)
        tracking.EMBED_THREAD = False
        t0 = time.perf_counter()
        single = check(path, [ref], settings=settings)
        t_single = time.perf_counter() - t0
        tracking.EMBED_THREAD = True
        t0 = time.perf_counter()
        threaded = check(path, [ref], settings=settings)
        t_thread = time.perf_counter() - t0
        tracking.EMBED_WORKER = True
        # the worker process starts once per process (a render checks every take with it): timed on its own
        from storyengine.encoders import descriptor_worker

        t0 = time.perf_counter()
        descriptor_worker.descriptors([np.zeros((150, 150, 3), np.uint8)])
        t_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = check(path, [ref], settings=settings)
        t_full = time.perf_counter() - t0
        # 4. sampled mode, for scale
        t0 = time.perf_counter()
        check(path, [ref], settings=Settings(check_mode="sampled"))
        t_sampled = time.perf_counter() - t0
    n = len(naive)
    full = {s.index: s.similarity for s in res.scores}
    diffs = {i: abs(full[i] - naive[i]) for i in range(n) if full.get(i) is not None and naive[i] is not None}
    worst = max(diffs, key=diffs.get)
    naive_flags = [i for i in range(n) if naive[i] is not None and naive[i] < b]
    full_flags = sorted(s.index for s in res.scores if s.drifted)
    base_flags = sorted(s.index for s in base.scores if s.drifted)
    missing = sum(1 for i in range(n) if (full.get(i) is None) != (naive[i] is None))
    src_counts = Counter(s.source for s in res.scores)
    print(f"clip: {n} frames {args.width}x{h}, face swap at frames {clip.truth.index(True)}–{n - 1 - clip.truth[::-1].index(True)}")
    print(f"naive detect+embed per frame:            {n / t_naive:6.1f} frames/s ({t_naive:.2f} s)")
    print(f"full mode, no reuse/batching (before):   {n / t_base:6.1f} frames/s ({t_base:.2f} s)  "
          f"speed-up {t_naive / t_base:.2f}x; work: {base.stats}")
    print(f"full mode (detect every {args.detect_stride}, track, reuse <{tracking.REUSE_TOL:g}, refresh every "
          f"{tracking.REFRESH_EVERY}, batch {tracking.FaceTracker(enc).batch}): {n / t_full:6.1f} frames/s ({t_full:.2f} s)  "
          f"speed-up {t_naive / t_full:.2f}x vs naive, {t_base / t_full:.2f}x vs no reuse; work: {res.stats}; sources: {dict(src_counts)}")
    same = [s.similarity for s in res.scores]
    print(f"descriptor worker start-up (once per process, not in the times above or below): {t_start:.2f} s")
    print(f"full mode, descriptors in the thread (no worker process): {n / t_thread:6.1f} frames/s ({t_thread:.2f} s); "
          f"the worker gives {t_thread / t_full:.2f}x; same scores: {[s.similarity for s in threaded.scores] == same}")
    print(f"full mode without the embedding thread: {n / t_single:6.1f} frames/s ({t_single:.2f} s); thread + worker give "
          f"{t_single / t_full:.2f}x; same scores: {[s.similarity for s in single.scores] == same}")
    print(f"sampled mode (16 frames): {t_sampled:.2f} s for the clip")
    ok = diffs[worst] <= args.tol and full_flags == naive_flags and missing == 0
    print(f"agreement: max |full - naive| similarity {diffs[worst]:.4f} (frame {worst}, { {s.index: s.source for s in res.scores}[worst]}) "
          f"over {len(diffs)} frames (tolerance {args.tol:g}); same drifted frames as naive: {full_flags == naive_flags} "
          f"({len(full_flags)} flagged; no-reuse run: {len(base_flags)}, same: {base_flags == naive_flags}); "
          f"face found/not found differs on {missing} frames")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
