"""Photos → Character: load, gate, detect, embed, reject outliers, store (one transaction)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from . import plugins
from .encoders.base import Encoder, l2n
from .errors import PhotoRejected, RegistryError, StoryEngineError
from .hashing import file_sha256
from .images import grey, hamming, load_rgb, phash, sharpness
from .registry import Registry, now
from .settings import Settings
from .workspace import Workspace, atomic_path, check_handle

KINDS = ("person", "pet", "object", "drawn")
MIN_SIDE = 64  # px, whole photo
MIN_FACE = 60  # px, face box width
MIN_SHARPNESS = 15.0  # Laplacian variance at 256 px, face region (people) or whole photo
DUPLICATE_BITS = 4  # perceptual-hash distance at or under which two photos are the same picture


@dataclass
class Candidate:
    source: Path
    rgb: np.ndarray
    sha256: str
    phash: str
    vectors: dict[str, tuple[np.ndarray, tuple[int, int, int, int], float]] = field(default_factory=dict)


@dataclass
class Registration:
    handle: str
    accepted: list[str]
    rejected: list[str]  # one line per refused photo: file, gate, value


def encoders_for(kind: str, settings: Settings) -> list[Encoder]:
    names = settings.person_encoders if kind == "person" else settings.other_encoders
    return [plugins.get_encoder(n, settings) for n in names]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_candidates(path: Path, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Faces the first person encoder finds in ``path``, left to right: the indices ``--face N`` takes.

    Nothing is stored: this is what ``character show HANDLE --candidates PHOTO`` prints for a photo
    refused with "several faces".
    """
    settings = settings or Settings()
    enc = next((e for e in encoders_for("person", settings) if e.modality == "face"), None)
    if enc is None:
        raise RegistryError(f"no face encoder among person_encoders {settings.person_encoders}")
    rgb = load_rgb(path)
    dets = sorted(enc.embed(rgb), key=lambda d: d.box[0])
    return [{"index": i, "box": list(d.box), "width": d.box[2] - d.box[0], "height": d.box[3] - d.box[1],
             "score": round(float(d.score), 3), "encoder": enc.name} for i, d in enumerate(dets)]


def _face_vector(enc: Encoder, c: Candidate, face: int | None,
                 prefer: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, tuple[int, int, int, int], float]:
    dets = sorted(enc.embed(c.rgb), key=lambda d: d.box[0])
    if not dets:
        raise PhotoRejected(f"{c.source}: no face found ({enc.name})")
    best = max(dets, key=lambda d: _iou(d.box, prefer)) if prefer is not None else None
    if best is not None and _iou(best.box, prefer) >= 0.3:
        d = best  # the face another encoder already registered for this photo
    elif face is not None:
        if not 0 <= face < len(dets):
            raise PhotoRejected(f"{c.source}: --face {face} asked, but {len(dets)} face(s) were found (0-{len(dets) - 1}, left to right)")
        d = dets[face]
    else:
        by_area = sorted(dets, key=lambda d: d.area, reverse=True)
        if len(by_area) > 1 and by_area[0].area < 2.0 * by_area[1].area:
            boxes = "; ".join(f"{i}: {d.box}" for i, d in enumerate(dets))
            raise PhotoRejected(f"{c.source}: {len(dets)} faces and no dominant one; pass --face N (left to right: {boxes})")
        d = by_area[0]
    w = d.box[2] - d.box[0]
    if w < MIN_FACE:
        raise PhotoRejected(f"{c.source}: face too small: {w} px wide (minimum {MIN_FACE})")
    x0, y0, x1, y1 = d.box
    sharp = sharpness(grey(c.rgb[y0:y1, x0:x1]))
    if sharp < MIN_SHARPNESS:
        raise PhotoRejected(f"{c.source}: too blurry: sharpness {sharp:.1f} (minimum {MIN_SHARPNESS})")
    return d.vector, d.box, d.score


def _subject_vector(enc: Encoder, c: Candidate) -> tuple[np.ndarray, tuple[int, int, int, int], float]:
    h, w = c.rgb.shape[:2]
    box = (0, 0, w, h)
    sharp = sharpness(grey(c.rgb))
    if sharp < MIN_SHARPNESS:
        raise PhotoRejected(f"{c.source}: too blurry: sharpness {sharp:.1f} (minimum {MIN_SHARPNESS})")
    if hasattr(enc, "embed_region"):
        return l2n(enc.embed_region(c.rgb, box)), box, 1.0
    dets = enc.embed(c.rgb)
    if not dets:
        raise PhotoRejected(f"{c.source}: no subject found ({enc.name})")
    d = max(dets, key=lambda d: d.area)
    return d.vector, d.box, d.score


def register_character(
    reg: Registry,
    ws: Workspace,
    handle: str,
    photos: list[Path],
    *,
    kind: str = "person",
    name: str | None = None,
    description: str = "",
    consent: str = "",
    licence: str = "",
    face: int | None = None,
    force: bool = False,
    settings: Settings | None = None,
) -> Registration:
    """Register ``handle`` from ``photos`` (or add photos to it). Accepted photos land in one transaction.

    Args:
        reg, ws: the workspace's registry and folder.
        handle: lowercase slug; a new character is created if it is not registered.
        photos: image files; each passes the gates or is refused with one line.
        kind: person | pet | object | drawn (people are embedded with face encoders).
        face: which face (0-based, left to right) to use when a photo has several.
        force: keep photos the outlier gate would refuse.
    Raises:
        RegistryError when no photo was accepted (nothing is stored then).
    """
    settings = settings or Settings()
    check_handle(handle)
    if kind not in KINDS:
        raise RegistryError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    existing = reg.character(handle) if reg.has_character(handle) else None
    if existing and existing["kind"] != kind:
        kind = existing["kind"]
    encoders = encoders_for(kind, settings)
    known_hashes = reg.all_phashes()
    rejected: list[str] = []
    cands: list[Candidate] = []

    # 1. Load and gate each photo on its own
    for p in photos:
        p = Path(p)
        try:
            rgb = load_rgb(p)
            h, w = rgb.shape[:2]
            if min(h, w) < MIN_SIDE:
                raise PhotoRejected(f"{p}: too small: {w}x{h} (minimum {MIN_SIDE} px on the short side)")
            sha = file_sha256(p)
            ph = phash(rgb)
            for k in known_hashes + [{"handle": handle, "source": str(c.source), "phash": c.phash} for c in cands]:
                if k["phash"] and hamming(ph, k["phash"]) <= DUPLICATE_BITS:
                    raise PhotoRejected(
                        f"{p}: duplicate of {k['source']} (character {k['handle']!r}): perceptual-hash distance {hamming(ph, k['phash'])} bits")
            c = Candidate(p, rgb, sha, ph)
            for enc in encoders:
                c.vectors[enc.key()] = _face_vector(enc, c, face) if enc.modality == "face" else _subject_vector(enc, c)
            cands.append(c)
        except PhotoRejected as e:
            rejected.append(str(e))

    # 2. Outliers: each photo against the centroid of all the others (registered ones included),
    #    for face encoders (appearance encoders vary too much with pose and light to gate on).
    if len(cands) + (len(reg.photos(handle)) if existing else 0) >= 2:
        for enc in encoders:
            if enc.modality != "face":
                continue
            stored = [v.vector for v in reg.vectors(handle, enc.name, enc.version)] if existing else []
            vecs = [c.vectors[enc.key()][0] for c in cands]
            keep: list[Candidate] = []
            for i, c in enumerate(cands):
                others = stored + [v for j, v in enumerate(vecs) if j != i]
                if not others:
                    keep.append(c)
                    continue
                centre = l2n(np.mean(others, axis=0))
                dist = 1.0 - float(np.dot(centre, vecs[i]))
                spread = max(1.0 - float(np.dot(centre, o)) for o in others)
                limit = 1.0 - enc.same_bound
                if dist > limit and not force:
                    rejected.append(
                        f"{c.source}: looks like a different person: distance {dist:.2f}, the others are within "
                        f"{spread:.2f} (bound {limit:.2f}, {enc.name}); use --force to keep it")
                else:
                    keep.append(c)
            cands = keep

    if not cands:
        raise RegistryError(f"no photo of {handle!r} was registered:\n  " + "\n  ".join(rejected or ["no photos given"]))

    # 3. Under the registry write lock (one writer pairs files with rows at a time): look again at
    #    what another process may have committed meanwhile, copy files by content hash (atomic, every
    #    path contained in the workspace), write every row in one transaction. On failure only the
    #    files this call created, and no committed row points to, are removed.
    photo_dir = ws.character_dir(handle) / "photos"

    def dest_of(c: Candidate) -> Path:
        return ws.contain(photo_dir / f"{c.sha256[:16]}{c.source.suffix.lower() or '.png'}")

    written: list[Path] = []
    with reg.write_lock():
        now_existing = reg.db["characters"].get(handle) if reg.has_character(handle) else None
        if now_existing and not existing:
            if now_existing["kind"] != kind:
                raise RegistryError(f"character {handle!r} was registered meanwhile by another process as a "
                                    f"{now_existing['kind']}; nothing of this call was kept")
            existing = now_existing
            taken = {r["sha256"] for r in reg.photos(handle)}
            for c in [c for c in cands if c.sha256 in taken]:
                rejected.append(f"{c.source}: already registered for {handle!r} by another process meanwhile")
            cands = [c for c in cands if c.sha256 not in taken]
            if not cands:
                raise RegistryError(f"character {handle!r} was registered meanwhile by another process with the same "
                                    f"photos; nothing of this call was kept")
        try:
            for c in cands:
                dest = dest_of(c)
                if not dest.exists():
                    with atomic_path(dest) as tmp:
                        shutil.copyfile(c.source, tmp)
                    written.append(dest)
            with reg.transaction() as db:
                if not existing:
                    db["characters"].insert({"handle": handle, "name": name or handle.capitalize(), "kind": kind,
                                             "description": description, "consent": consent, "licence": licence,
                                             "created_at": now()})
                for c in cands:
                    dest = dest_of(c)
                    h, w = c.rgb.shape[:2]
                    pid = db["photos"].insert({"handle": handle, "sha256": c.sha256, "path": str(dest.relative_to(ws.root)),
                                               "source": c.source.name, "width": w, "height": h, "phash": c.phash,
                                               "consent": consent, "licence": licence, "added_at": now()}).last_pk
                    for enc in encoders:
                        vec, box, score = c.vectors[enc.key()]
                        db["embeddings"].insert({"handle": handle, "photo_id": pid, "encoder": enc.name,
                                                 "encoder_version": enc.version, "licence": enc.licence, "dim": int(vec.size),
                                                 "box": json.dumps([int(v) for v in box]), "score": float(score),
                                                 "vector": np.asarray(vec, dtype=np.float32).tobytes(), "created_at": now()})
                refresh_identity(db, handle)
        except BaseException:
            for p in written:
                try:
                    if not reg.db["photos"].count_where("path = ?", [str(p.relative_to(ws.root))]):
                        p.unlink(missing_ok=True)
                except Exception:  # noqa: BLE001 - the registry is unreadable: keep the file rather than guess
                    pass
            raise
    return Registration(handle, [str(c.source) for c in cands], rejected)


def _bound(encoder_name: str, vecs: np.ndarray) -> tuple[float | None, str]:
    """consistency.derive_bound with the encoder's class (its bounds are class attributes: no model load)."""
    from .consistency import derive_bound

    try:
        cls = plugins.encoder_class(encoder_name)
    except StoryEngineError:
        return None, f"encoder {encoder_name!r} is not installed here"
    return derive_bound(cls, vecs)


def refresh_identity(db: sqlite_utils.Database, handle: str) -> list[dict[str, Any]]:
    """Recompute ``handle``'s identity statistics from its stored vectors; call inside the write's transaction.

    Per (encoder, encoder_version): n, centroid (L2-normalised mean), max and mean pairwise cosine
    distance among the character's own photos, and the acceptance bound from
    ``consistency.derive_bound`` (encoder same/different gap + own spread).
    """
    db["identity"].delete_where("handle = ?", [handle])
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in db.query("select encoder, encoder_version, vector from embeddings where handle = ? order by id", [handle]):
        groups.setdefault((r["encoder"], r["encoder_version"]), []).append(l2n(np.frombuffer(r["vector"], np.float32)))
    rows = []
    for (enc_name, version), vs in sorted(groups.items()):
        vecs = np.stack(vs)
        dist = 1.0 - vecs @ vecs.T
        pairs = dist[np.triu_indices(len(vecs), 1)]
        bound, source = _bound(enc_name, vecs)
        rows.append({"handle": handle, "encoder": enc_name, "encoder_version": version, "n": len(vecs),
                     "dim": int(vecs.shape[1]), "centroid": l2n(vecs.mean(axis=0)).astype(np.float32).tobytes(),
                     "max_distance": float(pairs.max()) if pairs.size else 0.0,
                     "mean_distance": float(pairs.mean()) if pairs.size else 0.0,
                     "bound": bound, "bound_source": source, "updated_at": now()})
    if rows:
        db["identity"].insert_all(rows)
    return rows
