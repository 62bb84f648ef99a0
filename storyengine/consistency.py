"""Frames + characters → per-frame similarity → Verdict (accept / trim / reject; the renderer turns reject into retry).

For each frame and each encoder the characters use: find faces (or subjects), **assign**
detections to the planned characters (the largest face for a lone character in sampled mode,
otherwise Hungarian assignment on similarity, so two characters are never scored on the same
face), and score each character against its registered vectors (best reference, and centroid).
A character not found in a frame is *unknown* (similarity None), never *drifted*.

Two modes:

* ``sampled`` — the protocol identity papers use: 16 evenly spaced frames, full detection on
  each, the largest/assigned face, similarity clamped at 0, frames without a face skipped;
* ``full`` — every frame (``check_stride``): full detection every ``detect_stride`` frames,
  faces tracked in between (:mod:`storyengine.tracking`), a vector reused while the aligned face
  chip matches the last embedded one (fresh at least every 16 frames), the remaining embeddings
  computed in batches of 8, and observations cached per (video sha256, encoder, mode, strides) in the registry.

Before a verdict (:func:`check`, issue 15): a drifted score that came from a tracked box or a
reused vector is re-detected and re-embedded from scratch (:func:`reverify`; a dip that clears is
noise, logged as a finding); each face is also compared with the character's cohort
(:mod:`storyengine.cohort`: a face at least as close to someone else is a lookalike, drifted);
drift is a run of at least :func:`min_drift_frames` frames; and :func:`decide` keeps the longest
clean range (head, tail or middle) when it is long enough, else rejects.

Temporal signals (VBench-style): per character, *subject consistency* (each frame's embedding
against the first and the previous scored frame, cosine, averaged); per clip, *flicker* (mean
absolute difference of consecutive frames, 0–1). A run of unknown frames longer than
``unknown_run_limit`` seconds is reported as its own finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from . import media, plugins
from .encoders.base import Encoder, l2n
from .errors import RegistryError, StoryEngineError
from .hashing import file_sha256
from .registry import Registry
from .settings import Settings
from .specs import CharacterSummary, FrameScore, Verdict
from .tracking import FaceTracker, FrameObserver, Observation, WindowObserver, can_track

SAMPLED_FRAMES = 16
MODES = ("full", "sampled")
CACHE_VERSION = 3  # 2: aligned-chip reuse and batched embeddings in full mode; 3: re-verified observations, cohort


@dataclass
class Reference:
    """One character's identity under one encoder, and the bound a frame must reach."""

    handle: str
    encoder: Encoder
    vectors: np.ndarray  # (n, d), L2-normalised
    centroid: np.ndarray
    bound: float
    bound_source: str
    # other identities under the same encoder (the series' other characters, the background set of
    # :mod:`storyengine.cohort`): (name, (n, d) L2-normalised vectors). Empty: no lookalike rule.
    cohort: list[tuple[str, np.ndarray]] = field(default_factory=list)

    def similarity(self, v: np.ndarray) -> float:
        return float(np.max(self.vectors @ l2n(v)))

    def nearest_other(self, v: np.ndarray) -> tuple[str, float] | None:
        """The cohort identity most similar to ``v`` and its similarity (best of its vectors), or None."""
        if not self.cohort:
            return None
        u = l2n(v)
        return max(((name, float(np.max(vecs @ u))) for name, vecs in self.cohort), key=lambda t: t[1])

    def judge(self, v: np.ndarray) -> tuple[bool, str | None]:
        """(drifted, lookalike) for one face vector: below the bound, or at least as close to a cohort identity
        as to the character (the nearest-identity rule; ``lookalike`` names who). The one rule ``check`` and
        ``scripts/eval_checker.py`` both apply."""
        s = self.similarity(v)
        near = self.nearest_other(v)
        look = near[0] if near is not None and near[1] >= s else None
        return s < self.bound or look is not None, look

    def centroid_similarity(self, v: np.ndarray) -> float:
        return float(self.centroid @ l2n(v))


def derive_bound(encoder: Encoder, vectors: np.ndarray) -> tuple[float, str]:
    """The acceptance bound from the encoder's same/different gap and the character's own spread.

    Start at the encoder's same-identity bound; when the character's own photos are further apart
    than that (a wide range of looks), relax to just below their least similar pair, but never
    below the midpoint between same and different identities.
    """
    floor = (encoder.same_bound + encoder.different_mean) / 2.0
    if len(vectors) < 2:
        return encoder.same_bound, f"{encoder.name} same-identity bound (1 photo)"
    sims = vectors @ vectors.T
    own_min = float(sims[np.triu_indices(len(vectors), 1)].min())
    bound = max(floor, min(encoder.same_bound, own_min - 0.02))
    return bound, f"{encoder.name}: same bound {encoder.same_bound:.2f}, own photos' min similarity {own_min:.2f}"


def references_for(reg: Registry, handle: str, *, bound: float | None = None,
                   settings: Settings | None = None) -> list[Reference]:
    """Every installed encoder the character has vectors for (same name and version), with its bound.

    ``settings`` picks each encoder's weights (so the version its vectors must match); by default
    the workspace's own (``storyengine.toml``, then ``STORYENGINE_*``). ``bound`` (settings or shot
    spec) overrides the derived bound. When the registry keeps per-character identity statistics
    (``Registry.identity``), their bound is used. Vectors of an encoder not installed here, or of
    another version of it, are never compared; when no encoder is left, the RegistryError says why
    for each one.
    """
    reg.character(handle)  # names the handle when unknown
    if settings is None:
        settings = Settings.load(reg.workspace.root) if reg.workspace is not None else Settings.load()
    refs, skipped = [], []
    for enc_name, version in reg.encoders_of(handle):
        try:
            enc = plugins.get_encoder(enc_name, settings)
        except Exception as e:
            skipped.append(f"{enc_name} {version}: not usable here ({e})")
            continue
        if enc.version != version:
            skipped.append(f"{enc_name} {version}: the configured {enc_name} is version {enc.version}")
            continue
        vecs = np.stack([l2n(v.vector) for v in reg.vectors(handle, enc_name) if v.encoder_version == version])
        b, src = _stored_bound(reg, handle, enc) or derive_bound(enc, vecs)
        if bound is not None:
            b, src = bound, "override"
        refs.append(Reference(handle, enc, vecs, l2n(vecs.mean(axis=0)), float(b), src))
    if not refs:
        why = f": {'; '.join(skipped)}" if skipped else ""
        raise RegistryError(f"character {handle!r} has no vectors for any installed encoder{why}")
    return refs


def _stored_bound(reg: Registry, handle: str, enc: Encoder) -> tuple[float, str] | None:
    """The bound the registry's identity statistics keep for this encoder version, if any."""
    for r in reg.identity(handle, enc.name):
        if r["encoder_version"] == enc.version and r["bound"] is not None:
            return float(r["bound"]), str(r["bound_source"] or "registry identity statistics")
    return None


def sample_indices(num_frames: int, mode: str, stride: int = 1) -> list[int]:
    """Frame indices scored: 16 evenly spaced (sampled) or every ``stride``-th frame (full)."""
    if mode not in MODES:
        raise StoryEngineError(f"unknown check mode {mode!r}; use one of: {', '.join(MODES)}")
    if num_frames <= 0:
        return []
    if mode == "sampled":
        n = min(SAMPLED_FRAMES, num_frames)
        return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, n)})
    return list(range(0, num_frames, max(1, stride)))


# ------------------------------------------------------------------ scoring observations
def _assign(rs: list[Reference], obs: list[Observation], largest: bool) -> dict[str, tuple[float, Observation]]:
    """Detections → characters: one-to-one, maximising total similarity (or the largest face for one character)."""
    if not obs:
        return {}
    if largest and len(rs) == 1:
        o = max(obs, key=lambda o: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
        return {rs[0].handle: (rs[0].similarity(o.vector), o)}
    from scipy.optimize import linear_sum_assignment

    sim = np.array([[r.similarity(o.vector) for o in obs] for r in rs])
    rows, cols = linear_sum_assignment(-sim)
    return {rs[i].handle: (float(sim[i, j]), obs[j]) for i, j in zip(rows, cols)}


def _score(index: int, time: float, rs: list[Reference], obs: list[Observation], mode: str) -> list[tuple[FrameScore, np.ndarray | None]]:
    assigned = _assign(rs, obs, largest=(mode == "sampled"))
    out = []
    for r in rs:
        if r.handle not in assigned:
            out.append((FrameScore(index=index, time=round(time, 4), character=r.handle, encoder=r.encoder.name,
                                   similarity=None, drifted=False), None))
            continue
        s, o = assigned[r.handle]
        c = r.centroid_similarity(o.vector)
        # below the bound, or at least as close to someone in the cohort as to the character (a lookalike)
        drifted, look = r.judge(o.vector)
        if mode == "sampled":
            s, c = max(0.0, s), max(0.0, c)
        out.append((FrameScore(index=index, time=round(time, 4), character=r.handle, encoder=r.encoder.name,
                               similarity=round(s, 5), centroid=round(c, 5), box=tuple(int(v) for v in o.box),
                               drifted=drifted, lookalike=look,
                               source=o.source if mode == "full" else "detected"), o.vector))
    return out


def _by_encoder(refs: list[Reference]) -> dict[str, list[Reference]]:
    groups: dict[str, list[Reference]] = {}
    for r in refs:
        groups.setdefault(r.encoder.key(), []).append(r)
    return groups


@dataclass
class ScoreRun:
    """Everything one pass over a clip produced."""

    scores: list[FrameScore]
    vectors: dict[tuple[str, str, int], np.ndarray]  # (handle, encoder, frame) → assigned vector
    flicker: float | None
    frames_decoded: int
    stats: dict[str, int] = field(default_factory=dict)


def observe_frames(
    frames: Iterable[np.ndarray], encoders: list[Encoder], wanted: set[int], *, mode: str, detect_stride: int,
    progress: Callable[[int, int], None] | None = None, total: int = 0,
) -> tuple[dict[str, dict[int, list[Observation]]], float | None, int, dict[str, int]]:
    """One decode pass: observations per encoder key and wanted frame, and the clip's flicker."""
    observers: dict[str, Any] = {}
    for enc in encoders:
        if mode == "full" and can_track(enc):
            observers[enc.key()] = FaceTracker(enc, detect_stride=max(1, detect_stride))
        elif mode == "full" and callable(getattr(enc, "windows", None)):
            observers[enc.key()] = WindowObserver(enc)
        elif mode == "full":
            observers[enc.key()] = FrameObserver(enc)
    obs: dict[str, dict[int, list[Observation]]] = {e.key(): {} for e in encoders}
    prev_small: np.ndarray | None = None
    diffs: list[float] = []
    n = 0
    for i, frame in enumerate(frames):
        n = i + 1
        small = _small(frame)
        if prev_small is not None and prev_small.shape == small.shape:
            diffs.append(float(np.abs(small - prev_small).mean()) / 255.0)
        prev_small = small
        if i in wanted:
            for enc in encoders:
                if mode == "full":
                    obs[enc.key()][i] = observers[enc.key()].observe(frame)
                else:
                    obs[enc.key()][i] = [Observation(tuple(int(v) for v in d.box), d.vector, "detected") for d in enc.embed(frame)]
        if progress:
            progress(i + 1, total)
    for o in observers.values():
        o.flush()  # the last, partial batch of embeddings
    stats: dict[str, int] = {}
    for o in observers.values():
        for k, v in o.stats.items():
            stats[k] = stats.get(k, 0) + v
    return obs, (round(float(np.mean(diffs)), 5) if diffs else None), n, stats


def _small(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if w > 320:
        frame = cv2.resize(frame, (320, max(1, round(320 * h / w))), interpolation=cv2.INTER_AREA)
    return frame.astype(np.float32)


def score_observations(obs: dict[str, dict[int, list[Observation]]], refs: list[Reference], *, fps: float, mode: str
                       ) -> tuple[list[FrameScore], dict[tuple[str, str, int], np.ndarray]]:
    scores: list[FrameScore] = []
    vectors: dict[tuple[str, str, int], np.ndarray] = {}
    for key, rs in _by_encoder(refs).items():
        for i in sorted(obs.get(key, {})):
            for fs, v in _score(i, i / fps, rs, obs[key][i], mode):
                scores.append(fs)
                if v is not None:
                    vectors[(fs.character, fs.encoder, i)] = v
    scores.sort(key=lambda s: (s.index, s.character, s.encoder))
    return scores, vectors


def score_frames(
    frames: Iterable[np.ndarray],
    refs: list[Reference],
    *,
    fps: float,
    num_frames: int,
    mode: str = "full",
    stride: int = 1,
    detect_stride: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreRun:
    """Stream frames once; score the selected ones for every reference; measure flicker."""
    wanted = set(sample_indices(num_frames, mode, stride))
    encoders = [rs[0].encoder for rs in _by_encoder(refs).values()]
    obs, flicker, n, stats = observe_frames(frames, encoders, wanted, mode=mode, detect_stride=detect_stride,
                                            progress=progress, total=num_frames)
    scores, vectors = score_observations(obs, refs, fps=fps, mode=mode)
    return ScoreRun(scores, vectors, flicker, n, stats)


# ------------------------------------------------------------------ summaries and verdicts
def subject_consistency(vectors: list[np.ndarray]) -> float | None:
    """VBench's subject consistency on identity vectors: mean over frames 2.. of (cos to first + cos to previous) / 2."""
    if len(vectors) < 2:
        return None
    v = np.stack([l2n(x) for x in vectors])
    vals = [(float(v[k] @ v[0]) + float(v[k] @ v[k - 1])) / 2.0 for k in range(1, len(v))]
    return round(float(np.mean(vals)), 4)


def summarise(scores: list[FrameScore], refs: list[Reference], vectors: dict[tuple[str, str, int], np.ndarray] | None = None,
              mode: str | None = None) -> list[CharacterSummary]:
    out = []
    for r in refs:
        mine = [s for s in scores if s.character == r.handle and s.encoder == r.encoder.name]
        sims = np.array([s.similarity for s in mine if s.similarity is not None], dtype=np.float64)
        cents = np.array([s.centroid for s in mine if s.centroid is not None], dtype=np.float64)
        vecs = [vectors[(r.handle, r.encoder.name, s.index)] for s in mine
                if vectors and (r.handle, r.encoder.name, s.index) in vectors]
        out.append(CharacterSummary(
            handle=r.handle, encoder=r.encoder.name, bound=round(r.bound, 4), frames_scored=int(sims.size),
            frames_missing=sum(1 for s in mine if s.similarity is None),
            frames_drifted=sum(1 for s in mine if s.drifted),
            mean=round(float(sims.mean()), 4) if sims.size else None,
            min=round(float(sims.min()), 4) if sims.size else None,
            p5=round(float(np.percentile(sims, 5)), 4) if sims.size else None,
            centroid_mean=round(float(cents.mean()), 4) if cents.size else None,
            subject_consistency=subject_consistency(vecs), bound_source=r.bound_source, mode=mode,
            mean_vector=[round(float(x), 6) for x in l2n(np.mean(vecs, axis=0))] if vecs else None,
        ))
    return out


def _span(a: int, b: int) -> str:
    return f"{a}–{b}" if a != b else f"{a}"


CONFIRM_FRAMES = 3  # freshly detected drifted frames that confirm a drift run without re-verifying the rest
MIN_DRIFT_SECONDS = 1 / 12  # drift is a run lasting at least this long (2 frames at 24 fps)


def min_drift_frames(fps: float) -> int:
    """The shortest run of drifted frames that counts as drift: ``max(1, round(fps / 12))``.

    12 fps: 1 frame, 24/25/30 fps: 2, 48 fps: 4, 60 fps: 5. A shorter dip that survived
    re-verification is reported as a finding (a flash a viewer barely sees), not as drift.
    """
    return max(1, round(fps * MIN_DRIFT_SECONDS))


def decide(scores: list[FrameScore], refs: list[Reference], *, num_frames: int, min_frames: int, fps: float,
           stride: int = 1, unknown_run_limit: float = 1.0, vectors: dict[tuple[str, str, int], np.ndarray] | None = None,
           mode: str | None = None, flicker: float | None = None, notes: list[str] | None = None) -> Verdict:
    """Accept, trim to the longest clean range (head, tail or middle), or reject — with the numbers behind it.

    ``stride`` is the gap between scored frames, so runs of drifted/unknown frames are joined
    across unscored frames in between; a run of drifted frames is drift only when it covers at
    least :func:`min_drift_frames` frames. ``notes`` are findings of the scoring pass (e.g. dips
    that did not survive re-verification).
    """
    summaries = summarise(scores, refs, vectors, mode)
    extra = {"summaries": summaries, "mode": mode, "flicker": flicker}
    # 1. unknown runs: findings of their own, not drift
    findings = list(notes or [])
    for r in refs:
        miss = sorted(s.index for s in scores if s.character == r.handle and s.encoder == r.encoder.name and s.similarity is None)
        for a, b in _ranges_stride(miss, stride):
            secs = (b - a + max(1, stride)) / fps
            if secs > unknown_run_limit:
                findings.append(f"{r.handle} not visible ({r.encoder.name}) in frames {_span(a, b)} ({secs:.1f} s > {unknown_run_limit:g} s)")
    for s in summaries:
        if s.frames_scored == 0:
            return Verdict(decision="reject", reason=f"{s.handle} not found in any of {s.frames_missing} scored frames ({s.encoder})",
                           keep_start=0, keep_end=0, findings=findings, **extra)
    # 2. drift: runs of drifted frames at least min_drift_frames long; shorter dips are findings
    min_run = min_drift_frames(fps)
    all_runs = _ranges_stride(sorted({s.index for s in scores if s.drifted}), stride)
    runs = [(a, b) for a, b in all_runs if b - a + max(1, stride) >= min_run]
    for a, b in all_runs:
        if (a, b) not in runs:
            low = min((s for s in scores if s.drifted and a <= s.index <= b), key=lambda s: s.similarity or 0.0)
            findings.append(f"brief dip in frames {_span(a, b)} ({low.character} {low.similarity:.3f}"
                            f"{', like ' + low.lookalike if low.lookalike else ''}): shorter than the {min_run} frame(s) "
                            f"drift needs at {fps:g} fps, not drift")
    tail = ("; " + "; ".join(findings)) if findings else ""
    if not runs:
        mins = ", ".join(f"{s.handle} min {s.min:.3f} ≥ bound {s.bound:.3f}" for s in summaries)
        if all_runs:
            mins = "no drift run of ≥ " + f"{min_run} frame(s): " + ", ".join(f"{s.handle} min {s.min:.3f}, bound {s.bound:.3f}"
                                                                          for s in summaries)
            return Verdict(decision="accept", reason=f"{mins}{tail}", keep_start=0, keep_end=num_frames,
                           findings=findings, **extra)
        return Verdict(decision="accept", reason=f"all scored frames within bound: {mins}{tail}",
                       keep_start=0, keep_end=num_frames, findings=findings, **extra)
    bad = [s for s in scores if s.drifted and any(a <= s.index <= b for a, b in runs)]
    worst = min(bad, key=lambda s: s.similarity if s.similarity is not None else 1.0)
    where = ", ".join(_span(a, b) for a, b in runs)
    wb = next(r.bound for r in refs if r.handle == worst.character and r.encoder.name == worst.encoder)
    what = f"frames {where} below bound {wb:.3f}: min {worst.similarity:.3f} ({worst.character}, {worst.encoder})"
    looks = sorted({s.lookalike for s in bad if s.lookalike})
    if looks:
        what += f"; closer to {', '.join(looks)} than to the character in {sum(1 for s in bad if s.lookalike)} frame(s)"
    # 3. the longest clean range between drift runs (head, middle or tail), if long enough
    edges = [-1] + [x for a, b in runs for x in (a, b)] + [num_frames]
    clean = [(edges[2 * j] + 1, edges[2 * j + 1]) for j in range(len(runs) + 1)]  # before, between, after the runs
    keep_start, keep_end = max(clean, key=lambda c: (c[1] - c[0], -c[0]))
    if keep_end - keep_start >= min_frames:
        middle = " (a middle range)" if 0 < keep_start and keep_end < num_frames else ""
        return Verdict(decision="trim", reason=f"{what}; kept frames {keep_start}–{keep_end - 1}{middle} "
                       f"({(keep_end - keep_start) / fps:.2f} s ≥ minimum {min_frames / fps:.2f} s){tail}",
                       keep_start=keep_start, keep_end=keep_end, findings=findings, **extra)
    short = (f"; the longest clean part ({(keep_end - keep_start) / fps:.2f} s) is shorter than the minimum "
             f"{min_frames / fps:.2f} s" if keep_end > keep_start else "")
    return Verdict(decision="reject", reason=f"{what}{short}{tail}", keep_start=0, keep_end=0, findings=findings, **extra)


def _ranges_stride(idx: list[int], stride: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and i <= runs[-1][1] + max(1, stride):
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


# ------------------------------------------------------------------ the observation cache
def _cache_key(sha: str, enc: Encoder, mode: str, stride: int, detect_stride: int) -> dict[str, Any]:
    return {"sha256": sha, "encoder": enc.name, "encoder_version": enc.version,
            "params": json.dumps({"v": CACHE_VERSION, "mode": mode, "stride": stride, "detect_stride": detect_stride})}


def _cache_get(reg: Registry, key: dict[str, Any]) -> tuple[dict[int, list[Observation]], float | None, int] | None:
    rows = list(reg.db.query("select * from check_cache where sha256 = ? and encoder = ? and encoder_version = ? and params = ?",
                             [key["sha256"], key["encoder"], key["encoder_version"], key["params"]]))
    if not rows:
        return None
    data = json.loads(rows[0]["observations"])
    obs = {int(i): [Observation(tuple(o["box"]), np.asarray(o["vector"], dtype=np.float32), o["source"]) for o in lst]
           for i, lst in data.items()}
    return obs, rows[0]["flicker"], rows[0]["frames"]


def _cache_put(reg: Registry, key: dict[str, Any], obs: dict[int, list[Observation]], flicker: float | None, frames: int) -> None:
    from .registry import now

    data = {str(i): [{"box": list(o.box), "vector": [round(float(x), 6) for x in o.vector], "source": o.source} for o in lst]
            for i, lst in obs.items()}
    with reg.transaction():
        reg.db["check_cache"].insert({**key, "frames": frames, "flicker": flicker, "observations": json.dumps(data),
                                      "created_at": now()}, replace=True)


# ------------------------------------------------------------------ checking a file
@dataclass
class CheckResult:
    verdict: Verdict
    scores: list[FrameScore]
    fps: float
    num_frames: int
    stats: dict[str, int]
    cached: bool


def check(
    path: str | Path,
    refs: list[Reference],
    *,
    min_frames: int | None = None,
    settings: Settings | None = None,
    mode: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    reg: Registry | None = None,
) -> CheckResult:
    """Score a video file (any tool's) against ``refs`` and decide; ``reg`` enables the observation cache.

    Args:
        path: the video file.
        refs: references of the characters planned in the clip (:func:`references_for`).
        min_frames: the shortest clip a trim may keep (default 60 % of the clip).
        settings: ``check_mode``, ``check_stride``, ``detect_stride``, ``unknown_run_limit``.
        mode: ``full`` or ``sampled`` (default ``settings.check_mode``).
    """
    settings = settings or Settings()
    mode = mode or settings.check_mode
    if mode not in MODES:
        raise StoryEngineError(f"unknown check mode {mode!r}; use one of: {', '.join(MODES)}")
    info = media.probe(path)
    v = media.video_stream(info, path)
    fps = media.fps_of(v) or 24.0
    n = int(v.get("nb_frames") or 0) or media.count_frames(path)
    stride = max(1, settings.check_stride) if mode == "full" else 1
    detect_stride = max(1, settings.detect_stride)
    wanted = set(sample_indices(n, mode, stride))
    encoders = [rs[0].encoder for rs in _by_encoder(refs).values()]
    # 1. Observations: from the cache where this file was already observed with an encoder
    obs: dict[str, dict[int, list[Observation]]] = {}
    flicker: float | None = None
    frames_seen = n
    sha = file_sha256(path) if reg is not None else None
    keys = {e.key(): _cache_key(sha, e, mode, stride, detect_stride) for e in encoders} if sha else {}
    missing = []
    for e in encoders:
        hit = _cache_get(reg, keys[e.key()]) if reg is not None else None
        if hit:
            obs[e.key()], flicker, frames_seen = hit
        else:
            missing.append(e)
    stats: dict[str, int] = {}
    if missing or not encoders:
        new, flicker, frames_seen, stats = observe_frames(media.iter_frames(path), missing, wanted, mode=mode,
                                                          detect_stride=detect_stride, progress=progress, total=n)
        obs.update(new)
    n = min(n, frames_seen) if frames_seen else n
    # 2. Scores; a low score that came from a tracked box or a reused vector is looked at again from scratch
    scores, vectors = score_observations(obs, refs, fps=fps, mode=mode)
    notes: list[str] = []
    redone = reverify(path, obs, scores, encoders, refs, fps=fps, mode=mode)
    if redone:
        stats["reverified"] = sum(len(v) for v in redone.values())
        before = {(s.character, s.encoder, s.index): s for s in scores if s.drifted}
        scores, vectors = score_observations(obs, refs, fps=fps, mode=mode)
        after = {(s.character, s.encoder, s.index): s for s in scores}
        for k in sorted(before, key=lambda k: k[2]):
            b, a = before[k], after.get(k)
            if b.source in ("tracked", "reused") and a is not None and not a.drifted:
                got = "not found" if a.similarity is None else f"{a.similarity:.3f}"
                notes.append(f"frame {k[2]}: {k[0]} {b.similarity:.3f} on a {b.source} {'box' if b.source == 'tracked' else 'vector'}"
                             f", {got} re-detected: noise, not drift")
    if reg is not None:  # cached after re-verification: a cache hit never re-verifies the same frame twice
        for e in encoders:
            if e in missing or e.key() in redone:
                _cache_put(reg, keys[e.key()], obs[e.key()], flicker, frames_seen)
    scores = [s for s in scores if s.index < n]
    # 3. The verdict
    gap = stride if mode == "full" else max(1, -(-(n - 1) // max(1, SAMPLED_FRAMES - 1)))  # ceil: the sampling step
    verdict = decide(scores, refs, num_frames=n, min_frames=min_frames if min_frames is not None else max(1, int(0.6 * n)),
                     fps=fps, stride=gap, unknown_run_limit=settings.unknown_run_limit, vectors=vectors, mode=mode,
                     flicker=flicker, notes=notes)
    return CheckResult(verdict, scores, fps, n, stats, cached=not missing and bool(encoders))


def reverify(path: str | Path, obs: dict[str, dict[int, list[Observation]]], scores: list[FrameScore],
             encoders: list[Encoder], refs: list[Reference] | None = None, *, fps: float = 24.0,
             mode: str = "full") -> dict[str, dict[int, list[Observation]]]:
    """Re-detect and re-embed from scratch the frames whose drifted score came from a tracked box or a reused vector.

    The fresh observations (``source="reverified"``) replace the frame's observations in ``obs``
    (in place) and are returned. Per run of drifted frames, a run that holds at least
    ``CONFIRM_FRAMES`` freshly detected drifted frames stands (a face really changed); otherwise
    its first, middle and last tracked/reused frames are re-verified first, and when any of them
    clears, every tracked/reused frame of the run is. Frames are decoded again, only up to the last
    one needed. (A cache hit sees the same runs and re-verifies nothing more.)
    """
    by_key = {e.key(): e for e in encoders}
    names = {e.name: e.key() for e in encoders}
    drifted: dict[str, dict[int, bool]] = {}  # key → frame → suspect (tracked/reused) or fresh
    for s in scores:
        if s.drifted and s.encoder in names:
            d = drifted.setdefault(names[s.encoder], {})
            d[s.index] = d.get(s.index, True) and s.source in ("tracked", "reused")
    first: dict[str, set[int]] = {}
    runs: dict[str, list[list[int]]] = {}
    for k, d in drifted.items():
        for a, b in _ranges_stride(sorted(d), 1):
            sus = [i for i in sorted(d) if a <= i <= b and d[i]]
            fresh = sum(1 for i in d if a <= i <= b and not d[i])
            if not sus or fresh >= CONFIRM_FRAMES:
                continue
            runs.setdefault(k, []).append(sus)
            first.setdefault(k, set()).update(sorted({sus[0], sus[len(sus) // 2], sus[-1]})[:CONFIRM_FRAMES - fresh])
    if not first:
        return {}
    out: dict[str, dict[int, list[Observation]]] = {k: {} for k in first}
    _redetect(path, obs, first, by_key, out)
    if refs is not None:  # runs whose re-verified frames did not all stay drifted: every frame of the run
        still = {(names.get(s.encoder), s.index) for s in score_observations(obs, refs, fps=fps, mode=mode)[0] if s.drifted}
        rest = {k: {i for sus in rs if any((k, j) not in still for j in sus if j in first[k]) for i in sus} - first[k]
                for k, rs in runs.items()}
    else:
        rest = {k: {i for sus in rs for i in sus} - first[k] for k, rs in runs.items()}
    if any(rest.values()):
        _redetect(path, obs, rest, by_key, out)
    return out


def _redetect(path: str | Path, obs: dict[str, dict[int, list[Observation]]], wanted: dict[str, set[int]],
              by_key: dict[str, Encoder], out: dict[str, dict[int, list[Observation]]]) -> None:
    last = max((max(v) for v in wanted.values() if v), default=-1)
    if last < 0:
        return
    for i, frame in enumerate(media.iter_frames(path, max_frames=last + 1)):
        for key, idx in wanted.items():
            if i in idx:
                fresh = [Observation(tuple(int(v) for v in d.box), d.vector, "reverified") for d in by_key[key].embed(frame)]
                out[key][i] = obs[key][i] = fresh

