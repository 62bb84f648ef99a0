"""`storyengine check` and `storyengine report`: identity scores of any clip, and of a rendered series."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .cli import WorkspaceOpt, _fail, _ws, app, console, err_console
from .errors import StoryEngineError


def print_report(report: dict) -> None:
    f = lambda v: "—" if v is None else f"{v:.3f}"
    for ep in report["episodes"]:
        t = Table(title=f"{report['series']} / {ep['episode']}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        t.add_column("shot", no_wrap=True)
        t.add_column("character", no_wrap=True)
        for col in ("frames", "mean", "min", "p5", "bound", "subj.", "flicker", "takes"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
        wide = console.width >= 150  # the reason gets its own column on a wide terminal, its own line otherwise
        if wide:
            t.add_column("reason", overflow="fold", max_width=60)
        for sh in ep["shots"]:
            colour = {"accept": "green", "trim": "cyan", "reject": "red"}.get(sh["verdict"], "white")
            chars = sh["characters"] or [{"character": "—", "frames_scored": 0, "mean": None, "min": None, "p5": None,
                                          "bound": None, "subject_consistency": None}]
            for i, c in enumerate(chars):
                t.add_row(sh["shot"] if i == 0 else "", c["character"], str(c["frames_scored"]), f(c["mean"]), f(c["min"]),
                          f(c["p5"]), f(c["bound"]), f(c.get("subject_consistency")),
                          f(sh.get("flicker")) if i == 0 else "", str(sh["takes"]) if i == 0 else "",
                          f"[{colour}]{sh['verdict']}[/]" if i == 0 else "",
                          *([escape(sh["reason"] or "") if i == 0 else ""] if wide else []))
        console.print(t)
        if not wide:
            for sh in ep["shots"]:
                if sh["verdict"] != "accept" or sh.get("findings"):
                    console.print(f"  {sh['shot']}: [bold]{sh['verdict']}[/] — {escape(sh['reason'] or '')}", highlight=False)
    chars = report.get("characters") or []
    if chars:
        eps = [e["episode"] for e in report["episodes"]]
        t = Table(title=f"{report['series']}: characters across the series (accepted frames)", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
        t.add_column("character", no_wrap=True)
        for ep in eps:
            t.add_column(ep, justify="right", no_wrap=True)
        for col in ("mean", "worst ep.", "ep→ep min", "bound"):
            t.add_column(col, justify="right", no_wrap=True)
        for c in chars:
            by = {r["episode"]: r for r in c["episodes"]}
            cells = [f(by[e]["mean"]) + (f" ({by[e]['to_previous']:.2f})" if by.get(e, {}).get("to_previous") is not None else "")
                     if e in by else "—" for e in eps]
            t.add_row(f"{c['character']} ({c['encoder']})", *cells, f(c["mean"]), f(c["worst_episode_mean"]),
                      f(c["min_episode_to_episode"]), f(c["bound"]))
        console.print(t)
        console.print("  per episode: mean similarity of accepted frames to the registry (cosine of the episode's mean "
                      "embedding to the previous episode's)", style="dim", highlight=False)


def _latest_series(reg) -> str:
    names = reg.series_names()
    if not names:
        raise StoryEngineError("nothing has been rendered in this workspace yet")
    return reg.db.execute("select series from runs order by id desc limit 1").fetchone()[0]


@app.command("report")
def report_cmd(series: Optional[str] = typer.Argument(None, help="Series name (default: the last rendered one)."),
               episode: Optional[str] = typer.Option(None, "--episode", "-e", help="Only this episode."),
               workspace: Path = WorkspaceOpt,
               as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (fields: docs/report.md)."),
               html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML page here."),
               fail_under: Optional[float] = typer.Option(None, "--fail-under",
                                                          help="Exit 3 if an accepted shot or a character's mean similarity is below this.")) -> None:
    """The consistency report of a rendered series: per shot similarity, temporal signals, verdict and reason."""
    from .registry import Registry
    from .report import build_report, fail_under as gate

    try:
        reg = Registry.open(_ws(workspace))
        series = series or _latest_series(reg)
        report = build_report(reg, series, episode=episode)
        if html is not None:
            from .report_html import write_html

            write_html(reg, report, html)
    except StoryEngineError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(report)
        if html is not None:
            console.print(f"html: {html}", highlight=False)
    if fail_under is not None:
        failed = gate(report, fail_under)
        for line in failed:
            err_console.print(f"[bold red]under {fail_under:g}:[/] {escape(line)}", highlight=False)
        if failed:
            raise typer.Exit(3)


def check_json(video: Path, res) -> dict:
    """The `check --json` document (fields: docs/report.md)."""
    v = res.verdict
    return {"video": str(video), "mode": v.mode, "fps": res.fps, "frames_total": res.num_frames, "cached": res.cached,
            "frames": [{"index": s.index, "time": s.time, "character": s.character, "encoder": s.encoder,
                        "similarity": s.similarity, "centroid": s.centroid, "drifted": s.drifted, "source": s.source,
                        "lookalike": s.lookalike}
                       for s in res.scores],
            "summary": [s.model_dump(exclude={"mean_vector"}) for s in v.summaries],
            "flicker": v.flicker, "findings": v.findings,
            "verdict": v.decision, "reason": v.reason, "keep": [v.keep_start, v.keep_end]}


@app.command("check")
def check_cmd(video: Path = typer.Argument(..., help="A video file (from storyengine or any other tool)."),
              character: List[str] = typer.Option(..., "--character", "-c", help="Handle(s) expected in the clip."),
              mode: Optional[str] = typer.Option(None, "--mode", help="full (every frame, tracked) | sampled (16 frames); default: settings."),
              bound: Optional[float] = typer.Option(None, "--bound", help="Override the per-character acceptance bound."),
              min_duration: Optional[float] = typer.Option(None, "--min-duration", help="Shortest clip a trim may keep, seconds (default 60%)."),
              workspace: Path = WorkspaceOpt,
              as_json: bool = typer.Option(False, "--json", help="Print frames, summaries and verdict as JSON.")) -> None:
    """Score a clip against registered characters and print the verdict the renderer would take.

    Exit code: 0 accept, 1 trim (the kept frames are printed), 2 reject, 3 error (issue 15).
    """
    from . import cohort
    from .consistency import check, references_for
    from .registry import Registry
    from .settings import Settings

    try:
        ws = _ws(workspace)
        settings = Settings.load(ws.root, check_mode=mode, bound=bound)
        reg = Registry.open(ws)
        refs = [r for h in dict.fromkeys(character) for r in references_for(reg, h, bound=settings.bound)]
        refs = cohort.attach(reg, refs, background=settings.cohort_background)  # lookalikes: every other character
        min_frames = None
        if min_duration is not None:
            from . import media

            min_frames = max(1, round(min_duration * (media.fps_of(media.video_stream(media.probe(video), video)) or 24.0)))
        res = check(video, refs, settings=settings, min_frames=min_frames, reg=reg)
    except StoryEngineError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(CHECK_EXIT["error"])  # not 1: that is a trim
    verdict = res.verdict
    if as_json:
        sys.stdout.write(json.dumps(check_json(video, res), indent=2) + "\n")
        raise typer.Exit(CHECK_EXIT[verdict.decision])
    f = lambda v: "—" if v is None else f"{v:.3f}"
    t = Table("character", "encoder", "scored", "unknown", "drifted", "mean", "min", "p5", "centroid", "subj.", "bound",
              title=f"{video} ({verdict.mode} mode{', cached' if res.cached else ''})")
    for s in verdict.summaries:
        t.add_row(s.handle, s.encoder, str(s.frames_scored), str(s.frames_missing), str(s.frames_drifted), f(s.mean), f(s.min),
                  f(s.p5), f(s.centroid_mean), f(s.subject_consistency), f(s.bound))
    console.print(t)
    console.print(f"flicker {f(verdict.flicker)}", highlight=False)
    for line in verdict.findings:
        console.print(f"finding: {escape(line)}", highlight=False)
    console.print(f"verdict: [bold]{verdict.decision}[/] — {escape(verdict.reason)}", highlight=False)
    if verdict.decision == "trim":
        console.print(f"kept: frames {verdict.keep_start}–{verdict.keep_end - 1} ({verdict.keep_start / res.fps:.2f}–"
                      f"{verdict.keep_end / res.fps:.2f} s)", highlight=False)
    raise typer.Exit(CHECK_EXIT[verdict.decision])


CHECK_EXIT = {"accept": 0, "trim": 1, "reject": 2, "retry": 2, "error": 3}  # `storyengine check` exit codes
