"""The checker on real faces: swapped and morphed frames are flagged at their indices, clean clips pass."""

from __future__ import annotations

import numpy as np
import pytest

import evalclips as E
from storyengine.consistency import Reference, check, decide, derive_bound, sample_indices, subject_consistency
from storyengine.encoders.base import l2n
from storyengine.settings import Settings

N = 16


@pytest.fixture(scope="session")
def ref() -> Reference:
    from storyengine.plugins import get_encoder

    enc = get_encoder("dlib-face", Settings())
    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    b, src = derive_bound(enc, vecs)
    return Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), b, src)


@pytest.fixture(scope="session")
def clip_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalclips")
    made = {}

    def make(kind: str, other: str = "hopper", span=(5, 10)):
        key = (kind, other, span)
        if key not in made:
            made[key] = E.write_clip(E.make_clip(kind, N, other=other, span=span), root / f"{kind}-{other}-{span[0]}-{span[1]}.mp4")
        return made[key]
    return make


def drifted(res) -> list[int]:
    return sorted(s.index for s in res.scores if s.drifted)


@pytest.mark.parametrize("other", ["hopper", "t1b"])
def test_swapped_frames_are_flagged_at_their_indices_full_mode(clip_file, ref, other):
    res = check(clip_file("swap", other), [ref], settings=Settings(check_mode="full", detect_stride=4))
    assert drifted(res) == list(range(5, 11))
    assert res.verdict.decision == "reject" and res.verdict.mode == "full"
    assert f"frames 5–10 below bound {ref.bound:.3f}" in res.verdict.reason
    sims = {s.index: s.similarity for s in res.scores}
    assert max(sims[i] for i in range(5, 11)) < ref.bound < min(sims[i] for i in (*range(5), *range(11, N)))
    # tracked between detections, not a full detection per frame
    assert res.stats["detect"] < N and res.stats["roi"] > 0
    assert {s.source for s in res.scores} >= {"detected", "tracked"}


def test_sampled_mode_follows_the_protocol(clip_file, ref):
    res = check(clip_file("swap", "hanks", (9, 15)), [ref], mode="sampled")
    assert [s.index for s in res.scores] == sample_indices(N, "sampled") == list(range(16))
    assert all(s.similarity is None or s.similarity >= 0 for s in res.scores)
    assert drifted(res) == list(range(9, 16))
    # a drifted tail with a long enough clean head is trimmed away
    assert res.verdict.decision == "trim" and (res.verdict.keep_start, res.verdict.keep_end) == (0, 9)
    assert res.verdict.mode == "sampled"


def test_morph_is_flagged_once_it_is_someone_else(clip_file, ref):
    clip = E.make_clip("morph", N, other="t1c")
    res = check(clip_file("morph", "t1c"), [ref], settings=Settings(detect_stride=4))
    flags = {s.index: s.drifted for s in res.scores}
    assert all(flags[i] for i, t in enumerate(clip.truth) if t is True)
    assert not any(flags[i] for i, t in enumerate(clip.truth) if t is False)


@pytest.mark.parametrize("kind", ["clean", "clean-rotate", "clean-light", "clean-jpeg", "clean-occlude"])
def test_clean_clips_with_nuisances_pass(clip_file, ref, kind):
    res = check(clip_file(kind), [ref], settings=Settings(detect_stride=4))
    assert drifted(res) == [] and res.verdict.decision == "accept"
    s = res.verdict.summaries[0]
    assert s.frames_scored == N and s.min >= ref.bound and s.subject_consistency > 0.97
    assert res.verdict.flicker is not None and res.verdict.flicker < 0.1


def test_hidden_face_is_unknown_not_drifted_and_a_long_run_is_a_finding(clip_file, ref):
    path = clip_file("clean-hidden", span=(4, 11))
    res = check(path, [ref], settings=Settings(detect_stride=4, unknown_run_limit=0.5))
    unknown = sorted(s.index for s in res.scores if s.similarity is None)
    assert unknown == list(range(4, 12)) and drifted(res) == []
    assert res.verdict.decision == "accept"
    assert res.verdict.findings == ["mara not visible (dlib-face) in frames 4–11 (0.7 s > 0.5 s)"]
    res = check(path, [ref], settings=Settings(detect_stride=4, unknown_run_limit=1.0))
    assert res.verdict.findings == []


def test_two_characters_are_assigned_to_their_own_faces(tmp_path, ref):
    from storyengine.plugins import get_encoder

    enc = get_encoder("dlib-face", Settings())
    hop = E.sources()["hopper"]
    hv = np.stack([enc.embed(hop)[0].vector])
    hb, hsrc = derive_bound(enc, hv)
    href = Reference("grace", enc, hv, l2n(hv.mean(axis=0)), hb, hsrc)
    import cv2

    x0, y0, x1, y1 = E._face_box("hopper")
    m = (x1 - x0) // 2
    left = cv2.resize(E.sources()["astronaut"], (320, 240))
    right = cv2.resize(hop[max(0, y0 - m):y1 + m, max(0, x0 - 2 * m):x1 + 2 * m], (320, 240))
    frame = np.ascontiguousarray(np.concatenate([left, right], axis=1))
    frames = [frame] * 4
    from storyengine.consistency import score_frames

    # Grace listed first: assignment, not order, decides who is who
    run = score_frames(frames, [href, ref], fps=12, num_frames=4, mode="full", detect_stride=2)
    by = {(s.index, s.character): s for s in run.scores}
    for i in range(4):
        assert by[(i, "mara")].box[0] < 320 <= by[(i, "grace")].box[0]
        assert by[(i, "mara")].similarity > ref.bound and not by[(i, "grace")].drifted
    assert run.stats["reuse"] >= 4  # identical frames: vectors reused, not recomputed


def test_full_mode_matches_a_naive_per_frame_loop(clip_file, ref):
    from storyengine import media

    path = clip_file("swap", "t1a")
    res = check(path, [ref], settings=Settings(detect_stride=4))
    naive = [max((ref.similarity(d.vector) for d in ref.encoder.embed(f)), default=None) for f in media.iter_frames(path)]
    tracked = {s.index: s.similarity for s in res.scores}
    assert all(abs(tracked[i] - naive[i]) < 0.01 for i in range(N))


def test_decide_reason_and_subject_consistency_numbers(ref):
    from storyengine.specs import FrameScore

    scores = [FrameScore(index=i, time=i / 24, character="mara", encoder="dlib-face", similarity=0.99 if i < 60 or i > 97 else 0.18,
                         drifted=not (i < 60 or i > 97)) for i in range(120)]
    r = Reference("mara", ref.encoder, ref.vectors, ref.centroid, 0.42, "override")
    v = decide(scores, [r], num_frames=120, min_frames=72, fps=24)
    assert v.decision == "reject" and v.reason.startswith("frames 60–97 below bound 0.420: min 0.180")
    a, b = l2n(np.array([1.0, 0.0])), l2n(np.array([1.0, 1.0]))
    assert subject_consistency([a, a, b]) == pytest.approx(np.mean([1.0, (0.7071 + 0.7071) / 2]), abs=1e-3)


# ------------------------------------------------------------------ vector reuse in full mode
def _static_frames(n: int, swap_at: set[int] = frozenset(), other: str = "hopper", alphas: list[float] | None = None):
    """The character's portrait with a still camera; someone else's face pasted over hers in ``swap_at``."""
    base = E.base_frame()
    out = []
    for i in range(n):
        img = E.paste_face(base, other, alpha=alphas[i]) if alphas else (E.paste_face(base, other) if i in swap_at else base)
        out.append(np.ascontiguousarray(E._camera(img, 0.0)))
    return out


def test_static_clip_reuses_vectors_between_refreshes(ref):
    from storyengine import tracking
    from storyengine.consistency import score_frames

    frames = _static_frames(N)
    run = score_frames(frames, [ref], fps=12, num_frames=N, mode="full", detect_stride=8)
    src = [s.source for s in run.scores]
    # a fresh vector on frame 0 and every REFRESH_EVERY frames; every other frame reuses it
    fresh = [i for i, s in enumerate(src) if s != "reused"]
    assert fresh == list(range(0, N, tracking.REFRESH_EVERY))
    assert src.count("reused") == N - len(fresh) and run.stats["embed"] == len(fresh)
    assert run.stats["batches"] == -(-len(fresh) // tracking.FaceTracker(ref.encoder).batch)  # in batches, not one by one
    naive = ref.similarity(ref.encoder.embed(frames[0])[0].vector)
    assert all(abs(s.similarity - naive) < 1e-4 and not s.drifted for s in run.scores)


@pytest.mark.parametrize("at", [5, 8, 15])  # tracked frame, full-detection frame, last frame (partial batch)
def test_reuse_never_hides_a_one_frame_swap(ref, at):
    from storyengine.consistency import score_frames

    frames = _static_frames(N, {at})
    run = score_frames(frames, [ref], fps=12, num_frames=N, mode="full", detect_stride=8)
    by = {s.index: s for s in run.scores}
    assert by[at].source != "reused" and by[at].drifted and by[at].similarity < ref.bound
    assert [s.index for s in run.scores if s.drifted] == [at]
    # the frame after the swap is the character again: compared with the swapped chip, embedded afresh
    if at + 1 < N:
        assert by[at + 1].source != "reused" and not by[at + 1].drifted
    assert sum(s.source == "reused" for s in run.scores) >= N - 6  # the rest of the clip still reuses


def test_slow_morph_accumulates_against_the_last_embedded_chip(ref):
    """A morph re-embeds where the frame differs little from the previous one but enough from the last embedded one."""
    from storyengine import tracking
    from storyengine.consistency import score_frames

    n = 32
    alphas = [max(0.0, (i - 4) / (n - 5)) for i in range(n)]
    frames = _static_frames(n, other="t1c", alphas=alphas)
    old = tracking.REFRESH_EVERY
    tracking.REFRESH_EVERY = 10**6  # refresh disabled: only a changed chip can trigger a fresh embedding
    try:
        run = score_frames(frames, [ref], fps=12, num_frames=n, mode="full", detect_stride=n + 1)
    finally:
        tracking.REFRESH_EVERY = old
    boxes = {s.index: s.box for s in run.scores}
    sigs = [tracking.chip_signature(ref.encoder.align(f, boxes[i])) for i, f in enumerate(frames)]
    fresh = [s.index for s in run.scores if s.source != "reused"]
    # fresh embeddings where the step from the previous frame alone was under the threshold: the change accumulated
    crept = [i for i in fresh[1:] if float(np.abs(sigs[i] - sigs[i - 1]).mean()) < tracking.REUSE_TOL]
    assert len(fresh) >= 4 and crept and fresh[-1] > n // 2
    naive = [ref.similarity(ref.encoder.embed(f)[0].vector) for f in frames]
    assert [s.index for s in run.scores if s.drifted] == [i for i in range(n) if naive[i] < ref.bound]
    assert max(abs(s.similarity - naive[s.index]) for s in run.scores) < 0.02


# ------------------------------------------------------------------ issue 15: re-verify, drift runs, middle trims
def test_a_tracked_dip_that_disappears_on_re_detection_is_noise_not_drift(clip_file, ref, hopper, monkeypatch):
    """A wrong vector on a tracked frame (what a bad tracking box gives) is re-detected from scratch before it counts."""
    from storyengine import consistency

    real = consistency.observe_frames
    wrong = ref.encoder.embed(hopper)[0].vector

    def corrupt(*a, **kw):
        obs, flicker, n, stats = real(*a, **kw)
        for per_frame in obs.values():
            o = per_frame[6][0]
            per_frame[6] = [consistency.Observation(o.box, wrong, "tracked")]
        return obs, flicker, n, stats

    monkeypatch.setattr(consistency, "observe_frames", corrupt)
    path = clip_file("clean")
    res = check(path, [ref], settings=Settings(check_mode="full", detect_stride=4))
    by = {s.index: s for s in res.scores}
    assert by[6].source == "reverified" and not by[6].drifted and by[6].similarity > ref.bound
    assert res.stats["reverified"] == 1
    assert res.verdict.decision == "accept"
    assert any(f.startswith("frame 6: mara 0.") and "tracked box" in f and "noise, not drift" in f for f in res.verdict.findings)


def test_a_one_frame_swap_that_survives_re_detection_is_a_brief_dip_below_the_drift_run(ref):
    from storyengine.specs import FrameScore

    assert [consistency_min(f) for f in (12, 24, 25, 30, 60)] == [1, 2, 2, 2, 5]
    scores = [FrameScore(index=i, time=i / 24, character="mara", encoder="dlib-face", similarity=0.5 if i == 30 else 0.97,
                         drifted=i == 30, source="reverified" if i == 30 else "tracked") for i in range(96)]
    r = Reference("mara", ref.encoder, ref.vectors, ref.centroid, 0.9, "override")
    v = decide(scores, [r], num_frames=96, min_frames=58, fps=24)
    assert v.decision == "accept" and v.keep_end == 96
    assert any("brief dip in frames 30 (mara 0.500)" in f and "2 frame(s) drift needs at 24 fps" in f for f in v.findings)
    v12 = decide(scores, [r], num_frames=96, min_frames=58, fps=12)  # at 12 fps one frame lasts 83 ms: drift
    assert v12.decision == "trim" and (v12.keep_start, v12.keep_end) == (31, 96)


def consistency_min(fps):
    from storyengine.consistency import min_drift_frames

    return min_drift_frames(fps)


def test_drift_in_the_middle_keeps_the_longest_clean_range(ref):
    from storyengine.specs import FrameScore

    bad = set(range(10, 13)) | set(range(100, 106))
    scores = [FrameScore(index=i, time=i / 24, character="mara", encoder="dlib-face", similarity=0.4 if i in bad else 0.97,
                         drifted=i in bad) for i in range(120)]
    r = Reference("mara", ref.encoder, ref.vectors, ref.centroid, 0.9, "override")
    v = decide(scores, [r], num_frames=120, min_frames=72, fps=24)
    assert v.decision == "trim" and (v.keep_start, v.keep_end) == (13, 100)
    assert "kept frames 13–99 (a middle range) (3.62 s ≥ minimum 3.00 s)" in v.reason
    v = decide(scores, [r], num_frames=120, min_frames=90, fps=24)
    assert v.decision == "reject" and "the longest clean part (3.62 s) is shorter than the minimum 3.75 s" in v.reason
