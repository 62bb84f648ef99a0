"""Does the animator do what the prompt says? Measured from dlib's 68 landmarks on the rendered frames.

    PYTHONPATH=. python scripts/eval_motion.py [--frames 72] [--size 640x360] [--markdown]

Portraits that ship inside installed packages (nothing downloaded): scikit-image's NASA portrait of
Eileen Collins, matplotlib's US Navy portrait of Grace Hopper, and the largest face of insightface's
sample group photo ``t1.jpg``. For each portrait and prompt it reports: blinks counted (eye aspect
ratio below 70 % of the shot's median, runs of frames) against blinks asked; the head-yaw range (nose
offset from the eyes over the inter-ocular distance); the mouth-width range (max / min); for a static
camera, the largest mean absolute change of the frame's 6-px border against frame 0 (grey levels);
and the drift checker's verdict on the take (references: the portrait, its mirror and a re-lit crop).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storyengine import media  # noqa: E402
from storyengine.backends.motion import MotionBackend  # noqa: E402
from storyengine.backends.motion.face import detect_landmarks, eye_aspect_ratio, head_yaw, mouth_width  # noqa: E402
from storyengine.specs import CharacterRef, ShotPlan  # noqa: E402

PROMPTS = [  # (prompt, blinks asked)
    ("static camera. she blinks twice, then slowly turns her head to the left and smiles", 2),
    ("static camera. she blinks three times", 3),
    ("static camera. she turns her head to the right, then nods", 0),
    ("handheld. she glances left, then a deep breath and she smiles", 0),
    ("slow orbit left, she blinks, then looks at the camera", 1),
]


def portraits() -> dict[str, np.ndarray]:
    import importlib.util

    import matplotlib.cbook as cbook
    from skimage import data

    out = {"astronaut": np.ascontiguousarray(data.astronaut()[:300, 40:440]),
           "hopper": np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))}
    spec = importlib.util.find_spec("insightface")
    if spec and spec.submodule_search_locations:
        t1 = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
        if t1.is_file():
            img = np.asarray(Image.open(t1).convert("RGB"))
            pts = detect_landmarks(img, 1)
            if pts:
                (x0, y0), (x1, y1) = pts[0].min(0), pts[0].max(0)
                cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
                h = int(3.2 * s)
                w = h * 4 // 3
                X0, Y0 = int(max(0, cx - w / 2)), int(max(0, cy - 0.45 * h))
                out["t1-largest"] = np.ascontiguousarray(img[Y0:Y0 + h, X0:X0 + w])
    return out


def reference(img: np.ndarray):
    from storyengine.consistency import Reference, derive_bound
    from storyengine.encoders.base import l2n
    from storyengine.plugins import get_encoder

    enc = get_encoder("dlib-face")
    h, w = img.shape[:2]
    relit = np.clip(img[h // 30: h - h // 30, w // 12: w - w // 12].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
    vecs = np.stack([enc.embed(p)[0].vector for p in (img, np.ascontiguousarray(img[:, ::-1]), relit)])
    bound, src = derive_bound(enc, vecs)
    return Reference("subject", enc, vecs, l2n(vecs.mean(axis=0)), bound, src)


def count_blinks(ears: list[float]) -> int:
    thr = 0.7 * float(np.median(ears))
    closed = [e < thr for e in ears]
    return sum(1 for i, c in enumerate(closed) if c and (i == 0 or not closed[i - 1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--size", default="640x360")
    args = ap.parse_args()
    W, H = (int(x) for x in args.size.split("x"))
    from storyengine.consistency import check
    from storyengine.settings import Settings

    tmp = Path(tempfile.mkdtemp())
    rows = []
    t0 = time.time()
    for name, img in portraits().items():
        still = tmp / f"{name}.png"
        Image.fromarray(img).save(still)
        ref = reference(img)
        for k, (prompt, asked) in enumerate(PROMPTS):
            plan = ShotPlan(series="eval", episode_id="e", shot_id=f"{name}-{k}", index=0, still=str(still),
                            characters=[CharacterRef(handle="subject", name="S", kind="person")], prompt=prompt, seed=1,
                            fps=24, width=W, height=H, num_frames=args.frames, duration=args.frames / 24, min_frames=1,
                            backend="motion")
            frames = list(MotionBackend().generate(plan).frames)
            m = []
            for f in frames:
                pts = detect_landmarks(f, 1)
                m.append((eye_aspect_ratio(pts[0]), head_yaw(pts[0]), mouth_width(pts[0])) if pts else None)
            found = [x for x in m if x]
            border = "–"
            if prompt.startswith("static camera"):
                b = lambda f: np.concatenate([f[:6].ravel(), f[-6:].ravel(), f[:, :6].ravel(), f[:, -6:].ravel()]).astype(np.float32)  # noqa: E731
                border = f"{max(np.abs(b(f) - b(frames[0])).mean() for f in frames[1:]):.2f}"
            path = tmp / f"{name}-{k}.mp4"
            with media.VideoWriter(path, W, H, 24, crf=18, preset="veryfast") as w:
                for f in frames:
                    w.write(f)
            res = check(path, [ref], settings=Settings(detect_stride=4))
            s = res.verdict.summaries[0] if res.verdict.summaries else None
            rows.append({
                "portrait": name, "prompt": prompt, "faces found": f"{len(found)}/{len(frames)}",
                "blinks counted / asked": f"{count_blinks([x[0] for x in found]) if found else 0} / {asked}",
                "yaw range": f"{max(x[1] for x in found) - min(x[1] for x in found):.3f}" if found else "–",
                "mouth-width range": f"{max(x[2] for x in found) / min(x[2] for x in found):.3f}" if found else "–",
                "border (static)": border,
                "checker": f"{res.verdict.decision} (min {s.min:.3f} ≥ bound {ref.bound:.3f})" if s and s.min is not None
                else res.verdict.decision,
            })
            print(f"{name:11s} {k}: {rows[-1]}", file=sys.stderr, flush=True)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\n{len(rows)} takes of {args.frames} frames at {W}x{H} in {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
