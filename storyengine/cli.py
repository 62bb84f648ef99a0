"""The `storyengine` command line. The only module that prints or turns errors into exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import StoryEngineError

app = typer.Typer(help="Recurring characters from a few photos, extended into consistent clips and episodes.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
character_app = typer.Typer(help="Register and inspect recurring characters.", no_args_is_help=True)
app.add_typer(character_app, name="character")

console = Console()
err_console = Console(stderr=True)

WorkspaceOpt = typer.Option(Path("."), "--workspace", "-w", envvar="STORYENGINE_WORKSPACE",
                            help="Workspace folder (holds characters/, episodes/, renders/).")


def _fail(e: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


class RichReporter:
    """Progress bars for the renderer (one for the series, one for the shot at hand)."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.tasks: dict[str, int] = {}

    def start(self, key: str, description: str, total: int) -> None:
        if key in self.tasks:
            self.p.reset(self.tasks[key], total=total, description=description, visible=True)
        else:
            self.tasks[key] = self.p.add_task(description, total=total)

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        if key in self.tasks:
            kw = {"description": description} if description else {}
            self.p.update(self.tasks[key], completed=completed, **kw)

    def done(self, key: str) -> None:
        if key in self.tasks:
            self.p.update(self.tasks[key], visible=False)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


def _ws(path: Path):
    from .workspace import Workspace

    return Workspace.at(path).ensure()


# ------------------------------------------------------------------ characters
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


# ------------------------------------------------------------------ plan / render / report
@app.command("plan")
def plan_cmd(spec: Path = typer.Argument(..., help="Series spec (YAML)."),
             episode: Optional[List[str]] = typer.Option(None, "--episode", "-e", help="Only these episode ids."),
             workspace: Path = WorkspaceOpt,
             as_json: bool = typer.Option(False, "--json", help="Print the plans as JSON.")) -> None:
    """Print the resolved shot plans (stills, characters, seeds, frames, conditioning) without rendering."""
    from .planner import load_series, plan_series
    from .registry import Registry

    try:
        ws = _ws(workspace)
        s = load_series(spec)
        plans = plan_series(s, spec, Registry.open(ws), ws, episodes=episode)
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        console.print_json(json.dumps([p.model_dump() for p in plans]))
        return
    t = Table("episode", "shot", "still", "characters", "seed", "frames", "fps", "size", "backend", "conditioning", title=f"plan: {s.series}")
    for p in plans:
        t.add_row(p.episode_id, p.shot_id, Path(p.still).name, ", ".join(c.handle for c in p.characters), str(p.seed),
                  str(p.num_frames), str(p.fps), f"{p.width}x{p.height}", p.backend, ", ".join(p.conditioning))
    console.print(t)


def _print_report(report: dict) -> None:
    f = lambda v: "—" if v is None else f"{v:.3f}"
    for ep in report["episodes"]:
        t = Table(title=f"{report['series']} / {ep['episode']}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        t.add_column("shot", no_wrap=True)
        t.add_column("character", no_wrap=True)
        for col in ("frames", "mean", "min", "p5", "bound", "takes"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
        for sh in ep["shots"]:
            colour = {"accept": "green", "trim": "cyan", "reject": "red"}.get(sh["verdict"], "white")
            chars = sh["characters"] or [{"character": "—", "frames_scored": 0, "mean": None, "min": None, "p5": None, "bound": None}]
            for i, c in enumerate(chars):
                t.add_row(sh["shot"] if i == 0 else "", c["character"], str(c["frames_scored"]), f(c["mean"]), f(c["min"]),
                          f(c["p5"]), f(c["bound"]), str(sh["takes"]) if i == 0 else "",
                          f"[{colour}]{sh['verdict']}[/]" if i == 0 else "")
        console.print(t)
        for sh in ep["shots"]:
            if sh["verdict"] != "accept":
                console.print(f"  {sh['shot']}: [bold]{sh['verdict']}[/] — {sh['reason']}", highlight=False)


@app.command("render")
def render_cmd(spec: Path = typer.Argument(..., help="Series spec (YAML)."),
               episode: Optional[List[str]] = typer.Option(None, "--episode", "-e", help="Only these episode ids."),
               max_takes: Optional[int] = typer.Option(None, "--max-takes", help="Takes per shot before it is rejected."),
               mode: Optional[str] = typer.Option(None, "--mode", help="Drift check mode: full | sampled."),
               workspace: Path = WorkspaceOpt) -> None:
    """Render a series: generate every shot, check identity, retry drifted takes, stitch episodes, write report.json."""
    from .render import render_series
    from .settings import Settings

    try:
        ws = _ws(workspace)
        settings = Settings.load(ws.root, max_takes=max_takes, check_mode=mode)
        with _progress() as p:
            out = render_series(ws, spec, episodes=episode, settings=settings, reporter=RichReporter(p))
        report = json.loads(out.report_path.read_text())
    except StoryEngineError as e:
        _fail(e)
    _print_report(report)
    for ep in out.episodes:
        console.print(f"{ep.episode_id}: {ep.path} ({ep.duration:.1f} s, {len(ep.used)} shot(s), {len(ep.rejected)} rejected)")
    console.print(f"report: {out.report_path}")


@app.command("report")
def report_cmd(series: Optional[str] = typer.Argument(None, help="Series name (default: the only/last rendered one)."),
               workspace: Path = WorkspaceOpt,
               as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """The consistency report of a rendered series: per shot similarity, verdict and reason."""
    from .registry import Registry
    from .report import build_report

    try:
        reg = Registry.open(_ws(workspace))
        names = reg.series_names()
        if series is None:
            if not names:
                raise StoryEngineError("nothing has been rendered in this workspace yet")
            series = names[-1] if len(names) == 1 else reg.db.execute("select series from runs order by id desc limit 1").fetchone()[0]
        report = build_report(reg, series)
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_report(report)


@app.command("check")
def check_cmd(video: Path = typer.Argument(..., help="A video file (from storyengine or any other tool)."),
              character: List[str] = typer.Option(..., "--character", "-c", help="Handle(s) expected in the clip."),
              mode: str = typer.Option("full", "--mode", help="full (every frame) | sampled (16 frames)."),
              workspace: Path = WorkspaceOpt,
              as_json: bool = typer.Option(False, "--json", help="Print frames, summaries and verdict as JSON.")) -> None:
    """Score a clip against registered characters and print the verdict the renderer would take."""
    from .consistency import check_video, references_for
    from .registry import Registry

    try:
        reg = Registry.open(_ws(workspace))
        refs = [r for h in character for r in references_for(reg, h)]
        verdict, scores = check_video(video, refs, mode=mode)
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps({"video": str(video), "mode": mode,
                                     "frames": [{"index": s.index, "time": s.time, "character": s.character, "encoder": s.encoder,
                                                 "similarity": s.similarity, "drifted": s.drifted} for s in scores],
                                     "summary": [s.model_dump() for s in verdict.summaries],
                                     "verdict": verdict.decision, "reason": verdict.reason}, indent=2) + "\n")
        return
    t = Table("character", "encoder", "frames scored", "missing", "drifted", "mean", "min", "bound", title=str(video))
    for s in verdict.summaries:
        f = lambda v: "—" if v is None else f"{v:.3f}"
        t.add_row(s.handle, s.encoder, str(s.frames_scored), str(s.frames_missing), str(s.frames_drifted), f(s.mean), f(s.min), f(s.bound))
    console.print(t)
    console.print(f"verdict: [bold]{verdict.decision}[/] — {verdict.reason}", highlight=False)


@app.command("verify")
def verify_cmd(file: Path = typer.Argument(..., help="An MP4 (or image) to check for C2PA content credentials."),
               trust_anchors: Optional[Path] = typer.Option(None, "--trust-anchors", help="PEM file of trusted root certificates."),
               as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON.")) -> None:
    """Print a file's C2PA manifest summary and validation state; exit 0 valid, 1 invalid, 2 missing."""
    from .provenance import verify

    try:
        res = verify(file, trust_anchors=trust_anchors)
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
    else:
        for line in res.lines():
            console.print(line, highlight=False, markup=False)
    raise typer.Exit({"valid": 0, "invalid": 1}.get(res.state, 2))


@app.command("demo")
def demo_cmd(workspace: Path = typer.Option(Path("demo"), "--workspace", "-w", help="Demo workspace folder."),
             days: int = typer.Option(7, "--days", min=1, max=7, help="Days of the subway diary to render."),
             width: int = typer.Option(640, "--width", help="Frame width."),
             height: int = typer.Option(360, "--height", help="Frame height."),
             seconds: float = typer.Option(4.0, "--seconds", min=1.0, max=5.0, help="Seconds per shot.")) -> None:
    """The subway-diary week on the embedded defaults: register two characters, write the spec, render, report."""
    from .demo import build_demo
    from .render import render_series
    from .settings import Settings

    try:
        ws = _ws(workspace)
        with _progress() as p:
            rep = RichReporter(p)
            rep.start("demo", "preparing the demo workspace", 1)
            spec_path = build_demo(ws, days=days, width=width, height=height, seconds=seconds)
            rep.done("demo")
            out = render_series(ws, spec_path, settings=Settings.load(ws.root), reporter=rep)
        report = json.loads(out.report_path.read_text())
    except StoryEngineError as e:
        _fail(e)
    _print_report(report)
    for ep in out.episodes:
        console.print(f"{ep.episode_id}: {ep.path} ({ep.duration:.1f} s; used {', '.join(ep.used) or 'none'}"
                      f"{'; rejected ' + ', '.join(ep.rejected) if ep.rejected else ''})", highlight=False)
    console.print(f"report: {out.report_path}")


def main() -> None:  # pragma: no cover
    app()
