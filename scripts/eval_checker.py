"""Frame-level evaluation of the drift checker on real faces (see tests/evalclips.py), as tables.

Two parts (both print markdown tables for docs/report.md and docs/encoders.md):

1. **Identities × variants** (``--part faces``): every face shipped in installed packages (the
   astronaut, Grace Hopper, Tom Hanks, the six people of insightface's group photo) is the
   character in turn, registered from three photos (original, mirror, re-lit crop) as a new user
   would. Genuine variants: rotated ±12°, re-lit ×0.6/×1.4, warm/cool white balance, gamma, an
   occluding bar, JPEG 25, half scale, 6 frames of her own animated take (the ``motion``
   back-end), and the morph pipeline's 0 % control. 20 % morphs toward each other identity are a
   column of their own (80 % her by construction: neither genuine evidence nor impostors; see
   docs/report.md). Impostor frames: every variant of every other identity, and 70 %/85 % morphs
   toward them. Lookalike pairs: the three most similar identity pairs. Each frame is detected and
   embedded from scratch (what full and sampled mode both do on a detection frame) and judged by
   the checker's own rule (``Reference.judge``): (a) with the bound alone, (b) with a cohort where
   the impostor is a known character of the series, (c) where he is a stranger (in neither the
   series nor the background set), for the background of the 9 package photos and with
   scikit-image's 100 LFW crops added (the default). Then other rules on the same vectors (a margin
   on the nearest-identity rule, adaptive s-norm, temporal windows over the animated takes).
2. **Clips** (``--part clips``): clips of the astronaut with other faces pasted or morphed in at
   known frames and clean clips with nuisances, through ``check`` in full and sampled mode, with
   and without the cohort (package photos / + LFW crops; the pasted person known, or a stranger
   taken out of the background set): frame-level detection rate and false-reject rate.

    .venv/bin/python scripts/eval_checker.py [--part faces|clips|both] [--frames 24] [--mode full|sampled|both] [--cache vecs.npz]
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


def animated_frames(img: np.ndarray, tmp: Path, n: int = 24, every: int = 4) -> list[np.ndarray]:
    """Every ``every``-th frame of the character's own animated take (the weight-free ``motion`` back-end)."""
    from PIL import Image

    from storyengine.backends.motion import MotionBackend
    from storyengine.specs import CharacterRef, ShotPlan

    still = tmp / f"still-{abs(hash(img.tobytes())) % 10**8}.png"
    Image.fromarray(img).save(still)
    plan = ShotPlan(series="s", episode_id="e1", shot_id="a", index=0, still=str(still),
                    characters=[CharacterRef(handle="c", name="C", kind="person")],
                    prompt="she turns her head left, then smiles and blinks; handheld", seed=1, fps=24,
                    width=320, height=240, num_frames=n, duration=n / 24, min_frames=1, backend="motion")
    return [f for i, f in enumerate(MotionBackend().generate(plan).frames) if i % every == every - 1]


def face_vectors(cache: Path | None = None) -> dict:
    """Every vector the face table scores (dlib-face): references, genuine and impostor frames, cohorts.

    Returned as ``{"names", "refs": {n: (k, d)}, "gen": {n: {variant: d | None}},
    "imp": {(n, o): {variant: d | None}}, "package": [(name, (1, d))], "lfw": [(name, (1, d))]}``;
    with ``cache`` the vectors are kept in an ``.npz`` (arrays only, loaded with ``allow_pickle=False``).
    """
    from storyengine import cohort

    enc = get_encoder("dlib-face", Settings())
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        out: dict = {"names": [str(x) for x in z["names"]], "refs": {}, "gen": {}, "imp": {}, "package": [], "lfw": []}
        for k in z.files:
            part, *rest = k.split("|")
            v = z[k] if z[k].size else None
            if part == "refs":
                out["refs"][rest[0]] = v
            elif part == "gen":
                out["gen"].setdefault(rest[0], {})[rest[1]] = v
            elif part == "imp":
                out["imp"].setdefault((rest[0], rest[1]), {})[rest[2]] = v
            elif part in ("package", "lfw"):
                out[part].append((rest[0], v))
        return out
    ids = identities()
    names = list(ids)
    t0 = time.perf_counter()
    refs, gen, imp = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, img in ids.items():
            relit = np.clip(img[img.shape[0] // 20:, img.shape[1] // 20:].astype(np.float32) * 0.85 + 18, 0, 255).astype(np.uint8)
            refs[n] = np.stack([v for v in (_vec(enc, img), _vec(enc, np.ascontiguousarray(img[:, ::-1])), _vec(enc, relit))
                                if v is not None])
            gen[n] = {k: _vec(enc, v) for k, v in face_variants(img).items()}
            for j, f in enumerate(animated_frames(img, Path(tmp))):
                gen[n][f"animated take f{j}"] = _vec(enc, f)
    for n in names:
        # the morph pipeline's control: her own aligned chip, blended with nothing (no face found: the
        # pipeline cannot show her, so what a detector finds in her morphs is mostly the other face)
        gen[n]["control 0% morph"] = _vec(enc, _morph(ids[n], ids[n], 0.0))
        for o in names:
            if o != n:
                gen[n][f"morph 20% {o}"] = _vec(enc, _morph(ids[n], ids[o], 0.2))
                imp[(n, o)] = {**{f"{o} {k}": v for k, v in gen[o].items() if not k.startswith(("morph", "control"))},
                               f"{o} original": refs[o][0],
                               **{f"morph {int(a * 100)}% {o}": _vec(enc, _morph(ids[n], ids[o], a)) for a in (0.7, 0.85)}}
    package = [(nm, v) for nm, v in cohort.background_vectors(None, enc, sources=cohort.PACKAGE_PHOTOS)]
    lfw = [(nm, v) for nm, v in cohort.background_vectors(None, enc, sources=cohort.LFW_SOURCES)]
    print(f"\n{len(names)} identities ({', '.join(names)}); embedded in {time.perf_counter() - t0:.1f} s")
    out = {"names": names, "refs": refs, "gen": gen, "imp": imp, "package": package, "lfw": lfw}
    if cache is not None:
        arr = {"names": np.array(names)}
        empty = np.zeros(0, dtype=np.float32)
        arr.update({f"refs|{n}": v for n, v in refs.items()})
        arr.update({f"gen|{n}|{k}": (empty if v is None else v) for n, d in gen.items() for k, v in d.items()})
        arr.update({f"imp|{n}|{o}|{k}": (empty if v is None else v) for (n, o), d in imp.items() for k, v in d.items()})
        arr.update({f"{part}|{nm}": v for part in ("package", "lfw") for nm, v in out[part]})
        np.savez(cache, **arr)
    return out


BACKGROUNDS = {"none": (), "package": ("package",), "package+lfw": ("package", "lfw")}


def face_table(cache: Path | None = None, backgrounds: tuple[str, ...] = ("package", "package+lfw")) -> list[tuple]:
    """The identities × variants table under the checker's rule (:meth:`Reference.judge`), printed; its rows returned."""
    from storyengine import cohort

    enc = get_encoder("dlib-face", Settings())
    data = face_vectors(cache)
    names, refs, gen, imp = data["names"], data["refs"], data["gen"], data["imp"]
    cross = {(a, b): float(np.max(refs[a] @ refs[b].T)) for a in names for b in names if a < b}
    pairs = sorted(cross, key=cross.get, reverse=True)[:3]
    print(f"{len(names)} identities; background: {len(data['package'])} package faces, {len(data['lfw'])} LFW faces "
          f"(skimage lfw_subset); closest pairs: " + ", ".join(f"{a}–{b} {cross[(a, b)]:.3f}" for a, b in pairs))

    def ref_for(n: str, series: list[str], bg: str, stranger: str | None = None) -> Reference:
        """``n``'s reference; the cohort holds ``series`` and the background, minus ``n`` and minus ``stranger``
        (every identity here is also in the package background: a stranger is taken out of it too)."""
        b, srcb = derive_bound(enc, refs[n])
        r = Reference(n, enc, refs[n], l2n(refs[n].mean(axis=0)), b, srcb)
        co = [(o, refs[o]) for o in series if o != n]
        co += [t for part in BACKGROUNDS[bg] for t in data[part]
               if stranger is None or not cohort.is_herself(refs[stranger], t[1], enc)]
        co = [(o, v) for o, v in co if not cohort.is_herself(refs[n], v, enc)]
        if not co:
            return r
        return cohort.with_cohort(r, co)

    rows = []
    settings = [("bound alone", "none", False)] + [(f"cohort ({bg}), impostor {who}", bg, who == "a known character")
                                                   for bg in backgrounds for who in ("a known character", "a stranger")]
    for label, bg, known in settings:
        fr = g_all = g_missing = tp = i_all = i_missing = 0
        lk_tp = lk_all = 0
        kinds: dict[str, list[int]] = {}
        worst_gen = []
        for n in names:
            r_gen = ref_for(n, names if bg != "none" else [], bg)
            for k, v in gen[n].items():
                if v is None:
                    g_missing += 1
                    continue
                g_all += 1
                kind = k.split(" ")[0]
                kinds.setdefault(kind, [0, 0])[1] += 1
                drifted, _ = r_gen.judge(v)
                if drifted:
                    fr += 1
                    kinds[kind][0] += 1
                    worst_gen.append(f"{n} {k} {r_gen.similarity(v):.3f} (bound {r_gen.bound:.3f})")
            for o in names:
                if o == n:
                    continue
                series = [] if bg == "none" else (names if known else [x for x in names if x != o])
                r = ref_for(n, series, bg, None if known else o)
                for k, v in imp[(n, o)].items():
                    if v is None:
                        i_missing += 1
                        continue
                    i_all += 1
                    hit = r.judge(v)[0]
                    tp += hit
                    if (min(n, o), max(n, o)) in pairs:
                        lk_all += 1
                        lk_tp += hit
        rows.append((label, fr, g_all, g_missing, tp, i_all, i_missing, lk_tp, lk_all, worst_gen, kinds))
    print("| scoring | genuine variants falsely rejected | 20 % morphs flagged | all genuine-labelled | impostor frames flagged "
          "| lookalike-pair frames flagged | no face found (genuine / impostor) |")
    print("|---|---|---|---|---|---|---|")
    for label, fr, g_all, g_missing, tp, i_all, i_missing, lk_tp, lk_all, _, kinds in rows:
        m_fr, m_all = kinds.get("morph", [0, 0])
        print(f"| {label} | {fr - m_fr}/{g_all - m_all} | {m_fr}/{m_all} | {fr}/{g_all} = {fr / max(1, g_all):.3f} | "
              f"{tp}/{i_all} = {tp / max(1, i_all):.4f} | {lk_tp}/{lk_all} = {lk_tp / max(1, lk_all):.3f} | {g_missing} / {i_missing} |")
    for label, *_, worst, kinds in rows:
        if worst:
            print(f"{label}: genuine-labelled frames flagged: {'; '.join(worst[:8])}")
    print("genuine frames per kind: " + ", ".join(f"{k} {v[1]}" for k, v in rows[0][-1].items()))
    for bg in backgrounds:
        alternatives(data, ref_for, bg)
    return rows


def _snorm(r: Reference, v: np.ndarray, k: int = 10) -> float:
    """Adaptive s-norm: her score against the top-``k`` cohort scores to the frame (t-norm) and of the cohort to her (z-norm)."""
    s = r.similarity(v)
    t = np.sort([float(np.max(c @ v)) for _, c in r.cohort])[::-1][:k]
    z = np.sort([float(np.max(r.vectors @ c.T)) for _, c in r.cohort])[::-1][:k]
    return 0.5 * ((s - t.mean()) / (t.std() + 1e-6) + (s - z.mean()) / (z.std() + 1e-6))


def alternatives(data: dict, ref_for, bg: str) -> None:
    """Other rules measured on the same vectors (stranger impostors, background ``bg``); not what ``check`` applies
    unless the row says so: a margin on the nearest-identity rule, adaptive s-norm, and temporal evidence
    (windows of consecutive frames of an animated take judged on their mean)."""
    names, gen, imp = data["names"], data["gen"], data["imp"]
    g, i = [], []  # (is a 20 % morph, s - bound, s - nearest other, s-norm)
    takes_g, takes_i = [], []  # animated takes: per frame (s, nearest other, bound)
    for n in names:
        r = ref_for(n, names, bg)
        for k, v in gen[n].items():
            if v is not None:
                g.append((k.startswith("morph"), r.similarity(v) - r.bound, r.similarity(v) - r.nearest_other(v)[1], _snorm(r, v)))
        takes_g.append([(r.similarity(v), r.nearest_other(v)[1], r.bound) for k, v in gen[n].items()
                        if k.startswith("animated") and v is not None])
        for o in names:
            if o == n:
                continue
            r = ref_for(n, [x for x in names if x != o], bg, o)
            for k, v in imp[(n, o)].items():
                if v is not None:
                    i.append((False, r.similarity(v) - r.bound, r.similarity(v) - r.nearest_other(v)[1], _snorm(r, v)))
            takes_i.append([(r.similarity(v), r.nearest_other(v)[1], r.bound) for k, v in imp[(n, o)].items()
                            if k.startswith(f"{o} animated") and v is not None])
    G, I = np.array(g, dtype=np.float64), np.array(i, dtype=np.float64)
    morph = G[:, 0] == 1
    print(f"\nOther rules, impostor a stranger, cohort ({bg}); genuine variants' lowest margin above the bound "
          f"{G[~morph, 1].min():.3f}, above the nearest other {G[~morph, 2].min():.3f}, s-norm {G[~morph, 3].min():.2f}")
    print("| rule | genuine variants falsely rejected | 20 % morphs flagged | impostor frames flagged |\n|---|---|---|---|")
    for label, m, th in (("nearest identity, margin 0 (check's rule)", 0.0, None), ("margin 0.01", 0.01, None),
                         ("margin 0.02", 0.02, None), ("margin 0 + s-norm < 3", 0.0, 3.0), ("margin 0 + s-norm < 4", 0.0, 4.0)):
        def flag(X):
            f = (X[:, 1] < 0) | (X[:, 2] <= m) if m else (X[:, 1] < 0) | (X[:, 2] <= 0)
            return f | (X[:, 3] < th) if th is not None else f
        fg, fi = flag(G), flag(I)
        print(f"| {label} | {int(fg[~morph].sum())}/{int((~morph).sum())} | {int(fg[morph].sum())}/{int(morph.sum())} | "
              f"{int(fi.sum())}/{len(I)} = {fi.mean():.4f} |")

    def windows(take, w):
        a = np.array(take, dtype=np.float64)
        single = (a[:, 0] < a[:, 2]) | (a[:, 1] >= a[:, 0])
        win = single.copy()
        for j in range(len(a) - w + 1):
            s, nn = a[j:j + w, 0].mean(), a[j:j + w, 1].mean()
            if s < a[0, 2] or nn >= s:
                win[j:j + w] = True
        return single, win

    for w in (2, 3):
        sg = [windows(t, w) for t in takes_g if len(t) >= w]
        si = [windows(t, w) for t in takes_i if len(t) >= w]
        print(f"temporal window of {w} animated frames judged on its mean: genuine frames flagged "
              f"{sum(int(a.sum()) for a, _ in sg)} → {sum(int(b.sum()) for _, b in sg)} of {sum(len(a) for a, _ in sg)}; "
              f"stranger frames flagged {sum(int(a.sum()) for a, _ in si)} → {sum(int(b.sum()) for _, b in si)} of "
              f"{sum(len(a) for a, _ in si)}")


# ---------------------------------------------------------------- part 2: clips
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="both", choices=["faces", "clips", "both"])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--mode", default="both", choices=["full", "sampled", "both"])
    ap.add_argument("--detect-stride", type=int, default=8)
    ap.add_argument("--cache", type=Path, help="keep the face table's vectors in this .npz (rescoring without re-embedding)")
    ap.add_argument("--reuse-tol", type=float, default=tracking.REUSE_TOL, help="chip difference under which full mode reuses a vector")
    args = ap.parse_args()
    tracking.REUSE_TOL = args.reuse_tol
    if args.part in ("faces", "both"):
        face_table(args.cache)
    if args.part == "faces":
        return
    enc = get_encoder("dlib-face", Settings())
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    bound, src = derive_bound(enc, vecs)
    plain = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), bound, src)

    from storyengine import cohort

    # the cohort: the background set (it holds every pasted person: "known" impostors), minus herself;
    # "stranger": the pasted person taken out of it as well (found by is_herself against her own photo)
    pasted = {o: _vec(enc, E.sources()[o]) for o in {c[1] for c in E.SUITE if c[1]}}

    def ref_with(bg: tuple[str, ...] | None, stranger: str | None) -> Reference:
        co = [(nm, v) for nm, v in cohort.background_vectors(None, enc, sources=bg) if not cohort.is_herself(vecs, v, enc)
              and (stranger is None or not cohort.is_herself(pasted[stranger][None, :], v, enc))]
        return cohort.with_cohort(plain, co)

    scorings = [("no cohort", None, None)] + [(f"cohort ({lab}), {who}", bg, who) for lab, bg in
                                              (("package", cohort.PACKAGE_PHOTOS), ("package+lfw", None))
                                              for who in ("known", "stranger")]
    b2 = ref_with(None, None)
    print(f"character: astronaut (3 photos), encoder {enc.key()}, bound {bound:.3f} ({src}); "
          f"with the full cohort ({len(b2.cohort)} faces) {b2.bound:.3f}")
    modes = ["full", "sampled"] if args.mode == "both" else [args.mode]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(c, E.write_clip(c, Path(tmp) / f"{c.name}.mp4")) for c in E.suite(args.frames)]
        for mode, (label, bg, who) in [(m, r) for m in modes for r in scorings]:
            tp = fn = fp = tn = unknown_clean = 0
            work: dict[str, int] = {}
            t0 = time.perf_counter()
            print(f"\n== {mode} mode, {label} ==")
            print(f"{'clip':16} {'verdict':8} {'flagged':>8} {'swapped':>8} {'clean':>6} {'false':>6}  reason")
            for clip, path in clips:
                ref = plain if who is None else ref_with(bg, (clip.name.split("-", 1)[1] if who == "stranger" and
                                                               clip.kind in ("swap", "morph") else None))
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
