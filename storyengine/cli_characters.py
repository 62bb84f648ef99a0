"""`storyengine character …`: register, inspect and manage recurring characters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .cli import WorkspaceOpt, _fail, _ws, character_app, console, err_console
from .errors import StoryEngineError

adapter_app = typer.Typer(help="LoRA adapters of a character (safetensors only).", no_args_is_help=True)
character_app.add_typer(adapter_app, name="adapter")


def _open(workspace: Path):
    from .registry import Registry
    from .settings import Settings

    ws = _ws(workspace)
    return ws, Registry.open(ws), Settings.load(ws.root)


def _report(r, handle: str) -> None:
    for line in r.rejected:
        err_console.print(f"[yellow]refused:[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"registered {len(r.accepted)} photo(s) of [bold]{handle}[/] ({len(r.rejected)} refused)")


@character_app.command("add")
def character_add(
    handle: str = typer.Argument(..., help="Lowercase slug naming the character, e.g. mara."),
    photos: List[Path] = typer.Argument(..., help="1-7 photos of the character."),
    kind: str = typer.Option("person", "--kind", help="person | pet | object | drawn."),
    name: Optional[str] = typer.Option(None, "--name", help="Display name (default: the handle)."),
    description: str = typer.Option("", "--description", help="Free text about the character."),
    consent: str = typer.Option("", "--consent", help="Consent note: who agreed to what."),
    licence: str = typer.Option("", "--licence", help="Licence of the photos."),
    face: Optional[int] = typer.Option(None, "--face", help="Which face to use when a photo shows several (0-based, left to right)."),
    force: bool = typer.Option(False, "--force", help="Keep photos the outlier gate refuses."),
    workspace: Path = WorkspaceOpt,
) -> None:
    """Register a character (or add photos to one): every photo is gated, embedded and stored in one transaction."""
    from .register import register_character

    try:
        ws, reg, settings = _open(workspace)
        r = register_character(reg, ws, handle, photos, kind=kind, name=name, description=description, consent=consent,
                               licence=licence, face=face, force=force or settings.outlier_force, settings=settings)
    except StoryEngineError as e:
        _fail(e)
    _report(r, handle)


@character_app.command("add-photos")
def character_add_photos(
    handle: str = typer.Argument(..., help="A registered character."),
    photos: List[Path] = typer.Argument(..., help="More photos of it."),
    consent: str = typer.Option("", "--consent", help="Consent note for these photos."),
    licence: str = typer.Option("", "--licence", help="Licence of these photos."),
    face: Optional[int] = typer.Option(None, "--face", help="Which face to use when a photo shows several."),
    force: bool = typer.Option(False, "--force", help="Keep photos the outlier gate refuses."),
    workspace: Path = WorkspaceOpt,
) -> None:
    """Add photos to a registered character (same gates; the outlier gate compares with its stored photos)."""
    from .characters import add_photos

    try:
        ws, reg, settings = _open(workspace)
        r = add_photos(reg, ws, handle, photos, face=face, force=force or settings.outlier_force, consent=consent,
                       licence=licence, settings=settings)
    except StoryEngineError as e:
        _fail(e)
    _report(r, handle)


@character_app.command("list")
def character_list(workspace: Path = WorkspaceOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered characters."""
    try:
        _, reg, _ = _open(workspace)
    except StoryEngineError as e:
        _fail(e)
    rows = []
    for c in reg.characters():
        rows.append({"handle": c["handle"], "name": c["name"], "kind": c["kind"], "photos": len(reg.photos(c["handle"])),
                     "encoders": [f"{n}@{v}" for n, v in reg.encoders_of(c["handle"])], "adapters": len(reg.adapters(c["handle"]))})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    t = Table("handle", "name", "kind", "photos", "encoders", "adapters", title="characters")
    for r in rows:
        t.add_row(r["handle"], r["name"], r["kind"], str(r["photos"]), ", ".join(r["encoders"]), str(r["adapters"]))
    console.print(t)


@character_app.command("consent")
def character_consent(
    handle: str = typer.Argument(..., help="The character."),
    note: str = typer.Argument(..., help="Consent note: who agreed to what, and when."),
    licence: Optional[str] = typer.Option(None, "--licence", help="Also set the licence of the photos."),
    workspace: Path = WorkspaceOpt,
) -> None:
    """Record a character's consent note (required for people when the setting require_consent is on)."""
    from .characters import set_consent

    try:
        ws, reg, _ = _open(workspace)
        row = set_consent(reg, handle, note, licence=licence)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"consent for [bold]{handle}[/]: {escape(row['consent'])}", highlight=False)


@character_app.command("show")
def character_show(
    handle: str,
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="List the faces found in this photo with the index --face takes."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a character: photos, identity statistics per encoder, adapters, consent and licence notes."""
    from .register import face_candidates

    try:
        ws, reg, settings = _open(workspace)
        c = reg.character(handle)
        cands = face_candidates(candidates, settings) if candidates is not None else None
    except StoryEngineError as e:
        _fail(e)
    if cands is not None:
        if as_json:
            console.print_json(json.dumps(cands))
            return
        t = Table("--face", "box (x0, y0, x1, y1)", "size", "score", title=f"faces in {escape(str(candidates))} ({len(cands)}, left to right)")
        for f in cands:
            t.add_row(str(f["index"]), str(tuple(f["box"])), f"{f['width']}x{f['height']}", f"{f['score']:.2f}")
        console.print(t)
        return
    identity = [{k: v for k, v in s.items() if k != "centroid"} for s in reg.identity(handle)]
    data = {**c, "photos": reg.photos(handle), "identity": identity, "adapters": reg.adapters(handle)}
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    console.print(f"[bold]{escape(c['name'])}[/] ({handle}, {c['kind']})  {escape(c['description'] or '')}", highlight=False)
    console.print(f"consent: {escape(c['consent'] or '—')}   licence: {escape(c['licence'] or '—')}", highlight=False)
    t = Table("id", "photo", "source", "size", "sha256", "consent", "licence", title="photos")
    for p in data["photos"]:
        t.add_row(str(p["id"]), p["path"], p["source"], f"{p['width']}x{p['height']}", p["sha256"][:12],
                  p["consent"] or "—", p["licence"] or "—")
    console.print(t)
    t = Table("encoder", "version", "n", "max pairwise dist", "mean pairwise dist", "bound (similarity)", "from", title="identity")
    for s in identity:
        t.add_row(s["encoder"], s["encoder_version"], str(s["n"]), f"{s['max_distance']:.3f}", f"{s['mean_distance']:.3f}",
                  f"{s['bound']:.3f}" if s["bound"] is not None else "—", s["bound_source"])
    console.print(t)
    if data["adapters"]:
        t = Table("id", "name", "base", "trigger", "weight", "rank", "steps", "sha256", title="adapters")
        for a in data["adapters"]:
            t.add_row(str(a["id"]), a.get("name") or "", a["base"], a["trigger"], f"{a['weight']:g}", str(a["rank"]),
                      str(a.get("steps")), a["sha256"][:12])
        console.print(t)


@character_app.command("remove")
def character_remove(
    handle: str,
    yes: bool = typer.Option(False, "--yes", help="Really delete the character, its photos, vectors and adapters."),
    photo: Optional[int] = typer.Option(None, "--photo", help="Remove only this photo (id from `character show`)."),
    workspace: Path = WorkspaceOpt,
) -> None:
    """Delete a character (or one of its photos) with its files. Needs --yes."""
    from .characters import remove_character, remove_photo

    if not yes:
        what = f"photo {photo} of {handle!r}" if photo is not None else f"character {handle!r} with all its photos, vectors and adapters"
        _fail(StoryEngineError(f"this deletes {what}; pass --yes to confirm"))
    try:
        ws, reg, _ = _open(workspace)
        if photo is not None:
            row = remove_photo(reg, ws, handle, photo)
            console.print(f"removed photo {photo} ({row['source']}) of [bold]{handle}[/]")
            return
        counts = remove_character(reg, ws, handle)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"removed [bold]{handle}[/] ({', '.join(f'{n} {t}' for t, n in counts.items() if n)})")


@character_app.command("rename")
def character_rename(old: str, new: str, workspace: Path = WorkspaceOpt) -> None:
    """Rename a character: every registry row, stored path and its folder, in one step."""
    from .characters import rename_character

    try:
        ws, reg, _ = _open(workspace)
        rename_character(reg, ws, old, new)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"renamed [bold]{old}[/] to [bold]{new}[/]")


@character_app.command("reembed")
def character_reembed(handle: str, encoder: str = typer.Option(..., "--encoder", help="Encoder name (see docs/encoders.md)."),
                      workspace: Path = WorkspaceOpt) -> None:
    """Add vectors of a newly configured encoder (or new weights) for every photo of a character."""
    from .characters import reembed

    try:
        ws, reg, settings = _open(workspace)
        r = reembed(reg, ws, handle, encoder, settings)
    except StoryEngineError as e:
        _fail(e)
    for line in r["skipped"]:
        err_console.print(f"[yellow]skipped:[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"embedded {r['embedded']} photo(s) of [bold]{handle}[/] with {r['encoder']}@{r['version']}", highlight=False)


@character_app.command("export")
def character_export(handle: str, out: Path = typer.Argument(..., help="Zip file to write."), workspace: Path = WorkspaceOpt) -> None:
    """Export a character (photos, metadata, vectors, adapters, consent notes) to a zip."""
    from .characters import export_character

    try:
        ws, reg, _ = _open(workspace)
        m = export_character(reg, ws, handle, out)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"exported [bold]{handle}[/] to {escape(str(out))}: {len(m['photos'])} photo(s), {len(m['vectors'])} vector(s), "
                  f"{len(m['adapters'])} adapter(s)", highlight=False)


@character_app.command("import")
def character_import(archive: Path = typer.Argument(..., help="Zip written by `character export`."),
                     as_handle: Optional[str] = typer.Option(None, "--as", help="Store under this handle instead."),
                     workspace: Path = WorkspaceOpt) -> None:
    """Import a character exported elsewhere; everything is validated first, a handle clash needs --as NEW."""
    from .characters import import_character

    try:
        ws, reg, _ = _open(workspace)
        handle = import_character(reg, ws, archive, as_handle=as_handle)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"imported [bold]{handle}[/] ({len(reg.photos(handle))} photo(s))")


@adapter_app.command("add")
def adapter_add(
    handle: str,
    file: Path = typer.Argument(..., help="LoRA adapter, .safetensors only."),
    base: str = typer.Option(..., "--base", help="Base model it was trained on (hub id or path)."),
    trigger: str = typer.Option(..., "--trigger", help="Trigger word used in prompts."),
    weight: float = typer.Option(1.0, "--weight", help="Default strength, 0 < weight <= 2."),
    rank: Optional[int] = typer.Option(None, "--rank", help="LoRA rank (read from the tensors if not given)."),
    workspace: Path = WorkspaceOpt,
) -> None:
    """Store a LoRA adapter for a character, with its sha256, base model and trigger word."""
    from .characters import add_adapter

    try:
        ws, reg, _ = _open(workspace)
        row = add_adapter(reg, ws, handle, file, base=base, trigger=trigger, weight=weight, rank=rank)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"added adapter {row['name']} to [bold]{handle}[/] (rank {row['rank']}, sha256 {row['sha256'][:12]})", highlight=False)


@adapter_app.command("remove")
def adapter_remove(handle: str, adapter: str = typer.Argument(..., help="Adapter id or name."), workspace: Path = WorkspaceOpt) -> None:
    """Remove an adapter and its file."""
    from .characters import remove_adapter

    try:
        ws, reg, _ = _open(workspace)
        row = remove_adapter(reg, ws, handle, adapter)
    except StoryEngineError as e:
        _fail(e)
    console.print(f"removed adapter {row.get('name') or row['id']} of [bold]{handle}[/]")
