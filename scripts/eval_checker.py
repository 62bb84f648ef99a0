"""Frame-level evaluation of the drift checker on real faces (see tests/evalclips.py).

Clips of the astronaut (the character) in which other people's faces (Grace Hopper, Tom Hanks,
three people of insightface's group photo) are pasted over hers at known frames, or morphed in,
and clean clips with nuisances. Prints, per mode, the frame-level detection rate (swapped frames
flagged as drifted) and false-reject rate (clean frames of the character flagged as drifted).

    .venv/bin/python scripts/eval_checker.py [--frames 24] [--mode full|sampled|both]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import evalclips as E  # noqa: E402

from storyengine import tracking  # noqa: E402
from storyengine.consistency import Reference, check, derive_bound  # noqa: E402
from storyengine.encoders.base import l2n  # noqa: E402
from storyengine.plugins import get_encoder  # noqa: E402
from storyengine.settings import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--mode", default="both", choices=["full", "sampled", "both"])
    ap.add_argument("--detect-stride", type=int, default=8)
    ap.add_argument("--reuse-tol", type=float, default=tracking.REUSE_TOL, help="chip difference under which full mode reuses a vector")
    args = ap.parse_args()
    tracking.REUSE_TOL = args.reuse_tol
    enc = get_encoder("dlib-face", Settings())
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    bound, src = derive_bound(enc, vecs)
    ref = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), bound, src)
    print(f"character: astronaut (3 photos), encoder {enc.key()}, bound {bound:.3f} ({src})")
    modes = ["full", "sampled"] if args.mode == "both" else [args.mode]
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(c, E.write_clip(c, Path(tmp) / f"{c.name}.mp4")) for c in E.suite(args.frames)]
        for mode in modes:
            tp = fn = fp = tn = unknown_clean = 0
            work: dict[str, int] = {}
            t0 = time.perf_counter()
            print(f"\n== {mode} mode ==")
            print(f"{'clip':16} {'verdict':8} {'flagged':>8} {'swapped':>8} {'clean':>6} {'false':>6}  reason")
            for clip, path in clips:
                res = check(path, [ref], settings=Settings(check_mode=mode, detect_stride=args.detect_stride))
                flags = {s.index: (s.drifted, s.similarity) for s in res.scores}
                for k, v in res.stats.items():
                    work[k] = work.get(k, 0) + v
                c_tp = c_fp = c_sw = c_cl = 0
                for i, (drift, sim) in flags.items():
                    truth = clip.truth[i]
                    if truth is True:
                        c_sw += 1
                        c_tp += drift
                    elif truth is False:
                        c_cl += 1
                        c_fp += drift
                        unknown_clean += sim is None
                tp, fn, fp, tn = tp + c_tp, fn + c_sw - c_tp, fp + c_fp, tn + c_cl - c_fp
                print(f"{clip.name:16} {res.verdict.decision:8} {c_tp:>4}/{c_sw:<3} {c_sw:>8} {c_cl:>6} {c_fp:>6}  {res.verdict.reason[:70]}")
            dt = time.perf_counter() - t0
            print(f"{mode}: frame-level detection rate {tp}/{tp + fn} = {tp / max(1, tp + fn):.3f}; "
                  f"false-reject rate {fp}/{fp + tn} = {fp / max(1, fp + tn):.3f} "
                  f"(clean frames with no face found: {unknown_clean}); {dt:.1f} s" + (f"; work: {work}" if work else ""))


if __name__ == "__main__":
    main()
