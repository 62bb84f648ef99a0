"""`storyengine check` and `storyengine report`: identity scores of any clip, and of a rendered series."""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from ..errors import StoryEngineError
from .common import Col, View, WorkspaceOpt, blank, command, commands, emit_json, fail, fits, info, \
    open_workspace, piped, say, show, warn

app = commands()


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


_VERDICT_STYLE = {"trim": "cyan", "reject": "red"}
_SHOT_COLS = [Col("shot"), Col("character"), Col("frames", "num"), Col("mean", "num"), Col("min", "num"),
              Col("p5", "num", drop=2), Col("bound", "num"), Col("subj.", "num", drop=2), Col("flicker", "num", drop=2),
              Col("takes", "num", drop=3), Col("verdict"), Col("reason", "text", drop=1)]


def _shot_rows(ep: dict):
    """(cells, style) per shot and character: the shot's own cells only on its first line."""
    for sh in ep["shots"]:
        chars = sh["characters"] or [{"character": "—", "frames_scored": 0, "mean": None, "min": None, "p5": None,
                                      "bound": None, "subject_consistency": None}]
        for i, c in enumerate(chars):
            first = i == 0
            yield ([sh["shot"] if first else "", c["character"], str(c["frames_scored"]), _f(c["mean"]), _f(c["min"]),
                    _f(c["p5"]), _f(c["bound"]), _f(c.get("subject_consistency")),
                    _f(sh.get("flicker")) if first else "", str(sh["takes"]) if first else "",
                    sh["verdict"] if first else "", (sh["reason"] or "") if first else ""],
                   _VERDICT_STYLE.get(sh["verdict"]))


def episode_view(report: dict, ep: dict) -> View:
    v = View(f"{report['series']} / {ep['episode']}", list(_SHOT_COLS))
    for cells, style in _shot_rows(ep):
        v.add(*cells, style=style)
    return v


def series_view(report: dict) -> View:
    """Each character across the series, one column per episode: ``mean (cosine to the previous episode)``."""
    eps = [e["episode"] for e in report["episodes"]]
    v = View(f"{report['series']}: characters across the series (accepted frames)",
             [Col("character"), *[Col(e, "num") for e in eps], Col("mean", "num"), Col("worst ep.", "num"),
              Col("ep→ep min", "num"), Col("bound", "num")])
    for c in report.get("characters") or []:
        by = {r["episode"]: r for r in c["episodes"]}
        cells = [_f(by[e]["mean"]) + (f" ({by[e]['to_previous']:.2f})" if by[e].get("to_previous") is not None else "")
                 if e in by else "—" for e in eps]
        v.add(f"{c['character']} ({c['encoder']})", *cells, _f(c["mean"]), _f(c["worst_episode_mean"]),
              _f(c["min_episode_to_episode"]), _f(c["bound"]))
    return v


def character_view(report: dict, c: dict) -> View:
    """The narrow layout of the series table: one table per character, one row per episode."""
    v = View(f"{c['character']} ({c['encoder']}) across {report['series']}: mean {_f(c['mean'])}, worst episode "
             f"{_f(c['worst_episode_mean'])}, ep→ep min {_f(c['min_episode_to_episode'])}, bound {_f(c['bound'])}",
             [Col("episode"), Col("shots", "num"), Col("frames", "num"), Col("mean", "num"), Col("min", "num"),
              Col("to previous", "num")])
    for r in c["episodes"]:
        v.add(r["episode"], r["shots"], r["frames"], _f(r["mean"]), _f(r["min"]), _f(r.get("to_previous")))
    return v


def _tsv_report(report: dict) -> None:
    """Piped: one row per shot and character with every column, then one row per character and episode."""
    shots = View("", [Col("episode"), *_SHOT_COLS])
    for ep in report["episodes"]:
        for cells, _ in _shot_rows(ep):
            shots.add(ep["episode"], *cells)
    show(shots)
    chars = report.get("characters") or []
    if chars:
        blank()
        v = View("", [Col("character"), Col("encoder"), Col("episode"), Col("shots", "num"), Col("frames", "num"),
                      Col("mean", "num"), Col("min", "num"), Col("to previous", "num"), Col("series mean", "num"),
                      Col("worst ep.", "num"), Col("ep→ep min", "num"), Col("bound", "num")])
        for c in chars:
            for r in c["episodes"]:
                v.add(c["character"], c["encoder"], r["episode"], r["shots"], r["frames"], _f(r["mean"]), _f(r["min"]),
                      _f(r.get("to_previous")), _f(c["mean"]), _f(c["worst_episode_mean"]),
                      _f(c["min_episode_to_episode"]), _f(c["bound"]))
        show(v)


def print_report(report: dict) -> None:
    """The report for people: a table per episode (reasons under it when the width has no room for them),
    then the characters across the series (one table per character on a narrow terminal)."""
    if piped():
        _tsv_report(report)
        return
    for ep in report["episodes"]:
        layout = show(episode_view(report, ep))
        if layout == "narrow":  # the reason column went: say the reasons under the table
            notes = [sh for sh in ep["shots"] if sh["verdict"] != "accept" or sh.get("findings")]
            for sh in notes:
                say(f"  {sh['shot']}: {sh['verdict']} — {sh['reason'] or ''}")
            if notes:
                say("")
    chars = report.get("characters") or []
    if chars:
        wide = series_view(report)
        if fits(wide):
            show(wide)
        else:
            for c in chars:
                show(character_view(report, c))
        say("  per episode: mean similarity of accepted frames to the registry (cosine of the episode's mean "
            "embedding to the previous episode's)", style="dim")


def _latest_series(reg) -> str:
    names = reg.series_names()
    if not names:
        raise StoryEngineError("nothing has been rendered in this workspace yet")
    return reg.db.execute("select series from runs order by id desc limit 1").fetchone()[0]


@command(app, "report")
def report_cmd(series: Optional[str] = typer.Argument(None, metavar="SERIES", help="Series name (default: the last rendered one)."),
               episode: Optional[List[str]] = typer.Option(None, "--episode", "-e", metavar="ID",
                                                           help="Only this episode (repeat for more)."),
               workspace: Optional[Path] = WorkspaceOpt,
               as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (fields: docs/report.md)."),
               html: Optional[Path] = typer.Option(None, "--html", metavar="PATH",
                                                   help="Also write the HTML page here (episodes and takes linked relative to it)."),
               open_page: bool = typer.Option(False, "--open",
                                              help="Open the HTML page in the browser (written to renders/SERIES/report.html without --html)."),
               fail_under: Optional[float] = typer.Option(None, "--fail-under", metavar="SCORE",
                                                          help="Exit 3 if an accepted shot or a character's mean similarity is below this.")) -> None:
    """The consistency report of a rendered series: per shot similarity, temporal signals, verdict and reason.

    Example: storyengine report subway-diary -e day-1 -e day-2 --fail-under 0.8
    """
    from ..registry import Registry
    from ..report import build_report, fail_under as gate

    try:
        reg = Registry.open(open_workspace(workspace))
        series = series or _latest_series(reg)
        report = build_report(reg, series, episode=episode or None)
        html = html or (reg.workspace.series_dir(series) / "report.html" if open_page else None)
        if html is not None:
            from ..report_html import open_in_browser, write_html

            write_html(reg, report, html)
            if open_page:
                open_in_browser(html)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(report)
    else:
        print_report(report)
        if html is not None:
            info(f"html: {html}")
    if fail_under is not None:
        failed = gate(report, fail_under)
        for line in failed:
            warn(line, label=f"under {fail_under:g}")
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


@command(app, "check")
def check_cmd(video: Path = typer.Argument(..., metavar="VIDEO", help="A video file (from storyengine or any other tool)."),
              character: List[str] = typer.Option(..., "--character", "-c", metavar="HANDLE",
                                                  help="A character expected in the clip (repeat for more)."),
              mode: Optional[Literal["full", "sampled"]] = typer.Option(None, "--mode",
                                                                      help="Every frame, tracked, or 16 sampled frames (default: settings)."),
              bound: Optional[float] = typer.Option(None, "--bound", metavar="SIMILARITY", help="Override the per-character acceptance bound."),
              min_duration: Optional[float] = typer.Option(None, "--min-duration", metavar="SECONDS",
                                                           help="Shortest clip a trim may keep (default 60%)."),
              workspace: Optional[Path] = WorkspaceOpt,
              as_json: bool = typer.Option(False, "--json", help="Print frames, summaries and verdict as JSON.")) -> None:
    """Score a clip against registered characters and print the verdict the renderer would take.

    Exit code: 0 accept, 1 trim (the kept frames are printed), 2 reject, 3 error.

    Example: storyengine check clip.mp4 -c mara -c chelsea --json
    """
    from .. import cohort
    from ..consistency import check, references_for
    from ..registry import Registry
    from ..settings import Settings

    try:
        ws = open_workspace(workspace)
        settings = Settings.load(ws.root, check_mode=mode, bound=bound)
        reg = Registry.open(ws)
        refs = [r for h in dict.fromkeys(character) for r in references_for(reg, h, bound=settings.bound, settings=settings)]
        refs = cohort.attach(reg, refs, background=settings.cohort_background)  # lookalikes: every other character
        min_frames = None
        if min_duration is not None:
            from .. import media

            min_frames = max(1, round(min_duration * (media.fps_of(media.video_stream(media.probe(video), video)) or 24.0)))
        res = check(video, refs, settings=settings, min_frames=min_frames, reg=reg)
    except StoryEngineError as e:
        fail(e, CHECK_EXIT["error"])  # not 1: that is a trim
    verdict = res.verdict
    if as_json:
        emit_json(check_json(video, res))
        raise typer.Exit(CHECK_EXIT[verdict.decision])
    v = View(f"{video} ({verdict.mode} mode{', cached' if res.cached else ''})",
             [Col("character"), Col("encoder", drop=1), Col("scored", "num"), Col("unknown", "num", drop=2),
              Col("drifted", "num"), Col("mean", "num"), Col("min", "num"), Col("p5", "num", drop=2),
              Col("centroid", "num", drop=1), Col("subj.", "num", drop=2), Col("bound", "num")])
    for s in verdict.summaries:
        v.add(s.handle, s.encoder, s.frames_scored, s.frames_missing, s.frames_drifted, _f(s.mean), _f(s.min),
              _f(s.p5), _f(s.centroid_mean), _f(s.subject_consistency), _f(s.bound))
    show(v)
    say(f"flicker {_f(verdict.flicker)}")
    for line in verdict.findings:
        say(f"finding: {line}")
    say(f"verdict: {verdict.decision} — {verdict.reason}")
    if verdict.decision == "trim":
        say(f"kept: frames {verdict.keep_start}–{verdict.keep_end - 1} ({verdict.keep_start / res.fps:.2f}–"
            f"{verdict.keep_end / res.fps:.2f} s)")
    raise typer.Exit(CHECK_EXIT[verdict.decision])


CHECK_EXIT = {"accept": 0, "trim": 1, "reject": 2, "retry": 2, "error": 3}  # `storyengine check` exit codes
