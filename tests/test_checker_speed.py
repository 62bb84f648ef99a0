"""Full-mode checking on both cores and without wasted work: the descriptor worker process, the
empty-frame skip, and in-process decoding (same vectors, same detections, same frames as before)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import evalclips as E
from storyengine import media, tracking
from storyengine.encoders import descriptor_worker as dw
from storyengine.errors import MediaError
from storyengine.settings import Settings


@pytest.fixture(scope="module")
def enc():
    from storyengine.plugins import get_encoder

    return get_encoder("dlib-face", Settings())


@pytest.fixture(scope="module")
def chips(enc):
    out = []
    for p in E.reference_photos():
        out.append(enc.align(p, enc.detect(p)[0][0]))
    out.append(enc.align(E.sources()["hopper"], enc.detect(E.sources()["hopper"])[0][0]))
    return out


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not reaped by an init that does not reap, is not running)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def _not_our_zombie(pid: int) -> bool:
    """``pid`` is not an unreaped child of this process."""
    try:
        got, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # already reaped (or not ours)
    return got == 0 and _running(pid)


# ------------------------------------------------------------------ the descriptor worker process
def test_worker_vectors_equal_in_process(enc, chips):
    here = enc.embed_chips(chips)
    there = enc.embed_chips(chips, worker=True)
    assert dw._WORKER is not None and dw._WORKER.alive()  # it really went through the worker
    assert there.shape == (len(chips), 128) and there.dtype == np.float32
    assert np.array_equal(here, there)  # bit for bit: same model, same batch, normalised the same way
    one = enc.embed_chips(chips[-1:], worker=True)[0]
    assert np.abs(one - here[-1]).max() < 1e-6
    assert float(np.dot(there[0], there[3])) < 0.9  # the astronaut and Grace Hopper stay apart


def test_worker_death_is_a_clear_error_then_a_fallback_and_a_restart(enc, chips, caplog):
    enc.embed_chips(chips[:1], worker=True)
    w = dw._WORKER
    old = w.pid
    os.kill(old, signal.SIGKILL)
    with pytest.raises(dw.WorkerDied, match=rf"descriptor worker \(pid {old}\) .*exit status -9"):
        w.compute(chips[:2])
    assert _not_our_zombie(old) and not _running(old)
    os.kill(dw.worker().pid, signal.SIGKILL)  # the restarted one dies too, mid-use by the encoder
    died = dw._WORKER.pid
    with caplog.at_level(logging.WARNING, logger="storyengine"):
        got = enc.embed_chips(chips, worker=True)  # computed in this process instead
    assert np.array_equal(got, enc.embed_chips(chips))
    assert any(f"pid {died}" in r.getMessage() and "in this process" in r.getMessage() for r in caplog.records)
    again = enc.embed_chips(chips[:1], worker=True)  # a new worker next time
    assert dw._WORKER.pid not in (old, died) and dw._WORKER.alive() and np.array_equal(again[0], got[0])


def test_worker_ignores_sigint_and_leaves_no_process(enc, chips):
    enc.embed_chips(chips[:1], worker=True)
    pid = dw._WORKER.pid
    os.kill(pid, signal.SIGINT)  # what Ctrl-C sends to the whole foreground process group
    time.sleep(0.2)
    assert np.array_equal(enc.embed_chips(chips[:2], worker=True), enc.embed_chips(chips[:2]))
    assert dw._WORKER.pid == pid
    dw.shutdown()
    assert dw._WORKER is None and not _running(pid) and _not_our_zombie(pid)


def test_worker_exits_when_its_parent_dies(tmp_path):
    code = ("import sys; from storyengine.encoders import descriptor_worker as dw; import numpy as np; "
            "dw.descriptors([np.zeros((150, 150, 3), np.uint8)]); print(dw._WORKER.pid, flush=True); "
            "import time; time.sleep(120)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        pid = int(parent.stdout.readline())
        assert _running(pid)
        parent.kill()  # no atexit: only the closed pipe tells the worker
        parent.wait()
        deadline = time.time() + 15
        while _running(pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _running(pid)
    finally:
        parent.kill()
        parent.stdout.close()


def test_tracker_uses_the_worker_with_the_same_scores(enc, monkeypatch):
    from storyengine.consistency import Reference, derive_bound, score_frames
    from storyengine.encoders.base import l2n

    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    b, src = derive_bound(enc, vecs)
    ref = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), b, src)
    clip = E.make_clip("swap", 16, other="hopper", span=(6, 9))
    runs = {}
    for on in (False, True):
        monkeypatch.setattr(tracking, "EMBED_WORKER", on)
        runs[on] = score_frames(clip.frames, [ref], fps=12, num_frames=16, mode="full", detect_stride=8)
    calls = []
    monkeypatch.setattr(dw, "descriptors", lambda c, _f=dw.descriptors: calls.append(len(c)) or _f(c))
    again = score_frames(clip.frames, [ref], fps=12, num_frames=16, mode="full", detect_stride=8)
    assert sum(calls) == again.stats["embed"] > 0 and max(calls) <= tracking.WORKER_BATCH  # every embedding went there
    assert [(s.index, s.similarity, s.drifted) for s in runs[True].scores] == \
        [(s.index, s.similarity, s.drifted) for s in runs[False].scores] == [(s.index, s.similarity, s.drifted) for s in again.scores]
    assert [s.index for s in again.scores if s.drifted] == list(range(6, 10))


def test_worker_can_be_turned_off(enc, monkeypatch):
    monkeypatch.setenv("STORYENGINE_DESCRIPTOR_WORKER", "0")
    t = tracking.FaceTracker(enc)
    assert not t._remote and t.batch == tracking.EMBED_BATCH
    monkeypatch.setenv("STORYENGINE_DESCRIPTOR_WORKER", "1")
    t = tracking.FaceTracker(enc)
    assert t._remote and t.batch == min(tracking.EMBED_BATCH, tracking.WORKER_BATCH)


# ------------------------------------------------------------------ frames with nobody in them
def _faceless(img: np.ndarray) -> np.ndarray:
    """``img`` with the face blurred away, as the anonymiser leaves an impostor's."""
    x0, y0, x1, y1 = E._face_box("_base")
    m = (x1 - x0) // 2
    out = img.copy()
    y0, y1, x0, x1 = max(0, y0 - m), y1 + m, max(0, x0 - m), x1 + m
    out[y0:y1, x0:x1] = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), 25)
    return out


def test_empty_frames_are_detected_once_per_stride_and_a_face_that_appears_is_found(enc, monkeypatch):
    base = E.base_frame()
    blank = _faceless(base)
    assert not enc.detect(E._camera(blank, 0.0))  # nobody, even with the upsampled retry
    n, appear = 20, 13
    frames = [np.ascontiguousarray(E._camera(blank if i < appear else base, 0.002 * i)) for i in range(n)]
    found, default = {}, tracking.EMPTY_TOL
    for tol in (default, 0.0):  # 0: the skip never applies (the naive behaviour)
        monkeypatch.setattr(tracking, "EMPTY_TOL", tol)
        t = tracking.FaceTracker(enc, detect_stride=8)
        found[tol] = [len(t.observe(f)) for f in frames]
        t.flush()
        found[tol] = (found[tol], dict(t.stats))
    (seen, stats), (seen0, stats0) = found[default], found[0.0]
    assert seen == seen0 == [0] * appear + [1] * (n - appear)  # the face is found on the frame it appears
    assert stats0["empty_skip"] == 0 and stats0["detect"] >= appear + 1
    # the blank frames: a full detection on frame 0 and 8 (stride); in most of the rest only what the pan changed is
    # searched (a full detection again once the pan has changed most of the frame); the face's frame is found
    assert stats["empty_skip"] + stats["empty_region"] >= (appear - 2) // 2
    assert stats["detect"] + stats["empty_skip"] + stats["empty_region"] == stats0["detect"]


def test_empty_frame_skip_keeps_the_verdict(enc, monkeypatch, tmp_path):
    from storyengine.consistency import Reference, check, derive_bound
    from storyengine.encoders.base import l2n

    vecs = np.stack([enc.embed(p)[0].vector for p in E.reference_photos()])
    b, src = derive_bound(enc, vecs)
    ref = Reference("mara", enc, vecs, l2n(vecs.mean(axis=0)), b, src)
    blank = _faceless(E.base_frame())
    path = tmp_path / "nobody-then-her.mp4"
    with media.VideoWriter(path, E.W, E.H, E.FPS, crf=16, preset="veryfast") as w:
        for i in range(24):
            w.write(np.ascontiguousarray(E._camera(blank if i < 16 else E.base_frame(), 0.002 * i)))
    res = {}
    for tol in (tracking.EMPTY_TOL, 0.0):
        monkeypatch.setattr(tracking, "EMPTY_TOL", tol)
        res[tol] = check(path, [ref], settings=Settings(check_mode="full", detect_stride=8))
    new, old = res.values()
    # frames 1-7 and 9-15: mostly no full detection (nothing, or only the cells the pan changed, searched)
    assert new.stats["empty_skip"] + new.stats["empty_region"] >= 8 and old.stats["empty_skip"] + old.stats["empty_region"] == 0
    assert new.stats["detect"] + new.stats["empty_skip"] + new.stats["empty_region"] == old.stats["detect"]
    assert [(s.index, s.similarity) for s in new.scores] == [(s.index, s.similarity) for s in old.scores]
    assert [s.index for s in new.scores if s.similarity is not None] == list(range(16, 24))
    assert new.verdict.decision == old.verdict.decision and new.verdict.reason == old.verdict.reason


def test_a_changing_empty_frame_is_detected_again(enc):
    blank = _faceless(E.base_frame())
    t = tracking.FaceTracker(enc, detect_stride=8)
    t.observe(np.ascontiguousarray(E._camera(blank, 0.0)))
    dark = np.ascontiguousarray(E._camera(blank, 0.0))
    dark[:60, :60] = 0  # one corner changed: only that part is searched again
    t.observe(dark)
    assert t.stats["detect"] == 1 and t.stats["empty_region"] == 1 and t.stats["empty_skip"] == 0
    t.observe(dark.copy())  # the same picture again (the change is measured against the detected frame): searched again
    assert t.stats["empty_region"] == 2
    t.observe(np.ascontiguousarray(E._camera(blank, 0.0)))  # back to the detected picture: nothing to search
    assert t.stats["empty_skip"] == 1 and t.stats["detect"] == 1


def test_a_face_appearing_in_the_changed_part_of_an_empty_frame_is_found_there(enc):
    """Only the changed cells of an empty frame are searched: a face pasted into one corner of a faceless frame is
    found on that frame, with the box a full detection gives."""
    blank = np.ascontiguousarray(E._camera(_faceless(E.base_frame()), 0.0))
    face = E.base_frame()
    x0, y0, x1, y1 = E._face_box("_base")
    with_face = blank.copy()
    with_face[y0:y1, x0:x1] = face[y0:y1, x0:x1]
    full = enc.detect(with_face)
    assert len(full) == 1
    t = tracking.FaceTracker(enc, detect_stride=8)
    assert t.observe(blank) == []
    obs = t.observe(with_face)
    t.flush()
    assert t.stats["empty_region"] == 1 and t.stats["detect"] == 1 and len(obs) == 1
    assert tracking._iou(obs[0].box, full[0][0]) > 0.9  # the detector on a crop: the same face, a box a few px apart


# ------------------------------------------------------------------ decoding in-process
def _pipe_frames(path: Path, size=None, max_frames=None) -> list[np.ndarray]:
    """What iter_frames returned before: imageio-ffmpeg's binary through a pipe (the reference here only)."""
    info = media.video_stream(media.probe(path))
    w, h = size or (int(info["width"]), int(info["height"]))
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path)]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=bicubic"]
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
    raw = subprocess.run(cmd + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3))


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decode") / "clip.mp4"
    clip = E.make_clip("swap", 12, other="hopper", span=(4, 6))
    E.write_clip(clip, path)
    return path


@pytest.mark.parametrize("size,max_frames", [(None, None), ((160, 120), None), ((202, 114), 5), (None, 3)])
def test_iter_frames_gives_the_pipes_frames(small_video, size, max_frames):
    got = list(media.iter_frames(small_video, size=size, max_frames=max_frames))
    want = _pipe_frames(small_video, size, max_frames)
    assert len(got) == len(want) == (max_frames or media.count_frames(small_video))
    assert all(g.dtype == np.uint8 and g.flags.c_contiguous for g in got)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))  # the same pixels, scaled or not


def test_iter_frames_closes_early_and_names_bad_files(small_video, tmp_path):
    it = media.iter_frames(small_video)
    first = next(it)
    it.close()  # the consumer stops: no error, nothing left open
    assert first.shape[2] == 3
    assert list(media.iter_frames(small_video, max_frames=0)) == []
    with pytest.raises(MediaError, match="video not found: .*nope.mp4"):
        list(media.iter_frames(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(MediaError, match="bad.mp4"):
        list(media.iter_frames(bad))


def test_window_observer_reuses_unchanged_windows_and_flags_the_same_frames_as_describing_everything():
    """The appearance fallback in full mode: a window is described again only when its grey signature changed (or
    every REFRESH_EVERY frames). On a cat that breathes under a slow pan and is swapped for another animal in the
    middle, the best-window similarity matches describing every window of every frame, and so do the drifted frames."""
    import cv2
    from skimage import data

    from storyengine.consistency import Reference, derive_bound
    from storyengine.encoders.appearance import AppearanceEncoder
    from storyengine.encoders.base import l2n

    enc = AppearanceEncoder()
    cat, other = data.chelsea(), data.coffee()
    W, H = 320, 180
    scene = np.full((H + 40, W + 40, 3), (70, 80, 95), np.uint8)
    cv2.rectangle(scene, (0, 150), (W + 40, H + 40), (120, 110, 90), -1)  # a seat
    cat_s = cv2.resize(cat, (150, 112), interpolation=cv2.INTER_AREA)
    oth_s = cv2.resize(other, (150, 112), interpolation=cv2.INTER_AREA)
    ref_img = scene.copy()
    ref_img[50:162, 120:270] = cat_s
    vecs = np.stack([enc.embed_region(ref_img, (120, 50, 270, 162))])
    b, src = derive_bound(enc, vecs)
    ref = Reference("chelsea", enc, vecs, l2n(vecs.mean(axis=0)), b, src)
    frames = []
    for i in range(36):
        img = scene.copy()
        breath = 1.0 + 0.02 * np.sin(2 * np.pi * i / 24)  # the subject breathes: its patch scales a little
        sub = oth_s if 14 <= i < 22 else cat_s
        sh, sw = int(112 * breath), int(150 * breath)
        img[162 - sh:162, 120:120 + sw] = cv2.resize(sub, (sw, sh), interpolation=cv2.INTER_LINEAR)[:, : min(sw, W + 40 - 120)]
        dx = int(round(10 + 8 * np.sin(2 * np.pi * i / 48)))  # a slow pan
        frames.append(np.ascontiguousarray(img[20:20 + H, dx:dx + W]))
    naive = [max(ref.similarity(d.vector) for d in enc.embed(f)) for f in frames]
    obs = tracking.WindowObserver(enc)
    got = [max(ref.similarity(o.vector) for o in obs.observe(f)) for f in frames]
    assert max(abs(a - g) for a, g in zip(naive, got)) < 0.005
    assert [i for i, s in enumerate(naive) if s < b] == [i for i, s in enumerate(got) if s < b]
    assert set(i for i, s in enumerate(got) if s < b) >= set(range(15, 21))  # the other animal is flagged
    # under a pan every window moves; still, a third of them are not described again (a static camera: ~3/4)
    assert obs.stats["window_reuse"] > 0.3 * (obs.stats["window_reuse"] + obs.stats["windows"])
    # a window's vector is the same whichever other windows are described with it
    part = enc.windows(W, H)[5:9]
    assert np.array_equal(np.stack([d.vector for d in enc.embed(frames[3], only=part)]),
                          np.stack([d.vector for d in enc.embed(frames[3])[5:9]]))
