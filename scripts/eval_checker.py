"""Frame-level evaluation of the drift checker on real faces (see tests/evalclips.py), as tables.

Two parts (both print markdown tables for docs/report.md and docs/encoders.md):

1. **Identities × variants** (``--part faces``): every face shipped in installed packages (the
   astronaut, Grace Hopper, Tom Hanks, the six people of insightface's group photo) is the
   character in turn, registered from three photos (original, mirror, re-lit crop) as a new user
   would. Genuine frames: her own variants (rotated ±12°, re-lit ×0.6/×1.4, warm/cool white balance,
   gamma, an occluding bar, JPEG 25, half scale, and a 20 % morph toward someone else). Impostor
   frames: every variant of every other identity, and 70 %/85 % morphs toward them. Lookalike
   pairs: the three most similar identity pairs. Each frame is detected and embedded from
   scratch (what full and sampled mode both do on a detection frame), scored (a) with the bound
   alone, (b) with the cohort where the impostor is a known character of the series, and (c) with
   the cohort where the impostor is a stranger (left out of the cohort: only the background set).
2. **Clips** (``--part clips``): clips of the astronaut with other faces pasted or morphed in at
   known frames and clean clips with nuisances, through ``check`` in full and sampled mode, with
   and without the cohort: frame-level detection rate and false-reject rate.

    .venv/bin/python scripts/eval_checker.py [--part faces|clips|both] [--frames 24] [--mode full|sampled|both]
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


# ---------------------------------------------------------------- part 1: identities × variants
def identities() -> dict[str, np.ndarray]:
    """Every package-shipped face, one crop per person (with margin), named."""
    from PIL import Image

    src = E.sources()
    out = {"astronaut": src["astronaut"], "hopper": src["hopper"], "hanks": src["hanks"]}
    t1 = np.asarray(Image.open(E.insightface_images() / "t1.jpg").convert("RGB"))
    enc = get_encoder("dlib-face", Settings())
    for i, (box, _) in enumerate(sorted(enc.detect(t1), key=lambda d: d[0][0])):
        x0, y0, x1, y1 = box
        m = (x1 - x0) // 2
        out[f"t1-{i}"] = np.ascontiguousarray(t1[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m])
    return out


def _morph(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """``a`` with ``b``'s face blended over hers at ``alpha`` (aligned on dlib's 5 landmarks)."""
    import cv2

    enc = get_encoder("dlib-face", Settings())
    ca = enc.align(a, enc.detect(a)[0][0])
    cb = enc.align(b, enc.detect(b)[0][0])
    m = cv2.addWeighted(ca, 1 - alpha, cb, alpha, 0)
    return cv2.resize(m, (300, 300), interpolation=cv2.INTER_CUBIC)


def face_variants(img: np.ndarray) -> dict[str, np.ndarray]:
    import cv2

    h, w = img.shape[:2]
    f = img.astype(np.float32)

    def rot(d):
        M = cv2.getRotationMatrix2D((w / 2, h / 2), d, 1.0)
        return cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    occl = img.copy()
    occl[int(h * 0.62):int(h * 0.78), int(w * 0.2):int(w * 0.8)] = (40, 60, 90)
    _, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 25])
    out = {"rot +12": rot(12), "rot -12": rot(-12), "relit x0.6": f * 0.6, "relit x1.4": f * 1.4,
           "warm WB": f * [1.2, 1.0, 0.8], "cool WB": f * [0.8, 0.95, 1.25], "gamma 1.5": 255 * (f / 255) ** 1.5,
           "occluded mouth": occl, "jpeg 25": cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1],
           "half scale": cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA) if min(h, w) >= 200
           else cv2.resize(img, (w * 2, h * 2), interpolation=cv2.INTER_CUBIC)}
    return {k: np.ascontiguousarray(np.clip(v, 0, 255).astype(np.uint8)) for k, v in out.items()}


def _vec(enc, img: np.ndarray) -> np.ndarray | None:
    dets = enc.embed(img)
    if not dets:
        dets = enc.embed(cv2_up(img))
    return max(dets, key=lambda d: d.area).vector if dets else None


def cv2_up(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)


def face_table() -> None:
    from storyengine import cohort

    enc = get_encoder("dlib-face", Settings())
    ids = identities()
    names = list(ids)
    t0 = time.perf_counter()
    refs, gen, imp = {}, {}, {}
    for n, img in ids.items():
        relit = np.clip(img[img.shape[0] // 20:, img.shape[1] // 20:].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
        refs[n] = np.stack([v for v in (_vec(enc, img), _vec(enc, np.ascontiguousarray(img[:, ::-1])), _vec(enc, relit))
                            if v is not None])
        gen[n] = {k: _vec(enc, v) for k, v in face_variants(img).items()}
    for n in names:
        for o in names:
            if o != n:
                gen[n][f"morph 20% {o}"] = _vec(enc, _morph(ids[n], ids[o], 0.2))
                imp[(n, o)] = {**{f"{o} {k}": v for k, v in gen[o].items() if not k.startswith("morph")},
                               f"{o} original": refs[o][0],
                               **{f"morph {int(a * 100)}% {o}": _vec(enc, _morph(ids[n], ids[o], a)) for a in (0.7, 0.85)}}
    print(f"\n{len(names)} identities ({', '.join(names)}); embedded in {time.perf_counter() - t0:.1f} s")
    cross = {(a, b): float(np.max(refs[a] @ refs[b].T)) for a in names for b in names if a < b}
    pairs = sorted(cross, key=cross.get, reverse=True)[:3]
    print("closest pairs: " + ", ".join(f"{a}–{b} {cross[(a, b)]:.3f}" for a, b in pairs))

    def ref_for(n: str, cohort_names: list[str]) -> Reference:
        b, srcb = derive_bound(enc, refs[n])
        r = Reference(n, enc, refs[n], l2n(refs[n].mean(axis=0)), b, srcb)
        co = [(o, refs[o]) for o in cohort_names if o != n and not cohort.is_herself(refs[n], refs[o], enc)]
        if not co:
            return r
        b2, src2 = cohort.cohort_bound(r, co)
        return Reference(n, enc, refs[n], r.centroid, b2, src2, co)

    def flagged(r: Reference, v: np.ndarray) -> bool:
        s = r.similarity(v)
        near = r.nearest_other(v)
        return s < r.bound or (near is not None and near[1] >= s)

    rows = []
    for label, cohort_of in (("bound alone", lambda n, o: []),
                             ("cohort, impostor a known character", lambda n, o: names),
                             ("cohort, impostor a stranger", lambda n, o: [x for x in names if x != o])):
        fr = g_all = g_missing = tp = i_all = i_missing = 0
        lk_tp = lk_all = 0
        worst_gen = []
        for n in names:
            r_gen = ref_for(n, cohort_of(n, None) if label != "cohort, impostor a stranger" else names)
            for k, v in gen[n].items():
                if v is None:
                    g_missing += 1
                    continue
                g_all += 1
                if flagged(r_gen, v):
                    fr += 1
                    worst_gen.append(f"{n} {k} {r_gen.similarity(v):.3f}<{r_gen.bound:.3f}")
            for o in names:
                if o == n:
                    continue
                r = ref_for(n, cohort_of(n, o))
                for k, v in imp[(n, o)].items():
                    if v is None:
                        i_missing += 1
                        continue
                    i_all += 1
                    hit = flagged(r, v)
                    tp += hit
                    if (min(n, o), max(n, o)) in pairs:
                        lk_all += 1
                        lk_tp += hit
        rows.append((label, fr, g_all, g_missing, tp, i_all, i_missing, lk_tp, lk_all, worst_gen))
    print("| scoring | genuine frames falsely rejected | impostor frames flagged | lookalike-pair frames flagged | no face found (genuine / impostor) |")
    print("|---|---|---|---|---|")
    for label, fr, g_all, g_missing, tp, i_all, i_missing, lk_tp, lk_all, _ in rows:
        print(f"| {label} | {fr}/{g_all} = {fr / max(1, g_all):.3f} | {tp}/{i_all} = {tp / max(1, i_all):.4f} | "
              f"{lk_tp}/{lk_all} = {lk_tp / max(1, lk_all):.3f} | {g_missing} / {i_missing} |")
    for label, *_, worst in rows:
        if worst:
            print(f"{label}: false rejects: {'; '.join(worst[:8])}")


# ---------------------------------------------------------------- part 2: clips
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="both", choices=["faces", "clips", "both"])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--mode", default="both", choices=["full", "sampled", "both"])
    ap.add_argument("--detect-stride", type=int, default=8)
    ap.add_argument("--reuse-tol", type=float, default=tracking.REUSE_TOL, help="chip difference under which full mode reuses a vector")
    args = ap.parse_args()
    tracking.REUSE_TOL = args.reuse_tol
    if args.part in ("faces", "both"):
        face_table()
    if args.part == "faces":
        return
    enc = get_encoder("dlib-face", Settings())
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    bound, src = derive_bound(enc, vecs)
    plain = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), bound, src)
    from dataclasses import replace

    from storyengine import cohort

    # the cohort: the background set (it holds every pasted person: "known" impostors), minus herself
    co = [(n, v) for n, v in cohort.background_vectors(None, enc) if not cohort.is_herself(vecs, v, enc)]
    b2, src2 = cohort.cohort_bound(plain, co)
    with_cohort = replace(plain, cohort=co, bound=b2, bound_source=src2)
    print(f"character: astronaut (3 photos), encoder {enc.key()}, bound {bound:.3f} ({src}); "
          f"with cohort ({len(co)} faces) {b2:.3f}")
    modes = ["full", "sampled"] if args.mode == "both" else [args.mode]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(c, E.write_clip(c, Path(tmp) / f"{c.name}.mp4")) for c in E.suite(args.frames)]
        for mode, (label, ref) in [(m, r) for m in modes for r in (("no cohort", plain), ("cohort", with_cohort))]:
            tp = fn = fp = tn = unknown_clean = 0
            work: dict[str, int] = {}
            t0 = time.perf_counter()
            print(f"\n== {mode} mode, {label} ==")
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
            summary.append(f"| {mode} | {label} | {fp}/{fp + tn} = {fp / max(1, fp + tn):.3f} | {tp}/{tp + fn} = "
                           f"{tp / max(1, tp + fn):.3f} | {dt:.1f} s |")
            print(f"{mode}: frame-level detection rate {tp}/{tp + fn} = {tp / max(1, tp + fn):.3f}; "
                  f"false-reject rate {fp}/{fp + tn} = {fp / max(1, fp + tn):.3f} "
                  f"(clean frames with no face found: {unknown_clean}); {dt:.1f} s" + (f"; work: {work}" if work else ""))
    print("\n| mode | scoring | clean frames falsely rejected | swapped/morphed frames flagged | time |\n|---|---|---|---|---|")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
