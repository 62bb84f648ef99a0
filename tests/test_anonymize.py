"""Bystanders anonymised in every frame, characters untouched: on a real group photo (insightface's t1.jpg)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from storyengine.anonymize import AnonymizeOptions, Anonymizer, apply, face_mask
from storyengine.consistency import Reference

CROP = (240, 60, 1040, 510)  # x0, y0, x1, y1 of t1.jpg: four faces, ~90-125 px


def _t1() -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    if spec is None:
        pytest.skip("insightface (its sample photo t1.jpg) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def enc():
    from storyengine.encoders.dlib_face import DlibFaceEncoder

    return DlibFaceEncoder()


@pytest.fixture(scope="module")
def group(enc):
    """The cropped group photo, its faces left to right (box, vector) and a panning 'take' of it."""
    x0, y0, x1, y1 = CROP
    img = np.ascontiguousarray(_t1()[y0:y1, x0:x1])
    faces = sorted(((tuple(d.box), d.vector) for d in enc.embed(img)), key=lambda f: f[0][0])
    assert len(faces) == 4
    return img, faces


def _pan(img: np.ndarray, n: int = 14) -> list[np.ndarray]:
    """A slow diagonal camera move (faces move 2 px right, 1 px down per frame)."""
    h, w = img.shape[:2]
    return [cv2.warpAffine(img, np.float32([[1, 0, 2 * i], [0, 1, i]]), (w, h), borderMode=cv2.BORDER_REFLECT) for i in range(n)]


def _moved(box, i):
    return (box[0] + 2 * i, box[1] + i, box[2] + 2 * i, box[3] + i)


@pytest.fixture(scope="module")
def anonymised(enc, group):
    img, faces = group
    cast_box, cast_vec = faces[1]  # the man in the middle is the registered character
    ref = Reference("ada", enc, cast_vec[None], cast_vec, enc.same_bound, "test")
    frames = _pan(img)
    a = Anonymizer(enc, [ref], AnonymizeOptions(stride=6))
    out = list(a.run(iter(frames)))
    return frames, out, a.report, ref


def test_no_bystander_matches_its_original_in_any_frame(enc, group, anonymised):
    _, faces = group
    frames, out, report, _ = anonymised
    # dlib's rule: distance >= 0.6 is a different person, i.e. similarity below same_bound (0.91) on our
    # normalised vectors; the anonymised faces must clear it with a margin
    different = enc.same_bound - 0.02
    assert len(out) == len(frames) == 14
    assert report.faces == 3 and report.frames == list(range(14)) and set(report.kept) == {"ada"}
    worst = -1.0
    for i, f in enumerate(out):
        for k, (box, vec) in enumerate(faces):
            if k == 1:
                continue
            # forced: the descriptor aligned where the bystander's face is known to be
            worst = max(worst, float(enc.embed_box(f, _moved(box, i)) @ vec))
        for d in enc.embed(f):  # and whatever the detector still finds
            sims = [float(d.vector @ v) for k, (_, v) in enumerate(faces) if k != 1]
            worst = max(worst, max(sims) if float(d.vector @ faces[1][1]) < enc.same_bound else -1.0)
    assert worst < different, worst


def test_the_character_is_accepted_and_untouched(enc, group, anonymised):
    _, faces = group
    frames, out, report, ref = anonymised
    cast = faces[1][0]
    for i, (a, b) in enumerate(zip(frames, out)):
        x0, y0, x1, y1 = _moved(cast, i)
        assert np.array_equal(a[y0:y1, x0:x1], b[y0:y1, x0:x1])  # not one pixel of the character's face changed
        assert ref.similarity(enc.embed_box(b, _moved(cast, i))) >= ref.bound
        # pixels change only around the bystanders' faces (padded box + feather)
        changed = np.argwhere(np.any(a != b, axis=2))
        near = np.zeros(a.shape[:2], bool)
        for k, (box, _) in enumerate(faces):
            if k != 1:
                bx0, by0, bx1, by1 = _moved(box, i)
                m = int(0.9 * (bx1 - bx0))
                near[max(0, by0 - m):by1 + m, max(0, bx0 - m):bx1 + m] = True
        assert near[changed[:, 0], changed[:, 1]].all()


def test_overlapping_character_is_subtracted_and_the_feather_is_soft():
    opts = AnonymizeOptions()
    bystander, character = (100, 100, 200, 200), (180, 120, 280, 220)
    m, (rx0, ry0, rx1, ry1) = face_mask((400, 400), bystander, [character], opts)
    full = np.zeros((400, 400), np.float32)
    full[ry0:ry1, rx0:rx1] = m
    kx0, ky0, kx1, ky1 = character
    assert full[ky0:ky1, kx0:kx1].max() == 0.0  # the character's box is exactly untouched
    assert full[130:170, 105:135].min() > 0.99  # the bystander's core is fully covered
    # no hard edge: neighbouring mask values differ by at most 0.1 anywhere (a hard edge is a step of 1)
    assert max(np.abs(np.diff(full, axis=0)).max(), np.abs(np.diff(full, axis=1)).max()) < 0.1
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    out = apply(frame, [bystander], [character], opts)
    assert np.array_equal(out[ky0:ky1, kx0:kx1], frame[ky0:ky1, kx0:kx1])
    assert np.abs(out[130:170, 105:135].astype(int) - frame[130:170, 105:135]).mean() > 30  # noise is gone


# ---------------------------------------------------------------- through a render
def _spec(anonymize: str = "bystanders", keep_faces: str = "", extra: str = "") -> str:
    return ("series: g\nwidth: 640\nheight: 360\nfps: 8\n" + (f"anonymize: {anonymize}\n" if anonymize else "") + extra +
            "episodes:\n  - id: e1\n    title_duration: 0\n    shots:\n"
            "      - id: table\n        still: group.png\n        characters: [ada]\n        duration: 1.5\n"
            "        prompt: static camera\n"  # every face stays in frame (a push could crop one)
            + (f"        keep_faces: {keep_faces}\n" if keep_faces else ""))


@pytest.fixture(scope="module")
def gws(tmp_path_factory):
    """A workspace: ada registered from the middle face of t1.jpg (consent noted), the group photo as the still."""
    from conftest import save

    from storyengine.register import register_character
    from storyengine.registry import Registry
    from storyengine.settings import Settings
    from storyengine.workspace import Workspace

    ws = Workspace.at(tmp_path_factory.mktemp("anon") / "ws").ensure()
    t1 = _t1()
    x0, y0, x1, y1 = CROP
    save(ws.episodes / "group.png", np.ascontiguousarray(cv2.resize(t1[y0:y1, x0:x1], (640, 360), interpolation=cv2.INTER_AREA)))
    face = np.ascontiguousarray(t1[230:520, 390:660])  # the middle man alone
    photos = [save(ws.root / "p1.png", face), save(ws.root / "p2.png", np.ascontiguousarray(face[:, ::-1]))]
    reg = Registry.open(ws)
    register_character(reg, ws, "ada", photos, kind="person", consent="signed release, any series (test)",
                       licence="test fixture", settings=Settings.load(ws.root))
    reg.close()
    return ws


def _render(ws, spec_text: str, **settings):
    from storyengine.render import render_series
    from storyengine.settings import Settings

    path = ws.episodes / "g.yaml"
    path.write_text(spec_text)
    return render_series(ws, path, settings=Settings.load(ws.root, c2pa_dir=str(ws.root / "c2pa"), **settings))


@pytest.fixture(scope="module")
def rendered(gws):
    return _render(gws, _spec())


def test_render_anonymises_bystanders_and_accepts_the_character(gws, rendered, enc):
    shot = rendered.shots[0]
    take = shot.takes[shot.chosen]
    assert shot.verdict.decision == "accept", shot.verdict.reason
    assert take.anonymized["faces"] == 3 and take.anonymized["frame_count"] == 12, json.dumps(take.anonymized)
    assert take.anonymized["kept"] == ["ada"]
    assert any(f.startswith("anonymised 3 bystander face(s) in frames 0–11") for f in shot.verdict.findings)
    # the report says so too (stored in the take's findings: no new column)
    report = json.loads((gws.renders / "g" / "report.json").read_text())
    s = report["episodes"][0]["shots"][0]
    assert s["anonymized"]["faces"] == 3 and s["anonymized"]["frames"] == [[0, 11]]
    # in the file: no face but ada's is recognisable by the encoder
    from storyengine import media

    still = np.asarray(Image.open(gws.episodes / "group.png").convert("RGB"))
    originals = [d.vector for d in _dlib_small().embed(still)]
    for f in media.iter_frames(take.path):
        for d in _dlib_small().embed(f):
            sims = sorted(float(d.vector @ v) for v in originals)
            assert sims[-1] >= enc.same_bound or sims[-1] < enc.same_bound - 0.02  # ada, or nobody


def _dlib_small():
    from storyengine.anonymize import _dlib

    return _dlib(small=True)


def test_toggling_anonymize_changes_the_take_key(gws, rendered):
    off = _render(gws, _spec("none"))
    assert off.shots[0].takes[0].cache_key != rendered.shots[0].takes[0].cache_key
    assert off.shots[0].takes[0].anonymized is None
    again = _render(gws, _spec())
    assert again.generated == 0 and again.shots[0].takes[0].cache_key == rendered.shots[0].takes[0].cache_key


def test_manifests_carry_consent_and_anonymisation_and_verify_prints_them(gws, rendered):
    from typer.testing import CliRunner

    from storyengine.cli import app
    from storyengine.provenance import verify

    take = verify(rendered.shots[0].path)
    assert take.consent["characters"] == [{"handle": "ada", "kind": "person", "consent": "signed release, any series (test)",
                                          "licence": "test fixture"}]
    assert take.consent["anonymization"]["mode"] == "bystanders" and take.consent["anonymization"]["faces"] == 3
    ep = verify(rendered.episodes[0].path)
    assert ep.consent["anonymization"] == [{"shot": "table", **take.consent["anonymization"]}]
    out = " ".join(CliRunner().invoke(app, ["verify", str(rendered.episodes[0].path)]).output.split())  # unwrapped
    assert "consent: ada (person): signed release, any series (test) · licence: test fixture" in out
    assert "anonymization: table: bystanders — anonymised 3 bystander face(s) in frames 0–11" in out


def test_require_consent_refuses_a_person_without_a_note(gws):
    from storyengine.errors import ConsentError
    from storyengine.registry import Registry

    reg = Registry.open(gws)
    reg.db["characters"].update("ada", {"consent": ""})
    reg.close()
    try:
        with pytest.raises(ConsentError) as e:
            _render(gws, _spec(), require_consent=True)
        assert str(e.value) == ("character 'ada' (Ada) is a person with no consent note, and the setting require_consent "
                                "is on: record who agreed to what with\n"
                                '  storyengine character consent ada "who agreed, to what, when"')
    finally:
        from typer.testing import CliRunner

        from storyengine.cli import app

        r = CliRunner().invoke(app, ["character", "consent", "ada", "signed release, any series (test)", "-w", str(gws.root)])
        assert r.exit_code == 0, r.output
    reg = Registry.open(gws)
    assert reg.character("ada")["consent"] == "signed release, any series (test)"
    reg.close()


def _plan(ws, text):
    from storyengine.planner import load_series, plan_series
    from storyengine.registry import Registry

    path = ws.episodes / "bad.yaml"
    path.write_text(text)
    reg = Registry.open(ws)
    try:
        return plan_series(load_series(path), path, reg, ws)
    finally:
        reg.close()


def test_plan_time_errors_name_the_line(gws, monkeypatch):
    from storyengine.backends.motion import MotionBackend
    from storyengine.errors import SpecError

    path = gws.episodes / "bad.yaml"
    with pytest.raises(SpecError) as e:
        _plan(gws, _spec(keep_faces="[9]"))
    assert str(e.value).startswith(f"{path}:15: episode 'e1', shot 'table': keep_faces[0]: 9 names no face in the still "
                                   "group.png (faces found, left to right: 0: [")
    with pytest.raises(SpecError) as e:
        _plan(gws, _spec(anonymize="{all-but: [ada, nobody]}"))
    assert str(e.value) == (f"{path}:5: episode 'e1', shot 'table': anonymize.all-but: unknown character 'nobody' "
                            "(registered: ada)")
    monkeypatch.setattr(MotionBackend, "postprocessable", False)
    with pytest.raises(SpecError) as e:
        _plan(gws, _spec())
    assert str(e.value).startswith(f"{path}:5: episode 'e1', shot 'table': anonymize: bystanders needs frames")
    monkeypatch.undo()
    with pytest.raises(SpecError) as e:
        _plan(gws, _spec(anonymize="all-but"))
    assert f"{path}:5: anonymize: Value error, unknown anonymize mode 'all-but'" in str(e.value)
    assert "`all-but` takes a list: `anonymize: {all-but: [mara]}`" in str(e.value)


def test_keep_faces_resolves_to_a_box_and_all_but_drops_the_others(gws):
    plans = _plan(gws, _spec(keep_faces="[0, [510, 20, 600, 110]]"))
    assert plans[0].anonymize == "bystanders" and len(plans[0].keep_faces) == 2
    plans = _plan(gws, _spec(anonymize="none", keep_faces="[0]"))
    assert plans[0].anonymize == "none" and "keep_faces is set but anonymize is none here" in plans[0].notes[-1]
    plans = _plan(gws, _spec(anonymize="{all-but: []}"))
    from storyengine.anonymize import kept_handles

    assert plans[0].anonymize == "all-but" and kept_handles(plans[0]) == set()


def test_an_uncertain_character_face_is_anonymised_and_counted_as_drift(enc, group):
    """A face that resembles the character but not confidently (here: a bound it cannot reach) is a bystander,
    and the checker is told its similarity, so blurring it cannot turn drift into 'not visible'."""
    from storyengine.anonymize import MODES, uncertain_as_drift
    from storyengine.specs import ANONYMIZE_MODES, FrameScore

    assert MODES == ANONYMIZE_MODES
    img, faces = group
    vec = faces[1][1]
    strict = Reference("ada", enc, vec[None], vec, 1.01, "test")  # unreachable: never confident
    a = Anonymizer(enc, [strict], AnonymizeOptions(stride=6))
    out = list(a.run(iter(_pan(img, 7))))
    rep = a.report.to_dict()
    assert rep["faces"] == 4 and rep["kept"] == [] and sorted(rep["uncertain"]["ada"]) == [str(i) for i in range(7)]
    assert all(0.95 < s <= 1.0 for s in rep["uncertain"]["ada"].values())  # the same face, moved: high, yet not certain
    x0, y0, x1, y1 = faces[1][0]
    assert not np.array_equal(out[0][y0:y1, x0:x1], img[y0:y1, x0:x1])
    scores = [FrameScore(index=i, time=i / 8, character="ada", encoder="dlib-face", similarity=None) for i in range(7)]
    fixed, n = uncertain_as_drift(scores, rep, [strict])
    assert n == 7 and all(s.drifted and s.similarity == rep["uncertain"]["ada"][str(s.index)] for s in fixed)


# ---------------------------------------------------------------- the fast paths keep every face covered
def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_CONSTANT)


def test_faces_moving_faster_each_frame_are_covered_in_every_frame_threaded_or_not(enc, group, monkeypatch):
    """Faces accelerating across the frame (3 px/frame and 1 px/frame² to the right: 91 px in 13 frames): every
    bystander unrecognisable at its true place in every frame, the character's face untouched; detection in its
    own thread, in line, and embedding every keyframe (no reuse of identities) give the same pixels."""
    from storyengine import anonymize

    img, faces = group
    cast_box, cast_vec = faces[1]
    ref = Reference("ada", enc, cast_vec[None], cast_vec, enc.same_bound, "test")
    shift = [(3 * i + 0.5 * i * i, i / 2) for i in range(14)]
    frames = [_shifted(img, dx, dy) for dx, dy in shift]

    def run(thread: bool, reuse: bool):
        monkeypatch.setattr(anonymize, "DETECT_THREAD", thread)
        monkeypatch.setattr(anonymize, "REUSE_STEP", anonymize.REUSE_STEP if reuse else 0.0)  # 0: embed every keyframe
        a = Anonymizer(enc, [ref], AnonymizeOptions(stride=6))
        return list(a.run(iter(frames))), a

    out, a = run(True, True)
    assert a.work["detections"] == 4 and a.work["reused"] > 0  # keyframes 0, 6, 12, 13; followed faces not embedded again
    for thread, reuse in ((False, True), (True, False)):
        other, b = run(thread, reuse)
        assert all(np.array_equal(x, y) for x, y in zip(out, other)) and b.report.to_dict() == a.report.to_dict()
    assert b.work["reused"] == 0 and b.work["embedded"] > a.work["embedded"]
    assert a.report.frames == list(range(14)) and set(a.report.kept) == {"ada"}
    h, w = img.shape[:2]
    checked = 0
    for i, f in enumerate(out):
        dx, dy = shift[i]
        for k, (box, vec) in enumerate(faces):
            x0, y0, x1, y1 = (int(round(box[0] + dx)), int(round(box[1] + dy)), int(round(box[2] + dx)), int(round(box[3] + dy)))
            if x1 > w:
                continue  # left the frame
            if k == 1:
                assert np.array_equal(f[y0:y1, x0:x1], frames[i][y0:y1, x0:x1])
                continue
            assert float(enc.embed_box(f, (x0, y0, x1, y1)) @ vec) < enc.same_bound - 0.02, (i, k)
            checked += 1
    assert checked >= 30


def test_a_followed_character_that_turns_into_someone_else_is_anonymised(enc, group):
    """The character's place is taken by another face (Tom Hanks, insightface's sample) from frame 9 on: the
    identity reused from keyframe 0 to 6 is not reused at keyframe 12 (the aligned chip changed), so the new face is
    anonymised in every frame after the keyframe before the change (6), and the character untouched up to it."""
    img, faces = group
    cast_box, cast_vec = faces[1]
    ref = Reference("ada", enc, cast_vec[None], cast_vec, enc.same_bound, "test")
    spec = importlib.util.find_spec("insightface")
    other = np.asarray(Image.open(Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "Tom_Hanks_54745.png").convert("RGB"))
    (ob, _), = [(d.box, d.vector) for d in enc.embed(other)]

    def padded(b, f=0.35):
        px, py = int((b[2] - b[0]) * f), int((b[3] - b[1]) * f)
        return b[0] - px, b[1] - py, b[2] + px, b[3] + py

    sx0, sy0, sx1, sy1 = padded(ob)
    tx0, ty0, tx1, ty1 = padded(cast_box)
    swapped = img.copy()
    swapped[ty0:ty1, tx0:tx1] = cv2.resize(np.ascontiguousarray(other[max(0, sy0):sy1, max(0, sx0):sx1]), (tx1 - tx0, ty1 - ty0),
                                           interpolation=cv2.INTER_AREA)
    frames = [_shifted(swapped if i >= 9 else img, 2 * i, i) for i in range(20)]
    a = Anonymizer(enc, [ref], AnonymizeOptions(stride=6))
    out = list(a.run(iter(frames)))
    assert a.work["reused"] >= 1  # keyframe 6 kept the character's identity without embedding it again
    for i in range(20):
        x0, y0, x1, y1 = _moved(cast_box, i)
        same = np.array_equal(out[i][y0:y1, x0:x1], frames[i][y0:y1, x0:x1])
        assert same == (i <= 6), i  # keyframe 6 still shows the character; from 7 on the span to keyframe 12 is covered
        if i >= 9:
            raw = enc.embed_box(frames[i], (x0, y0, x1, y1))
            assert ref.similarity(raw) < ref.bound  # it really is somebody else
            assert float(enc.embed_box(out[i], (x0, y0, x1, y1)) @ raw) < enc.same_bound - 0.02, i
    assert set(range(7, 20)) <= set(a.report.frames)


def test_the_separable_blur_matches_opencvs():
    from storyengine.anonymize import _gauss

    rng = np.random.default_rng(1)
    for (h, w), sigma, tol in (((51, 47), 7.2, 1), ((3, 2), 5.0, 2), ((120, 90), 0.8, 1), ((9, 9), 0.5, 1)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = cv2.GaussianBlur(img, (0, 0), sigma)
        assert np.abs(_gauss(img, sigma).astype(int) - ref).max() <= tol  # 2: an image smaller than the kernel


@pytest.mark.parametrize("thread", [True, False])
def test_every_frame_comes_out_once_in_order_whatever_the_length(enc, thread, monkeypatch):
    """Keyframes are identified one keyframe late (their detection overlaps the next frames): takes of 0, 1, a stride,
    a stride + 1 and two strides (+ 1) frames still come out whole, in order, and a take without faces untouched."""
    from storyengine import anonymize

    monkeypatch.setattr(anonymize, "DETECT_THREAD", thread)
    rng = np.random.default_rng(2)
    for n in (0, 1, 6, 7, 12, 13):
        frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]
        a = Anonymizer(enc, [], AnonymizeOptions(stride=6))
        out = list(a.run(iter(frames)))
        assert len(out) == n and all(x is y for x, y in zip(out, frames))
        assert a.work["detections"] == (0 if n == 0 else len(range(0, n, 6)) + ((n - 1) % 6 != 0))
        assert a.report.faces == 0 and a.report.frames == []
