"""Orchestration: plan → generate → check → retry → stitch → report.

Each take is streamed from the back-end straight into an H.264 file (written atomically), read
back by the checker, and recorded with its verdict in the registry. Only accepted (or trimmed)
takes reach the stitcher; a shot whose every take drifted is left out and reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import media, plugins
from .backends.base import VideoBackend
from .consistency import Reference, check_video, references_for
from .planner import load_series, plan_series, take_plan
from .registry import Registry
from .report import build_report
from .settings import Settings
from .specs import ShotPlan, Verdict
from .workspace import Workspace, atomic_path


class Reporter(Protocol):
    """What the renderer tells its caller (the CLI draws progress bars with it)."""

    def start(self, key: str, description: str, total: int) -> None: ...
    def update(self, key: str, completed: int, description: str | None = None) -> None: ...
    def done(self, key: str) -> None: ...


class _Silent:
    def start(self, key: str, description: str, total: int) -> None: ...
    def update(self, key: str, completed: int, description: str | None = None) -> None: ...
    def done(self, key: str) -> None: ...


@dataclass
class ShotOutcome:
    plan: ShotPlan
    verdict: Verdict
    takes: int
    path: Path | None  # the take used in the episode (None when rejected)
    last_path: Path | None = None  # the last take rendered (shown on the contact sheet when rejected)


@dataclass
class EpisodeOutcome:
    episode_id: str
    path: Path
    duration: float
    used: list[str]
    rejected: list[str]
    contact_sheet: Path | None


@dataclass
class RunOutcome:
    run_id: int
    series: str
    shots: list[ShotOutcome] = field(default_factory=list)
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    report_path: Path | None = None


def write_take(backend: VideoBackend, plan: ShotPlan, path: Path, settings: Settings, reporter: Reporter, key: str) -> int:
    """Generate one take and stream it to ``path`` (temp file + rename). Returns frames written."""
    clip = backend.generate(plan, progress=lambda d, t: reporter.update(key, d))
    with atomic_path(path) as tmp:
        with media.VideoWriter(tmp, clip.width, clip.height, clip.fps, crf=settings.take_crf, preset="veryfast") as w:
            for i, frame in enumerate(clip.frames):
                w.write(frame)
                reporter.update(key, i + 1)
        return w.frames_written


def render_shot(
    plan: ShotPlan, backend: VideoBackend, refs: list[Reference], reg: Registry, run_id: int,
    take_dir: Path, settings: Settings, reporter: Reporter,
) -> ShotOutcome:
    """Render takes of one shot until one is accepted (or trimmed) or the takes run out."""
    last: Verdict | None = None
    for k in range(max(1, settings.max_takes)):
        p = take_plan(plan, k)
        key = f"shot:{plan.shot_id}"
        reporter.start(key, f"{plan.shot_id} take {k + 1}: generating", plan.num_frames)
        path = take_dir / f"take-{k + 1}-seed{p.seed}.mp4"
        n = write_take(backend, p, path, settings, reporter, key)
        reporter.start(key, f"{plan.shot_id} take {k + 1}: checking", n)
        shot_refs = [r for r in refs if r.handle in {c.handle for c in plan.characters}]
        if shot_refs:
            verdict, scores = check_video(path, shot_refs, min_frames=plan.min_frames, settings=settings,
                                          progress=lambda d, t: reporter.update(key, d))
        else:
            verdict, scores = Verdict(decision="accept", reason="no characters planned: nothing to check",
                                      keep_start=0, keep_end=n), []
        reporter.done(key)
        final = verdict.decision in ("accept", "trim") or k == max(1, settings.max_takes) - 1
        decision = verdict.decision if final else "retry"
        reg.record_take(
            {"run_id": run_id, "series": plan.series, "episode_id": plan.episode_id, "shot_id": plan.shot_id,
             "take": k + 1, "seed": p.seed, "backend": plan.backend, "path": str(path.relative_to(reg.workspace.root)) if reg.workspace else str(path),
             "num_frames": n, "fps": plan.fps, "mode": settings.check_mode, "decision": decision,
             "reason": verdict.reason, "keep_start": verdict.keep_start, "keep_end": verdict.keep_end,
             "conditioning": json.dumps(plan.conditioning)},
            [s.model_dump() for s in verdict.summaries],
            [{"frame": s.index, "time": s.time, "handle": s.character, "encoder": s.encoder,
              "similarity": s.similarity, "box": json.dumps(s.box) if s.box else None, "drifted": int(s.drifted)} for s in scores],
        )
        last = verdict
        if verdict.decision in ("accept", "trim"):
            return ShotOutcome(plan, verdict, k + 1, path, path)
    assert last is not None
    rejected = last.model_copy(update={"decision": "reject", "reason": f"{last.reason} (after {k + 1} take(s))"})
    return ShotOutcome(plan, rejected, k + 1, None, path)


def render_series(
    ws: Workspace,
    spec_path: str | Path,
    *,
    episodes: list[str] | None = None,
    settings: Settings | None = None,
    reporter: Reporter | None = None,
    backend: VideoBackend | None = None,
) -> RunOutcome:
    """Render a series (or some of its episodes) into ``renders/<series>/``.

    Args:
        ws: the workspace (characters registry, renders folder).
        spec_path: the series YAML.
        episodes: episode ids to render (default: all).
        backend: an already-built back-end (tests pass tiny ones); default from the spec.
    """
    from .stitch import Segment, stitch_episode

    settings = settings or Settings.load(ws.root)
    reporter = reporter or _Silent()
    # 1. Validate and plan everything before rendering anything
    spec = load_series(spec_path)
    reg = Registry.open(ws)
    plans = plan_series(spec, spec_path, reg, ws, episodes=episodes)
    if backend is None:
        backend = plugins.backend_class(spec.backend)(spec.backend_options)
    refs: list[Reference] = []
    for h in sorted({c.handle for p in plans for c in p.characters}):
        refs += references_for(reg, h, bound=settings.bound)
    out_dir = ws.series_dir(spec.series)
    run_id = reg.start_run(spec.series, str(Path(spec_path).resolve()), spec.backend,
                           {k: v for k, v in settings.__dict__.items() if k != "extra"})
    outcome = RunOutcome(run_id, spec.series)
    try:
        ep_specs = [e for e in spec.episodes if not episodes or e.id in episodes]
        reporter.start("series", f"{spec.series}: {len(plans)} shots", len(plans))
        done = 0
        for ep in ep_specs:
            # 2. Shots: generate, check, retry
            ep_plans = [p for p in plans if p.episode_id == ep.id]
            results: list[ShotOutcome] = []
            for plan in ep_plans:
                shot_refs = refs if plan.bound is None else [
                    Reference(r.handle, r.encoder, r.vectors, r.centroid, plan.bound, "shot override") for r in refs]
                res = render_shot(plan, backend, shot_refs, reg, run_id, out_dir / "takes" / plan.shot_id, settings, reporter)
                results.append(res)
                outcome.shots.append(res)
                done += 1
                reporter.update("series", done)
            # 3. Stitch the accepted takes
            segments = [Segment(path=r.path, start=r.verdict.keep_start, end=r.verdict.keep_end, label=r.plan.shot_id,
                                verdict=r.verdict.decision, ambience=next(sh.ambience for sh in ep.shots if sh.id == r.plan.shot_id))
                        for r in results if r.path is not None]
            ep_path = out_dir / f"{ep.id}.mp4"
            sheet = out_dir / f"{ep.id}.png"
            reporter.start("stitch", f"{ep.id}: stitching", 1)
            info = stitch_episode(segments, ep_path, fps=spec.fps, width=spec.width, height=spec.height,
                                  title=ep.title or ep.id, title_duration=ep.title_duration, transition=ep.transition,
                                  ambience=ep.ambience, seed=spec.seed, crf=settings.crf, preset=settings.preset,
                                  contact_sheet=sheet,
                                  left_out=[Segment(path=r.last_path, label=r.plan.shot_id, verdict="reject", reason=r.verdict.reason)
                                            for r in results if r.path is None and r.last_path is not None])
            reporter.done("stitch")
            used = [r.plan.shot_id for r in results if r.path is not None]
            rejected = [r.plan.shot_id for r in results if r.path is None]
            reg.record_episode({"run_id": run_id, "series": spec.series, "episode_id": ep.id,
                                "path": str(ep_path.relative_to(ws.root)), "duration": float(info.duration),
                                "frames": int(info.frames), "shots_used": json.dumps(used), "shots_rejected": json.dumps(rejected)})
            outcome.episodes.append(EpisodeOutcome(ep.id, ep_path, float(info.duration), used, rejected,
                                                   sheet if sheet.exists() else None))
        reporter.done("series")
        reg.finish_run(run_id, "done")
    except BaseException:
        reg.finish_run(run_id, "failed")
        raise
    # 4. The consistency report beside the episodes
    report = build_report(reg, spec.series)
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    outcome.report_path = out_dir / "report.json"
    reg.close()
    return outcome
