"""Frames + characters → per-frame similarity → Verdict (accept / trim / reject; the renderer turns reject into retry).

For each frame and each encoder the characters use: detect, **assign** detections to the planned
characters (Hungarian assignment on similarity, so two characters are never scored on the same
face), and score each character against its registered vectors (best reference). A character
not found in a frame is *unknown* (similarity None), never *drifted*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import media, plugins
from .encoders.base import Encoder, l2n
from .errors import RegistryError
from .registry import Registry
from .settings import Settings
from .specs import CharacterSummary, FrameScore, Verdict

SAMPLED_FRAMES = 16


@dataclass
class Reference:
    """One character's identity under one encoder, and the bound a frame must reach."""

    handle: str
    encoder: Encoder
    vectors: np.ndarray  # (n, d), L2-normalised
    centroid: np.ndarray
    bound: float
    bound_source: str

    def similarity(self, v: np.ndarray) -> float:
        return float(np.max(self.vectors @ l2n(v)))


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


def references_for(reg: Registry, handle: str, *, bound: float | None = None) -> list[Reference]:
    """Every encoder the character has vectors for, with its bound (``bound`` overrides)."""
    refs = []
    for enc_name, version in reg.encoders_of(handle):
        try:
            enc = plugins.get_encoder(enc_name)
        except Exception:
            continue  # vectors of an encoder not installed here cannot be checked; report skips it
        if enc.version != version:
            continue  # never compare vectors of another encoder version
        vecs = np.stack([l2n(v.vector) for v in reg.vectors(handle, enc_name)])
        b, src = derive_bound(enc, vecs)
        if bound is not None:
            b, src = bound, "override"
        refs.append(Reference(handle, enc, vecs, l2n(vecs.mean(axis=0)), b, src))
    if not refs:
        raise RegistryError(f"character {handle!r} has no vectors for any installed encoder")
    return refs


def sample_indices(num_frames: int, mode: str, stride: int = 1) -> list[int]:
    if mode == "sampled":
        n = min(SAMPLED_FRAMES, num_frames)
        return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, n)})
    return list(range(0, num_frames, max(1, stride)))


def score_frame(frame: np.ndarray, index: int, time: float, refs: list[Reference], clamp: bool = False) -> list[FrameScore]:
    """Scores of every (character, encoder) in one frame, detections assigned one-to-one."""
    from scipy.optimize import linear_sum_assignment

    out: list[FrameScore] = []
    by_encoder: dict[str, list[Reference]] = {}
    for r in refs:
        by_encoder.setdefault(r.encoder.name, []).append(r)
    for enc_name, rs in by_encoder.items():
        dets = rs[0].encoder.embed(frame)
        assigned: dict[str, tuple[float, tuple[int, int, int, int]]] = {}
        if dets:
            sim = np.array([[r.similarity(d.vector) for d in dets] for r in rs])
            rows, cols = linear_sum_assignment(-sim)
            for i, j in zip(rows, cols):
                assigned[rs[i].handle] = (float(sim[i, j]), dets[j].box)
        for r in rs:
            if r.handle in assigned:
                s, box = assigned[r.handle]
                s = max(0.0, s) if clamp else s
                out.append(FrameScore(index=index, time=round(time, 4), character=r.handle, encoder=enc_name,
                                      similarity=round(s, 5), box=tuple(int(v) for v in box), drifted=s < r.bound))
            else:
                out.append(FrameScore(index=index, time=round(time, 4), character=r.handle, encoder=enc_name,
                                      similarity=None, drifted=False))
    return out


def score_frames(
    frames: Iterable[np.ndarray],
    refs: list[Reference],
    *,
    fps: float,
    num_frames: int,
    mode: str = "full",
    stride: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[FrameScore]:
    """Stream frames, score the selected ones; yields FrameScore rows."""
    wanted = set(sample_indices(num_frames, mode, stride))
    last = max(wanted) if wanted else -1
    for i, frame in enumerate(frames):
        if i > last:
            break
        if i in wanted:
            yield from score_frame(frame, i, i / fps, refs, clamp=(mode == "sampled"))
        if progress:
            progress(i + 1, num_frames)


def summarise(scores: list[FrameScore], refs: list[Reference]) -> list[CharacterSummary]:
    out = []
    for r in refs:
        mine = [s for s in scores if s.character == r.handle and s.encoder == r.encoder.name]
        sims = np.array([s.similarity for s in mine if s.similarity is not None], dtype=np.float64)
        out.append(CharacterSummary(
            handle=r.handle, encoder=r.encoder.name, bound=round(r.bound, 4), frames_scored=int(sims.size),
            frames_missing=sum(1 for s in mine if s.similarity is None),
            frames_drifted=sum(1 for s in mine if s.drifted),
            mean=round(float(sims.mean()), 4) if sims.size else None,
            min=round(float(sims.min()), 4) if sims.size else None,
            p5=round(float(np.percentile(sims, 5)), 4) if sims.size else None,
        ))
    return out


def decide(scores: list[FrameScore], refs: list[Reference], *, num_frames: int, min_frames: int, fps: float,
           stride: int = 1, unknown_run_limit: float = 1.0) -> Verdict:
    """Accept, trim a drifted head/tail, or reject — with the numbers behind the decision."""
    summaries = summarise(scores, refs)
    notes = []
    for s in summaries:
        if s.frames_scored == 0:
            return Verdict(decision="reject", reason=f"{s.handle} not found in any of {s.frames_missing} scored frames ({s.encoder})",
                           keep_start=0, keep_end=0, summaries=summaries)
    # unknown runs: a finding, not drift
    for r in refs:
        miss = sorted(s.index for s in scores if s.character == r.handle and s.encoder == r.encoder.name and s.similarity is None)
        for a, b in _ranges_stride(miss, stride):
            if (b - a + 1) / fps > unknown_run_limit:
                notes.append(f"{r.handle} not visible in frames {a}-{b} ({(b - a + 1) / fps:.1f} s)")
    drifted = sorted({s.index for s in scores if s.drifted})
    extra = ("; " + "; ".join(notes)) if notes else ""
    if not drifted:
        mins = ", ".join(f"{s.handle} min {s.min:.3f} ≥ bound {s.bound:.3f}" for s in summaries)
        return Verdict(decision="accept", reason=f"all scored frames within bound: {mins}{extra}",
                       keep_start=0, keep_end=num_frames, summaries=summaries)
    bad = [s for s in scores if s.drifted]
    worst = min(bad, key=lambda s: s.similarity if s.similarity is not None else 1.0)
    runs = _ranges_stride(drifted, stride)
    where = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)
    what = (f"frames {where} below bound {next(r.bound for r in refs if r.handle == worst.character and r.encoder.name == worst.encoder):.3f}: "
            f"min {worst.similarity:.3f} ({worst.character}, {worst.encoder})")
    # the clean stretch between a drifted head and a drifted tail
    scored = sorted({s.index for s in scores})
    head = runs[0] if runs[0][0] == scored[0] else None
    tail = runs[-1] if runs[-1][1] == scored[-1] else None
    inner = [r for r in runs if r is not head and r is not tail]
    if not inner:
        keep_start = head[1] + 1 if head else 0
        keep_end = tail[0] if tail else num_frames
        if keep_end - keep_start >= min_frames:
            return Verdict(decision="trim", reason=f"{what}; kept frames {keep_start}-{keep_end - 1} "
                           f"({(keep_end - keep_start) / fps:.2f} s ≥ minimum {min_frames / fps:.2f} s){extra}",
                           keep_start=keep_start, keep_end=keep_end, summaries=summaries)
        clean = (f"; the clean part ({(keep_end - keep_start) / fps:.2f} s) is shorter than the minimum {min_frames / fps:.2f} s"
                 if keep_end > keep_start else "")
        return Verdict(decision="reject", reason=f"{what}{clean}{extra}",
                       keep_start=0, keep_end=0, summaries=summaries)
    return Verdict(decision="reject", reason=f"{what}{extra}", keep_start=0, keep_end=0, summaries=summaries)


def _ranges_stride(idx: list[int], stride: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and i <= runs[-1][1] + max(1, stride):
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def check_video(
    path: str | Path,
    refs: list[Reference],
    *,
    min_frames: int | None = None,
    settings: Settings | None = None,
    mode: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Verdict, list[FrameScore]]:
    """Score a video file (any tool's) against ``refs`` and decide."""
    settings = settings or Settings()
    mode = mode or settings.check_mode
    info = media.probe(path)
    v = media.video_stream(info, path)
    fps = media.fps_of(v) or 24.0
    n = int(v.get("nb_frames") or 0) or media.count_frames(path)
    stride = settings.check_stride if mode == "full" else 1
    scores = list(score_frames(media.iter_frames(path), refs, fps=fps, num_frames=n, mode=mode, stride=stride, progress=progress))
    verdict = decide(scores, refs, num_frames=n, min_frames=min_frames if min_frames is not None else max(1, int(0.6 * n)),
                     fps=fps, stride=stride if mode == "full" else max(1, n // SAMPLED_FRAMES), unknown_run_limit=settings.unknown_run_limit)
    return verdict, scores
