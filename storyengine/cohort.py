"""Lookalike discrimination: score a face against the character *and* a cohort of other identities.

A video model that drifts produces "similar but different" faces, and between two similar-looking
people the cross-similarity can exceed one's own photo-to-photo minimum, so a bound alone lets
the lookalike through. The checker therefore compares every assigned face with a *cohort*:

* the series' other characters (``check``: every other registered character), and
* for face encoders, a **background set**: every face in public photos shipped inside installed
  packages (:data:`BACKGROUND`, each with its source and licence, also in docs/encoders.md): 9
  faces in 4 photos (scikit-image's astronaut, matplotlib's Grace Hopper, insightface's Tom Hanks
  and group photo) and the 100 grey 25x25 face crops of scikit-image's ``lfw_subset`` (Labeled
  Faces in the Wild), embedded once per encoder name + version and cached in the registry table
  ``cohort`` (a later render pays nothing). The crops' dlib-face vectors ship with the package
  (:func:`shipped_vectors`: embedding them costs about 10 s of one core, which every fresh workspace
  would otherwise pay).
  Nothing is downloaded.

Two rules use it (:mod:`storyengine.consistency`):

1. **Nearest identity**: a face at least as similar to some cohort identity (best of its vectors)
   as to the character (best of hers) is flagged as drifted, and the frame names the lookalike.
2. **Cohort-aware bound**: when the nearest cohort neighbour of the character's own photos
   reaches the derived bound, the bound rises to just above that neighbour (``+ COHORT_MARGIN``),
   never above the character's own least-similar photo pair minus the margin (her own photos pass).

The LFW crops are what catches a lookalike who is *not* in the series: on
``scripts/eval_checker.py``'s table, stranger impostor frames flagged go from 97.0 % (9 package
faces) to 99.1 %, no genuine variant rejected; s-norm, a margin on rule 1, and temporal windows
were measured there too and not adopted (docs/report.md).

A cohort identity that matches the character's own photos almost exactly (:func:`is_herself`: the
same picture again — the astronaut is in the background set and in the tests' characters) is left
out of her cohort. A lookalike is kept even when he is closer to her photos than they are to each
other: the nearest-identity rule still tells them apart frame by frame, a bound cannot.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .encoders.base import Encoder, l2n

COHORT_MARGIN = 0.01
_MEMO: dict[tuple[str, str, str], list[np.ndarray]] = {}  # (encoder, version, source) → vectors, per process


@dataclass(frozen=True)
class Source:
    """One package-shipped photo of real people."""

    name: str  # e.g. "skimage/astronaut"
    what: str
    licence: str
    load: Callable[[], np.ndarray | None]  # RGB uint8, or None when the package is not installed
    # True: ``load`` gives a stack of tight face crops (n, h, w[, 3]), one person each, embedded at
    # 150x150 (a face found in the crop, else the whole crop as its box)
    crops: bool = False


def _pkg_file(pkg: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return p if p.is_file() else None


def _image(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _lfw_subset() -> np.ndarray | None:
    """scikit-image's ``lfw_subset.npy``: 200 grey 25x25 crops, the first 100 of them faces."""
    p = _pkg_file("skimage", "data", "lfw_subset.npy")
    if p is None:
        return None
    a = np.load(p, allow_pickle=False)[:100]
    return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)


BACKGROUND: list[Source] = [
    Source("skimage/astronaut", "scikit-image data/astronaut.png: Eileen Collins, NASA portrait",
           "public domain (NASA photograph)", lambda: _image(_pkg_file("skimage", "data", "astronaut.png"))),
    Source("matplotlib/grace_hopper", "matplotlib mpl-data/sample_data/grace_hopper.jpg: Rear Admiral Grace Hopper",
           "public domain (U.S. Navy photograph)",
           lambda: _image(_pkg_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"))),
    Source("insightface/Tom_Hanks_54745.png", "insightface data/images/Tom_Hanks_54745.png: an aligned 112x112 face",
           "shipped with insightface (MIT code licence); no separate image licence stated — used locally, never redistributed",
           lambda: _image(_pkg_file("insightface", "data", "images", "Tom_Hanks_54745.png"))),
    Source("insightface/t1.jpg", "insightface data/images/t1.jpg: a group photo (6 faces)",
           "shipped with insightface (MIT code licence); no separate image licence stated — used locally, never redistributed",
           lambda: _image(_pkg_file("insightface", "data", "images", "t1.jpg"))),
    Source("skimage/lfw_subset", "scikit-image data/lfw_subset.npy: 100 grey 25x25 face crops from Labeled Faces in the Wild",
           "LFW (University of Massachusetts, Amherst), photos of public figures collected from news sites; shipped with "
           "scikit-image (BSD-3 code licence), no separate image licence stated — the crops are used locally, never "
           "redistributed; only their dlib-face vectors (derived numbers, no image) ship in storyengine/data/cohort",
           _lfw_subset, crops=True),
]
PACKAGE_PHOTOS = tuple(s.name for s in BACKGROUND if not s.crops)
LFW_SOURCES = ("skimage/lfw_subset",)


def _embed_crops(enc: Encoder, crops: np.ndarray) -> list[np.ndarray]:
    """One vector per tight face crop, each upscaled to 150x150.

    dlib-face: aligned inside the whole crop and embedded in one batched pass — the crops are
    already cut around one face, so no detector runs (dlib's detector finds the face in 93 of
    scikit-image's 100 LFW crops; its boxes and the whole crop give vectors 0.986-1.0 alike; about
    10 s of one core for the 100). Other face encoders: the largest face they find in the crop."""
    import cv2

    bigs = [np.ascontiguousarray(cv2.resize(np.repeat(c[..., None], 3, axis=2) if c.ndim == 2 else c, (150, 150),
                                            interpolation=cv2.INTER_CUBIC)) for c in crops]
    if enc.name == "dlib-face":  # align(image, box) and a batched embed_chips
        return [l2n(v) for v in enc.embed_chips([enc.align(b, (0, 0, 150, 150)) for b in bigs])]
    out = []
    for b in bigs:
        dets = enc.embed(b)
        if dets:
            out.append(l2n(max(dets, key=lambda d: d.area).vector))
    return out


SHIPPED = Path(__file__).parent / "data" / "cohort"  # crops' vectors computed ahead (scripts/cohort_vectors.py)


def _shipped_paths(enc: Encoder, source: str) -> tuple[Path, Path]:
    stem = f"{enc.name}-{enc.version}-{source.replace('/', '-')}"
    return SHIPPED / f"{stem}.npy", SHIPPED / f"{stem}.json"


def crops_sha256(crops: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(crops).tobytes() + str(crops.shape).encode()).hexdigest()


def shipped_vectors(enc: Encoder, source: str, crops: np.ndarray) -> list[np.ndarray] | None:
    """The vectors of a crops source as shipped in ``storyengine/data/cohort``, or None.

    Embedding scikit-image's 100 LFW crops costs about 10 s of one core, which every fresh workspace
    (and the demo) would pay; the package ships them, computed by ``scripts/cohort_vectors.py`` with
    the same :func:`_embed_crops`. They are used only for the same encoder name and version and only
    when the crops installed here hash to the ones they were computed from (another scikit-image
    may ship other crops: then they are embedded here). tests/test_cohort.py re-embeds a sample and
    compares."""
    npy, meta = _shipped_paths(enc, source)
    if not npy.is_file() or not meta.is_file():
        return None
    import json

    try:
        m = json.loads(meta.read_text())
        if m.get("crops_sha256") != crops_sha256(crops):
            return None
        arr = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] != m.get("faces") or arr.shape[1] != getattr(enc, "dim", arr.shape[1]):
        return None
    return [l2n(v) for v in arr.astype(np.float32)]


def write_shipped(enc: Encoder, source: str) -> Path:
    """Embed a crops source and write its vectors where :func:`shipped_vectors` finds them."""
    import json

    src = next(s for s in BACKGROUND if s.name == source and s.crops)
    crops = src.load()
    if crops is None:
        raise FileNotFoundError(f"{source}: the package that ships it is not installed")
    vecs = np.stack(_embed_crops(enc, crops)).astype(np.float32)
    npy, meta = _shipped_paths(enc, source)
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, vecs, allow_pickle=False)
    meta.write_text(json.dumps({"encoder": enc.name, "encoder_version": enc.version, "source": source, "faces": len(vecs),
                                "crops_sha256": crops_sha256(crops), "licence": src.licence}, indent=1) + "\n")
    return npy


def background_vectors(reg, enc: Encoder, sources: tuple[str, ...] | None = None) -> list[tuple[str, np.ndarray]]:
    """The background set under ``enc``: one (name, (1, d) vectors) per face, embedded once and cached in ``reg``.

    ``sources``: names of :data:`BACKGROUND` entries to use (default: all of them)."""
    if getattr(enc, "modality", "") != "face":
        return []
    db = reg.db if reg is not None else None
    cached = "cohort" in db.table_names() if db is not None else False
    rows = list(db.query("select * from cohort where encoder = ? and encoder_version = ? order by source, face",
                         [enc.name, enc.version])) if cached else []
    done = {r["source"] for r in rows}
    out = [(f"{r['source']}#{r['face']}", np.frombuffer(r["vector"], dtype=np.float32).reshape(1, -1))
           for r in rows if r["face"] >= 0 and r["vector"] is not None]
    use = [s for s in BACKGROUND if sources is None or s.name in sources]
    out = [t for t in out if t[0].split("#")[0] in {s.name for s in use}]
    todo = [s for s in use if s.name not in done]
    if not todo:
        return out
    from .registry import now

    new = []
    for s in todo:
        memo = _MEMO.get((enc.name, enc.version, s.name))
        if memo is None:
            img = s.load()
            if img is None:
                continue  # the package is not installed here; nothing recorded, tried again next time
            if s.crops:
                memo = shipped_vectors(enc, s.name, img)
                memo = memo if memo is not None else _embed_crops(enc, img)
            else:
                dets = sorted(enc.embed(img), key=lambda d: (d.box[0], d.box[1]))  # left to right: stable face numbers
                memo = [l2n(d.vector) for d in dets]
            _MEMO[(enc.name, enc.version, s.name)] = memo
        new.append((s.name, memo))
    if cached:
        with reg.transaction():
            for name, vecs in new:
                reg.db["cohort"].insert_all(
                    [{"encoder": enc.name, "encoder_version": enc.version, "source": name, "face": i,
                      "vector": v.astype(np.float32).tobytes(), "created_at": now()} for i, v in enumerate(vecs)]
                    # a marker row: this source was embedded and holds no face for this encoder
                    or [{"encoder": enc.name, "encoder_version": enc.version, "source": name, "face": -1, "vector": None,
                         "created_at": now()}], replace=True)
    out += [(f"{name}#{i}", v.reshape(1, -1)) for name, vecs in new for i, v in enumerate(vecs)]
    return sorted(out, key=lambda t: (t[0].rsplit("#", 1)[0], int(t[0].rsplit("#", 1)[1])))  # as the registry orders them


def cohort_for(reg, ref, others: list[str], *, background: bool = True) -> list[tuple[str, np.ndarray]]:
    """The identities ``ref``'s faces are compared against: other characters, then the background set, minus herself."""
    enc = ref.encoder
    out: list[tuple[str, np.ndarray]] = []
    for h in others:
        if h == ref.handle:
            continue
        vecs = [l2n(v.vector) for v in reg.vectors(h, enc.name) if v.encoder_version == enc.version]
        if vecs:
            out.append((h, np.stack(vecs)))
    if background:
        out += background_vectors(reg, enc)
    return [(name, vecs) for name, vecs in out if not is_herself(ref.vectors, vecs, enc)]


def is_herself(own: np.ndarray, vecs: np.ndarray, enc: Encoder) -> bool:
    """True when ``vecs`` are the character's own photos again (the same picture, re-encoded or mirrored):
    a best similarity at or above two thirds of the way from the encoder's same-identity bound to 1
    (dlib-face: 0.97; two *different* photos of one person score 0.93-0.96 there, a lookalike up to 0.93)."""
    same = float(getattr(enc, "same_bound", 1.0))
    return float(np.max(own @ vecs.T)) >= 1.0 - (1.0 - same) / 3.0


def cohort_bound(ref, cohort: list[tuple[str, np.ndarray]]) -> tuple[float, str]:
    """The bound raised above the nearest cohort neighbour of the character's own photos (see the module doc)."""
    if not cohort:
        return ref.bound, ref.bound_source
    name, nn = max(((n, float(np.max(ref.vectors @ v.T))) for n, v in cohort), key=lambda t: t[1])
    n = len(ref.vectors)
    own_min = float((ref.vectors @ ref.vectors.T)[np.triu_indices(n, 1)].min()) if n > 1 else float(ref.encoder.same_bound)
    b = max(ref.bound, min(nn + COHORT_MARGIN, own_min - COHORT_MARGIN))
    src = f"{ref.bound_source}; nearest cohort neighbour {name} {nn:.3f}"
    if b > ref.bound:
        src += f" → bound raised to {b:.3f}"
    return b, src


def with_cohort(ref, cohort: list[tuple[str, np.ndarray]]):
    """``ref`` with ``cohort`` attached and its cohort-aware bound (:func:`cohort_bound`)."""
    b, src = cohort_bound(ref, cohort)
    return replace(ref, cohort=cohort, bound=float(b), bound_source=src)


def attach(reg, refs: list, others: list[str] | None = None, *, background: bool = True) -> list:
    """``refs`` with their cohort (and cohort-aware bound unless the bound is an override).

    Args:
        reg: the registry (other characters' vectors, the cached background set).
        refs: references of the characters being checked (:func:`consistency.references_for`).
        others: handles of the other identities (default: every character in the registry).
        background: include the package-shipped background faces (face encoders only).
    """
    if others is None:
        others = [c["handle"] for c in reg.characters()]
    out = []
    for r in refs:
        co = cohort_for(reg, r, others, background=background)
        b, src = (r.bound, r.bound_source + f"; cohort of {len(co)}") if r.bound_source in ("override", "shot override") \
            else cohort_bound(r, co)
        out.append(replace(r, cohort=co, bound=float(b), bound_source=src))
    return out
