"""The `storyengine` command line. The only module that prints or turns errors into exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.markup import escape
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
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
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


class _LazyProgress(Progress):
    """A Progress that appears with its first task: a command that fails early prints its error alone."""

    def __enter__(self) -> "_LazyProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.live.is_started:
            self.stop()

    def add_task(self, *args, **kwargs):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


def _progress() -> Progress:
    return _LazyProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


def _ws(path: Path):
    from .workspace import Workspace

    return Workspace.at(path).ensure()


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
    for p in plans:
        for n in p.notes:
            err_console.print(f"[yellow]warning:[/] {escape(n)}", highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(json.dumps([p.model_dump() for p in plans]))
        return
    t = Table("episode", "shot", "still", "characters", "seed", "frames", "fps", "size", "backend", "conditioning", title=f"plan: {s.series}")
    for p in plans:
        t.add_row(p.episode_id, p.shot_id, f"last frame of {p.continues_from}" if p.continues_from else Path(p.still).name, ", ".join(c.handle for c in p.characters), str(p.seed),
                  str(p.num_frames), str(p.fps), f"{p.width}x{p.height}", p.backend, ", ".join(p.conditioning))
    console.print(t)


@app.command("render")
def render_cmd(spec: Path = typer.Argument(..., help="Series spec (YAML)."),
               episode: Optional[List[str]] = typer.Option(None, "--episode", "-e", help="Only these episode ids."),
               max_takes: Optional[int] = typer.Option(None, "--max-takes", help="Takes per shot before it is rejected."),
               mode: Optional[str] = typer.Option(None, "--mode", help="Drift check mode: full | sampled."),
               dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be rendered and why; render nothing."),
               wait: float = typer.Option(0.0, "--wait", min=0.0, help="Seconds to wait for another render of this workspace."),
               executor: str = typer.Option("local", "--executor", help="Where shots run: local | ray."),
               address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto | ray://HOST:PORT (default: a local Ray instance)."),
               gpus_per_shot: float = typer.Option(1.0, "--gpus-per-shot", min=0.0, help="GPUs each Ray shot task reserves (0: CPUs)."),
               workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Most back-end actors on Ray (default: one per GPU)."),
               workspace: Path = WorkspaceOpt) -> None:
    """Render a series: generate every shot, check identity, retry drifted takes, stitch episodes, write report.json.

    Takes are cached by their inputs: re-running an unchanged series renders nothing, an edited
    shot re-renders alone, and an interrupted render resumes where it stopped.
    """
    from .render import dry_run as plan_dry_run, render_series
    from .settings import Settings

    if executor not in ("local", "ray"):
        _fail(StoryEngineError(f"unknown executor {executor!r}; use local or ray"))
    try:
        ws = _ws(workspace)
        settings = Settings.load(ws.root, max_takes=max_takes, check_mode=mode)
        if dry_run:
            rows = plan_dry_run(ws, spec, episodes=episode, settings=settings)
            t = Table("episode", "shot", "action", "why", title=f"render --dry-run: {spec}")
            for r in rows:
                t.add_row(r.episode_id, r.shot_id, r.action, r.why)
            console.print(t)
            n = sum(r.action != "cached" for r in rows)
            console.print(f"{n} of {len(rows)} shot(s) would render; {len(rows) - n} cached", highlight=False)
            return
        ex = None
        if executor == "ray":
            from .executors import RayExecutor
            from .planner import load_series

            s = load_series(spec)
            ex = RayExecutor(s.backend, s.backend_options, address=address, gpus_per_shot=gpus_per_shot, workers=workers)
        with _progress() as p:
            out = render_series(ws, spec, episodes=episode, settings=settings, reporter=RichReporter(p), executor=ex, wait=wait)
        report = json.loads(out.report_path.read_text())
    except StoryEngineError as e:
        _fail(e)
    from .cli_report import print_report

    print_report(report)
    for s in out.shots:
        for n in s.plan.notes:
            err_console.print(f"[yellow]warning:[/] {escape(n)}", highlight=False, soft_wrap=True)
    takes = sum(len(s.takes) for s in out.shots)
    console.print(f"takes: {out.generated} generated, {takes - out.generated} from the cache", highlight=False)
    for ep in out.episodes:
        console.print(f"{ep.episode_id}: {ep.path} ({ep.duration:.1f} s, {len(ep.used)} shot(s), {len(ep.rejected)} rejected"
                      f"{', unchanged' if ep.reused else ''})", highlight=False)
    console.print(f"report: {out.report_path}")


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
    from .cli_report import print_report

    print_report(report)
    for ep in out.episodes:
        console.print(f"{ep.episode_id}: {ep.path} ({ep.duration:.1f} s; used {', '.join(ep.used) or 'none'}"
                      f"{'; rejected ' + ', '.join(ep.rejected) if ep.rejected else ''})", highlight=False)
    console.print(f"report: {out.report_path}")


# Commands live in small modules by noun; importing them registers them on `app`.
from . import cli_characters, cli_episodes, cli_lora, cli_report, cli_studio  # noqa: E402,F401
