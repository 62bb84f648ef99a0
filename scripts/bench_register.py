"""Time `register_character` on 5 photos of one face (scikit-image's astronaut, varied), in a fresh temp workspace.

    .venv/bin/python scripts/bench_register.py [--encoder dlib-face] [--repeat 3]

Prints one line per run and the median: wall time to gate, embed, outlier-check and store 5 photos
(encoder already loaded; the first-load time is printed separately).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photos(folder: Path) -> list[Path]:
    from skimage import data

    a = data.astronaut()
    base = a[:300, 40:440]
    rot = lambda img, d: np.asarray(Image.fromarray(img).rotate(d, resample=Image.BICUBIC))
    variants = {
        "front.png": base,
        "mirror.jpg": base[:, ::-1].copy(),
        "relit.png": np.clip(a[10:290, 70:410].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8),
        "tilted.png": rot(a[:340, 0:460], 8),
        "wide.jpg": a[:380, :480][:, ::-1].copy(),
    }
    out = []
    for name, img in variants.items():
        p = folder / name
        Image.fromarray(np.ascontiguousarray(img)).save(p, quality=90)
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="dlib-face")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from storyengine import plugins
    from storyengine.register import register_character
    from storyengine.registry import Registry
    from storyengine.settings import Settings
    from storyengine.workspace import Workspace

    settings = Settings(person_encoders=(args.encoder,))
    t0 = time.perf_counter()
    plugins.get_encoder(args.encoder, settings)
    print(f"load {args.encoder}: {time.perf_counter() - t0:.2f} s")
    times = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            ps = photos(Path(d))
            ws = Workspace.at(Path(d) / "ws").ensure()
            reg = Registry.open(ws)
            t0 = time.perf_counter()
            r = register_character(reg, ws, "bench", ps, kind="person", settings=settings)
            dt = time.perf_counter() - t0
            reg.close()
        times.append(dt)
        print(f"run {i + 1}: registered {len(r.accepted)}/5 photos in {dt:.2f} s ({len(r.rejected)} refused)")
        for line in r.rejected:
            print("  refused:", line)
    print(f"median: {statistics.median(times):.2f} s for 5 photos ({args.encoder})")


if __name__ == "__main__":
    main()
