"""Managing registered characters: add photos, re-embed, rename, remove, adapters, export / import.

Every operation that writes more than one row does it in one transaction and recomputes the
character's identity statistics inside it (``register.refresh_identity``); files are written
with ``atomic_path`` (temp + rename) and folder moves are undone if the transaction fails.
Only ``storyengine/cli/characters.py`` prints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import plugins
from .encoders.base import l2n
from .errors import PhotoRejected, RegistryError, StoryEngineError
from .hashing import file_sha256
from .images import load_rgb
from .register import (
    Candidate,
    Registration,
    _face_vector,
    _subject_vector,
    refresh_identity,
    register_character,
)
from .registry import Registry, now
from .settings import Settings
from .workspace import Workspace, atomic_path, check_handle

EXPORT_FORMAT = "storyengine-character/1"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
LORA_MARKERS = ("lora_a", "lora_b", "lora_down", "lora_up", "lora.down", "lora.up", "lora")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
MAX_IMPORT_BYTES = 4 * 1024**3  # uncompressed size of an import archive
MAX_IMPORT_MEMBERS = 10_000
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


# ---------------------------------------------------------------- photos and vectors
def add_photos(reg: Registry, ws: Workspace, handle: str, photos: list[Path], *, face: int | None = None,
               force: bool = False, consent: str = "", licence: str = "",
               settings: Settings | None = None) -> Registration:
    """Add photos to an already registered character (same gates, same transaction rules)."""
    c = reg.character(handle)
    return register_character(reg, ws, handle, photos, kind=c["kind"], face=face, force=force, consent=consent,
                              licence=licence, settings=settings)


def set_consent(reg: Registry, handle: str, consent: str, *, licence: str | None = None) -> dict[str, Any]:
    """Record a character's consent note (who agreed to what; and optionally the photos' licence); returns the row."""
    reg.character(handle)  # names the handle when unknown
    consent = consent.strip()
    if not consent:
        raise RegistryError(f"the consent note for {handle!r} is empty: say who agreed to what, e.g. "
                            f'storyengine character consent {handle} "Mara Diaz, signed release 2026-03-01, any series"')
    update = {"consent": consent, **({"licence": licence.strip()} if licence is not None else {})}
    with reg.transaction() as db:
        db["characters"].update(handle, update)
    return reg.character(handle)


def require_consent(characters: list[Any]) -> None:
    """Raise ConsentError for the first `person` character without a consent note (``require_consent``)."""
    from .errors import ConsentError

    for c in characters:
        if c.kind == "person" and not (c.consent or "").strip():
            raise ConsentError(f"character {c.handle!r} ({c.name}) is a person with no consent note, and the setting "
                               f"require_consent is on: record who agreed to what with\n"
                               f'  storyengine character consent {c.handle} "who agreed, to what, when"')


def remove_photo(reg: Registry, ws: Workspace, handle: str, photo_id: int) -> dict[str, Any]:
    """Remove one photo, its vectors and its file; identity statistics are recomputed in the same transaction."""
    reg.character(handle)
    rows = list(reg.db["photos"].rows_where("id = ? and handle = ?", [photo_id, handle]))
    if not rows:
        ids = ", ".join(str(p["id"]) for p in reg.photos(handle)) or "none"
        raise RegistryError(f"character {handle!r} has no photo {photo_id} (its photos: {ids})")
    row = rows[0]
    target = ws.contain(row["path"])  # refused before anything changes if a linked folder leads outside
    with reg.transaction() as db:
        db["embeddings"].delete_where("photo_id = ?", [photo_id])
        db["photos"].delete(photo_id)
        refresh_identity(db, handle)
    if not reg.db["photos"].count_where("path = ?", [row["path"]]):
        target.unlink(missing_ok=True)
    return row


def reembed(reg: Registry, ws: Workspace, handle: str, encoder_name: str,
            settings: Settings | None = None) -> dict[str, Any]:
    """Embed every photo of ``handle`` with encoder ``encoder_name`` as configured by ``settings``.

    Vectors of the same encoder name *and* version are replaced; other versions are kept (they are
    never compared with the new ones). Face encoders pick, per photo, the face whose box overlaps
    the box another face encoder stored for it. Returns {"encoder", "version", "embedded", "skipped"}.
    Raises RegistryError when no photo could be embedded (nothing is written then).
    """
    settings = settings or Settings()
    reg.character(handle)
    enc = plugins.get_encoder(encoder_name, settings)
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for v in reg.vectors(handle):
        if v.box and v.encoder != enc.name and v.photo_id not in boxes:
            try:
                if plugins.encoder_class(v.encoder).modality == "face":
                    boxes[v.photo_id] = v.box
            except StoryEngineError:
                pass
    rows, skipped = [], []
    for p in reg.photos(handle):
        src = ws.root / p["path"]
        try:
            c = Candidate(src, load_rgb(src), p["sha256"], p["phash"])
            vec, box, score = (_face_vector(enc, c, None, boxes.get(p["id"])) if enc.modality == "face"
                               else _subject_vector(enc, c))
        except PhotoRejected as e:
            skipped.append(str(e))
            continue
        rows.append({"handle": handle, "photo_id": p["id"], "encoder": enc.name, "encoder_version": enc.version,
                     "licence": enc.licence, "dim": int(vec.size), "box": json.dumps([int(x) for x in box]),
                     "score": float(score), "vector": l2n(vec).tobytes(), "created_at": now()})
    if not rows:
        raise RegistryError(f"no photo of {handle!r} could be embedded with {enc.key()}:\n  " + "\n  ".join(skipped or ["no photos"]))
    with reg.transaction() as db:
        db["embeddings"].delete_where("handle = ? and encoder = ? and encoder_version = ?", [handle, enc.name, enc.version])
        db["embeddings"].insert_all(rows)
        refresh_identity(db, handle)
    return {"encoder": enc.name, "version": enc.version, "embedded": len(rows), "skipped": skipped}


# ---------------------------------------------------------------- rename / remove
def _handle_tables(reg: Registry) -> list[str]:
    return [t for t in reg.db.table_names() if t != "characters" and "handle" in reg.db[t].columns_dict]


def _child_tables(reg: Registry) -> list[str]:
    """Tables whose rows belong to a character (a foreign key to characters.handle), referrers first."""
    tables = [t for t in reg.db.table_names() if any(fk.other_table == "characters" for fk in reg.db[t].foreign_keys)]
    ordered: list[str] = []
    while tables:  # a table that another remaining table points at goes after it (embeddings before photos)
        t = next(t for t in tables if not any(fk.other_table == t for u in tables if u != t for fk in reg.db[u].foreign_keys))
        ordered.append(t)
        tables.remove(t)
    return ordered


def rename_character(reg: Registry, ws: Workspace, old: str, new: str) -> None:
    """Rename ``old`` to ``new`` everywhere: every table with a handle column, stored paths, and the folder.

    The folder moves first (one rename); the rows change in one transaction; if that fails the
    folder moves back.
    """
    check_handle(new)
    row = reg.character(old)
    if reg.has_character(new):
        raise RegistryError(f"cannot rename {old!r} to {new!r}: {new!r} is already registered")
    src, dst = ws.character_dir(old), ws.character_dir(new)
    if dst.exists():
        raise RegistryError(f"cannot rename {old!r} to {new!r}: folder {dst} already exists")
    old_prefix, new_prefix = f"characters/{old}/", f"characters/{new}/"
    moved = False
    if src.exists():
        os.replace(src, dst)
        moved = True
    try:
        with reg.transaction() as db:
            db["characters"].insert({**row, "handle": new})
            for t in _handle_tables(reg):
                db.execute(f'update "{t}" set handle = ? where handle = ?', [new, old])
            for t in ("photos", "adapters"):
                db.execute(f'update "{t}" set path = ? || substr(path, ?) where handle = ? and path like ?',
                           [new_prefix, len(old_prefix) + 1, new, old_prefix + "%"])
            db["characters"].delete(old)
    except BaseException:
        if moved:
            os.replace(dst, src)
        raise


def remove_character(reg: Registry, ws: Workspace, handle: str) -> dict[str, int]:
    """Delete ``handle``: its rows in every table that belongs to it, then its folder. Returns rows deleted per table.

    Run history (takes, scores) is kept: it records what was rendered.
    """
    reg.character(handle)
    folder = ws.character_dir(handle)
    trash = folder.with_name(f".removed-{handle}")
    if trash.exists():
        shutil.rmtree(trash)
    moved = False
    if folder.exists():
        os.replace(folder, trash)
        moved = True
    counts: dict[str, int] = {}
    try:
        with reg.transaction() as db:
            for t in _child_tables(reg):
                counts[t] = db[t].count_where("handle = ?", [handle])
                db[t].delete_where("handle = ?", [handle])
            db["characters"].delete(handle)
    except BaseException:
        if moved:
            os.replace(trash, folder)
        raise
    if moved:
        shutil.rmtree(trash, ignore_errors=True)
    return counts


# ---------------------------------------------------------------- adapters
def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON), validated.

    Refuses pickles and torch.save zips by their first bytes, whatever the suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"{path}: adapter file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        looks_safetensors = len(head) == 9 and head[8:9] == b"{" and 0 < n <= min(MAX_HEADER, size - 8)
        if not looks_safetensors and head[:4] == b"PK\x03\x04":
            raise RegistryError(f"{path}: refused: it is a zip archive (torch.save format, pickled inside); "
                                "save the adapter with safetensors (safetensors.torch.save_file)")
        if not looks_safetensors and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise RegistryError(f"{path}: refused: it is a Python pickle; pickles can run code when loaded. "
                                "Save the adapter with safetensors (safetensors.torch.save_file)")
        if not looks_safetensors:
            raise RegistryError(f"{path}: not a safetensors file: header length {n} does not fit the file "
                                f"({size} bytes) or the header is not JSON")
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RegistryError(f"{path}: not a safetensors file: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise RegistryError(f"{path}: not a safetensors file: header is not a JSON object")
    data_len = size - 8 - n
    for k, v in header.items():
        if k == "__metadata__":
            continue
        if not (isinstance(v, dict) and "dtype" in v and "shape" in v and "data_offsets" in v):
            raise RegistryError(f"{path}: not a safetensors file: tensor {k!r} lacks dtype/shape/data_offsets")
        a, b = v["data_offsets"]
        if not 0 <= a <= b <= data_len:
            raise RegistryError(f"{path}: corrupt safetensors file: tensor {k!r} data {a}-{b} lies outside the "
                                f"{data_len} data bytes (truncated?)")
    return header


def lora_info(path: Path) -> dict[str, Any]:
    """Check a safetensors file holds LoRA tensors; return {"tensors", "lora_tensors", "rank"}."""
    header = read_safetensors_header(path)
    names = [k for k in header if k != "__metadata__"]
    lora = [k for k in names if any(m in k.lower() for m in LORA_MARKERS)]
    if not lora:
        sample = ", ".join(names[:3]) or "no tensors"
        raise RegistryError(f"{path}: no LoRA tensors: none of its {len(names)} tensor names contains "
                            f"lora_A/lora_B/lora_down/lora_up (first: {sample})")
    ranks = sorted({int(header[k]["shape"][0]) for k in lora
                    if re.search(r"lora[._]?(a|down)\b", k.lower()) and header[k]["shape"]})
    return {"tensors": len(names), "lora_tensors": len(lora), "rank": ranks[0] if len(ranks) == 1 else None}


def add_adapter(reg: Registry, ws: Workspace, handle: str, path: str | Path, *, base: str, trigger: str,
                weight: float = 1.0, rank: int | None = None, steps: int | None = None) -> dict[str, Any]:
    """Store a LoRA adapter for ``handle``: checked, copied to characters/<handle>/adapters/<name>.safetensors.

    Args:
        path: a ``.safetensors`` file whose header names LoRA tensors (pickles are refused).
        base: the base model it was trained on (hub id or path), e.g. ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``.
        trigger: the trigger word the prompts use.
        weight: default strength, 0 < weight <= 2.
        rank, steps: training facts; rank is read from the tensors when not given.
    Returns the stored adapters row.
    """
    path = Path(path)
    reg.character(handle)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise RegistryError(f"{path}: refused: {path.suffix} files are Python pickles, which can run code when "
                            "loaded; convert the adapter to .safetensors")
    if path.suffix.lower() != ".safetensors":
        raise RegistryError(f"{path}: adapters must be .safetensors files, got {path.suffix or 'no suffix'!r}")
    if not base.strip():
        raise RegistryError(f"{path}: --base is empty: name the base model the adapter was trained on")
    if not trigger.strip() or any(ch.isspace() for ch in trigger.strip()):
        raise RegistryError(f"{path}: --trigger must be one word, got {trigger!r}")
    if not 0.0 < float(weight) <= 2.0:
        raise RegistryError(f"{path}: --weight {weight} is outside (0, 2]")
    info = lora_info(path)
    sha = file_sha256(path)
    for a in reg.adapters(handle):
        if a["sha256"] == sha:
            raise RegistryError(f"{path}: already registered for {handle!r} as {a['path']} (same sha256 {sha[:12]})")
    name = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-") or "adapter"
    dest = ws.contain(ws.character_dir(handle) / "adapters" / f"{name}.safetensors")
    if dest.exists():
        dest = dest.with_name(f"{name}-{sha[:8]}.safetensors")
        name = dest.stem
    with atomic_path(dest) as tmp:
        shutil.copyfile(path, tmp)
    row = {"handle": handle, "name": name, "path": str(dest.relative_to(ws.root)), "sha256": sha, "base": base.strip(),
           "trigger": trigger.strip(), "weight": float(weight), "rank": rank if rank is not None else info["rank"],
           "steps": steps, "added_at": now()}
    try:
        with reg.transaction() as db:
            row["id"] = db["adapters"].insert(row).last_pk
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return row


def remove_adapter(reg: Registry, ws: Workspace, handle: str, adapter: str | int) -> dict[str, Any]:
    """Remove an adapter (by id or name) and its file."""
    rows = [a for a in reg.adapters(handle) if str(a["id"]) == str(adapter) or a.get("name") == adapter]
    if not rows:
        known = ", ".join(f"{a['id']} ({a.get('name')})" for a in reg.adapters(handle)) or "none"
        raise RegistryError(f"character {handle!r} has no adapter {adapter!r} (its adapters: {known})")
    target = ws.contain(rows[0]["path"])
    with reg.transaction() as db:
        db["adapters"].delete(rows[0]["id"])
    target.unlink(missing_ok=True)
    return rows[0]


# ---------------------------------------------------------------- export / import
def export_character(reg: Registry, ws: Workspace, handle: str, out: str | Path) -> dict[str, Any]:
    """Write ``handle`` to a zip: character.json (metadata, photos, vectors, adapters, sha256 of every file),
    photos/<file>, adapters/<file>. Written atomically. Returns the manifest."""
    out = Path(out)
    c = reg.character(handle)
    files: dict[str, Path] = {}
    photos = []
    for p in reg.photos(handle):
        arc = f"photos/{Path(p['path']).name}"
        files[arc] = ws.root / p["path"]
        photos.append({k: p[k] for k in ("sha256", "source", "width", "height", "phash", "consent", "licence", "added_at")}
                      | {"file": arc, "id": p["id"]})
    vectors = []
    for r in reg.db["embeddings"].rows_where("handle = ?", [handle], order_by="id"):
        vectors.append({"photo": r["photo_id"], "encoder": r["encoder"], "encoder_version": r["encoder_version"],
                        "licence": r["licence"], "dim": r["dim"], "box": json.loads(r["box"]) if r["box"] else None,
                        "score": r["score"], "vector": base64.b64encode(r["vector"]).decode(), "created_at": r["created_at"]})
    adapters = []
    for a in reg.adapters(handle):
        arc = f"adapters/{Path(a['path']).name}"
        files[arc] = ws.root / a["path"]
        adapters.append({k: a.get(k) for k in ("name", "sha256", "base", "trigger", "weight", "rank", "steps", "added_at")}
                        | {"file": arc})
    for arc, f in files.items():
        if not f.is_file():
            raise RegistryError(f"cannot export {handle!r}: {f} is missing from the workspace")
    manifest = {"format": EXPORT_FORMAT, "exported_at": now(),
                "character": {k: c[k] for k in ("handle", "name", "kind", "description", "consent", "licence", "created_at")},
                "photos": photos, "vectors": vectors, "adapters": adapters,
                "files": {arc: file_sha256(f) for arc, f in files.items()}}
    with atomic_path(out, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("character.json", json.dumps(manifest, indent=1))
            for arc, f in files.items():
                z.write(f, arc, compress_type=zipfile.ZIP_STORED)
    return manifest


def _bad(zip_path: Path, why: str) -> RegistryError:
    return RegistryError(f"{zip_path}: refused import: {why}")


def import_character(reg: Registry, ws: Workspace, zip_path: str | Path, *, as_handle: str | None = None) -> str:
    """Import a character exported by :func:`export_character`; everything is validated before anything is written.

    Checks: the archive (size, member names), the format, the handle (a slug; a clash is refused
    unless ``as_handle``), every file's sha256, every photo decodes, every vector's size matches its
    dim, every adapter is safetensors with LoRA tensors. Rows land in one transaction with identity
    statistics recomputed; files are copied first and removed again if the transaction fails.
    Returns the handle it was stored under.
    """
    zip_path = Path(zip_path)
    # 1. The archive itself
    try:
        z = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as e:
        raise _bad(zip_path, f"not a readable zip ({e})") from None
    with z:
        infos = z.infolist()
        if len(infos) > MAX_IMPORT_MEMBERS:
            raise _bad(zip_path, f"{len(infos)} members (limit {MAX_IMPORT_MEMBERS})")
        total = sum(i.file_size for i in infos)
        if total > MAX_IMPORT_BYTES:
            raise _bad(zip_path, f"{total} bytes uncompressed (limit {MAX_IMPORT_BYTES})")
        names = {i.filename for i in infos}
        for n in names:
            if n != "character.json" and not re.fullmatch(r"(photos|adapters)/" + SAFE_NAME.pattern, n):
                raise _bad(zip_path, f"unexpected member {n!r} (only character.json, photos/<file>, adapters/<file>)")
        if "character.json" not in names:
            raise _bad(zip_path, "character.json is missing")
        try:
            m = json.loads(z.read("character.json"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _bad(zip_path, f"character.json is not JSON ({e})") from None
        if not isinstance(m, dict) or m.get("format") != EXPORT_FORMAT:
            raise _bad(zip_path, f"format {m.get('format') if isinstance(m, dict) else None!r}, expected {EXPORT_FORMAT!r}")
        # 2. Handle
        try:
            c = dict(m["character"])
            orig = c["handle"]
            check_handle(orig)
        except (KeyError, TypeError) as e:
            raise _bad(zip_path, f"character.json lacks {e}") from None
        handle = check_handle(as_handle) if as_handle else orig
        if reg.has_character(handle):
            raise RegistryError(f"{zip_path}: character {handle!r} is already registered; "
                                f"import it under another handle with --as NEW")
        if c.get("kind") not in ("person", "pet", "object", "drawn"):
            raise _bad(zip_path, f"character kind {c.get('kind')!r} is not person/pet/object/drawn")
        # 3. Files: listed, present, sha256 as recorded
        listed = dict(m.get("files") or {})
        data: dict[str, bytes] = {}
        for arc in [p["file"] for p in m.get("photos", [])] + [a["file"] for a in m.get("adapters", [])]:
            if arc not in names or arc not in listed:
                raise _bad(zip_path, f"{arc} is listed in character.json but not in the archive or its checksums")
            data[arc] = z.read(arc)
            got = hashlib.sha256(data[arc]).hexdigest()
            if got != listed[arc]:
                raise _bad(zip_path, f"{arc}: sha256 {got[:12]} does not match the recorded {str(listed[arc])[:12]}")
    # 4. Contents: photos decode, vectors match their dims, adapters hold LoRA tensors
    tmp_dir = ws.characters / f".import-{handle}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        tmp_dir.mkdir(parents=True)
        for arc, b in data.items():
            (tmp_dir / Path(arc).name).write_bytes(b)
        photos = m.get("photos", [])
        for p in photos:
            try:
                load_rgb(tmp_dir / Path(p["file"]).name)
            except PhotoRejected as e:
                raise _bad(zip_path, f"{p['file']}: {str(e).split(': ', 1)[-1]}") from None
        photo_ids = {p["id"] for p in photos}
        for i, v in enumerate(m.get("vectors", [])):
            raw = base64.b64decode(v["vector"])
            if len(raw) != 4 * int(v["dim"]) or v["photo"] not in photo_ids or not v.get("encoder") or not v.get("encoder_version"):
                raise _bad(zip_path, f"vector {i} ({v.get('encoder')}): {len(raw) // 4} values for dim {v.get('dim')}, "
                                     f"photo {v.get('photo')}, version {v.get('encoder_version')!r}")
            if not np.all(np.isfinite(np.frombuffer(raw, np.float32))):
                raise _bad(zip_path, f"vector {i} ({v['encoder']}) holds NaN or infinite values")
        for a in m.get("adapters", []):
            try:
                lora_info(tmp_dir / Path(a["file"]).name)
            except RegistryError as e:
                raise _bad(zip_path, f"{a['file']}: {str(e).split(': ', 1)[-1]}") from None
        # 5. Files into place, then every row in one transaction
        folder = ws.character_dir(handle)
        if folder.exists() and any(folder.iterdir()):
            raise RegistryError(f"{zip_path}: folder {folder} already exists; remove it or import with --as NEW")
        written: list[Path] = []
        try:
            for arc in data:
                ws.contain(folder / arc)  # a linked photos/ or adapters/ leading outside is refused
                dest = folder / arc
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest = ws.contain(dest)
                os.replace(tmp_dir / Path(arc).name, dest)
                written.append(dest)
            with reg.transaction() as db:
                db["characters"].insert({**{k: c.get(k) for k in ("name", "kind", "description", "consent", "licence",
                                                                  "created_at")}, "handle": handle})
                new_ids = {}
                for p in photos:
                    new_ids[p["id"]] = db["photos"].insert({
                        "handle": handle, "sha256": p["sha256"], "path": f"characters/{handle}/{p['file']}",
                        "source": p.get("source"), "width": p.get("width"), "height": p.get("height"),
                        "phash": p.get("phash"), "consent": p.get("consent", ""), "licence": p.get("licence", ""),
                        "added_at": p.get("added_at") or now()}).last_pk
                db["embeddings"].insert_all([{
                    "handle": handle, "photo_id": new_ids[v["photo"]], "encoder": v["encoder"],
                    "encoder_version": v["encoder_version"], "licence": v.get("licence"), "dim": int(v["dim"]),
                    "box": json.dumps(v["box"]) if v.get("box") else None, "score": v.get("score"),
                    "vector": base64.b64decode(v["vector"]), "created_at": v.get("created_at") or now()}
                    for v in m.get("vectors", [])])
                for a in m.get("adapters", []):
                    db["adapters"].insert({"handle": handle, "name": a.get("name"), "path": f"characters/{handle}/{a['file']}",
                                           "sha256": a["sha256"], "base": a.get("base"), "trigger": a.get("trigger"),
                                           "weight": a.get("weight"), "rank": a.get("rank"), "steps": a.get("steps"),
                                           "added_at": a.get("added_at") or now()})
                refresh_identity(db, handle)
        except BaseException:
            for f in written:
                f.unlink(missing_ok=True)
            raise
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(zip_path, f"character.json is malformed ({type(e).__name__}: {e})") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return handle
