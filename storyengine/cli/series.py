"""`storyengine plan` and `storyengine render`: a series spec, resolved into shot plans and rendered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Literal, Optional

import typer

from ..errors import Interrupted, StoryEngineError
from .common import Col, JsonOpt, SpecWorkspaceOpt, View, command, commands, emit_json, fail, info, open_workspace, \
    progress, say, show, warn

app = commands()

SpecArg = typer.Argument(..., metavar="SPEC", help="Series spec (YAML), e.g. episodes/subway-diary.yaml.")
EpisodeOpt = typer.Option(None, "--episode", "-e", metavar="ID", help="Only this episode (repeat for more).")


# ------------------------------------------------------------------ plan
def plan_view(title: str, plans: list, motions: list[dict]) -> View:
    """The plan table; a narrow terminal drops fps, then size and back-end."""
    v = View(f"plan: {title}", [Col("episode"), Col("shot"), Col("still", "path"), Col("characters"), Col("seed", "num"),
                               Col("frames", "num"), Col("fps", "num", drop=1), Col("size", "num", drop=2),
                               Col("backend", drop=2), Col("conditioning", "text"), Col("motion", "text")])
    for p, m in zip(plans, motions):
        still = f"last frame of {p.continues_from}" if p.continues_from else Path(p.still).name
        v.add(p.episode_id, p.shot_id, still, ", ".join(c.handle for c in p.characters), p.seed, p.num_frames, p.fps,
              f"{p.width}x{p.height}", p.backend, ", ".join(p.conditioning), m["read_as"])
    return v


def read_motions(plans: list) -> list[dict]:
    """What each shot's prompt was read as, by its back-end (a plugin not built on VideoBackend gets the base's answer)."""
    from ..backends.base import VideoBackend
    from ..plugins import backend_class

    return [getattr(backend_class(p.backend), "describe_motion", VideoBackend.describe_motion)(p) for p in plans]


@command(app, "plan")
def plan_cmd(spec: Path = SpecArg,
             episode: Optional[List[str]] = EpisodeOpt,
             workspace: Optional[Path] = SpecWorkspaceOpt,
             as_json: bool = JsonOpt) -> None:
    """Print the resolved shot plans (stills, characters, seeds, frames, conditioning) without rendering.

    Example: storyengine plan episodes/subway-diary.yaml -e day-1
    """
    from ..planner import load_series, plan_series
    from ..registry import Registry

    # 1. Read the spec and plan it against the registry (nothing is written)
    try:
        ws = open_workspace(workspace, spec=spec)
        s = load_series(spec)
        plans = plan_series(s, spec, Registry.open(ws), ws, episodes=episode)
    except StoryEngineError as e:
        fail(e)
    # 2. What the planner noticed (resized stills, …) and how each prompt was read (ignored words, contradictions)
    from ..backends.base import motion_warnings

    motions = read_motions(plans)
    for p, m in zip(plans, motions):
        for n in p.notes:
            warn(n)
        for n in motion_warnings(m):
            warn(f"{p.shot_id}: {n}")
    # 3. The plans
    if as_json:
        emit_json([{**p.model_dump(mode="json"), "motion": m} for p, m in zip(plans, motions)])
        return
    show(plan_view(s.series, plans, motions))


# ------------------------------------------------------------------ render
def render_json(out, report: dict) -> dict:
    """The `render --json` document: where everything went and what the checker decided per shot."""
    return {
        "series": out.series, "run": out.run_id, "report": str(out.report_path),
        "takes": {"generated": out.generated, "cached": sum(len(s.takes) for s in out.shots) - out.generated},
        "shots": [{"episode": s.plan.episode_id, "shot": s.plan.shot_id,
                   "verdict": s.verdict.decision if s.verdict else None, "reason": s.verdict.reason if s.verdict else None,
                   "takes": len(s.takes), "path": str(s.path) if s.path else None, "notes": list(s.plan.notes)}
                  for s in out.shots],
        "episodes": [{"episode": e.episode_id, "path": str(e.path), "duration": round(e.duration, 3), "used": e.used,
                      "rejected": e.rejected, "contact_sheet": str(e.contact_sheet) if e.contact_sheet else None,
                      "reused": e.reused} for e in out.episodes],
        "accepted": sum(1 for s in out.shots if s.path is not None), "total": len(out.shots),
    }


def print_outcome(out, report: dict) -> None:
    """The report tables, then one summary line per episode and where the report is."""
    from .report import print_report

    print_report(report)
    for s in out.shots:
        for n in s.plan.notes:
            warn(n)
    takes = sum(len(s.takes) for s in out.shots)
    accepted = sum(1 for s in out.shots if s.path is not None)
    info(f"{accepted} of {len(out.shots)} shot(s) accepted; takes: {out.generated} generated, "
         f"{takes - out.generated} from the cache")
    for ep in out.episodes:
        info(f"{ep.episode_id}: {ep.path} ({ep.duration:.1f} s, {len(ep.used)} shot(s), {len(ep.rejected)} rejected"
             f"{', unchanged' if ep.reused else ''})")
    info(f"report: {out.report_path}")


@command(app, "render")
def render_cmd(spec: Path = SpecArg,
               episode: Optional[List[str]] = EpisodeOpt,
               max_takes: Optional[int] = typer.Option(None, "--max-takes", min=1, help="Takes per shot before it is rejected."),
               mode: Optional[Literal["full", "sampled"]] = typer.Option(None, "--mode",
                                                                       help="Drift check: every frame, tracked, or 16 sampled frames (default: settings)."),
               dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be rendered and why; render nothing."),
               wait: float = typer.Option(0.0, "--wait", min=0.0, metavar="SECONDS",
                                          help="Seconds to wait for another render of this workspace."),
               executor: Optional[Literal["auto", "local", "process", "ray"]] = typer.Option(
                   None, "--executor", help="Where shots run: auto (worker processes for the motion back-end, else this "
                                            "process), local, process, ray (default: settings, auto)."),
               address: Optional[str] = typer.Option(None, "--address", metavar="auto|ray://HOST:PORT",
                                                     help="Ray cluster (default: a local Ray instance)."),
               gpus_per_shot: float = typer.Option(1.0, "--gpus-per-shot", min=0.0, metavar="GPUS",
                                                   help="GPUs each Ray shot task reserves (0: CPUs)."),
               workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                                     help="Worker processes (process) or actors (ray); default: one per CPU (GPU on Ray), at most one per chain of shots."),
               workspace: Optional[Path] = SpecWorkspaceOpt,
               as_json: bool = JsonOpt) -> None:
    """Render a series: generate every shot, check identity, retry drifted takes, stitch episodes, write report.json.

    Takes are cached by their inputs: re-running an unchanged series renders nothing, an edited shot re-renders alone, and an interrupted render resumes where it stopped.

    Example: storyengine render episodes/subway-diary.yaml --dry-run
    """
    from ..render import dry_run as plan_dry_run, render_series
    from ..settings import Settings

    try:
        ws = open_workspace(workspace, spec=spec, create="explicit")
        settings = Settings.load(ws.root, max_takes=max_takes, check_mode=mode, executor=executor, workers=workers)
        if dry_run:
            rows = plan_dry_run(ws, spec, episodes=episode, settings=settings)
            n = sum(r.action != "cached" for r in rows)
            if as_json:
                emit_json({"spec": str(spec), "render": n, "cached": len(rows) - n,
                           "shots": [{"episode": r.episode_id, "shot": r.shot_id, "action": r.action, "why": r.why}
                                     for r in rows]})
                return
            v = View(f"render --dry-run: {spec}", [Col("episode"), Col("shot"), Col("action"), Col("why", "text")])
            for r in rows:
                v.add(r.episode_id, r.shot_id, r.action, r.why)
            show(v)
            say(f"{n} of {len(rows)} shot(s) would render; {len(rows) - n} cached")
            return
        ex = None
        if settings.executor == "ray":
            from ..executors import RayExecutor
            from ..planner import load_series

            s = load_series(spec)
            ex = RayExecutor(s.backend, s.backend_options, address=address, gpus_per_shot=gpus_per_shot,
                             workers=settings.workers or None)
        with progress() as rep:
            out = render_series(ws, spec, episodes=episode, settings=settings, reporter=rep, executor=ex, wait=wait)
        report = json.loads(out.report_path.read_text())
    except Interrupted as e:
        fail(e, 130)
    except StoryEngineError as e:
        fail(e)
    if as_json:
        emit_json(render_json(out, report))
        return
    print_outcome(out, report)
