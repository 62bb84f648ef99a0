"""Robustness of the appearance encoder (pets, objects, drawn characters) on package-shipped photos.

Every non-face subject shipped in installed packages (scikit-image's data, matplotlib's sample
data) is the "character" in turn: its whole-photo descriptor is the reference, its variants are
the genuine set (relit ×0.55/×1.5, gamma 0.6/1.6, white balance warm/cool, 80 % crops, ±15°
rotations, mirror, JPEG q=30, 0.5× scale), and every other subject (and its variants) is an
impostor. Prints per subject the lowest genuine and the highest impostor cosine, and overall the
false-reject rate (genuine variants under the encoder's same_bound) and the impostor acceptance.

    .venv/bin/python scripts/eval_appearance.py
"""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np


def subjects() -> dict[str, np.ndarray]:
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data

    out = {"chelsea (cat)": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket(),
           "motorcycle": data.stereo_motorcycle()[0], "ihc (stain)": data.immunohistochemistry(),
           "hubble": data.hubble_deep_field(), "retina": data.retina(), "colorwheel": data.colorwheel()[..., :3],
           "logo (drawn)": data.logo()[..., :3]}
    for name, f in (("minduka (drawn)", "Minduka_Present_Blue_Pack.png"), ("mpl logo (drawn)", "logo2.png")):
        out[name] = np.asarray(Image.open(cbook.get_sample_data(f)).convert("RGB"))
    return {k: np.ascontiguousarray(v.astype(np.uint8)) for k, v in out.items()}


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def _rotate(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    r = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return r[h // 10:h - h // 10, w // 10:w - w // 10]  # the reflected corners mostly cut away


def variants(img: np.ndarray) -> dict[str, np.ndarray]:
    f = img.astype(np.float32)
    h, w = img.shape[:2]
    ch, cw = h * 8 // 10, w * 8 // 10
    out = {
        "relit ×0.55": f * 0.55, "relit ×1.5": f * 1.5,
        "gamma 0.6": 255 * (f / 255) ** 0.6, "gamma 1.6": 255 * (f / 255) ** 1.6,
        "warm WB": f * [1.25, 1.0, 0.75], "cool WB": f * [0.78, 0.95, 1.3],
        "lamp (warm, dim)": f * [0.9, 0.7, 0.45],
        "crop TL": img[:ch, :cw], "crop BR": img[h - ch:, w - cw:], "crop centre": img[(h - ch) // 2:(h + ch) // 2, (w - cw) // 2:(w + cw) // 2],
        "rot +15": _rotate(img, 15), "rot -15": _rotate(img, -15), "mirror": img[:, ::-1],
        "jpeg 30": _jpeg(img, 30), "scale 0.5": cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
    }
    return {k: np.ascontiguousarray(np.clip(v, 0, 255).astype(np.uint8)) for k, v in out.items()}


def evaluate(enc, show: bool = True) -> dict[str, float]:
    subs = subjects()
    t0 = time.perf_counter()
    ref = {k: enc.embed_region(v, (0, 0, v.shape[1], v.shape[0])) for k, v in subs.items()}
    var = {k: {n: enc.embed_region(x, (0, 0, x.shape[1], x.shape[0])) for n, x in variants(v).items()} for k, v in subs.items()}
    dt = time.perf_counter() - t0
    b = enc.same_bound
    fr = gen = ia = imp = 0
    rows = []
    for k in subs:
        g = {n: float(v @ ref[k]) for n, v in var[k].items()}
        worst = min(g, key=g.get)
        others = {(o, n): float(v @ ref[k]) for o in subs if o != k for n, v in [("original", ref[o]), *var[o].items()]}
        top = max(others, key=others.get)
        fr += sum(s < b for s in g.values())
        gen += len(g)
        ia += sum(s >= b for s in others.values())
        imp += len(others)
        rows.append((k, g[worst], worst, others[top], f"{top[0]} {top[1]}"))
    if show:
        print(f"{enc.key()}: same_bound {b:.2f}; {len(subs)} subjects × {len(next(iter(var.values())))} variants; "
              f"{dt:.1f} s for {len(subs) * (1 + len(next(iter(var.values()))))} descriptors")
        print(f"| subject | lowest genuine | (variant) | highest impostor | (impostor) |\n|---|---|---|---|---|")
        for k, gw, wn, it, tn in rows:
            print(f"| {k} | {gw:.3f} | {wn} | {it:.3f} | {tn} |")
        print(f"genuine variants under the bound: {fr}/{gen} = {fr / gen:.3f}; impostors at or above it: {ia}/{imp} = {ia / imp:.4f}")
    return {"false_reject": fr / gen, "impostor_accept": ia / imp, "min_genuine": min(r[1] for r in rows),
            "max_impostor": max(r[3] for r in rows)}


if __name__ == "__main__":
    from storyengine.encoders.appearance import AppearanceEncoder

    evaluate(AppearanceEncoder())
    sys.exit(0)
