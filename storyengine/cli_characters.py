"""`storyengine character …`: register, inspect and manage recurring characters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .cli import WorkspaceOpt, _fail, _ws, character_app, console, err_console
from .errors import StoryEngineError


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
    from .registry import Registry
    from .settings import Settings

    try:
        ws = _ws(workspace)
        reg = Registry.open(ws)
        r = register_character(reg, ws, handle, photos, kind=kind, name=name, description=description, consent=consent,
                               licence=licence, face=face, force=force, settings=Settings.load(ws.root))
    except StoryEngineError as e:
        _fail(e)
    for line in r.rejected:
        err_console.print(f"[yellow]refused:[/] {line}", highlight=False)
    console.print(f"registered {len(r.accepted)} photo(s) of [bold]{handle}[/] ({len(r.rejected)} refused)")


@character_app.command("list")
def character_list(workspace: Path = WorkspaceOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered characters."""
    from .registry import Registry

    reg = Registry.open(_ws(workspace))
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


@character_app.command("show")
def character_show(handle: str, workspace: Path = WorkspaceOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a character: photos, identity vectors and statistics, adapters, consent."""
    from .consistency import derive_bound
    from .register import identity_stats
    from .registry import Registry
    from . import plugins
    import numpy as np

    try:
        reg = Registry.open(_ws(workspace))
        c = reg.character(handle)
    except StoryEngineError as e:
        _fail(e)
    stats = identity_stats(reg, handle)
    for s in stats:
        try:
            enc = plugins.get_encoder(s["encoder"])
            vecs = np.stack([v.vector for v in reg.vectors(handle, s["encoder"])])
            s["bound"], s["bound_source"] = derive_bound(enc, vecs)
        except StoryEngineError:
            s["bound"], s["bound_source"] = None, "encoder not installed"
    data = {**c, "photos": reg.photos(handle), "identity": stats, "adapters": reg.adapters(handle)}
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    console.print(f"[bold]{c['name']}[/] ({handle}, {c['kind']})  {c['description'] or ''}")
    console.print(f"consent: {c['consent'] or '—'}   licence: {c['licence'] or '—'}")
    t = Table("id", "photo", "source", "size", "sha256", title="photos")
    for p in data["photos"]:
        t.add_row(str(p["id"]), p["path"], p["source"], f"{p['width']}x{p['height']}", p["sha256"][:12])
    console.print(t)
    t = Table("encoder", "vectors", "max dist to centroid", "min pairwise sim", "bound", "why", title="identity")
    for s in stats:
        t.add_row(f"{s['encoder']}@{s['version']}", str(s["vectors"]), f"{s['max_distance']:.3f}",
                  f"{s['min_pairwise_similarity']:.3f}", f"{s['bound']:.3f}" if s["bound"] is not None else "—", s["bound_source"])
    console.print(t)


