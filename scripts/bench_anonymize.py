"""Cost of anonymising bystanders: a take written with and without it, same still, same seed, same run.

    .venv/bin/python scripts/bench_anonymize.py [--width 640 --height 360 --seconds 4 --strides 3 6 12]

The still is a demo carriage (storyengine.demo.stills) with the character (scikit-image's astronaut)
and one bystander (Grace Hopper); the take is the motion back-end's, written as the renderer writes it
(``shots.write_take``: generate, encode at take_crf, veryfast). Prints seconds per frame without
anonymisation (the baseline), with it at each detection stride (and at the default stride with the
detection in line instead of in its own thread), the seconds it adds to a take (target <= 0.6 s), the
ratio (target <= 1.3x at the default stride) against the take alone and against the take plus its
check (what rendering a take costs), the work done (detections, chips embedded) and the anonymiser's
own report (faces, frames) so a fast run that anonymised nothing cannot pass for a good one. The
variants run interleaved, ``--repeat`` rounds, median of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from storyengine import anonymize
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
    ap.add_argument("--repeat", type=int, default=3)
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
    det = _dlib(small=True)

    def once(anon_stride: int | None, thread: bool = True) -> tuple[float, float, Anonymizer | None]:
        """(wall seconds a frame, this process's CPU seconds a frame (all its threads; not the encoder's), anonymiser)"""
        anonymize.DETECT_THREAD = thread
        anon = Anonymizer(enc, [ref], AnonymizeOptions(stride=anon_stride), detector=det) if anon_stride else None
        t, c = time.perf_counter(), time.process_time()
        frames = write_take(backend, plan, d / "take.mp4", settings, lambda i: None, anon)
        return (time.perf_counter() - t) / frames, (time.process_time() - c) / frames, anon

    # the bare take and the anonymised ones interleaved, each measure the median of --repeat: a shared machine's
    # load moves them together, so the ratios stay comparable
    dflt = AnonymizeOptions().stride
    variants = [("bare", None, True)] + [(f"stride {s}", s, True) for s in a.strides] + [(f"stride {dflt}, no thread", dflt, False)]
    times: dict[str, list[float]] = {v[0]: [] for v in variants}
    cpus: dict[str, list[float]] = {v[0]: [] for v in variants}
    last: dict[str, Anonymizer | None] = {}
    for _ in range(a.repeat):
        for name, s, thread in variants:
            t, c, anon = once(s, thread)
            times[name].append(t)
            cpus[name].append(c)
            last[name] = anon
    anonymize.DETECT_THREAD = True
    from storyengine.consistency import check

    t = time.perf_counter()
    check(d / "take.mp4", [ref], settings=settings)  # what a render also does to every take (full mode)
    chk = (time.perf_counter() - t) / n
    base, cbase = statistics.median(times["bare"]), statistics.median(cpus["bare"])
    print(f"{a.width}x{a.height}, {n} frames, motion back-end + encode (crf {settings.take_crf}, veryfast), "
          f"median of {a.repeat}")
    print(f"  without anonymisation: {base * 1000:.1f} ms/frame ({base * n:.2f} s a take); the check of that take "
          f"(full mode): {chk * 1000:.1f} ms/frame; CPU of this process {cbase * n:.2f} s a take")
    for name, s, _thread in variants[1:]:
        t, c = statistics.median(times[name]), statistics.median(cpus[name])
        anon = last[name]
        r, w = anon.report, getattr(anon, "work", {"detections": "?", "embedded": "?", "reused": "?"})
        tag = "  <- default" if s == AnonymizeOptions().stride and _thread else ""
        print(f"  {name:20s}: {t * 1000:.1f} ms/frame, +{(t - base) * n:.2f} s a take, ratio {t / base:.2f}x (take written), "
              f"{(t + chk) / (base + chk):.2f}x (written and checked); CPU +{(c - cbase) * n:.2f} s a take; {w['detections']} detections, faces embedded "
              f"{w['embedded']}, reused {w['reused']} ({r.faces} bystander face(s) in {len(r.frames)}/{n} frames, kept {sorted(set(r.kept))}){tag}")


if __name__ == "__main__":
    main()
