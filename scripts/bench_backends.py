"""Time each diffusers back-end on its tiny random pipeline (CPU) and print a Markdown table.

    .venv/bin/python scripts/bench_backends.py [--frames 17] [--size 64] [--steps 2] [--repeat 3]

Tiny pipelines measure the back-end's overhead and the pipelines' fixed costs, not real
model speed (see docs/backends.md for that). Ratios are against the fastest model back-end;
the weight-free motion back-end is timed too, for scale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiny_pipelines as tp  # noqa: E402
from storyengine.plugins import backend_class  # noqa: E402
from storyengine.specs import ShotPlan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=tp.FRAMES)
    ap.add_argument("--size", type=int, default=tp.SIZE)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "still.png"
        Image.fromarray((np.random.default_rng(0).random((args.size, args.size, 3)) * 255).astype("uint8")).save(still)
        rows = []
        for bid, build in {"motion": None, **tp.BUILDERS}.items():
            if build is None:  # the weight-free back-end, for scale
                backend = backend_class(bid)()
            else:
                opts = {"steps": args.steps, "width": args.size, "height": args.size}
                if bid != "svd":
                    opts["max_sequence_length"] = 16
                extra = {"face_embedder": tp.fake_face_embedder} if bid == "consisid" else {}
                backend = backend_class(bid)(opts, pipeline=build(), **extra)
            plan = ShotPlan(
                series="bench", episode_id="e", shot_id="s", index=0, still=str(still), characters=[], prompt="a person walks",
                seed=0, fps=8, width=args.size, height=args.size, num_frames=args.frames, duration=args.frames / 8,
                min_frames=1, backend=bid,
            )
            list(backend.generate(plan).frames)  # warm-up
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                list(backend.generate(plan).frames)
                times.append(time.perf_counter() - t0)
            rows.append((bid, min(times)))
    fastest = min(t for bid, t in rows if bid != "motion")  # ratios against the fastest model back-end
    print(f"Tiny random pipelines, CPU, {args.frames} frames {args.size}×{args.size}, {args.steps} steps, best of {args.repeat}\n")
    print("| back-end | s / clip | ms / frame | × fastest model |")
    print("|---|---:|---:|---:|")
    for bid, t in sorted(rows, key=lambda r: r[1]):
        ratio = "–" if bid == "motion" else f"{t / fastest:.2f}"
        print(f"| {bid} | {t:.3f} | {1000 * t / args.frames:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
