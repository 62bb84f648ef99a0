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
from .continuity import continue_from
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
    mood: str = ""  # the mood preset of the take used


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
    take_dir: Path, settings: Settings, reporter: Reporter, *, takes: int = 1, moods: list[str] | None = None,
    credential=None,
) -> ShotOutcome:
    """Render takes of one shot: ``takes`` of them (seeds derived per take, moods cycled), more while
    none is accepted, up to ``max(takes, settings.max_takes)``; the best-scoring accepted take is used.
    Every take stays in ``take_dir``; with a ``credential`` each is C2PA-signed once its file is final."""
    from .episode import sign_take
    from .finishing import mood_options

    last: Verdict | None = None
    wanted = max(1, takes)
    limit = max(wanted, settings.max_takes, 1)
    accepted: list[tuple[float, int, int, Path, Verdict, str]] = []  # (score, -k, take_id, path, verdict, mood)
    for k in range(limit):
        mood = moods[k % len(moods)] if moods else ""
        p = take_plan(plan, k)
        if mood:
            p = p.model_copy(update={"backend_options": mood_options(mood, plan.backend, p.backend_options)})
        key = f"shot:{plan.shot_id}"
        reporter.start(key, f"{plan.shot_id} take {k + 1}{f' ({mood})' if mood else ''}: generating", plan.num_frames)
        path = take_dir / f"take-{k + 1}-seed{p.seed}{f'-{mood}' if mood else ''}.mp4"
        n = write_take(backend, p, path, settings, reporter, key)
        if credential is not None:
            sign_take(path, p, backend, credential, mood)
        reporter.start(key, f"{plan.shot_id} take {k + 1}: checking", n)
        shot_refs = [r for r in refs if r.handle in {c.handle for c in plan.characters}]
        if shot_refs:
            verdict, scores = check_video(path, shot_refs, min_frames=plan.min_frames, settings=settings,
                                          progress=lambda d, t: reporter.update(key, d))
        else:
            verdict, scores = Verdict(decision="accept", reason="no characters planned: nothing to check",
                                      keep_start=0, keep_end=n), []
        reporter.done(key)
        final = verdict.decision in ("accept", "trim") or (k == limit - 1 and not accepted)
        decision = verdict.decision if final else "retry"
        take_id = reg.record_take(
            {"run_id": run_id, "series": plan.series, "episode_id": plan.episode_id, "shot_id": plan.shot_id,
             "take": k + 1, "seed": p.seed, "backend": plan.backend, "path": str(path.relative_to(reg.workspace.root)) if reg.workspace else str(path),
             "num_frames": n, "fps": plan.fps, "mode": settings.check_mode, "decision": decision,
             "reason": verdict.reason, "keep_start": verdict.keep_start, "keep_end": verdict.keep_end,
             "conditioning": json.dumps(plan.conditioning), "flicker": verdict.flicker,
             "findings": json.dumps(verdict.findings)},
            [{**s.model_dump(), "mean_vector": json.dumps(s.mean_vector) if s.mean_vector else None} for s in verdict.summaries],
            [{"frame": s.index, "time": s.time, "handle": s.character, "encoder": s.encoder,
              "similarity": s.similarity, "box": json.dumps(s.box) if s.box else None, "drifted": int(s.drifted),
              "centroid": s.centroid, "source": s.source} for s in scores],
        )
        if mood:
            reg.db["takes"].update(take_id, {"mood": mood})
        last = verdict
        if verdict.decision in ("accept", "trim"):
            means = [c.mean for c in verdict.summaries if c.mean is not None]
            accepted.append((min(means) if means else 0.0, -k, take_id, path, verdict, mood))
            if k + 1 >= wanted:
                break
    if accepted:
        best = max(accepted, key=lambda a: (a[0], a[1]))
        reg.db["takes"].update(best[2], {"used": 1})
        return ShotOutcome(plan, best[4], k + 1, best[3], path, best[5])
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
    from .episode import ShotForEpisode, assemble, check_files, credential_for

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
    check_files(spec, Path(spec_path), ws)  # LUTs and sound files exist inside the workspace
    credential = credential_for(settings) if settings.sign else None
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
                if plan.continues_from is not None:  # `still: previous`: the predecessor's last accepted frame
                    plan = continue_from(plan, next(r for r in results if r.plan.shot_id == plan.continues_from),
                                         out_dir / "stills")
                shot_refs = refs if plan.bound is None else [
                    Reference(r.handle, r.encoder, r.vectors, r.centroid, plan.bound, "shot override") for r in refs]
                shot_spec = next(sh for sh in ep.shots if sh.id == plan.shot_id)
                res = render_shot(plan, backend, shot_refs, reg, run_id, out_dir / "takes" / plan.shot_id, settings, reporter,
                                  takes=shot_spec.takes, moods=shot_spec.moods, credential=credential)
                results.append(res)
                outcome.shots.append(res)
                done += 1
                reporter.update("series", done)
            # 3. Stitch the accepted takes
            ep_path = out_dir / f"{ep.id}.mp4"
            sheet = out_dir / f"{ep.id}.png"
            reporter.start("stitch", f"{ep.id}: stitching", 1)
            shots = [ShotForEpisode(r.plan.shot_id, r.path, r.verdict.keep_start, r.verdict.keep_end, r.verdict.decision,
                                    r.verdict.reason, r.mood, r.last_path) for r in results]
            info = assemble(spec, ep, Path(spec_path), ws, shots, ep_path, sheet, settings, credential,
                            progress=lambda d, t: reporter.update("stitch", d))
            reporter.done("stitch")
            used = [r.plan.shot_id for r in results if r.path is not None]
            rejected = [r.plan.shot_id for r in results if r.path is None]
            reg.record_episode({"run_id": run_id, "series": spec.series, "episode_id": ep.id,
                                "path": str(ep_path.relative_to(ws.root)), "duration": float(info.duration),
                                "frames": int(info.frames), "shots_used": json.dumps(used), "shots_rejected": json.dumps(rejected),
                                "contact_sheet": str(sheet.relative_to(ws.root)) if sheet.exists() else None,
                                "signed": int(credential is not None and bool(used))})
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
