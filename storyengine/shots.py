"""One shot, start to finish, without touching the registry: generate → cache → check → retry.

``produce_shot`` is what an executor runs (in this process, or on a Ray worker): it reads the
take cache first, writes every new take into it (temp file + rename), checks each take (reusing
a cached verdict when the check inputs are unchanged) and returns a picklable ShotResult. The
driver alone records results in SQLite (:func:`record_shot`), so there is one writer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import media
from .cache import TakeCache, check_key, key_parts, take_key
from .consistency import Reference, check_video
from .planner import take_plan
from .settings import Settings
from .specs import FrameScore, ShotPlan, Verdict
from .workspace import atomic_path

Progress = Callable[[str, int, int, str], None]
"""``progress(shot_id, done, total, stage)``."""


@dataclass(frozen=True)
class RefSpec:
    """A Reference without its encoder object (picklable; rebuilt on the worker)."""

    handle: str
    encoder: str
    encoder_version: str
    vectors: np.ndarray
    centroid: np.ndarray
    bound: float
    bound_source: str

    @classmethod
    def of(cls, r: Reference) -> "RefSpec":
        return cls(r.handle, r.encoder.name, r.encoder.version, r.vectors, r.centroid, r.bound, r.bound_source)

    def build(self, settings: Settings | None = None) -> Reference:
        from . import plugins
        from .errors import EncoderError

        enc = plugins.get_encoder(self.encoder, settings)
        if enc.version != self.encoder_version:
            raise EncoderError(f"encoder {self.encoder!r} here is version {enc.version!r}, but {self.handle!r}'s references "
                               f"are {self.encoder_version!r}: configure the same weights on every worker")
        return Reference(self.handle, enc, self.vectors, self.centroid, self.bound, self.bound_source)


@dataclass(frozen=True)
class ShotContext:
    """Where a shot's files go and how it is checked; the same on the driver and on workers."""

    root: str  # workspace root
    series_dir: str  # renders/<series>
    settings: Settings

    @property
    def cache(self) -> TakeCache:
        return TakeCache(Path(self.series_dir) / "cache")


@dataclass
class TakeResult:
    take: int
    seed: int
    path: str  # absolute path of the take file under takes/<shot>/
    cache_key: str
    num_frames: int
    generated: bool  # False: served from the cache
    checked: bool  # False: verdict reused from the cache
    verdict: Verdict
    scores: list[FrameScore]
    decision: str = ""  # accept / trim / retry / reject as recorded
    mood: str = ""


@dataclass
class ShotResult:
    plan: ShotPlan  # as rendered (a continued shot carries the still it really started from)
    takes: list[TakeResult] = field(default_factory=list)
    verdict: Verdict | None = None
    chosen: int | None = None  # index into takes of the take the episode uses
    started: float = 0.0  # wall-clock seconds (time.time()) when production began and ended
    finished: float = 0.0
    worker: int = 0  # pid of the process that produced it

    @property
    def path(self) -> Path | None:
        return Path(self.takes[self.chosen].path) if self.chosen is not None else None

    @property
    def last_path(self) -> Path | None:
        return Path(self.takes[-1].path) if self.takes else None

    @property
    def mood(self) -> str:
        return self.takes[self.chosen].mood if self.chosen is not None else ""

    @property
    def generated(self) -> int:
        return sum(t.generated for t in self.takes)


def _link(src: Path, dst: Path) -> None:
    """Make ``dst`` name the same file as ``src`` (hard link; copy across file systems), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):
        return
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            import shutil

            shutil.copyfile(src, tmp)


def write_take(backend: Any, plan: ShotPlan, path: Path, settings: Settings, progress: Callable[[int], None]) -> int:
    """Generate one take and stream it to ``path`` (temp file + rename). Returns frames written."""
    clip = backend.generate(plan, progress=lambda d, t: progress(d))
    with atomic_path(path) as tmp:
        with media.VideoWriter(tmp, clip.width, clip.height, clip.fps, crf=settings.take_crf, preset="veryfast") as w:
            for i, frame in enumerate(clip.frames):
                w.write(frame)
                progress(i + 1)
        return w.frames_written


def _softened(backend: Any, p: ShotPlan, rejected: int) -> tuple[ShotPlan, str]:
    """``p`` with the back-end's smaller motion for a retry after ``rejected`` rejected takes, and its note."""
    if not rejected or not hasattr(backend, "soften"):
        return p, ""
    options, note = backend.soften(dict(p.backend_options), rejected)
    return p.model_copy(update={"backend_options": options}), note


def produce_shot(plan: ShotPlan, backend: Any, refs: list[Reference], ctx: ShotContext,
                 progress: Progress | None = None) -> ShotResult:
    """Render the takes of one shot and choose the one the episode uses.

    ``plan.takes`` takes are rendered (seeds derived per take, ``plan.moods`` cycled); while none
    is accepted, more follow up to ``max(plan.takes, settings.max_takes)``. The best-scoring
    accepted (or trimmed) take is chosen. Takes come from the cache when their frame key is known
    (a new take is signed before it enters the cache); verdicts come from the cache when the
    check key (frames + references + check settings) is known.
    """
    from .finishing import mood_options

    settings = ctx.settings
    cache = ctx.cache
    note = progress or (lambda *a: None)
    take_dir = Path(ctx.series_dir) / "takes" / plan.shot_id
    shot_refs = [r for r in refs if r.handle in {c.handle for c in plan.characters}]
    if plan.bound is not None:
        shot_refs = [Reference(r.handle, r.encoder, r.vectors, r.centroid, plan.bound, "shot override") for r in shot_refs]
    credential = None
    result = ShotResult(plan, started=time.time(), worker=os.getpid())
    wanted = max(1, plan.takes)
    limit = max(wanted, settings.max_takes, 1)
    accepted: list[tuple[float, int]] = []  # (score, -k) per accepted take
    for k in range(limit):
        mood = plan.moods[k % len(plan.moods)] if plan.moods else ""
        p = take_plan(plan, k)
        if mood:
            p = p.model_copy(update={"backend_options": mood_options(mood, plan.backend, p.backend_options)})
        # identity guard: after a rejected take, a back-end that can moves less (its note reaches the record)
        p, soft_note = _softened(backend, p, sum(t.verdict.decision not in ("accept", "trim") for t in result.takes))
        label = f"take {k + 1}{f' ({mood})' if mood else ''}"
        parts = key_parts(p, backend, take_crf=settings.take_crf)
        key = take_key(p, backend, take_crf=settings.take_crf)
        entry = cache.get(key)
        generated = entry is None
        if entry is None:
            note(plan.shot_id, 0, p.num_frames, f"{label}: generating")
            target = cache.path_for(key)
            n = write_take(backend, p, target, settings, lambda d: note(plan.shot_id, d, p.num_frames, f"{label}: generating"))
            if settings.sign:
                from .episode import credential_for, sign_take

                credential = credential or credential_for(settings)
                sign_take(target, p, backend, credential, mood)
            entry = cache.put(key, target, {"frames": n, "shot": plan.shot_id, "take": k + 1, "seed": p.seed,
                                            "backend": plan.backend, "mood": mood, "signed": bool(settings.sign),
                                            "parts": parts})
        n = int(entry.meta["frames"])
        path = take_dir / f"take-{k + 1}-seed{p.seed}{f'-{mood}' if mood else ''}.mp4"
        _link(entry.path, path)
        ck = check_key(key, shot_refs, settings, p)
        stored = entry.verdict(ck)
        if stored is not None:
            verdict = Verdict.model_validate(stored["verdict"])
            scores = [FrameScore.model_validate(x) for x in stored["scores"]]
        elif shot_refs:
            note(plan.shot_id, 0, n, f"{label}: checking")
            verdict, scores = check_video(path, shot_refs, min_frames=p.min_frames, settings=settings,
                                          progress=lambda d, t: note(plan.shot_id, d, n, f"{label}: checking"))
        else:
            verdict, scores = Verdict(decision="accept", reason="no characters planned: nothing to check",
                                      keep_start=0, keep_end=n), []
        if stored is None:
            cache.add_check(entry, ck, {"verdict": verdict.model_dump(mode="json"),
                                        "scores": [x.model_dump(mode="json") for x in scores]})
        if soft_note:
            verdict = verdict.model_copy(update={"reason": f"{verdict.reason} ({soft_note})"})
        ok = verdict.decision in ("accept", "trim")
        final = ok or (k == limit - 1 and not accepted)
        result.takes.append(TakeResult(k + 1, p.seed, str(path), key, n, generated, stored is None, verdict, scores,
                                       decision=verdict.decision if final else "retry", mood=mood))
        if ok:
            means = [c.mean for c in verdict.summaries if c.mean is not None]
            accepted.append((min(means) if means else 0.0, -k))
            if k + 1 >= wanted:
                break
    if accepted:
        best = max(range(len(accepted)), key=lambda i: accepted[i])
        k_best = -accepted[best][1]
        result.chosen = k_best
        result.verdict = result.takes[k_best].verdict
        result.finished = time.time()
        return result
    last = result.takes[-1].verdict
    result.verdict = last.model_copy(update={"decision": "reject", "reason": f"{last.reason} (after {len(result.takes)} take(s))"})
    result.finished = time.time()
    return result


def record_shot(reg: Any, run_id: int, res: ShotResult, settings: Settings) -> None:
    """Store every take of a shot with its verdict, summaries and frame scores (driver only)."""
    root = reg.workspace.root if reg.workspace else None
    for i, t in enumerate(res.takes):
        rel = str(Path(t.path).relative_to(root)) if root else t.path
        v = t.verdict
        reg.record_take(
            {"run_id": run_id, "series": res.plan.series, "episode_id": res.plan.episode_id, "shot_id": res.plan.shot_id,
             "take": t.take, "seed": t.seed, "backend": res.plan.backend, "path": rel,
             "num_frames": t.num_frames, "fps": res.plan.fps, "mode": v.mode or settings.check_mode, "decision": t.decision,
             "reason": v.reason, "keep_start": v.keep_start, "keep_end": v.keep_end,
             "conditioning": json.dumps(res.plan.conditioning), "flicker": v.flicker,
             "findings": json.dumps(v.findings), "mood": t.mood or None, "used": int(i == res.chosen),
             "cache_key": t.cache_key, "generated": int(t.generated)},
            [{**c.model_dump(), "mean_vector": json.dumps(c.mean_vector) if c.mean_vector else None} for c in v.summaries],
            [{"frame": s.index, "time": s.time, "handle": s.character, "encoder": s.encoder,
              "similarity": s.similarity, "box": json.dumps(s.box) if s.box else None, "drifted": int(s.drifted),
              "centroid": s.centroid, "source": s.source} for s in t.scores],
        )
