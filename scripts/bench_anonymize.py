"""Cost of anonymising bystanders: a take written with and without it, same still, same seed, same run.

    .venv/bin/python scripts/bench_anonymize.py [--width 640 --height 360 --seconds 4 --strides 3 6 12]

The still is a demo carriage (storyengine.demo.stills) with the character (scikit-image's astronaut)
and one bystander (Grace Hopper); the take is the motion back-end's, written as the renderer writes it
(``shots.write_take``: generate, encode at take_crf, veryfast). Prints seconds per frame without
anonymisation (the baseline), with it at each detection stride, the ratio (target <= 1.3x at the
default stride) against the take alone and against the take plus its check (what rendering a take costs),
and the anonymiser's own report (faces, frames) so a fast run that anonymised nothing
cannot pass for a good one. Best of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from storyengine.anonymize import AnonymizeOptions, Anonymizer, _dlib
from storyengine.backends.motion import MotionBackend
from storyengine.consistency import Reference
from storyengine.demo.stills import bystander_sources, compose_still, demo_sources
from storyengine.encoders.base import l2n
from storyengine.settings import Settings
from storyengine.shots import write_take
from storyengine.specs import ShotPlan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--strides", type=int, nargs="+", default=[3, 6, 12])
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-anon-"))
    src = demo_sources()
    still = d / "still.png"
    compose_still(still, people=[src["person"]], time_of_day="morning", framing="medium", seed=101,
                  size=(a.width, a.height), bystanders=[bystander_sources()[0]])
    enc = _dlib()
    v = l2n(enc.embed(src["person"].image[:300, 40:440])[0].vector)
    ref = Reference("mara", enc, v[None], v, 0.88, "bench")
    n = round(a.seconds * 24)
    plan = ShotPlan(series="b", episode_id="e", shot_id="s", index=0, still=str(still), characters=[], prompt="",
                    seed=7, fps=24, width=a.width, height=a.height, num_frames=n, duration=n / 24, min_frames=n,
                    backend="motion")
    backend, settings = MotionBackend(), Settings()

    def timed(anon_stride: int | None) -> tuple[float, Anonymizer | None]:
        best, anon = float("inf"), None
        for _ in range(a.repeat):
            anon = Anonymizer(enc, [ref], AnonymizeOptions(stride=anon_stride), detector=_dlib(small=True)) if anon_stride else None
            t = time.perf_counter()
            frames = write_take(backend, plan, d / "take.mp4", settings, lambda i: None, anon)
            best = min(best, (time.perf_counter() - t) / frames)
        return best, anon

    base, _ = timed(None)
    from storyengine.consistency import check

    t = time.perf_counter()
    check(d / "take.mp4", [ref], settings=settings)  # what a render also does to every take (full mode)
    chk = (time.perf_counter() - t) / n
    print(f"{a.width}x{a.height}, {n} frames, motion back-end + encode (crf {settings.take_crf}, veryfast)")
    print(f"  without anonymisation: {base * 1000:.1f} ms/frame; the check of that take (full mode): "
          f"{chk * 1000:.1f} ms/frame")
    for s in a.strides:
        t, anon = timed(s)
        r = anon.report
        tag = "  <- default" if s == AnonymizeOptions().stride else ""
        print(f"  stride {s:2d}: {t * 1000:.1f} ms/frame, ratio {t / base:.2f}x (take written), "
              f"{(t + chk) / (base + chk):.2f}x (take written and checked) "
              f"({r.faces} bystander face(s) in {len(r.frames)}/{n} frames, kept {sorted(set(r.kept))}){tag}")


if __name__ == "__main__":
    main()
