"""`storyengine demo`: the subway-diary week, from nothing to a report, on the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import Interrupted, StoryEngineError
from .common import STATE, JsonOpt, command, commands, emit_json, fail, open_workspace, progress

app = commands()


@command(app, "demo")
def demo_cmd(workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", metavar="DIR", show_default=False,
                                                     help="Demo workspace folder, created (default: demo/)."),
             days: int = typer.Option(7, "--days", min=1, max=7, help="Days of the subway diary to render."),
             width: int = typer.Option(640, "--width", metavar="PIXELS", help="Frame width."),
             height: int = typer.Option(360, "--height", metavar="PIXELS", help="Frame height."),
             seconds: float = typer.Option(4.0, "--seconds", min=1.0, max=5.0, help="Seconds per shot."),
             workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                                   help="Processes composing stills and rendering shots side by side (default: one per CPU; 1: all in this process)."),
             as_json: bool = JsonOpt) -> None:
    """The subway-diary week on the embedded defaults: register two characters, write the spec, render, report.

    Example: storyengine demo --days 2 -w demo
    """
    from ..demo import build_demo
    from ..render import render_series
    from ..settings import Settings
    from .series import print_outcome, render_json

    try:
        ws = open_workspace(workspace or STATE.workspace or Path("demo"), create=True)
        with progress() as rep:
            rep.start("demo", "preparing the demo workspace", 1)
            settings = Settings.load(ws.root, workers=workers)
            spec_path = build_demo(ws, days=days, width=width, height=height, seconds=seconds, workers=settings.workers)
            rep.done("demo")
            out = render_series(ws, spec_path, settings=settings, reporter=rep)
        from ..demo import write_motion_strips

        write_motion_strips(out.report_path.parent)  # strips/<shot>.png: the motion at a glance
        report = json.loads(out.report_path.read_text())
    except Interrupted as e:
        fail(e, 130)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json({"workspace": str(ws.root), "spec": str(spec_path), **render_json(out, report)})
        return
    print_outcome(out, report)
