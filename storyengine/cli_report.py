"""`storyengine check` and `storyengine report`: identity scores of any clip, and of a rendered series."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich import box
from rich.table import Table

from .cli import WorkspaceOpt, _fail, _ws, app, console
from .errors import StoryEngineError


def print_report(report: dict) -> None:
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
    print_report(report)


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


