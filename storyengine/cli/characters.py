"""`storyengine character …`: register, inspect and manage recurring characters."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Literal, Optional

import typer

from ..errors import StoryEngineError
from .common import Col, JsonOpt, View, WorkspaceOpt, command, emit_json, fail, info, open_workspace, out, say, show, \
    typer_app, warn, blank

app = typer_app("Register and inspect recurring characters.\n\nExample: storyengine character add mara me-1.jpg me-2.jpg")
adapter_app = typer_app("LoRA adapters of a character (safetensors only).\n\n"
                        "Example: storyengine character adapter add mara mara.safetensors --base wan --trigger mara")
app.add_typer(adapter_app, name="adapter")

Kind = Literal["person", "pet", "object", "drawn"]  # storyengine.register.KINDS (tests/test_errors_matrix.py keeps them equal)


def _open(workspace: Optional[Path], create: bool = False):
    from ..registry import Registry
    from ..settings import Settings

    ws = open_workspace(workspace, create=create)
    return ws, Registry.open(ws), Settings.load(ws.root)


def _report(r, handle: str, as_json: bool = False) -> None:
    if as_json:
        emit_json({"handle": handle, "accepted": r.accepted, "rejected": r.rejected})
        return
    for line in r.rejected:
        warn(line, label="refused")
    say(f"registered {len(r.accepted)} photo(s) of {handle} ({len(r.rejected)} refused)")


@command(app, "add")
def character_add(
    handle: Optional[str] = typer.Argument(None, metavar="HANDLE", help="Lowercase slug naming the character, e.g. mara."),
    photos: Optional[List[Path]] = typer.Argument(None, metavar="PHOTO", help="1-7 photos of the character."),
    card: Optional[Path] = typer.Option(None, "--from", metavar="CARD",
                                        help="A character card (YAML: handle, name, kind, photo sources, consent, licence) "
                                             "instead of HANDLE and PHOTO; see characters/mara.yaml."),
    kind: Kind = typer.Option("person", "--kind", help="What the character is (people are embedded with face encoders)."),
    name: Optional[str] = typer.Option(None, "--name", help="Display name (default: the handle)."),
    description: str = typer.Option("", "--description", help="Free text about the character.", show_default=False),
    consent: str = typer.Option("", "--consent", help="Consent note: who agreed to what.", show_default=False),
    licence: str = typer.Option("", "--licence", help="Licence of the photos.", show_default=False),
    face: Optional[int] = typer.Option(None, "--face", min=0, help="Which face to use when a photo shows several (0-based, left to right)."),
    force: bool = typer.Option(False, "--force", help="Keep photos the outlier gate refuses."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Register a character (or add photos to one): every photo is gated, embedded and stored in one transaction.

    Example: storyengine character add --from characters/mara.yaml
    """
    from ..register import register_character

    try:
        if card is not None:
            if handle or photos:
                raise StoryEngineError("give either --from CARD or HANDLE PHOTO..., not both")
            given = [f"--{k}" for k, v in (("name", name), ("description", description), ("consent", consent),
                                             ("licence", licence)) if v]
            if given:
                raise StoryEngineError(f"{', '.join(given)}: the card {card} says these; edit the card instead")
            from ..cards import load_card, write_card_photos

            c = load_card(card)
            ws, reg, settings = _open(workspace, create=True)
            with tempfile.TemporaryDirectory(prefix=f"storyengine-{c.handle}-") as tmp:
                files = write_card_photos(c, card, Path(tmp))
                r = register_character(reg, ws, c.handle, files, kind=c.kind, name=c.name or None,
                                       description=c.description, consent=c.consent, licence=c.licence, face=face,
                                       force=force or settings.outlier_force, settings=settings)
            handle = c.handle
        else:
            if not handle or not photos:
                raise StoryEngineError("name the character and its photos (HANDLE PHOTO...), or pass --from CARD")
            ws, reg, settings = _open(workspace, create=True)
            r = register_character(reg, ws, handle, photos, kind=kind, name=name, description=description, consent=consent,
                                   licence=licence, face=face, force=force or settings.outlier_force, settings=settings)
    except StoryEngineError as e:
        fail(e)
    _report(r, handle, as_json)


@command(app, "add-photos")
def character_add_photos(
    handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
    photos: List[Path] = typer.Argument(..., metavar="PHOTO", help="More photos of it."),
    consent: str = typer.Option("", "--consent", help="Consent note for these photos.", show_default=False),
    licence: str = typer.Option("", "--licence", help="Licence of these photos.", show_default=False),
    face: Optional[int] = typer.Option(None, "--face", min=0, help="Which face to use when a photo shows several."),
    force: bool = typer.Option(False, "--force", help="Keep photos the outlier gate refuses."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add photos to a registered character (same gates; the outlier gate compares with its stored photos).

    Example: storyengine character add-photos mara mara-at-night.jpg --consent "Mara, 2026-03-01"
    """
    from ..characters import add_photos

    try:
        ws, reg, settings = _open(workspace)
        r = add_photos(reg, ws, handle, photos, face=face, force=force or settings.outlier_force, consent=consent,
                       licence=licence, settings=settings)
    except StoryEngineError as e:
        fail(e)
    _report(r, handle, as_json)


def list_view(rows: list[dict]) -> View:
    v = View("characters", [Col("handle"), Col("name", "text"), Col("kind"), Col("photos", "num"),
                            Col("encoders", "text", drop=1), Col("adapters", "num")])
    for r in rows:
        v.add(r["handle"], r["name"], r["kind"], r["photos"], ", ".join(r["encoders"]), r["adapters"])
    return v


@command(app, "list")
def character_list(workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """List the registered characters.

    Example: storyengine character list --json
    """
    try:
        _, reg, _ = _open(workspace)
    except StoryEngineError as e:
        fail(e)
    rows = []
    for c in reg.characters():
        rows.append({"handle": c["handle"], "name": c["name"], "kind": c["kind"], "photos": len(reg.photos(c["handle"])),
                     "encoders": [f"{n}@{v}" for n, v in reg.encoders_of(c["handle"])], "adapters": len(reg.adapters(c["handle"]))})
    if as_json:
        emit_json(rows)
        return
    show(list_view(rows))
    if not rows:
        info("no characters yet: storyengine character add HANDLE PHOTO... (or --from CARD)")


@command(app, "consent")
def character_consent(handle: str = typer.Argument(..., metavar="HANDLE", help="The character."),
                      note: str = typer.Argument(..., metavar="NOTE", help="Consent note: who agreed to what, and when."),
                      licence: Optional[str] = typer.Option(None, "--licence", metavar="TEXT",
                                                            help="Also set the licence of the photos."),
                      workspace: Optional[Path] = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Record a character's consent note (required for people when the setting require_consent is on).

    Example: storyengine character consent mara "Mara Oyelaran, signed release 2026-11-01" --licence CC-BY-4.0
    """
    from ..characters import set_consent

    try:
        _, reg, _ = _open(workspace)
        row = set_consent(reg, handle, note, licence=licence)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"handle": handle, "consent": row["consent"], "licence": row.get("licence")})
        return
    say(f"consent for {handle}: {row['consent']}")


def show_views(data: dict, full: bool = False) -> list[View]:
    """The photos, identity and adapters tables of `character show` (``full``: whole sha256, for pipes)."""
    sha = (lambda h: h) if full else (lambda h: h[:12])
    photos = View("photos", [Col("id", "num"), Col("photo", "path"), Col("source", "path"), Col("size", "num", drop=2),
                             Col("sha256"), Col("consent", "text", drop=1), Col("licence", "text", drop=1)])
    for p in data["photos"]:
        photos.add(p["id"], p["path"], p["source"], f"{p['width']}x{p['height']}", sha(p["sha256"]),
                   p["consent"] or "—", p["licence"] or "—")
    ident = View("identity", [Col("encoder"), Col("version"), Col("n", "num"), Col("max pairwise dist", "num"),
                              Col("mean pairwise dist", "num", drop=1), Col("bound (similarity)", "num"),
                              Col("from", "text", drop=1)])
    for s in data["identity"]:
        ident.add(s["encoder"], s["encoder_version"], s["n"], f"{s['max_distance']:.3f}", f"{s['mean_distance']:.3f}",
                  f"{s['bound']:.3f}" if s["bound"] is not None else "—", s["bound_source"])
    views = [photos, ident]
    if data["adapters"]:
        ad = View("adapters", [Col("id", "num"), Col("name"), Col("base"), Col("trigger"), Col("weight", "num"),
                               Col("rank", "num"), Col("steps", "num", drop=1), Col("sha256", drop=1)])
        for a in data["adapters"]:
            ad.add(a["id"], a.get("name") or "", a["base"], a["trigger"], f"{a['weight']:g}", a["rank"], a.get("steps"),
                   sha(a["sha256"]))
        views.append(ad)
    return views


def candidates_view(photo: Path, cands: list[dict]) -> View:
    v = View(f"faces in {photo} ({len(cands)}, left to right)",
             [Col("--face", "num"), Col("box (x0, y0, x1, y1)", "num"), Col("size", "num"), Col("score", "num")])
    for f in cands:
        v.add(f["index"], ", ".join(str(x) for x in f["box"]), f"{f['width']}x{f['height']}", f"{f['score']:.2f}")
    return v


@command(app, "show")
def character_show(
    handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
    candidates: Optional[Path] = typer.Option(None, "--candidates", metavar="PHOTO",
                                              help="List the faces found in this photo with the index --face takes."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a character: photos, identity statistics per encoder, adapters, consent and licence notes.

    Example: storyengine character show mara --candidates group.jpg
    """
    from ..register import face_candidates

    try:
        ws, reg, settings = _open(workspace)
        c = reg.character(handle)
        cands = face_candidates(candidates, settings) if candidates is not None else None
    except StoryEngineError as e:
        fail(e)
    if cands is not None:
        if as_json:
            emit_json(cands)
            return
        show(candidates_view(candidates, cands))
        return
    from ..planner import missing_photos

    identity = [{k: v for k, v in s.items() if k != "centroid"} for s in reg.identity(handle)]
    photos = [{**p, "missing": not (ws.root / p["path"]).is_file()} for p in reg.photos(handle)]
    data = {**c, "photos": photos, "identity": identity, "adapters": reg.adapters(handle)}
    for line in missing_photos(reg, ws, handle):
        warn(line)
    if as_json:
        emit_json(data)
        return
    say(f"{c['name']} ({handle}, {c['kind']})  {c['description'] or ''}".rstrip())
    say(f"consent: {c['consent'] or '—'}   licence: {c['licence'] or '—'}")
    for v in show_views(data, full=not out().is_terminal):
        blank()
        if not out().is_terminal:
            say(f"# {v.title}")
        show(v)


@command(app, "remove")
def character_remove(
    handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
    yes: bool = typer.Option(False, "--yes", help="Really delete the character, its photos, vectors and adapters."),
    photo: Optional[int] = typer.Option(None, "--photo", metavar="ID", help="Remove only this photo (id from `character show`)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Delete a character (or one of its photos) with its files. Needs --yes.

    Example: storyengine character remove mara --photo 3 --yes
    """
    from ..characters import remove_character, remove_photo

    if not yes:
        what = f"photo {photo} of {handle!r}" if photo is not None else f"character {handle!r} with all its photos, vectors and adapters"
        fail(StoryEngineError(f"this deletes {what}; pass --yes to confirm"))
    try:
        ws, reg, _ = _open(workspace)
        if photo is not None:
            row = remove_photo(reg, ws, handle, photo)
            if as_json:
                emit_json({"handle": handle, "removed_photo": row})
            else:
                say(f"removed photo {photo} ({row['source']}) of {handle}")
            return
        counts = remove_character(reg, ws, handle)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"handle": handle, "removed": counts})
        return
    say(f"removed {handle} ({', '.join(f'{n} {t}' for t, n in counts.items() if n)})")


@command(app, "rename")
def character_rename(old: str = typer.Argument(..., metavar="OLD", help="A registered character."),
                     new: str = typer.Argument(..., metavar="NEW", help="Its new handle."),
                     workspace: Optional[Path] = WorkspaceOpt,
                     as_json: bool = JsonOpt) -> None:
    """Rename a character: every registry row, stored path and its folder, in one step.

    Example: storyengine character rename mara mara-lee
    """
    from ..characters import rename_character

    try:
        ws, reg, _ = _open(workspace)
        rename_character(reg, ws, old, new)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"old": old, "new": new})
        return
    say(f"renamed {old} to {new}")


@command(app, "reembed")
def character_reembed(handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
                      encoder: str = typer.Option(..., "--encoder", metavar="NAME", help="Encoder name (see docs/encoders.md)."),
                      workspace: Optional[Path] = WorkspaceOpt,
                      as_json: bool = JsonOpt) -> None:
    """Add vectors of a newly configured encoder (or new weights) for every photo of a character.

    Example: storyengine character reembed mara --encoder clip
    """
    from ..characters import reembed

    try:
        ws, reg, settings = _open(workspace)
        r = reembed(reg, ws, handle, encoder, settings)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"handle": handle, **r})
        return
    for line in r["skipped"]:
        warn(line, label="skipped")
    say(f"embedded {r['embedded']} photo(s) of {handle} with {r['encoder']}@{r['version']}")


@command(app, "export")
def character_export(handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
                     out: Path = typer.Argument(..., metavar="ZIP", help="Zip file to write."),
                     workspace: Optional[Path] = WorkspaceOpt,
                     as_json: bool = JsonOpt) -> None:
    """Export a character (photos, metadata, vectors, adapters, consent notes) to a zip.

    Example: storyengine character export mara mara.zip
    """
    from ..characters import export_character

    try:
        ws, reg, _ = _open(workspace)
        m = export_character(reg, ws, handle, out)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"handle": handle, "zip": str(out), "photos": len(m["photos"]), "vectors": len(m["vectors"]),
                   "adapters": len(m["adapters"])})
        return
    say(f"exported {handle} to {out}: {len(m['photos'])} photo(s), {len(m['vectors'])} vector(s), "
        f"{len(m['adapters'])} adapter(s)")


@command(app, "import")
def character_import(archive: Path = typer.Argument(..., metavar="ZIP", help="Zip written by `character export`."),
                     as_handle: Optional[str] = typer.Option(None, "--as", metavar="NEW", help="Store under this handle instead."),
                     workspace: Optional[Path] = WorkspaceOpt,
                     as_json: bool = JsonOpt) -> None:
    """Import a character exported elsewhere; everything is validated first, a handle clash needs --as NEW.

    Example: storyengine character import mara.zip --as mara-2
    """
    from ..characters import import_character

    try:
        ws, reg, _ = _open(workspace, create=True)
        handle = import_character(reg, ws, archive, as_handle=as_handle)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"handle": handle, "photos": len(reg.photos(handle))})
        return
    say(f"imported {handle} ({len(reg.photos(handle))} photo(s))")


@command(adapter_app, "add")
def adapter_add(
    handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
    file: Path = typer.Argument(..., metavar="FILE", help="LoRA adapter, .safetensors only."),
    base: str = typer.Option(..., "--base", metavar="MODEL", help="Base model it was trained on (hub id or path)."),
    trigger: str = typer.Option(..., "--trigger", metavar="WORD", help="Trigger word used in prompts."),
    weight: float = typer.Option(1.0, "--weight", help="Default strength, 0 < weight <= 2."),
    rank: Optional[int] = typer.Option(None, "--rank", min=1, help="LoRA rank (read from the tensors if not given)."),
    workspace: Optional[Path] = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Store a LoRA adapter for a character, with its sha256, base model and trigger word.

    Example: storyengine character adapter add mara mara.safetensors --base Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --trigger mara
    """
    from ..characters import add_adapter

    try:
        ws, reg, _ = _open(workspace)
        row = add_adapter(reg, ws, handle, file, base=base, trigger=trigger, weight=weight, rank=rank)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(row)
        return
    say(f"added adapter {row['name']} to {handle} (rank {row['rank']}, sha256 {row['sha256'][:12]})")


@command(adapter_app, "remove")
def adapter_remove(handle: str = typer.Argument(..., metavar="HANDLE", help="A registered character."),
                   adapter: str = typer.Argument(..., metavar="ADAPTER", help="Adapter id or name."),
                   workspace: Optional[Path] = WorkspaceOpt,
                   as_json: bool = JsonOpt) -> None:
    """Remove an adapter and its file.

    Example: storyengine character adapter remove mara 2
    """
    from ..characters import remove_adapter

    try:
        ws, reg, _ = _open(workspace)
        row = remove_adapter(reg, ws, handle, adapter)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(row)
        return
    say(f"removed adapter {row.get('name') or row['id']} of {handle}")
