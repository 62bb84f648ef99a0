"""One shot, start to finish, without touching the registry: generate → cache → check → retry.

``produce_shot`` is what an executor runs (in this process, or on a Ray worker): it calls
:func:`produce_take` for take after take until one passes, and returns a picklable ShotResult
whose chosen take is the best-scoring one that passed. A take is read from the cache, or
generated, signed (``provenance.sign_take``) and written into it (temp file + rename), then
checked (reusing a cached verdict when the check inputs are unchanged). The driver alone records
results in SQLite (:func:`record_shot`), so there is one writer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import anonymize, decisions, media
from .cache import CachedTake, TakeCache, check_key, key_parts, take_key
from .consistency import Reference, check
from .planner import take_plan
from .provenance import TakeSigner
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
    cohort: tuple = ()  # ((name, vectors), ...): the lookalike cohort (storyengine.cohort)

    @classmethod
    def of(cls, r: Reference) -> "RefSpec":
        return cls(r.handle, r.encoder.name, r.encoder.version, r.vectors, r.centroid, r.bound, r.bound_source,
                   tuple(r.cohort))

    def build(self, settings: Settings) -> Reference:
        from . import plugins
        from .errors import EncoderError

        enc = plugins.get_encoder(self.encoder, settings)
        if enc.version != self.encoder_version:
            raise EncoderError(f"encoder {self.encoder!r} here is version {enc.version!r}, but {self.handle!r}'s references "
                               f"are {self.encoder_version!r}: configure the same weights on every worker")
        return Reference(self.handle, enc, self.vectors, self.centroid, self.bound, self.bound_source, list(self.cohort))


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
    human: dict | None = None  # the creator's decision honoured for this take (storyengine.decisions)
    anonymized: dict[str, Any] | None = None  # AnonymizeReport.to_dict() when the shot anonymises bystanders

    @property
    def accepted(self) -> bool:
        """The checker accepted or trimmed it: the episode may use it."""
        return self.verdict.decision in ("accept", "trim")

    @property
    def score(self) -> float:
        """How well it holds identity: the lowest per-character mean similarity (0 when nothing was scored)."""
        means = [c.mean for c in self.verdict.summaries if c.mean is not None]
        return min(means) if means else 0.0


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


def write_take(backend: Any, plan: ShotPlan, path: Path, settings: Settings, progress: Callable[[int], None],
               anonymizer: Any = None) -> int:
    """Generate one take and stream it to ``path`` (temp file + rename). Returns frames written.

    With an ``anonymizer`` (:class:`storyengine.anonymize.Anonymizer`) the frames pass through it on
    their way to the file: bystanders are anonymised before anything else sees the take.
    """
    clip = backend.generate(plan, progress=lambda d, t: progress(d))
    frames = anonymizer.run(clip.frames) if anonymizer is not None else clip.frames
    with atomic_path(path) as tmp:
        with media.VideoWriter(tmp, clip.width, clip.height, clip.fps, crf=settings.take_crf, preset="veryfast") as w:
            for i, frame in enumerate(frames):
                w.write(frame)
                progress(i + 1)
        return w.frames_written


def _shot_refs(plan: ShotPlan, refs: list[Reference]) -> list[Reference]:
    """The references of the characters planned in this shot (with the shot's bound override)."""
    mine = [r for r in refs if r.handle in {c.handle for c in plan.characters}]
    if plan.anonymize == "all-but":  # characters left out of all-but are anonymised: nothing of theirs to check
        mine = [r for r in mine if r.handle in plan.anonymize_keep]
    if plan.bound is not None:
        mine = [Reference(r.handle, r.encoder, r.vectors, r.centroid, plan.bound, "shot override", r.cohort) for r in mine]
    return mine


def take_mood(plan: ShotPlan, k: int) -> str:
    """The mood of take ``k`` (0 = first): ``plan.moods`` cycled, or none."""
    return plan.moods[k % len(plan.moods)] if plan.moods else ""


def mood_take_plan(plan: ShotPlan, k: int, mood: str) -> ShotPlan:
    """The plan of take ``k`` (its derived seed) with the back-end options of its mood."""
    from .finishing import mood_options

    p = take_plan(plan, k)
    if mood:
        p = p.model_copy(update={"backend_options": mood_options(mood, plan.backend, p.backend_options)})
    return p


@dataclass
class TakeJob:
    """What every take of one shot shares: the back-end, the references, where files go, progress."""

    plan: ShotPlan
    backend: Any
    refs: list[Reference]  # this shot's references only
    ctx: ShotContext
    note: Progress
    signer: TakeSigner | None = None  # signs each new take before it enters the cache


def _cached_take(job: TakeJob, p: ShotPlan, mood: str, label: str) -> tuple[CachedTake, bool]:
    """Take ``p`` from the cache, or generate, sign and cache it; (entry, generated)."""
    settings, cache = job.ctx.settings, job.ctx.cache
    anon_key = anonymize.key_inputs(p, settings)
    key = take_key_of(p, job.backend, settings)
    entry = cache.get(key, drop=True)  # a damaged entry is reported, dropped and generated again
    if entry is not None:
        return entry, False
    shot_id = job.plan.shot_id
    job.note(shot_id, 0, p.num_frames, f"{label}: generating")
    target = cache.path_for(key)
    anon = anonymize.for_take(p, job.refs, settings)
    n = write_take(job.backend, p, target, settings, lambda d: job.note(shot_id, d, p.num_frames, f"{label}: generating"),
                   anon)
    report = anon.report.to_dict() if anon is not None else None
    if job.signer is not None:
        job.signer(target, p, mood, anonymized=report)
    entry = cache.put(key, target, {"frames": n, "shot": shot_id, "take": p.take + 1, "seed": p.seed,
                                    "backend": job.plan.backend, "mood": mood, "signed": job.signer is not None,
                                    "anonymized": report,
                                    "parts": key_parts(p, job.backend, take_crf=settings.take_crf, anonymize=anon_key)})
    return entry, True


def _checked(job: TakeJob, entry: CachedTake, path: Path, p: ShotPlan, label: str) -> tuple[Verdict, list[FrameScore], bool]:
    """The take's verdict and frame scores: from the cache when the check key is known; (verdict, scores, checked)."""
    ck = check_key(entry.key, job.refs, job.ctx.settings, p)
    stored = entry.verdict(ck)
    if stored is not None:
        try:
            return (Verdict.model_validate(stored["verdict"]),
                    [FrameScore.model_validate(x) for x in stored["scores"]], False)
        except (KeyError, TypeError, ValueError):  # a damaged verdict: check the take again
            pass
    n = int(entry.meta["frames"])
    if job.refs:
        job.note(job.plan.shot_id, 0, n, f"{label}: checking")
        res = check(path, job.refs, min_frames=p.min_frames, settings=job.ctx.settings,
                    progress=lambda d, t: job.note(job.plan.shot_id, d, n, f"{label}: checking"))
        verdict, scores = anonymize.checked_with(res, entry.meta.get("anonymized"), job.refs, p.min_frames, job.ctx.settings)
    else:
        anon = entry.meta.get("anonymized")
        verdict, scores = Verdict(decision="accept", reason="no characters planned: nothing to check",
                                  keep_start=0, keep_end=n, findings=[anon["summary"]] if anon else []), []
    job.ctx.cache.add_check(entry, ck, {"verdict": verdict.model_dump(mode="json"),
                                        "scores": [x.model_dump(mode="json") for x in scores]})
    return verdict, scores, True


def produce_take(job: TakeJob, k: int, *, pinned: int | None = None) -> TakeResult | None:
    """Take ``k`` (0 = first) of the shot: cached or generated (and signed), linked under ``takes/<shot>/``, checked.

    The result's ``decision`` is the checker's, overruled by the creator's decision on this take
    (``storyengine takes accept|reject|use``) if any; the caller marks takes it retries as ``retry``.
    With a ``pinned`` take (1-based), the shot's other takes are listed when cached and never
    generated: None for such a take that is not in the cache.
    """
    p, mood, soft_note = take_inputs(job.plan, k, job.backend)
    if pinned is not None and k != pinned - 1:
        if job.ctx.cache.get(take_key_of(p, job.backend, job.ctx.settings)) is None:
            return None
    label = f"take {k + 1}{f' ({mood})' if mood else ''}"
    entry, generated = _cached_take(job, p, mood, label)
    path = Path(job.ctx.series_dir) / "takes" / job.plan.shot_id / f"take-{k + 1}-seed{p.seed}{f'-{mood}' if mood else ''}.mp4"
    _link(entry.path, path)
    verdict, scores, checked = _checked(job, entry, path, p, label)
    n = int(entry.meta["frames"])
    if soft_note:  # the identity guard's reduction, on the take's record and in the report
        verdict = verdict.model_copy(update={"reason": f"{verdict.reason} ({soft_note})"})
    # the creator's decision on this take, if any, overrules the checker (the cache keeps the checker's verdict)
    human, stale = decisions.for_take(job.plan, k + 1, entry.key)
    if stale:
        verdict = verdict.model_copy(update={"findings": [*verdict.findings, stale]})
    if human:
        verdict = overrule(verdict, human, n)
    return TakeResult(k + 1, p.seed, str(path), entry.key, n, generated, checked, verdict, scores,
                      decision=verdict.decision, mood=mood, human=human, anonymized=entry.meta.get("anonymized"))


def _pinned_take(plan: ShotPlan, backend: Any, settings: Settings) -> tuple[int | None, str | None]:
    """The take the creator pinned (spec ``take: N`` or ``takes use``; 1-based), and a note when a recorded
    ``use`` no longer applies because it was made on other frames (the shot's inputs changed since)."""
    pin = plan.pinned_take
    use = next((d for d in plan.take_decisions if d["action"] == "use" and d["take"] == pin and d.get("cache_key")), None)
    if use is None:
        return pin, None
    p = take_inputs(plan, pin - 1, backend)[0]
    if take_key_of(p, backend, settings) == use["cache_key"]:
        return pin, None
    return None, (f"the creator's `use` of take {pin} ({use.get('at') or 'earlier'}) was made on other frames "
                  "(the shot's inputs changed since): not applied")


def _produce_pinned(job: TakeJob, result: ShotResult, pin: int, limit: int) -> None:
    """The pinned take is the one used; the shot's other cached takes are listed as the checker (or creator) saw them."""
    for k in range(max(limit, pin)):
        take = produce_take(job, k, pinned=pin)
        if take is None:
            continue
        if k == pin - 1:
            result.chosen = len(result.takes)
        result.takes.append(take)
    result.verdict = result.takes[result.chosen].verdict


def _produce_until_accepted(job: TakeJob, result: ShotResult, wanted: int, limit: int) -> None:
    """Takes until the ``wanted`` ones are done and one passed (at most ``limit``); the best-scoring passed take is used."""
    for k in range(limit):
        result.takes.append(produce_take(job, k))
        if k + 1 >= wanted and any(t.accepted for t in result.takes):
            break  # a rejected take after an accepted one is not retried (so a creator's `reject` generates nothing)
    for t in result.takes[:-1]:
        if not t.accepted:
            t.decision = "retry"  # every take that did not pass and was followed by another
    accepted = [t for t in result.takes if t.accepted]
    if accepted:
        best = max(accepted, key=lambda t: t.score)  # max keeps the first of equals: the earliest take
        result.chosen = result.takes.index(best)
        result.verdict = best.verdict
        return
    last = result.takes[-1].verdict
    result.verdict = last.model_copy(update={"decision": "reject", "reason": f"{last.reason} (after {len(result.takes)} take(s))"})


def _softened(backend: Any, p: ShotPlan, retry: int) -> tuple[ShotPlan, str]:
    """``p`` with the back-end's smaller motion for its ``retry``-th retry (0: not a retry), and its note."""
    if retry <= 0 or not hasattr(backend, "soften"):
        return p, ""
    options, note = backend.soften(dict(p.backend_options), retry)
    return p.model_copy(update={"backend_options": options}), note


def take_key_of(p: ShotPlan, backend: Any, settings: Settings) -> str:
    """The cache key of take plan ``p`` (see :func:`take_inputs`): its frames' inputs, anonymisation included."""
    return take_key(p, backend, take_crf=settings.take_crf, anonymize=anonymize.key_inputs(p, settings))


def take_inputs(plan: ShotPlan, k: int, backend: Any) -> tuple[ShotPlan, str, str]:
    """Take ``k`` (0 = first) as it is generated and keyed: (plan, mood, note).

    Its derived seed and its mood's back-end options; and, for a take past the ``plan.takes`` asked
    for (which only a rejection brings about), the back-end's smaller motion (the identity guard:
    ``backend.soften``), with a note saying what was reduced. A function of ``k`` alone, so a
    pinned take and ``render --dry-run`` find the same cache key.
    """
    mood = take_mood(plan, k)
    p, note = _softened(backend, mood_take_plan(plan, k, mood), k + 1 - max(1, plan.takes))
    return p, mood, note


def produce_shot(plan: ShotPlan, backend: Any, refs: list[Reference], ctx: ShotContext,
                 progress: Progress | None = None) -> ShotResult:
    """Render the takes of one shot and choose the one the episode uses.

    ``plan.takes`` takes are rendered (seeds derived per take, ``plan.moods`` cycled); while none
    is accepted, more follow up to ``max(plan.takes, settings.max_takes)``. The accepted (or
    trimmed) take with the best score is chosen, the earliest on a tie. Takes come from the cache
    when their frame key is known (a new take is signed before it enters the cache); verdicts come
    from the cache when the check key (frames + references + check settings) is known. A take the
    creator pinned (``plan.pinned_take``) is the one used, whatever else is cached.
    """
    settings = ctx.settings
    job = TakeJob(plan, backend, _shot_refs(plan, refs), ctx, progress or (lambda *a: None),
                  TakeSigner(backend, settings) if settings.sign else None)
    result = ShotResult(plan, started=time.time(), worker=os.getpid())
    wanted = max(1, plan.takes)
    limit = max(wanted, settings.max_takes, 1)
    pin, stale_use = _pinned_take(plan, backend, settings)
    if pin is not None:
        _produce_pinned(job, result, pin, limit)
    else:
        _produce_until_accepted(job, result, wanted, limit)
    if stale_use:  # said on the take the episode uses (recorded with it) and on the shot's verdict
        if result.chosen is not None:
            t = result.takes[result.chosen]
            t.verdict = t.verdict.model_copy(update={"findings": [*t.verdict.findings, stale_use]})
        result.verdict = result.verdict.model_copy(update={"findings": [*result.verdict.findings, stale_use]})
    result.finished = time.time()
    return result


def overrule(verdict: Verdict, human: dict, n: int) -> Verdict:
    """The checker's verdict on a take after the creator's decision (use / accept / reject), saying both."""
    from .decisions import summary

    checker = f"checker: {verdict.decision} — {verdict.reason}"
    if human["action"] == "reject":
        return verdict.model_copy(update={"decision": "reject", "keep_start": 0, "keep_end": 0,
                                          "reason": f"rejected by the creator ({summary(human)}); {checker}"})
    if human["action"] == "use" and verdict.decision in ("accept", "trim"):
        return verdict.model_copy(update={"reason": f"used by the creator ({summary(human)}); {checker}"})
    word = "used" if human["action"] == "use" else "accepted"
    return verdict.model_copy(update={"decision": "accept", "keep_start": 0, "keep_end": n,
                                      "reason": f"{word} by the creator ({summary(human)}); {checker}"})


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
             "cache_key": t.cache_key, "generated": int(t.generated),
             "human": json.dumps(t.human) if t.human else None},
            [{**c.model_dump(), "mean_vector": json.dumps(c.mean_vector) if c.mean_vector else None} for c in v.summaries],
            [{"frame": s.index, "time": s.time, "handle": s.character, "encoder": s.encoder,
              "similarity": s.similarity, "box": json.dumps(s.box) if s.box else None, "drifted": int(s.drifted),
              "centroid": s.centroid, "source": s.source} for s in t.scores],
        )
